#pragma once
// The HTTP/1.1 front end (Boost.Beast): a listener, plain or HTTPS, and one
// session object per connection that owns its stream and buffer and chains its
// async handlers. It knows nothing of pools or sessions: requests go to the
// Router, after the Admission check.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio.hpp>

#include "sessiond/config.hpp"
#include "sessiond/http/forward.hpp"
#include "sessiond/http/router.hpp"

namespace sessiond::http {

// Room an Upload route's body gets beyond http.maxUploadBytes, for the
// multipart boundaries and part headers around the file.
inline constexpr std::uint64_t kUploadFramingBytes = 64 * 1024;

// The body limit, in bytes, a route with this option gets.
std::uint64_t resolveBodyLimit(BodyLimit limit, const HttpConfig& config);

// Decides, from a request's header alone (the body is not read yet), whether
// to serve it: std::nullopt serves it; a response refuses it, and is sent
// without reading the body (the connection then closes, as sendAndClose does).
// Called for every request, matched or not; `route` is the matched route's
// options, or the defaults when no route matches. It may set the request's
// principal.
using Admission = std::function<std::optional<Response>(Request& request, const RouteOptions& route)>;

// Told of every answer the server sends to a request whose header it read:
// the matched route's pattern (Router::Match::pattern: "" when no route has
// the path), the status, and the time since the request was read (as the
// debug log shows it). For metrics; never given a header's value.
using AnswerObserver = std::function<void(const Request& request, std::string_view routePattern, unsigned status,
                                          std::chrono::nanoseconds elapsed)>;

// Reads each request's header first, matches the route, asks the admission,
// then reads the body with that route's limit (413 RequestBodyTooLarge past it,
// at once when the Content-Length says so), answering "Expect: 100-continue"
// before reading it.
class HttpServer {
public:
    HttpServer(boost::asio::io_context& io, const HttpConfig& config, const Router& router, Admission admission = {},
               AnswerObserver observer = {});
    ~HttpServer();

    // Binds and starts accepting. Throws on bind failure. Port 0 picks a free port.
    // With `tls` the listener speaks HTTPS only (TLS 1.2 or later); the
    // certificate chain and key are read here, and a file that cannot be read
    // or a key that does not match throws a std::runtime_error naming the file.
    void listen(const std::string& address, std::uint16_t port, const std::optional<TlsConfig>& tls = std::nullopt);
    std::uint16_t port() const;

    // Requests the forwarder claims bypass the router (forward.hpp).
    void setForwarder(Forwarder forwarder);

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
