#!/usr/bin/env bash
# Installs what sessiond needs, builds it and runs the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
cd "${SESSIOND_BUILD_DIR:-$root/build}"
ctest --output-on-failure --timeout 600
