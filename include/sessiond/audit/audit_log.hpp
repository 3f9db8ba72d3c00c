#pragma once
// The audit log: one JSON object per line for every request answered and
// every session lifecycle event, for an operator to answer "who ran what in
// which session, and what became of it". A request's line names the API key
// by its name, never the key; the code of an execution only when
// audit.includeCode is set (docs/hardening.md, "Audit log").

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "sessiond/config.hpp"
#include "sessiond/unique_fd.hpp"

namespace sessiond::audit {

struct RequestRecord {
    std::string key;         // the API key's name; empty when no keys are configured or none matched
    std::string remote;      // the peer's address
    std::string method;
    std::string route;       // the matched route's pattern; empty when none matched
    std::string pool;        // empty when the route has none
    std::string identifier;  // the session identifier, when the request names one
    unsigned status = 0;
    std::chrono::nanoseconds duration{};
    nlohmann::json code;     // what an execution asked to run; written only with includeCode
};

// A session's or a pool member's step through the lifecycle
// (docs/architecture.md): started (Pending -> Unallocated), startFailed,
// allocated (Unallocated -> Allocated), ended (a sandbox exited on its own),
// destroyed (Allocated -> Destroyed, with the reason).
struct SessionEvent {
    std::string event;
    std::string pool;
    std::string identifier;  // empty for a sandbox no session holds
    std::string sandbox;
    std::string detail;      // the reason, the error, or empty
};

class AuditLog {
public:
    // Opens config.file (when set and enabled); throws std::runtime_error naming it.
    explicit AuditLog(AuditConfig config);

    void record(const RequestRecord& request);
    void record(const SessionEvent& event);

    // Opens the file again, for log rotation; on failure keeps the old one
    // and throws std::runtime_error naming the file.
    void reopen();

    bool includesCode() const { return config_.enabled && config_.includeCode; }

private:
    void write(std::string line);

    AuditConfig config_;
    UniqueFd file_;                            // audit.file
    std::shared_ptr<spdlog::logger> daemonLog_;  // or else the daemon's log
};

}  // namespace sessiond::audit
