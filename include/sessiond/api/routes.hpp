#pragma once
// The Azure Container Apps dynamic-sessions routes (docs/api.md), mapped onto
// the pool manager. HTTP mechanics live in http/; this layer only translates
// Azure's request and response bodies and error codes.

#include "sessiond/config.hpp"
#include "sessiond/http/router.hpp"
#include "sessiond/http/server.hpp"
#include "sessiond/metrics/metrics.hpp"
#include "sessiond/pool/pool.hpp"

namespace sessiond::api {

// GET /metrics shows `registry`, which must outlive the router.
void addRoutes(http::Router& router, PoolManager& pools, const HttpConfig& http, metrics::Registry& registry);

// For HttpServer: counts and times every answer in `registry`
// (sessiond_http_requests_total, sessiond_http_request_seconds).
http::AnswerObserver recordAnswers(metrics::Registry& registry);

}  // namespace sessiond::api
