#include "container_sandbox.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include <spdlog/spdlog.h>

#include "jail_egress.hpp"
#include "net_namespace.hpp"
#include "sessiond/sandbox/custom_container_sandbox.hpp"
#include "sessiond/sandbox/namespace/cgroup.hpp"
#include "sessiond/sandbox/namespace/jail.hpp"
#include "sessiond/sandbox/worker_thread.hpp"

namespace sessiond {

namespace {

namespace asio = boost::asio;

constexpr std::size_t kOutputTail = 2048;       // kept for the error of a failed start
constexpr std::size_t kLogLineBytes = 2048;     // a longer line is logged in pieces
constexpr std::size_t kLogLinesPerSecond = 100;
constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr int kSetupFd = 3;

std::string exitDescription(int status) {
    if (WIFEXITED(status)) {
        if (WEXITSTATUS(status) == 125) return "its jail could not be set up (exit code 125)";
        return "exit code " + std::to_string(WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
    return "status " + std::to_string(status);
}

class NamespaceContainerSandbox : public CustomContainerSandbox {
public:
    NamespaceContainerSandbox(asio::io_context& io, const PoolConfig& pool, const std::string& id,
                              const NamespaceSandboxConfig& sandbox, const std::string& cgroupName,
                              const std::filesystem::path& nsinit, ContainerPlanner& planner,
                              std::function<std::shared_ptr<EgressNetwork>()> egressNetwork, WorkerThread& worker)
        : CustomContainerSandbox(io, pool, id, planner), sandbox_(sandbox), cgroupName_(cgroupName), nsinit_(nsinit),
          egressNetwork_(std::move(egressNetwork)), worker_(worker) {}

    ~NamespaceContainerSandbox() override {
        reportDroppedLines();
        if (exitWatch_) exitWatch_->cancel();
        if (output_) output_->cancel();
        // Its network goes at once, from this thread, which owns the egress
        // network's addresses: removing the host end removes the pair.
        egress_.reset();
        // Waiting for the killed jail to exit and removing its cgroup take
        // milliseconds each: the worker does it, after the cgroup's making.
        worker_.post([process = std::shared_ptr<JailedProcess>(std::move(process_)), cgroup = cgroup_]() mutable {
            process.reset();  // SIGKILL and reap the jail: its namespaces and writable layer go with it
            cgroup->reset();  // and anything left in its cgroup
        });
    }

    void connect(std::uint16_t port, Handler<UniqueFd> onDone) override {
        try {
            if (!netns_) {
                const pid_t child = process_ ? firstChildOf(process_->pid()) : 0;
                if (child == 0) return onDone({"the container is not running", UniqueFd(), ""});
                netns_ = openNetworkNamespace(child);
            }
            UniqueFd fd = tcpSocketInNetworkNamespace(netns_.get());
            auto socket = std::make_shared<asio::ip::tcp::socket>(io_);
            socket->assign(asio::ip::tcp::v4(), fd.get());
            fd.release();
            auto timer = std::make_shared<asio::steady_timer>(io_, kConnectTimeout);
            timer->async_wait([socket](boost::system::error_code ec) {
                if (!ec) socket->close(ec);
            });
            socket->async_connect({asio::ip::address_v4::loopback(), port},
                                  [socket, timer, onDone = std::move(onDone)](boost::system::error_code ec) {
                                      timer->cancel();
                                      if (ec) return onDone({ec.message(), UniqueFd(), ""});
                                      onDone({"", UniqueFd(socket->release()), ""});
                                  });
        } catch (const std::exception& e) {
            onDone({e.what(), UniqueFd(), ""});
        }
    }

private:
    // A cgroup's making can wait many milliseconds behind a cgroup v1 move or
    // removal: on the worker, it would stall every request in flight.
    void launch(const ContainerLaunch& launch, std::function<void(std::string error)> onRunning) override {
        const ResourceLimits& limits = pool_.resources;
        worker_.postThen(
            io_, alive(),
            [cgroup = cgroup_, group = cgroupName_, leaf = id(),
             limits = CgroupLimits{limits.cpus, limits.memoryBytes, limits.pids}] {
                *cgroup = Cgroup::create(group, leaf, limits);
            },
            [this, launch, onRunning = std::move(onRunning)](const std::string& error) {
                if (!error.empty()) return onRunning(error);
                try {
                    run(launch);
                } catch (const std::exception& e) {
                    return onRunning(e.what());
                }
                if (!egress_) return onRunning("");
                egress_->connectWhenReported(std::move(onRunning));
            });
    }

    std::string lastOutput() const override { return tail_; }

    void run(const ContainerLaunch& launch) {
        const ResourceLimits& limits = pool_.resources;
        JailSpec spec;
        spec.hostname = "sandbox";
        spec.imageRoot = launch.rootfs.string();
        spec.tmpfsBytes = limits.tmpfsBytes;
        spec.uid = launch.user.uid;
        spec.gid = launch.user.gid;
        spec.hostUidBase = sandbox_.hostUidBase;
        spec.openFiles = limits.openFiles;
        spec.seccomp = sandbox_.seccomp;
        spec.cgroupProcsFiles = (*cgroup_)->procsFiles();
        spec.argv = launch.argv;
        spec.env = launch.env;
        spec.workingDirectory = launch.workingDirectory;
        spec.keepFds = {STDOUT_FILENO, STDERR_FILENO};
        std::map<int, int> passed;
        // Its /etc/resolv.conf names the egress network's resolver.
        if (pool_.egressEnabled) egress_.emplace(io_, *egressNetwork_(), pool_, id(), spec, kSetupFd, passed);

        // The container's stdout and stderr, and nsinit's own complaints,
        // go to the daemon's log, a line at a time.
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
        UniqueFd outRead(fds[0]), outWrite(fds[1]);
        UniqueFd errWrite(::fcntl(outWrite.get(), F_DUPFD_CLOEXEC, 3));
        if (!errWrite) throw std::runtime_error(std::string("dup: ") + std::strerror(errno));
        passed[outWrite.get()] = STDOUT_FILENO;
        passed[errWrite.get()] = STDERR_FILENO;
        process_ = JailedProcess::spawn(nsinit_, spec, passed);
        output_.emplace(io_, outRead.release());
        readOutput();

        exitWatch_.emplace(io_, ::dup(process_->pidfd()));
        exitWatch_->async_wait(asio::posix::stream_descriptor::wait_read,
                               [this, alive = alive()](boost::system::error_code ec) {
                                   if (ec || alive.expired()) return;
                                   int status = 0;
                                   process_->tryReap(&status);
                                   exited("the container ended: " + exitDescription(status));
                               });
    }

    void readOutput() {
        output_->async_read_some(asio::buffer(chunk_), [this, alive = alive()](boost::system::error_code ec, std::size_t n) {
            if (alive.expired() || ec) return;
            line_.append(chunk_.data(), n);
            tail_.append(chunk_.data(), n);
            if (tail_.size() > kOutputTail) tail_.erase(0, tail_.size() - kOutputTail);
            for (std::size_t end; (end = line_.find('\n')) != std::string::npos || line_.size() >= kLogLineBytes;) {
                const std::size_t length = end == std::string::npos ? kLogLineBytes : end;
                logLine(line_.substr(0, length));
                line_.erase(0, end == std::string::npos ? length : length + 1);
            }
            readOutput();
        });
    }

    // A chatty container must not drown the daemon's log: past
    // kLogLinesPerSecond in a second, lines are counted instead, and the
    // count is logged with the next line that gets through, or at the end.
    void logLine(const std::string& line) {
        const auto now = std::chrono::steady_clock::now();
        if (now - logWindow_ >= std::chrono::seconds(1)) {
            logWindow_ = now;
            logged_ = 0;
        }
        if (++logged_ > kLogLinesPerSecond) {
            ++dropped_;
            return;
        }
        reportDroppedLines();
        spdlog::info("pool {} container {}: {}", pool_.name, id(), line);
    }

    void reportDroppedLines() {
        if (dropped_ > 0)
            spdlog::warn("pool {} container {}: {} lines of output were not logged (over {} a second)", pool_.name,
                         id(), std::exchange(dropped_, 0), kLogLinesPerSecond);
    }

    NamespaceSandboxConfig sandbox_;
    std::string cgroupName_;
    std::filesystem::path nsinit_;
    std::function<std::shared_ptr<EgressNetwork>()> egressNetwork_;
    std::optional<JailEgress> egress_;
    WorkerThread& worker_;
    // Made and removed on the worker, in that order.
    std::shared_ptr<std::unique_ptr<Cgroup>> cgroup_ = std::make_shared<std::unique_ptr<Cgroup>>();
    std::unique_ptr<JailedProcess> process_;
    UniqueFd netns_;
    std::optional<asio::posix::stream_descriptor> exitWatch_;
    std::optional<asio::posix::stream_descriptor> output_;
    std::array<char, 4096> chunk_{};
    std::string line_, tail_;
    std::chrono::steady_clock::time_point logWindow_{};
    std::size_t logged_ = 0;
    std::uint64_t dropped_ = 0;
};

}  // namespace

std::unique_ptr<Sandbox> makeNamespaceContainerSandbox(asio::io_context& io, const PoolConfig& pool,
                                                       const std::string& id, const NamespaceSandboxConfig& sandbox,
                                                       const std::string& cgroupName,
                                                       const std::filesystem::path& nsinit, ContainerPlanner& planner,
                                                       std::function<std::shared_ptr<EgressNetwork>()> egressNetwork,
                                                       WorkerThread& worker) {
    return std::make_unique<NamespaceContainerSandbox>(io, pool, id, sandbox, cgroupName, nsinit, planner,
                                                       std::move(egressNetwork), worker);
}

}  // namespace sessiond
