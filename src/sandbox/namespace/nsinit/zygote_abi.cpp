// The jail's steps as a C library for the zygote (src/agent/sessiond_zygote.py),
// which loads it with ctypes. Every call either succeeds or ends the calling
// process with nsinit's one-line message and exit code 125, like nsinit
// itself.
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "nsinit.hpp"
#include "sessiond/sandbox/namespace/fd_passing.hpp"

using namespace sessiond;
using namespace sessiond::nsinit;

namespace {

JailSpec parse(const char* specJson) {
    try {
        return JailSpec::fromJson(nlohmann::json::parse(specJson));
    } catch (const std::exception& e) {
        fail("session spec", e.what());
    }
}

// The session's pid 1: returns only in the agent it forks.
void runSessionInit(const JailSpec& spec, int channel, int go, const char* reaper) {
    ::prctl(PR_SET_NAME, "sessiond-init");
    enterSession(spec);
    char byte = 0;
    if (::read(go, &byte, 1) != 1 || byte != 'x') _exit(kFailureExit);  // the daemon gave up on it
    ::close(go);
    // With egress the daemon has moved the session's end of its veth pair in by now.
    if (!spec.network.address.empty()) configureInterface(spec.network);
    // The daemon has put this process into the session's cgroup: from here
    // on /proc/self/cgroup shows that cgroup as the root.
    if (::unshare(CLONE_NEWCGROUP) != 0) die("unshare cgroup namespace");
    const pid_t agent = ::fork();
    if (agent < 0) die("fork the agent");
    if (agent == 0) return;
    ::close(channel);
    if (reaper) {
        closeFdsExcept({});
        const std::string pid = std::to_string(agent);
        char* const argv[] = {const_cast<char*>("sessiond-init"), const_cast<char*>(pid.c_str()), nullptr};
        char* const envp[] = {nullptr};
        ::execve(reaper, argv, envp);
        std::fprintf(stderr, "sessiond-zygote: exec %s: %s; this session's pid 1 reaps as a copy of the zygote\n",
                     reaper, std::strerror(errno));
    }
    reapUntilExit(agent);
}

}  // namespace

extern "C" {

// In the zygote, before it forks any session.
__attribute__((visibility("default"))) void sessiond_prepare() { prepareSeccompFilter(); }

// In the zygote, with the interpreter prepared for a fork (PyOS_BeforeFork):
// forks the session from this process. The intermediate process (which
// unshares the session's namespaces, so that the pid namespace applies to
// its child) and the session's pid 1 run only this C code and never return:
// a forked interpreter copies every page it writes to, reference counts
// mostly, and these two would write a few hundred for nothing. Returns a
// pidfd of pid 1 in the zygote, or -1 if the session could not be forked
// (its reason is logged); 0 in the session's agent, which pid 1 forked once
// the daemon said go and which the caller then becomes.
__attribute__((visibility("default"))) int sessiond_session_spawn(const char* specJson, int channel, int go,
                                                                  const char* reaper) {
    JailSpec spec;
    try {
        spec = JailSpec::fromJson(nlohmann::json::parse(specJson));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sessiond-zygote: session spec: %s\n", e.what());
        return -1;
    }
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0) {
        std::fprintf(stderr, "sessiond-zygote: socketpair: %s\n", std::strerror(errno));
        return -1;
    }
    const pid_t intermediate = ::fork();
    if (intermediate == 0) {
        // The zygote's control socket above all: the daemon must see it close
        // when the zygote exits, whatever sessions are still starting.
        closeFdsExcept({ends[1], channel, go});
        if (::unshare(kSessionNamespaces) != 0) die("unshare session namespaces");
        const pid_t init = ::fork();
        if (init < 0) die("fork the session's pid 1");
        if (init == 0) {
            ::close(ends[1]);
            runSessionInit(spec, channel, go, reaper);
            return 0;  // the agent
        }
        const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, init, 0));
        if (pidfd < 0) die("pidfd_open the session's pid 1");
        const char byte = 'x';
        if (sendWithFds(ends[1], {&byte, 1}, std::span(&pidfd, 1), 0) != 1) die("send the session's pidfd");
        _exit(0);
    }
    ::close(ends[1]);
    int pidfd = -1;
    if (intermediate < 0) {
        std::fprintf(stderr, "sessiond-zygote: fork: %s\n", std::strerror(errno));
    } else {
        while (::waitpid(intermediate, nullptr, 0) < 0 && errno == EINTR) {
        }
        char byte;
        if (receiveWithFd(ends[0], {&byte, 1}, pidfd, 0) != 1 && pidfd >= 0) {
            ::close(pidfd);
            pidfd = -1;
        }
    }
    ::close(ends[0]);
    return pidfd;
}

// In the process that becomes the agent: drops to the sandbox user.
__attribute__((visibility("default"))) void sessiond_session_become_command(const char* specJson) {
    becomeCommand(parse(specJson));
}
}
