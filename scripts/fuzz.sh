#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan in a
# build tree of their own, then runs each for the given number of seconds
# (default 60) on a copy of its seed corpus. Fails on any crash, leak,
# sanitizer report or timeout; the input that caused it is left in the
# target's run directory. Prints the executions per target. 0 seconds only
# builds the targets.
#
#   scripts/fuzz.sh [seconds-per-target]
#   SESSIOND_FUZZ_BUILD_DIR: the build tree (default: build-fuzz in the repository)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-60}"
build="${SESSIOND_FUZZ_BUILD_DIR:-$root/build-fuzz}"
targets=(http_request multipart request_body agent_channel dns_message)

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
# -O1 with assertions kept (no NDEBUG): nlohmann/json's and Boost's asserts
# are checks too.
cmake -S "$root" -B "$build" -DSESSIOND_FUZZ=ON -DSESSIOND_BUILD_TESTS=OFF \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" "${launcher[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"
[ "$seconds" -gt 0 ] || exit 0

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
failed=()
declare -A executions=()
for target in "${targets[@]}"; do
  run="$build/fuzz-run/$target"
  rm -rf "$run"
  mkdir -p "$run/corpus"
  cp "$root/tests/fuzz/corpus/$target/"* "$run/corpus/"
  echo "fuzz: $target for ${seconds}s"
  status=0
  "$build/tests/fuzz/fuzz_$target" "$run/corpus" -dict="$root/tests/fuzz/$target.dict" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$run/" >"$run/log" 2>&1 || status=$?
  executions[$target]="$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log")"
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    echo "fuzz: $target FAILED (exit $status); its log: $run/log" >&2
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' "$run/log" >&2 || tail -20 "$run/log" >&2
  fi
done

echo "fuzz: executions in ${seconds}s per target"
for target in "${targets[@]}"; do
  printf '  %-14s %s\n' "$target" "${executions[$target]:-?}"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
