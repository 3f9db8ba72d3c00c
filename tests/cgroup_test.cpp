// Cgroup against the real kernel, on whichever hierarchy the host has (v1 or
// v2), plus the v2 delegation logic on any cgroup2 mount with a controller.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "../src/sandbox/namespace/cgroup_internal.hpp"
#include "sessiond/sandbox/namespace/cgroup.hpp"
#include "sessiond/sandbox/namespace/jail.hpp"

using namespace sessiond;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void put(const fs::path& path, const std::string& value) {
    std::ofstream out(path);
    out << value;
    out.close();
    ASSERT_TRUE(out) << "write " << value << " to " << path;
}

bool contains(const std::string& text, const std::string& word) {
    std::istringstream in(text);
    for (std::string w; in >> w;)
        if (w == word) return true;
    return false;
}

pid_t spawnSleep() {
    pid_t pid = -1;
    char arg0[] = "/bin/sleep", arg1[] = "1000";
    char* argv[] = {arg0, arg1, nullptr};
    char* envp[] = {nullptr};
    EXPECT_EQ(posix_spawn(&pid, "/bin/sleep", nullptr, nullptr, argv, envp), 0);
    return pid;
}

bool killedBySigkill(pid_t pid) {
    int status = 0;
    return ::waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

std::vector<fs::path> dirsOf(const Cgroup& cg) {
    std::vector<fs::path> dirs;
    for (const auto& f : cg.procsFiles()) dirs.push_back(f.parent_path());
    return dirs;
}

// A group name of this test run; TearDown removes whatever it left.
class CgroupTest : public ::testing::Test {
protected:
    const std::string group = "sessiond-test-" + std::to_string(::getpid());

    void TearDown() override {
        Cgroup::removeLeftovers(group);
        const auto h = CgroupInternals::detect();
        if (h.version == 2) {
            ::rmdir((CgroupInternals::v2Base(h.v2Own, group) / group).c_str());
        } else {
            for (const auto& [c, own] : h.v1Own) ::rmdir((own / group).c_str());
        }
    }
};

}  // namespace

TEST_F(CgroupTest, CreateWritesLimits) {
    auto cg = Cgroup::create(group, "limits", {0.5, 64ull << 20, 32});
    ASSERT_FALSE(cg->procsFiles().empty());
    bool sawMemory = false, sawPids = false, sawCpu = false;
    for (const auto& dir : dirsOf(*cg)) {
        EXPECT_TRUE(fs::is_directory(dir));
        EXPECT_EQ(dir.filename(), "limits");
        EXPECT_EQ(dir.parent_path().filename(), group);
        if (fs::exists(dir / "memory.max")) sawMemory = slurp(dir / "memory.max") == "67108864\n";
        if (fs::exists(dir / "memory.limit_in_bytes")) sawMemory = slurp(dir / "memory.limit_in_bytes") == "67108864\n";
        if (fs::exists(dir / "pids.max")) sawPids = slurp(dir / "pids.max") == "32\n";
        if (fs::exists(dir / "cpu.max")) sawCpu = slurp(dir / "cpu.max") == "50000 100000\n";
        if (fs::exists(dir / "cpu.cfs_quota_us"))
            sawCpu = slurp(dir / "cpu.cfs_quota_us") == "50000\n" && slurp(dir / "cpu.cfs_period_us") == "100000\n";
    }
    EXPECT_TRUE(sawMemory);
    EXPECT_TRUE(sawPids);
    EXPECT_TRUE(sawCpu);
    EXPECT_EQ(cg->oomKills(), 0u);
    EXPECT_EQ(cg->pidsLimitHits(), 0u);
    EXPECT_THROW(Cgroup::create(group, "limits", {}), std::system_error);  // the leaf exists
}

TEST_F(CgroupTest, RejectsBadNames) {
    EXPECT_THROW(Cgroup::create(group, "../escape", {}), std::invalid_argument);
    EXPECT_THROW(Cgroup::create("", "leaf", {}), std::invalid_argument);
    EXPECT_THROW(Cgroup::removeLeftovers(".."), std::invalid_argument);
}

TEST_F(CgroupTest, ProcessJoinsAndKillAllEmptiesIt) {
    auto cg = Cgroup::create(group, "kill", {1.0, 0, 0});
    const pid_t a = spawnSleep(), b = spawnSleep();
    for (const auto& f : cg->procsFiles()) {
        put(f, std::to_string(a));
        put(f, std::to_string(b));
    }
    for (const auto& dir : dirsOf(*cg)) {
        const auto procs = slurp(dir / "cgroup.procs");
        EXPECT_TRUE(contains(procs, std::to_string(a)) && contains(procs, std::to_string(b))) << procs;
    }
    cg->killAll();
    for (const auto& dir : dirsOf(*cg)) EXPECT_EQ(slurp(dir / "cgroup.procs"), "");
    EXPECT_TRUE(killedBySigkill(a));
    EXPECT_TRUE(killedBySigkill(b));
}

TEST_F(CgroupTest, DestructorKillsAndRemovesDirectories) {
    auto cg = Cgroup::create(group, "gone", {});
    auto other = Cgroup::create(group, "other", {});
    const auto dirs = dirsOf(*cg);
    const pid_t pid = spawnSleep();
    put(cg->procsFiles().front(), std::to_string(pid));
    cg.reset();
    EXPECT_TRUE(killedBySigkill(pid));
    for (const auto& dir : dirs) {
        EXPECT_FALSE(fs::exists(dir)) << dir;
        EXPECT_TRUE(fs::exists(dir.parent_path())) << "the group directory still holds another sandbox";
    }
    // The last sandbox out removes the group directory.
    other.reset();
    for (const auto& dir : dirs) EXPECT_FALSE(fs::exists(dir.parent_path())) << dir.parent_path();
}

TEST_F(CgroupTest, RemoveLeftoversKillsAndRemovesStaleLeaves) {
    std::vector<fs::path> groupDirs;
    {
        auto cg = Cgroup::create(group, "first", {});
        for (const auto& dir : dirsOf(*cg)) groupDirs.push_back(dir.parent_path());
    }
    // What a crashed daemon leaves: a leaf per hierarchy, a process inside.
    const pid_t pid = spawnSleep();
    for (const auto& g : groupDirs) {
        ASSERT_EQ(::mkdir(g.c_str(), 0755), 0);
        ASSERT_EQ(::mkdir((g / "stale").c_str(), 0755), 0);
        put(g / "stale" / "cgroup.procs", std::to_string(pid));
    }
    EXPECT_EQ(Cgroup::removeLeftovers(group), 1u);
    EXPECT_TRUE(killedBySigkill(pid));
    for (const auto& g : groupDirs) EXPECT_FALSE(fs::exists(g)) << g;
    EXPECT_EQ(Cgroup::removeLeftovers(group), 0u);
}

namespace {

// Runs `code` with /usr/bin/python3 in a jail inside `cg`; returns nsinit's exit code.
int runPythonIn(const Cgroup& cg, const std::string& code, std::string* output) {
    JailSpec spec;
    spec.mounts = {{"/usr", "/usr", false}, {"/etc/ld.so.cache", "/etc/ld.so.cache", false}};
    spec.argv = {"/usr/bin/python3", "-c", code};
    spec.cgroupProcsFiles = cg.procsFiles();
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    auto p = JailedProcess::spawn(SESSIOND_BINARY_DIR "/sessiond-nsinit", spec, {{fds[1], 1}, {fds[1], 2}});
    ::close(fds[1]);
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) output->append(buf, static_cast<std::size_t>(n));
    ::close(fds[0]);
    pollfd pfd{p->pidfd(), POLLIN, 0};
    ::poll(&pfd, 1, 30000);
    int status = 0;
    if (!p->tryReap(&status)) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_F(CgroupTest, MemoryHogInAJailIsOomKilled) {
    auto cg = Cgroup::create(group, "hog", {1.0, 64ull << 20, 64});
    std::string output;
    // Within the limit first: the jail itself runs fine in the cgroup.
    ASSERT_EQ(runPythonIn(*cg, "print('small', len(b'x' * (8 << 20)))", &output), 0) << output;
    EXPECT_EQ(cg->oomKills(), 0u);
    // bytes * n fills every page, so the memory is really charged.
    EXPECT_EQ(runPythonIn(*cg, "b = b'x' * (512 << 20); print('survived')", &output), 128 + SIGKILL) << output;
    EXPECT_EQ(output.find("survived"), std::string::npos);
    EXPECT_GE(cg->oomKills(), 1u);
    EXPECT_LE(cg->memoryCurrent(), 64ull << 20);
}

TEST_F(CgroupTest, PidsLimitStopsForks) {
    auto cg = Cgroup::create(group, "forks", {1.0, 0, 16});
    EXPECT_EQ(cg->pidsLimitHits(), 0u);
    std::string output;
    const int rc = runPythonIn(*cg, R"(
import os, time
n = 0
try:
    for _ in range(100):
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        n += 1
except OSError as e:
    print('stopped after', n, e.strerror)
)", &output);
    EXPECT_EQ(rc, 0) << output;
    // nsinit, its pid-1 child and python count too.
    EXPECT_NE(output.find("stopped after 13 Resource temporarily unavailable"), std::string::npos) << output;
    // What the daemon reports a hit by (docs/hardening.md, Per-session limits).
    EXPECT_GE(cg->pidsLimitHits(), 1u);
}

// The v2 delegation path, on a cgroup2 mount with any controller enabled for
// this process's cgroup (on a hybrid v1 host the unified mount typically has
// only hugetlb, which is enough to exercise subtree_control handling).
TEST_F(CgroupTest, V2DelegatesControllersAndMovesItselfOutOfTheWay) {
    fs::path mount, own;
    {
        std::ifstream in("/proc/self/mountinfo");
        for (std::string line; std::getline(in, line);)
            if (line.find(" - cgroup2 ") != std::string::npos) {
                std::istringstream f(line);
                std::string id, parent, dev, root, point;
                f >> id >> parent >> dev >> root >> point;
                if (root == "/") mount = point;
            }
        std::ifstream cg("/proc/self/cgroup");
        for (std::string line; std::getline(cg, line);)
            if (line.rfind("0::", 0) == 0) own = line.substr(3);
    }
    if (mount.empty() || own.empty()) GTEST_SKIP() << "no cgroup2 mount";
    const fs::path ownDir = mount / own.relative_path();
    std::istringstream available(slurp(ownDir / "cgroup.controllers"));
    std::string controller;
    if (!(available >> controller)) GTEST_SKIP() << "no controller available in " << ownDir;

    // A base cgroup holding this very process, as a daemon started in a
    // service's cgroup would be, with the controller delegated to it.
    const fs::path base = ownDir / (group + "-base");
    ASSERT_EQ(::mkdir(base.c_str(), 0755), 0);
    put(base / "cgroup.procs", std::to_string(::getpid()));
    const bool delegated = contains(slurp(ownDir / "cgroup.subtree_control"), controller);
    if (!delegated) {
        std::ofstream(ownDir / "cgroup.subtree_control") << "+" << controller;
        if (!contains(slurp(base / "cgroup.controllers"), controller)) {
            put(ownDir / "cgroup.procs", std::to_string(::getpid()));
            ::rmdir(base.c_str());
            GTEST_SKIP() << "cannot delegate " << controller << " from " << ownDir;
        }
    }

    const fs::path supervisor = base / (group + "-supervisor");
    {
        auto first = CgroupInternals::createV2(base, group, "one", {}, {controller});
        EXPECT_NE(slurp("/proc/self/cgroup").find(supervisor.lexically_relative(mount).string()),
                  std::string::npos)
            << slurp("/proc/self/cgroup");
        EXPECT_TRUE(contains(slurp(base / "cgroup.subtree_control"), controller));
        EXPECT_TRUE(contains(slurp(base / group / "cgroup.subtree_control"), controller));
        EXPECT_TRUE(contains(slurp(base / group / "one" / "cgroup.controllers"), controller));
        EXPECT_EQ(first->procsFiles(), std::vector<fs::path>{base / group / "one" / "cgroup.procs"});

        // As the daemon sees it now: its own cgroup is the supervisor leaf.
        auto second = CgroupInternals::createV2(supervisor, group, "two", {}, {controller});
        EXPECT_EQ(second->procsFiles(), std::vector<fs::path>{base / group / "two" / "cgroup.procs"});
        const pid_t pid = spawnSleep();
        put(second->procsFiles().front(), std::to_string(pid));
        second.reset();
        EXPECT_TRUE(killedBySigkill(pid));
        EXPECT_FALSE(fs::exists(base / group / "two"));
    }
    EXPECT_FALSE(fs::exists(base / group));
    ASSERT_EQ(::mkdir((base / group).c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((base / group / "stale").c_str(), 0755), 0);
    EXPECT_EQ(CgroupInternals::removeLeftoversV2(supervisor, group), 1u);
    EXPECT_FALSE(fs::exists(base / group));

    // Stopping: the daemon gives back the controller it enabled in base,
    // moves back there and removes its supervisor cgroup.
    EXPECT_TRUE(CgroupInternals::releaseSupervisorV2(supervisor, group));
    EXPECT_FALSE(fs::exists(supervisor));
    EXPECT_NE(slurp("/proc/self/cgroup").find("0::/" + base.lexically_relative(mount).string() + "\n"),
              std::string::npos)
        << slurp("/proc/self/cgroup");
    EXPECT_FALSE(contains(slurp(base / "cgroup.subtree_control"), controller));
    // A killed daemon's supervisor cgroup is empty; the next start removes it.
    ASSERT_EQ(::mkdir(supervisor.c_str(), 0755), 0);
    EXPECT_EQ(CgroupInternals::removeLeftoversV2(base, group), 0u);
    EXPECT_FALSE(fs::exists(supervisor));

    put(ownDir / "cgroup.procs", std::to_string(::getpid()));
    ::rmdir(supervisor.c_str());
    EXPECT_EQ(::rmdir(base.c_str()), 0);
    if (!delegated) put(ownDir / "cgroup.subtree_control", "-" + controller);
}

namespace {

// A child that spins on CPU 0 until killed.
pid_t spinOnCpu0() {
    const pid_t pid = ::fork();
    if (pid == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(0, &one);
        ::sched_setaffinity(0, sizeof one, &one);
        for (volatile unsigned long n = 0;; n = n + 1) {
        }
    }
    return pid;
}

// User plus system CPU time of `pid`, in clock ticks, from /proc/<pid>/stat.
long cpuTicks(pid_t pid) {
    const std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; fields >> field; ++i) {
        if (i == 14) utime = std::stol(field);
        if (i == 15) {
            stime = std::stol(field);
            break;
        }
    }
    return utime + stime;
}

}  // namespace

TEST_F(CgroupTest, BackgroundCpuWeightYieldsToASibling) {
    auto starting = Cgroup::create(group, "starting", {0, 0, 0, CpuWeight::Background});
    auto running = Cgroup::create(group, "running", {0, 0, 0});
    bool sawWeight = false;
    for (const auto& dir : dirsOf(*starting)) {
        if (fs::exists(dir / "cpu.weight")) sawWeight = slurp(dir / "cpu.weight") == "10\n";
        if (fs::exists(dir / "cpu.shares")) sawWeight = slurp(dir / "cpu.shares") == "102\n";
    }
    if (!sawWeight) GTEST_SKIP() << "no cpu controller for sandbox cgroups on this host";

    // Both spin on one CPU: the scheduler splits it by weight.
    const pid_t low = spinOnCpu0(), normal = spinOnCpu0();
    starting->attach(low);
    running->attach(normal);
    const long lowBefore = cpuTicks(low), normalBefore = cpuTicks(normal);
    std::this_thread::sleep_for(1500ms);
    const long lowTicks = cpuTicks(low) - lowBefore, normalTicks = cpuTicks(normal) - normalBefore;
    starting->killAll();
    running->killAll();
    EXPECT_TRUE(killedBySigkill(low));
    EXPECT_TRUE(killedBySigkill(normal));
    EXPECT_GT(lowTicks, 0) << "the background one must still run";
    // Ten to one by weight; five to one leaves room for a noisy host.
    EXPECT_GT(normalTicks, 5 * lowTicks) << "normal " << normalTicks << " background " << lowTicks;

    starting->setCpuWeight(CpuWeight::Normal);
    for (const auto& dir : dirsOf(*starting)) {
        if (fs::exists(dir / "cpu.weight")) EXPECT_EQ(slurp(dir / "cpu.weight"), "100\n");
        if (fs::exists(dir / "cpu.shares")) EXPECT_EQ(slurp(dir / "cpu.shares"), "1024\n");
    }
}
