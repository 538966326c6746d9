#!/bin/sh
# SPDX-License-Identifier: MIT
# Every public header compiled as C++ (g++ -std=c++11 -Wall -Wextra -Werror -pedantic)
# by tests/cxx/all_headers.cpp, linked against the static library, run. Also checks
# that every header of include/ is included by that program.
CQ=${1:-build/cq}
BUILD=$(dirname "$CQ")
NAME=cxx_headers
. tests/cli/cli_lib.sh.inc
CXX=${CXX:-g++}
command -v "$CXX" >/dev/null 2>&1 || { echo "$NAME: FAIL: $CXX not found (CI installs g++)"; exit 1; }
for h in include/*.h; do
    grep -q "#include \"$(basename "$h")\"" tests/cxx/all_headers.cpp \
        || { echo "$NAME: tests/cxx/all_headers.cpp does not include $(basename "$h")"; fail=1; }
done
expect "compile as C++" 0 "$CXX" -std=c++11 -Wall -Wextra -Werror -pedantic -Iinclude \
    tests/cxx/all_headers.cpp "$BUILD/libchannelquant.a" $CQ_LDFLAGS -lm -pthread -o "$tmp/all_headers"
[ $fail = 0 ] && expect "run" 0 "$tmp/all_headers"
exit $fail
