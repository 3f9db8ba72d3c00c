#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "nsinit.hpp"

namespace sessiond::nsinit {

namespace {

// Kernel interfaces a sandboxed program has no business using: changing
// mounts or namespaces, debugging other processes, loading code into the
// kernel, and host-wide clocks and devices. Most already fail without
// capabilities; the filter also shrinks the kernel attack surface reachable
// from the sandbox (new mount API, io_uring, bpf, keyrings, userfaultfd).
constexpr const char* kDenied[] = {
    "mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr", "unshare", "setns", "ptrace", "process_vm_readv",
    "process_vm_writev", "kcmp", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "reboot", "swapon",
    "swapoff", "syslog", "acct", "settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex",
    "userfaultfd", "open_by_handle_at", "name_to_handle_at", "quotactl", "quotactl_fd", "lookup_dcookie",
    "iopl", "ioperm", "vhangup", "uselib", "nfsservctl", "io_uring_setup", "io_uring_enter",
    "io_uring_register",
};

constexpr std::uint64_t kNamespaceFlags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,   CLONE_NEWUSER,
                                             CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};

struct ContextDeleter {
    void operator()(void* ctx) const { seccomp_release(ctx); }
};

class Filter {
public:
    Filter() : ctx_(seccomp_init(SCMP_ACT_ALLOW)) {
        if (!ctx_) fail("seccomp_init", "out of memory");
    }

    // Names this libseccomp or architecture does not know are skipped: a
    // syscall that does not exist cannot be called either.
    void add(const char* name, std::uint32_t action, std::initializer_list<scmp_arg_cmp> args = {}) {
        const int nr = seccomp_syscall_resolve_name(name);
        if (nr < 0) return;
        const int rc = seccomp_rule_add_array(ctx_.get(), action, nr, static_cast<unsigned>(args.size()),
                                              args.size() ? args.begin() : nullptr);
        if (rc < 0) fail(std::string("seccomp rule ") + name, std::strerror(-rc));
    }

    // The BPF program the kernel takes (libseccomp 2.5 exports only to an fd).
    std::vector<sock_filter> compile() {
        UniqueFd file(::memfd_create("sessiond-seccomp", MFD_CLOEXEC));
        if (file.get() < 0) die("memfd_create");
        const int rc = seccomp_export_bpf(ctx_.get(), file.get());
        if (rc < 0) fail("seccomp_export_bpf", std::strerror(-rc));
        const off_t size = ::lseek(file.get(), 0, SEEK_END);
        if (size <= 0 || size % sizeof(sock_filter) != 0) fail("seccomp_export_bpf", "unexpected program size");
        std::vector<sock_filter> program(static_cast<std::size_t>(size) / sizeof(sock_filter));
        if (::pread(file.get(), program.data(), static_cast<std::size_t>(size), 0) != size) die("read seccomp program");
        return program;
    }

private:
    std::unique_ptr<void, ContextDeleter> ctx_;
};

std::vector<sock_filter> compileFilter() {
    Filter f;
    const auto eperm = SCMP_ACT_ERRNO(EPERM);
    for (const char* name : kDenied) f.add(name, eperm);

    // clone's flags are its first argument on x86-64 and arm64 (not on s390).
    for (auto flag : kNamespaceFlags) f.add("clone", eperm, {SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)});
    // clone3 passes its flags in memory, out of the filter's reach; ENOSYS
    // makes glibc fall back to clone, which is checked above.
    f.add("clone3", SCMP_ACT_ERRNO(ENOSYS));

    // Socket families: local, IP and netlink (which libc asks for interface
    // addresses) only. Packet, vsock, Bluetooth, key, alg, TIPC and the rest
    // reach kernel code no sandbox needs, and packet sockets would let a
    // program see and forge frames. EAFNOSUPPORT, as on a kernel without
    // them, so programs fall back. A rule holds one comparison per argument:
    // each denied family below AF_NETLINK is a rule of its own.
    const auto noFamily = SCMP_ACT_ERRNO(EAFNOSUPPORT);
    for (const char* call : {"socket", "socketpair"}) {
        for (std::uint64_t family = 0; family < AF_NETLINK; ++family)
            if (family != AF_UNIX && family != AF_INET && family != AF_INET6)
                f.add(call, noFamily, {SCMP_A0(SCMP_CMP_EQ, family)});
        f.add(call, noFamily, {SCMP_A0(SCMP_CMP_GT, AF_NETLINK)});
    }

    // Device nodes: a regular file, fifo or socket node is fine.
    for (std::uint64_t type : {S_IFCHR, S_IFBLK}) {
        f.add("mknod", eperm, {SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, type)});
        f.add("mknodat", eperm, {SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, type)});
    }

    // personality: only PER_LINUX, PER_LINUX32 (bit 3), UNAME26 (bit 17) and
    // the 0xffffffff query pass, so ASLR cannot be switched off. One rule can
    // hold one comparison per argument, hence the bit-by-bit rules: a value
    // is denied if it has a bit besides 3 and 17 set and a bit clear (which
    // 0xffffffff has not), checked as "bit b set, bit 31 clear" and
    // "bit 31 set, bit c clear".
    constexpr std::uint64_t top = 1ull << 31;
    for (int bit = 0; bit < 31; ++bit) {
        const std::uint64_t b = 1ull << bit;
        if (bit != 3 && bit != 17) f.add("personality", eperm, {SCMP_A0(SCMP_CMP_MASKED_EQ, b | top, b)});
        f.add("personality", eperm, {SCMP_A0(SCMP_CMP_MASKED_EQ, b | top, top)});
    }
    return f.compile();
}

}  // namespace

// Building the filter with libseccomp costs tens of milliseconds and
// dirties heap pages: a zygote builds it once (prepareSeccompFilter) and
// each session it forks only loads the program.
const std::vector<sock_filter>& seccompProgram() {
    static const std::vector<sock_filter> program = compileFilter();
    return program;
}

void prepareSeccompFilter() { seccompProgram(); }

void installSeccompFilter() {
    const auto& program = seccompProgram();
    sock_fprog fprog{static_cast<unsigned short>(program.size()), const_cast<sock_filter*>(program.data())};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("prctl no_new_privs");
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) die("seccomp load");
}

}  // namespace sessiond::nsinit
