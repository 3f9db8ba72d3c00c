#!/usr/bin/env bash
# Installs what sessiond needs, builds it and the guest image, starts libvirt
# and runs the whole test suite, VM tests included, in an ASan+UBSan build
# (scripts/sanitize.sh, docs/hardening.md), then a short run of each fuzz
# target. SESSIOND_TEST_PLAIN=1 runs the suite in a plain build instead
# (build/, or $SESSIOND_BUILD_DIR).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export SESSIOND_IMAGE_DIR="${SESSIOND_IMAGE_DIR:-/var/lib/sessiond/images}"
"$root/scripts/install-deps.sh"
"$root/scripts/start-libvirt.sh"
"$root/src/guest/build-image.sh" "$SESSIOND_IMAGE_DIR"
if [[ "${SESSIOND_TEST_PLAIN:-0}" == 1 ]]; then
  "$root/scripts/build.sh"
  (cd "${SESSIOND_BUILD_DIR:-$root/build}" && ctest --output-on-failure --timeout 900)
else
  SESSIOND_SANITIZE_VM=1 "$root/scripts/sanitize.sh" address
fi
# Each fuzz target in its own ASan+UBSan build (docs/hardening.md).
"$root/scripts/fuzz.sh" 60
