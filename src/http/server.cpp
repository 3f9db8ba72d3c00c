#include "sessiond/http/server.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>
#include <type_traits>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include "relay.hpp"

namespace sessiond::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

// What the server asks of a connection, whatever its stream.
class ConnectionBase {
public:
    virtual ~ConnectionBase() = default;
    // Idle connections close at once; busy ones after their answer.
    virtual void shutdown() = 0;
};

struct HttpServer::State {
    asio::io_context& io;
    HttpConfig config;
    const Router& router;
    Admission admission;
    AnswerObserver observer;
    Forwarder forwarder;
    std::optional<ssl::context> tls;  // set: the listener speaks HTTPS only
    tcp::acceptor acceptor;
    std::set<ConnectionBase*> connections;
    bool stopping = false;
    std::function<void()> onDrained;
    std::optional<asio::steady_timer> drainDeadline;

    State(asio::io_context& io, const HttpConfig& config, const Router& router, Admission admission,
          AnswerObserver observer)
        : io(io),
          config(config),
          router(router),
          admission(std::move(admission)),
          observer(std::move(observer)),
          acceptor(io) {}

    void connectionClosed(ConnectionBase* connection);
    void maybeDrained();
};

namespace {

// How long a closing TLS connection waits for the client's close_notify.
constexpr auto kTlsCloseTimeout = std::chrono::seconds(1);
// How long a refused request's connection goes on reading what the client
// still sends, so that the answer is not lost to a connection reset.
constexpr auto kDrainTimeout = std::chrono::seconds(2);

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// One connection's HTTP, the same over both streams (as Beast's
// advanced_server_flex): only the TLS handshake and close_notify differ.
// Timeouts and the socket itself are always the lowest layer's, the TCP stream.
template <class Stream>
class Connection : public ConnectionBase, public std::enable_shared_from_this<Connection<Stream>> {
    static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

public:
    // `streamArgs` follow the socket in Stream's constructor (the TLS context).
    template <class... StreamArgs>
    Connection(std::shared_ptr<HttpServer::State> server, tcp::socket socket, StreamArgs&... streamArgs)
        : stream_(std::move(socket), streamArgs...), server_(std::move(server)) {
        boost::system::error_code ec;
        auto endpoint = tcp().socket().remote_endpoint(ec);
        if (!ec) remote_ = endpoint.address().to_string();
        server_->connections.insert(this);
    }
    ~Connection() override { server_->connectionClosed(this); }

    // Past the connection cap the client gets a 503 (over TLS, after the handshake).
    void start(bool overCapacity) {
        if constexpr (kTls) {
            // A client that says nothing gets as long as for a request's header.
            tcp().expires_after(server_->config.readTimeout);
            stream_.async_handshake(ssl::stream_base::server,
                                    [self = this->shared_from_this(), overCapacity](beast::error_code ec) {
                                        if (ec) {
                                            // Scanners, plain HTTP and old clients end here:
                                            // not the operator's problem, so no warning.
                                            spdlog::debug("tls handshake with {} failed: {}", self->remote_, ec.message());
                                            return self->closeSocket();
                                        }
                                        self->serve(overCapacity);
                                    });
        } else {
            serve(overCapacity);
        }
    }

    void shutdown() override {
        // Cancelling the pending read (or handshake) leads its handler to close().
        if (!busy_) tcp().cancel();
    }

private:
    beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

    void serve(bool overCapacity) {
        if (overCapacity) return rejectOverCapacity();
        readRequest(server_->config.readTimeout);
    }

    void rejectOverCapacity() {
        auto response = std::make_shared<Response>(errorResponse(
            beast_http::status::service_unavailable, "TooManyConnections", "The server has too many open connections; retry later."));
        response->keep_alive(false);
        tcp().expires_after(std::chrono::seconds(5));
        beast_http::async_write(stream_, *response,
                                [self = this->shared_from_this(), response](beast::error_code, std::size_t) { self->close(); });
    }

    // The header first: the route it names decides the body limit.
    void readRequest(std::chrono::seconds timeout) {
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(server_->config.maxHeaderBytes));
        // Beast checks Content-Length against the body limit while parsing the
        // header, before the route is known: onHeader checks it instead.
        parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
        tcp().expires_after(timeout);
        beast_http::async_read_header(stream_, buffer_, *parser_,
                                      [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->onHeader(ec); });
    }

    void onHeader(beast::error_code ec) {
        if (ec) return onReadError(ec);
        const auto& header = parser_->get();
        version_ = header.version();
        keepAlive_ = header.keep_alive();
        started_ = std::chrono::steady_clock::now();
        request_ = std::make_shared<Request>();
        request_->remoteAddress = remote_;
        // The header alone, for the router and the admission; onRead replaces
        // it with the whole message.
        request_->message.base() = header.base();
        parseTarget(header.target(), *request_);
        if (server_->forwarder)
            if (auto forward = server_->forwarder(*request_)) return startForward(std::move(*forward));
        match_ = server_->router.match(*request_);
        routePattern_ = match_.pattern;
        // Unknown routes and wrong methods get the defaults: they read their
        // body with the default limit and are answered 404/405 after it.
        RouteOptions route = match_.handler ? match_.options : RouteOptions{};
        // Before any body limit or 100 Continue: a refused client is never
        // invited to send its body, nor is it read.
        if (server_->admission)
            if (auto refusal = server_->admission(*request_, route)) return refuse(std::move(*refusal));
        bodyLimitKind_ = route.bodyLimit;
        bodyLimit_ = resolveBodyLimit(bodyLimitKind_, server_->config);
        if (auto length = parser_->content_length(); length && *length > bodyLimit_) return sendAndClose(bodyTooLarge());
        parser_->body_limit(bodyLimit_);  // enforced as chunks arrive
        tcp().expires_after(server_->config.readTimeout);
        if (parser_->is_done()) return onRead({});
        auto expect = header[beast_http::field::expect];
        if (version_ >= 11 && beast::iequals(expect, "100-continue")) {
            // Beast does not answer Expect itself; without this, curl waits a
            // second before sending a large upload.
            static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            asio::async_write(stream_, asio::buffer(kContinue),
                              [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                                  if (ec) return self->close();
                                  self->readBody();
                              });
            return;
        }
        readBody();
    }

    // A forwarded request (forward.hpp): admitted like a routed one, then,
    // once the upstream is connected, relayed with its body unread so far.
    void startForward(Forward forward) {
        routePattern_ = forward.routePattern;
        if (server_->admission)
            if (auto refusal = server_->admission(*request_, forward.options)) return refuse(std::move(*refusal));
        busy_ = true;
        // Finding the session may wait for its sandbox to start.
        tcp().expires_never();
        forward.connect(*request_, [self = this->shared_from_this(), target = std::move(forward.target)](
                                       std::variant<Upstream, Response> outcome) mutable {
            asio::dispatch(self->stream_.get_executor(), [self, target = std::move(target),
                                                          outcome = std::move(outcome)]() mutable {
                self->onUpstream(std::move(target), std::move(outcome));
            });
        });
    }

    void onUpstream(std::string target, std::variant<Upstream, Response> outcome) {
        if (auto* answer = std::get_if<Response>(&outcome)) return refuse(std::move(*answer));
        auto relay = std::make_shared<Relay<Stream>>(
            stream_, buffer_, std::move(*parser_), std::move(target), remote_, kTls, keepAlive_ && !server_->stopping,
            server_->config.forwardIdleTimeout, std::move(std::get<Upstream>(outcome)),
            [self = this->shared_from_this()](RelayEnd end) { self->onRelayEnd(std::move(end)); });
        relay->start();
    }

    void onRelayEnd(RelayEnd end) {
        if (end.answer) {
            if (!end.requestBodyRead) return sendAndClose(std::move(*end.answer));
            keepAlive_ = false;  // the parser that knew where the request ended is gone
            return respond(*request_, std::move(*end.answer));
        }
        logAnswer(*request_, end.status);
        busy_ = false;
        // The container answered before it read the whole request body.
        if (!end.requestBodyRead && !server_->stopping) return closeAfterDraining();
        if (!end.reusable || server_->stopping) return close();
        readRequest(server_->config.keepAliveTimeout);
    }

    void readBody() {
        beast_http::async_read(stream_, buffer_, *parser_,
                               [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->onRead(ec); });
    }

    // An answer in place of serving the request: the admission's refusal, or
    // a forwarded request's when no upstream could be had. With no body to
    // come the connection stays usable,
    // as after any answer; with one, the body is not read and the connection
    // closes after the answer.
    void refuse(Response response) {
        if (!parser_->is_done()) return sendAndClose(std::move(response));
        auto request = std::move(request_);
        match_ = {};
        busy_ = true;
        respond(*request, std::move(response));
    }

    Response bodyTooLarge() const {
        std::string message = "The request body exceeds the limit of " + std::to_string(bodyLimit_) + " bytes.";
        if (bodyLimitKind_ == BodyLimit::Upload)
            message = "The request body exceeds the upload limit of " + std::to_string(server_->config.maxUploadBytes) +
                      " bytes (plus " + std::to_string(kUploadFramingBytes) + " bytes for the multipart framing).";
        return errorResponse(beast_http::status::payload_too_large, "RequestBodyTooLarge", message);
    }

    void onReadError(beast::error_code ec) {
        // Many TLS clients leave without a close_notify (stream_truncated).
        if (ec == beast_http::error::end_of_stream || ec == asio::error::operation_aborted ||
            ec == beast::error::timeout || ec == asio::error::connection_reset || ec == asio::error::eof ||
            ec == ssl::error::stream_truncated)
            return close();
        // Nothing can be answered over a broken TLS session.
        if (ec.category() == asio::error::get_ssl_category()) {
            spdlog::debug("tls error from {}: {}", remote_, ec.message());
            return close();
        }
        if (ec == beast_http::error::body_limit) return sendAndClose(bodyTooLarge());
        if (ec == beast_http::error::header_limit)
            return sendAndClose(errorResponse(beast_http::status::request_header_fields_too_large,
                                              "RequestHeadersTooLarge",
                                              "The request headers exceed the limit of " +
                                                  std::to_string(server_->config.maxHeaderBytes) + " bytes."));
        if (!tcp().socket().is_open()) return close();
        return sendAndClose(errorResponse(beast_http::status::bad_request, "MalformedRequest",
                                          "The HTTP request could not be parsed: " + ec.message()));
    }

    void onRead(beast::error_code ec) {
        if (ec) return onReadError(ec);

        auto request = std::move(request_);
        request->message = parser_->release();
        keepAlive_ = request->message.keep_alive();
        version_ = request->message.version();
        busy_ = true;
        tcp().expires_never();
        started_ = std::chrono::steady_clock::now();

        auto match = std::move(match_);
        match_ = {};
        if (auto unmatched = unmatchedResponse(*request, match)) return respond(*request, std::move(*unmatched));
        // The responder keeps this connection alive until the handler answers,
        // however long the execution takes; it may be called only once.
        auto answered = std::make_shared<bool>(false);
        (*match.handler)(*request, [self = this->shared_from_this(), request, answered](Response response) {
            if (*answered) return;
            *answered = true;
            asio::dispatch(self->stream_.get_executor(), [self, request, response = std::move(response)]() mutable {
                self->respond(*request, std::move(response));
            });
        });
    }

    // Method, target, status, time and peer: never a header, since the
    // Authorization header carries API keys and logs are read by many.
    void logAnswer(const Request& request, unsigned status) const {
        const auto elapsed = std::chrono::steady_clock::now() - started_;
        spdlog::debug("http {} {} {} {}us from {}", std::string(request.message.method_string()),
                      std::string(request.message.target()), status,
                      std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count(), remote_);
        if (server_->observer) server_->observer(request, routePattern_, status, elapsed);
    }

    void respond(const Request& request, Response response) {
        logAnswer(request, response.result_int());
        if (request.message.method() == beast_http::verb::head) {
            // The header of the answer, without its body (RFC 9110 9.3.2): the
            // client reads none, and would take one for the next answer.
            const auto length = response.body().size();
            response.body().clear();
            response.content_length(length);
        }
        response.version(version_);
        response.set(beast_http::field::server, "sessiond");
        response.keep_alive(keepAlive_ && !server_->stopping);
        auto shared = std::make_shared<Response>(std::move(response));
        tcp().expires_after(server_->config.readTimeout);
        beast_http::async_write(stream_, *shared, [self = this->shared_from_this(), shared](beast::error_code ec, std::size_t) {
            self->busy_ = false;
            if (ec || !shared->keep_alive()) return self->close();
            self->readRequest(self->server_->config.keepAliveTimeout);
        });
    }

    // For requests the server refuses before reading them whole: answer, tell
    // the client nothing more comes, then drain what it is still sending, so
    // the answer is not lost to a connection reset.
    void sendAndClose(Response response) {
        if (request_) logAnswer(*request_, response.result_int());
        keepAlive_ = false;
        busy_ = true;
        response.version(version_);
        response.set(beast_http::field::server, "sessiond");
        response.keep_alive(false);
        auto shared = std::make_shared<Response>(std::move(response));
        tcp().expires_after(server_->config.readTimeout);
        beast_http::async_write(stream_, *shared, [self = this->shared_from_this(), shared](beast::error_code ec, std::size_t) {
            if (ec) return self->close();
            self->closeAfterDraining();
        });
    }

    // The answer is sent but the client may still be sending its request:
    // tell it nothing more comes, and read until it stops (or for a while).
    void closeAfterDraining() {
        auto drainRest = [self = this->shared_from_this()] {
            boost::system::error_code ignored;
            self->tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
            self->tcp().expires_after(kDrainTimeout);
            self->drain();
        };
        if constexpr (kTls)
            closeTls(kDrainTimeout, std::move(drainRest));
        else
            drainRest();
    }

    // Below TLS: the session is over, its bytes are only discarded.
    void drain() {
        auto scratch = std::make_shared<std::array<char, 16384>>();
        tcp().async_read_some(asio::buffer(*scratch), [self = this->shared_from_this(), scratch](beast::error_code ec, std::size_t) {
            if (ec) return self->close();
            self->drain();
        });
    }

    // Over TLS, a close_notify first, so the client can tell the end from a
    // truncation. (After a fatal TLS error OpenSSL refuses it at once.)
    void close() {
        if constexpr (kTls) {
            if (!tlsClosing_ && tcp().socket().is_open())
                return closeTls(kTlsCloseTimeout, [self = this->shared_from_this()] { self->closeSocket(); });
        }
        closeSocket();
    }

    // Sends close_notify, waits at most `timeout` for the client's, then `next`.
    template <class Next>
    void closeTls(std::chrono::seconds timeout, Next next) {
        tlsClosing_ = true;
        tcp().expires_after(timeout);
        stream_.async_shutdown([next = std::move(next)](beast::error_code) mutable { next(); });
    }

    void closeSocket() {
        boost::system::error_code ec;
        tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
        tcp().close();
    }

    Stream stream_;
    beast::flat_buffer buffer_;
    std::optional<beast_http::request_parser<beast_http::string_body>> parser_;
    std::shared_ptr<Request> request_;  // between header and body
    Router::Match match_;
    std::string routePattern_;  // the current request's, for the observer
    BodyLimit bodyLimitKind_ = BodyLimit::Default;
    std::uint64_t bodyLimit_ = 0;
    std::shared_ptr<HttpServer::State> server_;
    std::string remote_;
    bool keepAlive_ = false;
    bool busy_ = false;
    bool tlsClosing_ = false;
    unsigned version_ = 11;
    std::chrono::steady_clock::time_point started_;
};

}  // namespace

void HttpServer::State::connectionClosed(ConnectionBase* connection) {
    connections.erase(connection);
    maybeDrained();
}

void HttpServer::State::maybeDrained() {
    if (!stopping || !connections.empty() || !onDrained) return;
    auto done = std::move(onDrained);
    onDrained = nullptr;
    if (drainDeadline) drainDeadline->cancel();
    asio::post(io, std::move(done));
}

namespace {

template <class Stream, class... StreamArgs>
void launch(const std::shared_ptr<HttpServer::State>& state, tcp::socket socket, StreamArgs&... streamArgs) {
    bool full = state->connections.size() >= state->config.maxConnections;
    std::make_shared<Connection<Stream>>(state, std::move(socket), streamArgs...)->start(full);
}

void acceptLoop(std::shared_ptr<HttpServer::State> state) {
    state->acceptor.async_accept([state](boost::system::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || state->stopping) return;
        if (!ec) {
            socket.set_option(tcp::no_delay(true), ec);
            if (state->tls)
                launch<TlsStream>(state, std::move(socket), *state->tls);
            else
                launch<PlainStream>(state, std::move(socket));
        } else {
            spdlog::warn("accept failed: {}", ec.message());
        }
        acceptLoop(state);
    });
}

// TLS 1.2 and 1.3 only. For TLS 1.2, forward-secret AEAD suites in the
// server's order (TLS 1.3's own suites are all of that kind): a client that
// offers an old suite first still gets a modern one.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

ssl::context makeTlsContext(const TlsConfig& files) {
    ssl::context context(ssl::context::tls_server);
    SSL_CTX* native = context.native_handle();
    if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1)
        throw std::runtime_error("cannot configure TLS: this OpenSSL lacks TLS 1.2 or its AEAD cipher suites");
    SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
    // An encrypted key would make OpenSSL prompt on the terminal: it gets no
    // passphrase, and fails to load instead.
    context.set_password_callback([](std::size_t, ssl::context::password_purpose) { return std::string(); });

    std::string certificate = files.certificateFile.string(), key = files.privateKeyFile.string();
    // OpenSSL says only "asio.ssl error" of a file it cannot open.
    for (const std::string& file : {certificate, key})
        if (!std::ifstream(file))
            throw std::runtime_error("cannot read the TLS file " + file + ": " + std::strerror(errno));
    boost::system::error_code ec;
    context.use_certificate_chain_file(certificate, ec);
    if (ec) throw std::runtime_error("cannot load the TLS certificate chain from " + certificate + ": " + ec.message());
    context.use_private_key_file(key, ssl::context::pem, ec);
    if (ec) throw std::runtime_error("cannot load the TLS private key from " + key + ": " + ec.message());
    if (SSL_CTX_check_private_key(native) != 1)
        throw std::runtime_error("the TLS private key in " + key + " does not match the certificate in " + certificate);
    return context;
}

}  // namespace

std::uint64_t resolveBodyLimit(BodyLimit limit, const HttpConfig& config) {
    switch (limit) {
        case BodyLimit::Upload:
            return static_cast<std::uint64_t>(config.maxUploadBytes) + kUploadFramingBytes;
        case BodyLimit::Default:
            break;
    }
    return config.maxBodyBytes;
}

HttpServer::HttpServer(asio::io_context& io, const HttpConfig& config, const Router& router, Admission admission,
                       AnswerObserver observer)
    : state_(std::make_shared<State>(io, config, router, std::move(admission), std::move(observer))) {}

HttpServer::~HttpServer() {
    boost::system::error_code ec;
    state_->acceptor.close(ec);
}

void HttpServer::listen(const std::string& address, std::uint16_t port, const std::optional<TlsConfig>& tls) {
    // The files first: a bad certificate leaves nothing bound.
    if (tls) state_->tls.emplace(makeTlsContext(*tls));
    tcp::endpoint endpoint(asio::ip::make_address(address), port);
    state_->acceptor.open(endpoint.protocol());
    state_->acceptor.set_option(asio::socket_base::reuse_address(true));
    state_->acceptor.bind(endpoint);
    state_->acceptor.listen(asio::socket_base::max_listen_connections);
    acceptLoop(state_);
}

std::uint16_t HttpServer::port() const { return state_->acceptor.local_endpoint().port(); }

void HttpServer::setForwarder(Forwarder forwarder) { state_->forwarder = std::move(forwarder); }

std::size_t HttpServer::openConnections() const { return state_->connections.size(); }

void HttpServer::stop(std::chrono::milliseconds deadline, std::function<void()> onDrained) {
    state_->stopping = true;
    state_->onDrained = std::move(onDrained);
    boost::system::error_code ec;
    state_->acceptor.close(ec);
    for (ConnectionBase* connection : std::set<ConnectionBase*>(state_->connections)) connection->shutdown();
    state_->drainDeadline.emplace(state_->io, deadline);
    state_->drainDeadline->async_wait([state = state_](boost::system::error_code ec) {
        if (ec) return;
        if (state->onDrained) {
            spdlog::warn("{} connections still open at the shutdown deadline; closing them", state->connections.size());
            auto done = std::move(state->onDrained);
            state->onDrained = nullptr;
            done();
        }
    });
    state_->maybeDrained();
}

}  // namespace sessiond::http
