#include <sys/resource.h>

#include "nsinit.hpp"

namespace sessiond::nsinit {

// Applied by nsinit itself while it is still root of the host's user
// namespace: raising a hard limit needs CAP_SYS_RESOURCE there, which the
// sandbox never has. The command inherits the limits through fork and exec.
void applyRlimits(const JailSpec& spec) {
    const rlimit files{spec.openFiles, spec.openFiles};
    if (setrlimit(RLIMIT_NOFILE, &files) != 0) die("setrlimit RLIMIT_NOFILE");
    const rlimit core{0, 0};
    if (setrlimit(RLIMIT_CORE, &core) != 0) die("setrlimit RLIMIT_CORE");
}

}  // namespace sessiond::nsinit
