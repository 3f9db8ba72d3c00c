#include <unistd.h>

#include <algorithm>
#include <climits>

#include "nsinit.hpp"

namespace sessiond::nsinit {

// The daemon is multi-threaded, so fds another thread opened without
// O_CLOEXEC can leak into posix_spawn; nothing but stdio and the fds the spec
// names may reach the sandbox.
void closeFdsExcept(const std::vector<int>& keep) {
    std::vector<int> fds(keep);
    fds.push_back(0);
    fds.push_back(1);
    fds.push_back(2);
    std::sort(fds.begin(), fds.end());
    fds.erase(std::unique(fds.begin(), fds.end()), fds.end());
    unsigned first = 0;
    for (int fd : fds) {
        if (fd < 0) continue;
        if (static_cast<unsigned>(fd) > first && close_range(first, fd - 1, 0) != 0) die("close_range");
        first = static_cast<unsigned>(fd) + 1;
    }
    if (close_range(first, UINT_MAX, 0) != 0) die("close_range");
}

void closeFds(const std::vector<int>& fds) {
    for (int fd : fds)
        if (fd > 2) ::close(fd);
}

}  // namespace sessiond::nsinit
