#!/usr/bin/env bash
# scripts/sanitize.sh address|thread
# Builds sessiond with ASan+UBSan (address) or TSan (thread) into build-asan/
# or build-tsan/ (or $SESSIOND_SANITIZE_BUILD_DIR) and runs the test suite
# there, so the tests and the daemon they start are the instrumented ones.
# VM tests are left out unless SESSIOND_SANITIZE_VM=1. Fails on any test
# failure and on any sanitizer report, the daemon's included.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mode="${1:-}"
case "$mode" in
  address) build="${SESSIOND_SANITIZE_BUILD_DIR:-$root/build-asan}" ;;
  thread) build="${SESSIOND_SANITIZE_BUILD_DIR:-$root/build-tsan}" ;;
  *) echo "usage: $0 address|thread" >&2; exit 2 ;;
esac
supp="$root/tests/sanitizers"

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
# -O1, as the sanitizers' documentation recommends: -O0 code runs much slower.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
  -DSESSIOND_SANITIZE="$mode" "${launcher[@]}" >/dev/null
cmake --build "$build" --target sessiond_tests -j"$(nproc)"

# Halting on the first error makes a report fail the process that hit it.
# Reports go to each process's stderr: the test's, which ctest shows, or the
# daemon's, which is its log, and tests/support/daemon.hpp fails the test
# whose daemon's log holds one. (log_path files would miss UBSan's reports:
# combined with ASan, it writes them to stderr whatever its log_path.)
common="halt_on_error=1:symbolize=1"
if [[ "$mode" == address ]]; then
  export ASAN_OPTIONS="$common:detect_leaks=1"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="$common:print_stacktrace=1:suppressions=$supp/ubsan.supp"
else
  export TSAN_OPTIONS="$common:second_deadlock_stack=1:suppressions=$supp/tsan.supp"
fi

exclude=()
if [[ "${SESSIOND_SANITIZE_VM:-0}" != 1 ]]; then exclude=(-E 'Libvirt|Vm|VM|Microvm'); fi
cd "$build"
ctest --output-on-failure --timeout 900 "${exclude[@]}"
