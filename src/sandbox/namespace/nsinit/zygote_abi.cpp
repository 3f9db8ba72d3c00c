// The jail's steps as a C library for the zygote (src/agent/sessiond_zygote.py),
// which loads it with ctypes and calls it in the processes it forks. Every
// call either succeeds or ends the calling process with nsinit's one-line
// message and exit code 125, like nsinit itself.
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <string>

#include "nsinit.hpp"

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

}  // namespace

extern "C" {

// In the zygote, before it forks any session.
__attribute__((visibility("default"))) void sessiond_prepare() { prepareSeccompFilter(); }

// In the intermediate process: the session's namespaces apply to it, and the
// pid namespace to the children it forks next.
__attribute__((visibility("default"))) void sessiond_session_unshare() {
    if (::unshare(kSessionNamespaces) != 0) die("unshare session namespaces");
}

// In the session's pid 1.
__attribute__((visibility("default"))) void sessiond_session_enter(const char* specJson) {
    enterSession(parse(specJson));
}

// In the session's pid 1 of a session with egress, once the daemon has moved
// the session's end of its veth pair into the session's network namespace.
__attribute__((visibility("default"))) void sessiond_session_connect(const char* specJson) {
    const JailSpec spec = parse(specJson);
    if (!spec.network.address.empty()) configureInterface(spec.network);
}

// In the session's pid 1, once the daemon has put it into the session's
// cgroup: from here on /proc/self/cgroup shows that cgroup as the root.
__attribute__((visibility("default"))) void sessiond_session_enter_cgroup() {
    if (::unshare(CLONE_NEWCGROUP) != 0) die("unshare cgroup namespace");
}

// In the process that becomes the agent: drops to the sandbox user.
__attribute__((visibility("default"))) void sessiond_session_become_command(const char* specJson) {
    becomeCommand(parse(specJson));
}

// In the session's pid 1, once it has forked the agent: replaces this
// process (a copy of the zygote's interpreter) with sessiond-reap at `path`,
// keeping only stdio. Returns only if the exec failed, with its errno; the
// caller then reaps with sessiond_session_reap instead.
__attribute__((visibility("default"))) int sessiond_session_exec_reaper(const char* path, int command) {
    closeFdsExcept({});
    const std::string pid = std::to_string(command);
    char* const argv[] = {const_cast<char*>("sessiond-init"), const_cast<char*>(pid.c_str()), nullptr};
    char* const envp[] = {nullptr};
    ::execve(path, argv, envp);
    return errno;
}

// In the session's pid 1; never returns.
__attribute__((visibility("default"))) void sessiond_session_reap(int command) { reapUntilExit(command); }
}
