// Crashes: the daemon killed with SIGKILL under load and started again with
// the same configuration and state (nothing of the killed run is left, and
// the new daemon serves within seconds), and crashes inside a session (the
// interpreter or the agent dies: the answer says so and the session recovers).

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "support/daemon.hpp"
#include "support/daemon_wait.hpp"
#include "support/http_client.hpp"
#include "support/leaks.hpp"
#include "support/vm_files.hpp"

using sessiond::testing::Daemon;
using sessiond::testing::freePort;
using sessiond::testing::HttpClient;
using sessiond::testing::HttpResult;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
using sessiond::testing::secondsSince;
using sessiond::testing::waitFor;
using sessiond::testing::waitForHealth;
using sessiond::testing::waitForReady;

nlohmann::json crashConfig(std::uint16_t port, const std::string& cgroup, const std::string& stateDirectory) {
    return {{"listen", {{"address", "127.0.0.1"}, {"port", port}}},
            {"cgroupName", cgroup},
            {"stateDirectory", stateDirectory},
            {"pools",
             {{{"name", "default"},
               {"scaleConfiguration", {{"maxConcurrentSessions", 16}, {"readySessionInstances", 2}}}}}}};
}

// Seconds until an execution on a new session succeeds, or a negative number.
double waitForExecution(std::uint16_t port, const std::string& identifier, std::chrono::seconds limit,
                        Clock::time_point since) {
    while (Clock::now() - since < limit) {
        try {
            auto r = HttpClient(port).execute("default", identifier, "6*7");
            if (r.status == 200 && r.json()["properties"]["result"] == 42) return secondsSince(since);
        } catch (const std::exception&) {
        }
        std::this_thread::sleep_for(20ms);
    }
    return -1;
}

// Clients that each allocate a session, run a few executions on it, delete
// it and start over, until stopped. Once the daemon is killed their requests
// fail; they keep trying until told to stop.
class Load {
public:
    Load(std::uint16_t port, int clients, int executionsPerSession) {
        for (int c = 0; c < clients; ++c)
            threads_.emplace_back([this, port, c, executionsPerSession] {
                for (int cycle = 0; !stop_; ++cycle) {
                    const std::string identifier = "load-" + std::to_string(c) + "-" + std::to_string(cycle);
                    try {
                        HttpClient client(port);
                        for (int i = 0; i < executionsPerSession && !stop_; ++i) {
                            auto r = client.execute("default", identifier, "n = sum(range(10000))\nn");
                            if (r.status == 200) ++executions_;
                        }
                        client.request(boost::beast::http::verb::delete_,
                                       "/pools/default/session?identifier=" + identifier);
                    } catch (const std::exception&) {
                        std::this_thread::sleep_for(20ms);
                    }
                }
            });
    }
    ~Load() { stop(); }
    void stop() {
        stop_ = true;
        for (auto& t : threads_)
            if (t.joinable()) t.join();
    }
    int executions() const { return executions_; }

private:
    std::atomic<bool> stop_{false};
    std::atomic<int> executions_{0};
    std::vector<std::thread> threads_;
};

std::set<sessiond::testing::ProcessIdentity> identities(const std::vector<int>& pids) {
    std::set<sessiond::testing::ProcessIdentity> out;
    for (int pid : pids)
        if (auto id = sessiond::testing::identityOf(pid)) out.insert(*id);
    return out;
}

void printRestart(const char* backend, double health, double execution) {
    std::printf("[ restart  ] %s: /healthz answered %.2f s after the restart, the first execution succeeded %.2f s "
                "after it\n",
                backend, health, execution);
}

}  // namespace

TEST(Crash, Kill9UnderLoadLeavesNothingAndTheRestartServesInSeconds) {
    const std::uint16_t port = freePort();
    const std::string cgroup = "sessiond-test-crash-" + std::to_string(getpid());
    Daemon daemon(nlohmann::json::object());
    const fs::path state = fs::path(daemon.directory()) / "state";
    daemon.writeConfig(crashConfig(port, cgroup, state));
    const auto mountsBefore = sessiond::testing::mountTable();

    daemon.start();
    ASSERT_TRUE(waitForReady(port, 2, 60s)) << daemon.log();
    // A pool made through the API, so the state file exists.
    auto created = HttpClient(port).request(boost::beast::http::verb::put, "/pools/scripts",
                                            R"({"properties":{"containerType":"Shell"}})");
    ASSERT_EQ(created.status, 201) << created.body;

    std::set<sessiond::testing::ProcessIdentity> killedRun;
    std::set<std::pair<std::string, unsigned long long>> killedCgroups;
    {
        Load load(port, 4, 3);
        ASSERT_TRUE(waitFor([&] { return load.executions() >= 30; }, 120s)) << daemon.log();
        killedRun = identities(sessiond::testing::processesMatching("/" + cgroup + "/"));
        killedCgroups = sessiond::testing::cgroupTree(cgroup);
        daemon.signal(SIGKILL);
        EXPECT_EQ(daemon.wait(10s), 128 + SIGKILL);
        std::printf("[ crash    ] killed after %d executions, with %zu sandbox processes in %zu cgroups\n",
                    load.executions(), killedRun.size(), killedCgroups.size());
    }
    ASSERT_FALSE(killedRun.empty());
    ASSERT_FALSE(killedCgroups.empty());
    // Sandboxes notice their channel's end; whatever does not is the restart's.
    std::this_thread::sleep_for(2s);
    std::printf("[ crash    ] 2 s after the kill, %zu of those processes still run\n",
                sessiond::testing::stillRunning(killedRun).size());
    // As a crash in the middle of storing a pool change leaves it.
    std::ofstream(state / "pools.json.new") << R"({"pools":[{"name":"half)";

    const auto restarted = Clock::now();
    daemon.start();
    const double health = waitForHealth(port, 30s);
    const double execution = waitForExecution(port, "after-restart", 60s, restarted);
    printRestart("namespace", health, execution);
    ASSERT_GE(health, 0) << daemon.log();
    EXPECT_LT(health, 5.0);
    ASSERT_GE(execution, 0) << daemon.log();
    EXPECT_LT(execution, 15.0);

    for (const auto& process : sessiond::testing::stillRunning(killedRun))
        ADD_FAILURE() << "process " << process.pid << " of the killed run is still running";
    for (const auto& [path, inode] : killedCgroups)
        EXPECT_NE(sessiond::testing::inodeOf(path), inode) << "cgroup " << path << " of the killed run is left";
    EXPECT_FALSE(fs::exists(state / "pools.json.new"));
    EXPECT_NE(daemon.log().find("left by an earlier run"), std::string::npos) << daemon.log();

    // The stored pool came back; a session of the killed run starts afresh.
    auto shell = HttpClient(port).post("/pools/scripts/executions?identifier=after", R"({"shellCommand":"echo ok"})");
    EXPECT_EQ(shell.status, 200) << shell.body;
    auto fresh = HttpClient(port).execute("default", "load-0-0", "'n' in globals()");
    ASSERT_EQ(fresh.status, 200) << fresh.body;
    EXPECT_EQ(fresh.json()["properties"]["result"], false) << fresh.body;

    daemon.signal(SIGTERM);
    EXPECT_EQ(daemon.wait(30s), 0) << daemon.log();
    EXPECT_TRUE(sessiond::testing::processesMatching("/" + cgroup + "/").empty());
    EXPECT_TRUE(sessiond::testing::cgroupsNamed(cgroup).empty());
    EXPECT_TRUE(sessiond::testing::cgroupsNamed(cgroup + "-supervisor").empty());
    EXPECT_EQ(sessiond::testing::mountTable(), mountsBefore);
}

TEST(Crash, LibvirtKill9UnderLoadLeavesNoDomainDiskLayerSocketOrLog) {
    const std::string imageDir = sessiond::testing::guestImageDirectory();
    ASSERT_TRUE(fs::exists(imageDir + "/current/rootfs.qcow2")) << "no guest image in " << imageDir;
    char dir[] = "/tmp/sessiond-crash-vm-XXXXXX";
    const std::string runtime = mkdtemp(dir);
    fs::permissions(runtime, fs::perms(0755));

    const std::uint16_t port = freePort();
    const std::string instance = "sessiond-test-crashvm-" + std::to_string(getpid());
    Daemon daemon(nlohmann::json::object());
    auto config = crashConfig(port, instance, daemon.directory() + "/state");
    // TCG: what is measured is the cleanup, and some hosts' KVM passes the
    // start probe yet cannot run the guest.
    config["libvirt"] = {{"imageDirectory", imageDir}, {"runtimeDirectory", runtime}, {"accelerator", "tcg"}};
    config["pools"][0]["backend"] = "libvirt";
    config["pools"][0]["resources"] = {{"memoryMiB", 768}};
    config["pools"][0]["scaleConfiguration"] = {{"maxConcurrentSessions", 3}, {"readySessionInstances", 1}};
    // A boot under TCG on a busy 2-core host can take minutes.
    config["pools"][0]["sandboxStartTimeoutInSeconds"] = 240;
    daemon.writeConfig(config);
    const fs::path logs = "/var/log/libvirt/qemu";
    auto libvirtLogs = [&] {
        std::vector<fs::path> found;
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(logs, ec))
            if (entry.path().filename().string().rfind("sessiond-" + instance + "-", 0) == 0) found.push_back(entry.path());
        return found;
    };

    daemon.start();
    ASSERT_TRUE(waitForReady(port, 1, 300s)) << daemon.log();
    std::set<sessiond::testing::ProcessIdentity> killedQemu;
    std::vector<std::string> killedUuids;
    {
        Load load(port, 2, 2);
        ASSERT_TRUE(waitFor([&] { return load.executions() >= 4; }, 300s)) << daemon.log();
        killedQemu = identities(sessiond::testing::processesMatching("guest=sessiond-" + instance));
        killedUuids = sessiond::testing::domainUuidsNamed(instance);
        // Marks each VM directory of this run: a directory the next run
        // made afresh under the same name has no mark.
        for (const auto& entry : fs::directory_iterator(fs::path(runtime) / instance))
            if (entry.is_directory()) std::ofstream(entry.path() / "killed-run");
        daemon.signal(SIGKILL);
        EXPECT_EQ(daemon.wait(10s), 128 + SIGKILL);
        std::printf("[ crash    ] killed after %d executions, with %zu VMs and %zu libvirt VM logs\n",
                    load.executions(), killedUuids.size(), libvirtLogs().size());
    }
    ASSERT_FALSE(killedQemu.empty());
    ASSERT_FALSE(killedUuids.empty());
    EXPECT_FALSE(libvirtLogs().empty()) << "libvirt wrote no log in " << logs;

    const auto restarted = Clock::now();
    daemon.start();
    const double health = waitForHealth(port, 60s);
    ASSERT_GE(health, 0) << daemon.log();
    EXPECT_LT(health, 10.0);

    // The daemon cleans up before it listens.
    for (const auto& process : sessiond::testing::stillRunning(killedQemu))
        ADD_FAILURE() << "QEMU " << process.pid << " of the killed run is still running";
    const auto live = sessiond::testing::domainUuidsNamed(instance);
    for (const auto& uuid : killedUuids)
        EXPECT_EQ(std::count(live.begin(), live.end(), uuid), 0) << "domain " << uuid << " of the killed run is left";
    for (const auto& file : sessiond::testing::filesUnder(runtime))
        EXPECT_NE(file.filename(), "killed-run") << "VM directory " << file.parent_path() << " of the killed run is left";
    // libvirt's log of a domain names its UUID (QEMU's -uuid). A VM of the
    // new run may already have taken a killed VM's name, and libvirt appends
    // to that name's log: such a log is the new VM's, removed with it (the
    // check after SIGTERM below).
    const auto liveNames = sessiond::testing::domainsNamed(instance);
    for (const auto& log : libvirtLogs()) {
        if (std::count(liveNames.begin(), liveNames.end(), log.stem().string())) continue;
        std::ifstream in(log);
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        for (const auto& uuid : killedUuids)
            EXPECT_EQ(text.find(uuid), std::string::npos) << log << " holds the log of the killed run's VM " << uuid << "\n" << text << "\n" << daemon.log();
    }
    const double execution = waitForExecution(port, "after-restart", 600s, restarted);
    printRestart("libvirt", health, execution);
    EXPECT_GE(execution, 0) << daemon.log();

    daemon.signal(SIGTERM);
    EXPECT_EQ(daemon.wait(120s), 0) << daemon.log();
    for (const auto& file : sessiond::testing::filesUnder(runtime)) ADD_FAILURE() << "left behind: " << file;
    for (const auto& log : libvirtLogs()) ADD_FAILURE() << "libvirt VM log left behind: " << log;
    EXPECT_TRUE(sessiond::testing::domainsNamed(instance).empty());
    EXPECT_TRUE(sessiond::testing::processesMatching("guest=sessiond-" + instance).empty()) << "a QEMU process is left";
    fs::remove_all(runtime);
}

// Crashes inside one session of a running daemon.
class SessionCrash : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        port_ = freePort();
        cgroup_ = new std::string("sessiond-test-sesscrash-" + std::to_string(getpid()));
        nlohmann::json config = crashConfig(port_, *cgroup_, "");
        config.erase("stateDirectory");
        daemon_ = new Daemon(config);
        daemon_->start();
        ready_ = waitForReady(port_, 1, 60s);
    }
    static void TearDownTestSuite() {
        daemon_->signal(SIGTERM);
        EXPECT_EQ(daemon_->wait(30s), 0) << daemon_->log();
        EXPECT_TRUE(sessiond::testing::processesMatching("/" + *cgroup_ + "/").empty());
        EXPECT_TRUE(sessiond::testing::cgroupsNamed(*cgroup_).empty());
        delete daemon_;
        delete cgroup_;
    }
    void SetUp() override { ASSERT_TRUE(ready_) << daemon_->log(); }

    static HttpResult run(const std::string& identifier, const std::string& code) {
        return HttpClient(port_).execute("default", identifier, code);
    }
    static std::string sandboxOf(const std::string& identifier) {
        return HttpClient(port_).get("/pools/default/session?identifier=" + identifier).json()["etag"];
    }
    // The host pid of the session's process that names itself `role`.
    static int processOf(const std::string& sandbox, const std::string& role) {
        for (int pid : sessiond::testing::processesMatching("/" + *cgroup_ + "/" + sandbox + "\n")) {
            std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
            std::string comm;
            std::getline(in, comm);
            if (comm == role) return pid;
        }
        return -1;
    }
    // The session still runs code, in a fresh interpreter of the same sandbox.
    static void expectFreshInterpreterInTheSameSandbox(const std::string& identifier, const std::string& sandbox) {
        auto lost = run(identifier, "x");
        ASSERT_EQ(lost.status, 200) << lost.body;
        EXPECT_EQ(lost.json()["properties"]["status"], "Failure") << lost.body;
        EXPECT_NE(lost.json()["properties"]["stderr"].get<std::string>().find("NameError"), std::string::npos)
            << lost.body;
        auto works = run(identifier, "6*7");
        ASSERT_EQ(works.status, 200) << works.body;
        EXPECT_EQ(works.json()["properties"]["result"], 42) << works.body;
        EXPECT_EQ(sandboxOf(identifier), sandbox);
    }

    static inline Daemon* daemon_ = nullptr;
    static inline std::string* cgroup_ = nullptr;
    static inline std::uint16_t port_ = 0;
    static inline bool ready_ = false;
};

TEST_F(SessionCrash, InterpreterThatExitsOrIsKilledOrSegfaultsIsReportedAndReplaced) {
    const std::vector<std::pair<std::string, std::string>> crashes = {
        {"import os\nos._exit(3)", "exit code 3"},
        {"import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "signal 9"},
        {"import ctypes\nctypes.string_at(0)", "signal 11"},
    };
    int n = 0;
    for (const auto& [code, how] : crashes) {
        SCOPED_TRACE(code);
        const std::string identifier = "interpreter-crash-" + std::to_string(++n);
        ASSERT_EQ(run(identifier, "x = 41").status, 200);
        const std::string sandbox = sandboxOf(identifier);
        auto crashed = run(identifier, "print('before', flush=True)\n" + code);
        ASSERT_EQ(crashed.status, 200) << crashed.body;
        const auto properties = crashed.json()["properties"];
        EXPECT_EQ(properties["status"], "Failure") << crashed.body;
        EXPECT_EQ(properties["stdout"], "before\n") << crashed.body;
        const std::string stderrText = properties["stderr"];
        EXPECT_NE(stderrText.find("the interpreter exited (" + how + ")"), std::string::npos) << stderrText;
        EXPECT_NE(stderrText.find("state was lost"), std::string::npos) << stderrText;
        expectFreshInterpreterInTheSameSandbox(identifier, sandbox);
    }
}

TEST_F(SessionCrash, AgentKilledDuringAnExecutionIsReportedAndTheSandboxReplaced) {
    const std::string identifier = "agent-crash";
    ASSERT_EQ(run(identifier, "x = 41").status, 200);
    const std::string sandbox = sandboxOf(identifier);
    ASSERT_GT(processOf(sandbox, "sessiond-agent"), 0);
    // The interpreter's parent is the agent; both run as the sandbox's user.
    auto crashed = run(identifier, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(5)");
    ASSERT_EQ(crashed.status, 200) << crashed.body;
    EXPECT_EQ(crashed.json()["properties"]["status"], "Failure") << crashed.body;
    const std::string stderrText = crashed.json()["properties"]["stderr"];
    EXPECT_NE(stderrText.find("the session's sandbox failed"), std::string::npos) << stderrText;
    EXPECT_NE(stderrText.find("state is lost"), std::string::npos) << stderrText;

    auto next = run(identifier, "'x' in globals()");
    ASSERT_EQ(next.status, 200) << next.body;
    EXPECT_EQ(next.json()["properties"]["result"], false) << next.body;
    EXPECT_NE(sandboxOf(identifier), sandbox);
    EXPECT_TRUE(waitFor([&] { return sessiond::testing::processesMatching("/" + *cgroup_ + "/" + sandbox + "\n").empty(); }, 10s));
}

TEST_F(SessionCrash, SandboxThatEndsBetweenRequestsIsReportedOnTheNextExecution) {
    const std::string identifier = "ended-between";
    ASSERT_EQ(run(identifier, "x = 41").status, 200);
    const std::string sandbox = sandboxOf(identifier);
    const int agent = processOf(sandbox, "sessiond-agent");
    ASSERT_GT(agent, 0);
    ::kill(agent, SIGKILL);
    // The daemon notices at once; the session is gone before any request.
    ASSERT_TRUE(waitFor([&] {
        return HttpClient(port_).get("/pools/default/session?identifier=" + identifier).status == 400;
    }, 10s));

    auto told = run(identifier, "x");
    ASSERT_EQ(told.status, 200) << told.body;
    EXPECT_EQ(told.json()["properties"]["status"], "Failure") << told.body;
    const std::string stderrText = told.json()["properties"]["stderr"];
    EXPECT_NE(stderrText.find("Execution not run: the session's sandbox ended after its previous request"),
              std::string::npos)
        << stderrText;
    auto next = run(identifier, "6*7");
    ASSERT_EQ(next.status, 200) << next.body;
    EXPECT_EQ(next.json()["properties"]["result"], 42) << next.body;
    EXPECT_NE(sandboxOf(identifier), sandbox);
}
