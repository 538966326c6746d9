# SPDX-License-Identifier: MIT
"""test_serve.py - the serving pool (KVPool, Sequence) against the C library: a pool
sequence's read, export and attention (decode and prefill) equal a Cache with
page_tokens = G fed the same tokens, bit for bit; fork independence; truncate then
read; a budget refusal raises CQBudgetError and changes nothing (tokens, memory);
shift is refused with the library's message; freeing every sequence returns the
pool to zero blocks; prefix publish / adopt.
"""
import unittest

import numpy as np

import channelquant as cq

L, H, D, G, S = 2, 2, 64, 32, 2
FORMATS = [("cq4", "cq4"), ("cq8", "cq8"), ("fp16", "fp16"), ("cq4", "cq8")]


def kv(n, seed):
    rng = np.random.default_rng(seed)
    K = (rng.standard_normal((n, H, D)) * 0.8).astype(np.float16)
    V = (rng.standard_normal((n, H, D)) * 0.4).astype(np.float16)
    return K, V


def feed(objs, n, seed):
    for layer in range(L):
        K, V = kv(n, seed + layer)
        for o in objs:
            o.append(layer, K, V)


class ServeTest(unittest.TestCase):
    def pool(self, k="cq4", v="cq4", budget=1 << 24, n_sinks=S):
        return cq.KVPool(L, H, D, budget, key_codec=k, val_codec=v, group=G, n_sinks=n_sinks)

    def assert_same(self, seq, cache, rng):
        for layer in range(L):
            self.assertEqual(seq.tokens(layer), cache.tokens(layer))
            for h in range(H):
                ks, vs = seq.read(layer, h)
                kc, vc = cache.read(layer, h)
                self.assertTrue(np.array_equal(ks, kc) and np.array_equal(vs, vc))
                for role in ("key", "value"):
                    self.assertTrue(np.array_equal(seq.export(layer, h, role),
                                                   cache.export(layer, h, role)))
            q = rng.standard_normal((2 * H, D)).astype(np.float32)
            for prec in ("exact", "fast"):
                self.assertTrue(np.array_equal(seq.attend(layer, q, precision=prec),
                                               cache.attend(layer, q, precision=prec)))
            n = seq.tokens(layer)
            qp = rng.standard_normal((5, 2 * H, D)).astype(np.float32)
            self.assertTrue(np.array_equal(seq.attend_prefill(layer, qp, n - 5),
                                           cache.attend_prefill(layer, qp, n - 5)))

    def test_equals_cache(self):
        rng = np.random.default_rng(1)
        for k, v in FORMATS:
            with self.subTest(fmt=(k, v)), self.pool(k, v) as p:
                s = p.sequence()
                c = cq.Cache(L, H, D, key_codec=k, val_codec=v, group=G, n_sinks=S,
                             page_tokens=G)
                feed([s, c], 3 * G + 7, 10)   # prefill shape
                for t in range(G + 3):        # decode shape, across a group border
                    feed([s, c], 1, 100 + t)
                self.assert_same(s, c, rng)
                # float32 input goes through append_f32 on both
                K = rng.standard_normal((4, H, D)).astype(np.float32)
                for layer in range(L):
                    s.append(layer, K, K)
                    c.append(layer, K, K)
                self.assert_same(s, c, rng)
                self.assertTrue(p.check())
                c.close()

    def test_fork_independent(self):
        rng = np.random.default_rng(2)
        with self.pool() as p:
            a = p.sequence()
            ca = cq.Cache(L, H, D, group=G, n_sinks=S, page_tokens=G)
            feed([a, ca], 2 * G + 5, 20)
            b = a.fork()
            cb = ca.clone()
            self.assertGreater(b.memory()["shared_blocks"], 0)
            self.assertGreater(p.memory()["shared_saved"], 0)
            feed([a, ca], G, 30)
            feed([b, cb], 3, 40)
            self.assert_same(a, ca, rng)
            self.assert_same(b, cb, rng)
            self.assertNotEqual(a.tokens(), b.tokens())
            b.free()
            self.assert_same(a, ca, rng)
            self.assertTrue(p.check())

    def test_truncate_then_read(self):
        rng = np.random.default_rng(3)
        with self.pool() as p:
            s = p.sequence()
            feed([s], 3 * G + 10, 50)
            s.truncate(S + 2 * G)
            fresh = cq.Cache(L, H, D, group=G, n_sinks=S, page_tokens=G)
            feed([fresh], 3 * G + 10, 50)   # same tokens; compare the kept prefix
            for layer in range(L):
                self.assertEqual(s.tokens(layer), S + 2 * G)
                for h in range(H):
                    ks, vs = s.read(layer, h)
                    kc, vc = fresh.read(layer, h, 0, S + 2 * G)
                    self.assertTrue(np.array_equal(ks, kc) and np.array_equal(vs, vc))
            # a cut inside a committed key group (of a fork) keeps the group's codes of the
            # kept tokens and leaves the source unchanged
            b = s.fork()
            b.truncate(S + G + 5)
            self.assertEqual(b.tokens(), S + G + 5)
            self.assertEqual(s.tokens(), S + 2 * G)
            for layer in range(L):
                for h in range(H):
                    kb, vb = b.read(layer, h)
                    ks, vs = s.read(layer, h, 0, S + G + 5)
                    self.assertTrue(np.array_equal(kb, ks) and np.array_equal(vb, vs))
            self.assertEqual(b.memory()["slack"], (G - 5) * p.block_bytes // G)
            b.free()
            # truncate + append equals a fresh sequence fed the same tokens
            ref = cq.Cache(L, H, D, group=G, n_sinks=S, page_tokens=G)
            for layer in range(L):
                K, V = kv(3 * G + 10, 50 + layer)
                ref.append(layer, K[:S + 2 * G], V[:S + 2 * G])
            feed([s, ref], G + 1, 60)
            self.assert_same(s, ref, rng)
            with self.assertRaises(cq.CQError) as e:
                s.truncate(10 ** 6)
            self.assertEqual(e.exception.name, "CQ_ERR_RANGE")

    def test_budget_refusal_changes_nothing(self):
        with self.pool() as big:
            one = big.block_bytes + big.sink_bytes + big.tail_bytes
        budget = one + 64
        with self.pool(budget=budget) as p:
            s = p.sequence()
            feed([s], G, 70)          # block 0 (sinks + part of the first group)
            before = (s.tokens(0), s.tokens(1), s.memory(), p.memory(), s.read(0, 0))
            with self.assertRaises(cq.CQBudgetError) as e:
                feed([s], 4 * G, 80)  # needs more blocks than the budget holds
            self.assertEqual(e.exception.name, "CQ_ERR_BUDGET")
            self.assertTrue(e.exception.message)
            self.assertIsInstance(e.exception, cq.CQError)
            after = (s.tokens(0), s.tokens(1), s.memory(), p.memory(), s.read(0, 0))
            self.assertEqual(after[:3], before[:3])
            pm0, pm1 = dict(before[3]), dict(after[3])
            pr0, pr1 = pm0.pop("prefix"), pm1.pop("prefix")
            self.assertEqual(pm0, pm1)
            self.assertEqual(pr1["budget_refusals"], pr0["budget_refusals"] + 1)
            pr0.pop("budget_refusals"), pr1.pop("budget_refusals")
            self.assertEqual(pr0, pr1)
            self.assertTrue(np.array_equal(after[4][0], before[4][0]))
            self.assertTrue(p.check())

    def test_shift_refused(self):
        with self.pool() as p, p.sequence() as s:
            feed([s], 10, 90)
            with self.assertRaises(cq.CQUnsupportedError) as e:
                s.shift(0, 10, 3)
            self.assertEqual(e.exception.name, "CQ_ERR_UNSUPPORTED")
            self.assertTrue(e.exception.message)
            self.assertNotEqual(e.exception.message,
                                cq.CQError(12, None).message)  # the library's own text
            self.assertEqual(s.tokens(), 10)

    def test_free_returns_to_zero(self):
        with self.pool() as p:
            seqs = [p.sequence()]
            feed(seqs, 2 * G + 9, 100)
            seqs.append(seqs[0].fork())
            feed(seqs[1:], G, 110)
            seqs.append(seqs[1].fork())
            m = p.memory()
            self.assertEqual(m["n_seqs"], 3)
            self.assertGreater(m["prefix"]["live_blocks"], 0)
            self.assertEqual(m["total"], p.allocated_bytes())
            for s in seqs:
                s.free()
            m = p.memory()
            self.assertEqual(m["n_seqs"], 0)
            self.assertEqual(m["prefix"]["live_blocks"], 0)
            self.assertEqual(m["referenced"], 0)
            self.assertEqual(m["tails"], 0)
            self.assertTrue(p.check())
            with self.assertRaises(ValueError):
                seqs[0].tokens()

    def test_publish_adopt(self):
        rng = np.random.default_rng(5)
        n = S + 2 * G + 3
        toks = np.arange(1000, 1000 + n, dtype=np.uint32)
        with self.pool() as p:
            a = p.sequence()
            c = cq.Cache(L, H, D, group=G, n_sinks=S, page_tokens=G)
            feed([a, c], n, 120)
            a.publish(toks)
            b = p.sequence()
            got = b.adopt_prefix(toks)
            self.assertEqual(got, S + 2 * G)
            for layer in range(L):
                K, V = kv(n, 120 + layer)
                b.append(layer, K[got:], V[got:])
            self.assert_same(b, c, rng)
            self.assertTrue(p.check())

    def test_batched_attention_equals_single(self):
        rng = np.random.default_rng(6)
        for k, v in FORMATS:
            with self.subTest(fmt=(k, v)), self.pool(k, v) as p:
                seqs = [p.sequence() for _ in range(4)]
                for i, s in enumerate(seqs):       # lengths 1, in flight, border, several blocks
                    feed([s], [1, S + 5, S + G, S + 3 * G + 9][i], 140 + 10 * i)
                for layer in range(L):
                    q = rng.standard_normal((4, 2 * H, D)).astype(np.float32)
                    for prec in ("exact", "fast"):
                        order = [3, 0, 2, 1]
                        got = p.attend(layer, [seqs[i] for i in order], q[order], n_threads=2,
                                       precision=prec)
                        for j, i in enumerate(order):
                            self.assertTrue(np.array_equal(
                                got[j], seqs[i].attend(layer, q[i], precision=prec)))
                    qs = [rng.standard_normal((m, 2 * H, D)).astype(np.float32) for m in (1, 3)]
                    pos = [seqs[1].tokens(layer) - 1, seqs[3].tokens(layer) - 3]
                    outs = p.attend_prefill(layer, [seqs[1], seqs[3]], qs, pos)
                    self.assertTrue(np.array_equal(outs[0], seqs[1].attend_prefill(layer, qs[0], pos[0])))
                    self.assertTrue(np.array_equal(outs[1], seqs[3].attend_prefill(layer, qs[1], pos[1])))
                with self.assertRaises(ValueError):
                    p.attend(0, [seqs[0], seqs[0]], np.zeros((1, 2 * H, D), np.float32))

    def test_save_load_sequence_and_cached(self):
        import os
        import tempfile
        rng = np.random.default_rng(7)
        n = S + 2 * G + 5
        toks = np.arange(2000, 2000 + n, dtype=np.uint32)
        with tempfile.TemporaryDirectory() as d, self.pool() as p, self.pool() as p2:
            a = p.sequence()
            c = cq.Cache(L, H, D, group=G, n_sinks=S, page_tokens=G)
            feed([a, c], n, 150)
            a.publish(toks)
            a.save(os.path.join(d, "a.cqs"), toks)
            p.save_cached(os.path.join(d, "p.cqc"))
            b = p2.load_sequence(os.path.join(d, "a.cqs"))
            self.assert_same(b, c, rng)
            for layer in range(L):              # continues as the original would
                K, V = kv(7, 160 + layer)
                b.append(layer, K, V)
                c.append(layer, K, V)
            self.assert_same(b, c, rng)
            self.assertTrue(p2.check())
            # the cached blocks as a warm start of a third pool
            with self.pool() as p3:
                p3.load_cached(os.path.join(d, "p.cqc"))
                self.assertEqual(p3.sequence().adopt_prefix(toks), S + 2 * G)
            with open(os.path.join(d, "bad.cqs"), "wb") as f:
                f.write(b"not a sequence file")
            with self.assertRaises(cq.CQError):
                p.load_sequence(os.path.join(d, "bad.cqs"))
            c.close()

    def test_close_pool_invalidates_sequences(self):
        p = self.pool()
        s = p.sequence()
        feed([s], 5, 130)
        p.close()
        with self.assertRaises(ValueError):
            s.read(0, 0)
        s.free()  # harmless

    def test_unsupported_codec(self):
        kivi = [c.name for c in cq.codecs() if "kivi" in c.name.lower()]
        if not kivi:
            self.skipTest("no KIVI codec")
        with self.assertRaises(cq.CQError):
            cq.KVPool(L, H, D, 1 << 24, key_codec=kivi[0], val_codec=kivi[0], group=G)


if __name__ == "__main__":
    unittest.main()
