#!/usr/bin/env bash
# Makes sure libvirtd and virtlogd run, for hosts where nothing manages them
# (containers, machines without systemd). On a systemd host it only asks
# systemd. Idempotent.
set -euo pipefail

# QEMU runs as libvirt-qemu. If that user cannot open /dev/kvm, libvirt
# decides its cached QEMU capabilities are stale and probes QEMU again on
# every domain start, which costs about a minute each time.
if [ -e /dev/kvm ]; then
  getent group kvm >/dev/null || groupadd --system kvm
  chgrp kvm /dev/kvm
  chmod 0660 /dev/kvm
  if id libvirt-qemu >/dev/null 2>&1 && ! id -nG libvirt-qemu | grep -qw kvm; then
    usermod -a -G kvm libvirt-qemu
  fi
fi

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl start virtlogd.socket libvirtd.socket libvirtd.service
  exit 0
fi

mkdir -p /run/libvirt
pgrep -x virtlogd >/dev/null || virtlogd --daemon
pgrep -x libvirtd >/dev/null || libvirtd --daemon
for _ in $(seq 1 100); do
  [ -S /run/libvirt/libvirt-sock ] && exit 0
  sleep 0.1
done
echo "start-libvirt: libvirtd did not open /run/libvirt/libvirt-sock" >&2
exit 1
