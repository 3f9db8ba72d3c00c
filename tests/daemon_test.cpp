// The sessiond binary as a user runs it: configuration errors, serving, and a
// graceful SIGTERM that finishes in-flight work and leaves nothing behind.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "support/http_client.hpp"
#include "support/leaks.hpp"
#include "support/vm_files.hpp"

using sessiond::testing::HttpClient;
using namespace std::chrono_literals;

extern char** environ;

namespace {

std::uint16_t freePort() {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    return acceptor.local_endpoint().port();
}

class Daemon {
public:
    explicit Daemon(const nlohmann::json& config) {
        char dir[] = "/tmp/sessiond-daemon-test-XXXXXX";
        dir_ = mkdtemp(dir);
        configPath_ = dir_ + "/sessiond.json";
        logPath_ = dir_ + "/sessiond.log";
        std::ofstream(configPath_) << config.dump(2);
    }
    ~Daemon() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        std::filesystem::remove_all(dir_);
    }

    void start() {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, logPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
        std::string binary = SESSIOND_BINARY_DIR "/sessiond";
        char* argv[] = {binary.data(), const_cast<char*>("--config"), configPath_.data(), nullptr};
        ASSERT_EQ(posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv, environ), 0);
        posix_spawn_file_actions_destroy(&actions);
    }

    // Waits for the process to exit; returns its exit code (-1 on timeout).
    int wait(std::chrono::seconds limit) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(20ms);
        }
        return -1;
    }

    void signal(int sig) { ::kill(pid_, sig); }

    std::string log() const {
        std::ifstream in(logPath_);
        return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }

private:
    std::string dir_, configPath_, logPath_;
    pid_t pid_ = -1;
};

// Polls the default pool until it has a ready sandbox (the daemon may not be
// listening yet).
bool waitForReadySandbox(std::uint16_t port, std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        try {
            if (HttpClient(port).get("/pools/default").json()["properties"]["sessions"]["unallocated"] == 1) return true;
        } catch (const std::exception&) {
        }
        std::this_thread::sleep_for(100ms);
    }
    return false;
}

nlohmann::json baseConfig(std::uint16_t port, const std::string& cgroup) {
    return {{"listen", {{"address", "127.0.0.1"}, {"port", port}}},
            {"cgroupName", cgroup},
            {"pools",
             {{{"name", "default"}, {"scaleConfiguration", {{"maxConcurrentSessions", 4}, {"readySessionInstances", 1}}}}}}};
}

}  // namespace

TEST(Daemon, RefusesAnInvalidConfigurationNamingTheField) {
    auto config = baseConfig(freePort(), "sessiond-test-bad");
    config["pools"][0]["scaleConfiguration"]["maxConcurrentSessions"] = "ten";
    Daemon daemon(config);
    daemon.start();
    EXPECT_EQ(daemon.wait(10s), 2);
    EXPECT_NE(daemon.log().find("pools[0].scaleConfiguration.maxConcurrentSessions"), std::string::npos) << daemon.log();
}

TEST(Daemon, RefusesToServeBeyondLoopbackWithoutKeys) {
    auto config = baseConfig(freePort(), "sessiond-test-open");
    config["listen"]["address"] = "0.0.0.0";
    Daemon daemon(config);
    daemon.start();
    EXPECT_EQ(daemon.wait(10s), 2);
    EXPECT_NE(daemon.log().find("loopback"), std::string::npos) << daemon.log();
}

TEST(Daemon, ServesAndStopsGracefullyOnSigterm) {
    std::uint16_t port = freePort();
    std::string cgroup = "sessiond-test-daemon-" + std::to_string(getpid());
    Daemon daemon(baseConfig(port, cgroup));
    daemon.start();

    ASSERT_TRUE(waitForReadySandbox(port, 30s)) << daemon.log();

    HttpClient client(port);
    auto r = client.execute("default", "daemon-1", "x = 6*7\nprint(x)\nx");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["properties"]["result"], 42);

    // A request in flight when SIGTERM arrives still gets its answer.
    auto inFlight = std::async(std::launch::async, [port] {
        HttpClient c(port);
        return c.execute("default", "daemon-1", "import time\ntime.sleep(2)\n'finished'");
    });
    std::this_thread::sleep_for(500ms);
    daemon.signal(SIGTERM);
    auto answer = inFlight.get();
    EXPECT_EQ(answer.status, 200) << answer.body;
    EXPECT_EQ(answer.json()["properties"]["result"], "finished");
    EXPECT_EQ(daemon.wait(30s), 0) << daemon.log();

    EXPECT_TRUE(sessiond::testing::processesMatching("/" + cgroup + "/").empty());
    EXPECT_TRUE(sessiond::testing::cgroupsNamed(cgroup).empty());
    EXPECT_NE(daemon.log().find("sessiond stopped"), std::string::npos) << daemon.log();
}

TEST(Daemon, SigtermLeavesNoDomainDiskLayerOrSocketBehind) {
    std::string imageDir = sessiond::testing::guestImageDirectory();
    ASSERT_TRUE(std::filesystem::exists(imageDir + "/current/rootfs.qcow2")) << "no guest image in " << imageDir;
    char dir[] = "/tmp/sessiond-daemon-vm-XXXXXX";
    std::string runtime = mkdtemp(dir);
    std::filesystem::permissions(runtime, std::filesystem::perms(0755));

    std::uint16_t port = freePort();
    std::string instance = "sessiond-test-daemonvm-" + std::to_string(getpid());
    auto config = baseConfig(port, instance);
    config["libvirt"] = {{"imageDirectory", imageDir}, {"runtimeDirectory", runtime}};
    config["pools"][0]["backend"] = "libvirt";
    config["pools"][0]["resources"] = {{"memoryMiB", 768}};
    Daemon daemon(config);
    daemon.start();

    ASSERT_TRUE(waitForReadySandbox(port, 240s)) << daemon.log();
    HttpClient client(port);
    auto r = client.execute("default", "daemon-vm-1", "6*7");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["properties"]["result"], 42);
    EXPECT_FALSE(sessiond::testing::filesUnder(runtime).empty()) << "expected disk layers, sockets and console logs while VMs run";

    daemon.signal(SIGTERM);
    EXPECT_EQ(daemon.wait(60s), 0) << daemon.log();
    std::size_t left = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(runtime)) {
        ADD_FAILURE() << "left behind: " << entry.path();
        ++left;
    }
    EXPECT_EQ(left, 0u);
    EXPECT_TRUE(sessiond::testing::processesMatching("guest=sessiond-" + instance).empty()) << "a QEMU process is left";
    std::filesystem::remove_all(runtime);
}
