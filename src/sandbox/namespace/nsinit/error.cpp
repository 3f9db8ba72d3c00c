#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "nsinit.hpp"

namespace sessiond::nsinit {

void die(const std::string& step) { fail(step, std::strerror(errno)); }

void fail(const std::string& step, const std::string& reason) {
    std::fprintf(stderr, "sessiond-nsinit: %s: %s\n", step.c_str(), reason.c_str());
    std::fflush(stderr);
    // _exit: after fork/clone there is nothing (atexit, static destructors)
    // in this process worth running, and a parent's buffers must not flush twice.
    _exit(kFailureExit);
}

}  // namespace sessiond::nsinit
