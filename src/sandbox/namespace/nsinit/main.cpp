// sessiond-nsinit < JailSpec JSON: see jail.hpp for what it builds. The spec
// comes on stdin, which is then replaced with /dev/null.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <string>

#include "nsinit.hpp"

using namespace sessiond;
using namespace sessiond::nsinit;

namespace {

volatile sig_atomic_t gChild = 0;

// Stopping nsinit means stopping the sandbox: killing the namespace's pid 1
// takes every process in it down.
void forwardAsKill(int) {
    if (gChild > 0) ::kill(gChild, SIGKILL);
}

std::string readStdin() {
    std::string text;
    char buffer[65536];
    for (;;) {
        ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read spec from stdin");
        if (n == 0) break;
        text.append(buffer, static_cast<std::size_t>(n));
    }
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || ::dup2(null, STDIN_FILENO) < 0) die("stdin from /dev/null");
    ::close(null);
    return text;
}

// The daemon's part of the setup (jail.hpp, setupFd), done while the
// child still waits on its sync pipe.
void awaitHostSetup(int fd, pid_t child) {
    const std::string pid = std::to_string(child) + "\n";
    if (::write(fd, pid.data(), pid.size()) != static_cast<ssize_t>(pid.size())) die("report the sandbox's pid");
    char byte = 0;
    ssize_t n;
    do n = ::read(fd, &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) fail("host setup", "the daemon gave up on the sandbox");
    ::close(fd);
}

JailSpec parseSpec(int argc, char**) {
    if (argc != 1) fail("usage", "sessiond-nsinit < jail-spec.json");
    JailSpec spec;
    try {
        spec = JailSpec::fromJson(nlohmann::json::parse(readStdin()));
    } catch (const std::exception& e) {
        fail("spec", e.what());
    }
    if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/')
        fail("spec", "argv[0] must be an absolute path");
    // Root of the namespace is unprivileged on the host, but it owns the
    // root built from host paths: only a container's own root may run as it.
    const std::uint32_t lowest = spec.imageRoot.empty() ? 1 : 0;
    if (spec.uid < lowest || spec.uid > 65535 || spec.gid < lowest || spec.gid > 65535)
        fail("spec", "uid and gid must be in " + std::to_string(lowest) + "..65535");
    if (spec.tmpfsBytes == 0) fail("spec", "tmpfsBytes must be > 0");
    if (spec.hostname.empty() || spec.hostname.size() > 64) fail("spec", "hostname must have 1..64 characters");
    return spec;
}

}  // namespace

int main(int argc, char** argv) {
    ::signal(SIGCHLD, SIG_DFL);
    const JailSpec spec = parseSpec(argc, argv);
    std::vector<int> open = spec.keepFds;
    if (spec.setupFd >= 0) open.push_back(spec.setupFd);
    closeFdsExcept(open);
    joinCgroups(spec);
    applyRlimits(spec);

    // Blocked until the child's pid is known, so the handler always has a
    // target; the child unblocks them for itself.
    sigset_t stop, old;
    sigemptyset(&stop);
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop, sig);
    ::sigprocmask(SIG_BLOCK, &stop, &old);

    int pipeFds[2];
    if (::pipe2(pipeFds, O_CLOEXEC) != 0) die("pipe");
    UniqueFd syncRead(pipeFds[0]), syncWrite(pipeFds[1]);

    constexpr unsigned long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |
                                    CLONE_NEWUTS | CLONE_NEWCGROUP;
    // Raw clone with no stack argument behaves like fork(), which glibc's
    // fork() cannot do with namespace flags.
    const long child = ::syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (child < 0) die("clone");
    if (child == 0) {
        syncWrite.reset();
        runNamespaceChild(spec, std::move(syncRead));
    }

    gChild = static_cast<pid_t>(child);
    struct sigaction sa {};
    sa.sa_handler = forwardAsKill;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) ::sigaction(sig, &sa, nullptr);
    ::sigprocmask(SIG_SETMASK, &old, nullptr);

    syncRead.reset();
    closeFds(spec.keepFds);
    writeIdMaps(static_cast<pid_t>(child), spec.hostUidBase);
    if (spec.setupFd >= 0) awaitHostSetup(spec.setupFd, static_cast<pid_t>(child));
    if (::write(syncWrite.get(), "x", 1) != 1) die("sync child");

    int status = 0;
    while (::waitpid(static_cast<pid_t>(child), &status, 0) < 0)
        if (errno != EINTR) die("waitpid");
    return exitCodeOf(status);
}
