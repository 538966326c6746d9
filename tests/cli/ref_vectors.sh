#!/bin/sh
# SPDX-License-Identifier: MIT
# The codec against the independent Python reference (tests/ref/cq_ref.py):
#   1. the reference's own exact helpers pass their self test;
#   2. the reference reproduces the shipped golden vectors and Qwen2 slices bit
#      for bit (so it is a trustworthy oracle, not a copy of our output);
#   3. it generates new vectors and slice sets of awkward shapes and values,
#      and `cq vectors check` / `cq vectors replay` must accept every one;
#   4. a corrupted generated file must be caught (the check can fail).
# python3 (standard library only) is required: its absence is a failure.
CQ=${1:-build/cq}
SHARED=${CQ_SHARED:-../shared}
REF=tests/ref/cq_ref.py
if ! command -v python3 >/dev/null 2>&1; then
    echo "ref_vectors: FAIL: python3 not found; the independent reference needs it (CI installs it)"
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
step() { # description, command...
    desc=$1; shift
    if ! "$@" >"$tmp/out" 2>&1; then
        echo "ref_vectors: FAIL: $desc"; grep -v '^ok' "$tmp/out" | head -40 | sed 's/^/  /'; fail=1
    fi
}
step "reference self test" python3 "$REF" selftest
if [ -d "$SHARED/vectors/channelquant" ]; then
    step "reference reproduces the shipped vectors and slices" python3 "$REF" validate "$SHARED/vectors"
else
    echo "ref_vectors: FAIL: $SHARED/vectors not found (set CQ_SHARED)"; fail=1
fi
step "reference generator" python3 "$REF" gen "$tmp/gen"
n=$(ls -d "$tmp"/gen/golden/*/d*_T*_G*__* 2>/dev/null | wc -l)
if [ "$n" -lt 20 ]; then
    echo "ref_vectors: FAIL: only $n generated vectors"; fail=1
fi
step "cq vectors check on reference vectors" "$CQ" vectors check "$tmp"/gen/golden/*/d*_T*_G*__*
step "cq vectors replay on reference slices" "$CQ" vectors replay "$tmp/gen/slices"
# the checks must be able to fail: flip one decoded word and one payload byte
v=$(ls -d "$tmp"/gen/golden/*/d*__CQ4plus | head -n 1)
sed -i '1y/0123456789abcdef/123456789abcdef0/' "$v/expected_k_hat.f32.hex"
if "$CQ" vectors check "$v" >"$tmp/out" 2>&1; then
    echo "ref_vectors: FAIL: a corrupted k_hat was accepted ($v)"; fail=1
fi
sed -i '1y/0123456789abcdef/123456789abcdef0/' "$tmp/gen/slices/vhatwht_0.hex"
if "$CQ" vectors replay "$tmp/gen/slices" >"$tmp/out" 2>&1; then
    echo "ref_vectors: FAIL: a corrupted vhatwht slice was accepted"; fail=1
fi
[ $fail -eq 0 ] && echo "ref_vectors: ok ($n reference vectors, reference slices, shipped set reproduced)"
exit $fail
