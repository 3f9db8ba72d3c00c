#!/usr/bin/env bash
# Installs what sessiond needs, builds it and runs it in the foreground with
# config/sessiond.json (or the file given as the first argument).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
config="${1:-$root/config/sessiond.json}"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
exec "${SESSIOND_BUILD_DIR:-$root/build}/sessiond" --config "$config"
