#pragma once
// Looks for anything a sandbox could leave on the host: jail processes, agent
// processes, cgroup directories.

#include <dirent.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <fstream>
#include <string>
#include <vector>

namespace sessiond::testing {

// Host pids whose command line or cgroup membership mentions `needle`.
inline std::vector<int> processesMatching(const std::string& needle) {
    std::vector<int> pids;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        std::string name = entry.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream in(entry.path() / "cmdline", std::ios::binary);
        std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        for (char& c : cmdline)
            if (c == '\0') c = ' ';
        std::ifstream cgroupFile(entry.path() / "cgroup");
        std::string cgroups((std::istreambuf_iterator<char>(cgroupFile)), std::istreambuf_iterator<char>());
        bool matches = cmdline.find(needle) != std::string::npos || cgroups.find(needle) != std::string::npos;
        if (matches && std::stoi(name) != getpid()) pids.push_back(std::stoi(name));
    }
    return pids;
}

// Cgroup directories named `group` in any hierarchy, with what they still contain.
inline std::vector<std::string> cgroupsNamed(const std::string& group) {
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(
             "/sys/fs/cgroup", std::filesystem::directory_options::skip_permission_denied, ec)) {
        if (entry.is_directory(ec) && entry.path().filename().string() == group)
            found.push_back(entry.path().string());
    }
    return found;
}

}  // namespace sessiond::testing

namespace sessiond::testing {

// Names of the cgroups inside each `group` directory: the sandboxes' and,
// with `zygotes`, the pools' zygotes' ("zygote.N").
inline std::set<std::string> sandboxCgroups(const std::string& group, bool zygotes = false) {
    std::set<std::string> leaves;
    std::error_code ec;
    for (const auto& dir : cgroupsNamed(group))
        for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
            const std::string name = entry.path().filename().string();
            if (entry.is_directory(ec) && (zygotes || name.rfind("zygote.", 0) != 0)) leaves.insert(name);
        }
    return leaves;
}

}  // namespace sessiond::testing
