#!/usr/bin/env bash
# The benchmark suite (docs/performance.md): builds sessiond in Release,
# starts it with bench/sessiond-bench.json (namespace backend), runs every
# benchmark, prints one table and writes bench/results/<timestamp>-namespace.json
# with the previous run's figures beside the new ones.
#
# Usage: bench/run.sh [--quick] [--density N] [--only NAMES]
#   --quick       fewer iterations: a smoke run of a minute or two
#   --density N   idle pandas sessions the density benchmark tries for (default 200)
#   --only NAMES  only these, comma-separated: latency, interpreter, throughput,
#                 wrk, refill, burst, density
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${SESSIOND_BUILD_DIR:-$root/build}"
python=/usr/bin/python3  # Debian's: results.py needs only its standard library
config=bench/sessiond-bench.json
port=18080                   # listen.port in $config
cgroup_name=sessiond-bench   # cgroupName in $config

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
quick=0 density="" only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --density) [ $# -ge 2 ] || usage; density="$2"; shift 2 ;;
    --only) [ $# -ge 2 ] || usage; only=",$2,"; shift 2 ;;
    *) usage ;;
  esac
done
wanted() { [ -z "$only" ] || [[ $only == *",$1,"* ]]; }

if [ "$quick" = 1 ]; then
  mode=quick
  allocations=10 concurrent=20 clients=20 round_trips=200 interp_round_trips=50 csv_runs=1
  tp_sessions=8 tp_seconds=3 wrk_seconds=3 refill=5 burst=20 density_default=5
else
  mode=full
  allocations=500 concurrent=500 clients=20 round_trips=1000 interp_round_trips=200 csv_runs=5
  tp_sessions=64 tp_seconds=10 wrk_seconds=10 refill=50 burst=200 density_default=200
fi
[ -n "$only" ] && [ "$mode" = full ] && mode=partial
density=${density:-$density_default}
wrk_connections=64 burst_ready=10

"$root/scripts/install-deps.sh"
SESSIOND_BUILD_TYPE=Release "$root/scripts/build.sh"
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")

base="http://127.0.0.1:$port"
# A second daemon with the same cgroupName would destroy this one's sandboxes
# as leftovers when it starts (and the other way round).
if pgrep -f -- "--config .*$config" >/dev/null || curl -sf "$base/healthz" >/dev/null 2>&1; then
  echo "bench: another benchmark's sessiond is running (port $port, cgroup $cgroup_name); stop it first" >&2
  exit 1
fi
figures=$(mktemp)
log="$build/bench-sessiond.log"
load=$(cut -d' ' -f1-3 /proc/loadavg)
"$build/sessiond" --config "$root/$config" >"$log" 2>&1 &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true; rm -f "$figures"' EXIT
for _ in $(seq 1 600); do
  curl -sf "$base/healthz" >/dev/null && break
  kill -0 $daemon 2>/dev/null || { echo "bench: sessiond exited; its log:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; backend: namespace; $build_type build; config: $config; $mode run"

bench() { "$build/bench/bench_$1" "${@:2}" --port "$port" --json "$figures"; }
bench pools settle  # the configured pools' sandboxes start before anything is timed
parameters=()
if wanted latency; then
  bench latency --pool default --allocations "$allocations" --concurrent-allocations "$concurrent" \
    --clients "$clients" --round-trips "$round_trips"
  parameters+=("latency: $allocations allocations sequential and $concurrent from $clients clients, $round_trips round trips")
fi
if wanted interpreter; then
  bench interpreter --python data --node node --shell shell --round-trips "$interp_round_trips" --csv-runs "$csv_runs"
  parameters+=("interpreter: $interp_round_trips round trips a type, $csv_runs CSV runs")
fi
if wanted throughput; then
  bench pools throughput --sessions "$tp_sessions" --clients "$tp_sessions" --seconds "$tp_seconds"
  parameters+=("throughput: $tp_sessions sessions and clients, $tp_seconds s")
fi
if wanted wrk; then
  id=bench-wrk-session
  query="identifier=$id&api-version=2024-02-02-preview"
  curl -sf -X POST "$base/pools/default/code/execute?$query" -H 'Content-Type: application/json' \
    -d '{"properties":{"code":"1"}}' >/dev/null
  wrk -t1 -c"$wrk_connections" -d"${wrk_seconds}s" --latency "$base/pools/default/session?$query" |
    "$python" "$root/bench/results.py" wrk "$figures" --id session.get \
      --measure "GET /session of an existing session (wrk, keep-alive)"
  curl -sf -X DELETE "$base/pools/default/session?$query" >/dev/null
  parameters+=("wrk: -t1 -c$wrk_connections -d${wrk_seconds}s")
fi
if wanted refill; then
  bench pools refill --sessions "$refill" --daemon-pid "$daemon"
  parameters+=("refill: $refill sandboxes")
fi
if wanted burst; then
  bench pools burst --sessions "$burst" --ready "$burst_ready"
  parameters+=("burst: $burst identifiers, $burst_ready ready")
fi
if wanted density; then
  # Last: it deletes the other pools, so that every sandbox process is its own.
  bench pools density --sessions "$density" --daemon-pid "$daemon" --cgroup-name "$cgroup_name"
  parameters+=("density: up to $density sessions, stopping below 3 GiB MemAvailable")
fi
kill -0 $daemon 2>/dev/null || { echo "bench: sessiond died during the run; its log: $log" >&2; exit 1; }

echo
joined=$(printf '%s; ' "${parameters[@]}")
"$python" "$root/bench/results.py" write "$figures" --backend namespace --build-type "$build_type" \
  --config "$config" --mode "$mode" --parameters "${joined%; }" --load "$load"
