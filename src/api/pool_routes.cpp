// Pool administration: GET /pools, and GET, PUT (create or update) and DELETE
// /pools/{pool}, with the property names of Azure's Microsoft.App/sessionPools.

#include <set>

#include <spdlog/spdlog.h>

#include "route_groups.hpp"
#include "route_support.hpp"

namespace sessiond::api {

namespace {

// What GET shows but PUT does not set; a GET's body can be edited and PUT back.
const std::set<std::string> kReadOnlyProperties = {"provisioningState", "poolManagementEndpoint", "sessions", "totals",
                                                   "nodeCount"};
// Around `properties` in Azure's resource shape.
const std::set<std::string> kEnvelopeFields = {"id", "name", "type", "location", "properties"};

// The answer to a definition the pool cannot take: the message starts with
// the field, and Azure's envelope names it as the error's target.
http::Response invalidProperty(const ConfigError& error) {
    return errorResponse(status::bad_request, "InvalidSessionPoolProperties", error.what(), error.field());
}

// The definition a PUT body gives for the pool `name`: Azure's resource shape
// ({"properties": {...}}) or the bare properties, as the configuration file
// has them. Throws ConfigError naming the field.
PoolConfig parseDefinition(const std::string& name, const std::string& body) {
    nlohmann::json document = nlohmann::json::parse(body, nullptr, false);
    if (document.is_discarded() || !document.is_object())
        throw ConfigError("(body)", "must be a JSON object: the pool's properties, or {\"properties\": {...}}");
    nlohmann::json definition;
    std::string prefix;
    if (document.contains("properties")) {
        for (const auto& [key, value] : document.items())
            if (!kEnvelopeFields.count(key)) throw ConfigError(key, "unknown field (pool settings go under properties)");
        if (document.contains("name") && document["name"] != name)
            throw ConfigError("name", "must be the pool name in the path, '" + name + "'");
        if (document.contains("type") && document["type"] != "Microsoft.App/sessionPools")
            throw ConfigError("type", "must be Microsoft.App/sessionPools");
        definition = document["properties"];
        prefix = "properties";
    } else {
        definition = document;
    }
    if (!definition.is_object()) throw ConfigError(prefix.empty() ? "(body)" : prefix, "must be an object");
    if (definition.contains("name") && definition["name"] != name)
        throw ConfigError(prefix.empty() ? "name" : prefix + ".name", "must be the pool name in the path, '" + name + "'");
    for (const auto& field : kReadOnlyProperties) definition.erase(field);
    definition["name"] = name;
    return parsePool(definition, prefix);
}

void putPool(PoolManager& pools, Request& request, Responder respond) {
    const std::string name = request.params.at("pool");
    try {
        const bool created = pools.apply(parseDefinition(name, request.message.body()));
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
