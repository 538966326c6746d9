#!/bin/sh
# SPDX-License-Identifier: MIT
# Hostile inputs to the cq tool (docs/FILE_IO.md, tests/test_cache_badinput.c for the
# library side): every file-reading option refuses a FIFO at once (under `timeout`, so a
# reader that blocks fails instead of hanging), refuses /dev/zero and other non-regular
# files, and states the size bound; `cq eval attn` exits 1 on a table of NaN metrics or
# of n/a rows only; `cq engine run --outliers` applies the mask file's rules.
CQ=${1:-build/cq}
SHARED=${CQ_SHARED:-../shared}
NAME=hostile_cli
COMBINED=1
. "$(dirname "$0")/cli_lib.sh.inc"
T="timeout ${HOSTILE_TIMEOUT:-20}"
mkfifo "$tmp/fifo" && mkfifo "$tmp/fifo.npy" || { echo "hostile_cli: mkfifo failed"; exit 1; }

# .npy arrays written here (python3: the independent writer of the test suite)
python3 - "$tmp" <<'PY' || { echo "hostile_cli: python3 failed"; exit 1; }
import struct, sys
d = sys.argv[1]
def npy(name, shape, word):
    h = "{'descr': '<f2', 'fortran_order': False, 'shape': (%s), }" % ", ".join(map(str, shape))
    h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
    n = 1
    for x in shape: n *= x
    open(d + "/" + name, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) +
                                     h.encode() + struct.pack("<H", word) * n)
npy("one.npy", [1, 1, 16, 8], 0x3c00)    # 1.0
npy("inf.npy", [1, 1, 16, 8], 0x7c00)    # +Inf (a query of Inf gives NaN cosines)
npy("k.npy", [64, 8], 0x3c00)            # engine input: T x D
PY

# --- defect 10: eval attn exit status
expect "attn finite table" 0 "$CQ" eval attn --q "$tmp/one.npy" --k "$tmp/one.npy" --v "$tmp/one.npy" --codecs fp16
expect "attn NaN cosines" 1 "$CQ" eval attn --q "$tmp/inf.npy" --k "$tmp/one.npy" --v "$tmp/one.npy" --codecs fp16
expect_grep "attn NaN named" "non-finite metrics"
expect "attn only n/a rows" 1 "$CQ" eval attn --q "$tmp/one.npy" --k "$tmp/one.npy" --v "$tmp/one.npy" --codecs q4_0
expect_grep "attn n/a named" "every row n/a"

# --- defect 11: engine --outliers follows the mask loader's rules
expect "outliers ok" 0 $T "$CQ" engine run --tier CQ4plus --outliers 1,5 --rev v0.3 "$tmp/k.npy"
expect "outliers duplicate" 2 "$CQ" engine run --tier CQ4plus --outliers 1,1 "$tmp/k.npy"
expect_grep "duplicate named" "ascending and unique"
expect "outliers unsorted" 2 "$CQ" engine run --tier CQ4plus --outliers 5,1 "$tmp/k.npy"
expect "outliers, other tier" 2 "$CQ" engine run --tier CQ4 --outliers 1,5 "$tmp/k.npy"
expect_grep "tier named" "CQ4plus only"

# --- defects 2 and 5: no reader blocks on a FIFO or reads a device without bound
expect "engine .npy FIFO" 1 $T "$CQ" engine run "$tmp/fifo.npy"
expect_grep "npy FIFO named" "not a regular file (a FIFO)"
expect "attn .npy FIFO" 1 $T "$CQ" eval attn --q "$tmp/fifo" --k "$tmp/one.npy" --v "$tmp/one.npy"
expect "attn .npy /dev/zero" 1 $T "$CQ" eval attn --q /dev/zero --k "$tmp/one.npy" --v "$tmp/one.npy"
expect_grep "device named" "not a regular file (a character device)"
GV="$SHARED/vectors/channelquant/d128_T100_G128__CQ4"
if [ -d "$GV" ]; then # a golden vector whose hex file is a FIFO
    mkdir "$tmp/v" && cp -r "$GV" "$tmp/v/" && rm "$tmp/v/d128_T100_G128__CQ4/input_k.f16.hex" &&
        mkfifo "$tmp/v/d128_T100_G128__CQ4/input_k.f16.hex"
    expect "vectors check, hex FIFO" 1 $T "$CQ" vectors check "$tmp/v/d128_T100_G128__CQ4"
    expect_grep "hex FIFO named" "not a regular file (a FIFO)"
fi
M="$SHARED/models/stories260K"
if [ -d "$M" ]; then
    for bad in "$tmp/fifo" /dev/zero; do
        expect "eval ppl --text $bad" 1 $T "$CQ" eval ppl --text "$bad" --formats fp16/fp16
        expect_grep "ppl text refused" "not a regular file"
        expect "eval mc --cloze $bad" 1 $T "$CQ" eval mc --cloze "$bad" --formats fp16/fp16
        expect_grep "cloze refused" "not a regular file"
        expect "eval ppl --mask $bad" 1 $T "$CQ" eval ppl --mask "$bad" --formats cq4+/cq4
        expect_grep "mask refused" "not a regular file"
        expect "generate --mask $bad" 1 $T "$CQ" generate -n 2 --kv cq4+/cq4 --mask "$bad"
        expect "eval ppl --model $bad" 1 $T "$CQ" eval ppl --model "$bad" --formats fp16/fp16
        expect "eval ppl --tokenizer $bad" 1 $T "$CQ" eval ppl --tokenizer "$bad" --formats fp16/fp16
        expect "eval mc --hellaswag $bad" 1 $T "$CQ" eval mc --hellaswag "$bad" --formats fp16/fp16
    done
fi
[ $fail = 0 ] && echo "hostile_cli: ok (eval attn status, engine --outliers, FIFO/device readers)"
exit $fail
