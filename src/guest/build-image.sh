#!/bin/bash
# Builds the sessiond microVM guest image from Debian 12 packages
# (docs/microvm.md) into OUTPUT_DIR/<hash>/ and points OUTPUT_DIR/current at
# it. <hash> covers this script, packages.txt, init and the agent's Python
# files, so an unchanged checkout finds its image and returns at once, without
# network. The image directory is printed on stdout; progress goes to stderr.
#
# Reproducibility: file times are clamped to SOURCE_DATE_EPOCH (default: the
# last commit's time), the ext4 UUID and hash seed derive from <hash>, and the
# package list is sorted. Not bit-reproducible: the package versions are
# whatever the archive holds on the day (the hash does not see the archive),
# maintainer scripts leave per-build data (.pyc files, debconf and dpkg state,
# ldconfig cache, the initrd's cpio), mkfs.ext4 lays files out in readdir
# order, and manifest.json records the build time.
set -euo pipefail
export LC_ALL=C

SUITE=bookworm
ARCH=amd64
PORT_NAME=org.sessiond.agent.0
KERNEL_CMDLINE="console=ttyS0 root=/dev/vda rootfstype=ext4 rw init=/opt/sessiond/init quiet panic=-1"
IMAGES_KEPT=2
# Free space in the ext4 file system on top of the packed tree, for what
# sessions write to the root: it lands in each VM's qcow2 overlay, and costs
# nothing in rootfs.qcow2.
FREE_SPACE_MIB=1024

usage() {
    echo "usage: $0 OUTPUT_DIR" >&2
    exit 2
}
[ $# -eq 1 ] || usage

log() {
    printf '[build-image %4ds] %s\n' "$SECONDS" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

# The agent's Python files, and the Node.js worker it runs for sessions in node.
agent_files=()
for f in "$repo"/src/agent/*.py "$repo"/src/agent/*.js; do
    [ -e "$f" ] && agent_files+=("$f")
done
inputs=(src/guest/build-image.sh src/guest/packages.txt src/guest/init)
for f in "${agent_files[@]}"; do
    inputs+=("src/agent/${f##*/}")
done
full_hash=$(cd "$repo" && sha256sum "${inputs[@]}" | sha256sum | cut -d' ' -f1)
hash=${full_hash:0:16}
image=$out/$hash

image_complete() {
    local dir=$1
    [ -s "$dir/manifest.json" ] && [ -s "$dir/vmlinuz" ] && [ -s "$dir/rootfs.qcow2" ] || return 1
    if grep -q '"initrdNeeded": true' "$dir/manifest.json"; then
        [ -s "$dir/initrd.img" ] || return 1
    fi
}

point_current_at() {
    # A relative target keeps OUTPUT_DIR movable; rename replaces the link atomically.
    ln -sfn "$1" "$out/.current.new"
    mv -T "$out/.current.new" "$out/current"
}

# Removes a directory a build left, unmounting what the build mounted in it first.
remove_tree() {
    local dir=$1 mnt
    while read -r mnt; do
        umount -l "$mnt" || true
    done < <(awk -v prefix="$dir/" 'index($2, prefix) == 1 { print $2 }' /proc/self/mounts | sort -r)
    rm -rf --one-file-system "$dir"
}

prune_old_images() {
    local kept=1 manifest dir
    while read -r _ manifest; do
        dir=${manifest%/manifest.json}
        # The glob also matches current, a link to one of the others.
        [ "$dir" = "$image" ] || [ -L "$dir" ] && continue
        if [ "$kept" -lt "$IMAGES_KEPT" ]; then
            kept=$((kept + 1))
            continue
        fi
        log "removing old image ${dir##*/}"
        remove_tree "$dir"
    done < <(stat -c '%Y %n' "$out"/*/manifest.json 2>/dev/null | sort -rn)
}

# One builder at a time per OUTPUT_DIR; a second one waits, then finds the image.
exec 9>"$out/.lock"
flock 9

if image_complete "$image"; then
    point_current_at "$hash"
    prune_old_images
    log "image $hash is up to date"
    echo "$image"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "building needs root (debootstrap, chroot)"
[ "$(dpkg --print-architecture)" = "$ARCH" ] || die "the guest is $ARCH; build it on an $ARCH host"
for tool in debootstrap chroot mkfs.ext4 qemu-img; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install debootstrap e2fsprogs qemu-utils)"
done

# Lines "URI SUITE" for every enabled binary source in the host's apt
# configuration, one-line and deb822 formats alike.
host_apt_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" {
                 i = 2
                 if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                 print $i, $(i + 1)
             }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'function value() { sub(/^[^:]*:[ \t]*/, ""); return $0 }
             function flush(   n, m, i, j, u, s) {
                 if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
                     n = split(uris, u); m = split(suites, s)
                     for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j]
                 }
                 types = uris = suites = enabled = ""
             }
             /^[ \t]*#/ { next }
             /^[ \t]*$/ { flush(); next }
             tolower($1) == "types:"   { types = value(); next }
             tolower($1) == "uris:"    { uris = value(); next }
             tolower($1) == "suites:"  { suites = value(); next }
             tolower($1) == "enabled:" { enabled = value(); next }
             END { flush() }' "$f"
    done
}

source_for() {
    host_apt_sources | awk -v suite="$1" '$2 == suite { print $1; exit }'
}

mirror=${DEBIAN_MIRROR:-$(source_for "$SUITE")}
[ -n "$mirror" ] || die "no '$SUITE' source in the host's apt configuration; set DEBIAN_MIRROR to a Debian mirror URI"
updates_mirror=$(source_for "$SUITE-updates")
security_mirror=$(source_for "$SUITE-security")

mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$here/packages.txt" | sort -u)
[ "${#packages[@]}" -gt 0 ] || die "packages.txt lists no package"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
fi

for stale in "$out"/.build-*; do
    [ -e "$stale" ] || continue
    log "removing interrupted build ${stale##*/}"
    remove_tree "$stale"
done
if [ -e "$image" ]; then
    log "image $hash is incomplete; rebuilding it"
    remove_tree "$image"
fi

tmp=$(mktemp -d "$out/.build-$hash.XXXXXX")
root=$tmp/root
on_exit() {
    [ -z "${tmp:-}" ] || [ ! -e "$tmp" ] || remove_tree "$tmp"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

in_root() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
        chroot "$root" "$@"
}

log "building image $hash (debootstrap $SUITE/$ARCH minbase)"
debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1 \
    || { tail -n 30 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }

{
    echo "deb $mirror $SUITE main"
    [ -z "$updates_mirror" ] || echo "deb $updates_mirror $SUITE-updates main"
    [ -z "$security_mirror" ] || echo "deb $security_mirror $SUITE-security main"
} >"$root/etc/apt/sources.list"
cat >"$root/etc/apt/apt.conf.d/90sessiond" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
# Keeps later installs in a session as slim as this one.
cat >"$root/etc/dpkg/dpkg.cfg.d/90sessiond-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/locale/*
EOF
# The guest has no init system; no package may try to start a service.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# Read by the kernel's install hook: an initrd that only loads what mounting
# the root disk needs, independent of the build host's hardware.
mkdir -p "$root/etc/tiny-initramfs"
cat >"$root/etc/tiny-initramfs/tiny-initramfs.conf" <<'EOF'
AUTO_MODULES=no
MICROCODE=no
INCLUDE_MODULES="virtio_pci,virtio_blk,ext4"
EOF

mount -t proc proc "$root/proc"

# python3-scipy, and with it sklearn, statsmodels and seaborn, depends on
# python3-pythran, an ahead-of-time compiler whose own dependencies are g++,
# boost, libxsimd, binutils and the Python headers: 54 packages, about 420 MiB.
# scipy needs pythran only to build. Upstream's metadata requires numpy
# alone at run time, no scipy module imports pythran, and the two modules
# pythran compiled (stats._stats_pythran, interpolate._rbfinterp_pythran) are
# ordinary extensions linking libc, libm, libstdc++ and libgcc_s. So an empty
# package that provides python3-pythran, installed before apt runs,
# satisfies the dependency (it is unversioned) and apt leaves the compiler
# out. The check after the install fails the build should a later package
# need the real one. A session that wants to compile with pythran has no
# compiler in the guest anyway.
log "installing sessiond-pythran-stub (provides python3-pythran)"
mkdir -p "$root/tmp/pythran-stub/DEBIAN"
cat >"$root/tmp/pythran-stub/DEBIAN/control" <<'EOF'
Package: sessiond-pythran-stub
Version: 1.0
Architecture: all
Maintainer: sessiond developers <dev@sessiond.invalid>
Section: misc
Priority: optional
Provides: python3-pythran
Description: stands in for python3-pythran in the sessiond guest
 python3-scipy depends on the pythran compiler, which it only needs to be
 built. This empty package satisfies that dependency without g++ and boost.
EOF
{
    in_root dpkg-deb --root-owner-group --build /tmp/pythran-stub /tmp/pythran-stub.deb \
        && in_root dpkg -i /tmp/pythran-stub.deb
} >"$tmp/apt.log" 2>&1 || { tail -n 30 "$tmp/apt.log" >&2; die "cannot install the python3-pythran stub"; }
rm -rf "$root/tmp/pythran-stub" "$root/tmp/pythran-stub.deb"

log "installing ${packages[*]}"
in_root apt-get -q update >>"$tmp/apt.log" 2>&1 || { tail -n 30 "$tmp/apt.log" >&2; die "apt-get update failed"; }
# initramfs-tools- : the kernel accepts any initramfs tool; take tiny-initramfs.
in_root apt-get -q -y install "${packages[@]}" initramfs-tools- >>"$tmp/apt.log" 2>&1 \
    || { tail -n 30 "$tmp/apt.log" >&2; die "apt-get install failed"; }
in_root apt-get clean
for unwanted in python3-pythran gcc-12 g++-12 cpp-12 libboost1.74-dev libpython3.11-dev; do
    # shellcheck disable=SC2016 # dpkg-query's own format, not shell expansions
    if in_root dpkg-query -W -f '${Status}' "$unwanted" 2>/dev/null | grep -q 'ok installed'; then
        die "$unwanted was installed: a package needs more than the python3-pythran stub provides"
    fi
done

kernel_versions=("$root"/lib/modules/*)
if [ "${#kernel_versions[@]}" -ne 1 ] || [ ! -d "${kernel_versions[0]}" ]; then
    die "expected exactly one kernel in the root"
fi
kver=${kernel_versions[0]##*/}
config=$root/boot/config-$kver
builtin_count=0
for option in VIRTIO_BLK VIRTIO_PCI VIRTIO_CONSOLE EXT4_FS; do
    if grep -qx "CONFIG_$option=y" "$config"; then
        builtin_count=$((builtin_count + 1))
    fi
done
cp "$root/boot/vmlinuz-$kver" "$tmp/vmlinuz"
if [ "$builtin_count" -eq 4 ]; then
    initrd_needed=false
    log "kernel $kver has virtio and ext4 built in: no initrd"
else
    initrd_needed=true
    [ -s "$root/boot/initrd.img-$kver" ] || die "tiny-initramfs made no initrd for $kver"
    cp "$root/boot/initrd.img-$kver" "$tmp/initrd.img"
    log "kernel $kver loads virtio or ext4 as modules: initrd.img of $(stat -c %s "$tmp/initrd.img") bytes"
fi

log "installing the agent and init"
install -d -m 755 "$root/opt/sessiond/agent"
install -m 644 "${agent_files[@]}" "$root/opt/sessiond/agent/"
install -m 755 "$here/init" "$root/opt/sessiond/init"
install -d -m 755 "$root/mnt/data"
echo sandbox >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
# debootstrap copied the build host's resolver; the guest has no network.
: >"$root/etc/resolv.conf"

# Caches a first import would otherwise build at every boot of every VM,
# slowly under TCG: matplotlib's font list and IPython's profile directory.
log "warming matplotlib and IPython caches"
in_root env MPLBACKEND=Agg python3 -c '
import matplotlib.pyplot
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
config = Config()
config.HistoryManager.hist_file = ":memory:"
InteractiveShell.instance(config=config)
' >>"$tmp/apt.log" 2>&1 || { tail -n 30 "$tmp/apt.log" >&2; die "cache warm-up failed"; }

python_version=$(in_root python3 -c 'import platform; print(platform.python_version())')
node_version=$(in_root node --version 2>/dev/null || true)  # empty without nodejs
node_version=${node_version#v}
# shellcheck disable=SC2016 # dpkg-query's own format, not shell expansions
in_root dpkg-query -W -f '${Package}\t${Version}\n' | sort >"$tmp/packages.tsv"
umount "$root/proc"

log "cleaning apt state, docs and logs"
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
    "$root"/var/lib/dpkg/*-old "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

# The packages' Python sources keep their times whatever SOURCE_DATE_EPOCH
# is: the .pyc files made for them record those times, and a mismatch would
# have every VM recompile what it imports.
find "$root" -newermt "@$SOURCE_DATE_EPOCH" ! -path "$root/usr/*.py" \
    -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +

log "writing manifest.json"
manifest_py='
import json, sys
(full_hash, build_date, epoch, kernel, python, node, cmdline, initrd, port, requested) = sys.argv[1:]
installed = dict(line.rstrip("\n").split("\t", 1) for line in sys.stdin if line.strip())
manifest = {
    "hash": full_hash,
    "buildDate": build_date,
    "sourceDateEpoch": int(epoch),
    "debian": {"suite": "bookworm", "architecture": "amd64"},
    "kernelVersion": kernel,
    "pythonVersion": python,
    "nodeVersion": node,
    "kernelCommandLine": cmdline,
    "initrdNeeded": initrd == "true",
    "files": {"kernel": "vmlinuz", "initrd": "initrd.img" if initrd == "true" else None,
              "rootDisk": "rootfs.qcow2"},
    "rootDevice": "/dev/vda",
    "agentPort": port,
    "requestedPackages": requested.split(),
    "packages": installed,
}
json.dump(manifest, sys.stdout, indent=2)
sys.stdout.write("\n")
'
in_root python3 -c "$manifest_py" "$full_hash" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SOURCE_DATE_EPOCH" \
    "$kver" "$python_version" "$node_version" "$KERNEL_CMDLINE" "$initrd_needed" "$PORT_NAME" "${packages[*]}" \
    <"$tmp/packages.tsv" >"$tmp/manifest.json"
rm -f "$tmp/packages.tsv"

log "packing the root into ext4 and qcow2"
used_mib=$(du -sx --block-size=1M "$root" | cut -f1)
size_mib=$((used_mib + used_mib / 4 + FREE_SPACE_MIB))
uuid=$(printf '%s' "${full_hash:16:32}" | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12})$/\1-\2-\3-\4-\5/')
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -t ext4 -L sessiond-root -U "$uuid" \
    -E "hash_seed=$uuid,root_owner=0:0,lazy_itable_init=0" -d "$root" "$tmp/rootfs.ext4" "${size_mib}M" >/dev/null
qemu-img convert -O qcow2 "$tmp/rootfs.ext4" "$tmp/rootfs.qcow2"
# The packed tree would double the image's footprint; nothing reads it once packed.
remove_tree "$root"
rm -f "$tmp/rootfs.ext4" "$tmp/debootstrap.log" "$tmp/apt.log"

# libvirt's qemu user reads these.
chmod 755 "$tmp"
chmod 644 "$tmp"/*
mv -T "$tmp" "$image"
tmp=""
point_current_at "$hash"
prune_old_images
log "image $hash built: rootfs.qcow2 of $(du -sh --apparent-size "$image/rootfs.qcow2" | cut -f1) from a ${used_mib} MiB root"
echo "$image"
