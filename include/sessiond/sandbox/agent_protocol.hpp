#pragma once
// Messages of the agent protocol (docs/agent-protocol.md) that carry code
// execution, translated to and from the Sandbox interface's types.

#include <nlohmann/json.hpp>

#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

inline constexpr int kAgentProtocolVersion = 1;

// {"type":"execute","code":...,"timeoutMs":...,"maxOutputChars":...}; the
// channel adds the "id".
nlohmann::json makeExecuteMessage(const ExecuteRequest& request);

// Reads the agent's {"type":"result",...} reply. An "error" reply or one
// missing a required field is an Outcome error.
Outcome<ExecuteResult> parseExecuteReply(const nlohmann::json& reply);

}  // namespace sessiond
