#!/bin/sh
# SPDX-License-Identifier: MIT
# redis_tier.sh - the Redis tier (include/cq_kvstore.h, `cq kvstore`) against one
# redis-server of its own on a free loopback port (maxmemory + allkeys-lru): process A
# publishes a prompt's blocks, process B adopts them into a fresh pool and prefills the
# rest, and B equals a full local prefill bit for bit (reads, exports, attention:
# --check); write-once publishing, also by two publishers at once; TTL; LRU eviction is a shorter run, never an error;
# then the faults, each a miss with the right answer: a value with a flipped byte, a
# truncated value, another wire version and a block under another chain hash (all
# deleted), a value of another configuration (kept); the server stopped (SIGSTOP) beyond
# the timeout, killed, restarted empty and refilled within one process's run.
# Skipped (with a line saying so) only when cq was built without the tier (HIREDIS=0).
CQ=${1:-build/cq}
NAME=redis_tier
. tests/cli/cli_lib.sh.inc
. tests/cli/redis_lib.sh.inc
redis_require

redis_start "$tmp/r" - --maxmemory 64mb --maxmemory-policy allkeys-lru || {
    echo "$NAME: FAIL: no redis-server started"; exit 1; }
P=$port
SPID=$pid
U=redis://127.0.0.1:$P
RC="redis-cli -h 127.0.0.1 -p $P"
POOL="--layers 2 --kv-heads 4 --head-dim 64 -g 32 --kv cq4/cq4"
A=1:300,2:40 # 340 tokens: 10 full blocks of 32
expect "publish" 0 "$CQ" kvstore publish --kv-store "$U" --prompt $A $POOL
expect_grep "publish writes 10 blocks" "published 10 blocks (0 there"
expect "publish again" 0 "$CQ" kvstore publish --kv-store "$U" --prompt $A $POOL
expect_grep "write-once: nothing written again" "published 0 blocks (10 there"
[ "$($RC dbsize)" = 10 ] || { echo "$NAME: dbsize $($RC dbsize), expected 10"; fail=1; }
"$CQ" kvstore keys --prompt $A $POOL >"$tmp/keys"
[ "$(wc -l <"$tmp/keys")" -eq 10 ] && [ "$($RC exists $(cat "$tmp/keys"))" = 10 ] \
    || { echo "$NAME: the blocks are not under their keys"; fail=1; }
grep -qv '^cq:v1:[0-9a-f]\{16\}:[0-9a-f]\{16\}$' "$tmp/keys" && { echo "$NAME: key names"; fail=1; }

# B: a prompt sharing 300 tokens (9 blocks), and the same prompt (10 blocks, 20 left to prefill)
expect "adopt a shared prefix" 0 "$CQ" kvstore adopt --kv-store "$U" --prompt 1:300,3:50 $POOL --check
expect_grep "9 blocks adopted" "round 1: adopted 288 of 350 tokens (hits 9, misses 1)"
expect_grep "equal (shared prefix)" "check: equal to a full prefill"
expect "adopt the whole prompt" 0 "$CQ" kvstore adopt --kv-store "$U" --prompt $A $POOL --check --stats
expect_grep "10 blocks adopted" "round 1: adopted 320 of 340 tokens (hits 10, misses 0)"
expect_grep "equal (whole prompt)" "check: equal to a full prefill"
expect_grep "the summary line" "kv-store: lookups 1, hits 10, misses 0, tokens adopted 320,"
[ "$(stat_of "$tmp/out" bytes_fetched)" -gt 0 ] || { echo "$NAME: bytes_fetched not counted"; fail=1; }
# another shape (sinks, fp16) publishes under another configuration hash: no cross-talk
expect "adopt with sinks: nothing of it there" 0 "$CQ" kvstore adopt --kv-store "$U" --prompt $A \
    --layers 2 --kv-heads 4 --head-dim 64 -g 32 --sinks 4 --kv fp16/fp16 --check
expect_grep "other configuration: a miss" "round 1: adopted 0 of 340"
# two publishers of one prompt at once: every block written exactly once, both succeed
"$CQ" kvstore publish --kv-store "$U" --prompt 8:340 $POOL >"$tmp/pub1" 2>&1 &
b1=$!
"$CQ" kvstore publish --kv-store "$U" --prompt 8:340 $POOL >"$tmp/pub2" 2>&1 || fail=1
wait $b1 || fail=1
n1=$(sed -n 's/^published \([0-9]*\) blocks.*/\1/p' "$tmp/pub1")
n2=$(sed -n 's/^published \([0-9]*\) blocks.*/\1/p' "$tmp/pub2")
[ "$((n1 + n2))" = 10 ] || { echo "$NAME: concurrent publishers wrote $n1 + $n2 blocks, expected 10 in all"; fail=1; }
expect "adopt after concurrent publishers" 0 "$CQ" kvstore adopt --kv-store "$U" --prompt 8:340 $POOL --check
expect_grep "concurrent publishers: adopted" "round 1: adopted 320 of 340"
# TTL: blocks published with --ttl expire
expect "publish with a ttl" 0 "$CQ" kvstore publish --kv-store "$U" --prompt 7:64 $POOL --ttl 1000
k=$("$CQ" kvstore keys --prompt 7:64 $POOL | head -1)
t=$($RC ttl "$k")
[ "$t" -gt 0 ] 2>/dev/null && [ "$t" -le 1000 ] || { echo "$NAME: TTL of a block $t"; fail=1; }

# ---- damaged values: each a miss at that block, deleted, the answer still exact
damage() { # description, block, expected adopted, encode options...
    d=$1 b=$2 nadopt=$3
    shift 3
    key=$("$CQ" kvstore encode --prompt $A $POOL --block "$b" --out "$tmp/v" "$@" | cut -d' ' -f1)
    $RC -x set "$key" <"$tmp/v" >/dev/null
    expect "$d: adopt" 0 "$CQ" kvstore adopt --kv-store "$U" --prompt $A $POOL --check --stats
    expect_grep "$d: stops at block $b" "round 1: adopted $nadopt of 340"
    expect_grep "$d: equal" "check: equal to a full prefill"
    [ "$(stat_of "$tmp/out" corrupt)" = 1 ] || { echo "$NAME: $d: corrupt counter $(stat_of "$tmp/out" corrupt)"; fail=1; }
    [ "$($RC exists "$key")" = 0 ] || { echo "$NAME: $d: the damaged value was not deleted"; fail=1; }
    expect "$d: republish" 0 "$CQ" kvstore publish --kv-store "$U" --prompt $A $POOL
    expect_grep "$d: only the deleted block written again" "published 1 blocks (9 there"
}
damage "flipped byte" 3 96 --flip 300
damage "truncated value" 2 64 --truncate 100
damage "wire version 2" 1 32 --wire-version 2
# a block filed under another block's key (its chain hash disagrees)
k4=$(sed -n 5p "$tmp/keys")
"$CQ" kvstore encode --prompt $A $POOL --block 6 --out "$tmp/v6" >/dev/null
$RC -x set "$k4" <"$tmp/v6" >/dev/null
expect "wrong key: adopt" 0 "$CQ" kvstore adopt --kv-store "$U" --prompt $A $POOL --check --stats
expect_grep "wrong key: stops at block 4" "round 1: adopted 128 of 340"
expect_grep "wrong key: equal" "check: equal to a full prefill"
[ "$($RC exists "$k4")" = 0 ] || { echo "$NAME: wrong key: not deleted"; fail=1; }
"$CQ" kvstore publish --kv-store "$U" --prompt $A $POOL >/dev/null
# another configuration's value under this key: a miss, kept (it is not damaged)
k0=$(head -1 "$tmp/keys")
"$CQ" kvstore encode --prompt $A $POOL --model-id 2 --block 0 --out "$tmp/v0" >/dev/null
$RC -x set "$k0" <"$tmp/v0" >/dev/null
expect "other model: adopt" 0 "$CQ" kvstore adopt --kv-store "$U" --prompt $A $POOL --check --stats
expect_grep "other model: nothing adopted" "round 1: adopted 0 of 340"
expect_grep "other model: equal" "check: equal to a full prefill"
[ "$(stat_of "$tmp/out" other_config)" = 1 ] && [ "$($RC exists "$k0")" = 1 ] \
    || { echo "$NAME: other model: counted $(stat_of "$tmp/out" other_config), kept $($RC exists "$k0")"; fail=1; }
$RC del "$k0" >/dev/null
"$CQ" kvstore publish --kv-store "$U" --prompt $A $POOL >/dev/null

# ---- the server stopped (SIGSTOP): connect succeeds, the command times out; a miss
kill -STOP "$SPID"
expect "stopped server: adopt" 0 "$CQ" kvstore adopt --kv-store "$U" --prompt $A $POOL --check --stats \
    --timeout 200 --connect-timeout 200
kill -CONT "$SPID"
expect_grep "stopped server: nothing adopted" "round 1: adopted 0 of 340"
expect_grep "stopped server: equal" "check: equal to a full prefill"
[ "$(stat_of "$tmp/out" err_timeout)" -ge 1 ] || { echo "$NAME: stopped server: no timeout counted"; fail=1; }

# ---- one process through kill, restart (empty) and refill: down is a miss, reconnect works
"$CQ" kvstore adopt --kv-store "$U" --prompt $A $POOL --check --stats --rounds 4 --pause "$tmp/go" \
    --retry 50 >"$tmp/rounds" 2>&1 &
bg=$!
wait_lines "$tmp/rounds" '^paused' 1 || fail=1
redis_kill "$SPID"
touch "$tmp/go"
wait_lines "$tmp/rounds" '^paused' 2 || fail=1
redis_start "$tmp/r2" "$P" --maxmemory 64mb --maxmemory-policy allkeys-lru || { echo "$NAME: restart failed"; fail=1; }
touch "$tmp/go"
wait_lines "$tmp/rounds" '^paused' 3 || fail=1
"$CQ" kvstore publish --kv-store "$U" --prompt $A $POOL >/dev/null
touch "$tmp/go"
wait $bg || { echo "$NAME: the restart run failed"; fail=1; }
cp "$tmp/rounds" "$tmp/out"
expect_grep "restart: round 1 hits" "round 1: adopted 320 of 340"
expect_grep "restart: killed is a miss" "round 2: adopted 0 of 340"
expect_grep "restart: empty is a miss" "round 3: adopted 0 of 340"
expect_grep "restart: reconnected" "round 4: adopted 320 of 340"
[ "$(grep -c 'check: equal to a full prefill' "$tmp/rounds")" = 4 ] || { echo "$NAME: restart: not equal"; fail=1; }
[ "$(stat_of "$tmp/rounds" connects)" -ge 2 ] || { echo "$NAME: restart: no reconnect counted"; fail=1; }

# ---- LRU: a small maxmemory evicts blocks; adoption takes what is left, exactly
used=$($RC info memory | awk -F: '/^used_memory:/ { print $2 + 0 }')
$RC config set maxmemory $((used + 400000)) >/dev/null
for s in 11 12 13 14 15 16; do "$CQ" kvstore publish --kv-store "$U" --prompt $s:340 $POOL >/dev/null; done
ev=$($RC info stats | awk -F: '/^evicted_keys:/ { print $2 + 0 }')
[ "$ev" -gt 0 ] || { echo "$NAME: LRU: nothing evicted (used $used)"; fail=1; }
for s in 11 16; do
    expect "LRU: adopt $s" 0 "$CQ" kvstore adopt --kv-store "$U" --prompt $s:340 $POOL --check
    expect_grep "LRU: equal $s" "check: equal to a full prefill"
done
[ $fail = 0 ] && echo "$NAME: ok (publish/adopt exact, write-once, TTL, LRU, 4 damaged values, other model, stopped/killed/restarted server)"
exit $fail
