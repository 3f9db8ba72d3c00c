#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "nsinit.hpp"

namespace sessiond::nsinit {

// Joining before clone puts nsinit and, by inheritance, every process of the
// sandbox into the cgroup: nothing can start outside the limits.
void joinCgroups(const JailSpec& spec) {
    const std::string pid = std::to_string(getpid());
    for (const auto& file : spec.cgroupProcsFiles) {
        UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
        if (fd.get() < 0) die("join cgroup " + file.string());
        if (::write(fd.get(), pid.data(), pid.size()) != static_cast<ssize_t>(pid.size()))
            die("join cgroup " + file.string());
    }
}

}  // namespace sessiond::nsinit
