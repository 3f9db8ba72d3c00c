#pragma once
// Messages of the agent protocol (docs/agent-protocol.md), translated to and
// from the Sandbox interface's types.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sessiond/sandbox/container_launch.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

inline constexpr int kAgentProtocolVersion = 1;

// {"type":"execute","code":...,"timeoutMs":...,"maxOutputChars":...}; the
// channel adds the "id".
nlohmann::json makeExecuteMessage(const ExecuteRequest& request);

// Reads the agent's {"type":"result",...} reply. An "error" reply or one
// missing a required field is an Outcome error.
Outcome<ExecuteResult> parseExecuteReply(const nlohmann::json& reply);

// A limit the agent itself saw hit during an execution (an execute reply's
// "limits"): forks refused at the process limit of its guest cgroup. Zero
// when the reply names none or names it malformed.
struct GuestLimitHits {
    std::uint64_t pidsLimit = 0;
    std::uint64_t pidsRefused = 0;
};
GuestLimitHits parseGuestLimitHits(const nlohmann::json& reply);

// The largest file chunk in one readFile or writeFile frame.
inline constexpr std::size_t kFileChunkBytes = 4u << 20;

nlohmann::json makeListFilesMessage(const std::string& directory, bool recursive);
nlohmann::json makeStatFileMessage(const std::string& path);
nlohmann::json makeReadFileMessage(const std::string& path, std::uint64_t offset, std::size_t length);
nlohmann::json makeWriteFileMessage(const std::string& path, std::string_view chunk, bool first, bool last);
nlohmann::json makeDeleteFileMessage(const std::string& path);

struct FileChunk {
    std::string bytes;
    std::uint64_t size = 0;  // of the whole file
    std::int64_t modifiedMs = 0;
    bool eof = false;
};

// Each checks the reply's type ("files", "file", "fileData", "written",
// "deleted", "description"); an "error" reply becomes an Outcome error with
// the agent's code.
Outcome<std::vector<FileEntry>> parseListFilesReply(const nlohmann::json& reply);
Outcome<FileEntry> parseStatFileReply(const nlohmann::json& reply);
Outcome<FileChunk> parseReadFileReply(const nlohmann::json& reply);
// `entry` is null until the last chunk.
Outcome<std::optional<FileEntry>> parseWriteFileReply(const nlohmann::json& reply);
Outcome<Done> parseDeleteFileReply(const nlohmann::json& reply);
Outcome<nlohmann::json> parseDescribeReply(const nlohmann::json& reply);

// A microVM about to be saved as a template: {"type":"snapshot","phase":"save"}.
nlohmann::json makeSnapshotSaveMessage();
// A microVM just restored from a template gets its own entropy (`entropy`:
// raw bytes, at least 32), wall clock (`now`) and machine id (32 hex digits).
nlohmann::json makeSnapshotRestoreMessage(std::string_view entropy, std::chrono::system_clock::time_point now,
                                          const std::string& machineId);
// The agent's {"type":"snapshot"} answer to either; for "restore", `value`
// is how the kernel took the entropy ("reseeded" or "mixed").
Outcome<std::string> parseSnapshotReply(const nlohmann::json& reply);

// A microVM's network card, given its settings once its agent is up:
// {"type":"network","mac":...,"address":...,"prefixLength":...,"gateway":...,
// "resolvConf":...}. The agent answers {"type":"network"}
// (parseAcknowledgement).
struct GuestNetwork {
    std::string mac;
    std::string address;
    int prefixLength = 0;
    std::string gateway;
    std::string resolvConf;  // the guest's /etc/resolv.conf
};
nlohmann::json makeNetworkMessage(const GuestNetwork& network);

// A custom container's VM starts its container (docs/agent-protocol.md):
// {"type":"container","argv":[...],"env":{...},"workingDirectory":...,
// "uid":...,"gid":...,"layerMiB":...}; the agent answers {"type":"container","pid":N}.
nlohmann::json makeContainerMessage(const ContainerLaunch& launch, std::uint64_t layerMiB);

// A reply that only says the request of `type` was done: {"type":<type>}.
Outcome<Done> parseAcknowledgement(const nlohmann::json& reply, const std::string& type);

}  // namespace sessiond
