#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks and builds the project. Idempotent: quick when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

need_apt=()
for cmd in ipset:ipset iptables:iptables ip:iproute2 conntrack:conntrack rabbitmq-server:rabbitmq-server \
           nsenter:util-linux ping:iputils-ping ps:procps arping:arping iperf3:iperf3 mariadbd:mariadb-server python3:python3 cc:gcc \
           etcd:etcd-server etcdctl:etcd-client ovs-vswitchd:openvswitch-switch ethtool:ethtool; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need_apt+=("${cmd#*:}")
done
# The Neutron tests' virtualenv (scripts/neutron-venv.sh): venv, and Python's headers for uWSGI's build.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  >/dev/null 2>&1 || need_apt+=(python3-dev)
# nft is the tests' oracle for the nftables backend. Looked for by path: under npm, node_modules/.bin
# holds an unrelated `nft` (@vercel/nft).
[ -x /usr/sbin/nft ] || [ -x /sbin/nft ] || need_apt+=(nftables)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== apt-get install ${need_apt[*]}"
  apt-get update -qq
  # Services stay stopped: the tests run Open vSwitch (and RabbitMQ, MariaDB) of their own, inside
  # namespaces they make; a system ovs-vswitchd would change the machine's own namespace.
  deny_start=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && deny_start=1
  fi
  status=0
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null || status=$?
  [ -z "$deny_start" ] || rm -f /usr/sbin/policy-rc.d
  [ "$status" -eq 0 ] || exit "$status"
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust toolchain) is required to build the addon from source" >&2; exit 1; }
command -v node >/dev/null || { echo "setup: Node.js >= 20.17 is required" >&2; exit 1; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== npm ci"
  npm ci --no-audit --no-fund
fi
echo "== build (native addon + TypeScript)"
npm run build
# A real neutron-server for the Neutron tests: Neutron from PyPI, PyMySQL, uWSGI and our OVS-agent
# driver in bench/.neutron-venv (about 2 minutes the first time; a stamp check afterwards).
echo "== neutron venv"
bash scripts/neutron-venv.sh >/dev/null
# Keystone for the OpenStack compute-host tests (bench/.openstack-venv; half a minute the first time).
echo "== openstack venv"
bash scripts/openstack-venv.sh >/dev/null
