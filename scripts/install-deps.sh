#!/usr/bin/env bash
# Installs every Debian 12 package that building, running and testing sessiond
# need. Idempotent and non-interactive: it asks apt only when something is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config
  libboost-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libssl-dev libvirt-dev libseccomp-dev
  libgtest-dev libgmock-dev
  # scripts/fuzz.sh: the libFuzzer targets build with clang and its sanitizer runtimes
  clang libclang-rt-14-dev llvm
  # What the namespace sandboxes find in the host's /usr: the same Debian
  # packages as src/guest/packages.txt puts in the guest image
  # (docs/environment.md). Not in Debian 12: pyarrow.
  python3 python3-ipython
  # OpenBLAS: numpy and scipy take any BLAS, and apt would take the slow
  # reference one. Its alternatives take over libblas.so.3 and liblapack.so.3.
  libopenblas0-pthread
  python3-numpy python3-pandas python3-matplotlib python3-scipy python3-sklearn
  python3-statsmodels python3-seaborn python3-sympy python3-networkx
  python3-openpyxl python3-xlsxwriter python3-docx python3-reportlab python3-pil
  python3-lxml python3-bs4 python3-tabulate python3-requests python3-pkg-resources
  # the NodeLTS and Shell session types (/usr/bin/node, /bin/bash)
  nodejs bash
  # the microVM backend: libvirt, QEMU, and what builds the guest image
  libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils debootstrap e2fsprogs
  # running and testing
  curl procps util-linux
  # sessions with egress (docs/networking.md): the bridge, veth pairs and their rules
  iproute2 nftables
  # custom containers: images from OCI layouts and archives
  skopeo umoci
  # bench/run.sh: wrk, the HTTP load generator
  wrk
  # tests/conformance: the HTTP libraries Semantic Kernel Python (httpx) and
  # AutoGen (aiohttp, with anyio's async files) send their requests with
  python3-httpx python3-aiohttp python3-anyio
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (sessiond creates namespaces and cgroups)" >&2
  exit 1
fi

# One dpkg-query for all of them: each call reads the whole dpkg database.
# Status-Abbrev "ii" (or "hi", held): installed, no error flag.
declare -A installed=()
while read -r name status; do
  if [[ $status == [ih]i ]]; then installed[$name]=1; fi
done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null)
missing=()
for p in "${packages[@]}"; do
  [ -n "${installed[$p]:-}" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
