#!/usr/bin/env bash
# Installs what sessiond needs, builds it and the guest image, starts libvirt
# and runs the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export SESSIOND_IMAGE_DIR="${SESSIOND_IMAGE_DIR:-/var/lib/sessiond/images}"
"$root/scripts/install-deps.sh"
"$root/scripts/start-libvirt.sh"
"$root/src/guest/build-image.sh" "$SESSIOND_IMAGE_DIR"
"$root/scripts/build.sh"
(cd "${SESSIOND_BUILD_DIR:-$root/build}" && ctest --output-on-failure --timeout 900)
# A short run of each fuzz target, in its own ASan+UBSan build (docs/hardening.md).
"$root/scripts/fuzz.sh" 60
