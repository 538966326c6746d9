#!/bin/sh
# SPDX-License-Identifier: MIT
# Run every test binary given as arguments, then the CLI conformance checks,
# and print one closing line "N passed, M failed" (N and M count test
# programs/checks). Exit status is non-zero if anything failed.
# Environment: BUILD (build dir), CQ_SHARED (default ../shared).
BUILD=${BUILD:-build}
SHARED=${CQ_SHARED:-../shared}
export CQ_SHARED="$SHARED"
pass=0
fail=0
failed_names=""
run() { # name, command...
    name=$1
    shift
    if "$@"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        failed_names="$failed_names $name"
        echo "FAILED: $name"
    fi
}
for t in "$@"; do
    run "$(basename "$t")" "$t"
done
if [ -d "$SHARED/vectors/channelquant" ]; then
    run "cq vectors check (golden)" "$BUILD/cq" vectors check "$SHARED"/vectors/channelquant/d*_T*_G*__*
    run "cq vectors replay (qwen2 slices)" "$BUILD/cq" vectors replay "$SHARED/vectors/qwen2-0.5b"
else
    echo "FAILED: $SHARED not found (set CQ_SHARED); the conformance checks need it"
    fail=$((fail + 1))
fi
for s in tests/cli/*.sh; do
    [ -f "$s" ] || continue
    run "$(basename "$s")" sh "$s" "$BUILD/cq"
done
echo
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
