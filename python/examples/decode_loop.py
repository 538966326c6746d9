#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""decode_loop.py - the ChannelQuant cache from Python, the way a research script
uses it: a few layers with GQA, a prefill batch, a decode loop, a save and restore
mid-sequence, the memory accounting, and a look at the codec registry. K/V are
random (no model); every attention output (precision="exact": fp32 arithmetic, whose
bound in docs/CACHE.md "Tolerance" the 1e-4 check relies on; the default is "fast") is
checked against the library's exact reference, and the restored cache must continue bit
for bit. Exit status 0 when everything agrees.

    PYTHONPATH=python python3 python/examples/decode_loop.py     (after make)
"""
import os
import sys
import tempfile

import numpy as np

import channelquant as cq

LAYERS, KV_HEADS, Q_HEADS, D, PREFILL, DECODE = 3, 2, 8, 64, 40, 30


def main():
    rng = np.random.default_rng(0)
    T = PREFILL + DECODE
    K = (rng.standard_normal((LAYERS, T, KV_HEADS, D)) * 0.8).astype(np.float16)
    V = (rng.standard_normal((LAYERS, T, KV_HEADS, D)) * 0.4).astype(np.float16)
    q = rng.standard_normal((PREFILL, Q_HEADS, D)).astype(np.float32)
    bad = 0

    # the codecs a cache can hold, and what CQ-4 costs at this shape
    streaming = [c.name for c in cq.codecs() if c.streaming and c.keys and c.supports(D, "key")]
    print("streaming key codecs at D=%d: %s" % (D, ", ".join(streaming)))
    c4 = cq.get_codec("cq4")
    print("cq4 keys, 128 tokens: %d bytes (%.3f bits/value)"
          % (c4.packed_bytes(128, D, "key"), 8 * c4.packed_bytes(128, D, "key") / (128 * D)))

    cache = cq.Cache(LAYERS, KV_HEADS, D, key_codec="cq4", val_codec="cq4", group=32, n_sinks=4,
                     page_tokens=32)
    restored = None
    for layer in range(LAYERS):  # prefill
        cache.append(layer, K[layer, :PREFILL], V[layer, :PREFILL])
        out = cache.attend_prefill(layer, q, pos0=0, precision="exact")
        ref = cache.attend_ref(layer, q, pos0=0)
        bad += np.abs(out - ref).max() / np.abs(ref).max() > 1e-4
    with tempfile.TemporaryDirectory() as tmp:
        for t in range(PREFILL, T):  # decode
            for layer in range(LAYERS):
                cache.append(layer, K[layer, t], V[layer, t])
                out = cache.attend(layer, q[0], n_threads=2, precision="exact")
                ref = cache.attend_ref(layer, q[0])
                bad += np.abs(out - ref).max() / np.abs(ref).max() > 1e-4
                if restored is not None:
                    restored.append(layer, K[layer, t], V[layer, t])
                    bad += not np.array_equal(
                        restored.attend(layer, q[0], n_threads=2, precision="exact"), out)
            if t == PREFILL + DECODE // 2:
                path = os.path.join(tmp, "cache.cqkv")
                cache.save(path)
                restored = cq.Cache.load(path)
                restored.compare(cache)
    restored.compare(cache)
    m = cache.memory()
    print("%d tokens x %d layers: %.3f bits/value (%d bytes: payload %d, scales %d, in-flight %d, "
          "sinks %d, slack %d, headers %d)" % (cache.tokens(0), LAYERS, m["bits_per_value"],
                                               m["total"], m["payload"], m["scales"], m["residual"],
                                               m["sinks"], m["slack"], m["headers"]))
    try:
        cache.append(0, np.full((KV_HEADS, D), np.inf, np.float16), V[0, 0])
        bad += 1
    except cq.CQNonFiniteError as e:
        print("refused as expected:", e)
    print("decode_loop.py:", "MISMATCH" if bad else "ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
