#!/bin/sh
# SPDX-License-Identifier: MIT
# CLI behaviour of `cq engine run`: all golden vectors pass through both model
# revisions; a .npy ([T][D] and [2][T][D]) is streamed and checked; a corrupted
# golden K_hat is caught (the check can fail); --trace writes one line per beat;
# bad arguments exit 2.
CQ=${1:-build/cq}
SHARED=${CQ_SHARED:-../shared}
NAME=engine_cli
COMBINED=1
. "$(dirname "$0")/cli_lib.sh.inc"
V="$SHARED/vectors/channelquant"
expect "golden vectors, both revisions" 0 "$CQ" engine run --csv "$V"/d*_T*_G*__*
n=$(grep -c ',0,0,' "$tmp/out")
[ "$n" = 18 ] || { echo "engine_cli: expected 18 clean runs, got $n"; fail=1; }
expect "help" 0 "$CQ" engine run --help
expect "no subcommand" 2 "$CQ" engine
expect "bad rev" 2 "$CQ" engine run --rev v9
expect "bad lanes" 2 "$CQ" engine run --lanes 0
expect "trace needs one run" 2 "$CQ" engine run --trace "$tmp/t.txt"
expect "missing input" 1 "$CQ" engine run "$tmp/nonexistent"

# the check can fail: one golden K_hat word changed
cp -r "$V/d64_T128_G64__CQ4" "$tmp/d64_T128_G64__CQ4"
sed -i '3s/.*/3f800000/' "$tmp/d64_T128_G64__CQ4/expected_k_hat.f32.hex"
expect "corrupt golden K_hat" 1 "$CQ" engine run --rev v0.3 "$tmp/d64_T128_G64__CQ4"
expect_grep "corrupt golden K_hat" "CQ_ERR_MISMATCH: key token 0 channel 2"

# .npy input: [T][D] f2 and [2][T][D] f4, written with the standard library only
if command -v python3 >/dev/null 2>&1; then
python3 - "$tmp" <<'PY'
import struct, sys, random
def npy(path, descr, shape, data, fmt):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d, " % s for s in shape))
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
        f.write(struct.pack("<%d%s" % (len(data), fmt), *data))
r = random.Random(7)
kv2 = [r.gauss(0, 1) for _ in range(320)]
kv2[1 * 16 + 3] = -0.0  # token 1, outlier channel 3
npy(sys.argv[1] + "/kv2.npy", "<f2", (20, 16), kv2, "e")
npy(sys.argv[1] + "/kv3.npy", "<f4", (2, 40, 32), [r.gauss(0, 2) for _ in range(2560)], "f")
PY
expect "npy [T][D] CQ4plus" 0 "$CQ" engine run --tier CQ4plus --group 8 --outliers 3,9 "$tmp/kv2.npy"
expect_grep "npy [T][D]" "keys stored 16 of 20"
# gap 8 shown, not hidden: v0.2 reads the -0.0 outlier as +0.0, v0.3 exactly
expect "npy -0.0 outlier v0.2" 0 "$CQ" engine run --rev v0.2 --tier CQ4plus --group 8 --outliers 3,9 "$tmp/kv2.npy"
expect_grep "v0.2 gap 8" "1 outlier -0.0 read as +0.0 (v0.2 gap 8)"
expect "npy -0.0 outlier v0.3" 0 "$CQ" engine run --rev v0.3 --tier CQ4plus --group 8 --outliers 3,9 "$tmp/kv2.npy"
grep -q "gap 8" "$tmp/out" && { echo "engine_cli: v0.3 must read -0.0 exactly"; fail=1; }
expect "lanes 3 on a golden vector" 0 "$CQ" engine run --lanes 3 "$V/d64_T70_G64__CQ4plus"
expect "npy [2][T][D] CQ8" 0 "$CQ" engine run --tier CQ8 --json "$tmp/kv3.npy"
expect_grep "npy [2][T][D]" '"mismatches": 0'
fi

# trace: D*T key beats + D*T value beats in, D per record out
expect "trace" 0 "$CQ" engine run --rev v0.3 --tier CQ4 --dim 8 --tokens 6 --group 4 --trace "$tmp/t.txt"
s=$(grep -c '^S ' "$tmp/t.txt"); m=$(grep -c '^M ' "$tmp/t.txt")
[ "$s" = 96 ] && [ "$m" = 96 ] || { echo "engine_cli: trace has $s S and $m M lines, want 96 and 96"; fail=1; }
head -1 "$tmp/t.txt" | grep -q '^# cq-engine-trace 1 rev=v0.3' || { echo "engine_cli: trace header"; fail=1; }
# --trace-hex: the replay image (header, D beats per token in, D expected beats per read)
expect "trace-hex needs one run" 2 "$CQ" engine run --trace-hex "$tmp/k.hex"
expect "trace-hex" 0 "$CQ" engine run --rev v0.2 --tier CQ4 --dim 8 --tokens 6 --group 4 --trace-hex "$tmp/k.hex"
b=$(grep -c '^20' "$tmp/k.hex"); x=$(grep -c '^31' "$tmp/k.hex")
[ "$b" = 80 ] && [ "$x" = 80 ] || { echo "engine_cli: image has $b beats in and $x expected, want 80 and 80 (4 keys + 6 values; 10 reads)"; fail=1; }
head -1 "$tmp/k.hex" | grep -q '^0102010008000004$' || { echo "engine_cli: image header $(head -1 "$tmp/k.hex")"; fail=1; }
tail -1 "$tmp/k.hex" | grep -q '^ff00000000000000$' || { echo "engine_cli: image END word"; fail=1; }
n=$(grep -c '^T ' "$tmp/k.hex.model_spans"); r=$(grep -c '^R ' "$tmp/k.hex.model_spans")
[ "$n" = 10 ] && [ "$r" = 10 ] || { echo "engine_cli: $n token and $r read spans, want 10 and 10"; fail=1; }
grep -q '^R 0 13$' "$tmp/k.hex.model_spans" || { echo "engine_cli: v0.2 read span D + 5 = 13"; fail=1; }
[ "$(wc -l < "$tmp/k.hex.model_rows")" = 10 ] || { echo "engine_cli: model rows"; fail=1; }
expect "trace-hex unwritable" 1 "$CQ" engine run --rev v0.2 --trace-hex "$tmp/no/such/dir/k.hex"
exit $fail
