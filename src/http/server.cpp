#include "sessiond/http/server.hpp"

#include <array>
#include <limits>
#include <optional>
#include <set>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace sessiond::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

class Connection;

struct HttpServer::State {
    asio::io_context& io;
    HttpConfig config;
    const Router& router;
    tcp::acceptor acceptor;
    std::set<Connection*> connections;
    bool stopping = false;
    std::function<void()> onDrained;
    std::optional<asio::steady_timer> drainDeadline;

    State(asio::io_context& io, const HttpConfig& config, const Router& router)
        : io(io), config(config), router(router), acceptor(io) {}

    void connectionClosed(Connection* connection);
    void maybeDrained();
};

namespace {

// Splits the request target into a clean path and decoded query parameters.
void parseTarget(std::string_view target, Request& request) {
    std::size_t q = target.find('?');
    std::string_view rawPath = target.substr(0, q);
    request.path.clear();
    for (char c : rawPath)
        if (!(c == '/' && !request.path.empty() && request.path.back() == '/')) request.path.push_back(c);
    if (q == std::string_view::npos) return;
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
        std::size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        std::size_t eq = pair.find('=');
        std::string key = percentDecode(pair.substr(0, eq), true);
        std::string value = eq == std::string_view::npos ? "" : percentDecode(pair.substr(eq + 1), true);
        if (!key.empty()) request.query.emplace(std::move(key), std::move(value));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
}

}  // namespace

class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(tcp::socket socket, std::shared_ptr<HttpServer::State> server)
        : stream_(std::move(socket)), server_(std::move(server)) {
        boost::system::error_code ec;
        auto endpoint = stream_.socket().remote_endpoint(ec);
        if (!ec) remote_ = endpoint.address().to_string();
        server_->connections.insert(this);
    }
    ~Connection() { server_->connectionClosed(this); }

    void start() { readRequest(server_->config.readTimeout); }

    // Idle connections close at once; busy ones after their answer.
    void shutdown() {
        if (!busy_) {
            boost::system::error_code ec;
            stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
            stream_.close();
        }
    }

    void rejectOverCapacity() {
        auto response = std::make_shared<Response>(errorResponse(
            beast_http::status::service_unavailable, "TooManyConnections", "The server has too many open connections; retry later."));
        response->keep_alive(false);
        stream_.expires_after(std::chrono::seconds(5));
        beast_http::async_write(stream_, *response,
                                [self = shared_from_this(), response](beast::error_code, std::size_t) { self->close(); });
    }

private:
    // The header first: the route it names decides the body limit.
    void readRequest(std::chrono::seconds timeout) {
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(server_->config.maxHeaderBytes));
        // Beast checks Content-Length against the body limit while parsing the
        // header, before the route is known: onHeader checks it instead.
        parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
        stream_.expires_after(timeout);
        beast_http::async_read_header(stream_, buffer_, *parser_,
                                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onHeader(ec); });
    }

    void onHeader(beast::error_code ec) {
        if (ec) return onReadError(ec);
        const auto& header = parser_->get();
        version_ = header.version();
        request_ = std::make_shared<Request>();
        request_->remoteAddress = remote_;
        if (header.method() == beast_http::verb::unknown)
            request_->message.method_string(header.method_string());
        else
            request_->message.method(header.method());
        parseTarget(header.target(), *request_);
        match_ = server_->router.match(*request_);
        // Unknown routes and wrong methods read their body with the default
        // limit and are answered 404/405 after it, as before.
        bodyLimitKind_ = match_.handler ? match_.options.bodyLimit : BodyLimit::Default;
        bodyLimit_ = resolveBodyLimit(bodyLimitKind_, server_->config);
        if (auto length = parser_->content_length(); length && *length > bodyLimit_) return sendAndClose(bodyTooLarge());
        parser_->body_limit(bodyLimit_);  // enforced as chunks arrive
        stream_.expires_after(server_->config.readTimeout);
        if (parser_->is_done()) return onRead({});
        auto expect = header[beast_http::field::expect];
        if (version_ >= 11 && beast::iequals(expect, "100-continue")) {
            // Beast does not answer Expect itself; without this, curl waits a
            // second before sending a large upload.
            static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            asio::async_write(stream_, asio::buffer(kContinue),
                              [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                  if (ec) return self->close();
                                  self->readBody();
                              });
            return;
        }
        readBody();
    }

    void readBody() {
        beast_http::async_read(stream_, buffer_, *parser_,
                               [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onRead(ec); });
    }

    Response bodyTooLarge() const {
        std::string message = "The request body exceeds the limit of " + std::to_string(bodyLimit_) + " bytes.";
        if (bodyLimitKind_ == BodyLimit::Upload)
            message = "The request body exceeds the upload limit of " + std::to_string(server_->config.maxUploadBytes) +
                      " bytes (plus " + std::to_string(kUploadFramingBytes) + " bytes for the multipart framing).";
        return errorResponse(beast_http::status::payload_too_large, "RequestBodyTooLarge", message);
    }

    void onReadError(beast::error_code ec) {
        if (ec == beast_http::error::end_of_stream || ec == asio::error::operation_aborted ||
            ec == beast::error::timeout || ec == asio::error::connection_reset || ec == asio::error::eof)
            return close();
        if (ec == beast_http::error::body_limit) return sendAndClose(bodyTooLarge());
        if (ec == beast_http::error::header_limit)
            return sendAndClose(errorResponse(beast_http::status::request_header_fields_too_large,
                                              "RequestHeadersTooLarge",
                                              "The request headers exceed the limit of " +
                                                  std::to_string(server_->config.maxHeaderBytes) + " bytes."));
        if (!stream_.socket().is_open()) return close();
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
        stream_.expires_never();
        started_ = std::chrono::steady_clock::now();

        auto match = std::move(match_);
        match_ = {};
        if (!match.handler) {
            if (!match.allowedMethods.empty()) {
                auto response = errorResponse(beast_http::status::method_not_allowed, "MethodNotAllowed",
                                              "The method " + std::string(request->message.method_string()) +
                                                  " is not allowed on " + request->path + "; allowed: " +
                                                  match.allowedMethods + ".");
                response.set(beast_http::field::allow, match.allowedMethods);
                return respond(*request, std::move(response));
            }
            return respond(*request, errorResponse(beast_http::status::not_found, "NotFound",
                                                   "No route matches " + std::string(request->message.method_string()) +
                                                       " " + request->path + "."));
        }
        // The responder keeps this connection alive until the handler answers,
        // however long the execution takes; it may be called only once.
        auto answered = std::make_shared<bool>(false);
        (*match.handler)(*request, [self = shared_from_this(), request, answered](Response response) {
            if (*answered) return;
            *answered = true;
            asio::dispatch(self->stream_.get_executor(), [self, request, response = std::move(response)]() mutable {
                self->respond(*request, std::move(response));
            });
        });
    }

    void respond(const Request& request, Response response) {
        auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started_);
        spdlog::debug("http {} {} {} {}us from {}", std::string(request.message.method_string()),
                      std::string(request.message.target()), response.result_int(), elapsed.count(), remote_);
        response.version(version_);
        response.set(beast_http::field::server, "sessiond");
        response.keep_alive(keepAlive_ && !server_->stopping);
        auto shared = std::make_shared<Response>(std::move(response));
        stream_.expires_after(server_->config.readTimeout);
        beast_http::async_write(stream_, *shared, [self = shared_from_this(), shared](beast::error_code ec, std::size_t) {
            self->busy_ = false;
            if (ec || !shared->keep_alive()) return self->close();
            self->readRequest(self->server_->config.keepAliveTimeout);
        });
    }

    // For requests the server refuses before reading them whole: answer, then
    // drain what the client is still sending, so the answer is not lost to a
    // connection reset.
    void sendAndClose(Response response) {
        keepAlive_ = false;
        busy_ = true;
        response.version(version_);
        response.set(beast_http::field::server, "sessiond");
        response.keep_alive(false);
        auto shared = std::make_shared<Response>(std::move(response));
        stream_.expires_after(server_->config.readTimeout);
        beast_http::async_write(stream_, *shared, [self = shared_from_this(), shared](beast::error_code ec, std::size_t) {
            if (ec) return self->close();
            boost::system::error_code ignored;
            self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
            self->stream_.expires_after(std::chrono::seconds(2));
            self->drain();
        });
    }

    void drain() {
        auto scratch = std::make_shared<std::array<char, 16384>>();
        stream_.async_read_some(asio::buffer(*scratch), [self = shared_from_this(), scratch](beast::error_code ec, std::size_t) {
            if (ec) return self->close();
            self->drain();
        });
    }

    void close() {
        boost::system::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        stream_.close();
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<beast_http::request_parser<beast_http::string_body>> parser_;
    std::shared_ptr<Request> request_;  // between header and body
    Router::Match match_;
    BodyLimit bodyLimitKind_ = BodyLimit::Default;
    std::uint64_t bodyLimit_ = 0;
    std::shared_ptr<HttpServer::State> server_;
    std::string remote_;
    bool keepAlive_ = false;
    bool busy_ = false;
    unsigned version_ = 11;
    std::chrono::steady_clock::time_point started_;
};

void HttpServer::State::connectionClosed(Connection* connection) {
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
void acceptLoop(std::shared_ptr<HttpServer::State> state) {
    state->acceptor.async_accept([state](boost::system::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || state->stopping) return;
        if (!ec) {
            socket.set_option(tcp::no_delay(true), ec);
            bool full = state->connections.size() >= state->config.maxConnections;
            auto connection = std::make_shared<Connection>(std::move(socket), state);
            if (full)
                connection->rejectOverCapacity();
            else
                connection->start();
        } else {
            spdlog::warn("accept failed: {}", ec.message());
        }
        acceptLoop(state);
    });
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

HttpServer::HttpServer(asio::io_context& io, const HttpConfig& config, const Router& router)
    : state_(std::make_shared<State>(io, config, router)) {}

HttpServer::~HttpServer() {
    boost::system::error_code ec;
    state_->acceptor.close(ec);
}

void HttpServer::listen(const std::string& address, std::uint16_t port) {
    tcp::endpoint endpoint(asio::ip::make_address(address), port);
    state_->acceptor.open(endpoint.protocol());
    state_->acceptor.set_option(asio::socket_base::reuse_address(true));
    state_->acceptor.bind(endpoint);
    state_->acceptor.listen(asio::socket_base::max_listen_connections);
    acceptLoop(state_);
}

std::uint16_t HttpServer::port() const { return state_->acceptor.local_endpoint().port(); }

std::size_t HttpServer::openConnections() const { return state_->connections.size(); }

void HttpServer::stop(std::chrono::milliseconds deadline, std::function<void()> onDrained) {
    state_->stopping = true;
    state_->onDrained = std::move(onDrained);
    boost::system::error_code ec;
    state_->acceptor.close(ec);
    for (Connection* connection : std::set<Connection*>(state_->connections)) connection->shutdown();
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
