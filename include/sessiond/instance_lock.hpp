#pragma once
// One daemon per cgroupName: at start a daemon removes whatever carries its
// name from an earlier run (cgroups, processes, VMs, runtime files), so a
// second daemon started by mistake with the same name would destroy the
// first one's live sessions before failing to listen. The lock is taken
// before anything is removed, and held until the daemon exits; the kernel
// releases it when the process dies, however it dies.

#include <filesystem>
#include <string>

#include "sessiond/unique_fd.hpp"

namespace sessiond {

class InstanceLock {
public:
    static constexpr const char* kDefaultDirectory = "/run/sessiond";

    // Locks `<directory>/<name>.lock` (making the directory if missing).
    // Throws std::runtime_error, naming the holder's pid, when another
    // process holds it.
    InstanceLock(const std::filesystem::path& directory, const std::string& name);
    ~InstanceLock();  // removes the file, then releases the lock
    InstanceLock(const InstanceLock&) = delete;
    InstanceLock& operator=(const InstanceLock&) = delete;

    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
    UniqueFd fd_;
};

}  // namespace sessiond
