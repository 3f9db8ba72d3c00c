#include "sessiond/sandbox/namespace/namespace_backend.hpp"

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <sstream>

#include <spdlog/spdlog.h>

#include "sessiond/sandbox/agent_sandbox.hpp"
#include "sessiond/sandbox/namespace/cgroup.hpp"
#include "sessiond/sandbox/namespace/jail.hpp"
#include "sessiond/unique_fd.hpp"

namespace sessiond {

namespace {

constexpr int kAgentFd = 3;
constexpr const char* kAgentMountPoint = "/opt/sessiond/agent";

std::string describeWaitStatus(int status) {
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        if (code == 125) return "the jail could not be set up (exit code 125; see the daemon's log for nsinit's message)";
        return "exit code " + std::to_string(code);
    }
    if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
    return "status " + std::to_string(status);
}

class NamespaceSandbox : public AgentSandbox {
public:
    NamespaceSandbox(boost::asio::io_context& io, const PoolConfig& pool, const std::string& id,
                     const NamespaceSandboxConfig& sandbox, const std::string& cgroupName, const BackendPaths& paths)
        : AgentSandbox(io, id, pool.sandboxStartTimeout), pool_(pool), sandbox_(sandbox), cgroupName_(cgroupName),
          paths_(paths) {}

    ~NamespaceSandbox() override {
        if (exitWatch_) exitWatch_->cancel();
        exitWatch_.reset();
        process_.reset();  // SIGKILL and reap the jail
        cgroup_.reset();   // kill anything left in the cgroup, remove it
    }

protected:
    void launch(LaunchHandler onLaunched) override {
        const ResourceLimits& limits = pool_.resources;
        cgroup_ = Cgroup::create(cgroupName_, id(), CgroupLimits{limits.cpus, limits.memoryBytes, limits.pids});

        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
            throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
        UniqueFd ours(fds[0]), theirs(fds[1]);

        process_ = JailedProcess::spawn(paths_.nsinit, jailSpec(), {{theirs.get(), kAgentFd}});
        theirs.reset();

        exitWatch_.emplace(io_, ::dup(process_->pidfd()));
        exitWatch_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                               [this, alive = std::weak_ptr<void>(lifetime_)](boost::system::error_code ec) {
                                   if (ec || alive.expired()) return;
                                   int status = 0;
                                   process_->tryReap(&status);
                                   reportExit("the sandbox process ended: " + describeWaitStatus(status));
                               });

        onLaunched("", AgentChannel::Socket(io_, boost::asio::local::stream_protocol(), ours.release()));
    }

private:
    JailSpec jailSpec() const {
        JailSpec spec;
        spec.hostname = "sandbox";
        for (const auto& path : sandbox_.readOnlyPaths) spec.mounts.push_back({path, path, false});
        spec.mounts.push_back({paths_.agentDirectory.string(), kAgentMountPoint, false});
        spec.tmpfsBytes = pool_.resources.tmpfsBytes;
        spec.uid = sandbox_.sandboxUid;
        spec.hostUidBase = sandbox_.hostUidBase;
        spec.openFiles = pool_.resources.openFiles;
        spec.seccomp = sandbox_.seccomp;
        spec.cgroupProcsFiles = cgroup_->procsFiles();
        spec.argv = {sandbox_.interpreter.string(), std::string(kAgentMountPoint) + "/sessiond_agent.py",
                     "--fd",                        std::to_string(kAgentFd),
                     "--workdir",                   "/mnt/data",
                     "--language",                  agentLanguage(pool_)};
        if (!pool_.preloadModules.empty()) {
            std::string modules;
            for (const auto& m : pool_.preloadModules) modules += (modules.empty() ? "" : ",") + m;
            spec.argv.push_back("--preload");
            spec.argv.push_back(modules);
        }
        spec.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"},
                    {"HOME", "/tmp"},
                    {"LANG", "C.UTF-8"},
                    {"TMPDIR", "/tmp"},
                    {"MPLBACKEND", "Agg"},
                    {"MPLCONFIGDIR", "/tmp/.matplotlib"},
                    {"PYTHONDONTWRITEBYTECODE", "1"}};
        spec.workingDirectory = "/mnt/data";
        spec.keepFds = {kAgentFd};
        return spec;
    }

    PoolConfig pool_;
    NamespaceSandboxConfig sandbox_;
    std::string cgroupName_;
    BackendPaths paths_;
    std::unique_ptr<Cgroup> cgroup_;
    std::unique_ptr<JailedProcess> process_;
    std::optional<boost::asio::posix::stream_descriptor> exitWatch_;
    std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);
};

}  // namespace

NamespaceBackend::NamespaceBackend(boost::asio::io_context& io, const Config& config, BackendPaths paths)
    : io_(io), sandbox_(config.namespaceSandbox), cgroupName_(config.cgroupName), paths_(std::move(paths)) {}

void NamespaceBackend::cleanupLeftovers() {
    std::size_t removed = Cgroup::removeLeftovers(cgroupName_);
    if (removed) spdlog::warn("removed {} sandbox cgroups (and their processes) left by an earlier run", removed);
}

std::unique_ptr<Sandbox> NamespaceBackend::create(const PoolConfig& pool, const std::string& sandboxId) {
    return std::make_unique<NamespaceSandbox>(io_, pool, sandboxId, sandbox_, cgroupName_, paths_);
}

}  // namespace sessiond
