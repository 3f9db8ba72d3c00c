#include <unistd.h>

#include "nsinit.hpp"

namespace sessiond::nsinit {

// Runs in the session's pid 1, inside the namespaces it unshared from its
// zygote's (kSessionNamespaces): the user namespace and the read-only root
// stay shared with the zygote, everything a session can write or see of
// other processes is its own.
void enterSession(const JailSpec& spec) {
    mountSessionDirs(spec);
    if (::sethostname(spec.hostname.data(), spec.hostname.size()) != 0) die("sethostname");
    bringUpLoopback();
    // Only lowering: the zygote's jail set the highest limit a pool may ask for.
    applyRlimits(spec);
}

}  // namespace sessiond::nsinit
