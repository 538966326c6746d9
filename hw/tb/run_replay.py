#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""run_replay.py - build the replay testbench with Verilator and run one image.

usage: run_replay.py PREFIX BUILDDIR [--no-compare] [-- extra verilator args]

The Verilator build goes to BUILDDIR/<parameters> and is reused while it is
newer than the SystemVerilog sources (the image is read at run time).

PREFIX is the --trace-hex FILE of `cq engine run --rev v0.2`. The instance
parameters (D, G, tier, depth, row width) are taken from the image's header
words; the block is hw/standin/kvce_standin.sv unless the extra arguments name
another (with +define+KVCE_DUT=... and +define+KVCE_SRAM=...). The testbench
writes PREFIX.tb_spans, .tb_rows, .tb_summary; then compare.py checks them.
Exit 0 when the run and the comparison pass. See docs/ENGINE_REPLAY.md.
"""
import os
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def count(path):
    with open(path) as f:
        return sum(1 for l in f if l.strip())


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) > 1 and argv[1] in ("-h", "--help") else 2
    prefix, bdir = argv[1], argv[2]
    rest = argv[3:]
    compare = "--no-compare" not in rest
    extra = rest[rest.index("--") + 1:] if "--" in rest else []
    with open(prefix) as f:
        words = [int(l, 16) for l in f if l.strip()]
    if len(words) < 2 or words[0] >> 56 != 0x01 or words[1] >> 56 != 0x02:
        print("run_replay.py: %s is not a replay image (no header words)" % prefix, file=sys.stderr)
        return 2
    h1, h2 = words[0], words[1]
    rev, tier, D, G = (h1 >> 48) & 0xFF, (h1 >> 40) & 0xFF, (h1 >> 24) & 0xFFFF, h1 & 0xFFFFFF
    depth, W = (h2 >> 24) & 0xFFFFFF, h2 & 0xFFFFFF
    if rev != 2:
        print("run_replay.py: the stand-in block speaks v0.2; image is v0.%d" % rev, file=sys.stderr)
        return 2
    abits = max(0, (depth - 1).bit_length())
    params = {"D": D, "W": W, "DEPTH": depth, "G": G, "TIER": tier, "ADDR_BITS": abits,
              "MAXTOK": count(prefix + ".standin_tokens") + 1,
              "MAXROWS": count(prefix + ".standin_rows") + 1, "IMG_WORDS": len(words) + 1}
    srcs = [os.path.join(HERE, "..", "standin", "kvce_standin.sv"), os.path.join(HERE, "kvce_tb.sv")]
    bdir = os.path.join(bdir, "_".join("%s%d" % kv for kv in params.items()))
    if extra:
        bdir += "_x%08x" % zlib.crc32(" ".join(extra).encode())
    exe = os.path.join(bdir, "kvce_tb")
    fresh = os.path.exists(exe) and all(os.path.getmtime(exe) > os.path.getmtime(f) for f in srcs)
    os.makedirs(bdir, exist_ok=True)
    cmd = ["verilator", "--binary", "--timing", "-j", "2", "-Wno-fatal", "-Wno-lint",
           "-Wno-style", "--unroll-count", "1024", "--top-module", "kvce_tb", "-Mdir", bdir,
           "-o", "kvce_tb"]
    cmd += ["-G%s=%d" % kv for kv in params.items()]
    cmd += srcs + extra
    if not fresh:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode:
            print(r.stdout[-4000:])
            print("run_replay.py: verilator failed", file=sys.stderr)
            return 1
    run = [exe, "+image=" + prefix, "+out=" + prefix,
           "+standin_tokens=" + prefix + ".standin_tokens",
           "+standin_rows=" + prefix + ".standin_rows"]
    r = subprocess.run(run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write("".join(l + "\n" for l in r.stdout.splitlines() if "kvce_tb" in l))
    if r.returncode:
        print(r.stdout[-2000:])
        return 1
    if not compare:
        return 0
    return subprocess.call([sys.executable, os.path.join(HERE, "compare.py"), prefix])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
