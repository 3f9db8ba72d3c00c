#pragma once
// Looks for anything a sandbox could leave on the host: jail processes, agent
// processes, cgroup directories.

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "walk.hpp"

namespace sessiond::testing {

// Host pids whose command line or cgroup membership mentions `needle`.
inline std::vector<int> processesMatching(const std::string& needle) {
    std::vector<int> pids;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        std::string name = entry.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string cmdline, cgroups;
        try {
            std::ifstream in(entry.path() / "cmdline", std::ios::binary);
            cmdline.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
            std::ifstream cgroupFile(entry.path() / "cgroup");
            cgroups.assign(std::istreambuf_iterator<char>(cgroupFile), std::istreambuf_iterator<char>());
        } catch (const std::ios_base::failure&) {
            continue;  // it exited while being read (ESRCH)
        }
        for (char& c : cmdline)
            if (c == '\0') c = ' ';
        bool matches = cmdline.find(needle) != std::string::npos || cgroups.find(needle) != std::string::npos;
        if (matches && std::stoi(name) != getpid()) pids.push_back(std::stoi(name));
    }
    return pids;
}

// Cgroup directories named `group` in any hierarchy, with what they still contain.
inline std::vector<std::string> cgroupsNamed(const std::string& group) {
    std::vector<std::string> found;
    walkTree("/sys/fs/cgroup", [&](const std::filesystem::directory_entry& entry) {
        std::error_code ec;
        if (entry.is_directory(ec) && entry.path().filename().string() == group) found.push_back(entry.path().string());
    });
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

namespace sessiond::testing {

inline unsigned long long inodeOf(const std::string& path) {
    struct stat info {};
    return ::stat(path.c_str(), &info) == 0 ? info.st_ino : 0;
}

// A process by pid and start time (field 22 of /proc/PID/stat), so a pid the
// kernel reused is not taken for the process that had it. A zombie has none.
struct ProcessIdentity {
    int pid = 0;
    unsigned long long startTime = 0;
    bool operator<(const ProcessIdentity& other) const {
        return pid != other.pid ? pid < other.pid : startTime < other.startTime;
    }
};

inline std::optional<ProcessIdentity> identityOf(int pid) {
    std::string stat;
    try {
        std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
        stat.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } catch (const std::ios_base::failure&) {
        return std::nullopt;  // it exited while being read
    }
    const auto close = stat.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream fields(stat.substr(close + 2));
    std::string field;
    for (int i = 3; fields >> field; ++i) {
        if (i == 3 && field == "Z") return std::nullopt;  // ended, its parent has yet to reap it
        if (i == 22) return ProcessIdentity{pid, std::stoull(field)};
    }
    return std::nullopt;
}

// Which of `processes` still run.
inline std::vector<ProcessIdentity> stillRunning(const std::set<ProcessIdentity>& processes) {
    std::vector<ProcessIdentity> alive;
    for (const auto& process : processes) {
        auto now = identityOf(process.pid);
        if (now && now->startTime == process.startTime) alive.push_back(process);
    }
    return alive;
}

// Every cgroup below those named `group` (the sandboxes' and the zygotes'),
// by path and inode (cgroupfs does not hand a removed cgroup's inode
// number to the next one at once, so a same-named cgroup made later differs).
inline std::set<std::pair<std::string, unsigned long long>> cgroupTree(const std::string& group) {
    std::set<std::pair<std::string, unsigned long long>> tree;
    for (const auto& top : cgroupsNamed(group)) {
        walkTree(top, [&](const std::filesystem::directory_entry& entry) {
            std::error_code ec;
            if (!entry.is_directory(ec)) return;
            // A cgroup removed while the tree is read has no inode left to compare.
            if (const auto inode = inodeOf(entry.path().string())) tree.insert({entry.path().string(), inode});
        });
    }
    return tree;
}

// The host's mount table as this process sees it, one line per mount
// without its (reused) mount id.
inline std::multiset<std::string> mountTable() {
    std::multiset<std::string> mounts;
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::string id, parent, rest;
        fields >> id >> parent;
        std::getline(fields, rest);
        mounts.insert(rest);
    }
    return mounts;
}

// What a process holds: resident memory, open descriptors, threads.
struct Footprint {
    long rssKiB = 0;
    long fds = 0;
    long threads = 0;
};

inline Footprint footprintOf(int pid) {
    Footprint f;
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmRSS:", 0) == 0) f.rssKiB = std::stol(line.substr(6));
        if (line.rfind("Threads:", 0) == 0) f.threads = std::stol(line.substr(8));
    }
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        ++f.fds;
    return f;
}

}  // namespace sessiond::testing
