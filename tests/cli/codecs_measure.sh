#!/bin/sh
# SPDX-License-Identifier: MIT
# CLI behaviour of `cq codecs --measure`: runs on the real Qwen2 slices, the
# golden vectors, an .npy pair and the built-in generator; --json parses and
# carries the figures; --csv has its header; n/a roles carry a reason; bad
# arguments exit non-zero (2 for usage, 1 for unreadable input).
CQ=${1:-build/cq}
SHARED=${CQ_SHARED:-../shared}
NAME=codecs_measure
. "$(dirname "$0")/cli_lib.sh.inc"
SL="$SHARED/vectors/qwen2-0.5b"
few=turbo3,tbq4,cq4+,cq3rot,sink1_channelwise_four_level_2bit,iso3
expect "slices table" 0 "$CQ" codecs --measure --slices "$SL" --codec "$few" --min-ms 0
expect_grep "slices table" "| turbo3 | 3.2500 | 3.2500 |"
expect_grep "slices table" "K n/a: does not code keys"
expect_grep "slices table" "(20 case(s))"
expect "slices json" 0 "$CQ" codecs --measure --slices "$SL" --codec "$few" --min-ms 0 --json
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["cases"] == 20, d["cases"]
c = {r["codec"]: r for r in d["codecs"]}
assert set(c) == {"turbo3", "tbq4", "cq4+", "cq3rot", "sink1_channelwise_four_level_2bit", "iso3"}, c.keys()
assert abs(c["turbo3"]["keys"]["codec_bits_per_value"] - 3.25) < 1e-12
assert c["cq3rot"]["keys"]["codec_bits_per_value"] is None and "keys" in c["cq3rot"]["keys"]["na"]
assert c["cq3rot"]["values"]["nmse"] > 0
assert c["sink1_channelwise_four_level_2bit"]["offline"] is True
assert 0 < c["tbq4"]["keys"]["nmse"] < c["turbo3"]["keys"]["nmse"]
assert c["cq4+"]["keys"]["cases_coded"] == 20
' "$tmp/out" || { echo "codecs_measure: slices --json content"; fail=1; }
expect "generator, every codec" 0 "$CQ" codecs --measure --min-ms 0 --cases 1 --tokens 96
expect_grep "generator" "synth D=64 T=96"
expect_grep "generator" "| affine_seven_level_3bit_g64_meta4 |"
expect "generator json D=128" 0 "$CQ" codecs --measure --synth --dim 128 --tokens 40 --cases 2 --min-ms 0 --json
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
c = {r["codec"]: r for r in d["codecs"]}
assert d["cases"] == 2
assert abs(c["turbo2"]["keys"]["codec_bits_per_value"] - 34 * 8 / 128) < 1e-12
assert c["cq4+"]["keys"]["na"] is None   # the generator hot channels are the mask
for r in d["codecs"]:
    for role in ("keys", "values"):
        x = r[role]
        assert (x["codec_bits_per_value"] is None) == (x["cases_coded"] == 0), r["codec"]
' "$tmp/out" || { echo "codecs_measure: generator --json content"; fail=1; }
expect "generator csv" 0 "$CQ" codecs --measure --codec fp16,turbo4 --tokens 16 --cases 1 --min-ms 0 --csv
expect_grep "csv" "^codec,id,codec_bits_per_value_k,codec_bits_per_value_v,codec_bits_per_value,"
expect_grep "csv" "^fp16,0,16,16,16,"
expect "odd D: n/a with a reason" 0 "$CQ" codecs --measure --codec turbo3,iso3,planar3 --dim 6 --hot 1 --tokens 8 --cases 1 --min-ms 0
expect_grep "odd D" "turbo3 | n/a"
expect_grep "odd D" "D=6 not supported"
expect "golden dir" 0 "$CQ" codecs --measure --golden "$SHARED/vectors/channelquant" --codec cq4,turbo4 --min-ms 0
expect_grep "golden dir" "(9 case(s))"
expect "one golden vector" 0 "$CQ" codecs --measure --golden "$SHARED/vectors/channelquant/d64_T70_G64__CQ4plus" --codec cq4+ --min-ms 0
# .npy input, written by the standard library only: [2][3][T=10][D=64] fp32 and fp16
python3 - "$tmp" <<'PY'
import struct, sys, random
random.seed(3)
def save(path, shape, code, vals):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (code, ", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    pad = 64 - (10 + len(hdr) + 1) % 64
    hdr = hdr + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
        f.write(struct.pack("<%d%s" % (len(vals), "e" if code == "<f2" else "f"), *vals))
n = 2 * 3 * 10 * 64
save(sys.argv[1] + "/k.npy", (2, 3, 10, 64), "<f4", [random.gauss(0, 1) for _ in range(n)])
save(sys.argv[1] + "/v.npy", (2, 3, 10, 64), "<f2", [random.gauss(0, 0.3) for _ in range(n)])
save(sys.argv[1] + "/v2d.npy", (10, 64), "<f2", [random.gauss(0, 0.3) for _ in range(640)])
save(sys.argv[1] + "/v9.npy", (9, 64), "<f4", [random.gauss(0, 0.3) for _ in range(576)])
PY
expect "npy 4-D" 0 "$CQ" codecs --measure --npy-k "$tmp/k.npy" --npy-v "$tmp/v.npy" --layer 1 --head 2 --codec tbq3,cq4+ --min-ms 0
expect_grep "npy" "layer 1 head 2"
expect_grep "npy" "K n/a: keys need a static outlier mask"
expect "npy with --mask" 0 "$CQ" codecs --measure --npy-k "$tmp/k.npy" --npy-v "$tmp/v.npy" --mask 3,9 --codec cq4+ --min-ms 0 --json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["codecs"][0]["keys"]["codec_bits_per_value"] > 4' "$tmp/out" || { echo "codecs_measure: npy --mask"; fail=1; }
expect "npy 4-D K with 2-D V" 0 "$CQ" codecs --measure --npy-k "$tmp/k.npy" --npy-v "$tmp/v2d.npy" --codec fp16
expect "npy shapes disagree" 1 "$CQ" codecs --measure --npy-k "$tmp/k.npy" --npy-v "$tmp/v9.npy" --codec fp16
grep -q "CQ_ERR_SHAPE" "$tmp/err" || { echo "codecs_measure: shape error not named"; fail=1; }
expect "npy head out of range" 1 "$CQ" codecs --measure --npy-k "$tmp/k.npy" --npy-v "$tmp/v.npy" --head 3 --codec fp16
# bad arguments
expect "unknown codec" 2 "$CQ" codecs --measure --codec turbo3,nope
expect "empty codec item" 2 "$CQ" codecs --measure --codec turbo3,
expect "two sources" 2 "$CQ" codecs --measure --slices "$SL" --synth
expect "npy-k alone" 2 "$CQ" codecs --measure --npy-k "$tmp/k.npy"
expect "json and csv" 2 "$CQ" codecs --measure --json --csv
expect "bad number" 2 "$CQ" codecs --measure --min-ms fast
expect "odd --dim" 2 "$CQ" codecs --measure --dim 7
expect "--mask without npy" 2 "$CQ" codecs --measure --mask 1,2
expect "unknown option" 2 "$CQ" codecs --measure --frobnicate
expect "missing slices" 1 "$CQ" codecs --measure --slices "$tmp/none"
expect "missing golden" 1 "$CQ" codecs --measure --golden "$tmp/none"
expect "missing npy" 1 "$CQ" codecs --measure --npy-k "$tmp/none.npy" --npy-v "$tmp/v.npy"
expect "help" 0 "$CQ" codecs --measure --help
expect "list json" 0 "$CQ" codecs --json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert any(r["name"] == "tbq3" for r in d)' "$tmp/out" || { echo "codecs_measure: codecs --json"; fail=1; }
[ $fail -eq 0 ] && echo "codecs_measure: ok"
exit $fail
