#!/bin/sh
# SPDX-License-Identifier: MIT
# CLI behaviour of `cq vectors`: a corrupted vector is caught on the right
# surface (both directions), gen writes vectors that check accepts and never
# overwrites, and bad arguments are refused with a non-zero exit.
CQ=${1:-build/cq}
SHARED=${CQ_SHARED:-../shared}
NAME=vectors_cli
COMBINED=1
. "$(dirname "$0")/cli_lib.sh.inc"
src="$SHARED/vectors/channelquant/d64_T70_G64__CQ4plus"
v="$tmp/d64_T70_G64__CQ4plus"
cp -r "$src" "$v"
expect "pristine copy passes" 0 "$CQ" vectors check "$v"
# flip one payload byte: compress side must report key_payload at that index
sed -i '5s/.*/ff/' "$v/key_payload.u8.hex"
expect "corrupt key payload fails" 1 "$CQ" vectors check "$v"
expect_grep "corrupt key payload" "compress key_payload\[4\]"
cp "$src/key_payload.u8.hex" "$v/"
# corrupt one decoded value: decompress side must report it
sed -i '7s/.*/12345678/' "$v/expected_v_hat.f32.hex"
expect "corrupt v_hat fails" 1 "$CQ" vectors check "$v"
expect_grep "corrupt v_hat" "decompress v_hat\[6\]"
cp "$src/expected_v_hat.f32.hex" "$v/"
# a truncated sidecar is a length mismatch, not a crash
sed -i '$d' "$v/sidecar.f16.hex"
expect "short sidecar fails" 1 "$CQ" vectors check "$v"
expect_grep "short sidecar" "sidecar: length"
cp "$src/sidecar.f16.hex" "$v/"
# a malformed word is a format error naming the file and line
sed -i '3s/.*/zz/' "$v/outlier_mask.u8.hex"
expect "malformed mask fails" 1 "$CQ" vectors check "$v"
expect_grep "malformed mask" "line 3"
# gen -> check, for every tier, awkward shapes
for args in "CQ8 6 1 1" "CQ4 32 5 8" "CQ4plus 96 33 16" "CQ4plus 256 3 128" "CQ4 2 9 4"; do
    set -- $args
    expect "gen $args" 0 "$CQ" vectors gen --tier "$1" --dim "$2" --tokens "$3" --group "$4" --seed 7 --specials "$tmp/gen"
    expect "check generated $args" 0 "$CQ" vectors check "$tmp/gen/d$2_T$3_G$4__$1"
done
expect "gen refuses to overwrite" 1 "$CQ" vectors gen --tier CQ4 --dim 32 --tokens 5 --group 8 --seed 7 "$tmp/gen"
expect "gen odd D" 1 "$CQ" vectors gen --tier CQ4 --dim 33 --tokens 5 --group 8 "$tmp/gen"
expect_grep "gen odd D" "CQ_ERR_DIM"
expect "gen unsorted outliers" 1 "$CQ" vectors gen --tier CQ4plus --dim 32 --tokens 5 --group 8 --outliers 9,3 "$tmp/gen"
expect_grep "gen unsorted outliers" "CQ_ERR_OUTLIERS"
expect "gen k >= D" 1 "$CQ" vectors gen --tier CQ4plus --dim 4 --tokens 5 --group 8 --outliers 0,1,2,3 "$tmp/gen"
expect "gen G=0" 1 "$CQ" vectors gen --tier CQ4 --dim 32 --tokens 5 --group 0 "$tmp/gen"
expect_grep "gen G=0" "CQ_ERR_GROUP"
expect "gen bad tier" 2 "$CQ" vectors gen --tier CQ5 --dim 32 --tokens 5 --group 8 "$tmp/gen"
expect "check bad name" 1 "$CQ" vectors check "$tmp"
expect "replay missing dir" 1 "$CQ" vectors replay "$tmp/nope"
expect "help" 0 "$CQ" vectors --help
[ $fail -eq 0 ] && echo "vectors_cli: ok"
exit $fail
