#!/bin/sh
# SPDX-License-Identifier: MIT
# The replay kit end to end (docs/ENGINE_REPLAY.md): `cq engine run --trace-hex`
# writes the image and the model's files for a golden vector (v0.2); the
# SystemVerilog testbench drives the behavioural stand-in block from it under
# Verilator (hw/tb/run_replay.py) and compare.py finds every span, row, read beat
# and register read equal to the model's. Then the comparison is shown able to
# fail: one model row and one model span changed. Without verilator this prints
# SKIP and passes (.ci/run installs it, so CI always runs it).
CQ=${1:-build/cq}
SHARED=${CQ_SHARED:-../shared}
NAME=engine_replay
COMBINED=1
. "$(dirname "$0")/cli_lib.sh.inc"
if ! command -v verilator >/dev/null 2>&1; then
    echo "engine_replay: SKIP (verilator not installed; .ci/run installs it)"
    exit 0
fi
V="$SHARED/vectors/channelquant"
P="$tmp/kit.hex"
expect "image (v0.2, golden CQ-4+)" 0 "$CQ" engine run --rev v0.2 --trace-hex "$P" "$V/d64_T70_G64__CQ4plus"
expect "testbench + stand-in + compare" 0 python3 hw/tb/run_replay.py "$P" "${REPLAY_BUILD:-build-replay}"
expect_grep "replay compare" "replay compare: 268 spans (134 tokens, 134 reads), 134 rows, 8576 read beats and 3 register reads: all equal"
cat "$tmp/out"
# the comparison can fail: a row, then a span, differ from the block's
cp "$P.model_rows" "$tmp/rows.ok"
sed -i '3s/^\(.......\)./\17/; 3s/^\(.......\)77/\1f7/' "$P.model_rows"
cmp -s "$P.model_rows" "$tmp/rows.ok" && { echo "engine_replay: row not changed"; fail=1; }
expect "a changed row is caught" 1 python3 hw/tb/compare.py "$P"
expect_grep "row difference" "compare.py: row 0002"
cp "$tmp/rows.ok" "$P.model_rows"
sed -i '5s/ \([0-9]*\)$/ 1\1/' "$P.model_spans"
expect "a changed span is caught" 1 python3 hw/tb/compare.py "$P"
expect_grep "span difference" "compare.py: span: model T 4"
exit $fail
