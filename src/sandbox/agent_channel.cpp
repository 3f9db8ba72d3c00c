#include "sessiond/sandbox/agent_channel.hpp"

#include <utility>

namespace sessiond {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

std::string typeOf(const json& frame) {
    auto it = frame.find("type");
    return it != frame.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string millis(std::chrono::milliseconds ms) {
    return std::to_string(ms.count()) + " ms";
}

}  // namespace

std::string encodeFrame(const json& message) {
    // Invalid UTF-8 in user code must not throw here; the agent would reject it anyway.
    const std::string body = message.dump(-1, ' ', false, json::error_handler_t::replace);
    const auto length = static_cast<std::uint32_t>(body.size());
    std::string frame;
    frame.reserve(4 + body.size());
    frame.push_back(static_cast<char>(length >> 24));
    frame.push_back(static_cast<char>(length >> 16));
    frame.push_back(static_cast<char>(length >> 8));
    frame.push_back(static_cast<char>(length));
    frame += body;
    return frame;
}

AgentChannel::AgentChannel(Socket socket, std::size_t maxFrameBytes)
    : socket_(std::move(socket)), executor_(socket_.get_executor()), maxFrameBytes_(maxFrameBytes) {}

AgentChannel::~AgentChannel() {
    // Pending handlers are posted, never called from here, so they cannot
    // re-enter an object that is being destroyed.
    if (!closed_) shutdown("channel closed");
}

void AgentChannel::waitForHello(std::chrono::milliseconds timeout, ReplyHandler onHello) {
    if (closed_) return post(std::move(onHello), closeReason_);
    if (helloHandler_) return post(std::move(onHello), "already waiting for the agent's hello");
    if (earlyHello_) {
        post(std::move(onHello), "", std::move(*earlyHello_));
        earlyHello_.reset();
        return;
    }
    if (helloSeen_) return post(std::move(onHello), "the agent's hello was already delivered");

    startReading();
    helloHandler_ = std::move(onHello);
    helloTimer_ = std::make_unique<asio::steady_timer>(executor_, timeout);
    helloTimer_->async_wait([self = shared_from_this(), timeout](boost::system::error_code ec) {
        if (ec || self->closed_ || !self->helloHandler_) return;
        self->fail("no hello from the agent within " + millis(timeout));
    });
}

void AgentChannel::request(json message, std::chrono::milliseconds timeout, ReplyHandler onReply) {
    if (closed_) return post(std::move(onReply), closeReason_);
    if (!message.is_object()) return post(std::move(onReply), "a request must be a JSON object");

    const std::uint64_t id = nextId_++;
    message["id"] = id;
    std::string frame = encodeFrame(message);
    if (frame.size() - 4 > maxFrameBytes_) {
        return post(std::move(onReply), "request of " + std::to_string(frame.size() - 4) +
                                            " bytes exceeds the frame limit");
    }
    startReading();
    queue_.push_back(Pending{id, timeout, std::move(onReply), std::move(frame)});
    sendNext();
}

void AgentChannel::setClosedHandler(ClosedHandler onClosed) {
    if (closed_) {
        // Closed by a failure before anyone listened; close() itself is never reported.
        if (failed_ && onClosed) {
            asio::post(executor_, [onClosed = std::move(onClosed), reason = closeReason_] { onClosed(reason); });
        }
        return;
    }
    closedHandler_ = std::move(onClosed);
    startReading();  // so that a dying agent is noticed even while idle
}

void AgentChannel::close() {
    if (closed_) return;
    closedHandler_ = nullptr;
    shutdown("channel closed");
}

bool AgentChannel::isOpen() const {
    return !closed_;
}

void AgentChannel::startReading() {
    if (reading_ || closed_) return;
    reading_ = true;
    readHeader();
}

void AgentChannel::readHeader() {
    asio::async_read(socket_, asio::buffer(header_),
                     [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
        if (self->closed_) return;
        if (ec) {
            self->fail(ec == asio::error::eof ? "the agent closed the channel"
                                              : "reading from the agent failed: " + ec.message());
            return;
        }
        const auto& h = self->header_;
        const std::size_t length = (std::size_t{h[0]} << 24) | (std::size_t{h[1]} << 16) |
                                   (std::size_t{h[2]} << 8) | std::size_t{h[3]};
        if (length > self->maxFrameBytes_) {
            self->fail("the agent sent a frame of " + std::to_string(length) +
                       " bytes, over the limit of " + std::to_string(self->maxFrameBytes_));
            return;
        }
        self->readBody(length);
    });
}

void AgentChannel::readBody(std::size_t length) {
    body_.resize(length);
    asio::async_read(socket_, asio::buffer(body_),
                     [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
        if (self->closed_) return;
        if (ec) {
            self->fail(ec == asio::error::eof ? "the agent closed the channel in the middle of a frame"
                                              : "reading from the agent failed: " + ec.message());
            return;
        }
        json frame = json::parse(self->body_, nullptr, false);
        self->body_.clear();
        // One huge reply must not pin its buffer for the channel's lifetime.
        if (self->body_.capacity() > (1u << 20)) self->body_.shrink_to_fit();
        if (frame.is_discarded() || !frame.is_object()) {
            self->fail("the agent sent a frame that is not a JSON object");
            return;
        }
        self->onFrame(std::move(frame));
        if (!self->closed_) self->readHeader();
    });
}

void AgentChannel::onFrame(json frame) {
    const std::string type = typeOf(frame);
    if (type == "hello") {
        if (helloSeen_) return fail("the agent sent a second hello");
        helloSeen_ = true;
        if (!helloHandler_) {
            earlyHello_ = std::move(frame);
            return;
        }
        helloTimer_.reset();
        auto handler = std::exchange(helloHandler_, nullptr);
        handler("", std::move(frame));
        return;
    }

    auto id = frame.find("id");
    if (!active_ || id == frame.end() || !id->is_number_unsigned() || id->get<std::uint64_t>() != active_->id) {
        return fail("the agent sent an unexpected \"" + type + "\" frame");
    }
    // State is consistent before the handler runs, which may issue requests or close.
    Pending done = std::move(*active_);
    active_.reset();
    activeTimer_.reset();
    sendNext();
    done.onReply("", std::move(frame));
}

void AgentChannel::sendNext() {
    if (closed_ || active_ || queue_.empty()) return;
    active_ = std::move(queue_.front());
    queue_.pop_front();
    writes_.push_back(std::move(active_->frame));
    if (!writing_) writeNext();

    const auto timeout = active_->timeout;
    activeTimer_ = std::make_unique<asio::steady_timer>(executor_, timeout);
    activeTimer_->async_wait([self = shared_from_this(), id = active_->id, timeout](boost::system::error_code ec) {
        if (ec || self->closed_ || !self->active_ || self->active_->id != id) return;
        self->fail("the agent did not answer request " + std::to_string(id) + " within " + millis(timeout));
    });
}

void AgentChannel::writeNext() {
    writing_ = true;
    asio::async_write(socket_, asio::buffer(writes_.front()),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
        self->writes_.pop_front();
        if (self->closed_) return;
        if (ec) return self->fail("writing to the agent failed: " + ec.message());
        if (self->writes_.empty()) {
            self->writing_ = false;
        } else {
            self->writeNext();
        }
    });
}

void AgentChannel::fail(const std::string& reason) {
    if (closed_) return;
    auto onClosed = std::exchange(closedHandler_, nullptr);
    failed_ = true;
    shutdown(reason);
    if (onClosed) asio::post(executor_, [onClosed = std::move(onClosed), reason] { onClosed(reason); });
}

void AgentChannel::shutdown(const std::string& reason) {
    closed_ = true;
    closeReason_ = reason;
    boost::system::error_code ignored;
    socket_.close(ignored);
    helloTimer_.reset();
    activeTimer_.reset();
    earlyHello_.reset();
    if (helloHandler_) post(std::exchange(helloHandler_, nullptr), reason);
    if (active_) post(std::move(active_->onReply), reason);
    active_.reset();
    for (auto& pending : queue_) post(std::move(pending.onReply), reason);
    queue_.clear();
}

void AgentChannel::post(ReplyHandler handler, std::string error, json reply) {
    asio::post(executor_, [handler = std::move(handler), error = std::move(error), reply = std::move(reply)]() mutable {
        handler(std::move(error), std::move(reply));
    });
}

}  // namespace sessiond
