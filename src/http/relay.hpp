#pragma once
// Relays one forwarded request (see sessiond/http/forward.hpp) between a
// client connection and its upstream, as Beast's http_relay example does,
// asynchronously: each body passes through a fixed buffer as it arrives, so
// neither is ever held whole. The upstream connection serves this one
// request ("Connection: close"); the client's stays open for its next one
// when both sides allow it.
//
// The upstream's answer is read while the request body is still being
// relayed: a server may answer before it has read the body (a 413, a 401)
// and close. Its answer then goes to the client, the rest of the body is
// not relayed, and the client's connection closes after the answer.

#include <array>
#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "sessiond/http/forward.hpp"

namespace sessiond::http {

// How a relay ended. `answer`, when set, has not been sent: the upstream
// failed before its answer began, and the client is owed this one (502 or
// 504). `reusable`: the client connection may read its next request.
struct RelayEnd {
    unsigned status = 0;
    bool reusable = false;
    bool requestBodyRead = true;
    std::optional<Response> answer;
};

namespace relay_detail {

namespace asio = boost::asio;
namespace beast = boost::beast;

// Hop-by-hop fields (RFC 9110 7.6.1) and the client's credentials for
// sessiond itself, which the container must never see.
inline void stripHopByHop(beast_http::fields& fields) {
    // Fields the Connection header names are hop-by-hop too.
    std::vector<std::string> named;
    for (auto token : beast_http::token_list(fields[beast_http::field::connection]))
        named.emplace_back(token);
    for (const auto& name : named) fields.erase(name);
    for (auto field : {beast_http::field::connection, beast_http::field::keep_alive,
                       beast_http::field::proxy_connection, beast_http::field::te, beast_http::field::trailer,
                       beast_http::field::transfer_encoding, beast_http::field::upgrade, beast_http::field::expect,
                       beast_http::field::proxy_authorization, beast_http::field::proxy_authenticate})
        fields.erase(field);
}

}  // namespace relay_detail

template <class ClientStream>
class Relay : public std::enable_shared_from_this<Relay<ClientStream>> {
    using Parser = beast_http::request_parser<beast_http::string_body>;

public:
    Relay(ClientStream& client, boost::beast::flat_buffer& clientBuffer, Parser&& header, std::string target,
          std::string remoteAddress, bool tls, bool clientKeepAlive, std::chrono::seconds idleTimeout,
          Upstream upstream, std::function<void(RelayEnd)> onEnd)
        : client_(client),
          clientBuffer_(clientBuffer),
          requestParser_(std::move(header)),
          target_(std::move(target)),
          remote_(std::move(remoteAddress)),
          tls_(tls),
          clientKeepAlive_(clientKeepAlive),
          idle_(idleTimeout),
          upstream_(std::move(upstream.socket)),
          finished_(std::move(upstream.finished)),
          onEnd_(std::move(onEnd)) {
        requestParser_.body_limit(std::numeric_limits<std::uint64_t>::max());
    }

    ~Relay() {
        if (finished_) finished_();
    }

    void start() {
        const auto& in = requestParser_.get();
        upgrade_ = in.version() >= 11 && beast_http::token_list(in[beast_http::field::connection]).exists("upgrade") &&
                   !in[beast_http::field::upgrade].empty();
        const std::string upgradeTo(in[beast_http::field::upgrade]);
        request_.base() = in.base();
        relay_detail::stripHopByHop(request_.base());
        request_.erase(beast_http::field::authorization);
        request_.target(target_);
        request_.version(11);
        // The client's address as the container sees it: its own peer is the host.
        std::string forwardedFor(in["X-Forwarded-For"]);
        request_.set("X-Forwarded-For", forwardedFor.empty() ? remote_ : forwardedFor + ", " + remote_);
        request_.set("X-Forwarded-Proto", tls_ ? "https" : "http");
        if (upgrade_) {
            request_.set(beast_http::field::connection, "Upgrade");
            request_.set(beast_http::field::upgrade, upgradeTo);
        } else {
            request_.set(beast_http::field::connection, "close");
        }
        if (in.chunked()) request_.chunked(true);
        requestBodyRead_ = requestParser_.is_done();

        // The client waits for this before it sends a body it announced
        // with "Expect: 100-continue" (the upstream never sees the Expect).
        if (in.version() >= 11 && !requestParser_.is_done() &&
            boost::beast::iequals(in[beast_http::field::expect], "100-continue")) {
            static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            clientTcp().expires_after(idle_);
            boost::asio::async_write(client_, boost::asio::buffer(kContinue),
                                     [self = this->shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                         if (ec) return self->end(false);
                                         self->writeRequestHeader();
                                     });
            return;
        }
        writeRequestHeader();
    }

private:
    boost::beast::tcp_stream& clientTcp() { return boost::beast::get_lowest_layer(client_); }

    void writeRequestHeader() {
        requestSerializer_.emplace(request_);
        upstream_.expires_after(idle_);
        beast_http::async_write_header(upstream_, *requestSerializer_,
                                       [self = this->shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                           if (ec) return self->upstreamFailed(ec);
                                           // A tunnel's bytes must not meet a request still being written.
                                           if (!self->upgrade_) self->readResponseHeader();
                                           self->relayRequestBody();
                                       });
    }

    // The request body stops once the answer began, or when writing it
    // failed: the pending read of the answer decides what the client gets
    // (the answer, or 502/504 when there is none).
    bool requestStopped() const { return answerStarted_ || requestWriteFailed_ || ending_; }

    // One round: read what the client sent into the buffer, write it on.
    void relayRequestBody() {
        if (requestStopped()) return;
        if (requestParser_.is_done() || requestSerializer_->is_done()) {
            // All sent: the answer's read is pending, or starts now.
            if (requestSerializer_->is_done()) return upgrade_ ? readResponseHeader() : void();
            request_.body().data = nullptr;
            request_.body().size = 0;
            request_.body().more = false;
            return writeRequestBody();
        }
        requestParser_.get().body().data = requestBuffer_.data();
        requestParser_.get().body().size = requestBuffer_.size();
        clientTcp().expires_after(idle_);
        clientReading_ = true;
        beast_http::async_read(client_, clientBuffer_, requestParser_,
                               [self = this->shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                   self->clientReading_ = false;
                                   if (self->deferredEnd_) return self->deliver(*std::exchange(self->deferredEnd_, {}));
                                   if (ec == beast_http::error::need_buffer) ec = {};
                                   if (self->requestStopped()) return;
                                   if (ec) return self->end(false);
                                   self->requestBodyRead_ = self->requestParser_.is_done();
                                   self->request_.body().data = self->requestBuffer_.data();
                                   self->request_.body().size =
                                       self->requestBuffer_.size() - self->requestParser_.get().body().size;
                                   self->request_.body().more = !self->requestParser_.is_done();
                                   self->writeRequestBody();
                               });
    }

    void writeRequestBody() {
        upstream_.expires_after(idle_);
        beast_http::async_write(upstream_, *requestSerializer_,
                                [self = this->shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                    if (ec == beast_http::error::need_buffer) ec = {};
                                    // The upstream stopped reading: whatever it answered
                                    // before that is still to be read.
                                    if (ec) self->requestWriteFailed_ = true;
                                    self->relayRequestBody();
                                });
    }

    void readResponseHeader() {
        responseParser_.emplace();
        responseParser_->body_limit(std::numeric_limits<std::uint64_t>::max());
        if (requestParser_.get().method() == beast_http::verb::head) responseParser_->skip(true);
        upstream_.expires_after(idle_);
        beast_http::async_read_header(upstream_, upstreamBuffer_, *responseParser_,
                                      [self = this->shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                          if (ec) return self->upstreamFailed(ec);
                                          self->onResponseHeader();
                                      });
    }

    void onResponseHeader() {
        const auto& in = responseParser_->get();
        const unsigned status = in.result_int();
        // Interim answers (103 Early Hints) are the upstream's business.
        if (status >= 100 && status < 200 && status != 101) return readResponseHeader();
        answerStarted_ = true;
        status_ = status;
        response_.base() = in.base();
        if (status == 101 && upgrade_) return switchProtocols();
        relay_detail::stripHopByHop(response_.base());
        response_.version(requestParser_.get().version());
        // A body that ends when the upstream closes is sent on chunked, so
        // the client's connection outlives it.
        if (in.chunked() || (!responseParser_->content_length() && !responseParser_->is_done()))
            response_.chunked(true);
        reusable_ = clientKeepAlive_ && requestBodyRead_;
        response_.keep_alive(reusable_);
        headerSent_ = true;
        responseSerializer_.emplace(response_);
        clientTcp().expires_after(idle_);
        beast_http::async_write_header(client_, *responseSerializer_,
                                       [self = this->shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                           if (ec) return self->end(false);
                                           self->relayResponseBody();
                                       });
    }

    void relayResponseBody() {
        if (responseParser_->is_done() || responseSerializer_->is_done()) {
            if (responseSerializer_->is_done()) return end(reusable_);
            response_.body().data = nullptr;
            response_.body().size = 0;
            response_.body().more = false;
            return writeResponseBody();
        }
        responseParser_->get().body().data = buffer_.data();
        responseParser_->get().body().size = buffer_.size();
        upstream_.expires_after(idle_);
        beast_http::async_read(upstream_, upstreamBuffer_, *responseParser_,
                               [self = this->shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                   if (ec == beast_http::error::need_buffer) ec = {};
                                   // The answer is under way: all the client can be told
                                   // now is that it was cut short.
                                   if (ec) return self->end(false);
                                   self->response_.body().data = self->buffer_.data();
                                   self->response_.body().size =
                                       self->buffer_.size() - self->responseParser_->get().body().size;
                                   self->response_.body().more = !self->responseParser_->is_done();
                                   self->writeResponseBody();
                               });
    }

    void writeResponseBody() {
        clientTcp().expires_after(idle_);
        beast_http::async_write(client_, *responseSerializer_,
                                [self = this->shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                    if (ec == beast_http::error::need_buffer) ec = {};
                                    if (ec) return self->end(false);
                                    self->relayResponseBody();
                                });
    }

    // 101: the upstream's answer goes to the client as it came, then the
    // connection is a byte pipe both ways, bytes already buffered first.
    void switchProtocols() {
        headerSent_ = true;
        beast_http::response<beast_http::empty_body> answer;
        answer.base() = responseParser_->get().base();
        auto shared = std::make_shared<beast_http::response<beast_http::empty_body>>(std::move(answer));
        clientTcp().expires_after(idle_);
        beast_http::async_write(client_, *shared,
                                [self = this->shared_from_this(), shared](boost::beast::error_code ec, std::size_t) {
                                    if (ec) return self->end(false);
                                    self->startTunnel();
                                });
    }

    void startTunnel() {
        clientTcp().expires_never();
        upstream_.expires_never();
        auto pending = std::make_shared<int>(2);
        auto self = this->shared_from_this();
        auto done = [self, pending] {
            if (--*pending == 0) self->end(false);
        };
        // Client to upstream, starting with what the client's buffer holds.
        pump(client_, clientBuffer_, upstream_, clientToUpstream_, done);
        pump(upstream_, upstreamBuffer_, client_, upstreamToClient_, done);
    }

    // Copies `from` to `to` until `from` ends, then ends `to`'s sending side.
    template <class From, class To, class Done>
    void pump(From& from, boost::beast::flat_buffer& leftover, To& to, std::array<char, 16384>& scratch, Done done) {
        auto self = this->shared_from_this();
        if (leftover.size() > 0) {
            auto bytes = std::make_shared<std::string>(static_cast<const char*>(leftover.data().data()),
                                                       leftover.size());
            leftover.consume(leftover.size());
            boost::asio::async_write(to, boost::asio::buffer(*bytes),
                                     [self, &from, &leftover, &to, &scratch, done, bytes](boost::beast::error_code ec,
                                                                                         std::size_t) {
                                         if (ec) return self->closeBoth(done);
                                         self->pump(from, leftover, to, scratch, done);
                                     });
            return;
        }
        from.async_read_some(boost::asio::buffer(scratch), [self, &from, &leftover, &to, &scratch, done](
                                                               boost::beast::error_code ec, std::size_t n) {
            if (ec) {
                boost::system::error_code ignored;
                boost::beast::get_lowest_layer(to).socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send,
                                                                     ignored);
                return done();
            }
            boost::asio::async_write(to, boost::asio::buffer(scratch.data(), n),
                                     [self, &from, &leftover, &to, &scratch, done](boost::beast::error_code ec,
                                                                                  std::size_t) {
                                         if (ec) return self->closeBoth(done);
                                         self->pump(from, leftover, to, scratch, done);
                                     });
        });
    }

    template <class Done>
    void closeBoth(Done done) {
        boost::system::error_code ignored;
        upstream_.socket().close(ignored);
        clientTcp().socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
        done();
    }

    // Before the answer began, the client is owed one: 504 when the
    // upstream was silent too long, else 502.
    void upstreamFailed(boost::beast::error_code ec) {
        if (headerSent_) return end(false);
        const bool timeout = ec == boost::beast::error::timeout;
        RelayEnd result;
        result.status = timeout ? 504 : 502;
        result.requestBodyRead = requestBodyRead_;
        result.answer = errorResponse(
            timeout ? beast_http::status::gateway_timeout : beast_http::status::bad_gateway,
            timeout ? "ContainerTimeout" : "ContainerUnreachable",
            timeout ? "The session's container did not answer within " + std::to_string(idle_.count()) + " seconds."
                    : "The session's container closed the connection without an answer: " + ec.message() + ".");
        finish(std::move(result));
    }

    void end(bool reusable) {
        RelayEnd result;
        result.status = status_;
        result.reusable = reusable;
        result.requestBodyRead = requestBodyRead_;
        finish(std::move(result));
    }

    void finish(RelayEnd result) {
        if (ending_) return;
        ending_ = true;
        boost::system::error_code ignored;
        upstream_.socket().close(ignored);
        // The client's stream and buffer are its connection's, which may go
        // once told: a read of the request body still pending ends first.
        if (clientReading_) {
            deferredEnd_ = std::move(result);
            clientTcp().socket().cancel(ignored);
            return;
        }
        deliver(std::move(result));
    }

    void deliver(RelayEnd result) {
        if (finished_) std::exchange(finished_, nullptr)();
        std::exchange(onEnd_, nullptr)(std::move(result));
    }

    ClientStream& client_;
    boost::beast::flat_buffer& clientBuffer_;
    beast_http::request_parser<beast_http::buffer_body> requestParser_;
    std::string target_;
    std::string remote_;
    bool tls_;
    bool clientKeepAlive_;
    std::chrono::seconds idle_;
    boost::beast::tcp_stream upstream_;
    std::function<void()> finished_;
    std::function<void(RelayEnd)> onEnd_;

    beast_http::request<beast_http::buffer_body> request_;
    std::optional<beast_http::request_serializer<beast_http::buffer_body>> requestSerializer_;
    boost::beast::flat_buffer upstreamBuffer_;
    std::optional<beast_http::response_parser<beast_http::buffer_body>> responseParser_;
    beast_http::response<beast_http::buffer_body> response_;
    std::optional<beast_http::response_serializer<beast_http::buffer_body>> responseSerializer_;
    std::array<char, 65536> buffer_{};         // the answer's body
    std::array<char, 65536> requestBuffer_{};  // the request's, relayed at the same time
    std::array<char, 16384> clientToUpstream_{};
    std::array<char, 16384> upstreamToClient_{};
    bool upgrade_ = false;
    bool requestBodyRead_ = false;
    bool headerSent_ = false;
    bool answerStarted_ = false;       // the upstream's answer header arrived
    bool clientReading_ = false;       // a read of the request body is pending
    bool ending_ = false;              // finish() was called
    std::optional<RelayEnd> deferredEnd_;  // until that read is over
    bool requestWriteFailed_ = false;  // the upstream stopped reading the request
    bool reusable_ = false;
    unsigned status_ = 0;
};

}  // namespace sessiond::http
