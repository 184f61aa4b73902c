#!/usr/bin/env bash
# Installs Neutron (pinned) from PyPI into bench/.neutron-venv for the storm benchmark's Neutron
# baseline (bench/neutron-agent.py). Idempotent; prints the venv's python on success.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.neutron-venv"
NEUTRON_VERSION=29.0.0
if ! "$venv/bin/python" -c "import neutron, importlib.metadata as m; assert m.version('neutron') == '$NEUTRON_VERSION'" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet "neutron==$NEUTRON_VERSION" >&2
fi
echo "$venv/bin/python"
