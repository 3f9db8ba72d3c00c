#pragma once
// The HTTP/1.1 front end (Boost.Beast): a listener, and one session object per
// connection that owns its socket and buffer and chains its async handlers.
// It knows nothing of pools or sessions: requests go to the Router.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "sessiond/config.hpp"
#include "sessiond/http/router.hpp"

namespace sessiond::http {

// Room an Upload route's body gets beyond http.maxUploadBytes, for the
// multipart boundaries and part headers around the file.
inline constexpr std::uint64_t kUploadFramingBytes = 64 * 1024;

// The body limit, in bytes, a route with this option gets.
std::uint64_t resolveBodyLimit(BodyLimit limit, const HttpConfig& config);

// Reads each request's header first, matches the route, then reads the body
// with that route's limit (413 RequestBodyTooLarge past it, at once when the
// Content-Length says so), answering "Expect: 100-continue" before reading it.
class HttpServer {
public:
    HttpServer(boost::asio::io_context& io, const HttpConfig& config, const Router& router);
    ~HttpServer();

    // Binds and starts accepting. Throws on bind failure. Port 0 picks a free port.
    void listen(const std::string& address, std::uint16_t port);
    std::uint16_t port() const;

    // Stops accepting, closes idle connections, lets in-flight requests finish
    // (their connections close after the answer) and calls `onDrained` once no
    // connection is left, or when `deadline` passes.
    void stop(std::chrono::milliseconds deadline, std::function<void()> onDrained);

    std::size_t openConnections() const;

    struct State;

private:
    std::shared_ptr<State> state_;
};

}  // namespace sessiond::http
