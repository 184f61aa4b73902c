#!/usr/bin/env bash
# The README's main job: set up (apt packages, npm ci, build) if needed, then the local end-to-end run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node --import tsx scripts/demo.ts
