#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""compare.py - compare a replay testbench run with the KVCE model's own files.

usage: compare.py PREFIX [TBPREFIX]

PREFIX is the --trace-hex FILE of `cq engine run` (the model wrote
PREFIX.model_spans and PREFIX.model_rows); TBPREFIX (default PREFIX) is the
testbench's +out= prefix (it wrote TBPREFIX.tb_spans, .tb_rows, .tb_summary).
Checks: the testbench saw no beat or register mismatch, every per-token and
per-read span equals the model's (same count, same order), and every row the
model holds equals the block's row at that address. Exit 0 when all agree, 1
with the first differences otherwise, 2 on a usage or file error.
See docs/ENGINE_REPLAY.md.
"""
import sys


def read_lines(path):
    try:
        with open(path) as f:
            return [l.split() for l in f if l.strip()]
    except OSError as e:
        print("compare.py: cannot read %s: %s" % (path, e), file=sys.stderr)
        sys.exit(2)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    model = argv[1]
    tb = argv[2] if len(argv) > 2 else model
    bad = []
    summary = read_lines(tb + ".tb_summary")
    if len(summary) != 1 or len(summary[0]) % 2:
        print("compare.py: malformed %s.tb_summary" % tb, file=sys.stderr)
        return 2
    s = dict(zip(summary[0][0::2], (int(v) for v in summary[0][1::2])))
    if s.get("beat_mismatches") or s.get("reg_mismatches"):
        bad.append("testbench: %d beat and %d register mismatches"
                   % (s.get("beat_mismatches", 0), s.get("reg_mismatches", 0)))
    ms, ts = read_lines(model + ".model_spans"), read_lines(tb + ".tb_spans")
    if len(ms) != len(ts):
        bad.append("spans: model has %d, testbench %d" % (len(ms), len(ts)))
    for m, t in zip(ms, ts):
        if m != t:
            bad.append("span: model %s, testbench %s" % (" ".join(m), " ".join(t)))
    tb_rows = {int(a, 16): int(r, 16) for a, r in read_lines(tb + ".tb_rows")}
    mrows = read_lines(model + ".model_rows")
    for a, r in mrows:
        got = tb_rows.get(int(a, 16))
        if got != int(r, 16):
            bad.append("row %s: model %s, block %s" % (a, r, "absent" if got is None else "%x" % got))
    if bad:
        for b in bad[:10]:
            print("compare.py: " + b)
        print("compare.py: %d differences" % len(bad))
        return 1
    print("replay compare: %d spans (%d tokens, %d reads), %d rows, %d read beats and %d register "
          "reads: all equal to the model" % (len(ms), s["tokens"], s["reads"], len(mrows),
                                             s["beats"], s["regs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
