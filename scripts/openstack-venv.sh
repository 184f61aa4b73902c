#!/usr/bin/env bash
# Keystone for the OpenStack compute-host tests (test/helpers/openstack-env.ts), in a virtualenv of its
# own (bench/.openstack-venv, ignored by git, kept between runs): Keystone pins other versions of the
# oslo libraries than Neutron does, so it cannot share bench/.neutron-venv. Its API is served by the
# uWSGI of the Neutron venv (`--home` this venv): same Python, no second compile. Everything else the
# compute hosts run (the OVS agent, os-vif, keystonemiddleware) is already in the Neutron venv.
# Idempotent: a stamp records what was installed, so a second run only compares it. Prints the venv's python.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/bench/.openstack-venv"
PACKAGES=(keystone==30.0.0 PyMySQL==1.2.4)
want="packages=${PACKAGES[*]}"
stamp="$venv/.sg-openstack-stamp"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi
# Two runs at once (two test files, a benchmark) must not both build it: the second waits. The lock is
# on bench/ itself, so that no lock file is left behind.
exec 9<"$repo/bench"
flock 9
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi
echo "== openstack venv: ${PACKAGES[*]}" >&2
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet "${PACKAGES[@]}" >&2
echo "$want" > "$stamp"
echo "$venv/bin/python"
