#!/usr/bin/env bash
# Issue 11's figures on real processes: a 4-node bft cluster with one Byzantine node under
# closed-loop signed puts, checkpoint_interval 1000; for a short and a 10x longer run, each
# node's data directory at the end, and the time an honest node takes to restart on it
# (spawn to "listening": the storage opened, the snapshot read and decoded, the log after
# it replayed, the node built; measured with the node alone, its peers stopped). Then the
# long run's node 2 loses its data directory and must install the snapshot from a peer.
#
#   benches/compaction.sh [SHORT [LONG]]       default: 20000 200000 puts
#
# Env: BYZANTINE (default 3=equivocate), CLIENTS (32), INTERVAL (1000), OUT (a temp dir,
# kept: the clusters' keys, logs and data, and bench JSON). Needs target/release/tangaroa
# (cargo build --release) and python3. Everything runs on 127.0.0.1; every process this
# script starts is stopped by its own pid.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/tangaroa}
SHORT=${1:-20000}
LONG=${2:-200000}
BYZANTINE=${BYZANTINE:-3=equivocate}
CLIENTS=${CLIENTS:-32}
INTERVAL=${INTERVAL:-1000}
OUT=${OUT:-$(mktemp -d /tmp/tangaroa-compaction.XXXXXX)}
mkdir -p "$OUT"
echo "output in $OUT"

now() { date +%s.%N; }

# The time from spawning node $2 of the cluster in $1 until it logs "listening on"; three
# tries, the node alone.
restart_time() {
  local dir=$1 id=$2 k
  for k in 1 2 3; do
    local log="$OUT/restart-$(basename "$dir")-$id-$k.log"
    local t0 t1 pid
    t0=$(now)
    TANGAROA_LOG=info "$BIN" node --config "$dir/cluster.toml" --id "$id" \
      --data "$dir/data/node-$id" 2>"$log" &
    pid=$!
    t1=""
    for _ in $(seq 1 3000); do # at most 30 s
      if grep -q "listening on" "$log"; then t1=$(now); break; fi
      sleep 0.01
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 - "$t0" "${t1:-nan}" "$log" <<'EOF'
import sys, re
t0, t1, log = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
rec = next((l.strip() for l in open(log) if "recovered from" in l), "?")
rec = re.sub(r"\x1b\[[0-9;]*m", "", rec)
print(f"    listening after {1e3*(t1-t0):.0f} ms; {rec[rec.find('base'):] if 'base' in rec else rec}")
EOF
  done
}

run() {
  local puts=$1 dir="$OUT/run-$1"
  echo "== $puts puts: 4 bft nodes, $BYZANTINE, $CLIENTS clients, checkpoint_interval $INTERVAL"
  local t0
  t0=$(now)
  "$BIN" bench --nodes 4 --variants bft --clients "$CLIENTS" --requests "$puts" \
    --checkpoint-interval "$INTERVAL" --byzantine "$BYZANTINE" --warmup 1 \
    --dir "$dir" --json "$dir.json" 2>&1 | grep -vE '^\s*$' | tail -n 12
  echo "   run took $(python3 -c "print(f'{$(now)-$t0:.0f}')") s"
  local cluster
  cluster=$(ls -d "$dir"/bft-n4-* | head -n 1)
  echo "   data directories at the end (du -sb):"
  for i in 0 1 2 3; do
    printf '    node %s: %s bytes; ' "$i" "$(du -sb "$cluster/data/node-$i" | cut -f1)"
    ls -l "$cluster/data/node-$i" | awk 'NR>1 {printf "%s=%s ", $9, $5} END {print ""}'
  done
  echo "   restart of node 0 (honest), alone:"
  restart_time "$cluster" 0
}

# A node whose data directory is gone (a new disk) rejoins the long run's cluster: it must
# install the snapshot (the whole state, streamed in 1 MiB chunks) from a peer, then commit.
wiped_node_installs() {
  local cluster=$1 id=2 pids=() i t0 base
  echo "   node $id's data directory wiped; all four restarted (honest), until it installs the snapshot:"
  rm -rf "$cluster/data/node-$id"
  t0=$(now)
  for i in 0 1 2 3; do
    TANGAROA_LOG=info "$BIN" node --config "$cluster/cluster.toml" --id "$i" \
      --data "$cluster/data/node-$i" 2>>"$cluster/rejoin-$i.log" &
    pids+=($!)
  done
  base=0
  for _ in $(seq 1 120); do # at most ~2 min
    base=$({ "$BIN" status --config "$cluster/cluster.toml" --json --timeout 1 2>/dev/null || true; } |
      python3 -c "import json,sys; r=json.load(sys.stdin); print((r[$id] or {}).get('log_base', 0))" 2>/dev/null || true)
    base=${base:-0}
    [ "$base" -gt 0 ] && break
    sleep 0.5
  done
  echo "    node $id log base $base after $(python3 -c "print(f'{$(now)-$t0:.1f}')") s; $(grep -c 'installed a snapshot' "$cluster/rejoin-$id.log") install(s) logged"
  for k in 1 2 3 4 5; do
    "$BIN" client --config "$cluster/cluster.toml" --key "$cluster/client-1.key" --timeout 10 put "after-wipe-$k" v >/dev/null ||
      echo "    put after-wipe-$k: no result"
  done
  sleep 1
  { "$BIN" status --config "$cluster/cluster.toml" --timeout 1 2>/dev/null || true; } | sed 's/^/    /'
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

run "$SHORT"
run "$LONG"
wiped_node_installs "$(ls -d "$OUT/run-$LONG"/bft-n4-* | head -n 1)"
