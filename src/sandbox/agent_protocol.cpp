#include "sessiond/sandbox/agent_protocol.hpp"

#include <chrono>
#include <string>

namespace sessiond {

using nlohmann::json;

json makeExecuteMessage(const ExecuteRequest& request) {
    return {
        {"type", "execute"},
        {"code", request.code},
        {"timeoutMs", std::chrono::duration_cast<std::chrono::milliseconds>(request.timeout).count()},
        {"maxOutputChars", request.maxOutputChars},
    };
}

namespace {

Outcome<ExecuteResult> failure(std::string error) {
    return {std::move(error), {}};
}

bool hasString(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string();
}

}  // namespace

Outcome<ExecuteResult> parseExecuteReply(const json& reply) {
    if (!reply.is_object()) return failure("agent reply is not a JSON object");
    const std::string type = hasString(reply, "type") ? reply["type"].get<std::string>() : "";
    if (type == "error") {
        return failure("agent rejected the request: " +
                       (hasString(reply, "message") ? reply["message"].get<std::string>() : "no reason given"));
    }
    if (type != "result") return failure("agent reply has unexpected type \"" + type + "\"");

    for (const char* key : {"status", "stdout", "stderr"}) {
        if (!hasString(reply, key)) return failure(std::string("agent reply lacks string field \"") + key + "\"");
    }
    if (!reply.contains("result")) return failure("agent reply lacks field \"result\"");
    auto duration = reply.find("durationMs");
    if (duration == reply.end() || !duration->is_number_integer())
        return failure("agent reply lacks integer field \"durationMs\"");
    auto stateLost = reply.find("stateLost");
    if (stateLost == reply.end() || !stateLost->is_boolean())
        return failure("agent reply lacks boolean field \"stateLost\"");

    const std::string status = reply["status"].get<std::string>();
    if (status != "ok" && status != "error" && status != "timeout")
        return failure("agent reply has unknown status \"" + status + "\"");

    ExecuteResult result;
    result.succeeded = status == "ok";
    result.timedOut = status == "timeout";
    result.stdoutText = reply["stdout"].get<std::string>();
    result.stderrText = reply["stderr"].get<std::string>();
    result.result = reply["result"];
    result.durationMs = duration->get<std::int64_t>();
    result.stateLost = stateLost->get<bool>();
    return {"", std::move(result)};
}

}  // namespace sessiond
