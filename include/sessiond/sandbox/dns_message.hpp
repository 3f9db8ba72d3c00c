#pragma once
// The little of DNS (RFC 1035) the sessions' resolver needs: a query's
// header and question, an answer's records, and the answers it writes
// itself. Pure functions over bytes a session or an upstream server sent,
// so nothing here trusts a length, an offset or a compression pointer.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::dns {

enum Type : std::uint16_t { A = 1, CNAME = 5, AAAA = 28 };
enum Rcode : std::uint8_t { NoError = 0, FormErr = 1, ServFail = 2, NxDomain = 3, NotImp = 4, Refused = 5 };
constexpr std::uint16_t kClassIn = 1;
constexpr std::size_t kHeaderBytes = 12;

struct Question {
    // Lower case, labels joined by dots, no trailing dot ("" for the root).
    // A label holding a dot or a byte outside printable ASCII makes
    // `printable` false: such a name is never on an allow-list.
    std::string name;
    bool printable = true;
    std::uint16_t type = 0;
    std::uint16_t klass = 0;

    bool operator==(const Question&) const = default;
};

struct Record {
    std::string name;  // as Question::name
    std::uint16_t type = 0;
    std::uint16_t klass = 0;
    std::uint32_t ttl = 0;
    std::uint32_t address = 0;  // A: host byte order
    std::string target;         // CNAME: the canonical name, as Question::name
};

struct Message {
    std::uint16_t id = 0;
    std::uint16_t flags = 0;
    Question question;
    std::vector<Record> answers;  // only parseResponse fills them
    // Where the question ends in the wire message.
    std::size_t questionEnd = 0;

    bool isResponse() const { return flags & 0x8000; }
    std::uint8_t opcode() const { return (flags >> 11) & 0xF; }
    std::uint8_t rcode() const { return flags & 0xF; }
};

// The id of any message of at least a header's length.
std::optional<std::uint16_t> messageId(std::string_view wire);

// A standard query (QR clear, opcode 0) with exactly one question; nullopt
// for anything else, or anything malformed.
std::optional<Message> parseQuery(std::string_view wire);
// A response (QR set) with one question, and its answer section's records;
// the authority and additional sections are not read.
std::optional<Message> parseResponse(std::string_view wire);

// The answer to `query` (its wire form, which parseQuery accepted) that the
// resolver gives itself: the query's id and question, no records.
std::string reply(std::string_view query, const Message& parsed, Rcode rcode);

// `wire` with its id replaced.
void setId(std::string& wire, std::uint16_t id);

// The addresses `name` has in the answer section: its A records and, through
// CNAME records, those of the names it is an alias of, each with the
// smallest TTL along its chain.
struct Address {
    std::uint32_t address;
    std::uint32_t ttl;
};
std::vector<Address> addressesOf(const Message& response, const std::string& name);

}  // namespace sessiond::dns
