#!/usr/bin/env bash
# Installs every Debian 12 package that building, running and testing sessiond
# need. Idempotent and non-interactive: it asks apt only when something is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config
  libboost-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libvirt-dev libseccomp-dev
  libgtest-dev libgmock-dev
  # the sandboxes' interpreter and libraries (Debian's, as in the guest image)
  python3 python3-ipython python3-numpy python3-pandas python3-matplotlib
  # the microVM backend: libvirt, QEMU, and what builds the guest image
  libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils debootstrap e2fsprogs
  # running and testing
  curl procps util-linux
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (sessiond creates namespaces and cgroups)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
