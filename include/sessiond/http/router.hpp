#pragma once
// Maps (method, path) to a handler. Patterns are literal segments and {name}
// segments; a final {name*} captures the rest of the path. Each route may carry
// options the server applies before it reads the request body.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sessiond/http/message.hpp"

namespace sessiond::http {

// Which request body limit a route gets; the server resolves it against
// HttpConfig (see resolveBodyLimit in server.hpp).
enum class BodyLimit {
    Default,  // http.maxBodyBytes: JSON requests
    Upload,   // http.maxUploadBytes plus room for the multipart framing
};

// Who may call a route when API keys are configured (see api/authorizer.hpp).
enum class Access {
    Public,             // anyone: liveness
    SessionExecutor,    // the data plane, and reading pools
    PoolAdministrator,  // creating, changing and deleting pools
};

struct RouteOptions {
    BodyLimit bodyLimit = BodyLimit::Default;
    Access access = Access::SessionExecutor;
};

class Router {
public:
    void add(beast_http::verb method, const std::string& pattern, Handler handler, RouteOptions options = {});

    struct Match {
        const Handler* handler = nullptr;  // null: see allowedMethods
        std::string allowedMethods;         // non-empty when the path exists with other methods
        RouteOptions options;               // the matched route's; defaults when none matched
        // The matched route's pattern as added ("/pools/{pool}/code/execute");
        // for a path served with other methods, the first such route's; empty
        // when no route has the path.
        std::string pattern;
    };
    // Fills request.params on success.
    Match match(Request& request) const;

    // Every route as (method, pattern), in the order added: what the server
    // really serves, for the check of docs/openapi.json.
    std::vector<std::pair<beast_http::verb, std::string>> routes() const;

private:
    struct Route {
        beast_http::verb method;
        std::string pattern;  // normalised: "/" and the segments
        std::vector<std::string> segments;
        Handler handler;
        RouteOptions options;
    };
    static bool matches(const Route& route, const std::vector<std::string>& segments,
                        std::map<std::string, std::string>* params);
    std::vector<Route> routes_;
};

// Splits a request target into request.path (duplicate slashes collapsed,
// not decoded) and request.query (decoded; the first of repeated keys wins).
void parseTarget(std::string_view target, Request& request);

// The server's answer to a request no route takes: 405 MethodNotAllowed (with
// an Allow header) when the path exists with other methods, else 404
// NotFound; nullopt when `match` has a handler.
std::optional<Response> unmatchedResponse(const Request& request, const Router::Match& match);

// Splits "/a//b/c" into {"a","b","c"}; segments are percent-decoded.
std::vector<std::string> splitPath(const std::string& path);
std::string percentDecode(std::string_view text, bool plusIsSpace);
// Every byte but RFC 3986's unreserved characters as %XX: safe as a query
// value or a path segment.
std::string percentEncode(std::string_view text);

}  // namespace sessiond::http
