#pragma once
// Steps of sessiond-nsinit, one file per kernel concern. nsinit is a
// short-lived single-threaded helper: any failure prints one line naming the
// step and exits 125; the kernel then releases whatever the process held
// (fds, and the private namespaces with every mount made in them).

#include <sched.h>
#include <sys/types.h>

#include <string>
#include <cstdint>
#include <utility>
#include <vector>

#include "sessiond/sandbox/namespace/jail.hpp"
#include "sessiond/unique_fd.hpp"

namespace sessiond::nsinit {

inline constexpr int kFailureExit = 125;

// "sessiond-nsinit: <step>: <strerror(errno)>", then exit 125.
[[noreturn]] void die(const std::string& step);
// Same, with an explicit reason instead of errno.
[[noreturn]] void fail(const std::string& step, const std::string& reason);

using sessiond::UniqueFd;

// fds.cpp
void closeFdsExcept(const std::vector<int>& keep);
void closeFds(const std::vector<int>& fds);

// cgroup.cpp
void joinCgroups(const JailSpec& spec);

// rlimits.cpp
void applyRlimits(const JailSpec& spec);

// user.cpp
void writeIdMaps(pid_t child, std::uint32_t hostBase);
void becomeNamespaceRoot();
void dropToUser(std::uint32_t uid, std::uint32_t gid);

// mounts.cpp
void buildRoot(const JailSpec& spec);
void mountSessionDirs(const JailSpec& spec);

// net.cpp
void bringUpLoopback();
void configureInterface(const JailNetwork& network);
void allowAllPortsUnprivileged();

// seccomp.cpp
void installSeccompFilter();
// Builds the filter now, so that processes forked later only load it.
void prepareSeccompFilter();

// command.cpp: the sandboxed command, forked by the namespace's pid 1.
// Leaves this process as the command will run: own session, only the kept
// fds, the sandbox's uid without capabilities, the seccomp filter.
void becomeCommand(const JailSpec& spec);
[[noreturn]] void runCommand(const JailSpec& spec);

// init.cpp: pid 1 of the sandbox's pid namespace (and all of sessiond-reap,
// reap_main.cpp). Exits with the command's code once it exits or, with
// `untilLastChild`, once no child is left.
[[noreturn]] void reapUntilExit(pid_t command, bool untilLastChild = false);
// Exit code for a wait status: the exit code, or 128 + signal.
int exitCodeOf(int status);

// session.cpp: a session forked from a pool's zygote.
inline constexpr unsigned long kSessionNamespaces = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID;
void enterSession(const JailSpec& spec);

// child.cpp: the cloned child, from the sync pipe to the command's exit.
[[noreturn]] void runNamespaceChild(const JailSpec& spec, UniqueFd syncRead);

}  // namespace sessiond::nsinit
