#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>

#include "nsinit.hpp"

namespace sessiond::nsinit {

void runNamespaceChild(const JailSpec& spec, UniqueFd syncRead) {
    sigset_t none;
    sigemptyset(&none);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGHUP, SIG_DFL);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);

    // The parent writes our uid/gid maps, then one byte. EOF means it died.
    char byte = 0;
    ssize_t n;
    do n = ::read(syncRead.get(), &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) _exit(kFailureExit);
    if (spec.setupFd >= 0) ::close(spec.setupFd);

    becomeNamespaceRoot();
    // Set after the credential change, which would clear it. The parent keeps
    // its end of the pipe open for life, so a hang-up now means it died before
    // the death signal was armed. (getppid() is 0 in a new pid namespace.)
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die("PR_SET_PDEATHSIG");
    pollfd pfd{syncRead.get(), 0, 0};
    if (::poll(&pfd, 1, 0) != 0) _exit(kFailureExit);
    syncRead.reset();

    buildRoot(spec);
    if (::sethostname(spec.hostname.data(), spec.hostname.size()) != 0) die("sethostname");
    bringUpLoopback();
    if (!spec.network.address.empty()) configureInterface(spec.network);
    if (!spec.imageRoot.empty()) allowAllPortsUnprivileged();

    const pid_t command = ::fork();
    if (command < 0) die("fork");
    if (command == 0) runCommand(spec);
    // The fds are the command's; holding them here would delay the EOF the
    // daemon waits for.
    closeFds(spec.keepFds);
    reapUntilExit(command, spec.zygote);
}

}  // namespace sessiond::nsinit
