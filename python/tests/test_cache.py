# SPDX-License-Identifier: MIT
"""test_cache.py - the Python cache against the C library and an independent numpy
reference: committed key groups read back and export exactly as Codec.decode /
Codec.encode of the same tokens (bit for bit); in-flight tokens come back as their
fp16; attend agrees with attend_ref and with float64 numpy attention on the
read-back K/V within docs/CACHE.md's EXACT tolerance; prefill is causal; save/load
and to_bytes/from_bytes restore a cache that compares equal and attends bit for
bit; memory accounting adds up; errors carry the library's messages.
"""
import os
import tempfile
import unittest

import numpy as np

import channelquant as cq

SHARED = os.environ.get("CQ_SHARED", "../shared")
L, H, D, G = 2, 2, 64, 32


def kv(n, seed):
    rng = np.random.default_rng(seed)
    K = (rng.standard_normal((n, H, D)) * 0.8).astype(np.float16)
    V = (rng.standard_normal((n, H, D)) * 0.4).astype(np.float16)
    return K, V


def attention(q, K, V, scale):
    """Exact decode attention in float64: q [Hq][D], K/V [H][T][D] -> [Hq][D]."""
    Hq, rep = q.shape[0], q.shape[0] // K.shape[0]
    out = np.zeros((Hq, q.shape[1]))
    for h in range(Hq):
        s = K[h // rep].astype(np.float64) @ q[h].astype(np.float64) * scale
        p = np.exp(s - s.max())
        out[h] = (p / p.sum()) @ V[h // rep]
    return out


def tolerance(q, K, scale):
    """docs/CACHE.md, Tolerance (EXACT): 2e-5 + 8 * 2^-23 * Lmax."""
    rep = q.shape[0] // K.shape[0]
    lmax = max(float((np.abs(K[h // rep]) @ np.abs(q[h])).max()) * scale for h in range(q.shape[0]))
    return 2e-5 + 8 * 2.0 ** -23 * lmax


class TestCache(unittest.TestCase):
    def setUp(self):
        self.c = cq.Cache(L, H, D, key_codec="cq4", val_codec="cq4", group=G, page_tokens=64)
        self.K, self.V = kv(70, 3)
        for layer in range(L):
            self.c.append(layer, self.K, self.V)

    def tearDown(self):
        self.c.close()

    def test_read_and_export_are_the_codec_bit_for_bit(self):
        codec = cq.get_codec("cq4")
        n_full = (70 // G) * G
        for h in range(H):
            Kr, Vr = self.c.read(1, h)
            k = self.K[:, h, :]
            kh = codec.decode(codec.encode(k[:n_full], "key", group=G), n_full, D, "key", group=G)
            np.testing.assert_array_equal(Kr[:n_full].view(np.uint32), kh.view(np.uint32))
            np.testing.assert_array_equal(Kr[n_full:], k[n_full:].astype(np.float32))
            vh = codec.decode(codec.encode(self.V[:, h, :], "value"), 70, D, "value")
            np.testing.assert_array_equal(Vr.view(np.uint32), vh.view(np.uint32))
            self.assertEqual(self.c.committed(1, h, "key"), n_full)
            self.assertEqual(self.c.export(1, h, "key").tobytes(),
                             codec.encode(k[:n_full], "key", group=G).tobytes())

    def test_attend_within_the_documented_tolerance(self):
        rng = np.random.default_rng(9)
        scale = 1 / np.sqrt(D)
        for Hq in (2, 8):  # MHA and GQA
            q = rng.standard_normal((Hq, D)).astype(np.float32)
            out = self.c.attend(0, q, n_threads=2, precision="exact")  # the bound of tolerance()
            ref = self.c.attend_ref(0, q)
            Kr = np.stack([self.c.read(0, h)[0] for h in range(H)])
            Vr = np.stack([self.c.read(0, h)[1] for h in range(H)])
            mine = attention(q, Kr, Vr, scale)
            tol = tolerance(q, Kr, scale)
            self.assertLessEqual(np.abs(ref - mine).max() / np.abs(mine).max(), 1e-6)
            self.assertLessEqual(np.abs(out - ref).max() / np.abs(ref).max(), tol)
            # and the compressed cache is not the fp16 input (the check can fail)
            exact = attention(q, self.K.transpose(1, 0, 2), self.V.transpose(1, 0, 2), scale)
            self.assertGreater(np.abs(out - exact).max() / np.abs(exact).max(), tol)

    def test_prefill_is_causal(self):
        rng = np.random.default_rng(2)
        q = rng.standard_normal((5, 4, D)).astype(np.float32)
        out = self.c.attend_prefill(0, q, pos0=40, precision="exact")  # tolerance() is EXACT's
        ref = self.c.attend_ref(0, q, pos0=40)
        Kr = np.stack([self.c.read(0, h)[0] for h in range(H)])
        tol = tolerance(q.reshape(-1, D)[:4], Kr, 1 / np.sqrt(D))
        self.assertLessEqual(np.abs(out - ref).max() / np.abs(ref).max(), 10 * tol)
        # query i sees tokens [0, 40 + i] of the read-back cache, no later ones
        Vr = np.stack([self.c.read(0, h)[1] for h in range(H)])
        for i in (0, 2, 4):
            mine = attention(q[i], Kr[:, :41 + i], Vr[:, :41 + i], 1 / np.sqrt(D))
            self.assertLessEqual(np.abs(out[i] - mine).max() / np.abs(mine).max(), 10 * tol)
            later = attention(q[i], Kr[:, :42 + i], Vr[:, :42 + i], 1 / np.sqrt(D))
            self.assertGreater(np.abs(out[i] - later).max() / np.abs(later).max(), 10 * tol)

    def test_save_load_and_bytes(self):
        rng = np.random.default_rng(4)
        q = rng.standard_normal((4, D)).astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "c.cqkv")
            self.c.save(path)
            with cq.Cache.load(path) as r:
                self.assertTrue(r.compare(self.c))
                np.testing.assert_array_equal(r.attend(1, q), self.c.attend(1, q))
                K2, V2 = kv(3, 8)
                r.append(1, K2, V2)
                with self.assertRaises(cq.CQError) as e:
                    r.compare(self.c)
                self.assertEqual(e.exception.name, "CQ_ERR_MISMATCH")
            with open(path, "rb") as f:
                image = f.read()
        self.assertEqual(self.c.to_bytes(), image)
        with cq.Cache.from_bytes(image) as r:
            r.compare(self.c)
        bad = bytearray(image)
        bad[len(bad) // 2] ^= 0x5A
        with self.assertRaises(cq.CQFileError) as e:
            cq.Cache.from_bytes(bytes(bad))
        self.assertIn(e.exception.name, ("CQ_ERR_CHECKSUM", "CQ_ERR_FORMAT"))
        self.assertTrue(e.exception.message)

    def test_memory_accounting(self):
        m = self.c.memory()
        parts = ("payload", "scales", "sidecar", "residual", "sinks", "slack", "headers")
        self.assertEqual(sum(m[p] for p in parts), m["total"])
        self.assertEqual(m["total"], self.c.allocated_bytes())
        self.assertEqual(m["tokens"], 70 * H * L)
        self.assertAlmostEqual(m["bits_per_value"], 8 * m["total"] / (m["tokens"] * D * 2))
        self.assertEqual(sum(self.c.memory(layer)["total"] for layer in range(L)) <= m["total"], True)
        # 4-bit codes: the payload is a quarter of the fp16 bytes of the committed tokens
        self.assertEqual(m["payload"], L * H * (64 * D // 2 + 70 * D // 2))

    def test_clone_reset_flush(self):
        d = self.c.clone()
        self.assertTrue(d.compare(self.c))
        d.flush()
        K2, V2 = kv(1, 5)
        with self.assertRaises(cq.CQStateError):
            d.append(0, K2, V2)
        d.reset()
        self.assertEqual(d.tokens(0), 0)
        d.append(0, K2, V2)
        self.assertEqual(d.tokens(0), 1)
        d.close()

    def test_errors_leave_the_cache_unchanged(self):
        K2, V2 = kv(4, 6)
        K2[2, 1, 33] = np.nan
        with self.assertRaises(cq.CQNonFiniteError) as e:
            self.c.append(0, K2, V2)
        self.assertIn("token", e.exception.message)
        self.assertEqual(self.c.tokens(0), 70)
        with self.assertRaises(cq.CQError) as e:
            self.c.read(0, 5)  # kv head out of range
        self.assertIn("head", e.exception.message)
        with self.assertRaises(ValueError):
            self.c.append(0, K2[:, :1], V2[:, :1])  # wrong head count: caught before C
        with self.assertRaises(ValueError):
            self.c.attend(0, np.zeros((3, D), np.float32))  # 3 query heads, 2 kv heads

    def test_cq4plus_needs_masks(self):
        with self.assertRaises(cq.CQError) as e:
            cq.Cache(1, H, D, key_codec="cq4+")
        self.assertIn("mask", e.exception.message)
        masks = np.zeros((1, H, D), np.uint8)
        masks[:, :, [7, 50]] = 1
        with cq.Cache(1, H, D, key_codec="cq4+", group=G, masks=masks) as c:
            K, V = kv(G, 1)
            K[:, :, 7] *= 40  # an outlier channel: kept in fp16, so read back exactly
            c.append(0, K, V)
            Kr, _ = c.read(0, 1)
            np.testing.assert_array_equal(Kr[:, 7], K[:, 1, 7].astype(np.float32))
            self.assertEqual(c.export(0, 1, "key").tobytes(),
                             cq.get_codec("cq4+").encode(K[:, 1], "key", group=G,
                                                         mask=masks[0, 1]).tobytes())

    def test_mask_file(self):
        mdir = os.path.join(SHARED, "vectors", "masks")
        files = ["q05_k2.txt"] if os.path.exists(os.path.join(mdir, "q05_k2.txt")) else []
        if not files:
            self.fail("no Qwen2-0.5B mask file under %s" % mdir)
        # Qwen2-0.5B: 24 layers, 2 KV heads, head_dim 64
        m = cq.load_masks(os.path.join(mdir, files[0]), 24, 2, 64)
        self.assertTrue((m.sum(axis=2) >= 1).all())
        with self.assertRaises(cq.CQError):
            cq.load_masks(os.path.join(mdir, files[0]), 3, 2, 64)  # wrong shape: refused


class TestVersion(unittest.TestCase):
    def test_version(self):
        self.assertRegex(cq.version(), r"^\d+\.\d+\.\d+$")
        self.assertEqual(cq.__version__, cq.version())


if __name__ == "__main__":
    unittest.main()
