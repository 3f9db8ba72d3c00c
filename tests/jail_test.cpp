// The namespace jail against the real kernel: sessiond-nsinit is spawned
// through JailedProcess and the tests look at the sandbox from inside (what
// the command reports) and from the host (processes, mounts).
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "sessiond/sandbox/namespace/jail.hpp"

using namespace sessiond;
using namespace std::chrono_literals;

namespace {

const std::filesystem::path kNsinit = SESSIOND_BINARY_DIR "/sessiond-nsinit";
constexpr std::uint32_t kUid = 1234;

struct Pipe {
    int r = -1, w = -1;
    Pipe() { EXPECT_EQ(::pipe2(&r, O_CLOEXEC), 0); }
    ~Pipe() {
        closeRead();
        closeWrite();
    }
    void closeRead() {
        if (r >= 0) ::close(std::exchange(r, -1));
    }
    void closeWrite() {
        if (w >= 0) ::close(std::exchange(w, -1));
    }
};

std::string readAll(int fd, std::chrono::milliseconds timeout = 30s) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd pfd{fd, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
            ADD_FAILURE() << "timed out reading; got: " << out;
            return out;
        }
        char buf[4096];
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) return out;
        out.append(buf, static_cast<std::size_t>(n));
    }
}

// Exit code of nsinit (its command's code, 128 + signal, or 125), -1 on timeout.
int waitExit(JailedProcess& p, std::chrono::milliseconds timeout = 30s) {
    pollfd pfd{p.pidfd(), POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    int status = 0;
    if (!p.tryReap(&status)) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

JailSpec specFor(std::vector<std::string> argv) {
    JailSpec s;
    s.uid = kUid;
    s.gid = kUid;
    s.hostname = "jailtest";
    s.mounts = {{"/usr", "/usr", false},
                {"/etc/alternatives", "/etc/alternatives", false},
                {"/etc/ld.so.cache", "/etc/ld.so.cache", false}};
    s.argv = std::move(argv);
    s.env = {{"PATH", "/usr/bin:/bin"}};
    return s;
}

JailSpec sh(const std::string& script) { return specFor({"/bin/sh", "-c", script}); }
JailSpec python(const std::string& code) { return specFor({"/usr/bin/python3", "-c", code}); }

struct Result {
    int exitCode;
    std::string output;  // the command's stdout and stderr (and nsinit's errors)
};

Result run(const JailSpec& spec) {
    Pipe out;
    // fdsToPass is keyed by source fd, so stderr needs its own copy.
    const int err = ::fcntl(out.w, F_DUPFD_CLOEXEC, 3);
    auto p = JailedProcess::spawn(kNsinit, spec, {{out.w, 1}, {err, 2}});
    ::close(err);
    out.closeWrite();
    std::string output = readAll(out.r);
    return {waitExit(*p), output};
}

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Host pids whose argv is exactly {any, arg}.
std::vector<pid_t> hostPidsWithArg(const std::string& arg) {
    std::vector<pid_t> pids;
    DIR* d = ::opendir("/proc");
    while (dirent* e = ::readdir(d)) {
        const pid_t pid = std::atoi(e->d_name);
        if (pid <= 0) continue;
        const std::string cmdline = slurp("/proc/" + std::string(e->d_name) + "/cmdline");
        const auto nul = cmdline.find('\0');
        if (nul != std::string::npos && cmdline.substr(nul + 1) == arg + std::string(1, '\0')) pids.push_back(pid);
    }
    ::closedir(d);
    return pids;
}

pid_t waitForHostPid(const std::string& arg) {
    for (int i = 0; i < 500; ++i) {
        auto pids = hostPidsWithArg(arg);
        if (pids.size() == 1) return pids[0];
        std::this_thread::sleep_for(10ms);
    }
    return -1;
}

bool gone(pid_t pid, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
        std::this_thread::sleep_for(10ms);
    }
    return false;
}

// Every test checks that the jail left no mount behind on the host.
class JailTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(std::filesystem::exists(kNsinit)) << kNsinit;
        mountsBefore_ = slurp("/proc/self/mountinfo");
    }
    void TearDown() override { EXPECT_EQ(slurp("/proc/self/mountinfo"), mountsBefore_); }

private:
    std::string mountsBefore_;
};

}  // namespace

TEST(JailSpecJson, RoundTrips) {
    JailSpec s = sh("true");
    s.mounts.push_back({"/data", "/mnt/data/in", true});
    s.cgroupProcsFiles = {"/sys/fs/cgroup/x/cgroup.procs"};
    s.keepFds = {3, 7};
    s.zygote = true;
    s.seccomp = false;
    s.tmpfsBytes = 12345;
    s.network = {"eth0", "10.213.0.2", 16, "10.213.0.1"};
    const JailSpec back = JailSpec::fromJson(nlohmann::json::parse(s.toJson().dump()));
    EXPECT_EQ(back.toJson(), s.toJson());
    EXPECT_EQ(back.mounts.back().writable, true);
    EXPECT_EQ(back.keepFds, (std::vector<int>{3, 7}));
    EXPECT_TRUE(back.zygote);
    EXPECT_EQ(back.uid, kUid);
    EXPECT_EQ(back.network.address, "10.213.0.2");
    EXPECT_EQ(back.network.prefixLength, 16);
    EXPECT_FALSE(sh("true").toJson().contains("network"));  // loopback only
    // Straight from the in-memory json too (signed integers there).
    EXPECT_EQ(JailSpec::fromJson(s.toJson()).toJson(), s.toJson());
}

TEST(JailSpecJson, RejectsUnknownAndWrongTypedFields) {
    const auto good = sh("true").toJson();
    auto with = [&](const std::string& key, nlohmann::json value) {
        auto j = good;
        j[key] = std::move(value);
        return j;
    };
    EXPECT_NO_THROW(JailSpec::fromJson(good));
    EXPECT_THROW(JailSpec::fromJson(with("unknown", 1)), std::invalid_argument);
    EXPECT_THROW(JailSpec::fromJson(with("uid", "1000")), std::invalid_argument);
    EXPECT_THROW(JailSpec::fromJson(with("uid", -1)), std::invalid_argument);
    EXPECT_THROW(JailSpec::fromJson(with("uid", 1ull << 40)), std::invalid_argument);
    EXPECT_THROW(JailSpec::fromJson(with("seccomp", 1)), std::invalid_argument);
    EXPECT_THROW(JailSpec::fromJson(with("keepFds", {3, -1})), std::invalid_argument);
    EXPECT_THROW(JailSpec::fromJson(with("argv", "/bin/sh")), std::invalid_argument);
    EXPECT_THROW(JailSpec::fromJson(with("env", {{"A", 1}})), std::invalid_argument);
    EXPECT_THROW(JailSpec::fromJson(with("mounts", {{{"source", "/a"}, {"target", "/a"}, {"rw", true}}})),
                 std::invalid_argument);
    EXPECT_THROW(JailSpec::fromJson(with("mounts", {{{"source", "/a"}}})), std::invalid_argument);
    EXPECT_THROW(JailSpec::fromJson(nlohmann::json::array()), std::invalid_argument);
    const nlohmann::json network = {{"interface", "eth0"}, {"address", "10.0.0.2"}, {"prefixLength", 24}, {"gateway", "10.0.0.1"}};
    EXPECT_NO_THROW(JailSpec::fromJson(with("network", network)));
    auto without = network;
    without.erase("gateway");
    EXPECT_THROW(JailSpec::fromJson(with("network", without)), std::invalid_argument);
    auto longName = network;
    longName["interface"] = "an-interface-name";
    EXPECT_THROW(JailSpec::fromJson(with("network", longName)), std::invalid_argument);
    auto prefix = network;
    prefix["prefixLength"] = 33;
    EXPECT_THROW(JailSpec::fromJson(with("network", prefix)), std::invalid_argument);
}

TEST_F(JailTest, CommandIsPid2AndSeesOnlyItsNamespace) {
    const auto r = sh("echo pid=$$; for p in /proc/[0-9]*; do echo proc=${p#/proc/}; done");
    const auto res = run(r);
    ASSERT_EQ(res.exitCode, 0) << res.output;
    EXPECT_NE(res.output.find("pid=2\n"), std::string::npos) << res.output;
    std::set<int> pids;
    std::istringstream in(res.output);
    for (std::string line; std::getline(in, line);)
        if (line.rfind("proc=", 0) == 0) pids.insert(std::stoi(line.substr(5)));
    // pid 1 (nsinit's child, the reaper) and the shell: the host's processes
    // are not visible.
    EXPECT_EQ(pids, (std::set<int>{1, 2})) << res.output;
}

TEST_F(JailTest, RunsAsSandboxUserWithoutCapabilities) {
    const auto res = run(sh("id -u; id -g; id -G; grep -E '^(Cap(Eff|Prm|Bnd|Amb)|NoNewPrivs|Seccomp):' "
                            "/proc/self/status; cat /proc/self/uid_map; grep sandbox /etc/passwd"));
    ASSERT_EQ(res.exitCode, 0) << res.output;
    const std::string uid = std::to_string(kUid);
    EXPECT_EQ(res.output.rfind(uid + "\n" + uid + "\n" + uid + "\n", 0), 0u) << res.output;
    for (const char* line : {"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000",
                             "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"})
        EXPECT_NE(res.output.find(line), std::string::npos) << line << "\n" << res.output;
    // Host root is not mapped; the sandbox's ids live at hostUidBase + id.
    char map[64];
    std::snprintf(map, sizeof map, "%10u %10u %10u\n", 0u, JailSpec{}.hostUidBase, 65536u);
    EXPECT_NE(res.output.find(map), std::string::npos) << res.output;
    EXPECT_NE(res.output.find("sandbox:x:" + uid + ":" + uid + ":sandbox:/tmp:"), std::string::npos);
}

TEST_F(JailTest, HostnameRlimitsEnvironmentAndWorkingDirectory) {
    auto spec = specFor({"/bin/sh", "-c", "hostname; ulimit -n; ulimit -c; pwd; readlink /proc/self/fd/0"});
    spec.openFiles = 321;
    const auto res = run(spec);
    ASSERT_EQ(res.exitCode, 0) << res.output;
    EXPECT_EQ(res.output, "jailtest\n321\n0\n/mnt/data\n/dev/null\n");

    spec.argv = {"/usr/bin/env"};
    spec.env = {{"PATH", "/usr/bin:/bin"}, {"ONLY", "this"}};
    EXPECT_EQ(run(spec).output, "ONLY=this\nPATH=/usr/bin:/bin\n");

    spec.argv = {"/bin/pwd"};
    spec.workingDirectory = "/tmp";
    EXPECT_EQ(run(spec).output, "/tmp\n");
}

TEST_F(JailTest, OnlyLoopbackAndNoRouteOut) {
    const auto res = run(python(R"(
import errno, socket, time
names = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]
print('ifaces', names)
s = socket.socket()
start = time.monotonic()
try:
    s.connect(('192.0.2.1', 80))
    print('connected')
except OSError as e:
    print('connect', errno.errorcode.get(e.errno), 'fast' if time.monotonic() - start < 1 else 'slow')
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
c = socket.create_connection(srv.getsockname(), timeout=2)
print('loopback ok')
)"));
    ASSERT_EQ(res.exitCode, 0) << res.output;
    EXPECT_NE(res.output.find("ifaces ['lo']"), std::string::npos) << res.output;
    EXPECT_NE(res.output.find("connect ENETUNREACH fast"), std::string::npos) << res.output;
    EXPECT_NE(res.output.find("loopback ok"), std::string::npos) << res.output;
}

TEST_F(JailTest, FilesystemIsReadOnlyExceptPrivateTmpfs) {
    const auto res = run(python(std::string(R"(
import errno, os
def attempt(path):
    try:
        open(path, 'w').write('x')
        return 'ok'
    except OSError as e:
        return errno.errorcode.get(e.errno)
print('usr', attempt('/usr/sessiond-test'))
print('root', attempt('/sessiond-test'))
print('etc', attempt('/etc/sessiond-test'))
for d in ('/mnt/data', '/tmp'):
    print(d, sorted(os.listdir(d)), attempt(d + '/file'))
absent = ['/root', '/home', '/var', '/etc/shadow', '/oldroot', '/newroot', ')") +
                                SESSIOND_SOURCE_DIR + R"(']
print('present', [p for p in absent if os.path.lexists(p)])
print('ldcache', os.path.exists('/etc/ld.so.cache'))
)"));
    ASSERT_EQ(res.exitCode, 0) << res.output;
    for (const char* line : {"usr EROFS", "root EROFS", "etc EROFS", "/mnt/data [] ok", "/tmp [] ok", "present []",
                             "ldcache True"})
        EXPECT_NE(res.output.find(line), std::string::npos) << line << "\n" << res.output;
}

TEST_F(JailTest, WritableMountIsWritableAndMissingSourcesAreSkipped) {
    char dir[] = "/tmp/sessiond-jail-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    ASSERT_EQ(::chmod(dir, 0777), 0);
    auto spec = sh("echo hi > /mnt/data/shared/out && ls /nonexistent-target 2>&1; echo done");
    spec.mounts.push_back({dir, "/mnt/data/shared", true});
    spec.mounts.push_back({std::string(dir) + "/missing", "/nonexistent-target", false});
    const auto res = run(spec);
    EXPECT_EQ(res.exitCode, 0) << res.output;
    EXPECT_NE(res.output.find("No such file"), std::string::npos) << res.output;
    EXPECT_EQ(slurp(std::string(dir) + "/out"), "hi\n");
    std::filesystem::remove_all(dir);
}

TEST_F(JailTest, SeccompDeniesMountAndUnshare) {
    const std::string code = R"(
import ctypes, os, threading
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(rc):
    return ctypes.get_errno() if rc != 0 else 0
print('mount', errno_of(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)))
print('unshare', errno_of(libc.unshare(0x10000000)))  # CLONE_NEWUSER
print('personality', libc.personality(0xffffffff), libc.personality(0x0040000), ctypes.get_errno())  # ADDR_NO_RANDOMIZE
t = threading.Thread(target=lambda: None); t.start(); t.join()  # clone3 -> ENOSYS -> clone
pid = os.fork()
if pid == 0: os._exit(3)
print('fork', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
)";
    auto res = run(python(code));
    ASSERT_EQ(res.exitCode, 0) << res.output;
    EXPECT_NE(res.output.find("mount 1\n"), std::string::npos) << res.output;  // EPERM
    EXPECT_NE(res.output.find("unshare 1\n"), std::string::npos) << res.output;
    EXPECT_NE(res.output.find("fork 3\n"), std::string::npos) << res.output;
    EXPECT_NE(res.output.find("personality 0 -1 1\n"), std::string::npos) << res.output;

    // Without the filter an unprivileged user may create a user namespace:
    // the EPERM above is the filter's doing.
    auto spec = python(code);
    spec.seccomp = false;
    res = run(spec);
    ASSERT_EQ(res.exitCode, 0) << res.output;
    EXPECT_NE(res.output.find("unshare 0\n"), std::string::npos) << res.output;
}

TEST_F(JailTest, ExitStatusAndFailingStep) {
    EXPECT_EQ(run(sh("exit 7")).exitCode, 7);
    EXPECT_EQ(run(sh("kill -KILL $$")).exitCode, 128 + SIGKILL);

    auto res = run(specFor({"/usr/bin/does-not-exist"}));
    EXPECT_EQ(res.exitCode, 125);
    EXPECT_NE(res.output.find("sessiond-nsinit: execve /usr/bin/does-not-exist: No such file"), std::string::npos)
        << res.output;

    auto spec = sh("true");
    spec.mounts.push_back({"/usr", "relative/target", false});
    res = run(spec);
    EXPECT_EQ(res.exitCode, 125);
    EXPECT_NE(res.output.find("sessiond-nsinit: mount target relative/target"), std::string::npos) << res.output;
}

TEST_F(JailTest, PassesOnlyKeptFdsAtTheirNumbers) {
    Pipe a, b, out;
    // Out of the way of 7 and 8, which the test uses as sources.
    for (int* fd : {&a.r, &a.w, &b.r, &b.w, &out.r, &out.w}) {
        const int high = ::fcntl(*fd, F_DUPFD_CLOEXEC, 20);
        ::close(std::exchange(*fd, high));
    }
    // Targets swapped against the sources' numbers: placing one must not
    // clobber the other. (dash redirects single-digit fds only.)
    ASSERT_EQ(::dup3(a.w, 7, O_CLOEXEC), 7);
    ASSERT_EQ(::dup3(b.w, 8, O_CLOEXEC), 8);
    a.closeWrite();
    b.closeWrite();
    // An fd the daemon leaked without O_CLOEXEC must not reach the sandbox.
    const int leaked = ::open("/dev/null", O_RDONLY);
    ASSERT_GE(leaked, 0);

    auto spec = sh("echo A >&8; echo B >&7; ls /proc/self/fd | sort -n | tr '\\n' ' '");
    spec.keepFds = {7, 8};
    {
        auto p = JailedProcess::spawn(kNsinit, spec, {{7, 8}, {8, 7}, {out.w, 1}});
        ::close(7);
        ::close(8);
        out.closeWrite();
        EXPECT_EQ(readAll(a.r), "A\n");
        EXPECT_EQ(readAll(b.r), "B\n");
        // ls's own directory fd is 3; 2 is the test's stderr.
        EXPECT_EQ(readAll(out.r), "0 1 2 3 7 8 ");
        EXPECT_EQ(waitExit(*p), 0);
    }
    ::close(leaked);
}

TEST_F(JailTest, BackgroundProcessDiesWhenCommandExits) {
    Pipe control;
    const std::string marker = "99999." + std::to_string(::getpid()) + "1";
    auto spec = sh("/bin/sleep " + marker + " & read x <&5; exit 0");
    spec.keepFds = {5};
    auto p = JailedProcess::spawn(kNsinit, spec, {{control.r, 5}});
    control.closeRead();
    const pid_t sleeper = waitForHostPid(marker);
    ASSERT_GT(sleeper, 0);
    // Seen from the host, the sandbox user is hostUidBase + uid.
    const std::string hostUid = std::to_string(JailSpec{}.hostUidBase + kUid);
    EXPECT_NE(slurp("/proc/" + std::to_string(sleeper) + "/status")
                  .find("Uid:\t" + hostUid + "\t" + hostUid + "\t" + hostUid + "\t" + hostUid),
              std::string::npos);
    control.closeWrite();  // lets the command exit
    EXPECT_EQ(waitExit(*p), 0);
    EXPECT_TRUE(gone(sleeper));
}

TEST_F(JailTest, DestructorKillsEverything) {
    Pipe control;
    const std::string marker = "99999." + std::to_string(::getpid()) + "2";
    auto spec = sh("/bin/sleep " + marker + " & read x <&5");
    spec.keepFds = {5};
    auto p = JailedProcess::spawn(kNsinit, spec, {{control.r, 5}});
    control.closeRead();
    const pid_t sleeper = waitForHostPid(marker);
    ASSERT_GT(sleeper, 0);
    const pid_t nsinit = p->pid();
    int status = 0;
    EXPECT_FALSE(p->tryReap(&status));
    p.reset();
    EXPECT_TRUE(gone(sleeper));
    EXPECT_TRUE(gone(nsinit));  // reaped, not a zombie
}

TEST_F(JailTest, KillEndsTheSandbox) {
    Pipe control;
    auto spec = sh("read x <&5");
    spec.keepFds = {5};
    auto p = JailedProcess::spawn(kNsinit, spec, {{control.r, 5}});
    control.closeRead();
    std::this_thread::sleep_for(100ms);
    EXPECT_FALSE(p->tryReap());
    p->kill();
    EXPECT_EQ(waitExit(*p), 128 + SIGKILL);
    int status = 0;
    EXPECT_TRUE(p->tryReap(&status));
    EXPECT_TRUE(WIFSIGNALED(status));

    // SIGTERM to nsinit takes the whole namespace down as well.
    Pipe control2;
    auto p2 = JailedProcess::spawn(kNsinit, spec, {{control2.r, 5}});
    control2.closeRead();
    std::this_thread::sleep_for(200ms);
    ASSERT_EQ(::kill(p2->pid(), SIGTERM), 0);
    EXPECT_EQ(waitExit(*p2), 128 + SIGKILL);
}

namespace {

// A custom container's root (JailSpec::imageRoot): an "image" made here of
// symbolic links into the host's /usr, which the spec mounts over it.
TEST_F(JailTest, ImageRootRunsItsRootWithoutCapabilitiesAndWritesOnlyToItsOwnLayer) {
    namespace fs = std::filesystem;
    char pattern[] = "/tmp/sessiond-jail-image-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    const fs::path dir = pattern;
    const fs::path rootfs = dir / "rootfs";
    fs::permissions(dir, fs::perms(0711));
    fs::create_directories(rootfs / "etc");
    fs::create_directories(rootfs / "usr");
    for (const char* link : {"bin", "lib", "lib64"}) fs::create_symlink(std::string("usr/") + link, rootfs / link);
    std::ofstream(rootfs / "etc/image-file") << "from the image\n";
    // Owned as an image unpacked for this jail's id range would be.
    const std::uint32_t base = JailSpec{}.hostUidBase;
    for (const auto& entry : fs::recursive_directory_iterator(rootfs))
        ASSERT_EQ(::lchown(entry.path().c_str(), base, base), 0);
    ASSERT_EQ(::chown(rootfs.c_str(), base, base), 0);

    JailSpec spec = sh("id -u; id -g; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
                       "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
                       "echo changed > /etc/image-file && cat /etc/image-file; echo new > /new-file && cat /new-file; "
                       "head -c 2000000 /dev/zero > /big 2>/dev/null || echo layer full");
    spec.uid = 0;
    spec.gid = 0;
    spec.imageRoot = rootfs.string();
    spec.workingDirectory = "/";
    spec.tmpfsBytes = 1 << 20;
    spec.mounts = {{"/usr", "/usr", false}};
    const auto res = run(spec);
    ASSERT_EQ(res.exitCode, 0) << res.output;
    EXPECT_EQ(res.output.rfind("0\n0\n", 0), 0u) << res.output;
    for (const char* line : {"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000",
                             "NoNewPrivs:\t1", "Seccomp:\t2", "\n0\n", "changed\n", "new\n", "layer full\n"})
        EXPECT_NE(res.output.find(line), std::string::npos) << line << "\n" << res.output;
    // The image on the host is as it was: the writes went to the jail's layer.
    EXPECT_EQ(slurp((rootfs / "etc/image-file").string()), "from the image\n");
    EXPECT_FALSE(fs::exists(rootfs / "new-file"));
    EXPECT_FALSE(fs::exists(rootfs / "big"));
    fs::remove_all(dir);

    // Outside an image root, uid 0 is refused: the root built from host paths
    // is owned by the namespace's root.
    JailSpec hostRoot = sh("id -u");
    hostRoot.uid = 0;
    const auto refused = run(hostRoot);
    EXPECT_EQ(refused.exitCode, 125) << refused.output;
    EXPECT_NE(refused.output.find("uid and gid must be in 1..65535"), std::string::npos) << refused.output;
}

}  // namespace
