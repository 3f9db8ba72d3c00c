#!/usr/bin/env bash
# MicroVM figures: boot-to-ready time of one VM (KVM where it can run guests,
# TCG otherwise), allocation latency from a warm VM pool, and the
# code-interpreter figures (round trip per session type, a 10 MB CSV).
# Usage: bench/vm.sh [bench_latency flags]   (default: 10 allocations, 100 round trips)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${SESSIOND_BUILD_DIR:-$root/build}"
images="${SESSIOND_IMAGE_DIR:-/var/lib/sessiond/images}"
port=18081  # listen.port in bench/sessiond-bench-vm.json
"$root/scripts/install-deps.sh"
"$root/scripts/start-libvirt.sh"
"$root/src/guest/build-image.sh" "$images" >/dev/null
SESSIOND_BUILD_TYPE=Release "$root/scripts/build.sh"

config=$(mktemp)
trap 'rm -f "$config"' EXIT
sed "s|\"accelerator\": \"auto\"|\"accelerator\": \"auto\", \"imageDirectory\": \"$images\"|" \
  "$root/bench/sessiond-bench-vm.json" >"$config"

start=$(date +%s%N)
"$build/sessiond" --config "$config" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true; rm -f "$config"' EXIT
ready=""
for _ in $(seq 1 6000); do
  if curl -sf "http://127.0.0.1:$port/pools/default" | grep -q '"unallocated":[1-9]'; then
    ready=$(date +%s%N)
    break
  fi
  sleep 0.05
done
[ -n "$ready" ] || { echo "no VM became ready in 300 s" >&2; exit 1; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; backend: libvirt; config: bench/sessiond-bench-vm.json"
printf '%-52s %8s\n' "measure" "ms"
printf '%-52s %8d\n' "daemon start to first VM ready (boot + agent hello)" $(( (ready - start) / 1000000 ))
"$build/bench/bench_latency" --port "$port" --allocations 10 --round-trips 100 "$@"
echo
# NodeLTS and Shell pools keep no VM ready (so the boot above is one VM's):
# their first request waits for a boot, then the round trips are timed.
"$build/bench/bench_interpreter" --port "$port" --python default --node node --shell shell \
  --round-trips 50 --csv-runs 3
