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
#include "sessiond/sandbox/container_health.hpp"
#include "sessiond/sandbox/namespace/cgroup.hpp"
#include "sessiond/sandbox/namespace/jail.hpp"

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

class NamespaceContainerSandbox : public Sandbox {
public:
    NamespaceContainerSandbox(asio::io_context& io, const PoolConfig& pool, const std::string& id,
                              const NamespaceSandboxConfig& sandbox, const std::string& cgroupName,
                              const std::filesystem::path& nsinit, ContainerPlanner& planner,
                              std::function<std::shared_ptr<EgressNetwork>()> egressNetwork)
        : io_(io), pool_(pool), id_(id), sandbox_(sandbox), cgroupName_(cgroupName), nsinit_(nsinit),
          planner_(planner), egressNetwork_(std::move(egressNetwork)), startDeadline_(io) {}

    ~NamespaceContainerSandbox() override {
        reportDroppedLines();
        startDeadline_.cancel();
        health_.reset();
        if (exitWatch_) exitWatch_->cancel();
        if (output_) output_->cancel();
        process_.reset();  // SIGKILL and reap the jail: its namespaces and writable layer go with it
        cgroup_.reset();   // and anything left in its cgroup
        egress_.reset();   // its veth pair, and its address back
    }

    const std::string& id() const override { return id_; }

    void start(ReadyHandler onReady) override {
        onReady_ = std::move(onReady);
        startDeadline_.expires_after(pool_.sandboxStartTimeout);
        startDeadline_.async_wait([this, alive = alive()](boost::system::error_code ec) {
            if (ec || alive.expired()) return;
            failStart("the container was not ready within " + std::to_string(pool_.sandboxStartTimeout.count()) +
                      " s (sandboxStartTimeoutInSeconds)");
        });
        planner_.plan(pool_, [this, alive = alive()](std::string error, ContainerLaunch launch) {
            if (alive.expired()) return;
            if (!error.empty()) return failStart(error);
            try {
                run(launch);
            } catch (const std::exception& e) {
                return failStart(e.what());
            }
            if (!egress_) return waitUntilStarted();
            egress_->connectWhenReported([this, alive](std::string error) {
                if (alive.expired()) return;
                if (!error.empty()) return failStart(error);
                waitUntilStarted();
            });
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

    void execute(ExecuteRequest, ExecuteHandler onDone) override { onDone({kNoInterpreter, {}, ""}); }
    void listFiles(const std::string&, bool, Handler<std::vector<FileEntry>> onDone) override {
        onDone({kNoInterpreter, {}, ""});
    }
    void statFile(const std::string&, Handler<FileEntry> onDone) override { onDone({kNoInterpreter, {}, ""}); }
    void readFile(const std::string&, std::uint64_t, Handler<FileContent> onDone) override {
        onDone({kNoInterpreter, {}, ""});
    }
    void writeFile(const std::string&, std::string, Handler<FileEntry> onDone) override {
        onDone({kNoInterpreter, {}, ""});
    }
    void deleteFile(const std::string&, Handler<Done> onDone) override { onDone({kNoInterpreter, {}, ""}); }
    void describe(Handler<nlohmann::json> onDone) override { onDone({kNoInterpreter, {}, ""}); }

    void setExitHandler(ExitHandler onExit) override { onExit_ = std::move(onExit); }

private:
    static constexpr const char* kNoInterpreter =
        "a custom container session runs no code interpreter: requests go to its container";

    std::weak_ptr<int> alive() const { return lifetime_; }

    void run(const ContainerLaunch& launch) {
        const ResourceLimits& limits = pool_.resources;
        cgroup_ = Cgroup::create(cgroupName_, id_, CgroupLimits{limits.cpus, limits.memoryBytes, limits.pids});

        JailSpec spec;
        spec.hostname = "sandbox";
        spec.imageRoot = launch.rootfs.string();
        spec.tmpfsBytes = limits.tmpfsBytes;
        spec.uid = launch.user.uid;
        spec.gid = launch.user.gid;
        spec.hostUidBase = sandbox_.hostUidBase;
        spec.openFiles = limits.openFiles;
        spec.seccomp = sandbox_.seccomp;
        spec.cgroupProcsFiles = cgroup_->procsFiles();
        spec.argv = launch.argv;
        spec.env = launch.env;
        spec.workingDirectory = launch.workingDirectory;
        spec.keepFds = {STDOUT_FILENO, STDERR_FILENO};
        std::map<int, int> passed;
        if (pool_.egressEnabled) {
            egress_.emplace(io_, *egressNetwork_(), spec, kSetupFd, passed);
            // Names resolve as on the host, as container runtimes do it.
            spec.mounts.push_back({"/etc/resolv.conf", "/etc/resolv.conf", false});
        }

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

        health_ = std::make_unique<ContainerHealth>(
            io_, pool_.container, [this, alive = alive()](std::uint16_t port, Handler<UniqueFd> onDone) {
                if (alive.expired()) return onDone({"the sandbox is gone", UniqueFd(), ""});
                connect(port, std::move(onDone));
            });
    }

    void waitUntilStarted() {
        health_->waitUntilStarted([this](std::string failure) {
            if (!failure.empty()) return failStart(failure);
            becameReady();
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
        spdlog::info("pool {} container {}: {}", pool_.name, id_, line);
    }

    void reportDroppedLines() {
        if (dropped_ > 0)
            spdlog::warn("pool {} container {}: {} lines of output were not logged (over {} a second)", pool_.name,
                         id_, std::exchange(dropped_, 0), kLogLinesPerSecond);
    }

    void becameReady() {
        startDeadline_.cancel();
        if (!onReady_) return;
        started_ = true;
        std::exchange(onReady_, nullptr)("");
        health_->watchLiveness([this](std::string failure) { exited("its liveness probe failed: " + failure); });
    }

    // What the container said last: why it did not start, most often.
    std::string withOutput(const std::string& error) const {
        std::string tail = tail_;
        while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
        return tail.empty() ? error : error + "; its last output: " + tail;
    }

    void failStart(const std::string& error) {
        startDeadline_.cancel();
        if (onReady_) std::exchange(onReady_, nullptr)(withOutput(error));
    }

    void exited(const std::string& reason) {
        if (!started_) return failStart(reason + " before it was ready");
        if (onExit_) std::exchange(onExit_, nullptr)(reason);
    }

    asio::io_context& io_;
    PoolConfig pool_;
    std::string id_;
    NamespaceSandboxConfig sandbox_;
    std::string cgroupName_;
    std::filesystem::path nsinit_;
    ContainerPlanner& planner_;
    std::function<std::shared_ptr<EgressNetwork>()> egressNetwork_;
    std::optional<JailEgress> egress_;
    asio::steady_timer startDeadline_;
    ReadyHandler onReady_;
    ExitHandler onExit_;
    bool started_ = false;
    std::unique_ptr<Cgroup> cgroup_;
    std::unique_ptr<JailedProcess> process_;
    UniqueFd netns_;
    std::optional<asio::posix::stream_descriptor> exitWatch_;
    std::optional<asio::posix::stream_descriptor> output_;
    std::array<char, 4096> chunk_{};
    std::string line_, tail_;
    std::chrono::steady_clock::time_point logWindow_{};
    std::size_t logged_ = 0;
    std::uint64_t dropped_ = 0;
    std::unique_ptr<ContainerHealth> health_;
    std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);
};

}  // namespace

std::unique_ptr<Sandbox> makeNamespaceContainerSandbox(asio::io_context& io, const PoolConfig& pool,
                                                       const std::string& id, const NamespaceSandboxConfig& sandbox,
                                                       const std::string& cgroupName,
                                                       const std::filesystem::path& nsinit, ContainerPlanner& planner,
                                                       std::function<std::shared_ptr<EgressNetwork>()> egressNetwork) {
    return std::make_unique<NamespaceContainerSandbox>(io, pool, id, sandbox, cgroupName, nsinit, planner,
                                                       std::move(egressNetwork));
}

}  // namespace sessiond
