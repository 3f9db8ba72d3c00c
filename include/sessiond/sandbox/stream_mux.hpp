#pragma once
// Host end of the streams port (docs/agent-protocol.md, Streams port): TCP
// connections to ports inside a microVM guest, multiplexed over one byte
// stream (a virtio-serial port the guest's sessiond_streams.py serves), so
// the daemon reaches a container in a VM that has no network card.
//
// open() hands the caller one end of a socketpair and pumps the other to
// and from the guest's connection. Each direction of each stream has a
// window: a reader that stops reading stalls only its own stream, and
// neither end buffers more than a window per stream.
//
// Everything runs on the channel socket's executor; handlers are always
// posted there, never called from inside a member function. Asynchronous
// operations hold the mux weakly: dropping the last shared_ptr destroys it,
// which ends every stream, closes every descriptor it holds, and fails
// pending opens.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>  // Boost 1.74 Asio uses std::exchange without including it
#include <vector>

#include <boost/asio.hpp>

#include "sessiond/sandbox/stream_frame.hpp"
#include "sessiond/unique_fd.hpp"

namespace sessiond {

class StreamMux : public std::enable_shared_from_this<StreamMux> {
public:
    using Socket = boost::asio::local::stream_protocol::socket;
    // On success `error` is empty and `stream` is a connected, blocking
    // AF_UNIX stream socket (close-on-exec): bytes written to it reach the
    // guest's connection, shutdown(SHUT_WR) half-closes it, closing it ends it.
    using OpenHandler = std::function<void(std::string error, UniqueFd stream)>;
    using ClosedHandler = std::function<void(std::string reason)>;

    // `channel`: already connected to the guest's streams port.
    explicit StreamMux(Socket channel);
    ~StreamMux();
    StreamMux(const StreamMux&) = delete;
    StreamMux& operator=(const StreamMux&) = delete;

    // Asks the guest to connect to 127.0.0.1:`port` inside it. Exactly one
    // call to `onOpen`. No timeout: the guest answers as soon as its
    // connect() does, and a caller that cannot wait has its own deadline.
    void open(std::uint16_t port, OpenHandler onOpen);

    // Fires once when the channel closes for any reason but close(): the
    // guest went away or broke the protocol (then also logged).
    void setClosedHandler(ClosedHandler onClosed);

    // Ends every stream, fails pending opens and closes the channel.
    void close();

    bool isOpen() const;
    // Streams opened or being opened that have not ended.
    std::size_t streamCount() const;

private:
    struct Stream;

    void startReading();
    void readChannel();
    void onFrame(const streams::Frame& frame);
    void onOpened(Stream& stream, const streams::Frame& frame);
    void onGuestData(Stream& stream, std::string_view payload);
    void onGuestCredit(Stream& stream, std::string_view payload);
    void onGuestClose(Stream& stream);

    // The stream `id` if the mux and it are still open; else null.
    Stream* live(std::uint32_t id);
    void readLocal(Stream& stream);
    void writeLocal(Stream& stream);
    void progress(Stream& stream);
    void reset(Stream& stream);
    void sendClose(Stream& stream);

    void send(std::string frame);
    void writeChannel();
    void fail(const std::string& reason);
    void shutdown(const std::string& reason);
    void post(std::function<void()> handler);

    Socket channel_;
    boost::asio::any_io_executor executor_;
    streams::FrameReader reader_;
    bool reading_ = false;
    bool closed_ = false;
    bool failed_ = false;  // closed for a reason other than close()
    std::string closeReason_;

    std::deque<std::string> writes_;
    std::vector<boost::asio::const_buffer> writing_;  // the frames one async_write is sending

    // Stream ids are never reused on a channel, so a late completion that
    // finds its id gone knows its stream ended.
    std::map<std::uint32_t, std::unique_ptr<Stream>> streams_;
    std::uint32_t nextId_ = 1;

    ClosedHandler closedHandler_;
};

}  // namespace sessiond
