#pragma once
// The escape and abuse attempts, written once and run against every backend
// (security_test.cpp). An attempt is code a session runs: it tries one way
// out and prints "blocked" when the attempt failed, or "ESCAPED: <what>"
// when it did not; a Python error fails the attempt too, so an attempt that
// stops early cannot pass. Placeholders ({{NAME}}) are filled with facts
// about the host that the sandbox must not be able to learn or reach.
//
// Some attempts test a wall only the namespace sandbox has inside it: in a
// microVM the agent and the code run as the guest's root, the guest kernel
// is the sandbox's own, and the wall is the hypervisor. There, mounting or
// loading a module inside the guest is not an escape; reaching the host is.

#include <map>
#include <string>
#include <vector>

namespace sessiond::testing::security {

enum class Where { Both, NamespaceOnly };

struct Attempt {
    std::string name;
    std::string code;  // Python (after kPrelude), or a bash command when `shell`
    Where where = Where::Both;
    bool shell = false;
};

struct Family {
    std::string name;
    std::vector<Attempt> attempts;
};

// Shared by every Python attempt: escape() records a way out, fails() runs a
// call that must raise OSError, sys_fails() checks a raw libc call's result.
inline const std::string kPrelude = R"PY(
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
_escaped = []
def escape(what):
    _escaped.append(what)
def fails(what, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except OSError:
        return True
    escape(what)
    return False
def sys_fails(what, rc):
    if rc >= 0:
        escape(f"{what} returned {rc}")
def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None
)PY";

inline const std::string kVerdict = "\nprint('blocked' if not _escaped else 'ESCAPED: ' + '; '.join(_escaped))\n";

inline std::string replaceAll(std::string text, const std::map<std::string, std::string>& values) {
    for (const auto& [key, value] : values) {
        const std::string token = "{{" + key + "}}";
        for (std::size_t at = text.find(token); at != std::string::npos; at = text.find(token, at + value.size()))
            text.replace(at, token.size(), value);
    }
    return text;
}

// The families whose attempts are self-contained. Resource exhaustion, the
// neighbour session and leftover processes need the host's view too and
// are tests of their own in security_test.cpp.
inline std::vector<Family> containmentFamilies() {
    return {
        {"host files",
         {
             {"/etc/shadow is not the host's",
              "s = read('/etc/shadow')\n"
              "import hashlib\n"
              "if s is not None and hashlib.sha256(s.encode()).hexdigest() == '{{SHADOW_SHA256}}':\n"
              "    escape('read the host /etc/shadow')\n"},
             {"a host secret file by its path and through /proc roots",
              "for p in ['{{SECRET_FILE}}', '/oldroot{{SECRET_FILE}}', '/proc/1/root{{SECRET_FILE}}',\n"
              "          '/proc/self/root{{SECRET_FILE}}', '/proc/1/cwd{{SECRET_FILE}}']:\n"
              "    if (read(p) or '').find('{{SECRET}}') >= 0: escape('read ' + p)\n"},
             {"the daemon's configuration and keys",
              "for p in ['{{CONFIG_FILE}}', '{{KEY_FILE}}', '/etc/sessiond/sessiond.json', '/etc/sessiond/keys.json']:\n"
              "    if (read(p) or '').find('{{SECRET}}') >= 0: escape('read ' + p)\n"},
             {"a search of the whole tree for the host's secret",
              "def search():\n"
              "    seen = 0\n"
              "    for top in ['/etc', '/var', '/root', '/home', '/run', '/srv', '/opt', '/mnt', '/tmp', '/media']:\n"
              "        for d, dirs, files in os.walk(top):\n"
              "            for f in files:\n"
              "                seen += 1\n"
              "                if seen > 20000: return\n"
              "                if not os.path.isfile(os.path.join(d, f)): continue  # a fifo would block\n"
              "                try:\n"
              "                    with open(os.path.join(d, f), 'rb') as h: data = h.read(1 << 20)\n"
              "                except OSError:\n"
              "                    continue\n"
              "                if b'{{SECRET}}' in data: escape('found the secret in ' + os.path.join(d, f))\n"
              "search()\n"},
             {"the host's processes' environment through /proc",
              "me = (read('/proc/{{HOST_PID}}/cmdline', 'rb') or b'')\n"
              "if b'sessiond_tests' in me: escape('saw the test process in /proc')\n"
              "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
              "    if '{{SECRET}}' in (read(f'/proc/{pid}/environ', 'rb') or b'').decode('latin-1'):\n"
              "        escape('read the secret from /proc/' + pid + '/environ')\n"},
             {"a device node of the host's disks",
              "for dev in ['/dev/sda', '/dev/vda', '/dev/nvme0n1', '/dev/mem', '/dev/kmsg', '/dev/port']:\n"
              "    fails('opened ' + dev, os.open, dev, os.O_RDONLY)\n",
              Where::NamespaceOnly},
         }},
        {"writes outside the data directory",
         {
             {"the read-only system",
              "for p in ['/usr/escape', '/etc/escape', '/escape', '/opt/sessiond/agent/escape', '/usr/bin/python3']:\n"
              "    fails('wrote ' + p, lambda: open(p, 'a').write('x'))\n",
              Where::NamespaceOnly},
             {"host-wide kernel settings",
              "for p in ['/proc/sys/kernel/hostname', '/proc/sysrq-trigger', '/proc/sys/vm/drop_caches',\n"
              "          '/proc/sys/kernel/core_pattern', '/sys/kernel/uevent_helper']:\n"
              "    fails('wrote ' + p, lambda: open(p, 'w').write('1'))\n",
              Where::NamespaceOnly},
             {"a host path named by the daemon's state",
              "for p in ['{{SECRET_DIR}}/planted', '/oldroot{{SECRET_DIR}}/planted']:\n"
              "    try:\n"
              "        open(p, 'w').write('x')\n"
              "    except OSError:\n"
              "        pass\n"},
             {"changing the owner or mode of system files",
              "fails('chmod /usr/bin', os.chmod, '/usr/bin', 0o777)\n"
              "fails('chown /etc/passwd', os.chown, '/etc/passwd', os.getuid(), os.getgid())\n",
              Where::NamespaceOnly},
             {"a device node",
              "import stat\n"
              "fails('mknod a block device', os.mknod, '/mnt/data/sda', stat.S_IFBLK | 0o600, os.makedev(8, 0))\n"
              "fails('mknod a char device', os.mknod, '/tmp/mem', stat.S_IFCHR | 0o600, os.makedev(1, 1))\n",
              Where::NamespaceOnly},
         }},
        {"network with egress disabled",
         {
             {"TCP to public addresses",
              "for host, port in [('1.1.1.1', 443), ('8.8.8.8', 53), ('9.9.9.9', 80)]:\n"
              "    s = socket.socket(); s.settimeout(3)\n"
              "    fails(f'connected to {host}:{port}', s.connect, (host, port)); s.close()\n"},
             {"the host's own addresses and the daemon's port",
              "for host in {{HOST_ADDRESSES}}:\n"
              "    s = socket.socket(); s.settimeout(3)\n"
              "    fails(f'connected to {host}:{{DAEMON_PORT}}', s.connect, (host, {{DAEMON_PORT}})); s.close()\n"
              "s = socket.socket(); s.settimeout(3)\n"
              "fails('reached the daemon on 127.0.0.1', s.connect, ('127.0.0.1', {{DAEMON_PORT}}))\n"},
             {"DNS",
              "fails('resolved a name', socket.getaddrinfo, 'example.com', 80)\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)\n"
              "try:\n"
              "    s.sendto(b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01', ('8.8.8.8', 53))\n"
              "    s.recvfrom(512); escape('got a DNS answer')\n"
              "except OSError:\n"
              "    pass\n"},
             {"IPv6",
              "s = socket.socket(socket.AF_INET6); s.settimeout(3)\n"
              "fails('connected over IPv6', s.connect, ('2606:4700:4700::1111', 443))\n"},
             {"an interface besides loopback",
              "names = [n for _, n in socket.if_nameindex()]\n"
              "if names != ['lo']: escape(f'interfaces {names}')\n"},
             {"a vsock to the host",
              "try:\n"
              "    s = socket.socket(40, socket.SOCK_STREAM)\n"
              "    s.settimeout(3)\n"
              "    fails('connected to the host over vsock', s.connect, (2, 22))\n"
              "except OSError:\n"
              "    pass\n"},
         }},
        {"raw and exotic sockets",
         {
             {"AF_PACKET", "fails('opened AF_PACKET', socket.socket, 17, socket.SOCK_RAW, 0x0300)\n",
              Where::NamespaceOnly},
             {"raw IPv4 and IPv6",
              "fails('opened raw IPv4', socket.socket, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
              "fails('opened raw IPv6', socket.socket, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)\n",
              Where::NamespaceOnly},
             {"vsock, Bluetooth, CAN, TIPC, key, alg, XDP, RDS",
              "for family in [40, 31, 29, 30, 15, 38, 44, 21, 3, 4, 5, 9]:\n"
              "    for kind in [socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET, socket.SOCK_RAW]:\n"
              "        fails(f'opened family {family} type {kind}', socket.socket, family, kind, 0)\n",
              Where::NamespaceOnly},
             {"a netlink socket that changes routes",
              "import struct\n"
              "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n"
              "# RTM_NEWADDR for lo: needs CAP_NET_ADMIN over the host's network\n"
              "msg = struct.pack('=LHHLL', 16 + 8 + 8, 20, 0x405, 1, 0) + struct.pack('=BBBBI', 2, 8, 0, 0, 1)\n"
              "msg += struct.pack('=HH4s', 8, 2, socket.inet_aton('192.0.2.99'))\n"
              "s.sendto(msg, (0, 0))\n"
              "reply = s.recv(4096)\n"
              "code = struct.unpack('=i', reply[16:20])[0]\n"
              "if code == 0: escape('added an address')\n",
              Where::NamespaceOnly},
         }},
        {"mounts and namespaces",
         {
             {"mount a tmpfs and a proc",
              "sys_fails('mount tmpfs', libc.mount(b'tmpfs', b'/mnt/data', b'tmpfs', 0, None))\n"
              "sys_fails('mount proc', libc.mount(b'proc', b'/tmp', b'proc', 0, None))\n"
              "sys_fails('remount / read-write', libc.mount(None, b'/', None, 32 | 4096, None))\n",
              Where::NamespaceOnly},
             {"new user, mount and network namespaces",
              "for flag in [0x10000000, 0x00020000, 0x40000000, 0x20000000, 0x02000000]:\n"
              "    sys_fails(f'unshare {flag:#x}', libc.unshare(flag))\n",
              Where::NamespaceOnly},
             {"setns into pid 1's namespaces",
              "for ns in ['mnt', 'net', 'user', 'pid']:\n"
              "    try:\n"
              "        fd = os.open(f'/proc/1/ns/{ns}', os.O_RDONLY)\n"
              "    except OSError:\n"
              "        continue\n"
              "    sys_fails('setns ' + ns, libc.setns(fd, 0)); os.close(fd)\n",
              Where::NamespaceOnly},
             {"chroot and pivot_root",
              "sys_fails('chroot', libc.chroot(b'/tmp'))\n"
              "sys_fails('pivot_root', libc.syscall(155, b'/tmp', b'/tmp'))\n",
              Where::NamespaceOnly},
             {"the new mount API", "sys_fails('fsopen', libc.syscall(430, b'tmpfs', 0))\n"
                                   "sys_fails('open_tree', libc.syscall(428, -100, b'/usr', 1))\n",
              Where::NamespaceOnly},
         }},
        {"ptrace and other processes' memory",
         {
             {"attach to the agent",
              "sys_fails('PTRACE_ATTACH', libc.ptrace(16, os.getppid(), None, None))\n"
              "sys_fails('PTRACE_SEIZE', libc.ptrace(0x4206, os.getppid(), None, None))\n",
              Where::NamespaceOnly},
             {"PTRACE_TRACEME", "sys_fails('PTRACE_TRACEME', libc.ptrace(0, 0, None, None))\n", Where::NamespaceOnly},
             {"process_vm_readv of the agent",
              "buf = ctypes.create_string_buffer(8)\n"
              "class iov(ctypes.Structure): _fields_ = [('b', ctypes.c_void_p), ('n', ctypes.c_size_t)]\n"
              "local = iov(ctypes.addressof(buf), 8); remote = iov(0x400000, 8)\n"
              "sys_fails('process_vm_readv', libc.syscall(310, os.getppid(), ctypes.byref(local), 1,"
              " ctypes.byref(remote), 1, 0))\n",
              Where::NamespaceOnly},
             {"kcmp, bpf, perf_event_open, userfaultfd, io_uring",
              "sys_fails('kcmp', libc.syscall(312, os.getpid(), os.getppid(), 0, 0, 0))\n"
              "sys_fails('bpf', libc.syscall(321, 0, None, 0))\n"
              "attr = ctypes.create_string_buffer(128)\n"
              "sys_fails('perf_event_open', libc.syscall(298, attr, 0, -1, -1, 0))\n"
              "sys_fails('userfaultfd', libc.syscall(323, 0))\n"
              "params = ctypes.create_string_buffer(120)\n"
              "sys_fails('io_uring_setup', libc.syscall(425, 8, params))\n",
              Where::NamespaceOnly},
         }},
        {"kernel modules and the kernel",
         {
             {"init_module and finit_module",
              "sys_fails('init_module', libc.syscall(175, b'\\x7fELF', 4, b''))\n"
              "fd = os.open('/dev/null', os.O_RDONLY)\n"
              "sys_fails('finit_module', libc.syscall(313, fd, b'', 0))\n"
              "sys_fails('delete_module', libc.syscall(176, b'loop', 0))\n",
              Where::NamespaceOnly},
             {"the module loader's path",
              "fails('wrote /proc/sys/kernel/modprobe', lambda: open('/proc/sys/kernel/modprobe', 'w').write('/tmp/x'))\n",
              Where::NamespaceOnly},
             {"kexec, reboot, swapon, the clock",
              "sys_fails('kexec_load', libc.syscall(246, 0, 0, None, 0))\n"
              "sys_fails('reboot', libc.syscall(169, 0xfee1dead, 672274793, 0x4321fedc, None))\n"
              "sys_fails('swapon', libc.swapon(b'/tmp/x', 0))\n"
              "import time\n"
              "fails('set the clock', time.clock_settime, time.CLOCK_REALTIME, 0)\n",
              Where::NamespaceOnly},
             {"the kernel log and keyrings",
              "buf = ctypes.create_string_buffer(4096)\n"
              "sys_fails('syslog read', libc.klogctl(3, buf, 4096))\n"
              "sys_fails('add_key', libc.syscall(248, b'user', b'x', b'y', 1, -2))\n",
              Where::NamespaceOnly},
         }},
        {"learning about the host through /proc and /sys",
         {
             {"the host's kernel command line",
              "c = read('/proc/cmdline') or ''\n"
              "if c.strip() == '{{HOST_CMDLINE}}'.strip(): escape('/proc/cmdline is the host\\'s')\n"},
             {"an empty kernel command line in the jail",
              "if (read('/proc/cmdline') or '') != '': escape('/proc/cmdline is not empty')\n",
              Where::NamespaceOnly},
             {"kernel symbol addresses",
              "for line in (read('/proc/kallsyms') or '').splitlines()[:50]:\n"
              "    if int(line.split()[0], 16) != 0: escape('/proc/kallsyms shows addresses'); break\n",
              Where::NamespaceOnly},
             {"the host's processes, hostname and interfaces",
              "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
              "    c = read(f'/proc/{pid}/cmdline', 'rb') or b''\n"
              "    if any(n in c for n in [b'sessiond_tests', b'libvirtd', b'qemu-system', b'sshd', b'containerd']):\n"
              "        escape(f'saw a host process: {c!r}')\n"
              "if socket.gethostname() == '{{HOST_NAME}}': escape('the host\\'s hostname')\n"
              "nets = os.listdir('/sys/class/net') if os.path.isdir('/sys/class/net') else []\n"
              "for n in {{HOST_INTERFACES}}:\n"
              "    if n in nets: escape('saw host interface ' + n)\n"},
             {"/sys in the jail",
              "if os.path.exists('/sys/kernel') or os.path.exists('/sys/fs/cgroup/cgroup.procs'):"
              " escape('/sys is mounted')\n",
              Where::NamespaceOnly},
             {"the host's mounts",
              "m = read('/proc/self/mountinfo') or ''\n"
              "for needle in ['{{SECRET_DIR}}', '/var/lib/sessiond', '/oldroot', '/newroot']:\n"
              "    if needle in m: escape('mountinfo names ' + needle)\n",
              Where::NamespaceOnly},
         }},
    };
}

// Bash commands that leave something running; the check after them looks
// for their marker (the sleep's argument).
inline const std::vector<Attempt> kLeftoverAttempts = {
    {"a background job", "sleep 1001 &"},
    {"nohup", "nohup sleep 1002 >/dev/null 2>&1 &"},
    {"setsid", "setsid sleep 1003 >/dev/null 2>&1 < /dev/null &"},
    {"a double fork", "( ( exec -a daemon sleep 1004 ) & ) >/dev/null 2>&1"},
    {"a daemon that closed its pipes", "python3 -c 'import os\nif os.fork() == 0:\n    os.setsid()\n"
                                       "    if os.fork() == 0:\n        os.closerange(0, 3); os.execvp(\"sleep\", [\"sleep\", \"1005\"])'"},
    {"ignoring SIGTERM and SIGHUP", "setsid bash -c 'trap \"\" TERM HUP; sleep 1006' >/dev/null 2>&1 < /dev/null &"},
};

// Lists what is left of them (bash: a Shell session has no Python of its own
// to rely on), or prints "none-left".
inline const std::string kLeftoverCheck =
    "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\" 2>/dev/null; echo; done"
    " | grep -E ' 100[1-6] ?$' || echo none-left";

}  // namespace sessiond::testing::security
