#!/bin/sh
# SPDX-License-Identifier: MIT
# CLI behaviour of the evaluation commands on stories260K: `cq eval mc` on the
# committed HellaSwag fixture and on a tiny cloze set, `cq calibrate` writing a
# mask and a ROM image that `cq eval ppl --mask` accepts, `cq eval capture` then
# `cq eval attn` on the captured arrays, a quick `cq sweep` with parseable JSON
# and SVG plots, and refusals of bad arguments. Skips (exit 0) without the model.
CQ=${1:-build/cq}
SHARED=${CQ_SHARED:-../shared}
HERE=$(dirname "$0")
FIX="$HERE/../data/hellaswag_mini.jsonl"
if [ ! -d "$SHARED/models/stories260K" ]; then
    echo "eval_cli: no $SHARED/models/stories260K, skipped"
    exit 0
fi
NAME=eval_cli
. "$(dirname "$0")/cli_lib.sh.inc"
# this file is the small-head case (head_dim 8): every model command names stories260K
M="$SHARED/models/stories260K"
json_ok() { # description, file: valid JSON when python3 is there
    if command -v python3 >/dev/null 2>&1; then
        python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$tmp/$2" ||
            { echo "eval_cli: $1: invalid JSON"; sed 's/^/  /' "$tmp/$2"; fail=1; }
    fi
}

# --- multiple choice: the fixture (5 easy items: the fp16 model gets them all right)
expect "mc --help" 0 "$CQ" eval mc --help
expect "mc hellaswag" 0 "$CQ" eval mc -m "$M" --hellaswag "$FIX" --formats cq8/cq8,cq4/cq4,q4_0,turbo3
expect_grep "mc hellaswag" "| fp16/fp16 | " out
expect_grep "mc hellaswag fp16 all right" "| fp16/fp16 | [0-9.]* | [0-9.]* | [0-9.]* | 1.0000 | \[0.566, 1.000\] | 1.0000 |" out
# q4_0's 32-channel blocks run over each token's row of 4 kv heads x 8 (the row layout)
expect_grep "mc hellaswag q4_0 runs in rows at D=8" "| q4_0/q4_0[ (!)]* | [0-9.]* | [0-9.]* | [0-9.]* |" out
expect_grep "mc hellaswag turbo3 n/a even in rows" "| turbo3/turbo3 | n/a: turbo3 cannot code keys at head_dim 8, nor as a row of 4 kv heads x 8 = 32 channels" out
expect_grep "mc progress" "item 5/5" err
expect "mc hellaswag json" 0 "$CQ" eval mc -m "$M" --hellaswag "$FIX" --formats cq8 --json
json_ok "mc json" out
expect_grep "mc json" '"mcnemar_p"' out
expect "mc hellaswag csv" 0 "$CQ" eval mc -m "$M" --hellaswag "$FIX" --formats cq8 --csv
expect_grep "mc csv" "^format,codec_bits_per_value,cache_bits_per_value,cache_bits_no_slack,mean_len,n,acc" out
n=$(grep -c '^cq8/cq8,' "$tmp/out")
[ "$n" = 1 ] || { echo "eval_cli: mc csv: expected one cq8 row"; fail=1; }
# a tiny cloze set from a text of our own
i=0
: >"$tmp/story.txt"
for who in Lily Tom Sue Ben Max Anna; do
    i=$((i + 1))
    echo "$who had a red ball. $who went to the park with Mom. The sun was warm and bright. $who played with the ball all day. Then they went home." >>"$tmp/story.txt"
done
expect "mc cloze" 0 "$CQ" eval mc -m "$M" --cloze "$tmp/story.txt" --items 4 --formats cq8 --json
json_ok "mc cloze json" out
expect_grep "mc cloze 4 items" '"items": 4' out
expect "mc missing file" 1 "$CQ" eval mc -m "$M" --hellaswag "$tmp/none.jsonl"
printf '{"ctx": "a", "endings": ["b"' >"$tmp/bad.jsonl"
expect "mc malformed jsonl" 1 "$CQ" eval mc -m "$M" --hellaswag "$tmp/bad.jsonl"
expect "mc bad items" 2 "$CQ" eval mc -m "$M" --items x
expect "mc cq4+ without mask" 2 "$CQ" eval mc -m "$M" --formats cq4+/cq4
expect "mc both sources" 2 "$CQ" eval mc -m "$M" --hellaswag "$FIX" --cloze "$tmp/story.txt"

# --- calibration: mask + ROM, accepted by eval ppl --mask; eval calibrate is an alias
expect "calibrate" 0 "$CQ" calibrate -m "$M" --seqs 8 --len 64 --batches 4 --out "$tmp/mask.txt" --rom "$tmp/rom.hex"
expect_grep "calibrate stability" "stability (mean overlap" out
rows=$(grep -vc '^#' "$tmp/mask.txt")
[ "$rows" = 20 ] || { echo "eval_cli: mask has $rows rows, expected 20"; fail=1; }
roms=$(grep -c '^[0-9a-f][0-9a-f]$' "$tmp/rom.hex")
[ "$roms" = 20 ] || { echo "eval_cli: ROM has $roms 2-digit hex lines, expected 20"; fail=1; }
# every ROM line has exactly k = 2 bits set, and they are the mask file's channels
python3 - "$tmp/mask.txt" "$tmp/rom.hex" <<'PY' || fail=1
import sys
m = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith('#')]
r = [int(l, 16) for l in open(sys.argv[2]) if l.strip()]
for row, bits in zip(m, r):
    want = sum(1 << int(c) for c in row[2:])
    if want != bits:
        print("eval_cli: ROM line %s != mask %s" % (hex(bits), row)); sys.exit(1)
PY
expect "eval calibrate alias json" 0 "$CQ" eval calibrate -m "$M" --seqs 8 --len 64 --batches 4 --json
json_ok "calibrate json" out
expect_grep "calibrate json" '"layer0"' out
expect "ppl with calibrated mask" 0 "$CQ" eval ppl -m "$M" --formats cq4+/cq4 --mask "$tmp/mask.txt" --chunks 1 --ctx 256
expect_grep "ppl with calibrated mask" "| cq4+/cq4 | " out
expect "calibrate k >= D" 2 "$CQ" calibrate -m "$M" --k 8 --seqs 2
expect "calibrate bad batches" 2 "$CQ" calibrate -m "$M" --batches 0
expect "calibrate unwritable" 1 "$CQ" calibrate -m "$M" --seqs 2 --len 32 --out "$tmp/nodir/mask.txt"

# --- capture, then eval attn on the arrays (and the in-memory capture agrees)
expect "capture" 0 "$CQ" eval capture -m "$M" --out "$tmp/cap" --tokens 384
for a in q k v; do [ -s "$tmp/cap_$a.npy" ] || { echo "eval_cli: no cap_$a.npy"; fail=1; }; done
expect "attn on capture" 0 "$CQ" eval attn --q "$tmp/cap_q.npy" --k "$tmp/cap_k.npy" --v "$tmp/cap_v.npy" --preset megaquant --codecs fp16,cq8,cq4
expect_grep "attn fp16 exact" "| fp16 | fp16 | 16.0000 | 1.000000 | 1.000000 | 1.0000 | 1.0000 |" out
grep '| cq4 | cq4 |' "$tmp/out" >"$tmp/a_file"
expect "attn in memory" 0 "$CQ" eval attn --model "$SHARED/models/stories260K" --preset megaquant --codecs cq4
grep '| cq4 | cq4 |' "$tmp/out" >"$tmp/a_mem"
cmp -s "$tmp/a_file" "$tmp/a_mem" || { echo "eval_cli: attn from .npy and in memory differ"; cat "$tmp/a_file" "$tmp/a_mem"; fail=1; }
expect "capture without --out" 2 "$CQ" eval capture -m "$M"
expect "capture too far" 1 "$CQ" eval capture -m "$M" --out "$tmp/x" --offset 4000000000
expect "attn npy and model" 2 "$CQ" eval attn --q "$tmp/cap_q.npy" --model "$SHARED/models/stories260K"

# --- sweep: quick, JSON parseable, plots written
expect "sweep --help" 0 "$CQ" sweep --help
expect "sweep quick json" 0 "$CQ" sweep -m "$M" --quick --groups 32,128 --plot "$tmp/sw" --json
json_ok "sweep json" out
# the cache runs q4_0 in the row layout (a KLD); per-head attention fidelity cannot
expect_grep "sweep q4_0 kld in rows" '"label": "q4_0".*"kld_mean": [0-9.]*, .*"kld_na": "", .*"attn_na": "q4_0 cannot code keys at head_dim 8"' out
expect_grep "sweep cq4+ G32" '"label": "cq4+/cq4 G=32"' out
for p in kld cos; do
    grep -q '<svg' "$tmp/sw_$p.svg" 2>/dev/null || { echo "eval_cli: sweep plot $p missing"; fail=1; }
done
expect "sweep nothing" 2 "$CQ" sweep --no-groups --no-zoo
expect "sweep bad groups" 2 "$CQ" sweep --groups 0,x
[ $fail = 0 ] && echo "eval_cli: ok (mc, calibrate, capture + attn, sweep)"
exit $fail
