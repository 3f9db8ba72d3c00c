// Code execution: the legacy `python/execute` route, the 2024-02-02-preview
// `code/execute` route (and its `execute` alias) and the 2024-10-02-preview
// `executions` resource (synchronous, or asynchronous: 202 with
// Operation-Location, then GET executions/{id}), for every pool type.
// A failed execution is HTTP 200 with a failed status, as in Azure.

#include <algorithm>
#include <cctype>
#include <deque>
#include <map>
#include <memory>
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
nlohmann::json executionBody(const std::string& id, const std::string& identifier, bool asynchronous,
                             const ExecuteResult& result) {
    std::string status = result.succeeded ? "Succeeded" : "Failed";
    if (result.exitCode) status = std::to_string(*result.exitCode);
    return {{"id", id},
            {"identifier", identifier},
            {"executionType", asynchronous ? "Asynchronous" : "Synchronous"},
            {"status", status},
            {"result",
             {{"stdout", result.stdoutText},
              {"stderr", reportedStderr(result)},
              {"executionResult", result.result},
              {"executionTimeInMilliseconds", result.durationMs}}}};
}

// An execution id goes into Operation-Location as one path segment, so a
// client-chosen one (the operation-id header) is held to what a segment
// carries unescaped; a GUID fits.
bool isValidExecutionId(const std::string& id) {
    if (id.empty() || id.size() > 128) return false;
    return std::all_of(id.begin(), id.end(), [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_'; });
}

constexpr const char* kExecutionIdRule = "1 to 128 characters: letters, digits, '-' or '_' (a GUID, for instance).";

// Executions started through /executions, so GET /executions/{id} can answer
// for them (asynchronous ones above all). Bounded: the oldest are forgotten.
class ExecutionStore {
public:
    static constexpr std::size_t kKept = 1000;

    void put(const std::string& pool, const std::string& identifier, const std::string& id, nlohmann::json resource) {
        const std::string key = pool + '\n' + identifier + '\n' + id;
        if (records_.insert_or_assign(key, std::move(resource)).second) order_.push_back(key);
        while (order_.size() > kKept) {
            records_.erase(order_.front());
            order_.pop_front();
        }
    }

    const nlohmann::json* find(const std::string& pool, const std::string& identifier, const std::string& id) const {
        auto it = records_.find(pool + '\n' + identifier + '\n' + id);
        return it == records_.end() ? nullptr : &it->second;
    }

private:
    std::map<std::string, nlohmann::json> records_;
    std::deque<std::string> order_;
};


// The response shape a route answers in.
enum class Shape {
    CodeExecute,  // 2024-02-02-preview: {"properties":{...}}
    Execution,    // 2024-10-02-preview: the execution resource
    Legacy,       // python/execute: the same fields, not wrapped
};

void execute(PoolManager& pools, std::shared_ptr<ExecutionStore> store, Request& request, Responder respond,
             Shape shape) {
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

    if (parsed->asynchronous && shape != Shape::Execution)
        return respond(errorResponse(status::bad_request, "SessionRequestNotSupported",
                                     "Asynchronous executions are served by POST executions (2024-10-02-preview)."));

    // A client may choose the execution's id (the operation-id header).
    std::string id(request.message["operation-id"]);
    if (!id.empty() && !isValidExecutionId(id))
        return respond(errorResponse(status::bad_request, "SessionRequestValidationFailed",
                                     std::string("The operation-id header must be ") + kExecutionIdRule));
    if (id.empty()) id = newUuid();
    const std::string poolName = pool->config().name;
    const bool asynchronous = parsed->asynchronous;
    if (asynchronous) {
        // 202 now; the result is kept for GET executions/{id}.
        nlohmann::json running = {{"id", id},
                                  {"identifier", *identifier},
                                  {"executionType", "Asynchronous"},
                                  {"status", "Running"}};
        store->put(poolName, *identifier, id, running);
        std::string location = "/pools/" + poolName + "/executions/" + id + "?identifier=" + http::percentEncode(*identifier);
        if (const std::string* version = request.queryValue("api-version"))
            location += "&api-version=" + http::percentEncode(*version);
        auto accepted = jsonResponse(status::accepted, running);
        accepted.set("operation-id", id);
        accepted.set("Operation-Location", location);
        respond(std::move(accepted));
    }
    pool->execute(*identifier, std::move(parsed->request),
                  [respond, shape, id, identifier = *identifier, store, poolName, asynchronous](PoolExecuteOutcome outcome) {
                      if (outcome.error != PoolError::None) {
                          if (asynchronous) {
                              nlohmann::json failed = {{"id", id},
                                                       {"identifier", identifier},
                                                       {"executionType", "Asynchronous"},
                                                       {"status", "Failed"},
                                                       {"error", {{"code", "SessionUnavailable"}, {"message", outcome.message}}}};
                              return store->put(poolName, identifier, id, std::move(failed));
                          }
                          return respond(poolErrorResponse(outcome.error, outcome.message));
                      }
                      if (shape == Shape::CodeExecute)
                          return respond(jsonResponse(status::ok, codeExecuteBody(outcome.result)));
                      if (shape == Shape::Legacy) {
                          nlohmann::json flat = codeExecuteBody(outcome.result)["properties"];
                          flat["$id"] = "1";
                          return respond(jsonResponse(status::ok, flat));
                      }
                      auto body = executionBody(id, identifier, asynchronous, outcome.result);
                      store->put(poolName, identifier, id, body);
                      if (asynchronous) return;
                      auto response = jsonResponse(status::ok, body);
                      response.set("operation-id", id);
                      respond(std::move(response));
                  });
}

void getExecution(PoolManager& pools, const ExecutionStore& store, Request& request, Responder respond) {
    Pool* pool = findPool(pools, request, respond);
    if (!pool) return;
    auto identifier = sessionIdentifier(request, std::nullopt, respond);
    if (!identifier) return;
    const std::string& id = request.params.at("id");
    if (!isValidExecutionId(id))
        return respond(errorResponse(status::bad_request, "SessionRequestValidationFailed",
                                     std::string("The execution id must be ") + kExecutionIdRule));
    const nlohmann::json* found = store.find(pool->config().name, *identifier, id);
    if (!found)
        return respond(errorResponse(status::not_found, "ExecutionNotFound",
                                     "No execution available for operation Id: " + id));
    auto response = jsonResponse(status::ok, *found);
    response.set("operation-id", id);
    respond(std::move(response));
}

}  // namespace

void addExecuteRoutes(http::Router& router, PoolManager& pools) {
    auto store = std::make_shared<ExecutionStore>();
    auto route = [&pools, store](Shape shape) {
        return [&pools, store, shape](Request& request, Responder respond) {
            execute(pools, store, request, std::move(respond), shape);
        };
    };
    router.add(beast_http::verb::get, "/pools/{pool}/executions/{id}", [&pools, store](Request& request, Responder respond) {
        getExecution(pools, *store, request, std::move(respond));
    });
    router.add(beast_http::verb::post, "/pools/{pool}/code/execute", route(Shape::CodeExecute));
    router.add(beast_http::verb::post, "/pools/{pool}/execute", route(Shape::CodeExecute));
    router.add(beast_http::verb::post, "/pools/{pool}/executions", route(Shape::Execution));
    router.add(beast_http::verb::post, "/pools/{pool}/python/execute", route(Shape::Legacy));
}

}  // namespace sessiond::api
