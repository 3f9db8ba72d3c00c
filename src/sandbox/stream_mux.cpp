#include "sessiond/sandbox/stream_mux.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace sessiond {

namespace asio = boost::asio;
using streams::FrameType;

namespace {

// Frames one write to the channel gathers: enough to amortise the system
// call when many streams are busy.
constexpr std::size_t kMaxGather = 64;

std::string portName(std::uint16_t port) {
    return "port " + std::to_string(port) + " in the sandbox";
}

// The guest's words end up in logs and HTTP answers.
std::string printable(std::string_view text) {
    std::string out(text.substr(0, streams::kMaxReason));
    for (char& c : out)
        if (c < 0x20 || c == 0x7f) c = '?';
    return out.empty() ? "refused without a reason" : out;
}

std::string typeName(FrameType type) {
    static const char* const names[] = {"OPEN", "OPENED", "REFUSED", "DATA", "EOF", "CLOSE", "CREDIT"};
    return names[static_cast<int>(type) - 1];
}

}  // namespace

struct StreamMux::Stream {
    Stream(std::uint32_t id, std::uint16_t port, Socket local, UniqueFd callerEnd, OpenHandler onOpen)
        : id(id), port(port), local(std::move(local)), callerEnd(std::move(callerEnd)), onOpen(std::move(onOpen)) {}
    // The socket goes first, so no cancelled operation can still refer to the buffers.
    ~Stream() {
        boost::system::error_code ignored;
        local.close(ignored);
    }

    std::uint32_t id;
    std::uint16_t port;
    Socket local;            // the mux's end of the caller's socketpair
    UniqueFd callerEnd;      // handed over on OPENED
    OpenHandler onOpen;      // set until the guest answered the OPEN
    std::uint32_t credit = streams::kWindow;  // DATA the guest still accepts from us
    std::uint32_t window = streams::kWindow;  // DATA we still accept from the guest
    std::string readBuffer;                   // a DATA frame being read from `local`
    std::deque<std::string> toLocal;          // the guest's DATA not yet written to `local`
    bool reading = false;
    bool writing = false;
    bool eofIn = false;   // the guest sends no more DATA
    bool eofOut = false;  // we sent EOF
    bool shut = false;    // `local`'s write side is shut down
    bool closeSent = false;
    bool closeReceived = false;
};

StreamMux::StreamMux(Socket channel) : channel_(std::move(channel)), executor_(channel_.get_executor()) {}

StreamMux::~StreamMux() {
    // Pending handlers are posted, never called from here, so they cannot
    // re-enter an object that is being destroyed.
    if (!closed_) shutdown("the stream multiplexer was destroyed");
}

void StreamMux::open(std::uint16_t port, OpenHandler onOpen) {
    const auto refuse = [&](const std::string& why) {
        post([onOpen = std::move(onOpen), error = "cannot reach " + portName(port) + ": " + why] {
            onOpen(error, UniqueFd());
        });
    };
    if (closed_) return refuse(closeReason_);
    if (nextId_ == 0) return refuse("this channel has used up its stream ids");

    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        return refuse(std::string("socketpair failed: ") + std::strerror(errno));
    }
    UniqueFd ours(fds[0]);
    UniqueFd theirs(fds[1]);
    Socket local(executor_);
    boost::system::error_code ec;
    local.assign(asio::local::stream_protocol(), ours.get(), ec);
    if (ec) return refuse("cannot watch a socket: " + ec.message());
    ours.release();

    const std::uint32_t id = nextId_++;
    streams_.emplace(id, std::make_unique<Stream>(id, port, std::move(local), std::move(theirs), std::move(onOpen)));
    const char portBytes[] = {static_cast<char>(port >> 8), static_cast<char>(port)};
    send(streams::encodeFrame(FrameType::Open, id, std::string_view(portBytes, 2)));
    startReading();
}

void StreamMux::setClosedHandler(ClosedHandler onClosed) {
    if (closed_) {
        // Closed by a failure before anyone listened; close() itself is never reported.
        if (failed_ && onClosed) post([onClosed = std::move(onClosed), reason = closeReason_] { onClosed(reason); });
        return;
    }
    closedHandler_ = std::move(onClosed);
    startReading();  // so that a guest going away is noticed even while idle
}

void StreamMux::close() {
    if (closed_) return;
    closedHandler_ = nullptr;
    shutdown("the stream multiplexer was closed");
}

bool StreamMux::isOpen() const {
    return !closed_;
}

std::size_t StreamMux::streamCount() const {
    return streams_.size();
}

// The channel.

void StreamMux::startReading() {
    if (reading_ || closed_) return;
    reading_ = true;
    readChannel();
}

void StreamMux::readChannel() {
    channel_.async_read_some(asio::buffer(reader_.space(), reader_.spaceSize()),
                             [weak = weak_from_this()](boost::system::error_code ec, std::size_t bytes) {
        auto self = weak.lock();
        if (!self || self->closed_) return;
        if (ec) {
            // A guest that dies with our frames unread resets rather than ends the channel.
            const bool gone = ec == asio::error::eof || ec == asio::error::connection_reset;
            return self->fail(gone ? "the guest closed the streams channel"
                                   : "reading the streams channel failed: " + ec.message());
        }
        self->reader_.commit(bytes);
        std::string error;
        while (auto frame = self->reader_.next(error)) {
            self->onFrame(*frame);
            if (self->closed_) return;
        }
        if (!error.empty()) return self->fail("the guest broke the streams protocol: " + error);
        self->readChannel();
    });
}

void StreamMux::send(std::string frame) {
    if (closed_) return;
    writes_.push_back(std::move(frame));
    if (writing_.empty()) writeChannel();
}

void StreamMux::writeChannel() {
    for (const auto& frame : writes_) {
        if (writing_.size() == kMaxGather) break;
        writing_.push_back(asio::buffer(frame));
    }
    asio::async_write(channel_, writing_, [weak = weak_from_this()](boost::system::error_code ec, std::size_t) {
        auto self = weak.lock();
        if (!self || self->closed_) return;
        if (ec) return self->fail("writing to the streams channel failed: " + ec.message());
        self->writes_.erase(self->writes_.begin(), self->writes_.begin() + self->writing_.size());
        self->writing_.clear();
        if (!self->writes_.empty()) self->writeChannel();
    });
}

// Frames from the guest.

void StreamMux::onFrame(const streams::Frame& frame) {
    const auto protocolError = [&](const std::string& what) {
        fail("the guest broke the streams protocol: " + typeName(frame.type) + " on stream " +
             std::to_string(frame.stream) + " " + what);
    };
    if (frame.type == FrameType::Open) return protocolError("(only the host opens streams)");
    auto it = streams_.find(frame.stream);
    if (it == streams_.end()) return protocolError("(no such stream)");
    Stream& stream = *it->second;

    if (stream.closeSent) {
        // Sent before the guest saw our CLOSE; its own CLOSE ends the stream.
        if (frame.type == FrameType::Close) streams_.erase(it);
        return;
    }
    if (stream.onOpen) {
        if (frame.type == FrameType::Opened && frame.payload.empty()) return onOpened(stream, frame);
        if (frame.type != FrameType::Refused) return protocolError("(the stream is not open yet)");
        post([onOpen = std::exchange(stream.onOpen, nullptr), error = printable(frame.payload)] {
            onOpen(error, UniqueFd());
        });
        streams_.erase(it);
        return;
    }
    if (stream.closeReceived) return protocolError("(after CLOSE)");

    switch (frame.type) {
    case FrameType::Data:
        if (stream.eofIn) return protocolError("(after EOF)");
        if (frame.payload.size() > stream.window) return protocolError("(over the window)");
        return onGuestData(stream, frame.payload);
    case FrameType::Eof:
        if (stream.eofIn || !frame.payload.empty()) return protocolError("(a second one, or with a payload)");
        stream.eofIn = true;
        return progress(stream);
    case FrameType::Credit:
        if (frame.payload.size() != 4) return protocolError("(a payload that is not 4 bytes)");
        if (streams::decodeU32(frame.payload) > streams::kWindow - stream.credit) {
            return protocolError("(more than the DATA in flight)");
        }
        return onGuestCredit(stream, frame.payload);
    case FrameType::Close:
        return onGuestClose(stream);
    default:
        return protocolError("(the stream is open already)");
    }
}

void StreamMux::onOpened(Stream& stream, const streams::Frame&) {
    // std::function needs a copyable callable; the descriptor rides in a shared_ptr.
    post([onOpen = std::exchange(stream.onOpen, nullptr),
          fd = std::make_shared<UniqueFd>(std::move(stream.callerEnd))] { onOpen("", std::move(*fd)); });
    readLocal(stream);
}

void StreamMux::onGuestData(Stream& stream, std::string_view payload) {
    stream.window -= static_cast<std::uint32_t>(payload.size());
    if (!payload.empty()) stream.toLocal.emplace_back(payload);
    writeLocal(stream);
}

void StreamMux::onGuestCredit(Stream& stream, std::string_view payload) {
    stream.credit += streams::decodeU32(payload);
    readLocal(stream);
}

void StreamMux::onGuestClose(Stream& stream) {
    stream.closeReceived = true;
    // After its EOF the guest's data is complete: deliver the rest, as a
    // TCP FIN would. Before it, CLOSE is a reset and the rest is dropped.
    if (stream.eofIn) return progress(stream);
    reset(stream);
}

// The caller's end.

StreamMux::Stream* StreamMux::live(std::uint32_t id) {
    if (closed_) return nullptr;
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
}

void StreamMux::readLocal(Stream& stream) {
    if (stream.reading || stream.eofOut || stream.closeSent || stream.closeReceived || stream.credit == 0) return;
    const std::size_t room = std::min<std::size_t>(streams::kMaxData, stream.credit);
    stream.readBuffer.resize(streams::kHeaderBytes + room);
    stream.reading = true;
    stream.local.async_read_some(
        asio::buffer(stream.readBuffer.data() + streams::kHeaderBytes, room),
        [weak = weak_from_this(), id = stream.id](boost::system::error_code ec, std::size_t bytes) {
        auto self = weak.lock();
        Stream* stream = self ? self->live(id) : nullptr;
        if (!stream) return;
        Stream& s = *stream;
        s.reading = false;
        if (s.closeSent || s.closeReceived) return;
        if (ec == asio::error::eof) {
            s.eofOut = true;
            self->send(streams::encodeFrame(FrameType::Eof, id));
            return self->progress(s);
        }
        if (ec) return self->reset(s);
        s.credit -= static_cast<std::uint32_t>(bytes);
        s.readBuffer.resize(streams::kHeaderBytes + bytes);
        streams::writeHeader(s.readBuffer, FrameType::Data, id);
        self->send(std::exchange(s.readBuffer, {}));
        self->readLocal(s);
    });
}

void StreamMux::writeLocal(Stream& stream) {
    if (stream.writing || stream.toLocal.empty()) return;
    stream.writing = true;
    asio::async_write(stream.local, asio::buffer(stream.toLocal.front()),
                      [weak = weak_from_this(), id = stream.id](boost::system::error_code ec, std::size_t bytes) {
        auto self = weak.lock();
        Stream* stream = self ? self->live(id) : nullptr;
        if (!stream) return;
        Stream& s = *stream;
        s.writing = false;
        if (s.closeSent) return;
        if (ec) return self->reset(s);  // the caller closed its end
        s.toLocal.pop_front();
        s.window += static_cast<std::uint32_t>(bytes);
        // After EOF no more DATA comes, so credit would be of no use.
        if (!s.eofIn) self->send(streams::encodeFrame(FrameType::Credit, id, streams::encodeU32(bytes)));
        self->writeLocal(s);
        self->progress(s);
    });
}

// May destroy `stream`.
void StreamMux::progress(Stream& stream) {
    boost::system::error_code ignored;
    if (!stream.writing && stream.toLocal.empty() && stream.eofIn && !stream.closeSent) {
        if (!stream.shut) {
            stream.shut = true;
            stream.local.shutdown(asio::socket_base::shutdown_send, ignored);
        }
        // Both ways done, or the guest ended it after its last byte.
        if (stream.eofOut || stream.closeReceived) {
            stream.local.close(ignored);
            sendClose(stream);
        }
    }
    if (stream.closeSent && stream.closeReceived) streams_.erase(stream.id);
}

// May destroy `stream`.
void StreamMux::reset(Stream& stream) {
    boost::system::error_code ignored;
    stream.local.close(ignored);
    stream.toLocal.clear();
    sendClose(stream);
    if (stream.closeReceived) streams_.erase(stream.id);
}

void StreamMux::sendClose(Stream& stream) {
    if (stream.closeSent) return;
    stream.closeSent = true;
    send(streams::encodeFrame(FrameType::Close, stream.id));
}

// Closing.

void StreamMux::fail(const std::string& reason) {
    if (closed_) return;
    spdlog::warn("closing the streams channel: {}", reason);
    auto onClosed = std::exchange(closedHandler_, nullptr);
    failed_ = true;
    shutdown(reason);
    if (onClosed) post([onClosed = std::move(onClosed), reason] { onClosed(reason); });
}

void StreamMux::shutdown(const std::string& reason) {
    closed_ = true;
    closeReason_ = reason;
    boost::system::error_code ignored;
    // Closing first cancels the writes that refer to the frames cleared below.
    channel_.close(ignored);
    for (auto& [id, stream] : streams_) {
        if (!stream->onOpen) continue;
        post([onOpen = std::move(stream->onOpen), error = "cannot reach " + portName(stream->port) + ": " + reason] {
            onOpen(error, UniqueFd());
        });
    }
    streams_.clear();
    writes_.clear();
    writing_.clear();
}

void StreamMux::post(std::function<void()> handler) {
    asio::post(executor_, std::move(handler));
}

}  // namespace sessiond
