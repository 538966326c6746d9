#!/bin/sh
# SPDX-License-Identifier: MIT
# redis_batch.sh - `cq batch --kv-store` (tools/cmd_batch.c through tools/kvstore_hook.c)
# against one redis-server of its own on a free loopback port: process A serves prompts
# that share a long prefix and publishes their prompt blocks; process B, a separate
# process with an empty pool, serves the same prompts, fetches the blocks (kv_store hits
# > 0, fewer prompt tokens computed) and generates exactly A's tokens, and --check-logits
# finds the logits of every sampled position of B's sequences equal bit for bit to each
# prompt run alone without any prefix reuse (a full local prefill); a prompt set that only
# shares the prefix adopts it from Redis too; with the server killed a run prefills
# locally (errors counted, the same tokens); refusals of bad --kv-store uses.
# Skipped (with a line saying so) only when cq was built without the tier (HIREDIS=0).
CQ=${1:-build/cq}
SHARED=${CQ_SHARED:-../shared}
NAME=redis_batch
. tests/cli/cli_lib.sh.inc
. tests/cli/redis_lib.sh.inc
redis_require
STORIES="$SHARED/models/stories260K"
pre="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
prefix="$pre $pre $pre $pre $pre $pre $pre $pre $pre $pre"
{
    echo "$prefix Tom said"
    echo "$prefix The dog ran to the park and"
    echo "$prefix One day, a big bird flew down from the tall tree. Lily smiled. She"
    echo "Once upon a time"
    echo "$prefix Mom"
} >"$tmp/prompts"
{
    echo "$prefix The cat"
    echo "$prefix A boy named Ben"
} >"$tmp/prompts2"
jnum() { # key [file]: the first number after "key": in $tmp/${2:-out}
    grep -o "\"$1\": [0-9-]*" "$tmp/${2:-out}" | head -1 | sed 's/.*: //'
}
positive() { # description, key [file]
    v=$(jnum "$2" "$3")
    [ -n "$v" ] && [ "$v" -gt 0 ] || { echo "$NAME: $1: $2 is '$v', expected > 0"; fail=1; }
}
texts() { # file: the generated texts, one a line
    grep -o '"text": ".*"' "$tmp/$1"
}
redis_start "$tmp/r" - --maxmemory 64mb --maxmemory-policy allkeys-lru || {
    echo "$NAME: FAIL: no redis-server started"; exit 1; }
U=redis://127.0.0.1:$port
SPID=$pid
RUN="$CQ batch -m $STORIES -n 12 --kv cq4/cq4 -g 32 --max-batch 64 --json"

expect "--kv-store with --no-prefix-cache" 2 $RUN --prompts "$tmp/prompts" --kv-store "$U" --no-prefix-cache
expect "--kv-store bad URL" 2 $RUN --prompts "$tmp/prompts" --kv-store "http://127.0.0.1:1"
expect "--kv-timeout 0" 2 $RUN --prompts "$tmp/prompts" --kv-store "$U" --kv-timeout 0

# A: an empty Redis; A publishes its prompts' blocks
expect "A publishes" 0 $RUN --prompts "$tmp/prompts" --kv-store "$U"
cp "$tmp/out" "$tmp/a.json"
positive "A: blocks published to Redis" blocks_published a.json
[ "$(redis-cli -h 127.0.0.1 -p "$port" dbsize)" -gt 0 ] || { echo "$NAME: Redis holds no key after A"; fail=1; }
# B: another process, an empty pool: adopts from Redis, the same tokens, and equal to alone
expect "B adopts" 0 $RUN --prompts "$tmp/prompts" --kv-store "$U" --check-logits
cp "$tmp/out" "$tmp/b.json"
expect_grep "B --check-logits" '"differing": 0, "logits": {"positions": 60, "differing": 0, "unstable": 0}' b.json
expect_grep "B --check-logits message" "logits equal running it alone bit for bit" err
positive "B: blocks fetched from Redis" hits b.json
positive "B: bytes fetched" bytes_fetched b.json
a_pf=$(jnum prefill_tokens a.json)
b_pf=$(jnum prefill_tokens b.json)
[ -n "$a_pf" ] && [ -n "$b_pf" ] && [ "$b_pf" -lt "$a_pf" ] ||
    { echo "$NAME: B computed $b_pf prompt tokens, A $a_pf: expected fewer"; fail=1; }
texts a.json >"$tmp/ta"
texts b.json >"$tmp/tb"
[ -s "$tmp/ta" ] && cmp -s "$tmp/ta" "$tmp/tb" || { echo "$NAME: B's texts differ from A's"; fail=1; }
# C: other prompts with the shared prefix adopt it from Redis
expect "C adopts the shared prefix" 0 $RUN --prompts "$tmp/prompts2" --kv-store "$U" --check
expect_grep "C --check" '"differing": 0' out
positive "C: blocks fetched from Redis" hits
# D: the server killed: every prompt prefills locally, the same tokens, errors counted
redis_kill "$SPID"
expect "D with Redis down" 0 $RUN --prompts "$tmp/prompts" --kv-store "$U" --kv-timeout 200
cp "$tmp/out" "$tmp/d.json"
positive "D: errors counted" errors d.json
[ "$(jnum hits d.json)" = 0 ] || { echo "$NAME: D: hits with Redis down"; fail=1; }
texts d.json >"$tmp/td"
cmp -s "$tmp/ta" "$tmp/td" || { echo "$NAME: D's texts differ from A's"; fail=1; }
[ $fail = 0 ] && echo "$NAME: ok"
exit $fail
