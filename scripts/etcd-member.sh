#!/usr/bin/env bash
# One etcd member as sg-controller's store runs it in the lab (scripts/lab.sh), the tests and the
# benchmarks: the settings docs/agent.md recommends, in one place. Runs in the foreground (exec).
#
#   scripts/etcd-member.sh NAME DATA_DIR CLIENT_URL PEER_URL INITIAL_CLUSTER [new|existing]
#
# Settings: heartbeat 100 ms and election timeout 1 s (etcd's defaults, said here: the controllers'
# leadership lease of 2 s must stay above 1.5 × the election timeout, which is etcd's least lease);
# --pre-vote, so that a member coming back from a partition does not depose the leader; room for a
# port in many groups in one transaction (--max-txn-ops 1024: sg-controller's store.etcd.maxTxnOps);
# history compacted hourly, space reclaimed; GOMAXPROCS=1 unless set, so a lab of three members on
# one small machine does not take it over. SG_ETCD_TLS_DIR (optional): clients must present a
# certificate the CA there signed (ca.pem; the member's own server.pem and server-key.pem), over https.
set -euo pipefail
[ $# -ge 5 ] || { sed -n '2,6p' "$0" >&2; exit 2; }
name=$1 dir=$2 client=$3 peer=$4 cluster=$5 state=${6:-new}
mkdir -p "$dir"
export GOMAXPROCS=${GOMAXPROCS:-1}
tls=()
if [ -n "${SG_ETCD_TLS_DIR:-}" ]; then
  tls=(--cert-file "$SG_ETCD_TLS_DIR/server.pem" --key-file "$SG_ETCD_TLS_DIR/server-key.pem"
       --client-cert-auth --trusted-ca-file "$SG_ETCD_TLS_DIR/ca.pem")
fi
exec etcd "${tls[@]}" --name "$name" --data-dir "$dir" \
  --listen-client-urls "$client" --advertise-client-urls "$client" \
  --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
  --initial-cluster "$cluster" --initial-cluster-state "$state" --initial-cluster-token sg-lab \
  --heartbeat-interval 100 --election-timeout 1000 --pre-vote \
  --max-txn-ops 1024 --auto-compaction-mode periodic --auto-compaction-retention 1h \
  --snapshot-count 20000 --logger zap --log-level warn
