#include "net_namespace.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

namespace sessiond {

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

}  // namespace

UniqueFd openNetworkNamespace(pid_t pid) {
    UniqueFd fd(::open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) fail("open the network namespace of process " + std::to_string(pid));
    return fd;
}

UniqueFd tcpSocketInNetworkNamespace(int netns) {
    // setns() moves only the calling thread; it moves back before anything
    // else can run on it. The daemon's own namespace, where it returns, is
    // opened once: this runs for every forwarded request and probe.
    static const UniqueFd own(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!own) fail("open the daemon's network namespace");
    if (::setns(netns, CLONE_NEWNET) != 0) fail("enter the sandbox's network namespace");
    UniqueFd socket(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    const int socketErrno = errno;
    if (::setns(own.get(), CLONE_NEWNET) != 0) {
        // A thread stuck in a sandbox's namespace would serve everything
        // after this from there: nothing is safe to do but stop.
        std::perror("sessiond: cannot return to the daemon's network namespace");
        std::abort();
    }
    errno = socketErrno;
    if (!socket) fail("socket in the sandbox's network namespace");
    return socket;
}

pid_t firstChildOf(pid_t pid) {
    const std::string self = std::to_string(pid);
    std::ifstream children("/proc/" + self + "/task/" + self + "/children");
    long child = 0;
    return children >> child ? static_cast<pid_t>(child) : 0;
}

}  // namespace sessiond
