#include "sessiond/api/routes.hpp"

#include "route_groups.hpp"
#include "route_support.hpp"

namespace sessiond::api {

namespace {

// GET metadata (2025-02-02-preview): the pool's runtimes and packages, as
// its sandboxes report them.
void metadata(PoolManager& pools, Request& request, Responder respond) {
    Pool* pool = findPool(pools, request, respond);
    if (!pool) return;
    const std::string createdAt = isoTime(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              pool->createdAt().time_since_epoch()).count());
    pool->metadata([respond, createdAt](std::string error, const nlohmann::json& described) {
        if (!error.empty()) return respond(errorResponse(status::service_unavailable, "SessionUnavailable", error));
        respond(jsonResponse(status::ok, {{"runtimes", described["runtimes"]},
                                          {"preInstalledPackages", described["packages"]},
                                          {"jupyterKernel", described["kernel"]},
                                          {"createdAt", createdAt},
                                          {"lastUpdatedAt", createdAt}}));
    });
}

}  // namespace

void addRoutes(http::Router& router, PoolManager& pools, const HttpConfig& http, metrics::Registry& registry) {
    router.add(
        beast_http::verb::get, "/healthz",
        [](Request&, Responder respond) { respond(jsonResponse(status::ok, {{"status", "ok"}})); },
        {.access = http::Access::Public});

    addPoolRoutes(router, pools);

    router.add(beast_http::verb::get, "/pools/{pool}/metadata",
               [&pools](Request& request, Responder respond) { metadata(pools, request, std::move(respond)); });

    addExecuteRoutes(router, pools);
    addFileRoutes(router, pools, http);
    addSessionRoutes(router, pools);
    addMetricsRoute(router, registry);
}

}  // namespace sessiond::api
