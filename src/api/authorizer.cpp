#include "sessiond/api/authorizer.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace sessiond::api {

namespace {

namespace beast_http = boost::beast::http;

// "Bearer <token>", the scheme in any case (RFC 7235).
std::optional<std::string_view> bearerToken(const http::Request& request) {
    auto header = request.message.find(beast_http::field::authorization);
    if (header == request.message.end()) return std::nullopt;
    std::string_view value = header->value();
    constexpr std::string_view kScheme = "bearer ";
    if (value.size() <= kScheme.size()) return std::nullopt;
    for (std::size_t i = 0; i < kScheme.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(value[i])) != kScheme[i]) return std::nullopt;
    value.remove_prefix(kScheme.size());
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
    if (value.empty()) return std::nullopt;
    return value;
}

http::Response unauthorized(const std::string& code, const std::string& message) {
    auto response = http::errorResponse(beast_http::status::unauthorized, code, message);
    response.set(beast_http::field::www_authenticate, "Bearer realm=\"sessiond\"");
    return response;
}

std::string describe(const http::Request& request) {
    // The path without the query: identifiers are secrets of their own.
    return std::string(request.message.method_string()) + " " + request.path + " from " + request.remoteAddress;
}

}  // namespace

std::optional<http::Response> Authorizer::admit(http::Request& request, const http::RouteOptions& route) const {
    if (keys_.empty()) return std::nullopt;
    auto token = bearerToken(request);
    const ApiKeyEntry* key = token ? keys_.find(*token) : nullptr;
    if (key) request.principal = key->name;
    if (route.access == http::Access::Public) return std::nullopt;
    if (!token) {
        spdlog::info("refused {}: no API key", describe(request));
        return unauthorized("AuthenticationFailed",
                            "This request needs an API key: send the header 'Authorization: Bearer <key>'.");
    }
    if (!key) {
        spdlog::info("refused {}: an unknown API key", describe(request));
        return unauthorized("InvalidAuthenticationToken", "The API key is not valid.");
    }
    if (route.access == http::Access::PoolAdministrator && key->role != Role::PoolAdministrator) {
        spdlog::info("refused {}: key '{}' is a SessionExecutor key", describe(request), key->name);
        return http::errorResponse(beast_http::status::forbidden, "AuthorizationFailed",
                                   "The API key '" + key->name +
                                       "' has the role SessionExecutor; pool administration needs PoolAdministrator.");
    }
    auto pool = request.params.find("pool");
    if (pool != request.params.end() && !key->pools.empty() &&
        std::find(key->pools.begin(), key->pools.end(), pool->second) == key->pools.end()) {
        spdlog::info("refused {}: key '{}' is not for pool {}", describe(request), key->name, pool->second);
        return http::errorResponse(beast_http::status::forbidden, "AuthorizationFailed",
                                   "The API key '" + key->name + "' may not use the session pool '" + pool->second + "'.");
    }
    return std::nullopt;
}

}  // namespace sessiond::api
