#!/usr/bin/env bash
# Packs what a release would publish, from this tree's own build: the main package and the platform
# package of this machine (linux-x64-gnu), as tarballs in $1 (default: ./pack). Like `napi prepublish`,
# it adds the platform packages as optionalDependencies of the main package at pack time (the repo's
# package.json has none, so that `npm ci` works before they are published).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out=${1:-pack}
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -f native/sg-agent.linux-x64-gnu.node ] && [ -f dist/index.js ] || npm run build >&2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage/platform" "$stage/main"
cp npm/linux-x64-gnu/package.json npm/linux-x64-gnu/README.md native/sg-agent.linux-x64-gnu.node "$stage/platform/"
(cd "$stage/platform" && npm pack --silent --pack-destination "$out" >/dev/null)

cp -r package.json README.md dist native packaging docs "$stage/main/"
rm -f "$stage/main/native/"*.node
node -e '
  const fs = require("fs"), path = require("path");
  const [stage, repo] = process.argv.slice(1);
  const pkg = JSON.parse(fs.readFileSync(path.join(stage, "package.json"), "utf8"));
  pkg.optionalDependencies = {};
  for (const d of fs.readdirSync(path.join(repo, "npm"))) {
    const p = JSON.parse(fs.readFileSync(path.join(repo, "npm", d, "package.json"), "utf8"));
    pkg.optionalDependencies[p.name] = pkg.version;
  }
  fs.writeFileSync(path.join(stage, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
' "$stage/main" "$repo"
(cd "$stage/main" && npm pack --silent --ignore-scripts --pack-destination "$out" >/dev/null)
ls "$out"/*.tgz
