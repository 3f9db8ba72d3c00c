#pragma once
// Frames of the streams port (docs/agent-protocol.md, Streams port):
// [u32 big-endian length of the rest][u8 type][u32 stream id][payload].
// Unlike the agent channel's JSON frames these carry raw bytes, so DATA is
// never encoded, and their size is small enough to bound every buffer.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::streams {

enum class FrameType : std::uint8_t { Open = 1, Opened, Refused, Data, Eof, Close, Credit };

constexpr std::size_t kHeaderBytes = 9;
// The length field counts the type and the stream id too.
constexpr std::size_t kTypeAndIdBytes = 5;
constexpr std::size_t kMaxData = 64u << 10;
// What each direction of a stream may have unacknowledged in flight.
constexpr std::uint32_t kWindow = 256u << 10;
constexpr std::size_t kMaxReason = 1024;

struct Frame {
    FrameType type;
    std::uint32_t stream;
    std::string_view payload;  // valid until the reader is given more bytes
};

std::string encodeFrame(FrameType type, std::uint32_t stream, std::string_view payload = {});

// Fills the first kHeaderBytes of `frame`, whose payload is already in place
// behind them: DATA is read straight into its frame, never copied.
void writeHeader(std::string& frame, FrameType type, std::uint32_t stream);

std::string encodeU32(std::uint32_t value);
std::uint32_t decodeU32(std::string_view bytes);  // bytes.size() >= 4

// Splits the bytes read from the channel into frames. Its buffer holds a
// few frames; a length out of range is an error, so a peer cannot make it
// grow.
class FrameReader {
public:
    FrameReader();

    // Where the next read may put bytes, and how many; then commit() them.
    char* space();
    std::size_t spaceSize() const;
    void commit(std::size_t bytes);

    // The next whole frame, or nothing if more bytes are needed. Sets
    // `error` (and returns nothing) when the stream breaks the framing.
    std::optional<Frame> next(std::string& error);

private:
    std::vector<char> buffer_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

}  // namespace sessiond::streams
