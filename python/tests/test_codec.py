# SPDX-License-Identifier: MIT
"""test_codec.py - the Python codec registry against the C library's own outputs:
the registry listing equals `cq codecs --json`; CQ-8/CQ-4/CQ-4+ encode gives the
golden vectors' bytes and decode their K_hat/V_hat bit for bit (the shipped vectors
and a vector the C tool generates at an awkward shape); every codec round-trips
within a bound; bad input raises the library's error with its message.

Environment: CQ_SHARED (default ../shared), CQ_TOOL (the cq binary, default build/cq).
"""
import json
import os
import subprocess
import tempfile
import unittest

import numpy as np

import channelquant as cq

SHARED = os.environ.get("CQ_SHARED", "../shared")
TOOL = os.environ.get("CQ_TOOL", "build/cq")
TIER_CODEC = {"CQ8": "cq8", "CQ4": "cq4", "CQ4plus": "cq4+"}


def hexfile(path, dtype):
    with open(path) as f:
        return np.array([int(w, 16) for w in f.read().split()], dtype=dtype)


def load_vector(d):
    """A golden vector directory as numpy arrays (CONTRACT.md section 7)."""
    name = os.path.basename(d.rstrip("/"))
    shape, tier = name.split("__")
    D, T, G = (int(p[1:]) for p in shape.split("_"))
    v = {"tier": tier, "D": D, "T": T, "G": G}
    for f, key, dt in (("input_k.f16.hex", "k", np.uint16), ("input_v.f16.hex", "v", np.uint16),
                       ("key_payload.u8.hex", "kp", np.uint8), ("key_scales.f16.hex", "ks", np.uint16),
                       ("sidecar.f16.hex", "sc", np.uint16), ("val_payload.u8.hex", "vp", np.uint8),
                       ("val_scales.f16.hex", "vs", np.uint16), ("outlier_mask.u8.hex", "mask", np.uint8),
                       ("expected_k_hat.f32.hex", "khat", np.uint32),
                       ("expected_v_hat.f32.hex", "vhat", np.uint32)):
        p = os.path.join(d, f)
        v[key] = hexfile(p, dt) if os.path.exists(p) else np.zeros(0, dt)
    v["k"] = v["k"].reshape(T, D)
    v["v"] = v["v"].reshape(T, D)
    return v


def le16(a):
    return np.asarray(a, dtype="<u2").view(np.uint8)


class GoldenMixin:
    def check_vector(self, d):
        v = load_vector(d)
        codec = cq.get_codec(TIER_CODEC[v["tier"]])
        kw = {"group": v["G"]}
        if v["tier"] == "CQ4plus":
            kw["mask"] = v["mask"]
        # the registry's packed form: payload | scales (fp16 LE) | sidecar (keys)
        want_k = np.concatenate([v["kp"], le16(v["ks"]), le16(v["sc"])])
        want_v = np.concatenate([v["vp"], le16(v["vs"])])
        got_k = codec.encode(v["k"], "key", **kw)
        got_v = codec.encode(v["v"], "value", **kw)
        self.assertEqual(got_k.tobytes(), want_k.tobytes(), "%s: key bytes" % d)
        self.assertEqual(got_v.tobytes(), want_v.tobytes(), "%s: value bytes" % d)
        # decode the stored bytes: K_hat / V_hat bit for bit (fp32 bit patterns)
        kh = codec.decode(want_k, v["T"], v["D"], "key", **kw)
        vh = codec.decode(want_v.tobytes(), v["T"], v["D"], "value", **kw)
        np.testing.assert_array_equal(kh.view(np.uint32).ravel(), v["khat"], "%s: K_hat" % d)
        np.testing.assert_array_equal(vh.view(np.uint32).ravel(), v["vhat"], "%s: V_hat" % d)


class TestGolden(GoldenMixin, unittest.TestCase):
    def test_shipped_vectors(self):
        root = os.path.join(SHARED, "vectors", "channelquant")
        dirs = sorted(d for d in os.listdir(root) if "__" in d)
        self.assertEqual(len(dirs), 9, "the 9 golden vectors of the contract")
        for d in dirs:
            with self.subTest(vector=d):
                self.check_vector(os.path.join(root, d))

    def test_c_tool_generated_vectors(self):
        # awkward shapes: D not a power of two, partial last group, special values
        with tempfile.TemporaryDirectory() as tmp:
            for tier, D, T, G, extra in (("CQ4plus", 96, 77, 32, ["--outliers", "5,70"]),
                                         ("CQ4", 40, 33, 16, []), ("CQ8", 130, 9, 128, [])):
                subprocess.run([TOOL, "vectors", "gen", "--tier", tier, "--dim", str(D), "--tokens",
                                str(T), "--group", str(G), "--seed", "11", "--specials"] + extra
                               + [tmp], check=True, stdout=subprocess.DEVNULL)
                d = os.path.join(tmp, "d%d_T%d_G%d__%s" % (D, T, G, tier))
                with self.subTest(vector=d):
                    self.check_vector(d)

    def test_a_changed_byte_is_caught(self):
        root = os.path.join(SHARED, "vectors", "channelquant")
        v = load_vector(os.path.join(root, "d64_T70_G64__CQ4"))
        codec = cq.get_codec("cq4")
        k = v["k"].copy()
        k[3, 7] ^= 0x0400  # change one input exponent bit
        got = codec.encode(k, "key", group=64)
        want = np.concatenate([v["kp"], le16(v["ks"])])
        self.assertNotEqual(got.tobytes(), want.tobytes())


class TestRegistry(unittest.TestCase):
    def test_listing_equals_the_c_tool(self):
        out = subprocess.run([TOOL, "codecs", "--json"], check=True, capture_output=True, text=True)
        tool = json.loads(out.stdout)
        mine = cq.codecs()
        self.assertEqual([(c["id"], c["name"], c["family"], float(c["bits"]), c["layout"]) for c in tool],
                         [(c.id, c.name, c.family, c.bits, c.layout) for c in mine])
        for c, t in zip(mine, tool):
            roles = ",".join(r for r, ok in (("K", c.keys), ("V", c.values)) if ok)
            self.assertEqual(roles, t["roles"], c.name)

    def test_lookup(self):
        self.assertEqual(cq.get_codec("CQ4").id, 2)
        self.assertEqual(cq.get_codec(3).name, "cq4+")
        self.assertTrue(cq.get_codec("cq4").ours)
        with self.assertRaises(KeyError):
            cq.get_codec("no-such-codec")

    def test_every_codec_round_trips(self):
        rng = np.random.default_rng(5)
        T, D = 64, 64
        x = (rng.standard_normal((T, D)) * 0.7).astype(np.float16)
        mask = np.zeros(D, np.uint8)
        mask[[3, 40]] = 1
        xf = x.astype(np.float64)
        for c in cq.codecs():
            for role in ("key", "value"):
                if not c.supports(D, role, mask=mask):
                    continue
                with self.subTest(codec=c.name, role=role):
                    p = c.encode(x, role, mask=mask)
                    self.assertEqual(p.size, c.packed_bytes(T, D, role, mask=mask))
                    y = c.decode(p, T, D, role, mask=mask)
                    self.assertEqual(y.shape, (T, D))
                    self.assertEqual(y.dtype, np.float32)
                    nmse = float(((y - xf) ** 2).sum() / (xf ** 2).sum())
                    # 2-bit codecs are coarse; everything else is far below 0.2
                    self.assertLess(nmse, 0.5 if c.bits <= 2 else 0.2)
                    if c.exact:
                        self.assertEqual(nmse, 0.0)
                    # deterministic: same input, same bytes
                    self.assertEqual(p.tobytes(), c.encode(x, role, mask=mask).tobytes())

    def test_input_dtypes_agree(self):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((10, 32)).astype(np.float32)
        c = cq.get_codec("cq8")
        a = c.encode(x, "key")
        self.assertEqual(a.tobytes(), c.encode(x.astype(np.float16), "key").tobytes())
        self.assertEqual(a.tobytes(), c.encode(x.astype(np.float16).view(np.uint16), "key").tobytes())


class TestErrors(unittest.TestCase):
    def test_nonfinite_carries_token_and_channel(self):
        x = np.ones((8, 16), np.float16)
        x[5, 9] = np.inf
        with self.assertRaises(cq.CQNonFiniteError) as e:
            cq.get_codec("cq4").encode(x, "value")
        self.assertEqual(e.exception.name, "CQ_ERR_NONFINITE")
        self.assertEqual((e.exception.token, e.exception.channel), (5, 9))
        self.assertIn("token 5", e.exception.message)

    def test_unsupported_role_and_dim(self):
        with self.assertRaises(cq.CQError) as e:
            cq.get_codec("cq3rot").encode(np.ones((4, 64), np.float16), "key")
        self.assertNotEqual(e.exception.code, 0)
        with self.assertRaises(cq.CQError):
            cq.get_codec("cq4").encode(np.ones((4, 7), np.float16), "key")  # odd D

    def test_bad_arguments(self):
        c = cq.get_codec("cq4")
        with self.assertRaises(ValueError):
            c.encode(np.ones(16, np.float16), "key")  # not [T][D]
        with self.assertRaises(ValueError):
            c.encode(np.ones((4, 16), np.float16), "keyz")
        with self.assertRaises(TypeError):
            c.encode(np.ones((4, 16), np.int32), "key")
        with self.assertRaises(ValueError):  # wrong packed length
            c.decode(np.zeros(3, np.uint8), 4, 16, "key")
        with self.assertRaises(ValueError):  # mask of the wrong length
            cq.get_codec("cq4+").encode(np.ones((4, 16), np.float16), "key", mask=np.zeros(15))


if __name__ == "__main__":
    unittest.main()
