#include "sessiond/sandbox/dns_message.hpp"

#include <algorithm>

namespace sessiond::dns {

namespace {

constexpr std::uint16_t kResponse = 0x8000;
constexpr std::uint16_t kRecursionDesired = 0x0100;
constexpr std::uint16_t kRecursionAvailable = 0x0080;
constexpr std::size_t kMaxNameBytes = 255;
constexpr int kMaxCnameChain = 16;

// Reads big-endian fields from untrusted bytes; every read is checked, and
// the first that would pass the end makes ok() false for good.
class Reader {
public:
    explicit Reader(std::string_view wire, std::size_t offset = 0) : wire_(wire), offset_(offset) {}

    bool ok() const { return ok_; }
    std::size_t offset() const { return offset_; }

    std::uint8_t u8() {
        if (!need(1)) return 0;
        return static_cast<std::uint8_t>(wire_[offset_++]);
    }
    std::uint16_t u16() {
        const std::uint16_t high = u8();
        return static_cast<std::uint16_t>(high << 8 | u8());
    }
    std::uint32_t u32() {
        const std::uint32_t high = u16();
        return high << 16 | u16();
    }
    void skip(std::size_t bytes) {
        if (need(bytes)) offset_ += bytes;
    }

    // A possibly compressed name. Compression pointers must point before
    // the label that holds them, so no name can loop, and past the header,
    // which holds no name (a reply the resolver writes has another header).
    std::string name(bool* printable) {
        std::string out;
        std::size_t wireBytes = 0;
        std::size_t at = offset_;
        // What a name read after a pointer may use: the bytes before that
        // pointer. A name that ran on past it could read what a copy of
        // the question (the resolver's own reply) does not hold.
        std::size_t limit = wire_.size();
        bool jumped = false;
        *printable = true;
        while (ok_) {
            if (at >= limit) return fail();
            const auto length = static_cast<std::uint8_t>(wire_[at]);
            if ((length & 0xC0) == 0xC0) {
                if (at + 1 >= limit) return fail();
                const std::size_t target = (length & 0x3F) << 8 | static_cast<std::uint8_t>(wire_[at + 1]);
                if (target >= at || target < kHeaderBytes) return fail();
                if (!jumped) offset_ = at + 2;
                jumped = true;
                limit = at;
                at = target;
                continue;
            }
            if (length & 0xC0) return fail();  // the obsolete label types
            wireBytes += 1 + length;
            if (wireBytes > kMaxNameBytes) return fail();
            if (length == 0) {
                if (!jumped) offset_ = at + 1;
                return out;
            }
            if (at + 1 + length > limit) return fail();
            if (!out.empty()) out += '.';
            for (std::size_t i = 0; i < length; ++i) {
                char c = wire_[at + 1 + i];
                if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
                if (c == '.' || c <= ' ' || c > '~') *printable = false;
                out += c;
            }
            at += 1 + length;
        }
        return out;
    }

private:
    bool need(std::size_t bytes) {
        if (!ok_ || wire_.size() - offset_ < bytes) ok_ = false;
        return ok_;
    }
    std::string fail() {
        ok_ = false;
        return {};
    }

    std::string_view wire_;
    std::size_t offset_;
    bool ok_ = true;
};

struct Header {
    std::uint16_t id, flags, questions, answers;
};

// The header and the one question every message here has.
std::optional<Message> parseStart(Reader& in, Header& header) {
    header.id = in.u16();
    header.flags = in.u16();
    header.questions = in.u16();
    header.answers = in.u16();
    in.skip(4);  // authority and additional counts
    if (!in.ok() || header.questions != 1) return std::nullopt;
    Message message;
    message.id = header.id;
    message.flags = header.flags;
    message.question.name = in.name(&message.question.printable);
    message.question.type = in.u16();
    message.question.klass = in.u16();
    if (!in.ok()) return std::nullopt;
    message.questionEnd = in.offset();
    return message;
}

}  // namespace

std::optional<std::uint16_t> messageId(std::string_view wire) {
    if (wire.size() < kHeaderBytes) return std::nullopt;
    return static_cast<std::uint16_t>(static_cast<std::uint8_t>(wire[0]) << 8 | static_cast<std::uint8_t>(wire[1]));
}

std::optional<Message> parseQuery(std::string_view wire) {
    Reader in(wire);
    Header header{};
    auto message = parseStart(in, header);
    if (!message || message->isResponse() || message->opcode() != 0) return std::nullopt;
    return message;
}

std::optional<Message> parseResponse(std::string_view wire) {
    Reader in(wire);
    Header header{};
    auto message = parseStart(in, header);
    if (!message || !message->isResponse()) return std::nullopt;
    for (std::uint16_t i = 0; i < header.answers; ++i) {
        Record record;
        bool printable = true;
        record.name = in.name(&printable);
        record.type = in.u16();
        record.klass = in.u16();
        record.ttl = in.u32();
        const std::uint16_t length = in.u16();
        if (!in.ok()) return std::nullopt;
        const std::size_t dataStart = in.offset();
        if (record.type == A && length == 4) {
            record.address = in.u32();
        } else if (record.type == CNAME) {
            Reader data(wire.substr(0, dataStart + length), dataStart);
            record.target = data.name(&printable);
            if (!data.ok() || data.offset() != dataStart + length) return std::nullopt;
            in.skip(length);
        } else {
            in.skip(length);
        }
        if (!in.ok()) return std::nullopt;
        if (printable) message->answers.push_back(std::move(record));
    }
    return message;
}

std::string reply(std::string_view query, const Message& parsed, Rcode rcode) {
    const std::uint16_t flags = kResponse | (parsed.flags & (0x7800 | kRecursionDesired)) | kRecursionAvailable | rcode;
    std::string out(kHeaderBytes, '\0');
    out[0] = static_cast<char>(parsed.id >> 8);
    out[1] = static_cast<char>(parsed.id & 0xFF);
    out[2] = static_cast<char>(flags >> 8);
    out[3] = static_cast<char>(flags & 0xFF);
    out[5] = 1;  // one question
    out.append(query.substr(kHeaderBytes, parsed.questionEnd - kHeaderBytes));
    return out;
}

void setId(std::string& wire, std::uint16_t id) {
    if (wire.size() < 2) return;
    wire[0] = static_cast<char>(id >> 8);
    wire[1] = static_cast<char>(id & 0xFF);
}

std::vector<Address> addressesOf(const Message& response, const std::string& name) {
    std::vector<Address> out;
    std::string current = name;
    std::uint32_t chainTtl = UINT32_MAX;
    for (int step = 0; step <= kMaxCnameChain; ++step) {
        const Record* alias = nullptr;
        for (const auto& record : response.answers) {
            if (record.name != current || record.klass != kClassIn) continue;
            if (record.type == A) out.push_back({record.address, std::min(record.ttl, chainTtl)});
            if (record.type == CNAME && !alias) alias = &record;
        }
        if (!alias) break;
        chainTtl = std::min(chainTtl, alias->ttl);
        current = alias->target;
    }
    return out;
}

}  // namespace sessiond::dns
