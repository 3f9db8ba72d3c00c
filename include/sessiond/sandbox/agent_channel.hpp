#pragma once
// Host side of the framed protocol spoken with the sessiond agent inside every
// sandbox (docs/agent-protocol.md). The transport is a connected stream socket:
// one end of a socketpair for the namespace backend, the host end of the
// virtio-serial channel (a unix socket) for the libvirt backend.
//
// Requests are answered in order, one at a time; further requests wait in a
// queue. Frames larger than the limit close the channel, so a misbehaving
// agent cannot grow the daemon's memory.

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>  // Boost 1.74 Asio uses std::exchange without including it
#include <vector>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

namespace sessiond {

class AgentChannel : public std::enable_shared_from_this<AgentChannel> {
public:
    using Socket = boost::asio::local::stream_protocol::socket;
    using ReplyHandler = std::function<void(std::string error, nlohmann::json reply)>;
    using ClosedHandler = std::function<void(std::string reason)>;

    static constexpr std::size_t kDefaultMaxFrameBytes = 64u << 20;

    AgentChannel(Socket socket, std::size_t maxFrameBytes = kDefaultMaxFrameBytes);
    ~AgentChannel();

    // Waits for the agent's {"type":"hello"} frame. Exactly one call to
    // `onHello`: with the frame, or with an error on timeout or close.
    void waitForHello(std::chrono::milliseconds timeout, ReplyHandler onHello);

    // Sends `message` (an "id" is assigned) and calls `onReply` once with the
    // agent's reply, or with an error if the channel closes or `timeout`
    // passes first (the channel is then closed: its state is unknown).
    void request(nlohmann::json message, std::chrono::milliseconds timeout, ReplyHandler onReply);

    // Fires once when the channel closes for any reason other than close().
    void setClosedHandler(ClosedHandler onClosed);

    // Fails everything pending with "channel closed" and closes the socket.
    // Owners call it when done: outstanding reads keep the channel alive.
    void close();

    bool isOpen() const;

private:
    struct Pending {
        std::uint64_t id;
        std::chrono::milliseconds timeout;
        ReplyHandler onReply;
        std::string frame;
    };

    void startReading();
    void readHeader();
    void readBody(std::size_t length);
    void onFrame(nlohmann::json frame);
    void sendNext();
    void writeNext();
    void fail(const std::string& reason);
    void shutdown(const std::string& reason);
    void post(ReplyHandler handler, std::string error, nlohmann::json reply = nullptr);

    Socket socket_;
    boost::asio::any_io_executor executor_;
    std::size_t maxFrameBytes_;
    bool reading_ = false;
    bool closed_ = false;
    bool failed_ = false;  // closed for a reason other than close()
    std::string closeReason_;

    std::array<unsigned char, 4> header_{};
    std::string body_;
    std::deque<std::string> writes_;
    bool writing_ = false;

    ReplyHandler helloHandler_;
    std::unique_ptr<boost::asio::steady_timer> helloTimer_;
    std::optional<nlohmann::json> earlyHello_;
    bool helloSeen_ = false;

    std::deque<Pending> queue_;
    std::optional<Pending> active_;
    std::unique_ptr<boost::asio::steady_timer> activeTimer_;
    std::uint64_t nextId_ = 1;

    ClosedHandler closedHandler_;
};

// Frame encoding shared by the channel and its tests: 4-byte big-endian
// length followed by that many bytes of UTF-8 JSON.
std::string encodeFrame(const nlohmann::json& message);

}  // namespace sessiond
