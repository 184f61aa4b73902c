#!/usr/bin/env bash
# The README's test command (and npm test): set up, lint and format checks, then Rust unit tests and
# the ava suite. The privileged tests (kernel, broker) must run: one that cannot fails instead of
# being skipped. The suite's RabbitMQ node is started here, beside (never instead of) the machine's,
# and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
export SG_REQUIRE_KERNEL=1

echo "== lint"
# Every lint and format check runs before the tests; a failure fails the run at its end, after the
# tests have said what they have to say.
lint=0
bash scripts/lint.sh || lint=$?

echo "== cargo test"
cargo test --release -p sg-agent-core

echo "== the tests' RabbitMQ node"
# Exports SG_TEST_RABBIT_NODE, _PORT and _DIR; the node is stopped when this script exits, and by a
# watcher of this script's process should it be killed before its trap can run.
broker=$(node --import tsx test/helpers/test-broker.ts start $$)
eval "$broker"
trap 'node --import tsx test/helpers/test-broker.ts stop' EXIT
echo "$SG_TEST_RABBIT_NODE on 127.0.0.1:$SG_TEST_RABBIT_PORT"

echo "== ava"
tap=$(mktemp)
set +e
npx ava --tap 2>&1 | tee "$tap"
status=${PIPESTATUS[0]}
set -e
ok=$(grep -cE '^ok ' "$tap" || true)
skip=$(grep -cE '^ok .*# SKIP' "$tap" || true)
fail=$(grep -cE '^not ok ' "$tap" || true)
rm -f "$tap"
echo "ava: $((ok - skip)) passed, ${skip} skipped, ${fail} failed"
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then
  # TAP prints nothing for a worker that outlived its tests (a timer or socket left open) until ava's
  # inactivity timeout ended it, nor for a process.exit() after the last test: say so.
  echo "ava exited ${status} with no failed test: a test file's worker was held open after its tests, or exited on its own" >&2
fi
if [ "$lint" -ne 0 ]; then
  echo "lint failed (npm run lint names what; npm run format rewrites the formatting)" >&2
  [ "$status" -ne 0 ] || status=$lint
fi
exit "$status"
