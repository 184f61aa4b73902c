#!/usr/bin/env bash
# Packs what a release would publish, from this tree's own build: the main package and the platform
# package of this machine (linux-x64-gnu), as tarballs in $1 (default: ./pack).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-pack}
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -f native/sg-agent.linux-x64-gnu.node ] && [ -d dist/src ] || npm run build >&2
# The platform package carries only the binary; copy it in, pack, and leave the tree as it was.
cp native/sg-agent.linux-x64-gnu.node npm/linux-x64-gnu/
trap 'rm -f npm/linux-x64-gnu/sg-agent.linux-x64-gnu.node' EXIT
(cd npm/linux-x64-gnu && npm pack --silent --pack-destination "$out" >/dev/null)
npm pack --silent --ignore-scripts --pack-destination "$out" >/dev/null
ls "$out"/*.tgz
