#!/bin/sh
# CLI behaviour of `cq generate` and `cq eval`: the pinned greedy story of
# stories260K on the fp32 path and through the fp16 cache, the perplexity
# table and its JSON/CSV forms, calibration output in the mask format, and
# clean refusals (bad options exit 2, missing files exit 1 with a named error).
CQ=${1:-build/cq}
SHARED=${CQ_SHARED:-../shared}
NAME=model_cli
. "$(dirname "$0")/cli_lib.sh.inc"
story="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
expect "generate --help" 0 "$CQ" generate --help
expect "eval --help" 0 "$CQ" eval --help
expect "generate fp32 path" 0 "$CQ" generate --kv fp32 -n 40
expect_grep "generate fp32 path" "$story" out
expect "generate fp16 cache" 0 "$CQ" generate -n 40
expect_grep "generate fp16 cache" "$story" out
expect_grep "generate fp16 cache" "bits/value" err
expect "generate bad -n" 2 "$CQ" generate -n x
expect "generate unknown codec" 2 "$CQ" generate --kv nope/fp16
expect "generate missing model" 1 "$CQ" generate --model "$tmp/none.bin"
expect_grep "generate missing model" "CQ_ERR_IO" err
printf 'not a model at all' >"$tmp/bad.bin"
expect "generate garbage model" 1 "$CQ" generate --model "$tmp/bad.bin"
expect_grep "generate garbage model" "CQ_ERR_FORMAT" err
expect "eval ppl oracle" 0 "$CQ" eval ppl --ref-oracle --formats fp32 --chunks 1
expect_grep "eval ppl oracle" "| fp32 | 32.000 |" out
expect_grep "eval ppl progress" "chunk 1/1" err
expect "eval ppl json" 0 "$CQ" eval ppl --ref-oracle --formats fp32 --chunks 1 --json
expect_grep "eval ppl json" '"kld_mean"' out
expect "eval ppl csv" 0 "$CQ" eval ppl --ref-oracle --formats fp32 --chunks 1 --csv
expect_grep "eval ppl csv" "^format,bits_per_value,ppl" out
expect "eval ppl cache" 0 "$CQ" eval ppl --formats fp16/fp16,cq8/cq8 --chunks 1
expect_grep "eval ppl cache" "| cq8/cq8 |" out
expect "eval ppl cq4+ without mask" 2 "$CQ" eval ppl --formats cq4+/cq4
expect "eval ppl bad format" 2 "$CQ" eval ppl --formats fp16/cq9
expect "eval calibrate" 0 "$CQ" eval calibrate --seqs 4 --k 2 --out "$tmp/mask.txt"
lines=$(grep -vc '^#' "$tmp/mask.txt")
[ "$lines" = 20 ] || { echo "model_cli: calibrate wrote $lines mask rows, expected 20"; fail=1; }
expect "eval unknown sub" 2 "$CQ" eval nope
exit $fail
