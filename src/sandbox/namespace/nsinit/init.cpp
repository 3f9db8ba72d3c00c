#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "nsinit.hpp"

namespace sessiond::nsinit {

int exitCodeOf(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return kFailureExit;
}

// As pid 1 of the namespace this process inherits every orphan; reaping them
// keeps zombies from filling the pid limit. Returning ends the namespace: the
// kernel SIGKILLs whatever the command left running in the background. A
// zygote's sessions are such orphans that must live on after it.
void reapUntilExit(pid_t command, bool untilLastChild) {
    int code = kFailureExit;
    for (;;) {
        int status = 0;
        const pid_t pid = ::waitpid(-1, &status, 0);
        if (pid == command) {
            code = exitCodeOf(status);
            if (!untilLastChild) _exit(code);
        }
        if (pid < 0 && errno == ECHILD && untilLastChild) _exit(code);
        if (pid < 0 && errno != EINTR) die("waitpid");
    }
}

}  // namespace sessiond::nsinit
