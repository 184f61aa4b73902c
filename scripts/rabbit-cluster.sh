#!/usr/bin/env bash
# A RabbitMQ cluster of three nodes on this machine, beside (never instead of) the default node on
# 5672: distinct node names, AMQP ports, distribution ports and data directories. Used by the cluster
# tests and bench:scale; an operator can use it to try failover by hand.
#
#   scripts/rabbit-cluster.sh start            start the three nodes and join them (idempotent)
#   scripts/rabbit-cluster.sh stop             stop them and remove their data
#   scripts/rabbit-cluster.sh status           which nodes run, and the cluster as node 1 sees it
#   scripts/rabbit-cluster.sh kill N           SIGKILL node N (1-3): a node crash
#   scripts/rabbit-cluster.sh restart N        start node N again (it rejoins the cluster)
#   scripts/rabbit-cluster.sh urls             the three AMQP URLs, comma-separated
#
# Environment: SG_CLUSTER_DIR (default /tmp/sg-rabbit-cluster), SG_CLUSTER_PORT (first AMQP port,
# default 5701; nodes use PORT, PORT+1, PORT+2 and distribution ports PORT+20000…).
set -euo pipefail
dir=${SG_CLUSTER_DIR:-/tmp/sg-rabbit-cluster}
base=${SG_CLUSTER_PORT:-5701}
host=$(hostname -s)

node() { echo "sgc$1@$host"; }
port() { echo $((base + $1 - 1)); }

# Bounded: a node stuck in its boot (waiting for peers' tables) must not hang the caller.
ctl() { local n=$1; shift; timeout 30 rabbitmqctl -q -n "$(node "$n")" "$@"; }

running() { ctl "$1" ping >/dev/null 2>&1; }

start_node() {
  local n=$1 d="$dir/node$1"
  mkdir -p "$d/mnesia" "$d/log"
  # Reconnect storms of hundreds of agents overflow the default listen backlog (128).
  cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$(port "$n")
tcp_listen_options.backlog = 4096
loopback_users = none
cluster_partition_handling = pause_minority
EOF
  chown -R rabbitmq:rabbitmq "$d"
  running "$n" && return 0
  env RABBITMQ_NODENAME="$(node "$n")" \
    RABBITMQ_NODE_PORT="$(port "$n")" \
    RABBITMQ_DIST_PORT=$(($(port "$n") + 20000)) \
    RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq" \
    RABBITMQ_PID_FILE="$d/pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_ENABLED_PLUGINS="" \
    rabbitmq-server -detached >/dev/null 2>&1
  for _ in $(seq 1 120); do
    timeout 10 rabbitmqctl -q -n "$(node "$n")" await_startup >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "rabbit-cluster: node $n did not start (logs in $d/log)" >&2
  return 1
}

running_nodes() { ctl "$1" cluster_status --formatter json 2>/dev/null | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin).get("running_nodes", [])))' 2>/dev/null; }

join() {
  local n=$1
  running_nodes "$n" | grep -qw "$(node 1)" && return 0
  { ctl "$n" stop_app && ctl "$n" reset && ctl "$n" join_cluster "$(node 1)" && ctl "$n" start_app; } >/dev/null 2>&1
}

case "${1:-}" in
  start)
    for n in 1 2 3; do start_node "$n" & done
    wait
    join 2
    join 3
    ;;
  stop)
    # Their data goes too: nothing of a previous run (a stuck boot waiting for peers) is kept.
    for n in 1 2 3; do
      pid=$(cat "$dir/node$n/pid" 2>/dev/null || true)
      [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
    ;;
  status)
    for n in 1 2 3; do
      if running "$n"; then echo "node $n $(node "$n") up on $(port "$n")"; else echo "node $n $(node "$n") down"; fi
    done
    echo "running in the cluster (as node 1 sees it): $(running_nodes 1 || true)"
    ;;
  kill)
    n=${2:?node number}
    pid=$(cat "$dir/node$n/pid")
    kill -9 "$pid"
    # Until the VM is gone (its sockets close with it); asking the dead node itself would take seconds.
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    ;;
  restart)
    n=${2:?node number}
    start_node "$n"
    ;;
  urls)
    echo "amqp://guest:guest@127.0.0.1:$(port 1),amqp://guest:guest@127.0.0.1:$(port 2),amqp://guest:guest@127.0.0.1:$(port 3)"
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
