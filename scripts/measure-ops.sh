#!/usr/bin/env bash
# Operator figures for issue 9, on real processes on 127.0.0.1 (bounded; kills only the
# processes it started):
#   1. median (and p90) of N sequential CLI puts on a healthy local 4-node bft cluster,
#      process start included;
#   2. exit codes of K SIGTERM stops of a running node.
# Usage: scripts/measure-ops.sh [BINARY] [N=100] [K=20]
set -u
BIN=${1:-target/release/tangaroa}
N=${2:-100}
K=${3:-20}
BIN=$(realpath "$BIN")
DIR=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
PORT=$(( 20000 + RANDOM % 30000 ))
"$BIN" keygen --nodes 4 --clients 1 --out "$DIR" --base-port "$PORT" >/dev/null || exit 2
start_node() {
    "$BIN" node --config "$DIR/cluster.toml" --id "$1" 2>>"$DIR/node-$1.log" &
    PIDS[$1]=$!
}
for i in 0 1 2 3; do start_node "$i"; done
# Wait for a leader: the first put (10 s budget).
"$BIN" client --config "$DIR/cluster.toml" --timeout 10 put warm up >/dev/null || { echo "no leader"; exit 1; }

times=()
fails=0
for i in $(seq 1 "$N"); do
    t0=$(date +%s%N)
    timeout 20 "$BIN" client --config "$DIR/cluster.toml" --timeout 10 put "k$i" "v$i" >/dev/null 2>&1 || fails=$((fails + 1))
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | sed -n "$(( (N + 1) / 2 ))p")
p90=$(echo "$sorted" | sed -n "$(( N * 9 / 10 ))p")
echo "sequential CLI puts: n=$N median=${median}ms p90=${p90}ms failed=$fails"

codes=()
for k in $(seq 1 "$K"); do
    id=$(( k % 4 ))
    sleep 0.5
    t0=$(date +%s%N)
    kill -TERM "${PIDS[$id]}"
    wait "${PIDS[$id]}"
    code=$?
    t1=$(date +%s%N)
    codes+=("$code:$(( (t1 - t0) / 1000000 ))ms")
    start_node "$id"
done
echo "SIGTERM stops (exit:time): ${codes[*]}"
