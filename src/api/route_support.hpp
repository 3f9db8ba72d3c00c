#pragma once
// What the Azure route handlers share: finding the pool and the session
// identifier, and turning pool errors into Azure's error responses.

#include <optional>
#include <string>

#include "sessiond/http/dates.hpp"
#include "sessiond/http/message.hpp"
#include "sessiond/pool/pool.hpp"

namespace sessiond::api {

namespace beast_http = boost::beast::http;
using status = beast_http::status;
using http::errorResponse;
using http::jsonResponse;
using http::Request;
using http::Responder;

// The pool named by the route's {pool}; answers 404 and returns null if none.
Pool* findPool(PoolManager& pools, const http::Request& request, const http::Responder& respond);

// The identifier from the query, or from the body where legacy clients put
// it; answers 400 and returns nullopt if it is missing or malformed.
std::optional<std::string> sessionIdentifier(const http::Request& request, const std::optional<std::string>& fromBody,
                                             const http::Responder& respond);

http::Response poolErrorResponse(PoolError error, const std::string& message);

// Whether the request's api-version is `version` or later (dates compare as
// strings). A request without one counts as the newest.
bool apiVersionAtLeast(const http::Request& request, const std::string& version);

// A Content-Type's media type, lower case, without parameters.
std::string mediaType(const http::Request& request);

using http::httpDate;
using http::isoTime;

}  // namespace sessiond::api

namespace sessiond::api {

// A random RFC 4122 version-4 UUID, for execution ids.
std::string newUuid();

}  // namespace sessiond::api
