#!/usr/bin/env bash
# A three-machine control plane on this one machine: three network namespaces, each a "machine" with
# its own address on a private switch, an etcd member, a RabbitMQ node (the three clustered, as
# scripts/rabbit-cluster.sh does on loopback) and an sg-controller on the shared etcd store; and
# compute hosts, further namespaces each running an sg-agent that lists the three brokers. Nothing of
# the machine's own network namespace is touched: the switch is a bridge in a namespace of its own,
# and every link is made inside the lab's namespaces.
#
#   scripts/lab.sh up                start it all (SG_LAB_HOSTS compute hosts with an agent, default 2)
#   scripts/lab.sh down              stop every process of the lab, remove its namespaces and data
#   scripts/lab.sh status            members, broker cluster, controllers (which one leads), agents
#   scripts/lab.sh kill N            SIGKILL every process of machine N at once (etcd, broker, controller)
#   scripts/lab.sh start N           start machine N's etcd member, broker node and controller again
#   scripts/lab.sh stop-etcd N       SIGKILL machine N's etcd member alone; start-etcd N starts it again
#   scripts/lab.sh quorum-safe N     exits 0 if machine N can go down without taking a quorum queue (the
#                                    sync requests') below its majority: the nodes restarted have caught up
#   scripts/lab.sh partition N       machine N's link down: cut off from the others and the hosts
#   scripts/lab.sh heal N            its link up again
#   scripts/lab.sh host K            start compute host K with its agent (lab-host-K, metrics 127.0.0.1:9100)
#   scripts/lab.sh attach NS K       connect namespace NS to the lab's switch as compute host address K
#   scripts/lab.sh env               the lab's endpoints and files, as shell variables
#   scripts/lab.sh queues            the broker's queues (type, messages, consumers, leader, members)
#                                    as the first machine that answers sees them
#
# The controllers' admin APIs are Unix sockets ($SG_LAB_DIR/mN/api.sock, no token: the file's mode
# guards it), reachable from the machine's own namespace; their logs are $SG_LAB_DIR/mN/*.log.
# Environment: SG_LAB_DIR (default /tmp/sg-lab), SG_LAB_NAME (namespace prefix, default sglab),
# SG_LAB_HOSTS (compute hosts with an agent, default 2), SG_LAB_CONTROLLERS=0 (no controllers: the
# caller starts its own), SG_LAB_LOG_LEVEL (controllers' and agents', default info).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${SG_LAB_DIR:-/tmp/sg-lab}
name=${SG_LAB_NAME:-sglab}
net=10.77.0
sw=$name-sw
machines=(1 2 3)

ns() { echo "$name-$1"; }
ip_of() { echo "$net.$1"; }
node_of() { echo "sglab@$(ip_of "$1")"; }
in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }
ctl() { local m=$1; shift; in_ns "$(ns "m$m")" env RABBITMQ_USE_LONGNAME=true timeout 60 rabbitmqctl -q -l -n "$(node_of "$m")" "$@"; }
etcd_endpoints() { local e=() m; for m in "${machines[@]}"; do e+=("http://$(ip_of "$m"):2379"); done; (IFS=,; echo "${e[*]}"); }
etcd_cluster() { local e=() m; for m in "${machines[@]}"; do e+=("m$m=http://$(ip_of "$m"):2380"); done; (IFS=,; echo "${e[*]}"); }
# Each machine's own broker first: a controller or agent there uses the node beside it while it lives.
amqp_urls() {
  local first=$1 m
  local u=("amqp://guest:guest@$(ip_of "$first"):5672/")
  for m in "${machines[@]}"; do [ "$m" = "$first" ] || u+=("amqp://guest:guest@$(ip_of "$m"):5672/"); done
  (IFS=,; echo "${u[*]}")
}

# A namespace linked to the switch as address $net.$2 (its end of the link is eth0).
link() {
  local n=$1 k=$2 port=p$2
  ip netns list | grep -qw "$n" || { ip netns add "$n"; in_ns "$n" ip link set lo up; }
  in_ns "$sw" ip link show "$port" >/dev/null 2>&1 && return 0
  ip -n "$sw" link add "$port" type veth peer name eth0 netns "$n"
  ip -n "$sw" link set "$port" master br0 up
  ip -n "$n" addr add "$net.$k/24" dev eth0
  ip -n "$n" link set eth0 up
}

network() {
  ip netns list | grep -qw "$sw" || { ip netns add "$sw"; in_ns "$sw" ip link set lo up; }
  in_ns "$sw" ip link show br0 >/dev/null 2>&1 || { ip -n "$sw" link add br0 type bridge; ip -n "$sw" link set br0 up; }
  local m
  for m in "${machines[@]}"; do link "$(ns "m$m")" "$m"; done
}

start_etcd() {
  local m=$1 state=new
  [ -d "$dir/m$m/etcd/member" ] && state=existing
  mkdir -p "$dir/m$m"
  in_ns "$(ns "m$m")" setsid bash "$repo/scripts/etcd-member.sh" "m$m" "$dir/m$m/etcd" \
    "http://$(ip_of "$m"):2379" "http://$(ip_of "$m"):2380" "$(etcd_cluster)" "$state" \
    </dev/null >>"$dir/m$m/etcd.log" 2>&1 &
}

stop_etcd() {
  local m=$1 pid
  for pid in $(ip netns pids "$(ns "m$m")" 2>/dev/null); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = etcd ] && kill -9 "$pid" 2>/dev/null || true
  done
}

wait_etcd() {
  for _ in $(seq 1 120); do
    in_ns "$(ns "m$1")" etcdctl --endpoints "http://$(ip_of "$1"):2379" endpoint health >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "lab: etcd member of machine $1 not healthy (log: $dir/m$1/etcd.log)" >&2
  return 1
}

start_rabbit() {
  local m=$1 d="$dir/m$1/rabbit"
  mkdir -p "$d"
  # The node runs as the rabbitmq user: it must reach its directory.
  chmod 755 "$dir" "$dir/m$m"
  # pause_minority: a node cut off from the other two stops serving; net_ticktime 10 s finds that out
  # in 10-15 s instead of a minute.
  cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.default = $(ip_of "$m"):5672
loopback_users = none
cluster_partition_handling = pause_minority
EOF
  echo '[{kernel, [{net_ticktime, 10}]}].' >"$d/advanced.config"
  echo '[].' >"$d/enabled_plugins"
  chown -R rabbitmq:rabbitmq "$d"
  in_ns "$(ns "m$m")" env RABBITMQ_USE_LONGNAME=true RABBITMQ_NODENAME="$(node_of "$m")" RABBITMQ_DIST_PORT=25672 \
    RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" RABBITMQ_CONFIG_FILE="$d/rabbitmq" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" RABBITMQ_PID_FILE="$d/pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" RABBITMQ_ENABLED_PLUGINS="" \
    rabbitmq-server -detached </dev/null >/dev/null 2>&1
}

wait_rabbit() {
  for _ in $(seq 1 90); do
    ctl "$1" await_startup >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "lab: broker node of machine $1 did not start (logs: $dir/m$1/rabbit/log)" >&2
  return 1
}

join() {
  local m=$1
  ctl "$m" cluster_status --formatter json 2>/dev/null | grep -q "$(node_of 1)" && return 0
  { ctl "$m" stop_app && ctl "$m" reset && ctl "$m" join_cluster "$(node_of 1)" && ctl "$m" start_app; } >/dev/null 2>&1
}

start_controller() {
  local m=$1
  [ "${SG_LAB_CONTROLLERS:-1}" = 0 ] && return 0
  rm -f "$dir/m$m/api.sock"
  in_ns "$(ns "m$m")" setsid env SG_STORE=etcd SG_ETCD_ENDPOINTS="$(etcd_endpoints)" SG_AMQP_URL="$(amqp_urls "$m")" \
    SG_HTTP_LISTEN="unix:$dir/m$m/api.sock" SG_SIGNING_KEY_FILE="$dir/key/signing-key.pem" SG_DATA_DIR="$dir/m$m/data" \
    SG_LOG_LEVEL="${SG_LAB_LOG_LEVEL:-info}" \
    node --unhandled-rejections=strict --import tsx "$repo/src/cli/sg-controller.ts" </dev/null >>"$dir/m$m/controller.log" 2>&1 &
}

wait_controller() {
  for _ in $(seq 1 120); do
    [ -S "$dir/m$1/api.sock" ] && curl -sf --unix-socket "$dir/m$1/api.sock" http://lab/healthz >/dev/null && return 0
    sleep 0.5
  done
  echo "lab: controller of machine $1 did not start (log: $dir/m$1/controller.log)" >&2
  return 1
}

start_agent() {
  local k=$1 n
  n=$(ns "c$k")
  link "$n" $((10 + k))
  in_ns "$n" setsid env SG_AGENT_HOST="lab-host-$k" SG_AMQP_URL="$(amqp_urls $(((k - 1) % 3 + 1)))" \
    SG_TRUSTED_KEYS="$(ls "$dir"/key/*.pub)" SG_METRICS_LISTEN=127.0.0.1:9100 SG_LOG_LEVEL="${SG_LAB_LOG_LEVEL:-info}" \
    node --unhandled-rejections=strict --import tsx "$repo/src/cli/sg-agent.ts" run </dev/null >>"$dir/c$k.log" 2>&1 &
}

# Every process of a namespace, by the kernel's own list of them (ip netns pids): only what runs there.
kill_ns() {
  local n=$1 pids
  pids=$(ip netns pids "$n" 2>/dev/null || true)
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
  for _ in $(seq 1 100); do [ -z "$(ip netns pids "$n" 2>/dev/null || true)" ] && return 0; sleep 0.05; done
}

# Whether a process whose command line contains $2 runs in machine $1's namespace.
running_in() {
  local pid
  for pid in $(ip netns pids "$(ns "m$1")" 2>/dev/null); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" && return 0
  done
  return 1
}

# Starts what of machine m is not running: started twice, a machine must not get a second controller
# (it would take over the API socket while the first, unseen, may still lead).
start_machine() {
  local m=$1
  running_in "$m" 'etcd --name' || start_etcd "$m"
  running_in "$m" 'beam.smp' || start_rabbit "$m"
  running_in "$m" 'sg-controller.ts' || start_controller "$m"
}

case "${1:-}" in
  up)
    mkdir -p "$dir/key"
    [ -f "$dir/key/signing-key.pem" ] || node --import tsx "$repo/src/cli/sg-controller.ts" keygen --out "$dir/key" >/dev/null
    network
    for m in "${machines[@]}"; do start_etcd "$m"; start_rabbit "$m"; done
    for m in "${machines[@]}"; do wait_etcd "$m"; done
    for m in "${machines[@]}"; do wait_rabbit "$m"; done
    join 2
    join 3
    for m in "${machines[@]}"; do start_controller "$m"; done
    if [ "${SG_LAB_CONTROLLERS:-1}" != 0 ]; then for m in "${machines[@]}"; do wait_controller "$m"; done; fi
    for k in $(seq 1 "${SG_LAB_HOSTS:-2}"); do start_agent "$k"; done
    echo "lab up in $dir: machines $(for m in "${machines[@]}"; do echo -n "$(ns "m$m")=$(ip_of "$m") "; done)"
    ;;
  down)
    for n in $(ip netns list | awk '{print $1}' | grep -E "^$name-(m[0-9]+|c[0-9]+|sw)$" || true); do kill_ns "$n"; done
    for n in $(ip netns list | awk '{print $1}' | grep -E "^$name-(m[0-9]+|c[0-9]+|sw)$" || true); do ip netns del "$n"; done
    rm -rf "$dir"
    ;;
  status)
    for m in "${machines[@]}"; do
      e=$(in_ns "$(ns "m$m")" etcdctl --endpoints "http://$(ip_of "$m"):2379" endpoint status 2>/dev/null | cut -d, -f5 | tr -d ' ' || true)
      h=$(curl -sf --max-time 2 --unix-socket "$dir/m$m/api.sock" http://lab/healthz 2>/dev/null || echo '(no controller)')
      b=$(ctl "$m" ping >/dev/null 2>&1 && echo up || echo down)
      echo "machine $m $(ip_of "$m"): etcd leader=${e:-down}; broker $b; controller $h"
    done
    for k in $(ip netns list | awk '{print $1}' | grep -E "^$name-c[0-9]+$" | sed "s/^$name-c//" || true); do
      echo "host $k: $(in_ns "$(ns "c$k")" curl -sf --max-time 2 http://127.0.0.1:9100/status | head -c 200 || echo '(no agent)')"
    done
    ;;
  kill)
    kill_ns "$(ns "m${2:?machine number}")"
    ;;
  start)
    m=${2:?machine number}
    start_machine "$m"
    wait_rabbit "$m"
    if [ "${SG_LAB_CONTROLLERS:-1}" != 0 ]; then wait_controller "$m"; fi
    ;;
  stop-etcd)
    stop_etcd "${2:?machine number}"
    ;;
  start-etcd)
    start_etcd "${2:?machine number}"
    ;;
  quorum-safe)
    m=${2:?machine number}
    in_ns "$(ns "m$m")" env RABBITMQ_USE_LONGNAME=true timeout 30 \
      rabbitmq-queues -q -l -n "$(node_of "$m")" check_if_node_is_quorum_critical >/dev/null 2>&1
    ;;
  partition)
    ip -n "$(ns "m${2:?machine number}")" link set eth0 down
    ;;
  heal)
    ip -n "$(ns "m${2:?machine number}")" link set eth0 up
    ;;
  host)
    start_agent "${2:?host number}"
    ;;
  attach)
    link "${2:?namespace}" "${3:?host address (11-250)}"
    ;;
  queues)
    for m in "${machines[@]}"; do
      ctl "$m" list_queues name type messages consumers leader members online 2>/dev/null && exit 0
    done
    echo "lab: no broker node answers" >&2
    exit 1
    ;;
  env)
    echo "SG_ETCD_ENDPOINTS=$(etcd_endpoints)"
    for m in "${machines[@]}"; do echo "SG_LAB_AMQP_$m=$(amqp_urls "$m")"; echo "SG_LAB_API_$m=$dir/m$m/api.sock"; done
    echo "SG_LAB_KEY=$dir/key"
    ;;
  *)
    sed -n '2,28p' "$0" >&2
    exit 2
    ;;
esac
