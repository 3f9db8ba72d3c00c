#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "nsinit.hpp"

namespace sessiond::nsinit {

void becomeCommand(const JailSpec& spec) {
    // Its own session: no controlling terminal shared with the daemon.
    if (::setsid() < 0) die("setsid");
    closeFdsExcept(spec.keepFds);
    if (std::find(spec.keepFds.begin(), spec.keepFds.end(), 0) == spec.keepFds.end()) {
        UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (null.get() < 0) die("open /dev/null");
        if (::dup2(null.get(), 0) < 0) die("dup2 stdin");
    }
    // A zygote keeps namespace root's capabilities, which building its
    // sessions' namespaces needs; each session drops them for itself.
    if (!spec.zygote) dropToUser(spec.uid, spec.gid);
    if (::chdir(spec.workingDirectory.c_str()) != 0) die("chdir " + spec.workingDirectory);
    if (spec.seccomp && !spec.zygote) installSeccompFilter();
}

void runCommand(const JailSpec& spec) {
    becomeCommand(spec);

    std::vector<char*> argv;
    for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> envStrings;
    for (const auto& [k, v] : spec.env) envStrings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& e : envStrings) envp.push_back(e.data());
    envp.push_back(nullptr);
    ::execve(argv[0], argv.data(), envp.data());
    die("execve " + spec.argv[0]);
}

}  // namespace sessiond::nsinit
