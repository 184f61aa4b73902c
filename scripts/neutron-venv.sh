#!/usr/bin/env bash
# The Python side of the Neutron tests and benchmark, in one virtualenv (bench/.neutron-venv, ignored
# by git, kept between runs): Neutron (pinned, from PyPI, through bench/neutron-venv.sh), PyMySQL for
# its database, uWSGI to serve its API (Neutron 29 has no neutron-server command: the API is a WSGI
# app), and our OVS-agent firewall driver package (packaging/neutron). Idempotent: a stamp records what
# was installed, so a second run only compares it. Prints the venv's python.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/bench/.neutron-venv"
EXTRAS=(PyMySQL==1.2.4 uWSGI==2.0.31)

driver_hash() {
  (cd "$repo/packaging/neutron" && find . -type f \( -name '*.py' -o -name '*.toml' \) -not -path './build/*' | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16
}
want="extras=${EXTRAS[*]} driver=$(driver_hash)"
stamp="$venv/.sg-neutron-stamp"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi

bash "$repo/bench/neutron-venv.sh" >/dev/null
echo "== neutron venv: ${EXTRAS[*]} and the sg_agent firewall driver" >&2
# uWSGI compiles (about 45 s): it needs a C compiler and Python's headers.
"$venv/bin/pip" install --quiet "${EXTRAS[@]}" >&2
# Straight from the tree: the package's own build backend downloads nothing and writes nothing there.
"$venv/bin/pip" install --quiet --no-deps --force-reinstall "$repo/packaging/neutron" >&2
echo "$want" > "$stamp"
echo "$venv/bin/python"
