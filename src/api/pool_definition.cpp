#include "sessiond/api/pool_definition.hpp"

#include <set>

namespace sessiond::api {

namespace {

// What GET shows but PUT does not set; a GET's body can be edited and PUT back.
const std::set<std::string> kReadOnlyProperties = {"provisioningState", "poolManagementEndpoint", "sessions", "totals",
                                                   "nodeCount"};
// Around `properties` in Azure's resource shape.
const std::set<std::string> kEnvelopeFields = {"id", "name", "type", "location", "properties"};

}  // namespace

PoolConfig parsePoolBody(const std::string& name, const std::string& body) {
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

}  // namespace sessiond::api
