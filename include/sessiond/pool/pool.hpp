#pragma once
// One session pool: a warm set of started sandboxes and the sessions that hold
// one each. A sandbox moves Pending (starting) -> Unallocated (ready) ->
// Allocated (bound to a session identifier) -> Destroyed. The pool keeps
// `readySessionInstances` sandboxes Pending or Unallocated, caps Allocated
// sessions at `maxConcurrentSessions`, destroys a session after its idle
// cooldown, and retries failed starts with backoff. Everything runs on the
// io_context thread.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

#include "sessiond/audit/audit_log.hpp"
#include "sessiond/config.hpp"
#include "sessiond/metrics/metrics.hpp"
#include "sessiond/pool/pool_store.hpp"
#include "sessiond/pool/start_queue.hpp"
#include "sessiond/sandbox/sandbox.hpp"

namespace sessiond {

enum class PoolError {
    None,
    CapacityExceeded,    // maxConcurrentSessions sessions are allocated
    SandboxUnavailable,  // no sandbox could be started for a new session
    ShuttingDown,
};

struct PoolExecuteOutcome {
    PoolError error = PoolError::None;
    std::string message;    // for errors
    ExecuteResult result;   // when error == None
};

struct PoolCounts {
    std::size_t pending = 0;
    std::size_t unallocated = 0;
    std::size_t allocated = 0;
    std::size_t waitingForSandbox = 0;  // new sessions waiting for a sandbox to start
    std::uint64_t destroyed = 0;        // since start
    std::uint64_t allocations = 0;
    std::uint64_t startFailures = 0;
    std::uint64_t sandboxExits = 0;     // sandboxes that ended unasked
};

// What the session routes report about one session.
struct SessionInfo {
    std::string identifier;
    std::string etag;  // the sandbox's id: it changes when the identifier starts over
    std::chrono::system_clock::time_point createdAt;
    std::chrono::system_clock::time_point lastAccessedAt;
    std::chrono::system_clock::time_point expiresAt;  // when the cooldown ends if no request comes
};

// Work on one session's sandbox. `run` is called once the session has a
// sandbox and must call `finished` exactly once, when its last callback has
// run (until then the session counts as busy and is not reaped). `fail` is
// called instead when no sandbox can serve the session.
struct SessionWork {
    std::function<void(Sandbox& sandbox, std::function<void()> finished)> run;
    std::function<void(PoolError error, const std::string& message)> fail;
};

class Pool {
public:
    using Clock = std::chrono::steady_clock;
    using ExecuteHandler = std::function<void(PoolExecuteOutcome)>;
    using MetadataHandler = std::function<void(std::string error, const nlohmann::json& metadata)>;

    // The pool's metrics (docs/api.md, "Metrics") go to `registry`, which
    // must outlive the pool; without one, to a registry of its own that
    // nobody reads. Its sandboxes start when `starts` gives them a turn;
    // without a queue, all at once. Lifecycle events go to `audit`, when
    // given, which must outlive the pool.
    Pool(boost::asio::io_context& io, PoolConfig config, SandboxBackend& backend, metrics::Registry& registry,
         StartQueue* starts = nullptr, audit::AuditLog* audit = nullptr);
    Pool(boost::asio::io_context& io, PoolConfig config, SandboxBackend& backend);
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    const PoolConfig& config() const { return config_; }
    std::chrono::system_clock::time_point createdAt() const { return createdAt_; }

    // Starts filling the warm set and the cooldown reaper.
    void start();

    // Runs code in the session named `identifier`, allocating a sandbox to it
    // if it is new. Every call counts as activity for the cooldown.
    void execute(const std::string& identifier, ExecuteRequest request, ExecuteHandler onDone);

    // Runs `work` on the sandbox of the session named `identifier`,
    // allocating one if the session is new; counts as activity.
    void withSession(const std::string& identifier, SessionWork work);

    // Sessions that exist (allocated, or waiting for their sandbox), by identifier.
    std::optional<SessionInfo> session(const std::string& identifier) const;
    std::vector<SessionInfo> sessions() const;
    // Destroys the session now; its identifier's next use starts a fresh,
    // empty session. False if there is no such session.
    bool deleteSession(const std::string& identifier);

    // The runtime and packages of this pool's sandboxes (GET /metadata),
    // asked of a running sandbox once and then remembered.
    void metadata(MetadataHandler onDone);

    PoolCounts counts() const;
    // The pool as the administration API shows it: its definition (as
    // poolDefinition() writes it) under `properties`, with the read-only
    // provisioningState, session counts and totals.
    nlohmann::json describe() const;

    // Takes a new definition of this pool (same name, containerType and
    // backend). Sessions keep the sandboxes they have; when the sandbox
    // template (resources, preloaded modules) changed, the ready sandboxes are
    // replaced, and extra ready ones are destroyed when readySessionInstances fell.
    void reconfigure(PoolConfig config);

    // For the pool's deletion: takes no new sessions, destroys ready and idle
    // sandboxes at once and each busy session's when its running requests end,
    // then calls `onDrained` (once). What is still running at `deadline` is
    // destroyed then.
    void drain(std::chrono::seconds deadline, std::function<void()> onDrained);
    bool draining() const { return draining_; }

    // Destroys every sandbox and fails waiting requests. The pool stays stopped.
    void shutdown();

private:
    // Where a sandbox's destruction is counted (sessiond_sessions_destroyed_total's reason).
    enum class DestroyReason { Cooldown, Deleted, SandboxExit, PoolDeleted, Reconfigured, Shutdown, Count };
    struct Instruments {
        Instruments(metrics::Registry& registry, const std::string& pool);
        metrics::Counter& allocations;
        metrics::Counter& startFailures;
        metrics::Counter& sandboxExits;
        metrics::Counter& capacityRefusals;
        metrics::Histogram& allocationSeconds;
        metrics::Histogram& executionSeconds;
        metrics::Histogram& sandboxStartSeconds;
        std::vector<metrics::Counter*> destroyed;  // by DestroyReason
        std::vector<metrics::GaugeRegistration> gauges;
    };

    Pool(boost::asio::io_context& io, PoolConfig config, SandboxBackend& backend,
         std::unique_ptr<metrics::Registry> ownRegistry, metrics::Registry* registry, StartQueue* starts,
         audit::AuditLog* audit);
    void auditEvent(const char* event, const std::string& identifier, const std::string& sandbox,
               const std::string& detail = "");

    struct Member {
        std::uint64_t serial;
        std::string sandboxId;
        std::unique_ptr<Sandbox> sandbox;  // null while its start waits for a turn
        std::unique_ptr<StartQueue::Turn> turn;  // until the start has ended
        Clock::time_point queuedAt;
        Clock::time_point startedAt;
        bool lossReported = false;  // a request was answered that its sandbox failed
    };
    struct Session {
        std::string identifier;
        std::unique_ptr<Member> member;  // null while waiting for a sandbox
        Clock::time_point createdAt;
        Clock::time_point lastActivity;
        std::size_t inFlight = 0;
        bool firstRequestInFlight = false;  // counted in firstRequestsInFlight_
        std::vector<SessionWork> waiting;  // until a sandbox is bound
    };

    void refill();
    // Starts the replacements for sandboxes just allocated once no new
    // session's first request is in flight, or after kRefillDeferral:
    // starting a sandbox takes CPU those requests would otherwise wait
    // for, and when many sessions begin at once each has one.
    void refillAfterAllocation();
    void firstRequestAnswered();
    // Queues a start (Pending); launch() starts it when its turn comes.
    void startMember();
    void launch(std::uint64_t serial);
    void onMemberStarted(std::uint64_t serial, const std::string& error);
    void onMemberExited(std::uint64_t serial, const std::string& reason);
    void bind(Session& session, std::unique_ptr<Member> member);
    void run(Session& session, SessionWork work);
    void destroySession(const std::string& identifier, const std::string& why, DestroyReason reason);
    // In the totals GET /pools shows and in the metrics, by reason.
    void countDestroyed(DestroyReason reason, std::uint64_t sandboxes = 1);
    SessionInfo info(const Session& session) const;
    void retire(std::unique_ptr<Member> member);
    void reap();
    void scheduleReaper();
    void finishDrainIfDone();
    std::size_t sessionsWaitingForSandbox() const;

    boost::asio::io_context& io_;
    PoolConfig config_;
    SandboxBackend& backend_;
    std::unique_ptr<metrics::Registry> ownRegistry_;  // when none was given; outlives metrics_
    std::unique_ptr<StartQueue> ownStarts_;           // when none was given
    StartQueue& starts_;
    Instruments metrics_;
    audit::AuditLog* audit_;
    bool stopped_ = false;
    bool draining_ = false;
    std::function<void()> onDrained_;
    boost::asio::steady_timer drainTimer_;
    std::uint64_t nextSerial_ = 1;

    std::map<std::uint64_t, std::unique_ptr<Member>> pending_;
    std::deque<std::unique_ptr<Member>> ready_;
    std::map<std::string, Session> sessions_;
    std::deque<std::string> waitingOrder_;  // identifiers waiting for a sandbox, oldest first
    // Sessions whose sandbox ended while no request of theirs ran: the next
    // execution is told, instead of running silently in a new, empty
    // session. Kept for a cooldown period at most.
    struct Ended {
        std::string reason;
        Clock::time_point at;
    };
    std::map<std::string, Ended> ended_;

    unsigned consecutiveFailures_ = 0;
    Clock::time_point retryNotBefore_{};
    boost::asio::steady_timer retryTimer_;
    boost::asio::steady_timer reaperTimer_;
    boost::asio::steady_timer refillTimer_;
    bool refillTimerSet_ = false;
    std::size_t firstRequestsInFlight_ = 0;
    PoolCounts totals_;
    std::optional<nlohmann::json> metadata_;
    std::chrono::system_clock::time_point createdAt_ = std::chrono::system_clock::now();
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Thrown by PoolManager::apply for a pool name that is being deleted.
class PoolConflict : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The daemon's pools: those of the configuration (with the changes the
// administration API stored, see PoolStore) at start, then created, changed
// and deleted through the API.
class PoolManager {
public:
    // The backend a pool's `backend` field names, made on first use; throws
    // std::runtime_error if this host cannot provide it.
    using BackendProvider = std::function<SandboxBackend&(const std::string& backend)>;

    // `store` (optional) records every change made through apply() and
    // remove(); the pools' metrics go to `registry` and their lifecycle
    // events to `audit` (optional), which must outlive them.
    PoolManager(boost::asio::io_context& io, const std::vector<PoolConfig>& pools, BackendProvider backends,
                metrics::Registry& registry, PoolStore* store = nullptr, audit::AuditLog* audit = nullptr);
    void start();

    // The pool serving requests under this name; a pool being deleted is not.
    Pool* find(const std::string& name);
    // Also a pool being deleted (for the administration API to show it).
    Pool* findIncludingDeleted(const std::string& name);
    std::vector<Pool*> all();  // including those being deleted

    // Creates the pool (true) or gives an existing one its new definition
    // (false), stored first. Throws ConfigError naming the field for a change a
    // pool cannot take (containerType, backend) or an unavailable backend,
    // PoolConflict while the name's pool is being deleted, and
    // std::runtime_error if the change cannot be stored.
    bool apply(const PoolConfig& config);

    // Deletes the pool: stored first, then drained (see Pool::drain), then
    // `onRemoved` is called. False if no pool has that name. Throws
    // std::runtime_error if the deletion cannot be stored.
    bool remove(const std::string& name, std::function<void()> onRemoved);

    void shutdown();

private:
    boost::asio::io_context& io_;
    BackendProvider backends_;
    metrics::Registry& registry_;
    PoolStore* store_;
    audit::AuditLog* audit_;
    bool started_ = false;
    // One per backend, shared by its pools (declared first: they outlive the pools).
    struct BackendStarts {
        std::unique_ptr<StartQueue> queue;
        std::vector<metrics::GaugeRegistration> gauges;
    };
    std::map<SandboxBackend*, BackendStarts> starts_;
    std::map<std::string, std::unique_ptr<Pool>> pools_;
    std::map<std::string, std::unique_ptr<Pool>> deleting_;

    std::unique_ptr<Pool> makePool(const PoolConfig& config, SandboxBackend& backend);
};

}  // namespace sessiond
