#!/bin/sh
# SPDX-License-Identifier: MIT
# CLI behaviour of `cq batch` (tools/cmd_batch.c, include/cq_batch.h): prompts sharing a
# long prefix, of different lengths (sequences join and leave at different steps), run
# with --check (every sequence's token ids equal running its prompt alone, exit 1
# otherwise) on stories260K (G 32, a small --max-batch and a budget small enough to
# preempt) and on the default model (tinyqwen-hd64-kbias, self-trained, G 128); prefix
# hits > 0 from --json, none with --no-prefix-cache; --check-logits (the logits of every
# sampled position equal running alone bit for bit, also with preemptions; one recorded
# hash changed through CQ_TEST_LOGITS_FLIP makes it exit 1 naming that sequence); the time
# to first token in the JSON (summary and per sequence) and the CSV; the CSV table; clean
# refusals.
CQ=${1:-build/cq}
SHARED=${CQ_SHARED:-../shared}
NAME=batch
. "$(dirname "$0")/cli_lib.sh.inc"
STORIES="$SHARED/models/stories260K"
pre="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
prefix="$pre $pre $pre $pre $pre $pre $pre $pre $pre $pre $pre $pre"
{
    echo "$prefix Tom said"
    echo "$prefix The dog ran to the park and"
    echo ""
    echo "$prefix One day, a big bird flew down from the tall tree and sat next to her. Lily smiled. She"
    echo "Once upon a time"
    echo "$prefix Mom"
} >"$tmp/prompts"
jnum() { # key: the number after "key": in $tmp/out
    grep -o "\"$1\": [0-9-]*" "$tmp/out" | head -1 | sed 's/.*: //'
}
positive() { # description, key
    v=$(jnum "$2")
    [ -n "$v" ] && [ "$v" -gt 0 ] || { echo "$NAME: $1: $2 is '$v', expected > 0"; fail=1; }
}
zero() {
    v=$(jnum "$2")
    [ "$v" = 0 ] || { echo "$NAME: $1: $2 is '$v', expected 0"; fail=1; }
}
expect "batch --help" 0 "$CQ" batch --help
expect_grep "batch --help" "--check" out
expect_grep "batch --help" "--check-logits" out
expect "batch without --prompts" 2 "$CQ" batch -n 4
expect "batch bad -n" 2 "$CQ" batch --prompts "$tmp/prompts" -n x
expect "batch missing prompts file" 1 "$CQ" batch -m "$STORIES" --prompts "$tmp/none"
expect_grep "batch missing prompts file" "CQ_ERR_IO" err
expect "batch prompts is a directory" 1 "$CQ" batch -m "$STORIES" --prompts "$tmp"
expect_grep "batch prompts is a directory" "CQ_ERR_IO" err
mkfifo "$tmp/fifo" 2>/dev/null && {
    expect "batch prompts is a FIFO" 1 "$CQ" batch -m "$STORIES" --prompts "$tmp/fifo"
    expect_grep "batch prompts is a FIFO" "CQ_ERR_IO" err
}
: >"$tmp/empty"
expect "batch empty prompts file" 1 "$CQ" batch -m "$STORIES" --prompts "$tmp/empty"
expect_grep "batch empty prompts file" "no prompt" err
expect "batch max-batch below a block" 2 "$CQ" batch -m "$STORIES" --prompts "$tmp/prompts" --max-batch 16
expect_grep "batch max-batch below a block" "block" err
expect "batch kivi refused" 1 "$CQ" batch -m "$STORIES" --prompts "$tmp/prompts" --kv kivi-4/kivi-4 -n 2
expect "batch fp32 refused" 2 "$CQ" batch -m "$STORIES" --prompts "$tmp/prompts" --kv fp32 -n 2

# stories260K, G 32: chunks of at most 40 tokens per step, a budget that forces preemption
expect "batch --check stories cq4 preempting" 0 "$CQ" batch -m "$STORIES" --prompts "$tmp/prompts" \
    -n 24 --kv cq4/cq4 -g 32 --max-batch 40 --budget 0.2 --check --json
expect_grep "batch --check stories cq4" '"differing": 0' out
positive "stories cq4: prefix hits" prefix_hits
positive "stories cq4: preemption" preemptions
positive "stories cq4: bytes shared" shared_saved
# the same with the logits compared bit for bit (preempted sequences rerun)
expect "batch --check-logits stories cq4 preempting" 0 "$CQ" batch -m "$STORIES" --prompts "$tmp/prompts" \
    -n 24 --kv cq4/cq4 -g 32 --max-batch 40 --budget 0.2 --check-logits --json
expect_grep "batch --check-logits: tokens" '"differing": 0, "logits"' out
expect_grep "batch --check-logits: logits" '"logits": {"positions": 120, "differing": 0, "unstable": 0}' out
positive "check-logits: preemption" preemptions
expect_grep "batch --check-logits message" "logits equal running it alone bit for bit" err
# time to first token: the summary and every sequence (mean <= max, each > 0)
expect_grep "ttft summary" '"ttft_mean_s": [0-9.]*, "ttft_median_s": [0-9.]*, "ttft_max_s": [0-9.]*' out
expect_grep "ttft from admission" '"ttft_admitted_median_s": [0-9.]*' out
[ "$(grep -c '"ttft_s": [0-9.]*, "ttft_admitted_s": [0-9.]*' "$tmp/out")" = 5 ] ||
    { echo "$NAME: not five sequences with ttft_s"; fail=1; }
awk -F'"ttft_mean_s": ' 'NF > 1 { split($2, a, ","); m = a[1] }
     /"ttft_max_s": / { split($0, b, "\"ttft_max_s\": "); split(b[2], c, ","); x = c[1] }
     END { exit !(m > 0 && x >= m) }' "$tmp/out" || { echo "$NAME: ttft mean / max"; fail=1; }
# one recorded hash changed: --check-logits must fail on that sequence alone
expect "batch --check-logits catches a changed row" 1 env CQ_TEST_LOGITS_FLIP=3:5 "$CQ" batch -m "$STORIES" \
    --prompts "$tmp/prompts" -n 8 --kv cq4/cq4 -g 32 --max-batch 64 --check-logits --json
expect_grep "check-logits failure named" "sequence 3: the logits of 1 of 8 sampled positions differ" err
expect_grep "check-logits failure in JSON" '"logits": {"positions": 40, "differing": 1' out
expect_grep "check-logits: tokens still equal" '"differing": 0, "logits"' out
expect "batch --check stories fp16" 0 "$CQ" batch -m "$STORIES" --prompts "$tmp/prompts" \
    -n 16 --kv fp16/fp16 -g 32 --max-batch 64 --check --json
expect_grep "batch --check stories fp16" '"differing": 0' out
positive "stories fp16: prefix hits" prefix_hits
expect "batch --no-prefix-cache" 0 "$CQ" batch -m "$STORIES" --prompts "$tmp/prompts" \
    -n 4 --kv cq4/cq4 -g 32 --no-prefix-cache --json
zero "no prefix cache: hits" prefix_hits
zero "no prefix cache: lookups" prefix_lookups
expect "batch --csv" 0 "$CQ" batch -m "$STORIES" --prompts "$tmp/prompts" -n 4 --csv
expect_grep "batch --csv header" "^id,prompt_tokens,generated,stop,ttft_s,ttft_admitted_s,text" out
expect_grep "batch --csv ttft" "^0,[0-9]*,4,length,[0-9.]*,[0-9.]*,\"" out
expect_grep "batch --csv summary on stderr" "prefix lookups / hits" err
expect_grep "batch --csv: five sequences" "^4,[0-9]*,4,length,[0-9.]*,[0-9.]*,\"" out

# the default model (self-trained), G 128: the prefix spans whole blocks
expect "batch --check-logits default model cq4" 0 "$CQ" batch --prompts "$tmp/prompts" -n 6 --kv cq4/cq4 \
    --max-batch 160 --check-logits --json
expect_grep "default model cq4 --check-logits" '"differing": 0, "logits": {"positions": 30, "differing": 0' out
expect_grep "default model named self-trained" '"model_note": "tinyqwen-hd64-kbias: self-trained' out
positive "default model: prefix hits" prefix_hits
positive "default model: tokens reused" tokens_reused
# a precision suffix on the format: the batch and its --check runs alone both use it
expect "batch --check-logits cq4@exact" 0 "$CQ" batch -m "$STORIES" --prompts "$tmp/prompts" -n 8 \
    --kv cq4/cq4@exact -g 32 --max-batch 40 --check-logits --json
expect_grep "cq4@exact --check-logits" '"differing": 0, "logits": {"positions": 40, "differing": 0' out
expect "batch bad precision" 2 "$CQ" batch -m "$STORIES" --prompts "$tmp/prompts" --kv cq4/cq4@slow -n 2
exit $fail
