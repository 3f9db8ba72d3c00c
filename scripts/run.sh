#!/usr/bin/env bash
# Installs what sessiond needs, builds it and runs it in the foreground with
# config/sessiond.json (or the file given as the first argument). When the
# configuration has a libvirt pool, it also starts libvirt and builds the
# guest image.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
config="${1:-$root/config/sessiond.json}"
"$root/scripts/install-deps.sh"
if grep -Eq '"backend"[[:space:]]*:[[:space:]]*"libvirt"' "$config"; then
  images=$(sed -n 's/.*"imageDirectory"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$config" | head -n 1)
  "$root/scripts/start-libvirt.sh"
  "$root/src/guest/build-image.sh" "${images:-/var/lib/sessiond/images}"
fi
"$root/scripts/build.sh"
exec "${SESSIOND_BUILD_DIR:-$root/build}/sessiond" --config "$config"
