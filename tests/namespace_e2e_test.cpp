// The whole path of a request, with nothing faked: the HTTP server, the pool
// manager, the namespace backend (sessiond-nsinit jails in cgroups) and the
// real agent running Debian's Python and IPython.

#include <gtest/gtest.h>

#include "sessiond/sandbox/namespace/namespace_backend.hpp"
#include "support/http_client.hpp"
#include "support/leaks.hpp"
#include "support/server_fixture.hpp"

using namespace sessiond;
using sessiond::testing::HttpClient;
using namespace std::chrono_literals;

namespace {

class NamespaceE2E : public ::testing::Test {
protected:
    void SetUp() override {
        config.cgroupName = "sessiond-test-" + std::to_string(getpid());
        PoolConfig pool;
        pool.name = "default";
        pool.readySessionInstances = 2;
        pool.maxConcurrentSessions = 4;
        pool.cooldownPeriod = 300s;
        pool.sandboxStartTimeout = 60s;
        pool.resources.memoryBytes = 512ull << 20;
        config.pools = {pool};
    }

    void start() {
        server.start(config, [this](boost::asio::io_context& io) {
            return std::make_unique<NamespaceBackend>(
                io, config, BackendPaths{SESSIOND_BINARY_DIR "/sessiond-nsinit", SESSIOND_BINARY_DIR "/agent"});
        });
    }

    bool waitReady(std::size_t n, std::chrono::seconds limit = 60s) {
        return server.waitFor([&] { return server.counts("default").unallocated >= n; }, limit);
    }

    nlohmann::json run(HttpClient& client, const std::string& id, const std::string& code) {
        auto r = client.execute("default", id, code);
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json()["properties"];
    }

    void TearDown() override {
        server.stop();
        // Nothing may outlive the daemon's pools: no jail, no agent, no cgroup.
        // Every jail names its cgroup in its arguments, and every sandbox
        // process is in that cgroup: none may be left.
        EXPECT_TRUE(sessiond::testing::processesMatching("/" + config.cgroupName + "/").empty());
        EXPECT_TRUE(sessiond::testing::sandboxCgroups(config.cgroupName).empty());
        EXPECT_TRUE(sessiond::testing::cgroupsNamed(config.cgroupName).empty());
    }

    Config config;
    sessiond::testing::ServerFixture server;
};

}  // namespace

TEST_F(NamespaceE2E, RunsPythonStatefullyPerSession) {
    start();
    ASSERT_TRUE(waitReady(2));
    HttpClient client(server.port());
    auto first = run(client, "abcd-1", "x = 6*7\nprint(x)\nx");
    EXPECT_EQ(first["status"], "Success");
    EXPECT_EQ(first["stdout"], "42\n");
    EXPECT_EQ(first["result"], 42);
    EXPECT_EQ(first["stderr"], "");

    auto second = run(client, "abcd-1", "x + 1");
    EXPECT_EQ(second["result"], 43);

    auto other = run(client, "abcd-2", "x");
    EXPECT_EQ(other["status"], "Failure");
    EXPECT_NE(other["stderr"].get<std::string>().find("NameError"), std::string::npos);

    // The first session kept its state through the other's failure.
    EXPECT_EQ(run(client, "abcd-1", "x")["result"], 42);
    auto cwd = run(client, "abcd-1", "import os\nos.getcwd()");
    EXPECT_EQ(cwd["result"], "/mnt/data");
}

TEST_F(NamespaceE2E, SessionsCannotSeeEachOthersFilesOrProcesses) {
    start();
    ASSERT_TRUE(waitReady(2));
    HttpClient client(server.port());
    run(client, "sess-a", "import os, subprocess\nopen('/mnt/data/secret.txt','w').write('a')\n"
                          "p = subprocess.Popen(['sleep', '300'])");
    auto b = run(client, "sess-b",
                 "import os\n"
                 "cmds = [open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()]\n"
                 "(os.path.exists('/mnt/data/secret.txt'), os.listdir('/mnt/data'), any('sleep' in c for c in cmds), len(cmds) < 10)");
    EXPECT_EQ(b["status"], "Success") << b;
    EXPECT_EQ(b["result"], "(False, [], False, True)");
    // The first session does see its own file and process.
    auto a = run(client, "sess-a", "(os.path.exists('/mnt/data/secret.txt'), p.poll() is None)");
    EXPECT_EQ(a["result"], "(True, True)");
}

TEST_F(NamespaceE2E, HostFilesOutsideTheAllowListAreInvisible) {
    start();
    ASSERT_TRUE(waitReady(1));
    HttpClient client(server.port());
    std::string code =
        "import os\n"
        "paths = ['/etc/shadow', '/etc/passwd-', '/root', '/home', '/var/log', '/boot', '/srv',\n"
        "         '" SESSIOND_SOURCE_DIR "', '" SESSIOND_BINARY_DIR "/sessiond']\n"
        "[p for p in paths if os.path.exists(p)]";
    auto r = run(client, "host-1", code);
    EXPECT_EQ(r["status"], "Success") << r;
    EXPECT_EQ(r["result"], "[]");

    auto write = run(client, "host-1",
                     "import os\nerrors = []\n"
                     "for p in ['/usr/evil', '/etc/evil', '/evil', '/opt/sessiond/agent/evil']:\n"
                     "    try:\n        open(p, 'w')\n    except OSError as e:\n        errors.append(e.errno)\n"
                     "(len(errors), os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])");
    EXPECT_EQ(write["result"], "(4, 1000, '0000000000000000')") << write;
}

TEST_F(NamespaceE2E, HasNoNetworkButLoopback) {
    start();
    ASSERT_TRUE(waitReady(1));
    HttpClient client(server.port());
    std::string code =
        "import socket\n"
        "def attempt(addr):\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        "    try:\n        s.connect(addr); return 'connected'\n"
        "    except OSError as e:\n        return type(e).__name__\n"
        "ifaces = [l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]]\n"
        "(ifaces, attempt(('192.0.2.1', 80)), attempt(('127.0.0.1', " + std::to_string(server.port()) + ")))";
    auto r = run(client, "net-1", code);
    EXPECT_EQ(r["status"], "Success") << r;
    EXPECT_EQ(r["result"], "(['lo'], 'OSError', 'ConnectionRefusedError')") << r;
}

TEST_F(NamespaceE2E, RefillsAfterAllocationAndReapsAfterCooldown) {
    config.pools[0].cooldownPeriod = 2s;
    config.pools[0].readySessionInstances = 1;
    start();
    ASSERT_TRUE(waitReady(1));
    HttpClient client(server.port());
    EXPECT_EQ(run(client, "cool-1", "y = 1\ny")["result"], 1);
    EXPECT_EQ(server.counts("default").allocated, 1u);
    ASSERT_TRUE(waitReady(1)) << "the pool did not refill after an allocation";

    ASSERT_TRUE(server.waitFor([&] { return server.counts("default").allocated == 0; }, 10s))
        << "the idle session was not reaped";
    EXPECT_GE(server.counts("default").destroyed, 1u);
    // One jail (the ready one) is left; the reaped session's jail is gone.
    EXPECT_TRUE(server.waitFor(
        [&] { return sessiond::testing::sandboxCgroups(config.cgroupName).size() == 1; }, 5s));
    // The identifier now names a fresh session.
    auto again = run(client, "cool-1", "y");
    EXPECT_EQ(again["status"], "Failure");
}

TEST_F(NamespaceE2E, ANewSessionNeverWaitsForABootWhileOneIsReady) {
    config.pools[0].readySessionInstances = 1;
    start();
    ASSERT_TRUE(waitReady(1));
    HttpClient client(server.port());
    auto timed = [&](const std::string& id) {
        auto started = std::chrono::steady_clock::now();
        EXPECT_EQ(run(client, id, "1+1")["result"], 2);
        return std::chrono::steady_clock::now() - started;
    };
    auto fromWarmPool = timed("warm-1");
    // The only ready sandbox is taken and its replacement is still starting:
    // this one has to wait for a boot.
    auto afterABoot = timed("cold-1");
    EXPECT_LT(fromWarmPool * 3, afterABoot) << "warm " << fromWarmPool.count() << "ns, cold " << afterABoot.count() << "ns";
}
