#!/usr/bin/env bash
# Builds sessiond, starts it with bench/sessiond-bench.json and prints the
# latency and code-interpreter figures. Usage: bench/run.sh [bench_latency flags]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${SESSIOND_BUILD_DIR:-$root/build}"
"$root/scripts/install-deps.sh"
SESSIOND_BUILD_TYPE=Release "$root/scripts/build.sh"
config="$root/bench/sessiond-bench.json"
port=18080  # listen.port in bench/sessiond-bench.json

"$build/sessiond" --config "$config" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; backend: namespace; config: bench/sessiond-bench.json"
"$build/bench/bench_latency" --port "$port" "$@"
echo
"$build/bench/bench_interpreter" --port "$port" --python data --node node --shell shell
