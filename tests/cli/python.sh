#!/bin/sh
# SPDX-License-Identifier: MIT
# The Python binding (python/): its unittest suite (python/tests) and the example
# python/examples/decode_loop.py against this build's libchannelquant.so, then `pip
# install` of the package (offline, no build isolation, into a scratch --target) and an
# import of the installed copy from outside the tree.
# The interpreter: `python3` if it imports numpy, else /usr/bin/python3 (Debian's
# python3-numpy, which .ci/run installs). Prints SKIP and passes only when no
# interpreter with numpy exists, or for a sanitizer build (an ASan/UBSan library
# cannot be loaded into an uninstrumented interpreter; the plain build runs these).
CQ=${1:-build/cq}
BUILD=$(dirname "$CQ")
NAME=python
. tests/cli/cli_lib.sh.inc
case "$CQ_LDFLAGS" in
*-fsanitize=*) echo "$NAME: SKIP: sanitizer build ($BUILD); the Python tests run on the plain build"; exit 0 ;;
esac
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' >/dev/null 2>&1; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
    echo "$NAME: SKIP: no python3 with numpy (apt-get install python3-numpy)"
    exit 0
fi
lib=$(cd "$BUILD" && pwd)/libchannelquant.so.$(awk '$2 == "CQ_VERSION_MAJOR" {print $3}' include/cq_version.h)
[ -f "$lib" ] || { echo "$NAME: FAIL: $lib not built"; exit 1; }
export CHANNELQUANT_LIB="$lib" CQ_TOOL="$CQ" CQ_SHARED="${CQ_SHARED:-../shared}"
expect "unittest python/tests ($PY)" 0 env PYTHONPATH=python "$PY" -m unittest discover -s python/tests
grep -q '^OK' "$tmp/err" || { echo "$NAME: unittest did not report OK:"; tail -20 "$tmp/err" | sed 's/^/  /'; fail=1; }
expect "python/examples/decode_loop.py" 0 env PYTHONPATH=python "$PY" python/examples/decode_loop.py
expect_grep "the example's verdict" '^decode_loop.py: ok$'
# pip install, offline, from a copy (pip builds in the source directory)
if "$PY" -m pip --version >/dev/null 2>&1; then
    cp -r python "$tmp/src"
    rm -rf "$tmp/src/build" "$tmp/src"/*.egg-info
    expect "pip install --no-index --no-build-isolation" 0 "$PY" -m pip install --quiet --no-index \
        --no-build-isolation --no-deps --target "$tmp/site" "$tmp/src"
    expect "import the installed package" 0 env PYTHONPATH="$tmp/site" sh -c \
        "cd '$tmp' && '$PY' -c 'import channelquant as c, sys; assert c.__file__.startswith(\"$tmp/site/\"), c.__file__; print(c.version(), len(c.codecs()))'"
    expect_grep "installed package imports and lists codecs" '^[0-9.]* [0-9][0-9]*$'
    # without a library to find, the error names where it looked
    expect "import without a library" 1 env PYTHONPATH="$tmp/site" CHANNELQUANT_LIB="$tmp/none.so" \
        "$PY" -c 'import channelquant'
    expect_grep "the missing-library error" "CHANNELQUANT_LIB" err
else
    echo "$NAME: FAIL: $PY has no pip (apt-get install python3-pip)"; fail=1
fi
exit $fail
