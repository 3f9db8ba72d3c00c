#include "route_support.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <random>

#include "sessiond/identifier.hpp"

namespace sessiond::api {

Pool* findPool(PoolManager& pools, const http::Request& request, const http::Responder& respond) {
    const std::string& name = request.params.at("pool");
    Pool* pool = pools.find(name);
    if (!pool)
        respond(errorResponse(status::not_found, "SessionPoolNotFound", "There is no session pool named '" + name + "'."));
    return pool;
}

std::optional<std::string> sessionIdentifier(const http::Request& request, const std::optional<std::string>& fromBody,
                                             const http::Responder& respond) {
    const std::string* fromQuery = request.queryValue("identifier");
    std::optional<std::string> identifier = fromQuery ? std::optional<std::string>(*fromQuery) : fromBody;
    if (!identifier) {
        respond(errorResponse(status::bad_request, "SessionRequestValidationFailed",
                              "The query parameter 'identifier' (the session identifier) is required."));
        return std::nullopt;
    }
    if (!isValidSessionIdentifier(*identifier)) {
        respond(errorResponse(status::bad_request, "SessionRequestValidationFailed",
                              "The session identifier must be 4 to 128 characters: letters, digits or | - & ^ % $ # ( ) "
                              "{ } [ ] ; < > _."));
        return std::nullopt;
    }
    return identifier;
}

http::Response poolErrorResponse(PoolError error, const std::string& message) {
    switch (error) {
        case PoolError::CapacityExceeded:
            // Azure answers 404 when a pool allocates no more sessions.
            return errorResponse(status::not_found, "SessionPoolCapacityExceeded", message);
        case PoolError::ShuttingDown:
            return errorResponse(status::service_unavailable, "ServiceShuttingDown", message);
        case PoolError::SandboxUnavailable:
        case PoolError::None:
            break;
    }
    return errorResponse(status::service_unavailable, "SessionUnavailable", message);
}

bool apiVersionAtLeast(const http::Request& request, const std::string& version) {
    const std::string* given = request.queryValue("api-version");
    return !given || given->empty() || *given >= version;
}

std::string mediaType(const http::Request& request) {
    auto it = request.message.find(beast_http::field::content_type);
    if (it == request.message.end()) return "";
    std::string type(it->value());
    type = type.substr(0, type.find(';'));
    type.erase(std::remove_if(type.begin(), type.end(), [](unsigned char c) { return std::isspace(c); }), type.end());
    std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
    return type;
}

std::string newUuid() {
    thread_local std::mt19937_64 random{std::random_device{}()};
    std::uint64_t high = random(), low = random();
    high = (high & ~0xf000ull) | 0x4000ull;                  // version 4
    low = (low & ~(0xc000ull << 48)) | (0x8000ull << 48);    // RFC 4122 variant
    char text[37];
    std::snprintf(text, sizeof text, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(high >> 32),
                  static_cast<unsigned>((high >> 16) & 0xffff), static_cast<unsigned>(high & 0xffff),
                  static_cast<unsigned>(low >> 48), static_cast<unsigned long long>(low & 0xffffffffffffull));
    return text;
}

}  // namespace sessiond::api
