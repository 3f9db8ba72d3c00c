#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "sessiond/sandbox/namespace/jail.hpp"
#include "sessiond/unique_fd.hpp"
#include "../spawn_actions.hpp"

namespace sessiond {

namespace {

[[noreturn]] void throwErrno(int err, const std::string& what) {
    throw std::system_error(err, std::generic_category(), what);
}


struct SpawnAttr {
    posix_spawnattr_t attr;
    SpawnAttr() { posix_spawnattr_init(&attr); }
    ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
};

// Waits (bounded) for a process this object already signalled, then reaps it.
bool waitForExit(int pidfd, pid_t pid, int timeoutMs, int* status) {
    pollfd pfd{pidfd, POLLIN, 0};
    while (::poll(&pfd, 1, timeoutMs) < 0 && errno == EINTR) {
    }
    return ::waitpid(pid, status, WNOHANG) == pid;
}

}  // namespace

std::unique_ptr<JailedProcess> JailedProcess::spawn(const std::filesystem::path& nsinitPath, const JailSpec& spec,
                                                    const std::map<int, int>& fdsToPass) {
    // Every source is first duplicated above all target numbers, so placing
    // one fd at its target can never overwrite another that is still to be
    // placed (e.g. {3->4, 4->3}). The copies are close-on-exec.
    int firstFree = 3;
    for (const auto& [from, to] : fdsToPass) firstFree = std::max({firstFree, from + 1, to + 1});
    SpawnActions fa;
    // The spec reaches nsinit on its stdin, not in argv: the namespace's pid 1
    // is a copy of nsinit, and the sandbox must not read host paths and
    // cgroup names from /proc/1/cmdline.
    const std::string specJson = spec.toJson().dump();
    UniqueFd memfd(static_cast<int>(::syscall(SYS_memfd_create, "sessiond-jail-spec", MFD_CLOEXEC)));
    if (memfd.get() < 0) throwErrno(errno, "JailedProcess: memfd_create");
    // Above every target number, like the copies below.
    UniqueFd specFd(::fcntl(memfd.get(), F_DUPFD_CLOEXEC, firstFree));
    if (specFd.get() < 0) throwErrno(errno, "JailedProcess: dup spec fd");
    if (::write(specFd.get(), specJson.data(), specJson.size()) != static_cast<ssize_t>(specJson.size()))
        throwErrno(errno, "JailedProcess: write spec");
    if (::lseek(specFd.get(), 0, SEEK_SET) != 0) throwErrno(errno, "JailedProcess: lseek spec");
    if (int rc = posix_spawn_file_actions_adddup2(&fa.actions, specFd.get(), STDIN_FILENO))
        throwErrno(rc, "JailedProcess: posix_spawn_file_actions_adddup2");

    std::vector<UniqueFd> copies;
    for (const auto& [from, to] : fdsToPass) {
        UniqueFd copy(::fcntl(from, F_DUPFD_CLOEXEC, firstFree));
        if (copy.get() < 0) throwErrno(errno, "JailedProcess: dup fd " + std::to_string(from));
        if (int rc = posix_spawn_file_actions_adddup2(&fa.actions, copy.get(), to))
            throwErrno(rc, "JailedProcess: posix_spawn_file_actions_adddup2");
        copies.push_back(std::move(copy));
    }

    // The daemon's signal mask and ignored signals must not leak into the
    // sandbox; its own session keeps terminal signals meant for the daemon
    // away from sandboxes.
    SpawnAttr sa;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&sa.attr, &none);
    posix_spawnattr_setsigdefault(&sa.attr, &all);
    posix_spawnattr_setflags(&sa.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);

    const std::string path = nsinitPath.string();
    char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
    char* envp[] = {nullptr};
    pid_t pid = -1;
    // posix_spawn (vfork-like in glibc) is safe in a multi-threaded process,
    // unlike fork followed by arbitrary code.
    if (int rc = posix_spawn(&pid, path.c_str(), &fa.actions, &sa.attr, argv, envp))
        throwErrno(rc, "JailedProcess: posix_spawn " + path);

    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) {
        const int err = errno;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        throwErrno(err, "JailedProcess: pidfd_open");
    }
    return std::unique_ptr<JailedProcess>(new JailedProcess(pid, pidfd));
}

JailedProcess::~JailedProcess() {
    if (!reaped_) {
        // SIGTERM first: nsinit then kills the namespace's pid 1 and reaps it
        // itself, so no zombie is left for the host's init to collect.
        ::syscall(SYS_pidfd_send_signal, pidfd_, SIGTERM, nullptr, 0);
        reaped_ = waitForExit(pidfd_, pid_, 2000, nullptr);
        if (!reaped_) {
            kill();
            reaped_ = waitForExit(pidfd_, pid_, 5000, nullptr);
        }
        if (!reaped_) {
            // Stuck in the kernel (uninterruptible sleep): reap it whenever it
            // finally dies rather than block the daemon or leave a zombie.
            spdlog::warn("sessiond-nsinit pid {} did not exit 7 s after SIGTERM and SIGKILL; reaping it in the background",
                         pid_);
            std::thread([pid = pid_] { ::waitpid(pid, nullptr, 0); }).detach();
        }
    }
    ::close(pidfd_);
}

pid_t JailedProcess::pid() const { return pid_; }

int JailedProcess::pidfd() const { return pidfd_; }

bool JailedProcess::tryReap(int* status) {
    if (!reaped_) {
        int st = 0;
        pid_t r;
        do r = ::waitpid(pid_, &st, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r != pid_) return false;
        reaped_ = true;
        status_ = st;
    }
    if (status) *status = status_;
    return true;
}

void JailedProcess::kill() {
    // Through the pidfd: the pid may not be reused under us.
    if (!reaped_) ::syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
}

}  // namespace sessiond
