// The sessiond binary as a user runs it: configuration errors, serving, and a
// graceful SIGTERM that finishes in-flight work and leaves nothing behind.

#include <algorithm>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "sessiond/auth/api_keys.hpp"
#include "sessiond/instance_lock.hpp"
#include "support/daemon.hpp"
#include "support/http_client.hpp"
#include "support/leaks.hpp"
#include "support/vm_files.hpp"
#include "support/walk.hpp"

using sessiond::testing::Daemon;
using sessiond::testing::freePort;
using sessiond::testing::HttpClient;
using namespace std::chrono_literals;

namespace {

// Polls the default pool until it has a ready sandbox (the daemon may not be
// listening yet).
bool waitForReadySandbox(std::uint16_t port, std::chrono::seconds limit, const std::string& key = "") {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        try {
            if (HttpClient(port).withKey(key).get("/pools/default").json()["properties"]["sessions"]["unallocated"] == 1)
                return true;
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
    sessiond::testing::walkTree(runtime, [&](const std::filesystem::directory_entry& entry) {
        ADD_FAILURE() << "left behind: " << entry.path();
        ++left;
    });
    EXPECT_EQ(left, 0u);
    EXPECT_TRUE(sessiond::testing::processesMatching("guest=sessiond-" + instance).empty()) << "a QEMU process is left";
    std::filesystem::remove_all(runtime);
}

// A second daemon given the same cgroupName (on another port, so nothing else
// stops it) would remove the first one's sandboxes as leftovers of an earlier
// run: it is refused before it removes anything.
TEST(Daemon, ASecondDaemonWithTheSameNameLeavesTheFirstOnesSessionsAlone) {
    std::uint16_t port = freePort();
    std::string cgroup = "sessiond-test-twice-" + std::to_string(getpid());
    Daemon first(baseConfig(port, cgroup));
    first.start();
    ASSERT_TRUE(waitForReadySandbox(port, 30s)) << first.log();
    HttpClient client(port);
    auto r = client.execute("default", "kept", "x = 41");
    ASSERT_EQ(r.status, 200) << r.body;

    Daemon second(baseConfig(freePort(), cgroup));
    second.start();
    EXPECT_EQ(second.wait(30s), 1) << second.log();
    EXPECT_NE(second.log().find("another sessiond (pid " + std::to_string(first.pid()) + ")"), std::string::npos)
        << second.log();

    r = client.execute("default", "kept", "x + 1");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["properties"]["result"], 42) << r.body;
    first.signal(SIGTERM);
    EXPECT_EQ(first.wait(30s), 0) << first.log();
    EXPECT_FALSE(std::filesystem::exists(std::string(sessiond::InstanceLock::kDefaultDirectory) + "/" + cgroup + ".lock"));
}

TEST(Daemon, PoolsChangedThroughTheApiOutliveARestart) {
    std::uint16_t port = freePort();
    std::string cgroup = "sessiond-test-restart-" + std::to_string(getpid());
    auto config = baseConfig(port, cgroup);
    Daemon daemon(config);
    config["stateDirectory"] = daemon.directory() + "/state";
    daemon.writeConfig(config);
    daemon.start();
    ASSERT_TRUE(waitForReadySandbox(port, 30s)) << daemon.log();

    HttpClient client(port);
    auto created = client.request(boost::beast::http::verb::put, "/pools/scripts",
                                  R"({"properties":{"containerType":"Shell","scaleConfiguration":{"readySessionInstances":0}}})");
    ASSERT_EQ(created.status, 201) << created.body;
    auto deleted = client.request(boost::beast::http::verb::delete_, "/pools/default");
    ASSERT_EQ(deleted.status, 204) << deleted.body;
    daemon.signal(SIGTERM);
    ASSERT_EQ(daemon.wait(30s), 0) << daemon.log();

    daemon.start();
    nlohmann::json pools;
    for (int i = 0; i < 100 && pools.is_null(); ++i) {
        try {
            pools = HttpClient(port).get("/pools").json();
        } catch (const std::exception&) {
            std::this_thread::sleep_for(100ms);
        }
    }
    ASSERT_TRUE(pools.is_object()) << daemon.log();
    ASSERT_EQ(pools["value"].size(), 1u) << pools.dump();
    EXPECT_EQ(pools["value"][0]["name"], "scripts");
    EXPECT_EQ(pools["value"][0]["properties"]["containerType"], "Shell");
    auto r = HttpClient(port).post("/pools/scripts/executions?identifier=restart-1", R"({"shellCommand":"echo back"})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["result"]["stdout"], "back\n");
    daemon.signal(SIGTERM);
    EXPECT_EQ(daemon.wait(30s), 0) << daemon.log();
    EXPECT_TRUE(sessiond::testing::cgroupsNamed(cgroup).empty());
}

TEST(Daemon, ApiKeysGuardEveryRouteAndNeverReachTheLog) {
    std::uint16_t port = freePort();
    std::string cgroup = "sessiond-test-keys-" + std::to_string(getpid());
    const std::string executorKey = sessiond::newApiKey(), adminKey = sessiond::newApiKey(),
                      laterKey = sessiond::newApiKey();
    auto keyEntry = [](const std::string& name, const std::string& role, const std::string& key) {
        return nlohmann::json{{"name", name}, {"role", role}, {"sha256", sessiond::toHex(sessiond::sha256(key))}};
    };
    auto config = baseConfig(port, cgroup);
    config["listen"]["address"] = "0.0.0.0";  // allowed now that keys are required
    Daemon daemon(config);
    const std::string keyFile = daemon.directory() + "/keys.json";
    std::ofstream(keyFile) << nlohmann::json{{"keys", {keyEntry("ops", "PoolAdministrator", adminKey)}}}.dump();
    config["auth"] = {{"keys", {keyEntry("app", "SessionExecutor", executorKey)}}, {"keyFile", keyFile}};
    daemon.writeConfig(config);
    daemon.start();
    ASSERT_TRUE(waitForReadySandbox(port, 30s, executorKey)) << daemon.log();

    EXPECT_EQ(HttpClient(port).get("/healthz").status, 200);
    auto anonymous = HttpClient(port).get("/pools/default");
    EXPECT_EQ(anonymous.status, 401);
    EXPECT_EQ(anonymous.header("x-ms-error-code"), "AuthenticationFailed");
    EXPECT_EQ(HttpClient(port).withKey(laterKey).execute("default", "keys-1", "1+1").status, 401);

    auto executed = HttpClient(port).withKey(executorKey).execute("default", "keys-1", "6*7");
    ASSERT_EQ(executed.status, 200) << executed.body;
    EXPECT_EQ(executed.json()["properties"]["result"], 42);
    const std::string newPool = R"({"properties":{"containerType":"Shell","scaleConfiguration":{"readySessionInstances":0}}})";
    auto forbidden = HttpClient(port).withKey(executorKey).request(boost::beast::http::verb::put, "/pools/extra", newPool);
    EXPECT_EQ(forbidden.status, 403) << forbidden.body;
    auto created = HttpClient(port).withKey(adminKey).request(boost::beast::http::verb::put, "/pools/extra", newPool);
    EXPECT_EQ(created.status, 201) << created.body;

    // A key added to the key file works after SIGHUP; the others still do.
    std::ofstream(keyFile) << nlohmann::json{{"keys",
                                              {keyEntry("ops", "PoolAdministrator", adminKey),
                                               keyEntry("later", "SessionExecutor", laterKey)}}}
                                  .dump();
    daemon.signal(SIGHUP);
    bool accepted = false;
    for (int i = 0; i < 100 && !accepted; ++i) {
        accepted = HttpClient(port).withKey(laterKey).get("/pools/default").status == 200;
        if (!accepted) std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(accepted) << daemon.log();
    EXPECT_EQ(HttpClient(port).withKey(executorKey).get("/pools/default").status, 200);

    daemon.signal(SIGTERM);
    EXPECT_EQ(daemon.wait(30s), 0) << daemon.log();
    const std::string log = daemon.log();
    for (const auto& key : {executorKey, adminKey, laterKey}) EXPECT_EQ(log.find(key), std::string::npos) << "a key was logged";
    EXPECT_NE(log.find("requests need one of 2 API keys"), std::string::npos) << log;
    EXPECT_NE(log.find("SIGHUP: 3 API keys now"), std::string::npos) << log;
}

TEST(Daemon, NewKeyPrintsAKeyAndAnEntryThatAdmitsIt) {
    Daemon daemon(nlohmann::json::object());
    daemon.start({"--new-key", "printed", "--role", "PoolAdministrator", "--pools", "default,other"});
    ASSERT_EQ(daemon.wait(10s), 0) << daemon.log();
    const std::string out = daemon.log();
    auto keyAt = out.find("key:   "), entryAt = out.find("entry: ");
    ASSERT_NE(keyAt, std::string::npos) << out;
    ASSERT_NE(entryAt, std::string::npos) << out;
    const std::string key = out.substr(keyAt + 7, out.find('\n', keyAt) - keyAt - 7);
    auto entry = nlohmann::json::parse(out.substr(entryAt + 7, out.find('\n', entryAt) - entryAt - 7));
    auto parsed = sessiond::parseApiKeys(nlohmann::json::array({entry}), "entry");
    EXPECT_EQ(parsed[0].name, "printed");
    EXPECT_EQ(parsed[0].role, sessiond::Role::PoolAdministrator);
    EXPECT_EQ(parsed[0].pools, (std::vector<std::string>{"default", "other"}));
    sessiond::ApiKeyRing ring(parsed);
    EXPECT_NE(ring.find(key), nullptr) << key;
}

// docs/hardening.md, "Audit log": a line per request naming the key but never
// holding it, and a line per step of a session's life.
TEST(Daemon, AuditLogNamesKeysNeverHoldsThemAndFollowsSessions) {
    std::uint16_t port = freePort();
    const std::string key = sessiond::newApiKey();
    auto config = baseConfig(port, "sessiond-test-audit-" + std::to_string(getpid()));
    config["auth"] = {{"keys", {{{"name", "app"}, {"role", "SessionExecutor"},
                                 {"sha256", sessiond::toHex(sessiond::sha256(key))}}}}};
    Daemon daemon(config);
    const std::string auditFile = daemon.directory() + "/audit.log";
    config["audit"] = {{"file", auditFile}, {"includeCode", true}};
    daemon.writeConfig(config);
    daemon.start();
    ASSERT_TRUE(waitForReadySandbox(port, 30s, key)) << daemon.log();

    auto executed = HttpClient(port).withKey(key).execute("default", "audited-1", "6*7");
    ASSERT_EQ(executed.status, 200) << executed.body;
    EXPECT_EQ(HttpClient(port).withKey(sessiond::newApiKey()).execute("default", "audited-2", "1").status, 401);
    auto deleted = HttpClient(port).withKey(key).request(boost::beast::http::verb::delete_,
                                                         "/pools/default/session?identifier=audited-1");
    EXPECT_EQ(deleted.status, 204) << deleted.body;
    daemon.signal(SIGTERM);
    ASSERT_EQ(daemon.wait(30s), 0) << daemon.log();

    std::ifstream in(auditFile);
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_EQ(text.str().find(key), std::string::npos) << "a key was audited";
    std::vector<nlohmann::json> requests, events;
    std::istringstream lines(text.str());
    for (std::string line; std::getline(lines, line);) {
        auto json = nlohmann::json::parse(line);
        (json["type"] == "request" ? requests : events).push_back(json);
    }
    auto find = [](const std::vector<nlohmann::json>& lines, auto predicate) {
        auto it = std::find_if(lines.begin(), lines.end(), predicate);
        return it == lines.end() ? nlohmann::json() : *it;
    };
    auto execute = find(requests, [](const auto& l) { return l.value("identifier", "") == "audited-1" && l["method"] == "POST"; });
    ASSERT_FALSE(execute.is_null()) << text.str();
    EXPECT_EQ(execute["key"], "app");
    EXPECT_EQ(execute["route"], "/pools/{pool}/code/execute");
    EXPECT_EQ(execute["pool"], "default");
    EXPECT_EQ(execute["status"], 200);
    EXPECT_GT(execute["durationMs"].get<double>(), 0);
    EXPECT_EQ(execute["code"]["code"], "6*7");
    EXPECT_EQ(execute["remote"], "127.0.0.1");
    auto refused = find(requests, [](const auto& l) { return l.value("identifier", "") == "audited-2"; });
    ASSERT_FALSE(refused.is_null()) << text.str();
    EXPECT_EQ(refused["status"], 401);
    EXPECT_FALSE(refused.contains("key"));
    EXPECT_FALSE(refused.contains("code")) << "refused before its body was read";
    auto removal = find(requests, [](const auto& l) { return l["method"] == "DELETE"; });
    EXPECT_EQ(removal["status"], 204) << text.str();

    auto allocated = find(events, [](const auto& l) { return l["event"] == "allocated"; });
    ASSERT_FALSE(allocated.is_null()) << text.str();
    EXPECT_EQ(allocated["identifier"], "audited-1");
    EXPECT_FALSE(find(events, [&](const auto& l) { return l["event"] == "started" && l["sandbox"] == allocated["sandbox"]; })
                     .is_null())
        << text.str();
    auto destroyed = find(events, [](const auto& l) { return l["event"] == "destroyed" && l["identifier"] == "audited-1"; });
    ASSERT_FALSE(destroyed.is_null()) << text.str();
    EXPECT_EQ(destroyed["sandbox"], allocated["sandbox"]);
    EXPECT_FALSE(destroyed.value("detail", "").empty());
}
