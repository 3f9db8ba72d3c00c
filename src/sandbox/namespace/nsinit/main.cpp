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
    if (spec.uid == 0 || spec.uid > 65535) fail("spec", "uid must be in 1..65535");
    if (spec.tmpfsBytes == 0) fail("spec", "tmpfsBytes must be > 0");
    if (spec.hostname.empty() || spec.hostname.size() > 64) fail("spec", "hostname must have 1..64 characters");
    return spec;
}

}  // namespace

int main(int argc, char** argv) {
    ::signal(SIGCHLD, SIG_DFL);
    const JailSpec spec = parseSpec(argc, argv);
    closeFdsExcept(spec.keepFds);
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
    if (::write(syncWrite.get(), "x", 1) != 1) die("sync child");

    int status = 0;
    while (::waitpid(static_cast<pid_t>(child), &status, 0) < 0)
        if (errno != EINTR) die("waitpid");
    return exitCodeOf(status);
}
