// Code execution: the legacy `python/execute` route, the 2024-02-02-preview
// `code/execute` route (and its `execute` alias) and the 2024-10-02-preview
// `executions` resource (synchronous), for every pool type.
// A failed execution is HTTP 200 with a failed status, as in Azure.

#include <string>

#include "route_groups.hpp"
#include "route_support.hpp"
#include "sessiond/api/execute_request.hpp"

namespace sessiond::api {

namespace {

constexpr const char* kTimeoutMessage = "Request timed out waiting for code execution to complete";

// stderr as the client sees it: the timeout message Azure sends, and a plain
// statement when the interpreter had to be restarted.
std::string reportedStderr(const ExecuteResult& result) {
    std::string text = result.stderrText;
    auto addLine = [&text](const std::string& line) {
        if (!text.empty() && text.back() != '\n') text += '\n';
        text += line;
    };
    if (result.timedOut && text.find(kTimeoutMessage) == std::string::npos) addLine(kTimeoutMessage);
    if (result.stateLost && text.find("state") == std::string::npos)
        addLine("The interpreter was restarted: the session's variables and imports are lost (its files are kept).");
    return text;
}

// The 2024-02-02-preview response (also 2024-08-02-preview).
nlohmann::json codeExecuteBody(const ExecuteResult& result) {
    return {{"$id", "1"},
            {"properties",
             {{"$id", "2"},
              {"status", result.succeeded ? "Success" : "Failure"},
              {"stdout", result.stdoutText},
              {"stderr", reportedStderr(result)},
              {"result", result.result},
              {"executionResult", result.result},
              {"executionTimeInMilliseconds", result.durationMs}}}};
}

// The 2024-10-02-preview execution resource. Shell commands report their exit
// code as the status, as Azure's Shell pools do.
nlohmann::json executionBody(const std::string& id, const std::string& identifier, const ExecuteResult& result) {
    std::string status = result.succeeded ? "Succeeded" : "Failed";
    if (result.exitCode) status = std::to_string(*result.exitCode);
    return {{"id", id},
            {"identifier", identifier},
            {"executionType", "Synchronous"},
            {"status", status},
            {"result",
             {{"stdout", result.stdoutText},
              {"stderr", reportedStderr(result)},
              {"executionResult", result.result},
              {"executionTimeInMilliseconds", result.durationMs}}}};
}


// The response shape a route answers in.
enum class Shape {
    CodeExecute,  // 2024-02-02-preview: {"properties":{...}}
    Execution,    // 2024-10-02-preview: the execution resource
    Legacy,       // python/execute: the same fields, not wrapped
};

void execute(PoolManager& pools, Request& request, Responder respond, Shape shape) {
    Pool* pool = findPool(pools, request, respond);
    if (!pool) return;
    const std::string type = mediaType(request);
    if (!type.empty() && type != "application/json" && type != "text/json")
        return respond(errorResponse(status::unsupported_media_type, "UnsupportedMediaType",
                                     "The request body must be JSON (Content-Type: application/json)."));
    RequestError error;
    auto parsed = parseExecuteBody(request.message.body(), pool->config(), error);
    if (!parsed) return respond(errorResponse(status::bad_request, error.code, error.message));
    auto identifier = sessionIdentifier(request, parsed->identifier, respond);
    if (!identifier) return;

    // A client may choose the execution's id (the operation-id header).
    std::string id(request.message["operation-id"]);
    if (id.empty()) id = newUuid();
    pool->execute(*identifier, std::move(parsed->request),
                  [respond, shape, id, identifier = *identifier](PoolExecuteOutcome outcome) {
                      if (outcome.error != PoolError::None)
                          return respond(poolErrorResponse(outcome.error, outcome.message));
                      if (shape == Shape::CodeExecute)
                          return respond(jsonResponse(status::ok, codeExecuteBody(outcome.result)));
                      if (shape == Shape::Legacy) {
                          nlohmann::json flat = codeExecuteBody(outcome.result)["properties"];
                          flat["$id"] = "1";
                          return respond(jsonResponse(status::ok, flat));
                      }
                      auto response = jsonResponse(status::ok, executionBody(id, identifier, outcome.result));
                      response.set("operation-id", id);
                      respond(std::move(response));
                  });
}

}  // namespace

void addExecuteRoutes(http::Router& router, PoolManager& pools) {
    auto route = [&pools](Shape shape) {
        return [&pools, shape](Request& request, Responder respond) { execute(pools, request, std::move(respond), shape); };
    };
    router.add(beast_http::verb::post, "/pools/{pool}/code/execute", route(Shape::CodeExecute));
    router.add(beast_http::verb::post, "/pools/{pool}/execute", route(Shape::CodeExecute));
    router.add(beast_http::verb::post, "/pools/{pool}/executions", route(Shape::Execution));
    router.add(beast_http::verb::post, "/pools/{pool}/python/execute", route(Shape::Legacy));
}

}  // namespace sessiond::api
