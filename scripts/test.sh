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
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then
  # TAP prints nothing for a worker that outlived its tests (a timer or socket left open) until ava's
  # inactivity timeout ended it, nor for a process.exit() after the last test: say so.
  echo "ava exited ${status} with no failed test: a test file's worker was held open after its tests, or exited on its own" >&2
fi
exit "$status"
