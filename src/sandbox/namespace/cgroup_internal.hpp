#pragma once
// Shared by cgroup.cpp, cgroup_v1.cpp and cgroup_v2.cpp; the tests use it to
// run one hierarchy version's code on a chosen directory.

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sessiond/sandbox/namespace/cgroup.hpp"

namespace sessiond {

// Where this process sits in the mounted cgroup hierarchies.
struct CgroupHierarchy {
    int version = 0;                                         // 1 or 2
    std::filesystem::path v2Own;                             // own cgroup directory (cgroup2)
    std::map<std::string, std::filesystem::path> v1Own;      // controller -> own cgroup directory
};

struct CgroupInternals {
    // Reads /proc/self/mountinfo and /proc/self/cgroup. Throws when neither
    // a cgroup2 mount nor a v1 memory/pids/cpu mount exists.
    static CgroupHierarchy detect();

    static std::unique_ptr<Cgroup> createV1(const std::map<std::string, std::filesystem::path>& own,
                                            const std::string& group, const std::string& leaf,
                                            const CgroupLimits& limits);
    static std::size_t removeLeftoversV1(const std::map<std::string, std::filesystem::path>& own,
                                         const std::string& group);

    // `controllers` are the ones to enable; a test passes what its host has.
    static std::unique_ptr<Cgroup> createV2(const std::filesystem::path& own, const std::string& group,
                                            const std::string& leaf, const CgroupLimits& limits,
                                            const std::vector<std::string>& controllers = {"memory", "pids",
                                                                                           "cpu"});
    static std::size_t removeLeftoversV2(const std::filesystem::path& own, const std::string& group);
    // Moves this process from <base>/<group>-supervisor back to <base> and
    // removes the supervisor cgroup, once no sandbox cgroup is left; true
    // when it did.
    static bool releaseSupervisorV2(const std::filesystem::path& own, const std::string& group);
    // The directory that holds <group> and <group>-supervisor (see cgroup_v2.cpp).
    static std::filesystem::path v2Base(const std::filesystem::path& own, const std::string& group);

    // Helpers shared by both versions.
    static std::unique_ptr<Cgroup> make(int version) {
        std::unique_ptr<Cgroup> cg(new Cgroup());
        cg->version_ = version;
        return cg;
    }
    static void adopt(Cgroup& cg, const std::filesystem::path& dir) { cg.dirs_.push_back(dir); }
    static void setProcsFiles(Cgroup& cg, std::vector<std::filesystem::path> files) {
        cg.procsFiles_ = std::move(files);
    }
    static void setMemoryDir(Cgroup& cg, const std::filesystem::path& dir) { cg.memoryDir_ = dir; }
    static void setCpuDir(Cgroup& cg, const std::filesystem::path& dir) { cg.cpuDir_ = dir; }
    static void setPidsDir(Cgroup& cg, const std::filesystem::path& dir) { cg.pidsDir_ = dir; }
};

namespace cgroupfs {

std::optional<std::string> readFile(const std::filesystem::path& file);  // nullopt if absent
void writeFile(const std::filesystem::path& file, const std::string& value);  // throws
// The number after `key` in a "key value" per line file (memory.events...),
// read through `counter`, which holds `file` open once it has been read.
std::uint64_t readKeyed(UniqueFd& counter, const std::filesystem::path& file, std::string_view key);
void checkName(const std::string& what, const std::string& name);
// Creates `dir`; an existing one is fine unless `mustBeNew`.
bool makeDir(const std::filesystem::path& dir, bool mustBeNew);
// SIGKILLs the processes listed in each dir's cgroup.procs until all are
// empty or `timeout` passes; true when empty.
bool killAllIn(const std::vector<std::filesystem::path>& dirs, std::chrono::milliseconds timeout);
// rmdir, retried while the kernel still counts exiting tasks; false on failure.
bool removeDir(const std::filesystem::path& dir, std::chrono::milliseconds timeout);
// Kills and removes every subdirectory of each group dir, then the group
// dirs if that left them empty; returns the number of distinct leaf names removed.
std::size_t removeLeaves(const std::vector<std::filesystem::path>& groupDirs);
// Held while a group directory is created up to its new leaf, and while an
// empty group directory is removed, so one sandbox's teardown never removes
// the group under another's creation.
std::mutex& groupDirMutex();

}  // namespace cgroupfs

}  // namespace sessiond
