#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "nsinit.hpp"

namespace sessiond::nsinit {

namespace {

// Uids 0..65535 inside; the whole range sits above hostBase, so host root
// (and every real host user) stays unmapped and appears as "nobody" inside.
constexpr unsigned kMappedIds = 65536;

void writeFile(const std::string& path, const std::string& content) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.get() < 0) die("open " + path);
    if (::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()))
        die("write " + path);
}

}  // namespace

void writeIdMaps(pid_t child, std::uint32_t hostBase) {
    if (hostBase == 0 || hostBase > UINT32_MAX - kMappedIds)
        fail("uid map", "hostUidBase must be in 1.." + std::to_string(UINT32_MAX - kMappedIds));
    const std::string map = "0 " + std::to_string(hostBase) + " " + std::to_string(kMappedIds) + "\n";
    const std::string proc = "/proc/" + std::to_string(child);
    writeFile(proc + "/uid_map", map);
    writeFile(proc + "/gid_map", map);
}

// Becoming uid 0 of the new namespace keeps the full capability set there
// (the kernel only drops capabilities when leaving the namespace's root uid),
// while on the host this process is now hostUidBase, an unprivileged user.
void becomeNamespaceRoot() {
    // Host root's supplementary groups would otherwise still grant group
    // access to host files.
    if (::setgroups(0, nullptr) != 0) die("setgroups");
    if (::setresgid(0, 0, 0) != 0) die("setresgid 0");
    if (::setresuid(0, 0, 0) != 0) die("setresuid 0");
}

void dropToUser(std::uint32_t uid, std::uint32_t gid) {
    // The bounding set and inheritable/ambient sets are cleared while
    // CAP_SETPCAP is still held, so that even a file with capabilities
    // cannot return any after exec.
    // Loops up to the running kernel's last capability, which may be newer
    // than the headers' CAP_LAST_CAP.
    for (int cap = 0;; ++cap) {
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EINVAL) break;
            die("drop bounding capability " + std::to_string(cap));
        }
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) die("clear ambient capabilities");
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) != 0) die("capget");
    for (auto& d : data) d.inheritable = 0;
    if (::syscall(SYS_capset, &header, data) != 0) die("capset");

    if (::setgroups(0, nullptr) != 0) die("setgroups");
    if (::setresgid(gid, gid, gid) != 0) die("setresgid " + std::to_string(gid));
    // Leaving uid 0 clears the permitted, effective and ambient sets; a
    // container's root stays uid 0, so they are cleared by hand. With an
    // empty bounding set, no later exec can give any back.
    if (::setresuid(uid, uid, uid) != 0) die("setresuid " + std::to_string(uid));
    if (uid == 0) {
        for (auto& d : data) d.effective = d.permitted = d.inheritable = 0;
        if (::syscall(SYS_capset, &header, data) != 0) die("capset (clear)");
    }
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("PR_SET_NO_NEW_PRIVS");
}

}  // namespace sessiond::nsinit
