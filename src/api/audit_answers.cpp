#include "sessiond/api/execute_request.hpp"
#include "sessiond/api/routes.hpp"

namespace sessiond::api {

http::AnswerObserver auditAnswers(audit::AuditLog& log) {
    return [&log](const http::Request& request, std::string_view routePattern, unsigned status,
                  std::chrono::nanoseconds elapsed) {
        audit::RequestRecord record;
        record.key = request.principal;
        record.remote = request.remoteAddress;
        record.method = std::string(http::beast_http::to_string(request.message.method()));
        record.route = std::string(routePattern);
        if (auto pool = request.params.find("pool"); pool != request.params.end()) record.pool = pool->second;
        if (const std::string* identifier = request.queryValue("identifier")) record.identifier = *identifier;
        record.status = status;
        record.duration = elapsed;
        // Parsed again only when it is wanted: most audits leave code out.
        if (log.includesCode() && request.message.method() == http::beast_http::verb::post &&
            (routePattern.ends_with("/execute") || routePattern.ends_with("/executions")))
            record.code = submittedCode(request.message.body());
        log.record(record);
    };
}

http::AnswerObserver bothObservers(http::AnswerObserver first, http::AnswerObserver second) {
    return [first = std::move(first), second = std::move(second)](const http::Request& request,
                                                                   std::string_view routePattern, unsigned status,
                                                                   std::chrono::nanoseconds elapsed) {
        first(request, routePattern, status, elapsed);
        second(request, routePattern, status, elapsed);
    };
}

}  // namespace sessiond::api
