#pragma once
// A directory walk for trees that other processes change while it runs
// (cgroupfs while other tests make and remove cgroups, a daemon's runtime
// directory while its VMs start and stop). std::filesystem's recursive
// iterator throws from its increment when an entry vanishes; here a vanished
// entry is skipped.

#include <filesystem>
#include <functional>
#include <system_error>

namespace sessiond::testing {

// Calls `visit` with every entry below `root` (not `root` itself), each
// directory before what it holds. Symbolic links are visited, not entered.
inline void walkTree(const std::filesystem::path& root,
                     const std::function<void(const std::filesystem::directory_entry&)>& visit) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
    for (const fs::directory_iterator end; !ec && it != end; it.increment(ec)) {
        const fs::directory_entry entry = *it;
        visit(entry);
        std::error_code typeError;
        if (entry.is_directory(typeError) && !entry.is_symlink(typeError)) walkTree(entry.path(), visit);
    }
}

}  // namespace sessiond::testing
