#!/bin/sh
# SPDX-License-Identifier: MIT
# spdx.sh - put the line "SPDX-License-Identifier: MIT" (LICENSE) near the top of every
# source file of the repository: C/C++ and SystemVerilog sources and headers, shell and
# Python scripts, Makefiles, .ci/run, pyproject.toml. Idempotent: a file that already has
# the line in its first 5 lines is left alone. Run it from the repository root after
# adding files or merging branches, and commit the result.
#   tools/spdx.sh            add the line where it is missing
#   tools/spdx.sh --check    change nothing; list files without it, exit 1 if any
# Files: `git ls-files` (tracked and untracked-but-not-ignored) when in a git tree, else find.
# The comment form follows the file: /* ... */ for C, // for C++ and SystemVerilog, # for
# the rest (after a #! line when there is one).
set -u
TAG="SPDX-License-Identifier: MIT"
check=0
[ "${1:-}" = "--check" ] && check=1

list() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files --cached --others --exclude-standard
    else
        find . -type f ! -path './.git/*' ! -path './build*' | sed 's|^\./||'
    fi
}

style() { # path -> c | cpp | hash | none
    case "$1" in
        tests/fuzz/corpus/*) echo none ;;
        *.sh.inc) echo hash ;;
        *.c | *.h | *.inc) echo c ;;
        *.cpp | *.hpp | *.cc | *.sv | *.svh | *.v) echo cpp ;;
        *.sh | *.py | *.toml | *.mk | Makefile | */Makefile | .ci/run) echo hash ;;
        *) echo none ;;
    esac
}

missing=0
for f in $(list); do
    [ -f "$f" ] || continue
    s=$(style "$f")
    [ "$s" = none ] && continue
    head -n 5 "$f" | grep -q "$TAG" && continue
    if [ $check = 1 ]; then
        echo "$f"
        missing=$((missing + 1))
        continue
    fi
    case $s in
        c) line="/* $TAG */" ;;
        cpp) line="// $TAG" ;;
        hash) line="# $TAG" ;;
    esac
    tmpf="$f.spdx.$$"
    awk -v line="$line" 'NR == 1 && /^#!/ { print; print line; next }
                         NR == 1 { print line } { print }' "$f" >"$tmpf" && cat "$tmpf" >"$f"
    rm -f "$tmpf"
    missing=$((missing + 1))
done
if [ $check = 1 ]; then
    [ $missing = 0 ] || { echo "spdx: $missing file(s) above lack '$TAG' (run tools/spdx.sh)"; exit 1; }
    exit 0
fi
echo "spdx: added the line to $missing file(s)"
