#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""annotate_api.py - put CQ_API in front of every function declaration of the
public headers (include/*.h) and make each header include cq_api.h.

Idempotent: run it after adding declarations (or after a merge) and commit the
result; tests/cli/abi_symbols.sh fails when a declaration lacks the macro
(its function is then hidden from libchannelquant.so).
Usage: python3 tools/annotate_api.py [--check] [HEADER...]   (default: include/*.h)
--check: change nothing, list what would change, exit 1 if anything would.
"""
import glob
import re
import sys

# A declaration starts at column 0: optional qualifiers, a return type, the name, '('.
DECL = re.compile(r'^(?!static\b|typedef\b|extern\b|return\b|CQ_API\b|#)'
                  r'((?:const\s+|unsigned\s+|signed\s+|struct\s+|enum\s+)*[A-Za-z_]\w*'
                  r'[\s\*]+(?:const\s*\**\s*)?)(cq\w*)\s*\(')
SKIP = {'cq_api.h'}


def annotate(text, name):
    lines = text.split('\n')
    out = []
    depth = 0  # braces of struct/enum bodies (extern "C" { is not counted)
    changed = 0
    for line in lines:
        if depth == 0 and DECL.match(line) and not line.rstrip().endswith('{'):
            line = 'CQ_API ' + line
            changed += 1
        if not line.startswith('extern "C"'):
            depth += line.count('{') - line.count('}')
            if depth < 0:
                depth = 0  # the closing brace of extern "C"
        out.append(line)
    text = '\n'.join(out)
    if '#include "cq_api.h"' not in text and 'CQ_API ' in text:
        m = re.search(r'^#include [<"].*$', text, re.M)
        if m:  # before the first include
            text = text[:m.start()] + '#include "cq_api.h"\n' + text[m.start():]
        else:  # after the include guard
            m = re.search(r'^#define CQ\w*_H\s*$', text, re.M)
            text = text[:m.end()] + '\n\n#include "cq_api.h"' + text[m.end():]
        changed += 1
    return text, changed


def main(argv):
    check = '--check' in argv
    files = [a for a in argv if not a.startswith('--')] or sorted(glob.glob('include/*.h'))
    total = 0
    for path in files:
        if path.rsplit('/', 1)[-1] in SKIP:
            continue
        with open(path) as f:
            text = f.read()
        new, n = annotate(text, path)
        if n:
            total += n
            print(f'{path}: {n} change(s)')
            if not check:
                with open(path, 'w') as f:
                    f.write(new)
    return 1 if (check and total) else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
