// The whole path of a request, with nothing faked: the HTTP server, the pool
// manager, the namespace backend (sandboxes forked from a pool's zygote, or
// fresh sessiond-nsinit jails, in cgroups) and the real agent running
// Debian's Python and IPython.

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <map>
#include <sstream>
#include <tuple>

#include <gtest/gtest.h>

#include "sessiond/sandbox/namespace/namespace_backend.hpp"
#include "support/http_client.hpp"
#include "support/leaks.hpp"
#include "support/server_fixture.hpp"

using namespace sessiond;
using sessiond::testing::HttpClient;
using namespace std::chrono_literals;

namespace {

class NamespaceE2EBase : public ::testing::Test {
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
        server.startNamespace(config);
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
        EXPECT_TRUE(sessiond::testing::sandboxCgroups(config.cgroupName, true).empty());
        EXPECT_TRUE(sessiond::testing::cgroupsNamed(config.cgroupName).empty());
    }

    Config config;
    sessiond::testing::ServerFixture server;
};

// Every test runs both ways a sandbox can start.
class NamespaceE2E : public NamespaceE2EBase, public ::testing::WithParamInterface<bool> {
protected:
    void SetUp() override {
        NamespaceE2EBase::SetUp();
        config.namespaceSandbox.zygote = GetParam();
    }
};

INSTANTIATE_TEST_SUITE_P(Start, NamespaceE2E, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "ForkedFromZygote" : "FreshInterpreter"; });

std::string readProc(int pid, const std::string& file) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class ZygoteE2E : public NamespaceE2EBase {
protected:
    // Until then a session's pid 1 may still be in its zygote's cgroup.
    bool settled(std::size_t ready) {
        return server.waitFor(
            [&] { return server.counts("default").pending == 0 && server.counts("default").unallocated >= ready; }, 60s);
    }

    // The zygote's Python process (not its jail's nsinit processes).
    std::vector<int> zygoteProcesses() {
        std::vector<int> found;
        for (int pid : sessiond::testing::processesMatching("/" + config.cgroupName + "/zygote.")) {
            std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
            std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            if (cmdline.find("sessiond_zygote.py") != std::string::npos) found.push_back(pid);
        }
        return found;
    }
};

}  // namespace

TEST_P(NamespaceE2E, RunsPythonStatefullyPerSession) {
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

TEST_P(NamespaceE2E, TheFirstCellSeesAFreshInterpreter) {
    start();
    ASSERT_TRUE(waitReady(1));
    HttpClient client(server.port());
    // Warm-up cells ran in this interpreter before it was ready: nothing of
    // them may show (input and output history, the last results).
    auto first = run(client, "fresh-1",
                     "' '.join(map(str, [len(In), len(Out), repr(_), get_ipython().execution_count,\n"
                     "                   sorted(k for k in globals() if k.startswith('_'))]))");
    EXPECT_EQ(first["result"],
              "2 0 '' 1 ['_', '__', '___', '__builtin__', '__builtins__', '__doc__', '__loader__', '__name__', "
              "'__package__', '__spec__', '_dh', '_i', '_i1', '_ih', '_ii', '_iii', '_oh']")
        << first;
}

TEST_P(NamespaceE2E, SessionsCannotSeeEachOthersFilesOrProcesses) {
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

TEST_P(NamespaceE2E, HostFilesOutsideTheAllowListAreInvisible) {
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

TEST_P(NamespaceE2E, HasNoNetworkButLoopback) {
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

TEST_P(NamespaceE2E, RefillsAfterAllocationAndReapsAfterCooldown) {
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

TEST_P(NamespaceE2E, ANewSessionNeverWaitsForABootWhileOneIsReady) {
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

TEST_F(ZygoteE2E, ForkedSessionsShareNoRandomStateAndNoNamespaces) {
    config.pools[0].preloadModules = {"numpy"};
    start();
    ASSERT_TRUE(waitReady(2));
    HttpClient client(server.port());
    const std::string code =
        "import json, os, random, numpy\n"
        "json.dumps({'random': random.random(), 'numpy': float(numpy.random.rand()),\n"
        "            'urandom': os.urandom(8).hex(), 'uid': os.getuid(),\n"
        "            'ns': {n: os.readlink('/proc/self/ns/' + n) for n in ('mnt', 'net', 'pid', 'ipc', 'uts')}})";
    auto a = run(client, "fork-a", code);
    auto b = run(client, "fork-b", code);
    ASSERT_EQ(a["status"], "Success") << a;
    ASSERT_EQ(b["status"], "Success") << b;
    const auto ra = nlohmann::json::parse(a["result"].get<std::string>());
    const auto rb = nlohmann::json::parse(b["result"].get<std::string>());
    for (const char* field : {"random", "numpy", "urandom"}) EXPECT_NE(ra[field], rb[field]) << field;
    for (const char* ns : {"mnt", "net", "pid", "ipc", "uts"}) EXPECT_NE(ra["ns"][ns], rb["ns"][ns]) << ns;
    EXPECT_EQ(ra["uid"], 1000);
    EXPECT_EQ(rb["uid"], 1000);
}

TEST_F(ZygoteE2E, EverySessionProcessIsInTheSessionsCgroup) {
    start();
    ASSERT_TRUE(waitReady(2));
    HttpClient client(server.port());
    auto r = run(client, "cg-1", "import subprocess\nsubprocess.run(['sleep', '0'])\nopen('/proc/self/cgroup').read()");
    ASSERT_EQ(r["status"], "Success") << r;
    // The session's own cgroup namespace: its cgroup is its root, and no
    // path of the host's hierarchy shows.
    EXPECT_EQ(std::string(r["result"]).find(config.cgroupName), std::string::npos) << r;
    ASSERT_TRUE(settled(2));
    // Each sandbox cgroup holds its pid 1, agent and worker; nothing of a
    // sandbox is left in a zygote's cgroup.
    std::size_t inSandboxes = 0;
    for (const auto& leaf : sessiond::testing::sandboxCgroups(config.cgroupName))
        inSandboxes += sessiond::testing::processesMatching("/" + config.cgroupName + "/" + leaf + "\n").size();
    EXPECT_EQ(inSandboxes, 3u * server.counts("default").unallocated + 3u * server.counts("default").allocated);
    EXPECT_EQ(zygoteProcesses().size(), 1u);
}

// Starting runs at a tenth of the CPU weight (docs/architecture.md, "Starting
// in turns"); a sandbox that is ready, allocated or not, is back to normal,
// and the zygote, which only starts sandboxes, stays in the background.
TEST_F(ZygoteE2E, OnlyStartingRunsAtBackgroundCpuWeight) {
    start();
    ASSERT_TRUE(waitReady(2));
    HttpClient client(server.port());
    ASSERT_EQ(run(client, "weight-1", "1")["status"], "Success");
    ASSERT_TRUE(settled(2));
    std::map<std::string, std::string> weightOf;  // leaf -> "normal" or "background"
    for (const auto& dir : sessiond::testing::cgroupsNamed(config.cgroupName))
        for (const auto& leaf : sessiond::testing::sandboxCgroups(config.cgroupName, true)) {
            for (const auto& [file, normal, background] :
                 {std::tuple{"cpu.weight", "100\n", "10\n"}, std::tuple{"cpu.shares", "1024\n", "102\n"}}) {
                std::ifstream in(std::filesystem::path(dir) / leaf / file);
                std::string value((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
                if (value == normal) weightOf[leaf] = "normal";
                if (value == background) weightOf[leaf] = "background";
            }
        }
    if (weightOf.empty()) GTEST_SKIP() << "no cpu controller for sandbox cgroups on this host";
    ASSERT_EQ(weightOf.size(), 4u);  // 2 ready, 1 allocated, the zygote
    for (const auto& [leaf, weight] : weightOf)
        EXPECT_EQ(weight, leaf.rfind("zygote.", 0) == 0 ? "background" : "normal") << leaf;
}

TEST_F(ZygoteE2E, SessionsOutliveTheirZygoteAndANewOneIsStarted) {
    start();
    ASSERT_TRUE(waitReady(2));
    HttpClient client(server.port());
    EXPECT_EQ(run(client, "live-1", "x = 5\nx")["result"], 5);
    ASSERT_TRUE(settled(2));
    const auto zygotes = zygoteProcesses();
    ASSERT_EQ(zygotes.size(), 1u);
    ASSERT_EQ(::kill(zygotes[0], SIGKILL), 0);
    // The allocated session and the ready ones keep running...
    EXPECT_EQ(run(client, "live-1", "x + 1")["result"], 6);
    EXPECT_EQ(run(client, "live-2", "7")["result"], 7);
    // ...and the refill comes from a new zygote.
    ASSERT_TRUE(server.waitFor(
        [&] {
            const auto now = zygoteProcesses();
            return now.size() == 1 && now[0] != zygotes[0];
        },
        30s));
    ASSERT_TRUE(settled(2));
    EXPECT_EQ(run(client, "live-3", "8")["result"], 8);
    EXPECT_EQ(run(client, "live-1", "x + 2")["result"], 7);
}

// A sandbox's agent and worker share their zygote's pages copy-on-write.
// The agent's warm-up runs requests over a path a daemon's request takes, so
// the copies a request needs are made before the sandbox is ready and not in
// a session's first request (16 page faults in the agent before the warm-up
// used a channel of its own; a fault costs microseconds, tens in a VM). The
// worker's reset after the warm-up is done before the sandbox is ready too
// (100 to 200 faults in the runs where a request came while it still ran).
// A first request now takes 0 to 7, and about 20 with the old warm-up.
TEST_F(ZygoteE2E, AFirstRequestFindsItsSandboxAlreadyCopied) {
    start();
    ASSERT_TRUE(settled(2));
    auto minorFaults = [&] {
        std::map<int, long> byPid;
        for (int pid : sessiond::testing::processesMatching("/" + config.cgroupName + "/default-")) {
            const std::string comm = readProc(pid, "comm");
            if (comm != "sessiond-agent\n" && comm != "sessiond-worker\n") continue;
            // minflt, the 10th field; comm, the 2nd, has no space in it.
            std::istringstream stat(readProc(pid, "stat"));
            std::string field;
            for (int i = 0; i < 10; ++i) stat >> field;
            byPid[pid] = std::stol(field);
        }
        return byPid;
    };
    const auto before = minorFaults();
    ASSERT_EQ(before.size(), 4u);  // 2 ready sandboxes
    HttpClient client(server.port());
    ASSERT_EQ(run(client, "copied-1", "print(1)")["stdout"], "1\n");
    long taken = 0;
    for (const auto& [pid, faults] : minorFaults())
        if (before.count(pid)) taken += faults - before.at(pid);
    EXPECT_LE(taken, 10);
}

// After forking the agent a session's pid 1 execs sessiond-reap: no copy of
// the zygote's interpreter stays only to reap.
TEST_F(ZygoteE2E, Pid1IsTheReaperWhichReapsOrphansAndEndsWithTheAgent) {
    start();
    ASSERT_TRUE(waitReady(2));
    HttpClient client(server.port());
    // An orphan of user code: its parent exits at once, pid 1 inherits it and
    // must reap it when it exits.
    auto r = run(client, "reap-1",
                 "import os, subprocess, time\n"
                 "open('/mnt/data/marker', 'w').close()\n"
                 "subprocess.run(['sh', '-c', 'sleep 1 & echo $! > /mnt/data/orphan'])\n"
                 "pid = int(open('/mnt/data/orphan').read())\n"
                 "def stat():\n"
                 "    try:\n"
                 "        return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()\n"
                 "    except FileNotFoundError:\n"
                 "        return None\n"
                 "parent = stat()[1]\n"
                 "deadline = time.time() + 20\n"
                 "while stat() is not None and time.time() < deadline:\n"
                 "    time.sleep(0.05)\n"
                 "(parent, stat(), open('/proc/1/comm').read())");
    ASSERT_EQ(r["status"], "Success") << r;
    EXPECT_EQ(r["result"], "('1', None, 'sessiond-init\\n')") << r;
    ASSERT_TRUE(settled(2));

    // From the host: each sandbox's pid 1 (last of its NSpid) maps nothing of
    // Python and holds no fd but stdio.
    auto pid1s = [&] {
        std::vector<int> found;
        for (const auto& leaf : sessiond::testing::sandboxCgroups(config.cgroupName))
            for (int pid : sessiond::testing::processesMatching("/" + config.cgroupName + "/" + leaf + "\n")) {
                const std::string status = readProc(pid, "status");
                const auto line = status.find("NSpid:");
                const auto end = status.find('\n', line);
                if (line != std::string::npos && status.substr(line, end - line).ends_with("\t1")) found.push_back(pid);
            }
        return found;
    };
    auto isReaper = [&](int pid) {
        std::vector<std::string> fds;
        std::error_code ec;
        for (const auto& fd : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec))
            fds.push_back(fd.path().filename());
        std::sort(fds.begin(), fds.end());
        return readProc(pid, "comm") == "sessiond-init\n" && readProc(pid, "maps").find("python") == std::string::npos &&
               fds == std::vector<std::string>{"0", "1", "2"};
    };
    const std::size_t sandboxes = server.counts("default").unallocated + server.counts("default").allocated;
    EXPECT_TRUE(server.waitFor(
        [&] {
            const auto pids = pid1s();
            return pids.size() == sandboxes && std::all_of(pids.begin(), pids.end(), isReaper);
        },
        10s))
        << "not every sandbox's pid 1 is the reaper";

    // When the agent exits, pid 1 exits and the session ends.
    int sessionPid1 = 0;
    for (int pid : pid1s())
        if (std::filesystem::exists("/proc/" + std::to_string(pid) + "/root/mnt/data/marker")) sessionPid1 = pid;
    ASSERT_NE(sessionPid1, 0);
    client.execute("default", "reap-1", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)");
    EXPECT_TRUE(server.waitFor([&] { return !std::filesystem::exists("/proc/" + std::to_string(sessionPid1)); }, 10s));
    EXPECT_TRUE(server.waitFor([&] { return server.counts("default").allocated == 0; }, 10s));
}
