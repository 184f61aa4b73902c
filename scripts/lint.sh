#!/usr/bin/env bash
# Lint and format checks, run by the README's test command (scripts/test.sh) before any test: the
# crates formatted by rustfmt and free of clippy warnings (warnings are errors), the TypeScript
# checked by ESLint with type information (no floating promises among its rules) and formatted by
# Prettier. Every check runs; the script fails if any did. `npm run format` rewrites what
# Prettier and rustfmt would change.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# A toolchain installed by rustup may lack the two components (a minimal profile): add them.
if command -v rustup >/dev/null && ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null
fi

failed=()
run() {
  local name=$1; shift
  echo "== lint: $name"
  "$@" || failed+=("$name")
}
run "cargo fmt" cargo fmt --all --check
run "cargo clippy" cargo clippy --release -q -p sg-agent-core --all-targets -- -D warnings
run "cargo clippy (addon)" cargo clippy --release -q -p sg-agent-native --lib -- -D warnings
run "prettier" npx prettier --check --log-level warn .
run "eslint" npx eslint --max-warnings 0 .
if [ ${#failed[@]} -gt 0 ]; then
  echo "lint failed: ${failed[*]}" >&2
  exit 1
fi
echo "lint: clean"
