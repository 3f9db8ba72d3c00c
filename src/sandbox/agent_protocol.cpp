#include "sessiond/sandbox/agent_protocol.hpp"

#include "sessiond/base64.hpp"

#include <chrono>
#include <string>

namespace sessiond {

using nlohmann::json;

json makeExecuteMessage(const ExecuteRequest& request) {
    json message = {
        {"type", "execute"},
        {"timeoutMs", std::chrono::duration_cast<std::chrono::milliseconds>(request.timeout).count()},
        {"maxOutputChars", request.maxOutputChars},
    };
    if (request.argv.empty())
        message["code"] = request.code;
    else
        message["argv"] = request.argv;
    if (!request.stdinText.empty()) message["stdin"] = request.stdinText;
    return message;
}

namespace {

template <typename T = ExecuteResult>
Outcome<T> failure(std::string error, std::string code = "") {
    return {std::move(error), {}, std::move(code)};
}

bool hasString(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string();
}

// The reply's type if it is `expected`; otherwise fills `error` (with the
// agent's code for an "error" reply).
template <typename T>
bool expectType(const json& reply, const char* expected, Outcome<T>& error) {
    if (!reply.is_object()) {
        error = failure<T>("agent reply is not a JSON object");
        return false;
    }
    const std::string type = hasString(reply, "type") ? reply["type"].get<std::string>() : "";
    if (type == expected) return true;
    if (type == "error") {
        error = failure<T>(hasString(reply, "message") ? reply["message"].get<std::string>() : "no reason given",
                           hasString(reply, "code") ? reply["code"].get<std::string>() : "");
        if (error.code.empty()) error.error = "agent rejected the request: " + error.error;
    } else {
        error = failure<T>("agent reply has unexpected type \"" + type + "\"");
    }
    return false;
}

std::optional<FileEntry> fileEntry(const json& j) {
    if (!j.is_object() || !hasString(j, "path") || !hasString(j, "name") || !hasString(j, "type")) return std::nullopt;
    auto size = j.find("size");
    auto modified = j.find("mtimeMs");
    if (size == j.end() || !size->is_number_unsigned() || modified == j.end() || !modified->is_number_integer())
        return std::nullopt;
    FileEntry entry;
    entry.path = j["path"].get<std::string>();
    entry.name = j["name"].get<std::string>();
    entry.directory = hasString(j, "directory") ? j["directory"].get<std::string>() : "";
    entry.isDirectory = j["type"] == "directory";
    entry.size = size->get<std::uint64_t>();
    entry.modifiedMs = modified->get<std::int64_t>();
    return entry;
}

}  // namespace

json makeListFilesMessage(const std::string& directory, bool recursive) {
    return {{"type", "listFiles"}, {"path", directory}, {"recursive", recursive}};
}

json makeStatFileMessage(const std::string& path) { return {{"type", "statFile"}, {"path", path}}; }

json makeReadFileMessage(const std::string& path, std::uint64_t offset, std::size_t length) {
    return {{"type", "readFile"}, {"path", path}, {"offset", offset}, {"length", length}};
}

json makeWriteFileMessage(const std::string& path, std::string_view chunk, bool first, bool last) {
    return {{"type", "writeFile"}, {"path", path}, {"data", encodeBase64(chunk)}, {"first", first}, {"last", last}};
}

json makeDeleteFileMessage(const std::string& path) { return {{"type", "deleteFile"}, {"path", path}}; }

Outcome<std::vector<FileEntry>> parseListFilesReply(const json& reply) {
    Outcome<std::vector<FileEntry>> out;
    if (!expectType(reply, "files", out)) return out;
    auto entries = reply.find("entries");
    if (entries == reply.end() || !entries->is_array()) return failure<std::vector<FileEntry>>("agent reply lacks \"entries\"");
    for (const auto& item : *entries) {
        auto entry = fileEntry(item);
        if (!entry) return failure<std::vector<FileEntry>>("agent reply has a malformed file entry");
        out.value.push_back(std::move(*entry));
    }
    return out;
}

Outcome<FileEntry> parseStatFileReply(const json& reply) {
    Outcome<FileEntry> out;
    if (!expectType(reply, "file", out)) return out;
    auto entry = reply.contains("entry") ? fileEntry(reply["entry"]) : std::nullopt;
    if (!entry) return failure<FileEntry>("agent reply has a malformed file entry");
    out.value = std::move(*entry);
    return out;
}

Outcome<FileChunk> parseReadFileReply(const json& reply) {
    Outcome<FileChunk> out;
    if (!expectType(reply, "fileData", out)) return out;
    auto size = reply.find("size");
    auto modified = reply.find("mtimeMs");
    auto eof = reply.find("eof");
    if (!hasString(reply, "data") || size == reply.end() || !size->is_number_unsigned() || modified == reply.end() ||
        !modified->is_number_integer() || eof == reply.end() || !eof->is_boolean())
        return failure<FileChunk>("agent reply to readFile is malformed");
    auto bytes = decodeBase64(reply["data"].get_ref<const std::string&>());
    if (!bytes) return failure<FileChunk>("agent reply to readFile has invalid base64");
    out.value.bytes = std::move(*bytes);
    out.value.size = size->get<std::uint64_t>();
    out.value.modifiedMs = modified->get<std::int64_t>();
    out.value.eof = eof->get<bool>();
    return out;
}

Outcome<std::optional<FileEntry>> parseWriteFileReply(const json& reply) {
    Outcome<std::optional<FileEntry>> out;
    if (!expectType(reply, "written", out)) return out;
    auto entry = reply.find("entry");
    if (entry == reply.end() || entry->is_null()) return out;
    out.value = fileEntry(*entry);
    if (!out.value) return failure<std::optional<FileEntry>>("agent reply has a malformed file entry");
    return out;
}

Outcome<Done> parseDeleteFileReply(const json& reply) {
    Outcome<Done> out;
    expectType(reply, "deleted", out);
    return out;
}

Outcome<json> parseDescribeReply(const json& reply) {
    Outcome<json> out;
    if (!expectType(reply, "description", out)) return out;
    for (const char* key : {"runtimes", "packages"})
        if (!reply.contains(key) || !reply[key].is_array())
            return failure<json>(std::string("agent description lacks the array \"") + key + "\"");
    out.value = {{"runtimes", reply["runtimes"]},
                 {"packages", reply["packages"]},
                 {"kernel", reply.value("kernel", json::object())}};
    return out;
}

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
    if (auto exitCode = reply.find("exitCode"); exitCode != reply.end() && exitCode->is_number_integer())
        result.exitCode = exitCode->get<int>();
    return {"", std::move(result)};
}

GuestLimitHits parseGuestLimitHits(const json& reply) {
    const auto limits = reply.is_object() ? reply.find("limits") : reply.end();
    if (limits == reply.end() || !limits->is_object()) return {};
    const auto count = [&limits](const char* key) -> std::uint64_t {
        const auto value = limits->find(key);
        if (value == limits->end() || !value->is_number_integer() || *value < 0) return 0;
        return value->get<std::uint64_t>();
    };
    GuestLimitHits hits{count("pidsLimit"), count("pidsRefused")};
    return hits.pidsLimit > 0 ? hits : GuestLimitHits{};
}

json makeSnapshotSaveMessage() { return {{"type", "snapshot"}, {"phase", "save"}}; }

json makeSnapshotRestoreMessage(std::string_view entropy, std::chrono::system_clock::time_point now,
                                const std::string& machineId) {
    return {{"type", "snapshot"},
            {"phase", "restore"},
            {"entropy", encodeBase64(entropy)},
            {"timeNs", std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count()},
            {"machineId", machineId}};
}

Outcome<std::string> parseSnapshotReply(const json& reply) {
    Outcome<std::string> out;
    if (!expectType(reply, "snapshot", out)) return out;
    out.value = hasString(reply, "entropy") ? reply["entropy"].get<std::string>() : "";
    return out;
}

json makeNetworkMessage(const GuestNetwork& network) {
    return {{"type", "network"},           {"mac", network.mac},         {"address", network.address},
            {"prefixLength", network.prefixLength}, {"gateway", network.gateway}, {"resolvConf", network.resolvConf}};
}

json makeContainerMessage(const ContainerLaunch& launch, std::uint64_t layerMiB) {
    return {{"type", "container"},
            {"argv", launch.argv},
            {"env", launch.env},
            {"workingDirectory", launch.workingDirectory},
            {"uid", launch.user.uid},
            {"gid", launch.user.gid},
            {"layerMiB", layerMiB}};
}

Outcome<Done> parseAcknowledgement(const json& reply, const std::string& type) {
    Outcome<Done> out;
    expectType(reply, type.c_str(), out);
    return out;
}

}  // namespace sessiond
