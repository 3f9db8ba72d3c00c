#include <cmath>

#include <spdlog/spdlog.h>

#include "cgroup_internal.hpp"

// cgroup v1: one hierarchy per controller, e.g. /sys/fs/cgroup/memory. The
// sandbox gets <own>/<group>/<leaf> in each, <own> being this process's
// cgroup there (the root on most hosts; a container's or service's cgroup
// otherwise, which keeps sandboxes inside the daemon's own limits). v1 has
// no rule against processes in inner cgroups, so nothing needs moving.

namespace sessiond {

namespace fs = std::filesystem;

namespace {

void warnAbsent(const char* controller, const char* limit) {
    spdlog::warn("cgroup v1: no {} controller mounted; the sandbox {} limit is not enforced", controller, limit);
}

}  // namespace

std::unique_ptr<Cgroup> CgroupInternals::createV1(const std::map<std::string, fs::path>& own,
                                                  const std::string& group, const std::string& leaf,
                                                  const CgroupLimits& limits) {
    cgroupfs::checkName("group", group);
    cgroupfs::checkName("leaf", leaf);
    auto cg = make(1);  // before the lock, see createV2
    const std::lock_guard lock(cgroupfs::groupDirMutex());
    std::map<std::string, fs::path> leafOf;  // controller -> its leaf directory
    std::vector<fs::path> procs;
    for (const auto& [controller, ownDir] : own) {
        const fs::path dir = ownDir / group / leaf;
        // Co-mounted controllers (cpu,cpuacct) share one directory.
        bool known = false;
        for (const auto& [c, d] : leafOf) known = known || d == dir;
        if (!known) {
            cgroupfs::makeDir(ownDir / group, false);
            cgroupfs::makeDir(dir, true);
            adopt(*cg, dir);  // from here on the destructor removes it
            procs.push_back(dir / "cgroup.procs");
        }
        leafOf[controller] = dir;
    }
    if (leafOf.empty()) throw std::runtime_error("cgroup v1: none of the memory, pids, cpu controllers is mounted");

    if (auto it = leafOf.find("memory"); it != leafOf.end()) {
        setMemoryDir(*cg, it->second);
        if (limits.memoryBytes > 0) {
            const std::string bytes = std::to_string(limits.memoryBytes);
            cgroupfs::writeFile(it->second / "memory.limit_in_bytes", bytes);
            // Memory plus swap: otherwise the sandbox could spill into swap.
            if (fs::exists(it->second / "memory.memsw.limit_in_bytes"))
                cgroupfs::writeFile(it->second / "memory.memsw.limit_in_bytes", bytes);
        }
    } else if (limits.memoryBytes > 0) {
        warnAbsent("memory", "memory");
    }
    if (auto it = leafOf.find("pids"); it != leafOf.end()) {
        setPidsDir(*cg, it->second);
        if (limits.pids > 0) cgroupfs::writeFile(it->second / "pids.max", std::to_string(limits.pids));
    } else if (limits.pids > 0) {
        warnAbsent("pids", "process count");
    }
    if (auto it = leafOf.find("cpu"); it != leafOf.end()) {
        setCpuDir(*cg, it->second);
        if (limits.cpus > 0) {
            constexpr long period = 100000;
            const long quota = std::max(1000L, std::lround(limits.cpus * period));
            cgroupfs::writeFile(it->second / "cpu.cfs_period_us", std::to_string(period));
            cgroupfs::writeFile(it->second / "cpu.cfs_quota_us", std::to_string(quota));
        }
    } else if (limits.cpus > 0) {
        warnAbsent("cpu", "CPU");
    }
    setProcsFiles(*cg, std::move(procs));
    return cg;
}

std::size_t CgroupInternals::removeLeftoversV1(const std::map<std::string, fs::path>& own,
                                               const std::string& group) {
    cgroupfs::checkName("group", group);
    std::vector<fs::path> groupDirs;
    for (const auto& [controller, ownDir] : own) groupDirs.push_back(ownDir / group);
    return cgroupfs::removeLeaves(groupDirs);
}

}  // namespace sessiond
