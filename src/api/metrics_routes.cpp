// GET /metrics, in the Prometheus text format, and the HTTP server's
// observer that counts and times its answers by route.

#include <chrono>

#include "route_groups.hpp"
#include "route_support.hpp"
#include "sessiond/api/routes.hpp"

#ifndef SESSIOND_VERSION
#define SESSIOND_VERSION "unknown"
#endif

namespace sessiond::api {

void addMetricsRoute(http::Router& router, metrics::Registry& registry) {
    const double startTime =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    // The constant gauges stay registered as long as the route that shows them.
    auto constants = std::make_shared<std::vector<metrics::GaugeRegistration>>();
    constants->push_back(registry.gauge("sessiond_build_info", "The running sessiond's version (always 1).",
                                        {{"version", SESSIOND_VERSION}}, [] { return 1.0; }));
    constants->push_back(registry.gauge("process_start_time_seconds",
                                        "When sessiond started, in seconds since the Unix epoch.", {},
                                        [startTime] { return startTime; }));
    router.add(beast_http::verb::get, "/metrics", [&registry, constants](Request&, Responder respond) {
        http::Response response(status::ok, 11);
        response.set(beast_http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        response.body() = registry.render();
        response.prepare_payload();
        respond(std::move(response));
    });
}

http::AnswerObserver recordAnswers(metrics::Registry& registry) {
    return [&registry](const http::Request& request, std::string_view routePattern, unsigned status,
                       std::chrono::nanoseconds elapsed) {
        // The pattern, never the path: a label per identifier or file name
        // would grow without bound.
        const std::string route = routePattern.empty() ? "unmatched" : std::string(routePattern);
        // to_string, not method_string: an unknown method is one label value.
        const std::string method(beast_http::to_string(request.message.method()));
        registry
            .counter("sessiond_http_requests_total", "HTTP requests answered, by method, route pattern and status.",
                     {{"method", method}, {"route", route}, {"status", std::to_string(status)}})
            .inc();
        registry
            .histogram("sessiond_http_request_seconds",
                       "HTTP requests, from the read request until its answer, by route pattern.", {{"route", route}})
            .observe(elapsed);
    };
}

}  // namespace sessiond::api
