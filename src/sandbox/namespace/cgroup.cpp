#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <spdlog/spdlog.h>

#include "cgroup_internal.hpp"
#include "sessiond/unique_fd.hpp"

namespace sessiond {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace cgroupfs {

std::optional<std::string> readFile(const fs::path& file) {
    std::ifstream in(file);
    if (!in) return std::nullopt;
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void writeFile(const fs::path& file, const std::string& value) {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "cgroup: open " + file.string());
    // One write(2) per value: the kernel parses each write on its own and
    // reports a rejected value (EBUSY, EINVAL) as that write's error.
    const bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
    const int err = errno;
    ::close(fd);
    if (!ok)
        throw std::system_error(err, std::generic_category(), "cgroup: write '" + value + "' to " + file.string());
}

std::uint64_t readKeyed(UniqueFd& counter, const fs::path& file, std::string_view key) {
    if (!counter) counter.reset(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    char buffer[4096];
    // A read at offset 0 starts a cgroup file over.
    const ssize_t n = counter ? ::pread(counter.get(), buffer, sizeof buffer, 0) : -1;
    if (n <= 0) return 0;
    std::string_view text(buffer, static_cast<std::size_t>(n));
    while (!text.empty()) {
        const auto end = text.find('\n');
        const std::string_view line = text.substr(0, end);
        if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ' ') {
            std::uint64_t value = 0;
            std::from_chars(line.data() + key.size() + 1, line.data() + line.size(), value);
            return value;
        }
        if (end == std::string_view::npos) break;
        text.remove_prefix(end + 1);
    }
    return 0;
}

void checkName(const std::string& what, const std::string& name) {
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
        throw std::invalid_argument("cgroup: invalid " + what + " name '" + name + "'");
}

bool makeDir(const fs::path& dir, bool mustBeNew) {
    if (::mkdir(dir.c_str(), 0755) == 0) return true;
    if (errno == EEXIST && !mustBeNew) return false;
    throw std::system_error(errno, std::generic_category(), "cgroup: mkdir " + dir.string());
}

namespace {

std::vector<pid_t> procsOf(const fs::path& dir) {
    std::vector<pid_t> pids;
    if (auto text = readFile(dir / "cgroup.procs")) {
        std::istringstream in(*text);
        pid_t pid;
        while (in >> pid) pids.push_back(pid);
    }
    return pids;
}

}  // namespace

bool killAllIn(const std::vector<fs::path>& dirs, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    // cgroup.kill (v2, Linux 5.14+) kills atomically, even a fork bomb.
    for (const auto& dir : dirs)
        if (fs::exists(dir / "cgroup.kill")) {
            try {
                writeFile(dir / "cgroup.kill", "1");
            } catch (const std::exception& e) {
                spdlog::warn("{}", e.what());
            }
        }
    // Otherwise, and to wait for the kill to complete: signal what is listed
    // until nothing is. A pid read here could in theory be reused by an
    // unrelated process before the kill; the window is microseconds.
    for (;;) {
        bool empty = true;
        for (const auto& dir : dirs)
            for (pid_t pid : procsOf(dir)) {
                empty = false;
                ::kill(pid, SIGKILL);
            }
        if (empty) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
}

bool removeDir(const fs::path& dir, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return true;
        if (errno != EBUSY || std::chrono::steady_clock::now() >= deadline) {
            spdlog::warn("cgroup: rmdir {}: {}", dir.string(), std::strerror(errno));
            return false;
        }
        std::this_thread::sleep_for(10ms);
    }
}

std::size_t removeLeaves(const std::vector<fs::path>& groupDirs) {
    std::set<std::string> removed;
    for (const auto& groupDir : groupDirs) {
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(groupDir, ec)) {
            if (!entry.is_directory()) continue;
            if (!killAllIn({entry.path()}, 2000ms))
                spdlog::warn("cgroup: processes survive in {}", entry.path().string());
            if (removeDir(entry.path(), 2000ms)) removed.insert(entry.path().filename());
        }
        const std::lock_guard lock(groupDirMutex());
        ::rmdir(groupDir.c_str());  // fails, as it should, while sandboxes remain
    }
    return removed.size();
}

std::mutex& groupDirMutex() {
    static std::mutex m;
    return m;
}

}  // namespace cgroupfs

namespace {

std::string unescapeMountPath(const std::string& s) {
    // mountinfo writes space, tab, newline and backslash as \ooo.
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> parts;
    std::string part;
    std::istringstream in(s);
    while (std::getline(in, part, sep)) parts.push_back(part);
    return parts;
}

struct CgroupMount {
    std::string type;     // "cgroup" or "cgroup2"
    fs::path root;        // the hierarchy path the mount shows
    fs::path mountPoint;
    std::vector<std::string> options;
};

std::vector<CgroupMount> cgroupMounts() {
    std::vector<CgroupMount> mounts;
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        const auto fields = split(line, ' ');
        std::size_t dash = 0;
        while (dash < fields.size() && fields[dash] != "-") ++dash;
        if (dash < 5 || dash + 3 >= fields.size()) continue;
        const std::string& type = fields[dash + 1];
        if (type != "cgroup" && type != "cgroup2") continue;
        mounts.push_back({type, unescapeMountPath(fields[3]), unescapeMountPath(fields[4]),
                          split(fields[dash + 3], ',')});
    }
    return mounts;
}

// /proc/self/cgroup: "<id>:<controllers>:<path>"; cgroup2 is "0::<path>".
std::map<std::string, fs::path> ownPaths() {
    std::map<std::string, fs::path> paths;
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        const auto first = line.find(':'), second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos) continue;
        const std::string controllers = line.substr(first + 1, second - first - 1);
        const fs::path path = line.substr(second + 1);
        if (controllers.empty()) paths["cgroup2"] = path;
        for (const auto& c : split(controllers, ',')) paths[c] = path;
    }
    return paths;
}

// The directory of `own` under a mount showing hierarchy path `root`.
std::optional<fs::path> ownDir(const CgroupMount& m, const fs::path& own) {
    const fs::path rel = own.lexically_relative(m.root);
    if (rel.empty() || *rel.begin() == "..") return std::nullopt;
    return rel == "." ? m.mountPoint : m.mountPoint / rel;
}

}  // namespace

CgroupHierarchy CgroupInternals::detect() {
    const auto mounts = cgroupMounts();
    const auto own = ownPaths();
    CgroupHierarchy h;
    std::optional<fs::path> v2Main, v2Other;
    for (const auto& m : mounts) {
        if (m.type == "cgroup2") {
            auto it = own.find("cgroup2");
            if (it == own.end()) continue;
            if (auto dir = ownDir(m, it->second)) (m.mountPoint == "/sys/fs/cgroup" ? v2Main : v2Other) = *dir;
            continue;
        }
        for (const auto& c : m.options) {
            if (c != "memory" && c != "pids" && c != "cpu") continue;
            auto it = own.find(c);
            if (it == own.end() || h.v1Own.count(c)) continue;
            if (auto dir = ownDir(m, it->second)) h.v1Own[c] = *dir;
        }
    }
    // A cgroup2 mount beside v1 controllers (systemd's "hybrid" layout) holds
    // no controllers; it is used only when v1 has none of ours either.
    if (v2Main) {
        h.version = 2;
        h.v2Own = *v2Main;
    } else if (!h.v1Own.empty()) {
        h.version = 1;
    } else if (v2Other) {
        h.version = 2;
        h.v2Own = *v2Other;
    } else {
        const std::string fsList = cgroupfs::readFile("/proc/filesystems").value_or("");
        throw std::runtime_error(
            fsList.find("cgroup") == std::string::npos
                ? "cgroup: the kernel has no cgroup support (/proc/filesystems)"
                : "cgroup: no usable hierarchy: mount cgroup2 on /sys/fs/cgroup, or cgroup v1 memory, pids "
                  "and cpu controllers");
    }
    return h;
}

std::unique_ptr<Cgroup> Cgroup::create(const std::string& group, const std::string& leaf,
                                       const CgroupLimits& limits) {
    // Read once: parsing mountinfo was most of a sandbox start's work on the
    // daemon's thread, and where the daemon sits does not change (a move
    // into <group>-supervisor is mapped back by v2Base).
    static const CgroupHierarchy h = CgroupInternals::detect();
    auto cg = h.version == 2 ? CgroupInternals::createV2(h.v2Own, group, leaf, limits)
                             : CgroupInternals::createV1(h.v1Own, group, leaf, limits);
    if (limits.weight != CpuWeight::Normal) cg->setCpuWeight(limits.weight);
    // Opens the counters an execution reads here, where cgroups are made,
    // rather than in a session's first request (each open walks the path).
    cg->oomKills();
    cg->pidsLimitHits();
    return cg;
}

std::size_t Cgroup::removeLeftovers(const std::string& group) {
    const auto h = CgroupInternals::detect();
    return h.version == 2 ? CgroupInternals::removeLeftoversV2(h.v2Own, group)
                          : CgroupInternals::removeLeftoversV1(h.v1Own, group);
}

void Cgroup::releaseSupervisor(const std::string& group) {
    try {
        const auto h = CgroupInternals::detect();
        if (h.version == 2) CgroupInternals::releaseSupervisorV2(h.v2Own, group);
    } catch (const std::exception& e) {
        spdlog::debug("cgroup: {}", e.what());
    }
}

Cgroup::~Cgroup() {
    oomCounter_.reset();
    pidsCounter_.reset();
    killAll();
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) cgroupfs::removeDir(*it, 2000ms);
    // The group directory is shared: the last sandbox out removes it, so a
    // stopped daemon leaves no cgroup behind.
    const std::lock_guard lock(cgroupfs::groupDirMutex());
    for (const auto& dir : dirs_) ::rmdir(dir.parent_path().c_str());
}

const std::vector<fs::path>& Cgroup::procsFiles() const { return procsFiles_; }

void Cgroup::attach(pid_t pid) {
    const std::string text = std::to_string(pid);
    for (const auto& file : procsFiles_) {
        UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
        if (fd.get() < 0 || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
            throw std::runtime_error("cgroup: cannot move pid " + text + " into " + file.string() + ": " +
                                     std::strerror(errno));
    }
}

void Cgroup::killAll() {
    if (!cgroupfs::killAllIn(dirs_, 2000ms))
        spdlog::warn("cgroup: processes survive SIGKILL in {}", dirs_.empty() ? "" : dirs_.front().string());
}

void Cgroup::setCpuWeight(CpuWeight weight) {
    if (cpuDir_.empty()) return;
    // Each version's default, and a tenth of it.
    const bool background = weight == CpuWeight::Background;
    if (version_ == 2)
        cgroupfs::writeFile(cpuDir_ / "cpu.weight", background ? "10" : "100");
    else
        cgroupfs::writeFile(cpuDir_ / "cpu.shares", background ? "102" : "1024");
}

std::uint64_t Cgroup::memoryCurrent() const {
    if (memoryDir_.empty()) return 0;
    const auto text = cgroupfs::readFile(memoryDir_ / (version_ == 2 ? "memory.current" : "memory.usage_in_bytes"));
    return text ? std::stoull(*text) : 0;
}

std::uint64_t Cgroup::oomKills() const {
    if (memoryDir_.empty()) return 0;
    return cgroupfs::readKeyed(oomCounter_, memoryDir_ / (version_ == 2 ? "memory.events" : "memory.oom_control"),
                               "oom_kill");
}

std::uint64_t Cgroup::pidsLimitHits() const {
    return pidsDir_.empty() ? 0 : cgroupfs::readKeyed(pidsCounter_, pidsDir_ / "pids.events", "max");
}

}  // namespace sessiond
