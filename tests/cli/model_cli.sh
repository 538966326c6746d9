#!/bin/sh
# SPDX-License-Identifier: MIT
# CLI behaviour of `cq generate` and `cq eval` on the default model
# (tinyqwen-hd64-kbias, self-trained): the greedy story on the fp32 path and
# through the fp16 cache, the perplexity table and its JSON/CSV forms with
# both bit figures, the warnings (context <= G, a KIVI window covering the
# sequence, calibration overlapping the scored text), the base-logit file,
# calibration output in the mask format, the shared option spellings, and
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
expect_grep "generate default model" "tokens/s" err
expect_grep "generate stop reason" "stopped: reached -n" err
expect "generate -m stories260K" 0 "$CQ" generate -m "$SHARED/models/stories260K" -n 8
expect "generate ctx over the model's" 2 "$CQ" generate -c 100000 -n 4
expect "generate bad -n" 2 "$CQ" generate -n x
expect "generate unknown codec" 2 "$CQ" generate --kv nope/fp16
expect "generate missing model" 1 "$CQ" generate --model "$tmp/none.bin"
expect_grep "generate missing model" "CQ_ERR_IO" err
printf 'not a model at all' >"$tmp/bad.bin"
expect "generate garbage model" 1 "$CQ" generate --model "$tmp/bad.bin"
expect_grep "generate garbage model" "CQ_ERR_FORMAT" err
expect "eval ppl oracle" 0 "$CQ" eval ppl --ref-oracle --formats fp32 --chunks 1
expect_grep "eval ppl oracle" "| fp32 | 32.000 | 32.000 |" out
expect_grep "eval ppl default model" "tinyqwen-hd64-kbias.gguf (tinyqwen-hd64-kbias: self-trained" out
expect_grep "eval ppl progress" "chunk 1/1" err
grep -q "$(printf '\r')" "$tmp/err" && { echo "model_cli: progress wrote carriage returns to a file"; fail=1; }
expect "eval ppl json" 0 "$CQ" eval ppl --ref-oracle --formats fp32 --chunks 1 --json
expect_grep "eval ppl json" '"kld_mean"' out
expect "eval ppl csv" 0 "$CQ" eval ppl --ref-oracle --formats fp32 --chunks 1 --csv
expect_grep "eval ppl csv" "^format,codec_bits_per_value,cache_bits_per_value,cache_context,ppl" out
expect "eval ppl cache" 0 "$CQ" eval ppl --formats fp16/fp16,cq8/cq8 --chunks 1
expect_grep "eval ppl cache" "| cq8/cq8 | 8.250 |" out
# the shared spellings: -m -f -c -t --kv
expect "eval ppl short options" 0 "$CQ" eval ppl -m "$SHARED/models/tinyqwen-hd64/tinyqwen-hd64.gguf" \
    -f "$SHARED/eval/tinystories_val.txt" -c 256 -t 1 --kv cq4/cq4 --chunks 1 --json
expect_grep "eval ppl -m" '"model": "[^"]*tinyqwen-hd64.gguf"' out
expect_grep "eval ppl codec bits (4 + 8/G + 8/D)" '"codec_bits_per_value": 4.1875' out
# warnings: context <= G; a KIVI window covering the sequence; calibration overlap
expect "eval ppl ctx <= G" 0 "$CQ" eval ppl -c 128 --kv cq4/cq4 --chunks 1 --json
expect_grep "warn ctx <= G (stderr)" "warning: cq4/cq4: the context is not longer than the key group" err
expect_grep "warn ctx <= G (json)" '"id": "ctx_le_group"' out
expect "eval ppl ctx > G" 0 "$CQ" eval ppl -c 256 --kv cq4/cq4 --chunks 1 --json
grep -q "ctx_le_group" "$tmp/out" && { echo "model_cli: ctx_le_group raised at ctx 256 > G"; fail=1; }
expect "eval ppl kivi window" 0 "$CQ" eval ppl -c 128 --kv kivi-4/kivi-4 --chunks 1 --json
expect_grep "warn kivi window" '"id": "kivi_window_ge_seq"' out
expect "eval ppl calib overlap" 0 "$CQ" eval ppl --kv cq8/cq8 --chunks 1 --calib-range 100:5000 --json
expect_grep "warn calib overlap" '"id": "calib_overlap"' out
expect_grep "warn calib overlap (stderr)" "warning: cq8/cq8: the calibration text overlaps" err
expect "eval ppl ctx over the model's" 2 "$CQ" eval ppl -c 1024 --chunks 1
expect_grep "ctx over the model's: message" "larger than the model's context of 512" err
# the reference written once, then read back (same figures); a mismatched file is refused
expect "kld base write" 0 "$CQ" eval ppl -c 256 --chunks 2 --kv cq4/cq4 --kld-base "$tmp/base" --json
expect_grep "kld base written" "reference written to" err
grep -o '"kld_mean": [0-9.e-]*' "$tmp/out" >"$tmp/k1"
expect "kld base read" 0 "$CQ" eval ppl -c 256 --chunks 2 --kv cq4/cq4 --kld-base "$tmp/base" --json
expect_grep "kld base read" '"reference_from_file": 1' out
grep -o '"kld_mean": [0-9.e-]*' "$tmp/out" >"$tmp/k2"
python3 - "$tmp/k1" "$tmp/k2" <<'PY' || fail=1
import math, sys
a = float(open(sys.argv[1]).read().split()[1]); b = float(open(sys.argv[2]).read().split()[1])
# the JSON prints 6 significant digits (each value within half a unit of the 6th), and the
# base file holds the reference's log-probabilities as fp32 (1e-6 relative covers that)
unit = 10.0 ** (math.floor(math.log10(max(a, b, 1e-12))) - 5)
if abs(a - b) > unit + 1e-6 * max(a, 1e-12) + 1e-9:
    print("model_cli: KLD with the base file %g != computed %g" % (b, a)); sys.exit(1)
PY
expect "kld base other run" 1 "$CQ" eval ppl -c 256 --chunks 3 --kv cq4/cq4 --kld-base "$tmp/base"
expect_grep "kld base other run" "written for another run" err
expect "kld base other model" 1 "$CQ" eval ppl -m "$SHARED/models/tinyqwen-hd64/tinyqwen-hd64.gguf" \
    -c 256 --chunks 2 --kv cq4/cq4 --kld-base "$tmp/base"
expect_grep "kld base other model" "another model" err
# a cache format as the reference, and the precision suffix: the same format and precision as
# the reference is KLD 0 to the last bit; FAST against EXACT is not (the suffix reaches the
# session's attention); the json names the reference
expect "ref-kv same" 0 "$CQ" eval ppl -c 256 --chunks 2 --ref-kv cq4/cq4@exact --kv cq4/cq4@exact,cq4@fast --json
expect_grep "ref-kv same" '"reference": {"format": "cq4/cq4@exact"'
python3 - "$tmp/out" <<'PY' || fail=1
import json, sys
d = json.load(open(sys.argv[1]))
k = {f["format"]: f for f in d["formats"]}
ok = (set(k) == {"cq4/cq4@exact", "cq4/cq4@fast"} and k["cq4/cq4@exact"]["kld_mean"] == 0
      and k["cq4/cq4@exact"]["kld_max"] == 0 and k["cq4/cq4@fast"]["kld_mean"] > 0)
if not ok:
    print("model_cli: --ref-kv: exact against itself not 0 or fast equal to exact:",
          {n: (f["kld_mean"], f["kld_max"]) for n, f in k.items()}); sys.exit(1)
PY
expect "ref-kv bad precision" 2 "$CQ" eval ppl -c 256 --chunks 1 --ref-kv cq4/cq4@slow
expect_grep "ref-kv bad precision" "neither exact nor fast" err
expect "kv bad precision" 2 "$CQ" eval ppl -c 256 --chunks 1 --kv cq4/cq4@
expect "kv fp32 precision" 2 "$CQ" eval ppl -c 256 --chunks 1 --kv fp32@fast
expect "ref-kv with kld-base" 2 "$CQ" eval ppl -c 256 --chunks 1 --ref-kv cq4/cq4 --kld-base "$tmp/b2"
expect "ref-kv with oracle" 2 "$CQ" eval ppl -c 256 --chunks 1 --ref-kv cq4/cq4 --ref-oracle
expect "ref-kv cq4+ without a mask" 2 "$CQ" eval ppl -c 256 --chunks 1 --ref-kv cq4+/cq4
expect_grep "ref-kv cq4+ without a mask" "CQ-4+ keys need --mask" err
printf 'CQKLBASE' >"$tmp/short_base"
expect "kld base truncated" 1 "$CQ" eval ppl -c 256 --chunks 2 --kv cq4/cq4 --kld-base "$tmp/short_base"
mkfifo "$tmp/fifo_base"
expect "kld base fifo" 1 timeout 60 "$CQ" eval ppl -c 256 --chunks 2 --kv cq4/cq4 --kld-base "$tmp/fifo_base"
expect_grep "kld base fifo" "not a regular file" err
expect "eval ppl cq4+ without mask" 2 "$CQ" eval ppl --formats cq4+/cq4
expect "eval ppl bad format" 2 "$CQ" eval ppl --formats fp16/cq9
expect "eval calibrate" 0 "$CQ" eval calibrate --seqs 4 --k 2 --out "$tmp/mask.txt"
lines=$(grep -vc '^#' "$tmp/mask.txt")
[ "$lines" = 8 ] || { echo "model_cli: calibrate wrote $lines mask rows, expected 8 (4 layers x 2 kv heads)"; fail=1; }
expect "eval ppl cq4+ with the mask" 0 "$CQ" eval ppl --kv cq4+/cq4 --mask "$tmp/mask.txt" -c 256 --chunks 1
expect_grep "cq4+ row" "| cq4+/cq4 | " out
expect "eval unknown sub" 2 "$CQ" eval nope
exit $fail
