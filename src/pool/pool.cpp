#include "sessiond/pool/pool.hpp"

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <utility>

#include <spdlog/spdlog.h>

namespace sessiond {

namespace {
constexpr auto kMaxBackoff = std::chrono::seconds(30);
constexpr auto kFirstBackoff = std::chrono::milliseconds(500);
constexpr auto kRefillDeferral = std::chrono::milliseconds(50);

std::chrono::milliseconds reaperTick(std::chrono::seconds cooldown) {
    auto quarter = std::chrono::duration_cast<std::chrono::milliseconds>(cooldown) / 4;
    return std::clamp(quarter, std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
}

// The labels of Pool::DestroyReason, in its order.
const char* const kDestroyReasons[] = {"cooldown", "deleted", "sandbox_exit", "pool_deleted", "reconfigured", "shutdown"};
}  // namespace

Pool::Instruments::Instruments(metrics::Registry& registry, const std::string& pool)
    : allocations(registry.counter("sessiond_allocations_total", "Sandboxes bound to a new session identifier.",
                                   {{"pool", pool}})),
      startFailures(registry.counter("sessiond_sandbox_start_failures_total",
                                     "Sandbox starts that failed or timed out.", {{"pool", pool}})),
      sandboxExits(registry.counter("sessiond_sandbox_exits_total", "Sandboxes that ended without being asked to.",
                                    {{"pool", pool}})),
      capacityRefusals(registry.counter("sessiond_capacity_refusals_total",
                                        "New sessions refused because maxConcurrentSessions were allocated.",
                                        {{"pool", pool}})),
      allocationSeconds(registry.histogram(
          "sessiond_allocation_seconds",
          "From a new session's first request until its work starts on a sandbox.", {{"pool", pool}})),
      executionSeconds(registry.histogram("sessiond_execution_seconds",
                                          "Code executions, from the request to the pool until its answer.",
                                          {{"pool", pool}})),
      sandboxStartSeconds(registry.histogram("sessiond_sandbox_start_seconds",
                                             "Sandbox starts, from Pending until Unallocated (ready).",
                                             {{"pool", pool}})) {
    static_assert(std::size(kDestroyReasons) == static_cast<std::size_t>(DestroyReason::Count));
    for (const char* reason : kDestroyReasons)
        destroyed.push_back(&registry.counter("sessiond_sessions_destroyed_total",
                                              "Sandboxes destroyed, ready ones included, by reason.",
                                              {{"pool", pool}, {"reason", reason}}));
}

Pool::Pool(boost::asio::io_context& io, PoolConfig config, SandboxBackend& backend, metrics::Registry& registry,
           StartQueue* starts, audit::AuditLog* audit)
    : Pool(io, std::move(config), backend, nullptr, &registry, starts, audit) {}

Pool::Pool(boost::asio::io_context& io, PoolConfig config, SandboxBackend& backend)
    : Pool(io, std::move(config), backend, std::make_unique<metrics::Registry>(), nullptr, nullptr, nullptr) {}

Pool::Pool(boost::asio::io_context& io, PoolConfig config, SandboxBackend& backend,
           std::unique_ptr<metrics::Registry> ownRegistry, metrics::Registry* registry, StartQueue* starts,
           audit::AuditLog* audit)
    : io_(io),
      config_(std::move(config)),
      backend_(backend),
      ownRegistry_(std::move(ownRegistry)),
      ownStarts_(starts ? nullptr : std::make_unique<StartQueue>(io, 0)),
      starts_(starts ? *starts : *ownStarts_),
      metrics_(registry ? *registry : *ownRegistry_, config_.name),
      audit_(audit),
      drainTimer_(io),
      retryTimer_(io),
      reaperTimer_(io),
      refillTimer_(io) {
    metrics::Registry& target = registry ? *registry : *ownRegistry_;
    auto state = [&](const char* name, std::size_t PoolCounts::*field) {
        metrics_.gauges.push_back(target.gauge("sessiond_sessions", "Sandboxes and sessions now, by state.",
                                               {{"pool", config_.name}, {"state", name}},
                                               [this, field] { return static_cast<double>(counts().*field); }));
    };
    state("pending", &PoolCounts::pending);
    state("unallocated", &PoolCounts::unallocated);
    state("allocated", &PoolCounts::allocated);
    state("waiting_for_sandbox", &PoolCounts::waitingForSandbox);
}

Pool::~Pool() {
    *alive_ = false;
    shutdown();
}

void Pool::start() {
    spdlog::info("pool {}: {} backend, {} ready sandboxes, at most {} sessions, cooldown {}s", config_.name,
                 backend_.name(), config_.readySessionInstances, config_.maxConcurrentSessions,
                 config_.cooldownPeriod.count());
    refill();
    scheduleReaper();
}

void Pool::execute(const std::string& identifier, ExecuteRequest request, ExecuteHandler answer) {
    auto alive = std::weak_ptr<bool>(alive_);
    auto onDone = [this, alive, answer = std::move(answer), started = Clock::now()](PoolExecuteOutcome outcome) {
        if (!alive.expired()) metrics_.executionSeconds.observe(Clock::now() - started);
        answer(std::move(outcome));
    };
    auto run = [this, alive, identifier, request = std::move(request), onDone](Sandbox& sandbox,
                                                                              std::function<void()> finished) {
        sandbox.execute(request, [this, alive, identifier, onDone, finished,
                                  failedSandbox = &sandbox](Outcome<ExecuteResult> outcome) {
            finished();
            if (alive.expired()) return onDone({PoolError::ShuttingDown, "sessiond is shutting down", {}});
            if (outcome.ok()) return onDone({PoolError::None, "", std::move(outcome.value)});
            if (stopped_) return onDone({PoolError::ShuttingDown, "sessiond is shutting down", {}});
            // This answer tells of the loss: the sandbox's exit, noticed
            // next, must not tell it again.
            auto session = sessions_.find(identifier);
            if (session != sessions_.end() && session->second.member &&
                session->second.member->sandbox.get() == failedSandbox)
                session->second.member->lossReported = true;
            // The sandbox itself failed: report it as a failed execution, as Azure
            // does for an aborted one, and say plainly that the state is gone.
            PoolExecuteOutcome failed;
            failed.result.succeeded = false;
            failed.result.stateLost = true;
            failed.result.stderrText = "Execution aborted: the session's sandbox failed (" + outcome.error +
                                       "). The session's state is lost; the next request with this identifier "
                                       "starts a new session.";
            onDone(std::move(failed));
        });
    };
    auto fail = [onDone](PoolError error, const std::string& message) { onDone({error, message, {}}); };
    if (auto ended = ended_.find(identifier); ended != ended_.end() && !stopped_ && !draining_) {
        PoolExecuteOutcome lost;
        lost.result.succeeded = false;
        lost.result.stateLost = true;
        lost.result.stderrText = "Execution not run: the session's sandbox ended after its previous request (" +
                                 ended->second.reason +
                                 "). The session's state is lost; the next request with this identifier starts a "
                                 "new session.";
        ended_.erase(ended);
        return onDone(std::move(lost));
    }
    withSession(identifier, {std::move(run), std::move(fail)});
}

void Pool::withSession(const std::string& identifier, SessionWork work) {
    if (stopped_) return work.fail(PoolError::ShuttingDown, "sessiond is shutting down");
    if (draining_) return work.fail(PoolError::ShuttingDown, "the session pool '" + config_.name + "' is being deleted");
    auto it = sessions_.find(identifier);
    if (it != sessions_.end()) {
        Session& session = it->second;
        session.lastActivity = Clock::now();
        if (session.member) return run(session, std::move(work));
        session.waiting.push_back(std::move(work));
        return;
    }
    if (sessions_.size() >= config_.maxConcurrentSessions) {
        metrics_.capacityRefusals.inc();
        return work.fail(PoolError::CapacityExceeded,
                         "The session pool '" + config_.name + "' has reached its maximum of " +
                             std::to_string(config_.maxConcurrentSessions) +
                             " concurrent sessions; no more sessions are being allocated.");
    }

    ended_.erase(identifier);  // a file request started the new session: the loss is past
    Session& session = sessions_[identifier];
    session.identifier = identifier;
    session.createdAt = session.lastActivity = Clock::now();
    if (!ready_.empty()) {
        auto member = std::move(ready_.front());
        ready_.pop_front();
        bind(session, std::move(member));
        session.firstRequestInFlight = true;
        ++firstRequestsInFlight_;
        run(session, std::move(work));
        refillAfterAllocation();
    } else {
        spdlog::info("pool {}: no ready sandbox for new session {}; it waits for one to start", config_.name, identifier);
        auditEvent("waiting", identifier, "");
        session.waiting.push_back(std::move(work));
        waitingOrder_.push_back(identifier);
        refill();
    }
}

void Pool::refillAfterAllocation() {
    if (refillTimerSet_) return;  // a burst of allocations must not keep pushing it back
    refillTimerSet_ = true;
    refillTimer_.expires_after(kRefillDeferral);
    // Cancelled early when the request is answered; either way it refills
    // (refill() itself does nothing once the pool is stopping).
    refillTimer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code) {
        if (alive.expired()) return;
        refillTimerSet_ = false;
        refill();
    });
}

void Pool::firstRequestAnswered() {
    // The cancelled wait's handler refills, queued behind this one, so after
    // the answers are on their way (see refillAfterAllocation).
    if (--firstRequestsInFlight_ == 0 && refillTimerSet_) refillTimer_.cancel();
}

SessionInfo Pool::info(const Session& session) const {
    // Sessions keep steady-clock times; the API speaks wall-clock time.
    const auto steadyNow = Clock::now();
    const auto wallNow = std::chrono::system_clock::now();
    auto wall = [&](Clock::time_point t) {
        return wallNow - std::chrono::duration_cast<std::chrono::system_clock::duration>(steadyNow - t);
    };
    SessionInfo out;
    out.identifier = session.identifier;
    out.etag = session.member ? session.member->sandboxId : "";
    out.createdAt = wall(session.createdAt);
    out.lastAccessedAt = wall(session.lastActivity);
    out.expiresAt = config_.endOnContainerExit ? out.createdAt + config_.maxAlivePeriod
                                               : out.lastAccessedAt + config_.cooldownPeriod;
    return out;
}

std::optional<SessionInfo> Pool::session(const std::string& identifier) const {
    auto it = sessions_.find(identifier);
    if (it == sessions_.end()) return std::nullopt;
    return info(it->second);
}

std::vector<SessionInfo> Pool::sessions() const {
    std::vector<SessionInfo> out;
    out.reserve(sessions_.size());
    for (const auto& [identifier, session] : sessions_) out.push_back(info(session));
    return out;
}

bool Pool::deleteSession(const std::string& identifier) {
    if (!sessions_.count(identifier)) return false;
    destroySession(identifier, "deleted by request", DestroyReason::Deleted);
    return true;
}

void Pool::metadata(MetadataHandler onDone) {
    if (metadata_) return onDone("", *metadata_);
    Sandbox* sandbox = nullptr;
    if (!ready_.empty()) {
        sandbox = ready_.front()->sandbox.get();
    } else {
        for (auto& [identifier, session] : sessions_)
            if (session.member) sandbox = session.member->sandbox.get();
    }
    if (!sandbox) return onDone("no sandbox of the pool is running yet; retry once one is ready", nullptr);
    sandbox->describe([this, alive = std::weak_ptr<bool>(alive_), onDone](Outcome<nlohmann::json> outcome) {
        if (!outcome.ok()) return onDone(outcome.error, nullptr);
        if (!alive.expired()) metadata_ = outcome.value;
        onDone("", outcome.value);
    });
}

void Pool::bind(Session& session, std::unique_ptr<Member> member) {
    ++totals_.allocations;
    metrics_.allocations.inc();
    metrics_.allocationSeconds.observe(Clock::now() - session.createdAt);
    spdlog::info("pool {}: session {} allocated sandbox {} (Unallocated -> Allocated)", config_.name,
                 session.identifier, member->sandboxId);
    auditEvent("allocated", session.identifier, member->sandboxId);
    session.member = std::move(member);
    auto waiting = std::move(session.waiting);
    session.waiting.clear();
    for (auto& work : waiting) run(session, std::move(work));
}

void Pool::run(Session& session, SessionWork work) {
    ++session.inFlight;
    session.lastActivity = Clock::now();
    auto finished = [this, alive = std::weak_ptr<bool>(alive_), identifier = session.identifier,
                     serial = session.member->serial, once = std::make_shared<bool>(false)] {
        if (alive.expired() || *once) return;
        *once = true;
        auto it = sessions_.find(identifier);
        if (it != sessions_.end() && it->second.member && it->second.member->serial == serial) {
            if (std::exchange(it->second.firstRequestInFlight, false)) firstRequestAnswered();
            --it->second.inFlight;
            it->second.lastActivity = Clock::now();
            if (draining_ && it->second.inFlight == 0) {
                destroySession(identifier, "its pool is being deleted", DestroyReason::PoolDeleted);
                finishDrainIfDone();
            }
        }
    };
    work.run(*session.member->sandbox, std::move(finished));
}

void Pool::refill() {
    if (stopped_ || draining_) return;
    if (Clock::now() < retryNotBefore_) return;  // the retry timer calls back
    std::size_t want = config_.readySessionInstances + sessionsWaitingForSandbox();
    std::size_t have = pending_.size() + ready_.size();
    while (have < want) {
        startMember();
        ++have;
    }
}

void Pool::startMember() {
    auto owned = std::make_unique<Member>();
    Member& member = *owned;
    member.serial = nextSerial_++;
    member.sandboxId = config_.name + "-" + std::to_string(member.serial);
    member.queuedAt = Clock::now();
    const std::uint64_t serial = member.serial;
    pending_[serial] = std::move(owned);
    member.turn = starts_.enqueue([this, alive = std::weak_ptr<bool>(alive_), serial] {
        if (!alive.expired()) launch(serial);
    });
}

void Pool::launch(std::uint64_t serial) {
    auto it = pending_.find(serial);
    if (it == pending_.end() || stopped_) return;  // retired while it waited
    Member& member = *it->second;
    member.startedAt = Clock::now();
    try {
        member.sandbox = backend_.create(config_, member.sandboxId);
    } catch (const std::exception& e) {
        boost::asio::post(io_, [this, alive = std::weak_ptr<bool>(alive_), serial, error = std::string(e.what())] {
            if (!alive.expired()) onMemberStarted(serial, error);
        });
        return;
    }
    Sandbox& sandbox = *member.sandbox;
    spdlog::debug("pool {}: starting sandbox {} (Pending)", config_.name, member.sandboxId);
    sandbox.setExitHandler([this, alive = std::weak_ptr<bool>(alive_), serial](std::string reason) {
        boost::asio::post(io_, [this, alive, serial, reason] {
            if (!alive.expired()) onMemberExited(serial, reason);
        });
    });
    sandbox.start([this, alive = std::weak_ptr<bool>(alive_), serial](std::string error) {
        boost::asio::post(io_, [this, alive, serial, error] {
            if (!alive.expired()) onMemberStarted(serial, error);
        });
    });
}

void Pool::onMemberStarted(std::uint64_t serial, const std::string& error) {
    auto it = pending_.find(serial);
    if (it == pending_.end() || stopped_) return;
    auto member = std::move(it->second);
    pending_.erase(it);
    member->turn.reset();  // the next queued start may begin
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - member->startedAt);
    auto queued = std::chrono::duration_cast<std::chrono::milliseconds>(member->startedAt - member->queuedAt);

    if (!error.empty()) {
        ++totals_.startFailures;
        metrics_.startFailures.inc();
        ++consecutiveFailures_;
        auto backoff = std::min<std::chrono::milliseconds>(kMaxBackoff, kFirstBackoff * (1u << std::min(consecutiveFailures_ - 1, 10u)));
        spdlog::error("pool {}: sandbox {} failed to start after {} ms: {} (failure {} in a row; retrying in {} ms)",
                      config_.name, member->sandboxId, elapsed.count(), error, consecutiveFailures_, backoff.count());
        auditEvent("startFailed", "", member->sandboxId, error);
        retire(std::move(member));
        // A waiting session that no other start can serve gets the error now
        // rather than hanging until its client gives up.
        if (sessionsWaitingForSandbox() > pending_.size() && !waitingOrder_.empty()) {
            std::string identifier = waitingOrder_.front();
            waitingOrder_.pop_front();
            auto session = sessions_.find(identifier);
            if (session != sessions_.end() && !session->second.member) {
                auto waiting = std::move(session->second.waiting);
                sessions_.erase(session);
                for (auto& work : waiting)
                    work.fail(PoolError::SandboxUnavailable, "No sandbox could be started for this session: " + error);
            }
        }
        retryNotBefore_ = Clock::now() + backoff;
        retryTimer_.expires_after(backoff);
        retryTimer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
            if (!ec && !alive.expired()) refill();
        });
        return;
    }

    consecutiveFailures_ = 0;
    metrics_.sandboxStartSeconds.observe(Clock::now() - member->startedAt);
    spdlog::info("pool {}: sandbox {} ready in {} ms, after {} ms waiting to start (Pending -> Unallocated)",
                 config_.name, member->sandboxId, elapsed.count(), queued.count());
    auditEvent("started", "", member->sandboxId);
    while (!waitingOrder_.empty()) {
        std::string identifier = waitingOrder_.front();
        waitingOrder_.pop_front();
        auto session = sessions_.find(identifier);
        if (session != sessions_.end() && !session->second.member) {
            bind(session->second, std::move(member));
            break;
        }
    }
    if (member) ready_.push_back(std::move(member));
    refill();
}

void Pool::onMemberExited(std::uint64_t serial, const std::string& reason) {
    ++totals_.sandboxExits;
    metrics_.sandboxExits.inc();
    for (auto it = ready_.begin(); it != ready_.end(); ++it) {
        if ((*it)->serial == serial) {
            spdlog::warn("pool {}: ready sandbox {} ended unexpectedly: {}", config_.name, (*it)->sandboxId, reason);
            auditEvent("ended", "", (*it)->sandboxId, reason);
            auto member = std::move(*it);
            ready_.erase(it);
            retire(std::move(member));
            countDestroyed(DestroyReason::SandboxExit);
            return refill();
        }
    }
    for (auto& [identifier, session] : sessions_) {
        if (session.member && session.member->serial == serial) {
            spdlog::warn("pool {}: sandbox {} of session {} ended unexpectedly: {}", config_.name,
                         session.member->sandboxId, identifier, reason);
            // A request in flight is answered with the loss; otherwise the next one is.
            if (session.inFlight == 0 && !session.member->lossReported) ended_[identifier] = {reason, Clock::now()};
            return destroySession(std::string(identifier), "its sandbox ended: " + reason, DestroyReason::SandboxExit);
        }
    }
}

void Pool::destroySession(const std::string& identifier, const std::string& why, DestroyReason reason) {
    auto it = sessions_.find(identifier);
    if (it == sessions_.end()) return;
    Session session = std::move(it->second);
    sessions_.erase(it);
    if (session.firstRequestInFlight) firstRequestAnswered();
    countDestroyed(reason);
    spdlog::info("pool {}: session {} destroyed (Allocated -> Destroyed): {}", config_.name, identifier, why);
    auditEvent("destroyed", identifier, session.member ? session.member->sandboxId : "", why);
    if (session.member) retire(std::move(session.member));
    for (auto& work : session.waiting) work.fail(PoolError::SandboxUnavailable, "The session was destroyed: " + why);
    refill();
}

void Pool::auditEvent(const char* event, const std::string& identifier, const std::string& sandbox,
                 const std::string& detail) {
    if (audit_) audit_->record(audit::SessionEvent{event, config_.name, identifier, sandbox, detail});
}

void Pool::countDestroyed(DestroyReason reason, std::uint64_t sandboxes) {
    totals_.destroyed += sandboxes;
    metrics_.destroyed[static_cast<std::size_t>(reason)]->inc(sandboxes);
}

void Pool::retire(std::unique_ptr<Member> member) {
    // Never destroy a sandbox inside one of its own callbacks.
    std::shared_ptr<Member> owned(std::move(member));
    boost::asio::post(io_, [owned]() mutable { owned.reset(); });
}

void Pool::scheduleReaper() {
    reaperTimer_.expires_after(
        reaperTick(config_.endOnContainerExit ? std::min(config_.cooldownPeriod, config_.maxAlivePeriod) : config_.cooldownPeriod));
    reaperTimer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
        if (ec || alive.expired() || stopped_) return;
        reap();
        scheduleReaper();
    });
}

void Pool::reap() {
    auto now = Clock::now();
    std::erase_if(ended_, [&](const auto& entry) { return now - entry.second.at >= config_.cooldownPeriod; });
    std::vector<std::string> idle;
    // OnContainerExit: a session ends at its maximum age, busy or not (its
    // container's own exit ends it sooner, as a sandbox exit).
    if (config_.endOnContainerExit) {
        for (const auto& [identifier, session] : sessions_)
            if (session.member && now - session.createdAt >= config_.maxAlivePeriod) idle.push_back(identifier);
        for (const auto& identifier : idle)
            destroySession(identifier,
                           "alive for " + std::to_string(config_.maxAlivePeriod.count()) + " s (maxAlivePeriodInSeconds)",
                           DestroyReason::Cooldown);
        return;
    }
    for (const auto& [identifier, session] : sessions_)
        if (session.member && session.inFlight == 0 && now - session.lastActivity >= config_.cooldownPeriod)
            idle.push_back(identifier);
    for (const auto& identifier : idle)
        destroySession(identifier, "idle for " + std::to_string(config_.cooldownPeriod.count()) + " s (cooldown)",
                       DestroyReason::Cooldown);
}

std::size_t Pool::sessionsWaitingForSandbox() const {
    std::size_t n = 0;
    for (const auto& [identifier, session] : sessions_)
        if (!session.member) ++n;
    return n;
}

PoolCounts Pool::counts() const {
    PoolCounts counts = totals_;
    counts.pending = pending_.size();
    counts.unallocated = ready_.size();
    counts.waitingForSandbox = sessionsWaitingForSandbox();
    counts.allocated = sessions_.size() - counts.waitingForSandbox;
    return counts;
}

nlohmann::json Pool::describe() const {
    PoolCounts c = counts();
    nlohmann::json properties = poolDefinition(config_);
    properties.erase("name");
    // Secrets' values are written to the pool store, never shown.
    if (properties.contains("secrets"))
        for (auto& secret : properties["secrets"]) secret.erase("value");
    properties["provisioningState"] = stopped_ || draining_ ? "Deleting" : "Succeeded";
    properties["sessions"] = {{"pending", c.pending},
                              {"unallocated", c.unallocated},
                              {"allocated", c.allocated},
                              {"waitingForSandbox", c.waitingForSandbox}};
    properties["totals"] = {{"allocations", c.allocations},
                            {"destroyed", c.destroyed},
                            {"startFailures", c.startFailures},
                            {"sandboxExits", c.sandboxExits}};
    return {{"id", "/pools/" + config_.name},
            {"name", config_.name},
            {"type", "Microsoft.App/sessionPools"},
            {"properties", std::move(properties)}};
}

void Pool::reconfigure(PoolConfig config) {
    const bool templateChanged =
        config.resources != config_.resources || config.preloadModules != config_.preloadModules ||
        config.egressEnabled != config_.egressEnabled || config.allowedDestinations != config_.allowedDestinations ||
        config.container != config_.container ||
        config.secrets != config_.secrets;
    config_ = std::move(config);
    std::size_t replaced = 0;
    if (templateChanged) {
        // Sandboxes made from the old template must not reach a new session.
        replaced = pending_.size() + ready_.size();
        for (auto& [serial, member] : pending_) retire(std::move(member));
        pending_.clear();
        while (!ready_.empty()) {
            retire(std::move(ready_.front()));
            ready_.pop_front();
        }
        metadata_.reset();
    }
    while (ready_.size() > config_.readySessionInstances) {
        retire(std::move(ready_.back()));
        ready_.pop_back();
        ++replaced;
    }
    spdlog::info("pool {}: reconfigured: {} ready sandboxes, at most {} sessions, cooldown {}s{}", config_.name,
                 config_.readySessionInstances, config_.maxConcurrentSessions, config_.cooldownPeriod.count(),
                 templateChanged ? "; new sandbox template, ready sandboxes replaced" : "");
    countDestroyed(DestroyReason::Reconfigured, replaced);
    // A waiting session whose sandbox was starting from the old template
    // gets one from the new template.
    refill();
}

void Pool::drain(std::chrono::seconds deadline, std::function<void()> onDrained) {
    if (stopped_ || draining_) return;
    draining_ = true;
    onDrained_ = std::move(onDrained);
    retryTimer_.cancel();
    spdlog::info("pool {}: deleting: no new sessions; {} sessions end when their running requests do", config_.name,
                 sessions_.size());
    countDestroyed(DestroyReason::PoolDeleted, pending_.size() + ready_.size());
    pending_.clear();
    ready_.clear();
    waitingOrder_.clear();
    std::vector<std::string> idle;
    for (auto& [identifier, session] : sessions_)
        if (!session.member || session.inFlight == 0) idle.push_back(identifier);
    for (const auto& identifier : idle)
        destroySession(identifier, "its pool is being deleted", DestroyReason::PoolDeleted);
    drainTimer_.expires_after(deadline);
    drainTimer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
        if (ec || alive.expired() || !onDrained_) return;
        spdlog::warn("pool {}: {} sessions still busy at the deletion deadline; destroying them", config_.name,
                     sessions_.size());
        shutdown();
        finishDrainIfDone();
    });
    finishDrainIfDone();
}

void Pool::finishDrainIfDone() {
    if (!sessions_.empty() || !onDrained_) return;
    drainTimer_.cancel();
    // Called from inside request callbacks: let them unwind before the owner
    // destroys this pool.
    boost::asio::post(io_, std::exchange(onDrained_, nullptr));
}

void Pool::shutdown() {
    if (stopped_) return;
    stopped_ = true;
    retryTimer_.cancel();
    reaperTimer_.cancel();
    drainTimer_.cancel();
    std::size_t count = pending_.size() + ready_.size() + sessions_.size();
    // Past a deletion's deadline the pool is shut down too.
    countDestroyed(draining_ ? DestroyReason::PoolDeleted : DestroyReason::Shutdown, count);
    // Destroy synchronously: after shutdown() returns no sandbox of this pool exists.
    pending_.clear();
    ready_.clear();
    auto sessions = std::move(sessions_);
    sessions_.clear();
    waitingOrder_.clear();
    const char* why = draining_ ? "its pool was deleted" : "sessiond is shutting down";
    for (auto& [identifier, session] : sessions) {
        auditEvent("destroyed", identifier, session.member ? session.member->sandboxId : "", why);
        session.member.reset();
        for (auto& work : session.waiting) work.fail(PoolError::ShuttingDown, "sessiond is shutting down");
    }
    if (count) spdlog::info("pool {}: destroyed {} sandboxes at shutdown", config_.name, count);
}

PoolManager::PoolManager(boost::asio::io_context& io, const std::vector<PoolConfig>& pools, BackendProvider backends,
                         metrics::Registry& registry, PoolStore* store, audit::AuditLog* audit)
    : io_(io), backends_(std::move(backends)), registry_(registry), store_(store), audit_(audit) {
    for (const auto& config : pools) pools_[config.name] = makePool(config, backends_(config.backend));
}

std::unique_ptr<Pool> PoolManager::makePool(const PoolConfig& config, SandboxBackend& backend) {
    auto& starts = starts_[&backend];
    if (!starts.queue) {
        starts.queue = std::make_unique<StartQueue>(io_, backend.maxConcurrentStarts());
        StartQueue* queue = starts.queue.get();
        const std::string help = "Sandbox starts now running and waiting for their turn, by backend.";
        starts.gauges.push_back(registry_.gauge("sessiond_sandbox_starts", help,
                                                {{"backend", backend.name()}, {"state", "running"}},
                                                [queue] { return static_cast<double>(queue->running()); }));
        starts.gauges.push_back(registry_.gauge("sessiond_sandbox_starts", help,
                                                {{"backend", backend.name()}, {"state", "queued"}},
                                                [queue] { return static_cast<double>(queue->queued()); }));
    }
    return std::make_unique<Pool>(io_, config, backend, registry_, starts.queue.get(), audit_);
}

void PoolManager::start() {
    started_ = true;
    for (auto& [name, pool] : pools_) pool->start();
}

Pool* PoolManager::find(const std::string& name) {
    auto it = pools_.find(name);
    return it == pools_.end() ? nullptr : it->second.get();
}

Pool* PoolManager::findIncludingDeleted(const std::string& name) {
    if (Pool* pool = find(name)) return pool;
    auto it = deleting_.find(name);
    return it == deleting_.end() ? nullptr : it->second.get();
}

std::vector<Pool*> PoolManager::all() {
    std::vector<Pool*> out;
    for (auto& [name, pool] : pools_) out.push_back(pool.get());
    for (auto& [name, pool] : deleting_) out.push_back(pool.get());
    return out;
}

bool PoolManager::apply(const PoolConfig& config) {
    if (deleting_.count(config.name))
        throw PoolConflict("The session pool '" + config.name + "' is being deleted; try again when it is gone.");
    auto existing = pools_.find(config.name);
    if (existing != pools_.end()) {
        const PoolConfig& current = existing->second->config();
        if (config.containerType != current.containerType)
            throw ConfigError("properties.containerType", "cannot change from " + current.containerType + " to " +
                                                              config.containerType + "; delete the pool and create it again");
        if (config.backend != current.backend)
            throw ConfigError("properties.backend", "cannot change from " + current.backend + " to " + config.backend +
                                                        "; delete the pool and create it again");
        if (store_) store_->saveDefinition(config);
        existing->second->reconfigure(config);
        return false;
    }
    SandboxBackend* backend = nullptr;
    try {
        backend = &backends_(config.backend);
    } catch (const std::exception& e) {
        throw ConfigError("properties.backend", "the " + config.backend + " backend is not available: " + e.what());
    }
    if (store_) store_->saveDefinition(config);
    auto& pool = pools_[config.name] = makePool(config, *backend);
    spdlog::info("pool {}: created through the API", config.name);
    if (started_) pool->start();
    return true;
}

bool PoolManager::remove(const std::string& name, std::function<void()> onRemoved) {
    auto it = pools_.find(name);
    if (it == pools_.end()) return false;
    if (store_) store_->saveDeletion(name);
    Pool* pool = it->second.get();
    deleting_[name] = std::move(it->second);
    pools_.erase(it);
    // Running executions may take up to the pool's longest timeout.
    const auto deadline = pool->config().maxExecutionTimeout + std::chrono::seconds(10);
    pool->drain(deadline, [this, name, backend = pool->config().backend, onRemoved = std::move(onRemoved)] {
        deleting_.erase(name);
        backends_(backend).poolRemoved(name);
        spdlog::info("pool {}: deleted", name);
        if (onRemoved) onRemoved();
    });
    return true;
}

void PoolManager::shutdown() {
    for (auto& [name, pool] : pools_) pool->shutdown();
    for (auto& [name, pool] : deleting_) pool->shutdown();
}

}  // namespace sessiond
