#pragma once
// Host tools the backends run (ip, nft, qemu-img, skopeo, umoci): no shell,
// so arguments are never reinterpreted.

#include <chrono>
#include <string>
#include <vector>

namespace sessiond {

// Runs argv[0] (looked up on PATH) with `input` on its standard input and
// its standard output discarded; throws std::runtime_error naming the
// command, with its standard error, unless it exits with 0.
void runHostTool(const std::vector<std::string>& argv, const std::string& input = "");

// The same, returning what the tool wrote to its standard output.
std::string runHostToolOutput(const std::vector<std::string>& argv, const std::string& input = "");

// For a tool that may never exit (a probe): runs it with nothing on its
// standard input until its standard output holds `wanted`, it exits, or
// `limit` passes, then kills and reaps it. Returns what it wrote to its
// standard output, whatever happened; throws only if it cannot be started.
std::string runHostToolUntil(const std::vector<std::string>& argv, const std::string& wanted,
                             std::chrono::milliseconds limit);

}  // namespace sessiond
