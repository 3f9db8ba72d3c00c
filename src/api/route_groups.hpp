#pragma once
// The route families addRoutes() registers, one file each.

#include "sessiond/http/router.hpp"
#include "sessiond/metrics/metrics.hpp"
#include "sessiond/pool/pool.hpp"

namespace sessiond::api {

// GET /pools; GET, PUT and DELETE /pools/{pool}.
void addPoolRoutes(http::Router& router, PoolManager& pools);

// POST code/execute (2024-02-02-preview) and POST executions (2024-10-02-preview and later).
void addExecuteRoutes(http::Router& router, PoolManager& pools);

// GET/DELETE session, listSessions and the .management routes.
void addSessionRoutes(http::Router& router, PoolManager& pools);

// The session's files: upload, list, download, metadata, delete, in the
// 2024-02-02-preview and 2024-10-02-preview shapes.
void addFileRoutes(http::Router& router, PoolManager& pools, const HttpConfig& limits);

// GET /metrics: `registry` in the Prometheus text format, with the build's
// version and the process's start time.
void addMetricsRoute(http::Router& router, metrics::Registry& registry);

}  // namespace sessiond::api
