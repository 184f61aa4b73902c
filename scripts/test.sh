#!/usr/bin/env bash
# The README's test command: set up, then Rust unit tests and the ava suite (kernel tests must run, not skip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
export SG_REQUIRE_KERNEL=1

echo "== cargo test"
cargo test --release -p sg-agent-core

echo "== ava"
tap=$(mktemp)
set +e
npx ava --tap 2>&1 | tee "$tap"
status=${PIPESTATUS[0]}
set -e
pass=$(grep -cE '^ok ' "$tap" || true)
fail=$(grep -cE '^not ok ' "$tap" || true)
rm -f "$tap"
echo "ava: ${pass} passed, ${fail} failed"
exit "$status"
