#!/bin/sh
# SPDX-License-Identifier: MIT
# redis_cluster.sh - the Redis tier on a Redis Cluster of its own: 3 masters on free
# loopback ports (redis-cli --cluster create), seeded with a dead address first. The
# blocks of one prompt land on all 3 masters; adoption equals a full prefill; within one
# process's run: a slot moved to another master (MOVED: followed, map refreshed), a key of
# a slot in migration (ASK: followed with ASKING); a 4th master added and given slots
# (keys migrated): old blocks are still found and new ones land on it; a master killed and
# its replica promoted (CLUSTER FAILOVER TAKEOVER): its blocks are found on the replica; a
# master without a replica killed: its blocks are misses, the answer stays exact.
# Skipped (with a line saying so) only when cq was built without the tier (HIREDIS=0).
CQ=${1:-build/cq}
NAME=redis_cluster
. tests/cli/cli_lib.sh.inc
. tests/cli/redis_lib.sh.inc
redis_require

CL="--cluster-enabled yes --cluster-node-timeout 1000 --cluster-require-full-coverage no"
ports=""
pids=""
for i in 1 2 3 4; do
    redis_start "$tmp/n$i" - $CL --cluster-config-file "$tmp/n$i/nodes.conf" || {
        echo "$NAME: FAIL: node $i did not start"; exit 1; }
    ports="$ports $port"
    pids="$pids $pid"
    eval "pid_$port=$pid"
done
set -- $ports
P1=$1 P2=$2 P3=$3 P4=$4
rc() { p=$1; shift; redis-cli -h 127.0.0.1 -p "$p" "$@"; }
rc "$P1" --cluster create 127.0.0.1:$P1 127.0.0.1:$P2 127.0.0.1:$P3 --cluster-yes >"$tmp/create" 2>&1 \
    || { echo "$NAME: FAIL: cluster create"; sed 's/^/  /' "$tmp/create" | tail -5; exit 1; }
i=0
until [ "$(rc "$P1" cluster info | tr -d '\r' | awk -F: '/^cluster_state/ { print $2 }')" = ok ] \
    && [ "$(rc "$P3" cluster info | tr -d '\r' | awk -F: '/^cluster_state/ { print $2 }')" = ok ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "$NAME: FAIL: cluster not ok"; exit 1; }
    sleep 0.1
done
# a dead seed first (a port of this test's range that nothing listens on: node 4's until it joins)
DEAD=127.0.0.1:1
U=redis-cluster://$DEAD,127.0.0.1:$P1
POOL="--layers 2 --kv-heads 4 --head-dim 64 -g 32 --kv cq4/cq4"
A=1:600 # 18 full blocks below the last token
expect "publish" 0 "$CQ" kvstore publish --kv-store "$U" --prompt $A $POOL
expect_grep "publish writes 18 blocks" "published 18 blocks (0 there"
for p in $P1 $P2 $P3; do
    n=$(rc "$p" dbsize)
    [ "$n" -gt 0 ] || { echo "$NAME: master $p holds no block"; fail=1; }
done
expect "adopt" 0 "$CQ" kvstore adopt --kv-store "$U" --prompt $A $POOL --check
expect_grep "18 blocks adopted" "round 1: adopted 576 of 600 tokens (hits 18, misses 0)"
expect_grep "equal" "check: equal to a full prefill"

"$CQ" kvstore keys --prompt $A $POOL >"$tmp/keys"
slot_owner() { # the port of the master that owns a slot (CLUSTER NODES of a live master)
    for p in $P2 $P1 $P3; do
        out=$(rc "$p" cluster nodes 2>/dev/null) || continue
        echo "$out" | tr -d '\r' | awk -v s="$1" '$3 ~ /master/ && $3 !~ /fail/ {
            for (i = 9; i <= NF; i++) {
                if ($i ~ /^\[/) continue
                n = split($i, r, "-"); lo = r[1] + 0; hi = (n > 1 ? r[2] : r[1]) + 0
                if (s >= lo && s <= hi) { split($2, a, "[:@]"); print a[2]; exit }
            }
        }'
        return
    done
}
other() { # a master other than $1 among the first three
    for p in $P1 $P2 $P3; do [ "$p" != "$1" ] && { echo "$p"; return; }; done
}
move_slot() { # slot, destination port [, key]: migrate the slot (all its keys, or only key,
    # leaving the slot in migration: ASK) with CLUSTER SETSLOT and MIGRATE. The two SETSLOTs
    # and the MIGRATE are retried until each answers OK (MIGRATE: or NOKEY): a node that has
    # not yet heard of the other through the gossip refuses them, and a key whose MIGRATE
    # failed would stay behind on the source once finish_slot gives the slot away.
    ms_src=$(slot_owner "$1")
    [ -n "$ms_src" ] && [ "$ms_src" != "$2" ] || return 0
    ms_sid=$(rc "$ms_src" cluster myid)
    ms_did=$(rc "$2" cluster myid)
    ms_keys=$3
    [ -n "$ms_keys" ] || ms_keys=$(rc "$ms_src" cluster getkeysinslot "$1" 100)
    ms_i=0
    until [ "$(rc "$2" cluster setslot "$1" importing "$ms_sid")" = OK ] &&
        [ "$(rc "$ms_src" cluster setslot "$1" migrating "$ms_did")" = OK ] &&
        { [ -z "$ms_keys" ] || case $(rc "$ms_src" migrate 127.0.0.1 "$2" "" 0 5000 keys $ms_keys) in
            OK | NOKEY) true ;; *) false ;; esac; }; do
        ms_i=$((ms_i + 1))
        [ $ms_i -lt 50 ] || { echo "$NAME: slot $1 could not be migrated to $2"; fail=1; return 0; }
        sleep 0.1
    done
    [ -n "$3" ] || finish_slot "$1" "$2"
}
finish_slot() { # slot, destination port: the slot is the destination's on every master
    fs_did=$(rc "$2" cluster myid)
    for p in $2 $P1 $P2 $P3 $P4; do rc "$p" cluster setslot "$1" node "$fs_did" >/dev/null 2>&1; done
}

# one process, rounds between which the topology changes
"$CQ" kvstore adopt --kv-store "$U" --prompt $A $POOL --check --stats --rounds 4 --pause "$tmp/go" \
    >"$tmp/rounds" 2>&1 &
bg=$!
wait_lines "$tmp/rounds" '^paused' 1 || fail=1
# MOVED: the slot of block 2 moves to another master
slot=$(rc "$P1" cluster keyslot "$(sed -n 3p "$tmp/keys")")
move_slot "$slot" "$(other "$(slot_owner "$slot")")"
touch "$tmp/go"
wait_lines "$tmp/rounds" '^paused' 2 || fail=1
# ASK: block 5's slot in migration, its key moved already, the slot still the source's
k=$(sed -n 6p "$tmp/keys")
slot=$(rc "$P1" cluster keyslot "$k")
dst=$(other "$(slot_owner "$slot")")
move_slot "$slot" "$dst" "$k"
touch "$tmp/go"
wait_lines "$tmp/rounds" '^paused' 3 || fail=1
finish_slot "$slot" "$dst"
# capacity: a 4th master joins; the slots of blocks 7 and 8 move to it with their keys,
# and so do the (empty) slots of the first 4 blocks of another prompt
rc "$P1" --cluster add-node 127.0.0.1:$P4 127.0.0.1:$P1 >"$tmp/add" 2>&1 || { echo "$NAME: add-node"; fail=1; }
i=0
until [ "$(rc "$P4" cluster info | tr -d '\r' | awk -F: '/^cluster_state/ { print $2 }')" = ok ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "$NAME: the 4th master did not join"; fail=1; break; }; sleep 0.1
done
"$CQ" kvstore keys --prompt 2:600 $POOL | head -4 >"$tmp/keys2"
for k in $(sed -n 8,9p "$tmp/keys") $(cat "$tmp/keys2"); do move_slot "$(rc "$P1" cluster keyslot "$k")" "$P4"; done
before=$(rc "$P4" dbsize)
touch "$tmp/go"
wait $bg || { echo "$NAME: the topology run failed"; fail=1; }
cp "$tmp/rounds" "$tmp/out"
expect_grep "round 1: all" "round 1: adopted 576 of 600"
expect_grep "MOVED followed" "round 2: adopted 576 of 600"
expect_grep "ASK followed" "round 3: adopted 576 of 600"
expect_grep "reshard followed" "round 4: adopted 576 of 600"
[ "$(grep -c 'check: equal to a full prefill' "$tmp/rounds")" = 4 ] || { echo "$NAME: not equal"; fail=1; }
[ "$(stat_of "$tmp/rounds" moved)" -ge 2 ] || { echo "$NAME: MOVED not counted twice"; fail=1; }
[ "$(stat_of "$tmp/rounds" ask)" -ge 1 ] || { echo "$NAME: no ASK counted"; fail=1; }
[ "$(stat_of "$tmp/rounds" misses)" = 0 ] || { echo "$NAME: misses while moving"; fail=1; }
# new blocks land on the new master too
expect "publish on 4 masters" 0 "$CQ" kvstore publish --kv-store "$U" --prompt 2:600 $POOL
[ "$(rc "$P4" dbsize)" -gt "$before" ] || { echo "$NAME: the new master took no new block"; fail=1; }

# failover: a replica of block 0's master; the master killed, the replica promoted (CLUSTER
# FAILOVER TAKEOVER): the blocks are found on it (the map fetched again at once); then a
# master without a replica killed: its blocks are misses, the answer stays exact
redis_start "$tmp/n5" - $CL --cluster-config-file "$tmp/n5/nodes.conf" || { echo "$NAME: FAIL: node 5"; exit 1; }
P5=$port
M=$(slot_owner "$(rc "$P2" cluster keyslot "$(head -1 "$tmp/keys")")")
rc "$M" --cluster add-node 127.0.0.1:$P5 127.0.0.1:$M --cluster-slave --cluster-master-id "$(rc "$M" cluster myid)" \
    >"$tmp/add5" 2>&1 || { echo "$NAME: add replica"; fail=1; }
i=0
until rc "$P5" info replication | tr -d '\r' | grep -q '^master_link_status:up' \
    && [ "$(rc "$P5" dbsize)" = "$(rc "$M" dbsize)" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "$NAME: the replica did not sync"; fail=1; break; }; sleep 0.1
done
"$CQ" kvstore adopt --kv-store "$U" --prompt $A $POOL --check --stats --rounds 3 --pause "$tmp/go" \
    --timeout 2000 >"$tmp/rounds" 2>&1 &
bg=$!
wait_lines "$tmp/rounds" '^paused' 1 || fail=1
eval "redis_kill \$pid_$M"
rc "$P5" cluster failover takeover >/dev/null
i=0
until [ "$(rc "$P5" role | head -1)" = master ] \
    && [ "$(rc "$P5" cluster info | tr -d '\r' | awk -F: '/^cluster_state/ { print $2 }')" = ok ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "$NAME: the replica was not promoted"; fail=1; break; }; sleep 0.1
done
touch "$tmp/go"
wait_lines "$tmp/rounds" '^paused' 2 || fail=1
for k in $(cat "$tmp/keys"); do
    K=$(slot_owner "$(rc "$P5" cluster keyslot "$k")")
    [ "$K" != "$P5" ] && break
done
eval "redis_kill \$pid_$K"
touch "$tmp/go"
wait $bg || { echo "$NAME: the failover run failed"; fail=1; }
cp "$tmp/rounds" "$tmp/out"
expect_grep "before the failover: all" "round 1: adopted 576 of 600"
expect_grep "after the failover: all" "round 2: adopted 576 of 600"
[ "$(grep -c 'check: equal to a full prefill' "$tmp/rounds")" = 3 ] || { echo "$NAME: kill: not equal"; fail=1; }
r3=$(sed -n 's/^round 3: adopted \([0-9]*\) of.*/\1/p' "$tmp/rounds")
[ -n "$r3" ] && [ "$r3" -lt 576 ] || { echo "$NAME: master killed: adopted '$r3'"; fail=1; }
[ "$(stat_of "$tmp/rounds" misses)" -ge 1 ] || { echo "$NAME: master killed: no miss counted"; fail=1; }
[ $fail = 0 ] && echo "$NAME: ok (3 masters, MOVED, ASK, a 4th master, a failover, a master killed)"
exit $fail
