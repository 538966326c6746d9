#!/bin/sh
# SPDX-License-Identifier: MIT
# Replay the committed fuzz corpora (tests/fuzz/corpus/<target>/) through the
# standalone builds of the fuzz targets that `make test` puts beside cq
# ($BUILD/fuzz/fuzz_*). Any crash, sanitizer report or broken invariant fails;
# so does a target without a corpus.
CQ=${1:-build/cq}
BIN=$(dirname "$CQ")/fuzz
fail=0
n=0
for t in tests/fuzz/fuzz_*.c; do
    name=$(basename "$t" .c)
    exe="$BIN/$name"
    corpus="tests/fuzz/corpus/$name"
    if [ ! -x "$exe" ]; then
        echo "fuzz_corpus: FAIL: $exe not built (make test builds it)"; fail=1; continue
    fi
    if ! "$exe" "$corpus" >/dev/null 2>"$BIN/$name.log"; then
        echo "fuzz_corpus: FAIL: $name on $corpus"; tail -20 "$BIN/$name.log" | sed 's/^/  /'; fail=1
    fi
    n=$((n + 1))
done
[ "$n" -eq 0 ] && { echo "fuzz_corpus: FAIL: no fuzz targets found"; fail=1; }
[ $fail -eq 0 ] && echo "fuzz_corpus: ok ($n targets)"
exit $fail
