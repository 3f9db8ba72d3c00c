#!/usr/bin/env bash
# The soak (docs/hardening.md, Soak): builds sessiond and its tests in
# Release and runs Soak.* with 10,000 create-execute-destroy cycles from
# concurrent clients. Prints the cycles, cycles/s, failed requests and the
# daemon's RSS, descriptors and threads first -> last; fails when a request
# failed or a bound was crossed.
#
# Usage: bench/soak.sh [CYCLES [CLIENTS]]   (default 10000 cycles, 4 clients)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${SESSIOND_BUILD_DIR:-$root/build}"
cycles="${1:-10000}"
clients="${2:-4}"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target sessiond_tests
echo "soak: $cycles cycles, $clients clients, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
SESSIOND_SOAK_CYCLES="$cycles" SESSIOND_SOAK_CLIENTS="$clients" \
  "$build/tests/sessiond_tests" --gtest_filter='Soak.*' --gtest_color=no
