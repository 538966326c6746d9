#!/bin/sh
# SPDX-License-Identifier: MIT
# `make install` into a staging DESTDIR, then examples/decode_loop.c built only with
# pkg-config against the staged files, linked shared (runs through the soname) and
# static (no libchannelquant in NEEDED), and run; the installed `cq` runs; then
# `make uninstall` must leave no file or link behind.
CQ=${1:-build/cq}
NAME=install
. tests/cli/cli_lib.sh.inc
for tool in make pkg-config readelf; do
    command -v $tool >/dev/null 2>&1 || { echo "$NAME: FAIL: $tool not found (CI installs it)"; exit 1; }
done
stage=$tmp/stage
prefix=/opt/channelquant-test
mk() { # make target: the same build variables as the suite's own build, no parent jobserver
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory $CQ_MAKEVARS \
        DESTDIR="$stage" PREFIX="$prefix" "$@"
}
expect "make install" 0 mk install
lib=$stage$prefix/lib
major=$(awk '$2 == "CQ_VERSION_MAJOR" {print $3}' include/cq_version.h)
version=$(awk '$2 == "CQ_VERSION_STRING" {gsub(/"/, "", $3); print $3}' include/cq_version.h)
for f in bin/cq lib/libchannelquant.a lib/libchannelquant.so.$version lib/pkgconfig/channelquant.pc \
         include/channelquant/channelquant.h include/channelquant/cq_cache.h; do
    [ -f "$stage$prefix/$f" ] || { echo "$NAME: $prefix/$f not installed"; fail=1; }
done
for h in include/*.h; do
    cmp -s "$h" "$stage$prefix/include/channelquant/$(basename "$h")" \
        || { echo "$NAME: $h not installed as include/channelquant/$(basename "$h")"; fail=1; }
done
[ "$(readlink "$lib/libchannelquant.so.$major")" = "libchannelquant.so.$version" ] \
    || { echo "$NAME: lib/libchannelquant.so.$major is not a link to libchannelquant.so.$version"; fail=1; }
[ "$(readlink "$lib/libchannelquant.so")" = "libchannelquant.so.$major" ] \
    || { echo "$NAME: lib/libchannelquant.so is not a link to libchannelquant.so.$major"; fail=1; }

# pkg-config against the staged tree: PKG_CONFIG_SYSROOT_DIR maps $prefix into $stage
export PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_LIBDIR="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$stage"
expect "pkg-config --modversion" 0 pkg-config --modversion channelquant
expect_grep "pkg-config version" "^$version\$"
expect "pkg-config --cflags --libs" 0 pkg-config --cflags --libs channelquant
for w in "-I$stage$prefix/include/channelquant" "-L$lib" -lchannelquant -lm -pthread; do
    grep -q -e " $w\( \|\$\)" -e "^$w " "$tmp/out" || { echo "$NAME: pkg-config output lacks $w: $(cat "$tmp/out")"; fail=1; }
done
CFLAGS_PC=$(pkg-config --cflags channelquant)
LIBS_PC=$(pkg-config --libs channelquant)
LIBDIR_PC=$(pkg-config --libs-only-L channelquant)
CC=${CC:-cc}
# shared: exactly what pkg-config says
expect "build the example (shared)" 0 $CC -std=c11 -Wall -Wextra -Werror examples/decode_loop.c \
    $CFLAGS_PC $CQ_LDFLAGS $LIBS_PC -o "$tmp/ex_shared"
if [ -f "$tmp/ex_shared" ]; then
    readelf -d "$tmp/ex_shared" | grep -q "NEEDED.*\[libchannelquant.so.$major\]" \
        || { echo "$NAME: the shared example does not need libchannelquant.so.$major"; fail=1; }
    expect "run the example (shared, through the soname link)" 0 \
        env LD_LIBRARY_PATH="$lib" "$tmp/ex_shared" "$tmp/a.cqkv"
    expect_grep "example output" "decode_loop: ChannelQuant $version.* ok\$"
    # without the library path the loader must not find it elsewhere (no stale copy in use)
    if env -u LD_LIBRARY_PATH "$tmp/ex_shared" "$tmp/b.cqkv" >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libchannelquant; then
        echo "$NAME: the shared example ran without its library path"; fail=1
    fi
fi
# static: the archive for -lchannelquant, the rest of pkg-config's libs as they are
expect "build the example (static)" 0 $CC -std=c11 -Wall -Wextra -Werror examples/decode_loop.c \
    $CFLAGS_PC $CQ_LDFLAGS $LIBDIR_PC -Wl,-Bstatic -lchannelquant -Wl,-Bdynamic -lm -pthread -o "$tmp/ex_static"
if [ -f "$tmp/ex_static" ]; then
    ! readelf -d "$tmp/ex_static" | grep -q "NEEDED.*libchannelquant" \
        || { echo "$NAME: the static example needs the shared library"; fail=1; }
    expect "run the example (static)" 0 "$tmp/ex_static" "$tmp/c.cqkv"
fi
# the same example compiled as C++ (the headers' extern "C"), linked against the installed library
CXX=${CXX:-g++}
expect "build the example as C++ (shared)" 0 $CXX -x c++ -std=c++11 -Wall -Wextra -Werror examples/decode_loop.c \
    -x none $CFLAGS_PC $CQ_LDFLAGS $LIBS_PC -o "$tmp/ex_cxx"
[ -f "$tmp/ex_cxx" ] && expect "run the C++ build" 0 env LD_LIBRARY_PATH="$lib" "$tmp/ex_cxx" "$tmp/d.cqkv"
# the header form <channelquant/...> works too
printf '#include <channelquant/channelquant.h>\n#include <stdio.h>\nint main(void) { puts(cq_version_string()); return cq_version() != CQ_VERSION_NUMBER; }\n' >"$tmp/v.c"
expect "build with <channelquant/channelquant.h>" 0 $CC -std=c11 "$tmp/v.c" $CFLAGS_PC $CQ_LDFLAGS $LIBS_PC -o "$tmp/v"
[ -f "$tmp/v" ] && expect "run it" 0 env LD_LIBRARY_PATH="$lib" "$tmp/v"
# the installed tool
expect "installed cq runs" 0 "$stage$prefix/bin/cq" codecs
expect_grep "installed cq lists the registry" "cq4"

expect "make uninstall" 0 mk uninstall
left=$(find "$stage" \( -type f -o -type l \) 2>/dev/null)
[ -z "$left" ] || { echo "$NAME: left after uninstall:"; echo "$left" | sed 's/^/  /'; fail=1; }
exit $fail
