#pragma once
// The boundary between the pool manager and an isolation backend.
//
// A Sandbox is one isolated environment (a namespace jail or a microVM) with
// the sessiond agent running inside it. Every call and every callback happens
// on the daemon's io_context thread; implementations never block it for more
// than a few milliseconds. Destroying a Sandbox tears down everything it owns
// (processes, cgroups, domains, files) before the destructor returns.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "sessiond/unique_fd.hpp"

namespace sessiond {

struct PoolConfig;

struct ExecuteRequest {
    std::string code;  // Python or JavaScript source; for Shell pools, a bash command line
    std::chrono::seconds timeout{100};
    std::size_t maxOutputChars = 4096;
    // Shell pools only: a program and its arguments instead of `code`, and
    // what the command reads on stdin.
    std::vector<std::string> argv;
    std::string stdinText;
};

struct ExecuteResult {
    bool succeeded = false;       // false: the code raised, timed out or was aborted
    std::string stdoutText;
    std::string stderrText;
    nlohmann::json result = "";   // Azure's `result`: JSON-native value, repr string or image object
    std::int64_t durationMs = 0;
    bool timedOut = false;
    bool stateLost = false;       // the interpreter had to be restarted
    std::optional<int> exitCode;  // Shell pools: the command's exit status
};

// A file or directory in the session's data directory (/mnt/data). `path`
// is relative to it; `directory` is the relative path of its parent.
struct FileEntry {
    std::string path;
    std::string name;
    std::string directory;
    bool isDirectory = false;
    std::uint64_t size = 0;
    std::int64_t modifiedMs = 0;  // since the Unix epoch
};

struct FileContent {
    FileEntry entry;
    std::string bytes;
};

struct Done {};

// Outcome of an operation that can fail for reasons outside the user's code
// (the sandbox died, the agent broke protocol, a file is missing). `error` is
// empty on success. File operations refused by the agent set `code` to one of
// notFound, invalidPath, isDirectory, notEmpty, noSpace, tooMany, ioError; it
// is empty when the sandbox itself failed.
template <typename T>
struct Outcome {
    std::string error;
    T value{};
    std::string code;
    bool ok() const { return error.empty(); }
};

class Sandbox {
public:
    using ReadyHandler = std::function<void(std::string error)>;           // "" = ready
    using ExecuteHandler = std::function<void(Outcome<ExecuteResult>)>;
    using ExitHandler = std::function<void(std::string reason)>;
    template <typename T>
    using Handler = std::function<void(Outcome<T>)>;

    virtual ~Sandbox() = default;

    virtual const std::string& id() const = 0;

    // Starts the sandbox; `onReady` fires exactly once: when the agent's
    // handshake arrives (error empty) or when the start failed or timed out.
    virtual void start(ReadyHandler onReady) = 0;

    // Runs code in the session's persistent interpreter. Requests queue in
    // order; `onDone` fires exactly once per call.
    virtual void execute(ExecuteRequest request, ExecuteHandler onDone) = 0;

    // The session's data directory. Paths are relative to it and never leave
    // it: the agent refuses "..", "." and paths through symbolic links.
    // Like execute(), every call answers exactly once, in order.
    virtual void listFiles(const std::string& directory, bool recursive, Handler<std::vector<FileEntry>> onDone) = 0;
    virtual void statFile(const std::string& path, Handler<FileEntry> onDone) = 0;
    // A file longer than maxBytes fails with code "tooLarge", having read
    // no more than maxBytes + 1 bytes of it.
    virtual void readFile(const std::string& path, std::uint64_t maxBytes, Handler<FileContent> onDone) = 0;
    // Creates missing parent directories; replaces the file atomically.
    virtual void writeFile(const std::string& path, std::string bytes, Handler<FileEntry> onDone) = 0;
    virtual void deleteFile(const std::string& path, Handler<Done> onDone) = 0;

    // What GET /metadata reports: {"runtimes":[{name,version}],
    // "packages":[{name,version}],"kernel":{name,version,projectUrl,description}}.
    virtual void describe(Handler<nlohmann::json> onDone) = 0;

    // A TCP connection to `port` on the sandbox's own loopback, made from
    // the host's side: how a custom container's server is reached, whether
    // or not the session has a network (docs/custom-containers.md). The fd
    // is a connected, non-blocking stream socket. Sandboxes that run no
    // server answer with an error.
    virtual void connect(std::uint16_t port, Handler<UniqueFd> onDone) {
        onDone({"this sandbox serves no connections", UniqueFd(), ""});
    }

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
    // How many of its sandboxes should start at once, all pools together
    // (see StartQueue); 0: no limit.
    virtual std::size_t maxConcurrentStarts() const { return 0; }
    // What a backend's default for maxConcurrentStarts is counted in.
    static std::size_t hostCores() { return std::max(1u, std::thread::hardware_concurrency()); }
    // The pool is gone and none of its sandboxes is left: whatever the
    // backend keeps per pool (a zygote, a saved VM) can go too.
    virtual void poolRemoved(const std::string& /*pool*/) {}
};

}  // namespace sessiond
