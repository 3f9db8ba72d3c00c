#pragma once
// The Azure Container Apps dynamic-sessions routes (docs/api.md), mapped onto
// the pool manager. HTTP mechanics live in http/; this layer only translates
// Azure's request and response bodies and error codes.

#include "sessiond/audit/audit_log.hpp"
#include "sessiond/config.hpp"
#include "sessiond/http/router.hpp"
#include "sessiond/http/server.hpp"
#include "sessiond/metrics/metrics.hpp"
#include "sessiond/pool/pool.hpp"

namespace sessiond::api {

// GET /metrics shows `registry`, which must outlive the router.
void addRoutes(http::Router& router, PoolManager& pools, const HttpConfig& http, metrics::Registry& registry);

// For HttpServer::setForwarder: custom container pools' requests go to
// their sessions' containers (docs/custom-containers.md).
http::Forwarder containerForwarder(PoolManager& pools, boost::asio::io_context& io);

// For HttpServer: counts and times every answer in `registry`
// (sessiond_http_requests_total, sessiond_http_request_seconds).
http::AnswerObserver recordAnswers(metrics::Registry& registry);

// For HttpServer: one audit line per answer, naming the key, the route, the
// pool, the session and the status; `log` must outlive the server.
http::AnswerObserver auditAnswers(audit::AuditLog& log);

// Tells both, in order.
http::AnswerObserver bothObservers(http::AnswerObserver first, http::AnswerObserver second);

}  // namespace sessiond::api
