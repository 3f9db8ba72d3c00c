#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "nsinit.hpp"

namespace sessiond::nsinit {

namespace {

// The root is built the way bubblewrap does it. A tmpfs mounted on /tmp (in
// this private mount namespace only, the host never sees it) becomes the
// root via pivot_root, and the host's root moves to /oldroot. The staging
// tmpfs no longer hides the host's /tmp there, so every host path, /tmp
// included, is reachable as /oldroot/<path> while the sandbox's own root is
// assembled on /newroot; nothing is created on any host filesystem.
constexpr const char* kStage = "/tmp";
const std::string kNew = "/newroot";
const std::string kOld = "/oldroot";

void doMount(const std::string& source, const std::string& target, const char* type, unsigned long flags,
             const std::string& data) {
    if (::mount(source.empty() ? nullptr : source.c_str(), target.c_str(), type, flags,
                data.empty() ? nullptr : data.c_str()) != 0)
        die("mount " + (source.empty() ? std::string(type ? type : "") : source) + " on " + target);
}

void makeDir(const std::string& path, mode_t mode) {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) die("mkdir " + path);
}

void makeDirs(const std::string& path, mode_t mode) {
    for (std::size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1))
        makeDir(path.substr(0, slash), mode);
    makeDir(path, mode);
}

void writeFile(const std::string& path, const std::string& content, mode_t mode) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
    if (fd.get() < 0) die("create " + path);
    if (::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()))
        die("write " + path);
}

void tmpfs(const std::string& target, unsigned long flags, const std::string& options) {
    makeDirs(target, 0755);
    doMount("tmpfs", target, "tmpfs", flags, options);
}

// In a user namespace, flags of mounts inherited from the host are locked:
// a remount that would clear nosuid, nodev, noexec, ro or change the atime
// mode fails with EPERM. So the remount restates whatever the mount has.
unsigned long lockedFlags(const std::string& path) {
    struct statvfs vfs {};
    if (::statvfs(path.c_str(), &vfs) != 0) die("statvfs " + path);
    unsigned long flags = 0;
    if (vfs.f_flag & ST_RDONLY) flags |= MS_RDONLY;
    if (vfs.f_flag & ST_NOSUID) flags |= MS_NOSUID;
    if (vfs.f_flag & ST_NODEV) flags |= MS_NODEV;
    if (vfs.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (vfs.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (vfs.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (vfs.f_flag & ST_RELATIME) flags |= MS_RELATIME;
    if (!(vfs.f_flag & (ST_NOATIME | ST_RELATIME))) flags |= MS_STRICTATIME;
    return flags;
}

// `from` must be a path under kOld without symlinks left to resolve.
void bindMount(const std::string& from, const std::string& to, bool writable) {
    struct stat st {};
    if (::stat(from.c_str(), &st) != 0) die("stat " + from);
    if (S_ISDIR(st.st_mode)) {
        makeDirs(to, 0755);
    } else {
        makeDirs(to.substr(0, to.rfind('/')), 0755);
        struct stat existing {};
        if (::stat(to.c_str(), &existing) != 0) writeFile(to, "", 0644);
    }
    doMount(from, to, nullptr, MS_BIND | MS_REC, "");
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | lockedFlags(to);
    if (!writable) flags |= MS_RDONLY;
    doMount("", to, nullptr, flags, "");
}

struct ResolvedMount {
    std::string source;  // canonical host path
    std::string target;
    bool writable;
};

bool validTarget(const std::string& t) {
    if (t.size() < 2 || t[0] != '/' || t.back() == '/') return false;
    for (std::size_t start = 1; start <= t.size();) {
        std::size_t end = t.find('/', start);
        if (end == std::string::npos) end = t.size();
        const std::string part = t.substr(start, end - start);
        if (part.empty() || part == "." || part == "..") return false;
        start = end + 1;
    }
    return true;
}

// Resolved while the host's root is still this process's root, so absolute
// symlinks in a source (/etc/resolv.conf -> /run/...) point where they should.
std::vector<ResolvedMount> resolveMounts(const JailSpec& spec) {
    std::vector<ResolvedMount> out;
    for (const auto& m : spec.mounts) {
        if (!validTarget(m.target)) fail("mount target " + m.target, "must be an absolute normalized path");
        char real[PATH_MAX];
        if (::realpath(m.source.c_str(), real) == nullptr) {
            if (errno == ENOENT || errno == ENOTDIR) continue;  // optional host paths
            die("mount source " + m.source);
        }
        out.push_back({real, m.target, m.writable});
    }
    // Parents before children, whatever order the spec lists them in.
    std::stable_sort(out.begin(), out.end(),
                     [](const ResolvedMount& a, const ResolvedMount& b) { return a.target < b.target; });
    return out;
}

void enterStagingRoot() {
    doMount("tmpfs", kStage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m");
    makeDir(std::string(kStage) + kNew, 0755);
    makeDir(std::string(kStage) + kOld, 0755);
    if (::syscall(SYS_pivot_root, kStage, (std::string(kStage) + kOld).c_str()) != 0) die("pivot_root staging");
    if (::chdir("/") != 0) die("chdir /");
}

// Debian's merged /usr: /bin, /lib... are symlinks into /usr and must stay
// symlinks, or binaries' interpreters (/lib64/ld-linux...) are not found.
void systemDirs() {
    for (const char* name : {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
        const std::string host = kOld + "/" + name;
        struct stat st {};
        if (::lstat(host.c_str(), &st) != 0) continue;
        if (S_ISLNK(st.st_mode)) {
            char link[PATH_MAX];
            const ssize_t n = ::readlink(host.c_str(), link, sizeof link - 1);
            if (n < 0) die("readlink " + host);
            link[n] = '\0';
            if (::symlink(link, (kNew + "/" + name).c_str()) != 0) die("symlink /" + std::string(name));
        } else if (S_ISDIR(st.st_mode)) {
            bindMount(host, kNew + "/" + name, false);
        }
    }
}

void etcFiles(const JailSpec& spec) {
    const std::string uid = std::to_string(spec.uid);
    makeDir(kNew + "/etc", 0755);
    writeFile(kNew + "/etc/passwd",
              "root:x:0:0:root:/root:/bin/sh\n"
              "sandbox:x:" + uid + ":" + uid + ":sandbox:/tmp:/bin/sh\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
              0644);
    writeFile(kNew + "/etc/group", "root:x:0:\nsandbox:x:" + uid + ":\nnogroup:x:65534:\n", 0644);
    writeFile(kNew + "/etc/hostname", spec.hostname + "\n", 0644);
    writeFile(kNew + "/etc/hosts", "127.0.0.1\tlocalhost " + spec.hostname + "\n::1\tlocalhost\n", 0644);
    // Something for a session's own resolv.conf to be mounted over, should
    // the host's not be among the mounts.
    writeFile(kNew + "/etc/resolv.conf", "", 0644);
}

// The resolver of a session with egress (docs/networking.md), in a file of
// `scratch` (a tmpfs of this mount namespace's own), mounted read-only over
// `target`. The mount keeps the file when the scratch tmpfs goes.
void resolvConf(const JailNetwork& network, const std::string& scratch, const std::string& target) {
    if (network.address.empty() || network.nameserver.empty()) return;
    const std::string file = scratch + "/resolv.conf";
    writeFile(file, "nameserver " + network.nameserver + "\n", 0644);
    bindMount(file, target, false);
}

void devFiles(const JailSpec& spec) {
    const std::string dev = kNew + "/dev";
    tmpfs(dev, MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k");
    for (const char* node : {"null", "zero", "full", "random", "urandom", "tty"}) {
        const std::string host = kOld + "/dev/" + node;
        if (::access(host.c_str(), F_OK) != 0) continue;
        writeFile(dev + "/" + node, "", 0666);
        doMount(host, dev + "/" + node, nullptr, MS_BIND, "");
    }
    const std::pair<const char*, const char*> links[] = {
        {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
        {"stderr", "/proc/self/fd/2"}};
    for (const auto& [name, target] : links)
        if (::symlink(target, (dev + "/" + name).c_str()) != 0) die("symlink /dev/" + std::string(name));
    makeDir(dev + "/shm", 0755);
}

// What a session writes: /mnt/data, /tmp and /dev/shm, each a tmpfs of its
// own under `root`, where the directories already exist.
void writableDirs(const JailSpec& spec, const std::string& root) {
    const std::string owner = ",uid=" + std::to_string(spec.uid) + ",gid=" + std::to_string(spec.gid);
    const std::string size = "size=" + std::to_string(spec.tmpfsBytes);
    const unsigned long flags = MS_NOSUID | MS_NODEV;
    doMount("tmpfs", root + "/mnt/data", "tmpfs", flags, size + ",mode=0755" + owner);
    doMount("tmpfs", root + "/tmp", "tmpfs", flags, size + ",mode=1777" + owner);
    doMount("tmpfs", root + "/dev/shm", "tmpfs", flags, size + ",mode=1777");
}

// Files of a fresh proc that still describe the host, not the sandbox: its
// kernel command line (which can hold boot secrets and names the host's
// disks), kernel symbol addresses (shown to everyone when kptr_restrict is
// 0), and kernel memory, keys and scheduler internals.
constexpr const char* kMaskedProcFiles[] = {"cmdline",     "kallsyms",   "kcore",        "keys",
                                            "sched_debug", "timer_list", "latency_stats"};

// A new proc, with /dev/null over each masked file: reading one gives
// nothing, writing one goes nowhere. Masks are not locked mounts (they are made in the
// sandbox's own user namespace), so a later proc mount still sees this one
// as fully visible.
void mountProc(const std::string& root) {
    const std::string proc = root + "/proc";
    doMount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
    for (const char* name : kMaskedProcFiles) {
        const std::string target = proc + "/" + name;
        if (::access(target.c_str(), F_OK) != 0) continue;
        doMount(root + "/dev/null", target, nullptr, MS_BIND, "");
    }
}

// The kernel only lets a user namespace mount proc while a fully visible proc
// is in its mount namespace, so this runs before /oldroot goes away.
void procFs() {
    makeDir(kNew + "/proc", 0555);
    mountProc(kNew);
}

// A root of host paths is read-only; a container's is its writable layer.
void enterNewRoot(bool readOnly) {
    if (::umount2(kOld.c_str(), MNT_DETACH) != 0) die("umount " + kOld);
    if (::chdir(kNew.c_str()) != 0) die("chdir " + kNew);
    // pivot_root(".", ".") stacks the staging root on top of the new one;
    // detaching "." then drops it, with no old-root directory left behind.
    if (::syscall(SYS_pivot_root, ".", ".") != 0) die("pivot_root");
    if (::umount2(".", MNT_DETACH) != 0) die("umount staging root");
    if (::chdir("/") != 0) die("chdir /");
    if (readOnly) doMount("", "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "");
}

// A custom container's root: the image's unpacked root under a writable
// layer, both on a tmpfs of the session's own, so what the container writes
// is limited to tmpfsBytes and vanishes with its mount namespace; nothing is
// written to the host's disk. userxattr keeps overlayfs's own attributes in
// the user.* namespace, which a user namespace may set; where the upper
// filesystem has none (tmpfs before Linux 6.6), overlayfs still mounts and
// only cannot mark a directory opaque (recreated where the image had one).
void imageRoot(const JailSpec& spec) {
    const std::string layer = "/layer";
    tmpfs(layer, MS_NOSUID | MS_NODEV, "mode=0755,size=" + std::to_string(spec.tmpfsBytes));
    makeDir(layer + "/upper", 0755);
    makeDir(layer + "/work", 0755);
    // The writable layer's root directory is the container root's own; its
    // owner is the namespace's root, as the image's root directory is.
    makeDir(kNew, 0755);
    doMount("overlay", kNew, "overlay", MS_NOSUID | MS_NODEV,
            "lowerdir=" + kOld + spec.imageRoot + ",upperdir=" + layer + "/upper,workdir=" + layer + "/work,userxattr");
    makeDir(kNew + "/etc", 0755);
    writeFile(kNew + "/etc/hostname", spec.hostname + "\n", 0644);
    writeFile(kNew + "/etc/hosts", "127.0.0.1\tlocalhost " + spec.hostname + "\n::1\tlocalhost\n", 0644);
    devFiles(spec);
    doMount("tmpfs", kNew + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
            "size=" + std::to_string(spec.tmpfsBytes) + ",mode=1777");
}

}  // namespace

void buildRoot(const JailSpec& spec) {
    // Private first: nothing below may propagate back to the host's mounts.
    doMount("", "/", nullptr, MS_REC | MS_PRIVATE, "");
    const auto mounts = resolveMounts(spec);
    enterStagingRoot();
    if (!spec.imageRoot.empty()) {
        imageRoot(spec);
    } else {
        tmpfs(kNew, MS_NOSUID | MS_NODEV, "mode=0755,size=1m");
        etcFiles(spec);
        systemDirs();
        devFiles(spec);
        makeDirs(kNew + "/mnt/data", 0755);
        makeDir(kNew + "/tmp", 0755);
        writableDirs(spec, kNew);
    }
    for (const auto& m : mounts) bindMount(kOld + m.source, kNew + m.target, m.writable);
    resolvConf(spec.network, "", kNew + "/etc/resolv.conf");  // from the staging root
    procFs();
    enterNewRoot(spec.imageRoot.empty());
}

// A session's mount namespace starts as a copy of its zygote's, whose root
// is already built: only what must not be shared is mounted anew, over the
// zygote's. The new proc shows the session's own pid namespace.
void mountSessionDirs(const JailSpec& spec) {
    if (!spec.network.address.empty() && !spec.network.nameserver.empty()) {
        // The zygote's root is read-only: the file is made on a tmpfs over
        // /tmp, which the session's own /tmp then replaces.
        tmpfs("/tmp", MS_NOSUID | MS_NODEV, "mode=0755,size=64k");
        resolvConf(spec.network, "/tmp", "/etc/resolv.conf");
        if (::umount2("/tmp", MNT_DETACH) != 0) die("umount /tmp");
    }
    mountProc("");
    writableDirs(spec, "");
}

}  // namespace sessiond::nsinit
