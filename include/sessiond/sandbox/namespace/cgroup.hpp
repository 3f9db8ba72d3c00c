#pragma once
// A per-sandbox cgroup with memory, pids and CPU limits, on cgroup v2 (unified)
// or v1 (one directory per controller). The object owns the directories: its
// destructor kills every process still inside and removes them.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "sessiond/unique_fd.hpp"

namespace sessiond {

// A cgroup's share of contended CPU time against its siblings. A sandbox
// that is starting runs in the background, at a tenth of a running one's
// weight, so a burst of refills takes little from sessions running code yet
// still progresses on a saturated host (docs/architecture.md).
enum class CpuWeight { Normal, Background };

struct CgroupLimits {
    double cpus = 1.0;
    std::uint64_t memoryBytes = 0;  // 0 = no limit
    std::uint64_t pids = 0;         // 0 = no limit
    CpuWeight weight = CpuWeight::Normal;
};

class Cgroup {
public:
    // `group` names the daemon's parent cgroup (Config::cgroupName); `leaf` the
    // sandbox. Throws std::runtime_error when the hierarchy cannot be used.
    static std::unique_ptr<Cgroup> create(const std::string& group, const std::string& leaf,
                                          const CgroupLimits& limits);

    // Removes sandbox cgroups under `group` left by an earlier run (killing
    // their processes first). Returns how many were removed.
    static std::size_t removeLeftovers(const std::string& group);

    // On cgroup v2, a daemon that had to move itself into <group>-supervisor
    // (cgroup_v2.cpp) moves back and removes it, once its sandboxes are
    // gone, so a stopped daemon leaves no cgroup behind. Nothing otherwise.
    static void releaseSupervisor(const std::string& group);

    ~Cgroup();
    Cgroup(const Cgroup&) = delete;
    Cgroup& operator=(const Cgroup&) = delete;

    // The cgroup.procs files a process writes its pid into to join.
    const std::vector<std::filesystem::path>& procsFiles() const;

    // Moves a running process in (its later children follow it). Throws
    // std::runtime_error naming the file that refused it.
    void attach(pid_t pid);

    // SIGKILLs every process in the cgroup and waits (bounded) until it is empty.
    void killAll();

    // Does nothing without a cpu controller. Throws std::runtime_error.
    void setCpuWeight(CpuWeight weight);

    // Current memory use in bytes, and whether the memory limit was hit (OOM kill count grew).
    std::uint64_t memoryCurrent() const;
    std::uint64_t oomKills() const;
    // How often a fork or clone failed at the pids limit (pids.events "max"); 0 without a pids controller.
    std::uint64_t pidsLimitHits() const;

private:
    friend struct CgroupInternals;  // builds instances for one hierarchy version
    Cgroup() = default;
    int version_ = 0;
    std::vector<std::filesystem::path> dirs_;  // the leaf directories this object created
    std::vector<std::filesystem::path> procsFiles_;
    std::filesystem::path memoryDir_;  // empty when no memory controller is available
    std::filesystem::path cpuDir_;     // empty when no cpu controller is available
    std::filesystem::path pidsDir_;    // empty when no pids controller is available
    // The counter files are read twice per execution: kept open, a read is
    // one pread instead of a path walk, an open and a close.
    mutable UniqueFd oomCounter_;
    mutable UniqueFd pidsCounter_;
};

}  // namespace sessiond
