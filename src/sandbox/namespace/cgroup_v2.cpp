#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <set>
#include <sstream>
#include <system_error>

#include <spdlog/spdlog.h>

#include "cgroup_internal.hpp"

// cgroup v2: one unified hierarchy. The sandbox gets <base>/<group>/<leaf>,
// <base> being this process's own cgroup, with memory, pids and cpu enabled
// in the subtree_control of <base> and <base>/<group>.
//
// v2 forbids enabling controllers for the children of a cgroup that itself
// holds processes (the "no internal processes" rule; only the root is
// exempt). A daemon started by systemd or in a container usually sits in
// such a cgroup. When enabling fails with EBUSY, the daemon moves itself
// (all its threads) into the sibling leaf <base>/<group>-supervisor and
// retries; later calls recognise that leaf and keep using <base>. If other
// processes share <base>, that still fails and create() says so.

namespace sessiond {

namespace fs = std::filesystem;

namespace {

bool hasWord(const std::string& text, const std::string& word) {
    std::istringstream in(text);
    std::string w;
    while (in >> w)
        if (w == word) return true;
    return false;
}

// True when it had to enable it.
bool enable(const fs::path& dir, const std::string& controller) {
    if (hasWord(cgroupfs::readFile(dir / "cgroup.subtree_control").value_or(""), controller)) return false;
    cgroupfs::writeFile(dir / "cgroup.subtree_control", "+" + controller);
    return true;
}

// The controllers this process enabled in <base>, which it disables again
// before it moves back there (releaseSupervisorV2). Guarded by groupDirMutex.
std::set<std::string>& enabledInBase() {
    static std::set<std::string> controllers;
    return controllers;
}

}  // namespace

fs::path CgroupInternals::v2Base(const fs::path& own, const std::string& group) {
    return own.filename() == group + "-supervisor" ? own.parent_path() : own;
}

std::unique_ptr<Cgroup> CgroupInternals::createV2(const fs::path& own, const std::string& group,
                                                  const std::string& leaf, const CgroupLimits& limits,
                                                  const std::vector<std::string>& controllers) {
    cgroupfs::checkName("group", group);
    cgroupfs::checkName("leaf", leaf);
    const fs::path base = v2Base(own, group);
    const auto available = cgroupfs::readFile(base / "cgroup.controllers");
    if (!available)
        throw std::runtime_error("cgroup v2: cannot read " + (base / "cgroup.controllers").string());
    std::vector<std::string> usable;
    for (const auto& c : controllers) {
        if (hasWord(*available, c)) {
            usable.push_back(c);
            continue;
        }
        const bool limited = (c == "memory" && limits.memoryBytes > 0) || (c == "pids" && limits.pids > 0) ||
                             (c == "cpu" && limits.cpus > 0);
        if (limited)
            spdlog::warn("cgroup v2: controller {} is not delegated to {}; the sandbox's {} limit is not enforced",
                         c, base.string(), c);
    }

    // Declared before the lock: on an exception its destructor, which takes
    // the lock too, runs after the lock is released.
    auto cg = make(2);
    const std::lock_guard lock(cgroupfs::groupDirMutex());
    const fs::path groupDir = base / group;
    cgroupfs::makeDir(groupDir, false);
    for (const auto& c : usable) {
        try {
            if (enable(base, c)) enabledInBase().insert(c);
        } catch (const std::system_error& e) {
            if (e.code().value() != EBUSY) throw;
            const fs::path supervisor = base / (group + "-supervisor");
            cgroupfs::makeDir(supervisor, false);
            cgroupfs::writeFile(supervisor / "cgroup.procs", std::to_string(::getpid()));
            spdlog::info("cgroup v2: moved the daemon into {} so {} can delegate controllers", supervisor.string(),
                         base.string());
            try {
                if (enable(base, c)) enabledInBase().insert(c);
            } catch (const std::system_error& again) {
                throw std::runtime_error(std::string(again.what()) + " (other processes live in " + base.string() +
                                         "; run the daemon in a cgroup of its own)");
            }
        }
        enable(groupDir, c);
    }

    const fs::path dir = groupDir / leaf;
    cgroupfs::makeDir(dir, true);
    adopt(*cg, dir);
    const auto has = [&](const char* c) { return std::find(usable.begin(), usable.end(), c) != usable.end(); };
    if (has("memory")) {
        setMemoryDir(*cg, dir);
        if (limits.memoryBytes > 0) {
            cgroupfs::writeFile(dir / "memory.max", std::to_string(limits.memoryBytes));
            // Swap would let the sandbox exceed memory.max.
            if (fs::exists(dir / "memory.swap.max")) cgroupfs::writeFile(dir / "memory.swap.max", "0");
        }
    }
    if (has("pids")) {
        setPidsDir(*cg, dir);
        if (limits.pids > 0) cgroupfs::writeFile(dir / "pids.max", std::to_string(limits.pids));
    }
    if (has("cpu")) {
        setCpuDir(*cg, dir);
        if (limits.cpus > 0) {
            constexpr long period = 100000;
            const long quota = std::max(1000L, std::lround(limits.cpus * period));
            cgroupfs::writeFile(dir / "cpu.max", std::to_string(quota) + " " + std::to_string(period));
        }
    }
    setProcsFiles(*cg, {dir / "cgroup.procs"});
    return cg;
}

std::size_t CgroupInternals::removeLeftoversV2(const fs::path& own, const std::string& group) {
    cgroupfs::checkName("group", group);
    const fs::path supervisor = v2Base(own, group) / (group + "-supervisor");
    // An earlier daemon's, empty since it ended (a live one's refuses rmdir).
    if (own != supervisor && ::rmdir(supervisor.c_str()) == 0)
        spdlog::info("cgroup v2: removed {}, left by an earlier run", supervisor.string());
    return cgroupfs::removeLeaves({v2Base(own, group) / group});
}

bool CgroupInternals::releaseSupervisorV2(const fs::path& own, const std::string& group) {
    if (own.filename() != group + "-supervisor") return false;
    const fs::path base = own.parent_path();
    const std::lock_guard lock(cgroupfs::groupDirMutex());
    if (fs::exists(base / group)) return false;  // sandboxes remain: they need the controllers
    try {
        // The "no internal processes" rule again: <base> takes a process
        // back only once it delegates no controller.
        for (const auto& c : enabledInBase()) cgroupfs::writeFile(base / "cgroup.subtree_control", "-" + c);
        enabledInBase().clear();
        cgroupfs::writeFile(base / "cgroup.procs", std::to_string(::getpid()));
    } catch (const std::exception& e) {
        spdlog::info("cgroup v2: staying in {}: {}", own.string(), e.what());
        return false;
    }
    return cgroupfs::removeDir(own, std::chrono::milliseconds(2000));
}

}  // namespace sessiond
