#pragma once
// Decides, from a request's header, whether its API key may call the route
// (the HTTP server asks before it reads the body). With no keys configured
// every request is let through: the daemon then listens on loopback only.
//
//   401 AuthenticationFailed        no "Authorization: Bearer <key>"
//   401 InvalidAuthenticationToken  a key that is not configured
//   403 AuthorizationFailed         a SessionExecutor key on a pool administration
//                                   route, or a key limited to other pools
//
// Keys never reach a log: refusals log the route, the peer and the key's name.

#include <memory>
#include <optional>

#include "sessiond/auth/api_keys.hpp"
#include "sessiond/http/message.hpp"
#include "sessiond/http/router.hpp"

namespace sessiond::api {

class Authorizer {
public:
    explicit Authorizer(ApiKeyRing keys) : keys_(std::move(keys)) {}

    // Sets the request's principal to the name of the key it presented, when
    // that key is configured.
    std::optional<http::Response> admit(http::Request& request, const http::RouteOptions& route) const;

    // Takes a new set of keys (SIGHUP re-reads the key file).
    void replaceKeys(ApiKeyRing keys) { keys_ = std::move(keys); }
    const ApiKeyRing& keys() const { return keys_; }

private:
    ApiKeyRing keys_;
};

}  // namespace sessiond::api
