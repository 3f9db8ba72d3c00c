// Pool administration: GET /pools, and GET, PUT (create or update) and DELETE
// /pools/{pool}, with the property names of Azure's Microsoft.App/sessionPools.

#include <set>

#include <spdlog/spdlog.h>

#include "sessiond/api/pool_definition.hpp"

#include "route_groups.hpp"
#include "route_support.hpp"

namespace sessiond::api {

namespace {

// The answer to a definition the pool cannot take: the message starts with
// the field, and Azure's envelope names it as the error's target.
http::Response invalidProperty(const ConfigError& error) {
    return errorResponse(status::bad_request, "InvalidSessionPoolProperties", error.what(), error.field());
}

void putPool(PoolManager& pools, Request& request, Responder respond) {
    const std::string name = request.params.at("pool");
    try {
        const bool created = pools.apply(parsePoolBody(name, request.message.body()));
        spdlog::info("pool {} {} through the API from {}", name, created ? "created" : "updated", request.remoteAddress);
        respond(jsonResponse(created ? status::created : status::ok, pools.find(name)->describe()));
    } catch (const ConfigError& e) {
        respond(invalidProperty(e));
    } catch (const PoolConflict& e) {
        respond(errorResponse(status::conflict, "SessionPoolBeingDeleted", e.what()));
    } catch (const std::exception& e) {
        spdlog::error("pool {}: cannot store the change: {}", name, e.what());
        respond(errorResponse(status::internal_server_error, "SessionPoolStateNotSaved",
                              std::string("The change was not made: it could not be stored (") + e.what() + ")."));
    }
}

void deletePool(PoolManager& pools, Request& request, Responder respond) {
    const std::string name = request.params.at("pool");
    if (Pool* pool = pools.findIncludingDeleted(name); pool && pool->draining())
        return respond(jsonResponse(status::accepted, pool->describe()));
    try {
        // The answer waits until the pool's sessions are gone.
        if (!pools.remove(name, [respond] { respond(http::Response(status::no_content, 11)); }))
            respond(errorResponse(status::not_found, "SessionPoolNotFound", "There is no session pool named '" + name + "'."));
        else
            spdlog::info("pool {}: deletion requested through the API from {}", name, request.remoteAddress);
    } catch (const std::exception& e) {
        spdlog::error("pool {}: cannot store the deletion: {}", name, e.what());
        respond(errorResponse(status::internal_server_error, "SessionPoolStateNotSaved",
                              std::string("The pool was not deleted: the deletion could not be stored (") + e.what() + ")."));
    }
}

}  // namespace

void addPoolRoutes(http::Router& router, PoolManager& pools) {
    router.add(beast_http::verb::get, "/pools", [&pools](Request&, Responder respond) {
        nlohmann::json list = nlohmann::json::array();
        for (Pool* pool : pools.all()) list.push_back(pool->describe());
        respond(jsonResponse(status::ok, {{"value", list}}));
    });
    router.add(beast_http::verb::get, "/pools/{pool}", [&pools](Request& request, Responder respond) {
        const std::string& name = request.params.at("pool");
        if (Pool* pool = pools.findIncludingDeleted(name)) return respond(jsonResponse(status::ok, pool->describe()));
        respond(errorResponse(status::not_found, "SessionPoolNotFound", "There is no session pool named '" + name + "'."));
    });
    const http::RouteOptions administration{.access = http::Access::PoolAdministrator};
    router.add(
        beast_http::verb::put, "/pools/{pool}",
        [&pools](Request& request, Responder respond) { putPool(pools, request, std::move(respond)); }, administration);
    router.add(
        beast_http::verb::delete_, "/pools/{pool}",
        [&pools](Request& request, Responder respond) { deletePool(pools, request, std::move(respond)); },
        administration);
}

}  // namespace sessiond::api
