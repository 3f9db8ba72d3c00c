"""A custom container in a microVM (docs/custom-containers.md), started by
the host's "container" message (docs/agent-protocol.md): the image's disk,
a read-only ext4 the host attaches as the VM's second disk, under a
writable tmpfs layer of the pool's size, as an overlay; the container's own
/proc, /sys and /dev in it; its command run as the image's user with the
host's plan of argv, environment and working directory.

The VM is the sandbox: this only gives the container the root, ids and
environment it expects. Its output goes to the VM's console, which the
host keeps in the VM's console log."""

import os
import subprocess

IMAGE_DISK = "/dev/vdb"
BASE = "/run/sessiond/container"


class ContainerError(Exception):
    pass


def _run(*argv):
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise ContainerError(f"{' '.join(argv)}: {result.stdout.strip() or f'exit status {result.returncode}'}")


def _parse(message):
    argv, env = message.get("argv"), message.get("env")
    workdir, uid, gid = message.get("workingDirectory", "/"), message.get("uid"), message.get("gid")
    layer_mib = message.get("layerMiB")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv) \
            or not argv[0].startswith("/"):
        raise ContainerError("argv must be a list of strings whose first is an absolute path")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ContainerError("env must map names to strings")
    if not isinstance(workdir, str) or not workdir.startswith("/"):
        raise ContainerError("workingDirectory must be an absolute path")
    for name, value in (("uid", uid), ("gid", gid), ("layerMiB", layer_mib)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 0xFFFFFFFF:
            raise ContainerError(f"{name} must be a non-negative integer")
    return argv, env, workdir, uid, gid, max(layer_mib, 1)


def _prepare_root(layer_mib):
    image, layer, root = f"{BASE}/image", f"{BASE}/layer", f"{BASE}/root"
    for directory in (image, layer, root):
        os.makedirs(directory, exist_ok=True)
    _run("mount", "-t", "ext4", "-o", "ro,noload", IMAGE_DISK, image)
    _run("mount", "-t", "tmpfs", "-o", f"size={layer_mib}m,mode=0755", "tmpfs", layer)
    os.makedirs(f"{layer}/upper", exist_ok=True)
    os.makedirs(f"{layer}/work", exist_ok=True)
    _run("mount", "-t", "overlay", "-o", f"lowerdir={image},upperdir={layer}/upper,workdir={layer}/work",
         "overlay", root)
    for where, how in (("proc", ("-t", "proc", "-o", "nosuid,nodev,noexec", "proc")),
                       ("sys", ("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs")),
                       ("dev", ("--rbind", "/dev"))):
        os.makedirs(f"{root}/{where}", exist_ok=True)
        _run("mount", *how, f"{root}/{where}")
    # What a runtime writes into every container: who it is and how names
    # resolve (the guest's resolver, set by the host's network message).
    etc = f"{root}/etc"
    os.makedirs(etc, exist_ok=True)
    try:
        with open("/etc/resolv.conf") as f:
            resolv = f.read()
    except OSError:
        resolv = ""
    for name, text in (("hostname", "sandbox\n"), ("resolv.conf", resolv),
                       ("hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tsandbox\n::1\tlocalhost ip6-localhost\n")):
        path = f"{etc}/{name}"
        if os.path.islink(path):
            os.unlink(path)  # a link would lead out of the layer
        with open(path, "w") as f:
            f.write(text)
    return root


def start(message):
    """Starts the container; its Popen. Raises ContainerError."""
    argv, env, workdir, uid, gid, layer_mib = _parse(message)
    root = _prepare_root(layer_mib)

    def enter():
        os.chroot(root)
        os.chdir(workdir if os.path.isdir(workdir) else "/")
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    console = os.open("/dev/console", os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        return subprocess.Popen(argv, executable=argv[0], env=env, stdin=subprocess.DEVNULL, stdout=console,
                                stderr=console, preexec_fn=enter, start_new_session=True, close_fds=True)
    except OSError as e:
        raise ContainerError(f"cannot run {argv[0]}: {e.strerror}")
    finally:
        os.close(console)


def exit_description(status):
    if status < 0:
        return f"killed by signal {-status}"
    return f"exit status {status}"


