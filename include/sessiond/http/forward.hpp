#pragma once
// Requests the server forwards whole to another HTTP server instead of
// answering them itself: a custom container pool's (docs/custom-containers.md).
// The API decides from a request's header alone which requests those are and
// where they go; the server relays them (src/http/relay.hpp), streaming both
// bodies, and after a 101 Switching Protocols (a WebSocket) every byte both
// ways until one side closes.

#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "sessiond/http/message.hpp"
#include "sessiond/http/router.hpp"

namespace sessiond::http {

// Where a forwarded request goes: a connected socket, and what to call
// (exactly once) when the exchange is over, successful or not.
struct Upstream {
    boost::asio::ip::tcp::socket socket;
    std::function<void()> finished;
};

// An upstream, or the answer to send instead (no session, no container).
using UpstreamHandler = std::function<void(std::variant<Upstream, Response>)>;

struct Forward {
    std::string target;        // the request target upstream: path and query
    std::string routePattern;  // what the metrics and logs call it
    RouteOptions options;      // who may call it (the admission sees these)
    // Called once the admission let the request in, on the io thread.
    std::function<void(Request& header, UpstreamHandler onUpstream)> connect;
};

// Decides from a request's header (its path and query parsed) whether it is
// forwarded; std::nullopt: the router serves it. It may set request.params,
// as a route's pattern would, for the observers.
using Forwarder = std::function<std::optional<Forward>(Request& header)>;

}  // namespace sessiond::http
