#pragma once
// The namespace jail: sessiond-nsinit, a small single-threaded helper binary,
// is spawned with a JailSpec. It joins the sandbox's cgroup, clones a child into
// new user, pid, mount, net, ipc and uts namespaces, builds a read-only root
// from an allow-list of host paths, gives it private tmpfs /mnt/data and /tmp,
// brings up loopback (and the interface the daemon moves in for a session
// with egress; docs/networking.md), drops to an unprivileged uid with no capabilities,
// applies rlimits and a seccomp filter, and executes the command. The child
// stays as pid 1 of the namespace, reaping orphans, until the command exits.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sessiond {

struct JailMount {
    std::string source;       // host path
    std::string target;       // path inside the sandbox
    bool writable = false;
};

// A session with egress (docs/networking.md): the daemon moves one end of
// a veth pair into the session's network namespace as `interface`, and the
// session's pid 1 gives it this address and a default route.
struct JailNetwork {
    std::string interface = "eth0";
    std::string address;  // IPv4; empty: loopback only
    int prefixLength = 0;
    std::string gateway;
    // The only line of the jail's /etc/resolv.conf, over whatever a mount
    // put there; empty: /etc/resolv.conf as the mounts make it.
    std::string nameserver;
};

struct JailSpec {
    std::string hostname = "sandbox";
    std::vector<JailMount> mounts;               // bind mounts; missing sources are skipped
    std::uint64_t tmpfsBytes = 256ull << 20;     // size of /mnt/data and of /tmp
    std::uint32_t uid = 1000;                    // inside; 0 only with an imageRoot
    std::uint32_t gid = 1000;
    std::uint32_t hostUidBase = 600000;          // inside 0..65535 -> base.. on the host
    std::uint64_t openFiles = 1024;              // RLIMIT_NOFILE
    bool seccomp = true;
    std::vector<std::filesystem::path> cgroupProcsFiles;  // joined before cloning
    std::vector<std::string> argv;               // argv[0] is an absolute path inside
    std::map<std::string, std::string> env;
    std::string workingDirectory = "/mnt/data";
    // File descriptors the daemon passes in (already at these numbers in
    // nsinit) that must stay open in the command; all others are closed.
    std::vector<int> keepFds;
    // The command is a pool's zygote (see zygote.hpp): it stays namespace
    // root with its capabilities and without the seccomp filter, because it
    // builds every session's own namespaces, and the jail lasts until its
    // last process exits rather than the command, so the sessions it forked
    // outlive it.
    bool zygote = false;
    JailNetwork network;
    // A custom container's root (docs/custom-containers.md): the host path
    // of its unpacked image, read-only and shared by the pool, under a
    // writable layer of tmpfsBytes of the session's own memory. It replaces
    // the root built from host paths, /mnt/data and /tmp. Empty: no image.
    std::string imageRoot;
    // An fd the daemon passes in (not one of keepFds) for the setup only the
    // host can do (a session's network interface): once the sandbox's
    // namespaces exist, nsinit writes its pid 1's host pid on it, as decimal
    // text ending with a newline, and waits for one byte back before anything
    // runs in the sandbox. -1: nothing to wait for.
    int setupFd = -1;

    nlohmann::json toJson() const;
    static JailSpec fromJson(const nlohmann::json& j);
};

// A running sessiond-nsinit process. Owns it: the destructor SIGKILLs and reaps.
class JailedProcess {
public:
    // Spawns `nsinitPath` with `spec`; `fdsToPass` maps an fd in the daemon to
    // the number it gets in nsinit (the numbers listed in spec.keepFds).
    static std::unique_ptr<JailedProcess> spawn(const std::filesystem::path& nsinitPath,
                                                const JailSpec& spec,
                                                const std::map<int, int>& fdsToPass);
    ~JailedProcess();
    JailedProcess(const JailedProcess&) = delete;
    JailedProcess& operator=(const JailedProcess&) = delete;

    pid_t pid() const;
    // A pidfd that becomes readable when the process exits (owned by this object).
    int pidfd() const;
    // Non-blocking: true (and the wait status) once the process has exited and was reaped.
    bool tryReap(int* status = nullptr);
    void kill();

private:
    JailedProcess(pid_t pid, int pidfd) : pid_(pid), pidfd_(pidfd) {}
    pid_t pid_;
    int pidfd_;
    bool reaped_ = false;
    int status_ = 0;
};

}  // namespace sessiond
