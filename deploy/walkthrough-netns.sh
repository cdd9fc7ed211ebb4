#!/usr/bin/env bash
# The README's "Deploying on several hosts", walked through with network namespaces
# standing in for hosts (issue 14: "a newcomer can deploy three hosts' worth of nodes from
# the README alone").
#
#   sudo deploy/walkthrough-netns.sh            # uses target/release/tangaroa
#   sudo TANGAROA_BIN=/path/to/tangaroa deploy/walkthrough-netns.sh
#
# Three "hosts" run a 4-node bft cluster: db1 runs nodes 0 and 1, db2 node 2, db3 node 3.
# A fourth namespace, "admin", is the trusted machine that generates the keys and holds
# the client keys. Each host resolves the names db1.example.net ... itself (a hosts file of
# its own, /etc/netns/<namespace>/hosts, which `ip netns exec` puts in place of
# /etc/hosts), and has its own file tree under a temporary directory: what the README puts
# in /etc/tangaroa and /var/lib/tangaroa goes to <tmp>/<host>/etc/tangaroa and
# <tmp>/<host>/var/lib/tangaroa, since namespaces share the file system. The commands are
# the README's, with `sudo` and `-o tangaroa` left out (no system user is created) and
# nodes started with `tangaroa node` instead of systemd (which namespaces do not have).
#
# It creates only its own namespaces (tgw-<pid>-*), a bridge and veths inside them,
# addresses in 10.232.0.0/24 that exist only inside them, /etc/netns/tgw-<pid>-*/ and a
# temporary directory, and removes all of it on the way out, however it ends. It is
# bounded: a watchdog stops it after WALKTHROUGH_BUDGET seconds (default 120).
#
# Exit codes: 0 the walk-through worked; 1 a step failed (the step is named, node logs are
# printed); 77 skipped: not root, or no `ip netns` here (the message says which).
set -euo pipefail

SKIP=77
if [[ $(id -u) -ne 0 ]]; then
    echo "skipped: network namespaces need root (CAP_NET_ADMIN); run with sudo" >&2
    exit $SKIP
fi
for tool in ip curl install; do
    if ! command -v "$tool" >/dev/null; then
        echo "skipped: $tool is not installed" >&2
        exit $SKIP
    fi
done

here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TANGAROA_BIN:-$here/target/release/tangaroa}
if [[ ! -x $BIN ]]; then
    echo "no tangaroa binary at $BIN: run cargo build --release first, or set TANGAROA_BIN" >&2
    exit 1
fi
BUDGET=${WALKTHROUGH_BUDGET:-120}
started=$SECONDS

P=tgw-$$-
SUBNET=10.232.0
HOSTS=(db1 db2 db3 admin)
declare -A ADDR=([db1]=$SUBNET.1 [db2]=$SUBNET.2 [db3]=$SUBNET.3 [admin]=$SUBNET.10)
# Which host runs which node, and each node's port.
NODE_HOST=(db1 db1 db2 db3)
NODE_PORT=(7000 7001 7000 7000)
TMP=$(mktemp -d /tmp/tangaroa-walkthrough.XXXXXX)
METRICS=()
PIDS=()
NSES=()

say() { printf '%5ss  %s\n' "$((SECONDS - started))" "$*"; }
fail() {
    echo "FAILED: $*" >&2
    for id in "${!METRICS[@]}"; do
        echo "node $id /readyz: $(in_host "${NODE_HOST[$id]}" curl -s -m 2 "http://${METRICS[$id]}/readyz")" >&2
    done
    for f in "$TMP"/node-*.log; do
        [[ -f $f ]] || continue
        echo "--- $f (last lines)" >&2
        tail -n 15 "$f" >&2
    done
    exit 1
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n ${WATCHDOG:-} ]] && kill "$WATCHDOG" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    for ns in "${NSES[@]}"; do
        ip netns del "$ns" 2>/dev/null || echo "could not delete namespace $ns" >&2
        rm -rf "/etc/netns/$ns"
    done
    rmdir /etc/netns 2>/dev/null || true   # only if empty, i.e. only if we made it
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
main=$$
(
    for ((t = 0; t < BUDGET * 5; t++)); do
        sleep 0.2
        kill -0 "$main" 2>/dev/null || exit 0
    done
    echo "walk-through over its ${BUDGET}s budget; stopping" >&2
    kill -TERM "$main"
) &
WATCHDOG=$!

in_host() { local h=$1; shift; ip netns exec "$P$h" "$@"; }

# --- The "hosts": a bridge namespace, one veth per host, a hosts file per host. ---------
if ! ip netns add "${P}br" 2>"$TMP/err"; then
    echo "skipped: ip netns add failed: $(cat "$TMP/err")" >&2
    exit $SKIP
fi
NSES+=("${P}br")
ip -n "${P}br" link set lo up
ip -n "${P}br" link add br0 type bridge
ip -n "${P}br" link set br0 up
hosts_file=$TMP/hosts
{
    echo "127.0.0.1 localhost"
    for h in db1 db2 db3; do echo "${ADDR[$h]} $h.example.net"; done
} >"$hosts_file"
i=0
for h in "${HOSTS[@]}"; do
    ns=$P$h
    ip netns add "$ns"
    NSES+=("$ns")
    ip -n "${P}br" link add "v$i" type veth peer name eth0 netns "$ns"
    ip -n "${P}br" link set "v$i" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "${ADDR[$h]}/24" dev eth0
    ip -n "$ns" link set eth0 up
    mkdir -p "/etc/netns/$ns"
    cp "$hosts_file" "/etc/netns/$ns/hosts"
    mkdir -p "$TMP/$h"
    i=$((i + 1))
done
say "hosts db1 ($SUBNET.1: nodes 0, 1), db2 ($SUBNET.2: node 2), db3 ($SUBNET.3: node 3), admin ($SUBNET.10: keys, client)"

# --- README: "Generate every key on one trusted machine" -------------------------------
cd "$TMP/admin"
in_host admin "$BIN" keygen --addresses \
    db1.example.net:7000,db1.example.net:7001,db2.example.net:7000,db3.example.net:7000 \
    --clients 2 --out keys >"$TMP/keygen.out" 2>&1 || { cat "$TMP/keygen.out"; fail "keygen"; }
grep -q 'address = "db1.example.net:7001"' keys/cluster.toml ||
    fail "cluster.toml does not keep the hostnames: $(grep address keys/cluster.toml)"
say "keygen --addresses: $(grep -c '^\[\[node\]\]' keys/cluster.toml) nodes, hostnames kept in cluster.toml"

# --- README: copy, per host, into /etc/tangaroa/ (here <host>/etc/tangaroa) --------------
# The binary, as `install -m 0755 target/release/tangaroa /usr/local/bin/`.
for h in db1 db2 db3; do
    root=$TMP/$h
    install -d -m 0755 "$root/usr/local/bin" "$root/etc/tangaroa" "$root/var/lib/tangaroa"
    install -m 0755 "$BIN" "$root/usr/local/bin/"
    install -m 0644 keys/cluster.toml keys/*.crt "$root/etc/tangaroa/"
done
for id in 0 1 2 3; do
    h=${NODE_HOST[$id]}
    install -m 0600 "keys/node-$id.key" "keys/node-$id.tls.key" "$TMP/$h/etc/tangaroa/"
done
# The client machine keeps the client secrets next to its copy of the configuration.
install -d -m 0755 "$TMP/admin/etc/tangaroa"
install -m 0644 keys/cluster.toml keys/*.crt "$TMP/admin/etc/tangaroa/"
install -m 0600 keys/client-0.key keys/client-0.tls.key "$TMP/admin/etc/tangaroa/"
# A node host holds its own secrets and no one else's.
for id in 0 1 2 3; do
    for h in db1 db2 db3; do
        if [[ -e $TMP/$h/etc/tangaroa/node-$id.key ]] && [[ $h != "${NODE_HOST[$id]}" ]]; then
            fail "$h holds node $id's key"
        fi
    done
done
[[ $(stat -c %a "$TMP/db2/etc/tangaroa/node-2.key") == 600 ]] || fail "node-2.key is not 0600"
say "keys laid out: db1 holds node-0 and node-1 secrets, db2 node-2's, db3 node-3's; admin client-0's"

# --- README: start the nodes (by hand, as the unit would: flags and TANGAROA_* variables)
start_node() {
    local id=$1; shift
    local h=${NODE_HOST[$id]}
    local root=$TMP/$h
    ip netns exec "$P$h" env "$@" TANGAROA_LOG=info \
        "$root/usr/local/bin/tangaroa" node "${NODE_ARGS[@]}" \
        >"$TMP/node-$id.out" 2>"$TMP/node-$id.log" &
    PIDS+=($!)
}
# Node 0: flags only.
NODE_ARGS=(--config "$TMP/db1/etc/tangaroa/cluster.toml" --id 0
    --data "$TMP/db1/var/lib/tangaroa/node-0" --metrics 127.0.0.1:9100)
start_node 0
# Node 1: flags, binding every address of its host (`--listen 0.0.0.0:PORT`, as behind NAT
# or in a container) while the others dial the configured db1.example.net:7001.
NODE_ARGS=(--config "$TMP/db1/etc/tangaroa/cluster.toml" --id 1
    --data "$TMP/db1/var/lib/tangaroa/node-1" --listen 0.0.0.0:7001 --metrics 127.0.0.1:9101)
start_node 1
# Nodes 2 and 3: the environment only, as the systemd unit does.
NODE_ARGS=()
for id in 2 3; do
    h=${NODE_HOST[$id]}
    start_node "$id" TANGAROA_CONFIG="$TMP/$h/etc/tangaroa/cluster.toml" TANGAROA_ID="$id" \
        TANGAROA_DATA="$TMP/$h/var/lib/tangaroa/node-$id" TANGAROA_METRICS="127.0.0.1:910$id"
done
METRICS=(127.0.0.1:9100 127.0.0.1:9101 127.0.0.1:9102 127.0.0.1:9103)
say "4 nodes started: node 0 and 1 by flags (node 1 with --listen 0.0.0.0:7001), 2 and 3 by TANGAROA_* variables"

# Every node ready (it follows a proven leader and is caught up), asked on its host.
wait_ready() {
    local within=$1 deadline=$((SECONDS + $1)) id
    while :; do
        local ready=0
        for id in 0 1 2 3; do
            kill -0 "${PIDS[$id]}" 2>/dev/null || fail "node $id exited"
            if in_host "${NODE_HOST[$id]}" curl -sf -m 2 "http://${METRICS[$id]}/readyz" >/dev/null; then
                ready=$((ready + 1))
            fi
        done
        [[ $ready -eq 4 ]] && return 0
        ((SECONDS < deadline)) || fail "not every node ready within ${within}s ($ready of 4)"
        sleep 0.2
    done
}
wait_ready 30
say "every node's /readyz answers 200"

# --- README: the client, from the machine holding the client keys -----------------------
CFG=$TMP/admin/etc/tangaroa/cluster.toml
in_host admin "$BIN" status --config "$CFG" >"$TMP/status.out" 2>&1 ||
    { cat "$TMP/status.out"; fail "tangaroa status"; }
say "tangaroa status:"
sed 's/^/         /' "$TMP/status.out"
in_host admin "$BIN" client --config "$CFG" put greeting hello >/dev/null 2>"$TMP/err" ||
    fail "client put: $(cat "$TMP/err")"
got=$(in_host admin "$BIN" client --config "$CFG" get greeting 2>"$TMP/err") ||
    fail "client get: $(cat "$TMP/err")"
[[ $got == hello ]] || fail "get greeting returned '$got', not 'hello'"
say "client put greeting=hello, get greeting -> $got"
# The second client key, given with --key, on the same machine.
install -m 0600 keys/client-1.key keys/client-1.tls.key "$TMP/admin/etc/tangaroa/"
in_host admin "$BIN" client --config "$CFG" --key "$TMP/admin/etc/tangaroa/client-1.key" \
    put second world >/dev/null 2>"$TMP/err" || fail "client-1 put: $(cat "$TMP/err")"
got=$(in_host admin "$BIN" client --config "$CFG" get second 2>"$TMP/err") ||
    fail "get second: $(cat "$TMP/err")"
[[ $got == world ]] || fail "get second returned '$got'"
say "client-1 put second=world; client-0 reads it back"

# --- A host goes away (db3: node 3), the cluster goes on; it comes back and catches up. --
kill -TERM "${PIDS[3]}"
wait "${PIDS[3]}" 2>/dev/null || true
in_host admin "$BIN" client --config "$CFG" put while-db3-down yes >/dev/null 2>"$TMP/err" ||
    fail "put with db3 down: $(cat "$TMP/err")"
h=db3
start_node 3 TANGAROA_CONFIG="$TMP/$h/etc/tangaroa/cluster.toml" TANGAROA_ID=3 \
    TANGAROA_DATA="$TMP/$h/var/lib/tangaroa/node-3" TANGAROA_METRICS=127.0.0.1:9103
PIDS[3]=${PIDS[-1]}
unset 'PIDS[-1]'
wait_ready 30
commit() {
    in_host "${NODE_HOST[$1]}" curl -sf -m 2 "http://${METRICS[$1]}/metrics" |
        awk '$1 == "tangaroa_commit_index" { print $2 }'
}
c0=$(commit 0); c3=$(commit 3)
say "db3 stopped (SIGTERM), a put committed without it, db3 restarted: ready again, commit index $c3 (node 0: $c0)"

# --- Stop everything cleanly (SIGTERM: exit 0 within 3 s). ------------------------------
for id in 0 1 2 3; do kill -TERM "${PIDS[$id]}"; done
for id in 0 1 2 3; do
    rc=0
    wait "${PIDS[$id]}" || rc=$?
    [[ $rc -eq 0 ]] || fail "node $id exited $rc on SIGTERM"
done
PIDS=()
say "walk-through done: 3 hosts, 4 nodes, keys per host, client put/get; cleaning up"
