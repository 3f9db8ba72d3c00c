#!/usr/bin/env bash
# MicroVM figures: boot-to-ready time of one VM (KVM where it can run guests,
# TCG otherwise), allocation latency from a warm VM pool, and the
# code-interpreter figures (round trip per session type, a 10 MB CSV); the
# table and bench/results/<timestamp>-libvirt.json as bench/run.sh writes them.
# Usage: bench/vm.sh [--quick]   (default: 10 allocations, 100 round trips)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${SESSIOND_BUILD_DIR:-$root/build}"
images="${SESSIOND_IMAGE_DIR:-/var/lib/sessiond/images}"
python=/usr/bin/python3
config=bench/sessiond-bench-vm.json
port=18081  # listen.port in $config
mode=full allocations=10 round_trips=100 interp_round_trips=50 csv_runs=3
case "${1:-}" in
  "") ;;
  --quick) mode=quick allocations=3 round_trips=20 interp_round_trips=10 csv_runs=1 ;;
  *) sed -n '2,6p' "$0" >&2; exit 2 ;;
esac
"$root/scripts/install-deps.sh"
"$root/scripts/start-libvirt.sh"
"$root/src/guest/build-image.sh" "$images" >/dev/null
SESSIOND_BUILD_TYPE=Release "$root/scripts/build.sh"
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")

run_config=$(mktemp)
figures=$(mktemp)
trap 'rm -f "$run_config" "$figures"' EXIT
sed "s|\"accelerator\": \"auto\"|\"accelerator\": \"auto\", \"imageDirectory\": \"$images\"|" \
  "$root/$config" >"$run_config"

load=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s%N)
"$build/sessiond" --config "$run_config" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true; rm -f "$run_config" "$figures"' EXIT
ready=""
for _ in $(seq 1 6000); do
  if curl -sf "http://127.0.0.1:$port/pools/default" | grep -q '"unallocated":[1-9]'; then
    ready=$(date +%s%N)
    break
  fi
  sleep 0.05
done
[ -n "$ready" ] || { echo "no VM became ready in 300 s" >&2; exit 1; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; backend: libvirt; $build_type build; config: $config"
"$python" "$root/bench/results.py" add "$figures" --id vm.boot --measure "daemon start to first VM ready (boot + agent hello)" \
  --unit s "seconds=$(( (ready - start) / 1000000 ))e-3"
"$build/bench/bench_latency" --port "$port" --json "$figures" --allocations "$allocations" \
  --concurrent-allocations 0 --round-trips "$round_trips"
# NodeLTS and Shell pools keep no VM ready (so the boot above is one VM's):
# their first request waits for a boot, then the round trips are timed.
"$build/bench/bench_interpreter" --port "$port" --json "$figures" --python default --node node --shell shell \
  --round-trips "$interp_round_trips" --csv-runs "$csv_runs"
echo
"$python" "$root/bench/results.py" write "$figures" --backend libvirt --build-type "$build_type" --config "$config" \
  --mode "$mode" --parameters "$allocations allocations, $round_trips round trips; interpreter: $interp_round_trips round trips, $csv_runs CSV runs" \
  --load "$load"
