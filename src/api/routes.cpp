#include "sessiond/api/routes.hpp"

#include <algorithm>
#include <cctype>

#include <spdlog/spdlog.h>

#include "sessiond/api/execute_request.hpp"
#include "sessiond/identifier.hpp"

namespace sessiond::api {

namespace beast_http = boost::beast::http;
using http::errorResponse;
using http::jsonResponse;
using http::Request;
using http::Responder;
using status = beast_http::status;

namespace {

constexpr const char* kTimeoutMessage = "Request timed out waiting for code execution to complete";

Pool* findPool(PoolManager& pools, const Request& request, const Responder& respond) {
    const std::string& name = request.params.at("pool");
    Pool* pool = pools.find(name);
    if (!pool)
        respond(errorResponse(status::not_found, "SessionPoolNotFound", "There is no session pool named '" + name + "'."));
    return pool;
}

bool isJsonContentType(const Request& request) {
    auto it = request.message.find(beast_http::field::content_type);
    if (it == request.message.end()) return true;  // curl and some clients omit it; the body decides
    std::string type(it->value());
    std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
    type = type.substr(0, type.find(';'));
    type.erase(std::remove(type.begin(), type.end(), ' '), type.end());
    return type == "application/json" || type == "text/json";
}

// The identifier from the query, or from the body where legacy clients put it.
std::optional<std::string> sessionIdentifier(const Request& request, const std::optional<std::string>& fromBody,
                                             const Responder& respond) {
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

http::Response poolErrorResponse(const PoolExecuteOutcome& outcome) {
    switch (outcome.error) {
        case PoolError::CapacityExceeded:
            // Azure answers 404 when a pool allocates no more sessions.
            return errorResponse(status::not_found, "SessionPoolCapacityExceeded", outcome.message);
        case PoolError::ShuttingDown:
            return errorResponse(status::service_unavailable, "ServiceShuttingDown", outcome.message);
        case PoolError::SandboxUnavailable:
        case PoolError::None:
            break;
    }
    return errorResponse(status::service_unavailable, "SessionUnavailable", outcome.message);
}

// The 2024-02-02-preview execution response (also used by 2024-08-02-preview).
nlohmann::json codeExecuteBody(const ExecuteResult& result) {
    std::string stderrText = result.stderrText;
    if (result.timedOut && stderrText.find(kTimeoutMessage) == std::string::npos)
        stderrText += (stderrText.empty() ? "" : "\n") + std::string(kTimeoutMessage);
    return {{"$id", "1"},
            {"properties",
             {{"$id", "2"},
              {"status", result.succeeded ? "Success" : "Failure"},
              {"stdout", result.stdoutText},
              {"stderr", stderrText},
              {"result", result.result},
              {"executionResult", result.result},
              {"executionTimeInMilliseconds", result.durationMs}}}};
}

void codeExecute(PoolManager& pools, Request& request, Responder respond) {
    Pool* pool = findPool(pools, request, respond);
    if (!pool) return;
    if (!isJsonContentType(request))
        return respond(errorResponse(status::unsupported_media_type, "UnsupportedMediaType",
                                     "The request body must be JSON (Content-Type: application/json)."));
    RequestError error;
    auto parsed = parseExecuteBody(request.message.body(), pool->config(), error);
    if (!parsed) return respond(errorResponse(status::bad_request, error.code, error.message));
    auto identifier = sessionIdentifier(request, parsed->identifier, respond);
    if (!identifier) return;

    pool->execute(*identifier, std::move(parsed->request), [respond](PoolExecuteOutcome outcome) {
        if (outcome.error != PoolError::None) return respond(poolErrorResponse(outcome));
        respond(jsonResponse(status::ok, codeExecuteBody(outcome.result)));
    });
}

}  // namespace

void addRoutes(http::Router& router, PoolManager& pools) {
    router.add(beast_http::verb::get, "/healthz",
               [](Request&, Responder respond) { respond(jsonResponse(status::ok, {{"status", "ok"}})); });

    router.add(beast_http::verb::get, "/pools", [&pools](Request&, Responder respond) {
        nlohmann::json list = nlohmann::json::array();
        for (Pool* pool : pools.all()) list.push_back(pool->describe());
        respond(jsonResponse(status::ok, {{"value", list}}));
    });

    router.add(beast_http::verb::get, "/pools/{pool}", [&pools](Request& request, Responder respond) {
        if (Pool* pool = findPool(pools, request, respond)) respond(jsonResponse(status::ok, pool->describe()));
    });

    router.add(beast_http::verb::post, "/pools/{pool}/code/execute",
               [&pools](Request& request, Responder respond) { codeExecute(pools, request, std::move(respond)); });
}

}  // namespace sessiond::api
