#!/usr/bin/env bash
# scripts/sanitize.sh address|thread
# Builds sessiond with ASan+UBSan (address) or TSan (thread) into build-asan/
# or build-tsan/ (or $SESSIOND_SANITIZE_BUILD_DIR) and runs the test suite
# there, so the tests and the daemon they start are the instrumented ones.
# VM tests are left out unless SESSIOND_SANITIZE_VM=1. Fails on any test
# failure and on any sanitizer report, the daemon's included: every
# instrumented process writes its reports to files that are checked at the end.
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
# -O1: instrumented -O0 code makes the end-to-end tests' timeouts too tight.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
  -DSESSIOND_SANITIZE="$mode" "${launcher[@]}" >/dev/null
cmake --build "$build" --target sessiond_tests -j"$(nproc)"

reports="$(mktemp -d /tmp/sessiond-sanitize-XXXXXX)"
trap 'rm -rf "$reports"' EXIT
# Each process writes to $reports/<tool>.<pid>; halting on the first error
# makes a report fail the process that hit it as well.
common="halt_on_error=1:symbolize=1"
if [[ "$mode" == address ]]; then
  export ASAN_OPTIONS="$common:detect_leaks=1:abort_on_error=0:log_path=$reports/asan"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="$common:print_stacktrace=1:suppressions=$supp/ubsan.supp:log_path=$reports/ubsan"
else
  export TSAN_OPTIONS="$common:second_deadlock_stack=1:suppressions=$supp/tsan.supp:log_path=$reports/tsan"
fi

exclude=()
if [[ "${SESSIOND_SANITIZE_VM:-0}" != 1 ]]; then exclude=(-E 'Libvirt|Vm|VM|Microvm'); fi
status=0
(cd "$build" && ctest --output-on-failure --timeout 900 "${exclude[@]}") || status=$?

if compgen -G "$reports/*" >/dev/null; then
  for file in "$reports"/*; do
    echo "=== sanitizer report $(basename "$file") ===" >&2
    cat "$file" >&2
  done
  status=1
fi
exit "$status"
