#!/bin/sh
# SPDX-License-Identifier: MIT
# The exported ABI of libchannelquant.so (docs/EMBEDDING.md, "Exported symbols"):
#   1. every dynamic symbol the library defines is a function declared with CQ_API
#      in include/*.h, and carries the prefix cq_ (or cq3rot_, the contract's CQ-3-rot
#      names; no other exception);
#   2. every CQ_API declaration is exported (a declared function missing from the
#      .so is a stale declaration or a definition that does not see its header);
#   3. no function declaration of include/*.h lacks CQ_API (tools/annotate_api.py --check);
#   4. the soname is libchannelquant.so.<CQ_VERSION_MAJOR>.
# (include/cq_kvstore.h declares the Redis tier, a separate library: left out of 1 and 2.)
# Then the checker itself is shown able to fail: a library built with default
# visibility must be rejected.
CQ=${1:-build/cq}
BUILD=$(dirname "$CQ")
NAME=abi_symbols
. tests/cli/cli_lib.sh.inc
LIB=$BUILD/libchannelquant.so
for tool in nm readelf python3; do
    command -v $tool >/dev/null 2>&1 || { echo "$NAME: FAIL: $tool not found"; exit 1; }
done
[ -f "$LIB" ] || { echo "$NAME: FAIL: $LIB not built"; exit 1; }

# Names declared with CQ_API: the identifier before the first '(' of each CQ_API line;
# not those of cq_kvstore.h, the Redis tier, which is its own library (libchannelquant_redis.a).
sed -n 's/^CQ_API[^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\) *(.*/\1/p' $(ls include/*.h | grep -v '/cq_kvstore\.h$') \
    | sort -u >"$tmp/declared"
[ -s "$tmp/declared" ] || { echo "$NAME: FAIL: no CQ_API declarations found in include/"; exit 1; }

check_lib() { # lib, label: print problems, return 1 if any
    lib=$1
    nm -D --defined-only "$lib" | awk '{print $2, $3}' >"$tmp/dyn"
    # weak/undefined runtime hooks are not definitions of ours; keep every defined symbol
    awk '{print $2}' "$tmp/dyn" | sort -u >"$tmp/exported"
    bad=0
    extra=$(comm -23 "$tmp/exported" "$tmp/declared")
    if [ -n "$extra" ]; then
        echo "$NAME: $2: $(echo "$extra" | wc -l) exported symbol(s) not declared with CQ_API in include/:"
        echo "$extra" | head -20 | sed 's/^/  /'
        bad=1
    fi
    unpref=$(grep -v -e '^cq_' -e '^cq3rot_' "$tmp/exported")
    if [ -n "$unpref" ]; then
        echo "$NAME: $2: exported symbol(s) without the cq_ prefix:"
        echo "$unpref" | head -20 | sed 's/^/  /'
        bad=1
    fi
    nonfunc=$(awk '$1 != "T" && $1 != "W" && $1 != "i" {print $2 " (" $1 ")"}' "$tmp/dyn")
    if [ -n "$nonfunc" ]; then
        echo "$NAME: $2: exported data symbol(s) (the ABI exports functions only):"
        echo "$nonfunc" | head -20 | sed 's/^/  /'
        bad=1
    fi
    return $bad
}

check_lib "$LIB" "$LIB" || fail=1
missing=$(comm -13 "$tmp/exported" "$tmp/declared")
if [ -n "$missing" ]; then
    echo "$NAME: CQ_API declaration(s) not exported by $LIB:"
    echo "$missing" | head -20 | sed 's/^/  /'
    fail=1
fi
if ! python3 tools/annotate_api.py --check >"$tmp/annot" 2>&1; then
    echo "$NAME: declarations in include/ without CQ_API (run python3 tools/annotate_api.py):"
    sed 's/^/  /' "$tmp/annot"
    fail=1
fi
major=$(awk '$2 == "CQ_VERSION_MAJOR" {print $3}' include/cq_version.h)
soname=$(readelf -d "$LIB" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libchannelquant.so.$major" ] || {
    echo "$NAME: soname is '$soname', expected libchannelquant.so.$major"; fail=1; }
n=$(wc -l <"$tmp/exported")
echo "$NAME: $n exported functions, $(wc -l <"$tmp/declared") CQ_API declarations"

# The checker must be able to fail: a library exporting an unprefixed function and
# an undeclared cq_ function must be rejected on both counts.
cat >"$tmp/leak.c" <<'EOC'
int leaky_helper(int x);
int cq_internal_helper(int x);
int leaky_helper(int x) { return x + 1; }
int cq_internal_helper(int x) { return x + 2; }
EOC
if ${CC:-cc} -shared -fPIC -o "$tmp/leaky.so" "$tmp/leak.c" 2>"$tmp/cc.err"; then
    check_lib "$tmp/leaky.so" "negative control" >"$tmp/neg"
    grep -q 'leaky_helper' "$tmp/neg" && grep -q 'cq_internal_helper' "$tmp/neg" && grep -q 'without the cq_ prefix' "$tmp/neg" \
        || { echo "$NAME: the check did not reject the negative control:"; sed 's/^/  /' "$tmp/neg"; fail=1; }
else
    echo "$NAME: cannot build the negative control"; sed 's/^/  /' "$tmp/cc.err"; fail=1
fi
[ $fail = 0 ] || echo "$NAME: (objects compiled before -fvisibility=hidden was in the Makefile export everything: make clean)"
exit $fail
