// Session management: GET and DELETE session, listSessions (2025-02-02-preview)
// and the pool-level .management routes (getSession, listSessions,
// stopSession). `expireAt` and `expiresAt`, `sessions` and `value` are both
// sent, since Azure's documents and clients disagree on the names.

#include <algorithm>
#include <string>

#include "route_groups.hpp"
#include "route_support.hpp"

namespace sessiond::api {

namespace {

constexpr std::size_t kPageSize = 300;

std::string iso(std::chrono::system_clock::time_point t) {
    return isoTime(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

nlohmann::json sessionBody(const SessionInfo& session) {
    return {{"identifier", session.identifier},
            {"etag", session.etag},
            {"createdAt", iso(session.createdAt)},
            {"lastAccessedAt", iso(session.lastAccessedAt)},
            {"expireAt", iso(session.expiresAt)},
            {"expiresAt", iso(session.expiresAt)}};
}

http::Response notFound(const std::string& identifier) {
    return errorResponse(status::bad_request, "SessionWithIdentifierNotFound",
                         "There is no session with the identifier '" + identifier + "'.");
}

// The pool and a well-formed identifier, or null after answering.
Pool* poolAndIdentifier(PoolManager& pools, const Request& request, const Responder& respond, std::string& identifier) {
    Pool* pool = findPool(pools, request, respond);
    if (!pool) return nullptr;
    auto id = sessionIdentifier(request, std::nullopt, respond);
    if (!id) return nullptr;
    identifier = *id;
    return pool;
}

void getSession(PoolManager& pools, Request& request, Responder respond) {
    std::string identifier;
    Pool* pool = poolAndIdentifier(pools, request, respond, identifier);
    if (!pool) return;
    auto session = pool->session(identifier);
    if (!session) return respond(notFound(identifier));
    respond(jsonResponse(status::ok, sessionBody(*session)));
}

void deleteSession(PoolManager& pools, Request& request, Responder respond) {
    std::string identifier;
    Pool* pool = poolAndIdentifier(pools, request, respond, identifier);
    if (!pool) return;
    if (!pool->deleteSession(identifier)) return respond(notFound(identifier));
    http::Response response{status::no_content, 11};
    response.prepare_payload();
    respond(std::move(response));
}

void stopSession(PoolManager& pools, Request& request, Responder respond) {
    std::string identifier;
    Pool* pool = poolAndIdentifier(pools, request, respond, identifier);
    if (!pool) return;
    if (!pool->deleteSession(identifier)) return respond(notFound(identifier));
    http::Response response{status::ok, 11};
    response.set(beast_http::field::content_type, "text/plain; charset=utf-8");
    response.body() = "Session " + identifier + " in session pool " + pool->config().name + " stopped.";
    response.prepare_payload();
    respond(std::move(response));
}

// One page of sessions, oldest first, from `skip`.
void listSessions(PoolManager& pools, Request& request, Responder respond, const std::string& route) {
    Pool* pool = findPool(pools, request, respond);
    if (!pool) return;
    std::size_t skip = 0;
    if (const std::string* text = request.queryValue("skip")) {
        if (text->empty() || text->find_first_not_of("0123456789") != std::string::npos || text->size() > 9)
            return respond(errorResponse(status::bad_request, "SessionRequestValidationFailed",
                                         "skip must be a whole number from 0 to 999999999."));
        skip = std::stoul(*text);
    }
    auto all = pool->sessions();
    std::sort(all.begin(), all.end(), [](const SessionInfo& a, const SessionInfo& b) {
        return a.createdAt != b.createdAt ? a.createdAt < b.createdAt : a.identifier < b.identifier;
    });
    nlohmann::json page = nlohmann::json::array();
    for (std::size_t i = skip; i < all.size() && i < skip + kPageSize; ++i) page.push_back(sessionBody(all[i]));
    nlohmann::json next = nullptr;
    if (skip + kPageSize < all.size()) {
        next = "/pools/" + pool->config().name + "/" + route + "?skip=" + std::to_string(skip + kPageSize);
        if (const std::string* version = request.queryValue("api-version"))
            next = next.get<std::string>() + "&api-version=" + http::percentEncode(*version);
    }
    respond(jsonResponse(status::ok, {{"value", page}, {"sessions", page}, {"count", all.size()}, {"nextLink", next}}));
}

}  // namespace

void addSessionRoutes(http::Router& router, PoolManager& pools) {
    using beast_http::verb;
    auto handler = [&pools](void (*fn)(PoolManager&, Request&, Responder)) {
        return [&pools, fn](Request& request, Responder respond) { fn(pools, request, std::move(respond)); };
    };
    auto list = [&pools](const std::string& route) {
        return [&pools, route](Request& request, Responder respond) {
            listSessions(pools, request, std::move(respond), route);
        };
    };
    router.add(verb::get, "/pools/{pool}/session", handler(getSession));
    router.add(verb::delete_, "/pools/{pool}/session", handler(deleteSession));
    router.add(verb::get, "/pools/{pool}/listSessions", list("listSessions"));
    router.add(verb::post, "/pools/{pool}/.management/getSession", handler(getSession));
    router.add(verb::get, "/pools/{pool}/.management/getSession", handler(getSession));
    router.add(verb::post, "/pools/{pool}/.management/stopSession", handler(stopSession));
    router.add(verb::post, "/pools/{pool}/.management/listSessions", list(".management/listSessions"));
    router.add(verb::get, "/pools/{pool}/.management/listSessions", list(".management/listSessions"));
}

}  // namespace sessiond::api
