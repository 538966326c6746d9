#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""
cqh64.py - an independent reference of CQH64, the chain hash of the serving
pool's prefix index, written from the text of docs/SERVING.md ("Chain hash")
on Python integers; it shares no code with src/serve/prefix_index.c.

    python3 tests/ref/cqh64.py      # prints the known answers that
                                    # tests/test_prefix_index.c embeds
"""
M = (1 << 64) - 1


def mix(z):
    z = (z + 0x9E3779B97F4A7C15) & M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def absorb(s, w):
    return mix(s ^ w)


def chain_hash(config_hash, parent_hash, tokens):
    s = int.from_bytes(b"CQHA2001", "big")
    for w in [config_hash, parent_hash, len(tokens)] + list(tokens):
        s = absorb(s, w)
    return s


def hash_bytes(data):
    s = absorb(int.from_bytes(b"CQHB1001", "big"), len(data))
    for i in range(0, len(data), 8):
        s = absorb(s, int.from_bytes(data[i:i + 8].ljust(8, b"\0"), "little"))
    return s


def main():
    golden = [(i * 2654435761) & 0xFFFFFFFF for i in range(128)]
    print("chain(0, 0, [])                  0x%016x" % chain_hash(0, 0, []))
    print("chain(1, 2, [1, 2, 3])           0x%016x" % chain_hash(1, 2, [1, 2, 3]))
    print("chain(7, 0, [0xFFFFFFFF])        0x%016x" % chain_hash(7, 0, [0xFFFFFFFF]))
    print("chain(0xDEADBEEFCAFEF00D, 0x0123456789ABCDEF, [i * 2654435761 mod 2^32, i < 128]) 0x%016x"
          % chain_hash(0xDEADBEEFCAFEF00D, 0x0123456789ABCDEF, golden))
    for b in [b"", b"abc", b"123456789", bytes(range(16))]:
        print("bytes(%r) 0x%016x" % (b, hash_bytes(b)))


if __name__ == "__main__":
    main()
