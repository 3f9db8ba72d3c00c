#include "sessiond/sandbox/namespace/namespace_backend.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <sstream>

#include <spdlog/spdlog.h>

#include "sessiond/sandbox/agent_sandbox.hpp"
#include "sessiond/sandbox/egress_network.hpp"
#include "sessiond/sandbox/namespace/cgroup.hpp"
#include "sessiond/sandbox/namespace/jail.hpp"
#include "sessiond/sandbox/worker_thread.hpp"
#include "sessiond/unique_fd.hpp"
#include "container_sandbox.hpp"
#include "jail_egress.hpp"
#include "zygote.hpp"

namespace sessiond {

namespace {

constexpr int kAgentFd = 3;
constexpr int kSetupFd = 4;
constexpr const char* kAgentMountPoint = "/opt/sessiond/agent";
constexpr const char* kJailLibraryMountPoint = "/opt/sessiond/lib/libsessiond-jail.so";
constexpr const char* kReaperMountPoint = "/opt/sessiond/lib/sessiond-reap";
constexpr const char* kSessionInterface = JailEgress::kInterface;

// The most a pool can get: the daemon's own hard limit, which nsinit (root,
// but perhaps without CAP_SYS_RESOURCE) cannot raise.
std::uint64_t maxOpenFiles() {
    rlimit limit{};
    return ::getrlimit(RLIMIT_NOFILE, &limit) == 0 ? limit.rlim_max : 1024;
}

std::string describeWaitStatus(int status) {
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        if (code == 125) return "the jail could not be set up (exit code 125; see the daemon's log for nsinit's message)";
        return "exit code " + std::to_string(code);
    }
    if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
    return "status " + std::to_string(status);
}

// What every sandbox of a pool gets, whether forked from a zygote or started
// afresh by nsinit.
JailSpec commonSpec(const PoolConfig& pool, const NamespaceSandboxConfig& sandbox) {
    JailSpec spec;
    spec.hostname = "sandbox";
    spec.tmpfsBytes = pool.resources.tmpfsBytes;
    spec.uid = sandbox.sandboxUid;
    spec.gid = sandbox.sandboxUid;
    spec.hostUidBase = sandbox.hostUidBase;
    spec.openFiles = pool.resources.openFiles;
    spec.seccomp = sandbox.seccomp;
    spec.workingDirectory = "/mnt/data";
    spec.keepFds = {kAgentFd};
    return spec;
}

// The agent's command line, after the interpreter and script.
std::vector<std::string> agentArguments(const PoolConfig& pool) {
    std::vector<std::string> args = {"--language", agentLanguage(pool)};
    if (!pool.preloadModules.empty()) {
        std::string modules;
        for (const auto& m : pool.preloadModules) modules += (modules.empty() ? "" : ",") + m;
        args.push_back("--preload");
        args.push_back(modules);
    }
    return args;
}

// A jail that runs `script` from the agent directory: a fresh sandbox runs
// the agent, a zygote runs sessiond_zygote.py.
JailSpec processSpec(const PoolConfig& pool, const NamespaceSandboxConfig& sandbox, const BackendPaths& paths,
                     const std::string& script, const std::vector<std::string>& args) {
    JailSpec spec = commonSpec(pool, sandbox);
    for (const auto& path : sandbox.readOnlyPaths) spec.mounts.push_back({path, path, false});
    spec.mounts.push_back({paths.agentDirectory.string(), kAgentMountPoint, false});
    spec.argv = {sandbox.interpreter.string(), std::string(kAgentMountPoint) + "/" + script};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"},
                {"HOME", "/tmp"},
                {"LANG", "C.UTF-8"},
                {"TMPDIR", "/tmp"},
                {"MPLBACKEND", "Agg"},
                {"MPLCONFIGDIR", "/tmp/.matplotlib"},
                {"PYTHONDONTWRITEBYTECODE", "1"}};
    return spec;
}

class NamespaceSandbox : public AgentSandbox {
public:
    NamespaceSandbox(boost::asio::io_context& io, const PoolConfig& pool, const std::string& id,
                     const NamespaceSandboxConfig& sandbox, const std::string& cgroupName, const BackendPaths& paths,
                     std::shared_ptr<Zygote> zygote, std::function<std::shared_ptr<EgressNetwork>()> egressNetwork,
                     WorkerThread& worker)
        : AgentSandbox(io, id, pool.sandboxStartTimeout), pool_(pool), sandbox_(sandbox), cgroupName_(cgroupName),
          paths_(paths), zygote_(std::move(zygote)), egressNetwork_(std::move(egressNetwork)), worker_(worker) {}

    ~NamespaceSandbox() override {
        if (exitWatch_) exitWatch_->cancel();
        exitWatch_.reset();
        // Its network goes at once, from this thread, which owns the egress
        // network's addresses: removing the host end removes the pair, so
        // the dying processes are cut off before the address is reused.
        egress_.reset();
        jailEgress_.reset();
        // Waiting for a killed session to exit and removing its cgroup take
        // milliseconds each: the worker does it, after this sandbox's other
        // cgroup work.
        worker_.post([process = std::shared_ptr<JailedProcess>(std::move(process_)),
                       forked = std::shared_ptr<ZygoteSession>(std::move(forked_)), cgroup = cgroup_]() mutable {
            process.reset();  // SIGKILL and reap the jail
            forked.reset();   // or SIGKILL the forked session's pid 1
            cgroup->reset();  // kill anything left in the cgroup, remove it
        });
    }

protected:
    // Making a cgroup waits behind any cgroup move or removal under way (on
    // cgroup v1 often 10 to 30 ms, an RCU grace period): the worker makes it.
    void launch(LaunchHandler onLaunched) override {
        const ResourceLimits& resources = pool_.resources;
        CgroupLimits limits{resources.cpus, resources.memoryBytes, resources.pids, CpuWeight::Background};
        onWorker([cgroup = cgroup_, group = cgroupName_, leaf = id(), limits] {
                     *cgroup = Cgroup::create(group, leaf, limits);
                 },
                 [this, onLaunched = std::move(onLaunched)](const std::string& error) {
                     if (!error.empty()) return onLaunched(error, std::nullopt);
                     try {
                         launchInCgroup(onLaunched);
                     } catch (const std::exception& e) {
                         onLaunched(e.what(), std::nullopt);
                     }
                 });
    }

    void launchInCgroup(LaunchHandler onLaunched) {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
            throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
        UniqueFd ours(fds[0]), theirs(fds[1]);
        if (zygote_) return fork(std::move(ours), std::move(theirs), std::move(onLaunched));

        std::vector<std::string> args = {"--fd", std::to_string(kAgentFd), "--workdir", "/mnt/data"};
        const auto language = agentArguments(pool_);
        args.insert(args.end(), language.begin(), language.end());
        JailSpec spec = processSpec(pool_, sandbox_, paths_, "sessiond_agent.py", args);
        spec.cgroupProcsFiles = (*cgroup_)->procsFiles();
        std::map<int, int> passed = {{theirs.get(), kAgentFd}};
        if (pool_.egressEnabled) jailEgress_.emplace(io_, *egressNetwork_(), pool_, id(), spec, kSetupFd, passed);
        process_ = JailedProcess::spawn(paths_.nsinit, spec, passed);
        theirs.reset();
        watchExit(process_->pidfd(), [this] {
            int status = 0;
            process_->tryReap(&status);
            return describeWaitStatus(status);
        });
        auto channel = std::make_shared<AgentChannel::Socket>(io_, boost::asio::local::stream_protocol(), ours.release());
        if (!jailEgress_) return onLaunched("", std::move(*channel));
        jailEgress_->connectWhenReported([channel, onLaunched = std::move(onLaunched)](std::string error) {
            if (!error.empty()) return onLaunched(error, std::nullopt);
            onLaunched("", std::move(*channel));
        });
    }

    LimitCounters limitCounters() const override {
        const Cgroup* cgroup = cgroup_->get();
        if (!cgroup) return {};
        return {pool_.resources.memoryBytes, cgroup->oomKills(), pool_.resources.pids, cgroup->pidsLimitHits()};
    }

    void becameReady() override {
        try {
            (*cgroup_)->setCpuWeight(CpuWeight::Normal);
        } catch (const std::exception& e) {
            spdlog::warn("sandbox {}: stays at background CPU weight: {}", id(), e.what());
        }
    }

private:
    void fork(UniqueFd ours, UniqueFd theirs, LaunchHandler onLaunched) {
        int pipeFds[2];
        if (::pipe2(pipeFds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
        UniqueFd goRead(pipeFds[0]);
        auto goWrite = std::make_shared<UniqueFd>(pipeFds[1]);
        auto channel = std::make_shared<UniqueFd>(std::move(ours));
        JailSpec spec = commonSpec(pool_, sandbox_);
        if (pool_.egressEnabled) {
            egress_ = egressNetwork_()->reserve(EgressTenant::of(pool_, id()));
            spec.network = JailEgress::network(*egress_);
        }
        zygote_->spawn(
            spec, std::move(theirs), std::move(goRead),
            [this, alive = std::weak_ptr<void>(lifetime_), channel, goWrite, onLaunched = std::move(onLaunched)](
                std::string error, UniqueFd pidfd) {
                if (alive.expired()) return;
                if (!error.empty()) return onLaunched(error, std::nullopt);
                forked_ = std::make_unique<ZygoteSession>(std::move(pidfd), zygote_->jail());
                zygote_.reset();  // the jail, held by forked_, is all this sandbox needs of it now
                const pid_t pid = pidOfPidfd(forked_->pidfd());
                if (pid == 0) return onLaunched("the sandbox process ended before it started", std::nullopt);
                attachThenGo(pid, goWrite, channel, std::move(onLaunched));
            });
    }

    // A cgroup v1 move waits for an RCU grace period, often 10 to 30 ms: on
    // the worker, it would otherwise stall every request in flight. The pid
    // cannot be reused meanwhile: the session's pid 1 is only reaped once
    // killed, and this sandbox's teardown queues behind the move.
    void attachThenGo(pid_t pid, std::shared_ptr<UniqueFd> goWrite, std::shared_ptr<UniqueFd> channel,
                      LaunchHandler onLaunched) {
        onWorker([cgroup = cgroup_, pid] { (*cgroup)->attach(pid); },
                 [this, pid, goWrite, channel, onLaunched = std::move(onLaunched)](const std::string& error) {
                     if (!error.empty()) return onLaunched(error, std::nullopt);
                     try {
                         if (egress_) egress_->connect(pid, kSessionInterface);
                     } catch (const std::exception& e) {
                         return onLaunched(e.what(), std::nullopt);
                     }
                     // The session's pid 1 waits for this byte before anything
                     // of the session runs.
                     if (::write(goWrite->get(), "x", 1) != 1)
                         return onLaunched("the sandbox process ended before it started", std::nullopt);
                     goWrite->reset();
                     watchExit(forked_->pidfd(), [] { return std::string("it exited"); });
                     onLaunched("", AgentChannel::Socket(io_, boost::asio::local::stream_protocol(), channel->release()));
                 });
    }

    void onWorker(std::function<void()> work, std::function<void(const std::string& error)> then) {
        worker_.postThen(io_, lifetime_, std::move(work), std::move(then));
    }

    void watchExit(int pidfd, std::function<std::string()> describe) {
        exitWatch_.emplace(io_, ::dup(pidfd));
        exitWatch_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                               [this, alive = std::weak_ptr<void>(lifetime_),
                                describe = std::move(describe)](boost::system::error_code ec) {
                                   if (ec || alive.expired()) return;
                                   reportExit("the sandbox process ended: " + describe());
                               });
    }

    PoolConfig pool_;
    NamespaceSandboxConfig sandbox_;
    std::string cgroupName_;
    BackendPaths paths_;
    std::shared_ptr<Zygote> zygote_;  // until the session is forked
    // Made, moved into and removed on the worker, in that order; this thread
    // reads its counters and sets its weight once it is made.
    std::shared_ptr<std::unique_ptr<Cgroup>> cgroup_ = std::make_shared<std::unique_ptr<Cgroup>>();
    std::unique_ptr<JailedProcess> process_;
    std::unique_ptr<ZygoteSession> forked_;
    std::function<std::shared_ptr<EgressNetwork>()> egressNetwork_;
    std::unique_ptr<EgressPort> egress_;       // forked from the zygote
    std::optional<JailEgress> jailEgress_;     // started by nsinit
    std::optional<boost::asio::posix::stream_descriptor> exitWatch_;
    WorkerThread& worker_;
    std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);
};

}  // namespace

NamespaceBackend::NamespaceBackend(boost::asio::io_context& io, const Config& config, BackendPaths paths,
                                   metrics::Registry* metrics)
    : io_(io), sandbox_(config.namespaceSandbox), network_(config.network), cgroupName_(config.cgroupName),
      paths_(std::move(paths)), containerDirectory_(config.containers.directory), metrics_(metrics),
      worker_(std::make_unique<WorkerThread>()) {}

NamespaceBackend::~NamespaceBackend() {
    worker_.reset();   // every sandbox's teardown finishes
    zygotes_.clear();  // their cgroups go first
    Cgroup::releaseSupervisor(cgroupName_);
}

void NamespaceBackend::cleanupLeftovers() {
    std::size_t removed = Cgroup::removeLeftovers(cgroupName_);
    if (removed) spdlog::warn("removed {} sandbox cgroups (and their processes) left by an earlier run", removed);
    // After the sessions: their veth pairs went with their namespaces.
    EgressNetwork::removeLeftovers(network_);
}

std::unique_ptr<Sandbox> NamespaceBackend::create(const PoolConfig& pool, const std::string& sandboxId) {
    if (pool.customContainer()) {
        if (!planner_)
            planner_ = std::make_unique<ContainerPlanner>(io_, containerDirectory_ / "images", sandbox_.hostUidBase);
        return makeNamespaceContainerSandbox(io_, pool, sandboxId, sandbox_, cgroupName_, paths_.nsinit, *planner_,
                                             [this] { return egressNetwork(); }, *worker_);
    }
    return std::make_unique<NamespaceSandbox>(io_, pool, sandboxId, sandbox_, cgroupName_, paths_,
                                              sandbox_.zygote ? zygoteFor(pool) : nullptr,
                                              [this] { return egressNetwork(); }, *worker_);
}

std::shared_ptr<EgressNetwork> NamespaceBackend::egressNetwork() {
    if (!egress_) egress_ = EgressNetwork::shared(io_, network_, metrics_);
    return egress_;
}

std::shared_ptr<Zygote> NamespaceBackend::zygoteFor(const PoolConfig& pool) {
    std::string key = agentLanguage(pool);
    for (const auto& m : pool.preloadModules) key += "," + m;
    auto& keyOfPool = zygoteKeyOfPool_[pool.name];
    if (keyOfPool != key) {
        keyOfPool = key;
        retireUnusedZygotes();
    }
    auto& zygote = zygotes_[key];
    if (!zygote || !zygote->alive()) {
        // A zygote's resources are not a session's: its memory is what the
        // sessions share, charged once, and its limit on open files is the
        // highest a pool may ask for, since a session can only lower it.
        PoolConfig zygotePool = pool;
        zygotePool.resources.openFiles = maxOpenFiles();
        zygotePool.resources.tmpfsBytes = 64ull << 20;
        std::vector<std::string> args = agentArguments(pool);
        args.insert(args.end(), {"--control-fd", std::to_string(Zygote::kControlFd), "--jail-library",
                                 kJailLibraryMountPoint, "--reaper", kReaperMountPoint});
        JailSpec spec = processSpec(zygotePool, sandbox_, paths_, "sessiond_zygote.py", args);
        spec.mounts.push_back({paths_.jailLibrary().string(), kJailLibraryMountPoint, false});
        spec.mounts.push_back({paths_.reaper().string(), kReaperMountPoint, false});
        // Its cgroup's name cannot be a sandbox's: pool names have no dots.
        // All it does is start sandboxes, so it runs in the background too.
        CgroupLimits limits;
        limits.weight = CpuWeight::Background;
        auto cgroup = Cgroup::create(cgroupName_, "zygote." + std::to_string(++zygotesStarted_), limits);
        zygote = Zygote::start(io_, paths_.nsinit, std::move(spec), std::move(cgroup));
        spdlog::info("pool {}: started a zygote ({})", pool.name, key);
    }
    return zygote;
}

void NamespaceBackend::retireUnusedZygotes() {
    for (auto it = zygotes_.begin(); it != zygotes_.end();) {
        bool used = false;
        for (const auto& [pool, key] : zygoteKeyOfPool_) used = used || key == it->first;
        it = used ? std::next(it) : zygotes_.erase(it);
    }
}

// A start is a few forks and the interpreter's first steps, with waits for
// the daemon between them: two per core keep the cores busy.
std::size_t NamespaceBackend::maxConcurrentStarts() const {
    return sandbox_.maxConcurrentStarts ? sandbox_.maxConcurrentStarts
                                        : 2 * hostCores();
}

void NamespaceBackend::poolRemoved(const std::string& pool) {
    zygoteKeyOfPool_.erase(pool);
    retireUnusedZygotes();
}

}  // namespace sessiond
