// sessiond-reap AGENT_PID: what a zygote session's pid 1 becomes once it has
// forked the agent (src/agent/sessiond_zygote.py, run_session). Until then
// pid 1 is a fork of the zygote's interpreter; from then on all it does is
// reapUntilExit, which needs none of that interpreter's pages. A separate,
// statically linked binary rather than sessiond-nsinit in a mode of its own
// (nsinit would need its bind mount all the same): no library to find inside
// the jail, whatever paths a pool mounts, no dynamic linking at each
// session's start, and a few private pages are all its pid 1 then costs.
#include <signal.h>
#include <sys/prctl.h>

#include <cerrno>
#include <cstdlib>

#include "nsinit.hpp"

using namespace sessiond::nsinit;

int main(int argc, char** argv) {
    // What ps shows, as before the exec (comm would be the file's name).
    ::prctl(PR_SET_NAME, "sessiond-init", 0, 0, 0);
    if (argc != 2) fail("usage", "sessiond-reap AGENT_PID");
    char* end = nullptr;
    errno = 0;
    const long agent = std::strtol(argv[1], &end, 10);
    if (errno != 0 || *end != '\0' || agent <= 0) fail("usage", "sessiond-reap AGENT_PID");
    // An ignored SIGCHLD would have the kernel reap the agent before its
    // exit code is read. The exec reset every handler, so as pid 1 this
    // process drops every signal sent from inside its namespace; the
    // daemon's SIGKILL through the pidfd still ends it and the namespace.
    ::signal(SIGCHLD, SIG_DFL);
    reapUntilExit(static_cast<pid_t>(agent));
}
