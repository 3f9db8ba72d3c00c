#include "sessiond/sandbox/stream_frame.hpp"

#include <cstring>

namespace sessiond::streams {

namespace {

// Large enough for several DATA frames per read from the channel.
constexpr std::size_t kReadBufferBytes = 256u << 10;
static_assert(kReadBufferBytes >= 2 * (kHeaderBytes + kMaxData));

void putU32(char* at, std::uint32_t value) {
    at[0] = static_cast<char>(value >> 24);
    at[1] = static_cast<char>(value >> 16);
    at[2] = static_cast<char>(value >> 8);
    at[3] = static_cast<char>(value);
}

}  // namespace

std::string encodeU32(std::uint32_t value) {
    std::string bytes(4, '\0');
    putU32(bytes.data(), value);
    return bytes;
}

std::uint32_t decodeU32(std::string_view bytes) {
    const auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])); };
    return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

void writeHeader(std::string& frame, FrameType type, std::uint32_t stream) {
    putU32(frame.data(), static_cast<std::uint32_t>(frame.size() - 4));
    frame[4] = static_cast<char>(type);
    putU32(frame.data() + 5, stream);
}

std::string encodeFrame(FrameType type, std::uint32_t stream, std::string_view payload) {
    std::string frame(kHeaderBytes, '\0');
    frame.append(payload);
    writeHeader(frame, type, stream);
    return frame;
}

FrameReader::FrameReader() : buffer_(kReadBufferBytes) {}

char* FrameReader::space() {
    // Moving the partial frame to the front leaves room for the largest one.
    if (begin_ > 0 && buffer_.size() - end_ < kHeaderBytes + kMaxData) {
        std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    return buffer_.data() + end_;
}

std::size_t FrameReader::spaceSize() const {
    return buffer_.size() - end_;
}

void FrameReader::commit(std::size_t bytes) {
    end_ += bytes;
}

std::optional<Frame> FrameReader::next(std::string& error) {
    const std::string_view held(buffer_.data() + begin_, end_ - begin_);
    if (held.size() < kHeaderBytes) return std::nullopt;
    const std::uint32_t length = decodeU32(held);
    if (length < kTypeAndIdBytes || length > kTypeAndIdBytes + kMaxData) {
        error = "a frame length of " + std::to_string(length) + " bytes is out of range";
        return std::nullopt;
    }
    if (held.size() < 4 + std::size_t{length}) return std::nullopt;
    const auto type = static_cast<unsigned char>(held[4]);
    if (type < static_cast<unsigned char>(FrameType::Open) || type > static_cast<unsigned char>(FrameType::Credit)) {
        error = "a frame of unknown type " + std::to_string(type);
        return std::nullopt;
    }
    begin_ += 4 + length;
    if (begin_ == end_) begin_ = end_ = 0;
    return Frame{static_cast<FrameType>(type), decodeU32(held.substr(5)), held.substr(kHeaderBytes, length - kTypeAndIdBytes)};
}

}  // namespace sessiond::streams
