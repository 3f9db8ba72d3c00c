#pragma once
// The boundary between the pool manager and an isolation backend.
//
// A Sandbox is one isolated environment (a namespace jail or a microVM) with
// the sessiond agent running inside it. Every call and every callback happens
// on the daemon's io_context thread; implementations never block it for more
// than a few milliseconds. Destroying a Sandbox tears down everything it owns
// (processes, cgroups, domains, files) before the destructor returns.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace sessiond {

struct PoolConfig;

struct ExecuteRequest {
    std::string code;
    std::chrono::seconds timeout{100};
    std::size_t maxOutputChars = 4096;
};

struct ExecuteResult {
    bool succeeded = false;       // false: the code raised, timed out or was aborted
    std::string stdoutText;
    std::string stderrText;
    nlohmann::json result = "";   // Azure's `result`: JSON-native value, repr string or image object
    std::int64_t durationMs = 0;
    bool timedOut = false;
    bool stateLost = false;       // the interpreter had to be restarted
};

// Outcome of an operation that can fail for reasons outside the user's code
// (the sandbox died, the agent broke protocol). `error` is empty on success.
template <typename T>
struct Outcome {
    std::string error;
    T value{};
    bool ok() const { return error.empty(); }
};

class Sandbox {
public:
    using ReadyHandler = std::function<void(std::string error)>;           // "" = ready
    using ExecuteHandler = std::function<void(Outcome<ExecuteResult>)>;
    using ExitHandler = std::function<void(std::string reason)>;

    virtual ~Sandbox() = default;

    virtual const std::string& id() const = 0;

    // Starts the sandbox; `onReady` fires exactly once: when the agent's
    // handshake arrives (error empty) or when the start failed or timed out.
    virtual void start(ReadyHandler onReady) = 0;

    // Runs code in the session's persistent interpreter. Requests queue in
    // order; `onDone` fires exactly once per call.
    virtual void execute(ExecuteRequest request, ExecuteHandler onDone) = 0;

    // Fires at most once, when the sandbox ends without being asked to
    // (process or VM exit, agent channel closed) after start() succeeded.
    virtual void setExitHandler(ExitHandler onExit) = 0;
};

class SandboxBackend {
public:
    virtual ~SandboxBackend() = default;
    virtual std::string name() const = 0;
    // Removes whatever an earlier run of the daemon left behind.
    virtual void cleanupLeftovers() = 0;
    virtual std::unique_ptr<Sandbox> create(const PoolConfig& pool, const std::string& sandboxId) = 0;
};

}  // namespace sessiond
