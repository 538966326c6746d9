#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""
cq_ref.py - an independent reference of the ChannelQuant codec contract
(../shared/docs/CONTRACT.md), written from the text alone, in exact arithmetic,
with the Python 3 standard library only (no numpy).

It does NOT share code or logic with the C library: every fp16/fp32 encoding
is done here on integers and fractions.Fraction, and the streams are built
from the words of sections 3, 4, 5, 7, 8 and 9.

Modes:
  validate SHARED_VECTORS_DIR
      reproduce the shipped golden vectors (channelquant/d*) and the shipped
      real-model slices (qwen2-0.5b/) bit for bit from their inputs. This is
      what makes the reference trustworthy before it is used as an oracle.
  gen OUTDIR [--seed N]
      write new golden-format vectors (OUTDIR/golden/NN/d{D}_T{T}_G{G}__TIER)
      and replay-slice sets (OUTDIR/slices/) from a deterministic generator
      of awkward shapes and values (T=1, partial groups, G>T, G=1, D from 2 to
      512, k=1 and k=D-1, odd D-k, outliers at 0 and D-1, zeros, -0.0,
      subnormals, +-65504, exact rounding ties, all-zero tokens and groups).

Representation: an fp16 value is held as its bit pattern; its exact value is
an integer number of units of 2^-24 (every finite fp16 is one, |v| < 2^40).
"""

import argparse
import math
import os
import random
import sys
from fractions import Fraction

UNIT_SHIFT = 24  # fp16 quantum: 2^-24
F16_FLOOR = Fraction(1, 1 << 14)  # section 3: scale floor 2^-14

# Coverage counters: gen refuses to finish if an edge case it promises never occurred.
COVER = dict.fromkeys([
    "exact_tie", "neg_zero_kept", "neg_zero_outlier", "subnormal_input", "fp16_max_input",
    "floor_scale", "all_zero_axis", "group_padding", "partial_group", "single_token_group",
], 0)

# --------------------------------------------------------------------- fp16


class NonFinite(ValueError):
    pass


class Overflow(ValueError):
    pass


def f16_is_finite(h):
    return (h & 0x7C00) != 0x7C00


def f16_is_neg_zero(h):
    return h == 0x8000


def f16_units(h):
    """Exact value of fp16 bits h, as an integer multiple of 2^-24."""
    if not f16_is_finite(h):
        raise NonFinite("non-finite fp16 0x%04x" % h)
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    mag = m if e == 0 else (1024 + m) << (e - 1)  # (1024+m) * 2^(e-15-10) / 2^-24
    return -mag if h & 0x8000 else mag


def f16_frac(h):
    return Fraction(f16_units(h), 1 << UNIT_SHIFT)


def rne_div(n, d):
    """round_half_to_even(n / d) for integers, d > 0 (exact)."""
    q, r = divmod(n, d)  # floor division: 0 <= r < d
    if 2 * r > d or (2 * r == d and q & 1):
        q += 1
    return q


def floor_log2(n, d):
    """floor(log2(n/d)) for positive integers."""
    e = n.bit_length() - d.bit_length()
    if e >= 0:
        if n < (d << e):
            e -= 1
    else:
        if (n << -e) < d:
            e -= 1
    return e


def f16_from_ratio(n, d, neg_zero=False):
    """fp16_RNE(n/d) as bits; overflow gives +-Inf (0x7C00); zero keeps neg_zero."""
    if d <= 0:
        raise ValueError("denominator must be positive")
    if n == 0:
        return 0x8000 if neg_zero else 0
    sign = 0x8000 if n < 0 else 0
    n = abs(n)
    e = max(floor_log2(n, d), -14)  # below 2^-14 the quantum stays 2^-24
    sh = 10 - e  # m = RNE(n/d * 2^(10-e)), in [0, 2048]
    m = rne_div(n << sh, d) if sh >= 0 else rne_div(n, d << -sh)
    bits = ((e + 14) << 10) + m  # covers subnormal, normal and the carry into e+1
    if bits >= 0x7C00:
        return sign | 0x7C00
    return sign | bits


def f16_from_frac(q, neg_zero=False):
    return f16_from_ratio(q.numerator, q.denominator, neg_zero)


def f32_bits_exact(n, d, neg_zero=False):
    """fp32 bits of n/d, which must be exactly representable (the contract says so)."""
    if n == 0:
        return 0x80000000 if neg_zero else 0
    sign = 0x80000000 if n < 0 else 0
    n = abs(n)
    e = max(floor_log2(n, d), -126)
    sh = 23 - e
    num, den = (n << sh, d) if sh >= 0 else (n, d << -sh)
    if num % den:
        raise ValueError("%d/%d is not exact in fp32" % (n, d))
    bits = ((e + 126) << 23) + num // den
    if bits >= 0x7F800000:
        raise ValueError("fp32 overflow")
    return sign | bits


def f16_widen_f32(h):
    """fp16 -> fp32 bits, exact, -0.0 kept (outlier channels, section 3)."""
    COVER["neg_zero_outlier"] += f16_is_neg_zero(h)
    return f32_bits_exact(f16_units(h), 1 << UNIT_SHIFT, f16_is_neg_zero(h))


# --------------------------------------------------------------- section 3


def amax_f16(hs):
    """max |x| taken on the fp16 bits (h & 0x7FFF compared as integers)."""
    m = 0
    for h in hs:
        if (h & 0x7FFF) > m:
            m = h & 0x7FFF
    return m


def scale_of(amax_bits, qmax):
    q = f16_frac(amax_bits & 0x7FFF) / qmax
    COVER["all_zero_axis"] += (amax_bits & 0x7FFF) == 0
    if q < F16_FLOOR:
        COVER["floor_scale"] += 1
        q = F16_FLOOR
    s = f16_from_frac(q)
    assert 0x0400 <= s < 0x7C00, "a scale is never subnormal and never overflows"
    return s


def quantize(x, s, qmax):
    """clamp(round_half_even(x / scale), -qmax-1, qmax); round(Fraction) is exact banker's."""
    r = Fraction(f16_units(x), f16_units(s))
    code = round(r)
    COVER["exact_tie"] += r.denominator == 2
    COVER["neg_zero_kept"] += x == 0x8000
    COVER["subnormal_input"] += (x & 0x7C00) == 0 and (x & 0x3FF) != 0
    COVER["fp16_max_input"] += (x & 0x7FFF) == 0x7BFF
    return max(-qmax - 1, min(qmax, code))


def dequant_f32(code, s):
    """code * scale as fp32 bits; a zero code is the integer 0, so +0.0."""
    return f32_bits_exact(code * f16_units(s), 1 << UNIT_SHIFT)


# --------------------------------------------------------------- section 5


def pack_int4(codes):
    """element 2i in the low nibble, 2i+1 in the high nibble; odd tail padded with 0."""
    out = bytearray((len(codes) + 1) // 2)
    for i, c in enumerate(codes):
        nib = c & 0xF
        out[i >> 1] |= nib << (4 if i & 1 else 0)
    return bytes(out)


def unpack_int4(buf, n):
    out = []
    for i in range(n):
        nib = (buf[i >> 1] >> (4 if i & 1 else 0)) & 0xF
        out.append(nib - 16 if nib >= 8 else nib)
    return out


def pack_int8(codes):
    return bytes(c & 0xFF for c in codes)


def unpack_int8(buf):
    return [b - 256 if b >= 128 else b for b in buf]


def check_finite(X, T, D, what):
    for t in range(T):
        for c in range(D):
            if not f16_is_finite(X[t * D + c]):
                raise NonFinite("%s: token %d channel %d is not finite" % (what, t, c))


def encode_per_token(X, T, D, bits):
    """Per-token scale over its D channels (values of every tier; CQ-8 keys)."""
    qmax = 127 if bits == 8 else 7
    codes, scales = [], []
    for t in range(T):
        row = X[t * D:(t + 1) * D]
        s = scale_of(amax_f16(row), qmax)
        scales.append(s)
        codes.extend(quantize(x, s, qmax) for x in row)
    payload = pack_int8(codes) if bits == 8 else pack_int4(codes)  # one [T][D] stream
    return payload, scales


def decode_per_token(payload, scales, T, D, bits):
    codes = unpack_int8(payload) if bits == 8 else unpack_int4(payload, T * D)
    if len(codes) != T * D:
        raise ValueError("payload length")
    return [dequant_f32(codes[t * D + c], scales[t]) for t in range(T) for c in range(D)]


def encode_keys_grouped(K, T, D, G, mask):
    """CQ-4 / CQ-4+ keys (sections 4 and 5): groups [0,G), [G,2G), ... from token 0."""
    kept = [c for c in range(D) if not mask[c]]
    outl = [c for c in range(D) if mask[c]]
    payload, scales, sidecar = bytearray(), [], []
    for t0 in range(0, T, G):
        g = min(G, T - t0)
        gs = [scale_of(amax_f16(K[t * D + c] for t in range(t0, t0 + g)), 7) for c in kept]
        codes = [quantize(K[t * D + c], gs[j], 7) for t in range(t0, t0 + g)
                 for j, c in enumerate(kept)]
        payload += pack_int4(codes)  # padded to a whole byte per group
        COVER["group_padding"] += len(codes) % 2
        COVER["partial_group"] += g < G
        COVER["single_token_group"] += g == 1
        scales += gs
    for t in range(T):
        sidecar.extend(K[t * D + c] for c in outl)
    return bytes(payload), scales, sidecar


def decode_keys_grouped(payload, scales, sidecar, T, D, G, mask):
    kept = [c for c in range(D) if not mask[c]]
    outl = [c for c in range(D) if mask[c]]
    nk = len(kept)
    out = [None] * (T * D)
    off = 0
    for gi, t0 in enumerate(range(0, T, G)):
        g = min(G, T - t0)
        nbytes = (g * nk + 1) // 2
        codes = unpack_int4(payload[off:off + nbytes], g * nk)
        off += nbytes
        gs = scales[gi * nk:(gi + 1) * nk]
        for r in range(g):
            for j, c in enumerate(kept):
                out[(t0 + r) * D + c] = dequant_f32(codes[r * nk + j], gs[j])
    if off != len(payload):
        raise ValueError("key payload length")
    for t in range(T):
        for o, c in enumerate(outl):
            out[t * D + c] = f16_widen_f32(sidecar[t * len(outl) + o])
    return out


def tier_streams(tier, K, V, T, D, G, mask):
    """All streams and decoded surfaces of one golden vector (section 7)."""
    check_finite(K, T, D, "K")
    check_finite(V, T, D, "V")
    if tier != "CQ4plus" and any(mask):
        raise ValueError("%s has no outlier lane" % tier)
    if tier == "CQ8":
        kp, ks = encode_per_token(K, T, D, 8)
        side = []
        khat = decode_per_token(kp, ks, T, D, 8)
        vp, vs = encode_per_token(V, T, D, 8)
        vhat = decode_per_token(vp, vs, T, D, 8)
    else:
        kp, ks, side = encode_keys_grouped(K, T, D, G, mask)
        khat = decode_keys_grouped(kp, ks, side, T, D, G, mask)
        vp, vs = encode_per_token(V, T, D, 4)
        vhat = decode_per_token(vp, vs, T, D, 4)
    return {
        "key_payload.u8.hex": list(kp), "key_scales.f16.hex": ks, "sidecar.f16.hex": side,
        "val_payload.u8.hex": list(vp), "val_scales.f16.hex": vs,
        "expected_k_hat.f32.hex": khat, "expected_v_hat.f32.hex": vhat,
    }


# --------------------------------------------------------------- section 9


def wht_f16(row):
    """In-place radix-2 WHT of fp16 bits: (a, b) -> (a+b, a-b), RNE of the exact sum.
    Signed zeros follow IEEE addition: x+y is -0 only for (-0)+(-0); x-y only for (-0)-(+0)."""
    D = len(row)
    h = 1
    while h < D:
        for i in range(0, D, 2 * h):
            for j in range(i, i + h):
                a, b = row[j], row[j + h]
                ua, ub = f16_units(a), f16_units(b)
                s = f16_from_ratio(ua + ub, 1 << UNIT_SHIFT,
                                   f16_is_neg_zero(a) and f16_is_neg_zero(b))
                d = f16_from_ratio(ua - ub, 1 << UNIT_SHIFT,
                                   f16_is_neg_zero(a) and b == 0)
                if not (f16_is_finite(s) and f16_is_finite(d)):
                    raise Overflow("Walsh-Hadamard butterfly overflows fp16")
                row[j], row[j + h] = s, d
        h *= 2
    return row


def cq3rot_roundtrip(V, T, D):
    """Encode (WHT, INT3 per token, qmax 3) then decode; returns V_hat fp32 bits."""
    if D & (D - 1) or D < 2:
        raise ValueError("CQ-3-rot needs a power-of-two D")
    check_finite(V, T, D, "V")
    out = []
    for t in range(T):
        row = wht_f16(list(V[t * D:(t + 1) * D]))
        s = scale_of(amax_f16(row), 3)
        codes = [quantize(x, s, 3) for x in row]
        assert all(-4 <= c <= 3 for c in codes)
        # packing (code & 7 at bit offset 3i, LSB first) and back
        acc = 0
        for i, c in enumerate(codes):
            acc |= (c & 7) << (3 * i)
        codes2 = [((acc >> (3 * i)) & 7) for i in range(D)]
        codes2 = [c - 8 if c >= 4 else c for c in codes2]
        assert codes2 == codes
        su = f16_units(s)
        deq = [f16_from_ratio(c * su, 1 << UNIT_SHIFT) for c in codes2]
        rot = wht_f16(deq)
        out.extend(f32_bits_exact(f16_units(h), D << UNIT_SHIFT, f16_is_neg_zero(h)) for h in rot)
    return out


def slice_surfaces(K, V, T, D, mask):
    """keyhat (CQ-4+ G=128, slice mask), valhat (INT4 per token), vhatwht (CQ-3-rot)."""
    check_finite(K, T, D, "K")
    kp, ks, side = encode_keys_grouped(K, T, D, 128, mask)
    khat = decode_keys_grouped(kp, ks, side, T, D, 128, mask)
    vp, vs = encode_per_token(V, T, D, 4)
    vhat = decode_per_token(vp, vs, T, D, 4)
    return khat, vhat, cq3rot_roundtrip(V, T, D)


# --------------------------------------------------------------------- files

GOLDEN_FILES = [
    ("input_k.f16.hex", 4), ("input_v.f16.hex", 4), ("outlier_mask.u8.hex", 2),
    ("key_payload.u8.hex", 2), ("key_scales.f16.hex", 4), ("val_payload.u8.hex", 2),
    ("val_scales.f16.hex", 4), ("sidecar.f16.hex", 4), ("expected_k_hat.f32.hex", 8),
    ("expected_v_hat.f32.hex", 8),
]


def read_words(path, skip_header=False):
    with open(path) as f:
        text = f.read()
    if skip_header:
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return [int(w, 16) for w in text.split()]


def write_lines(path, words, digits):
    with open(path, "w") as f:
        f.write("".join("%0*x\n" % (digits, w) for w in words))


def write_rows(path, words, D, digits, header=None):
    with open(path, "w") as f:
        if header is not None:
            f.write(header + "\n")
        for t in range(len(words) // D):
            f.write(" ".join("%0*x" % (digits, w) for w in words[t * D:(t + 1) * D]) + "\n")


def parse_name(name):
    # d{D}_T{T}_G{G}__{CQ8|CQ4|CQ4plus}
    head, tier = name.split("__")
    d, t, g = head.split("_")
    assert d[0] == "d" and t[0] == "T" and g[0] == "G"
    assert tier in ("CQ8", "CQ4", "CQ4plus")
    return int(d[1:]), int(t[1:]), int(g[1:]), tier


def write_golden(outdir, tier, D, T, G, K, V, mask):
    name = "d%d_T%d_G%d__%s" % (D, T, G, tier)
    path = os.path.join(outdir, name)
    os.makedirs(path)
    surf = tier_streams(tier, K, V, T, D, G, mask)
    surf["input_k.f16.hex"] = K
    surf["input_v.f16.hex"] = V
    surf["outlier_mask.u8.hex"] = [1 if m else 0 for m in mask]
    for fname, digits in GOLDEN_FILES:
        write_lines(os.path.join(path, fname), surf[fname], digits)
    return path


def write_slices(outdir, slices):
    """slices: list of (D, T, layer, head, K, V, mask); section 8 layout."""
    os.makedirs(outdir)
    with open(os.path.join(outdir, "manifest.txt"), "w") as f:
        f.write("%d\n" % len(slices))
        for i, (D, T, layer, head, _, _, _) in enumerate(slices):
            f.write("%d %d %d %d %d\n" % (i, D, T, layer, head))
    for i, (D, T, layer, head, K, V, mask) in enumerate(slices):
        khat, vhat, wht = slice_surfaces(K, V, T, D, mask)
        p = lambda stem: os.path.join(outdir, "%s_%d.hex" % (stem, i))  # noqa: E731
        write_rows(p("key"), K, D, 4, "%d %d" % (D, T))
        write_rows(p("val"), V, D, 4, "%d %d 4" % (D, T))
        write_lines(p("keymask"), [1 if m else 0 for m in mask], 2)
        write_rows(p("keyhat"), khat, D, 8)
        write_rows(p("valhat"), vhat, D, 8)
        write_rows(p("vhatwht"), wht, D, 8)


# ------------------------------------------------------------------ validate


def first_diff(name, exp, got):
    if len(exp) != len(got):
        return "%s: %d words expected, %d computed" % (name, len(exp), len(got))
    for i, (e, g) in enumerate(zip(exp, got)):
        if e != g:
            return "%s[%d]: expected %x, computed %x" % (name, i, e, g)
    return None


def validate(shared_vectors):
    bad = 0
    gdir = os.path.join(shared_vectors, "channelquant")
    names = sorted(n for n in os.listdir(gdir) if n.startswith("d") and "__" in n)
    for name in names:
        D, T, G, tier = parse_name(name)
        p = os.path.join(gdir, name)
        K = read_words(os.path.join(p, "input_k.f16.hex"))
        V = read_words(os.path.join(p, "input_v.f16.hex"))
        mask = read_words(os.path.join(p, "outlier_mask.u8.hex"))
        surf = tier_streams(tier, K, V, T, D, G, mask)
        diffs = [first_diff(f, read_words(os.path.join(p, f)), surf[f]) for f in sorted(surf)]
        diffs = [d for d in diffs if d]
        print("%s golden %s%s" % ("FAIL" if diffs else "ok  ", name, ": " + diffs[0] if diffs else ""))
        bad += bool(diffs)
    sdir = os.path.join(shared_vectors, "qwen2-0.5b")
    with open(os.path.join(sdir, "manifest.txt")) as f:
        lines = f.read().split("\n")
    count = int(lines[0])
    for line in lines[1:1 + count]:
        i, D, T, layer, head = (int(x) for x in line.split())
        rd = lambda stem, hdr=False: read_words(os.path.join(sdir, "%s_%d.hex" % (stem, i)), hdr)  # noqa
        K, V, mask = rd("key", True), rd("val", True), rd("keymask")
        khat, vhat, wht = slice_surfaces(K, V, T, D, mask)
        diffs = [first_diff("keyhat", rd("keyhat"), khat), first_diff("valhat", rd("valhat"), vhat),
                 first_diff("vhatwht", rd("vhatwht"), wht)]
        diffs = [d for d in diffs if d]
        print("%s slice %d (layer %d head %d)%s" % ("FAIL" if diffs else "ok  ", i, layer, head,
                                                    ": " + diffs[0] if diffs else ""))
        bad += bool(diffs)
    print("reference validation: %d of %d reproduced" % (len(names) + count - bad, len(names) + count))
    return 1 if bad else 0


# ------------------------------------------------------------------ generator

SPECIALS = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0200, 0x0400, 0x8400,
            0x7BFF, 0xFBFF, 0x3C00, 0xBC00, 0x3800, 0x0155]


class Gen:
    """Deterministic source of fp16 inputs (Mersenne Twister seeded by an integer)."""

    def __init__(self, seed):
        self.r = random.Random(seed)

    def normal_f16(self, sigma=1.0):
        u = 1.0 - self.r.random()  # (0, 1]
        v = self.r.random()
        x = math.sqrt(-2.0 * math.log(u)) * math.cos(2.0 * math.pi * v) * sigma
        return f16_from_frac(Fraction(x))  # Fraction(float) is exact: one RNE

    def subnormal(self):
        h = self.r.randrange(1, 0x400)
        return h | (0x8000 if self.r.random() < 0.5 else 0)

    def special(self):
        return self.r.choice(SPECIALS)

    def element(self, p_special, sigma=1.0):
        u = self.r.random()
        if u < p_special * 0.4:
            return self.special()
        if u < p_special * 0.7:
            return self.subnormal()
        if u < p_special:
            return self.r.choice([0x0000, 0x8000])
        return self.normal_f16(sigma)

    def tie_scale(self, qmax, lo_exp=-14, hi_exp=6):
        """A scale s (few mantissa bits) such that qmax*s is an fp16 and scale_of(qmax*s) == s."""
        while True:
            e = self.r.randrange(lo_exp, hi_exp)
            m = self.r.choice([0, 0x100, 0x200, 0x300, 0x080, 0x040])
            s = ((e + 15) << 10) | m
            amax = f16_from_ratio(qmax * f16_units(s), 1 << UNIT_SHIFT)
            if f16_is_finite(amax) and f16_units(amax) == qmax * f16_units(s) \
                    and scale_of(amax, qmax) == s:
                return s, amax

    def tie_value(self, s, qmax):
        """x = (n + 1/2) * s exactly in fp16 with |n + 1/2| < qmax, or None."""
        n = self.r.randrange(-qmax, qmax)
        u = (2 * n + 1) * f16_units(s)
        if u % 2:
            return None
        h = f16_from_ratio(u // 2, 1 << UNIT_SHIFT)
        return h if f16_units(h) == u // 2 else None


def make_inputs(g, T, D, style, outliers=(), rot_safe=False):
    """K and V [T][D] fp16 bits for one case. style: set of features."""
    p_sp = 0.15 if "specials" in style else 0.0
    sig_v = 1.0
    K = [g.element(p_sp) for _ in range(T * D)]
    V = [g.element(p_sp, sig_v) for _ in range(T * D)]
    if rot_safe:  # CQ-3-rot: keep the D-term rotation sums inside the fp16 range
        V = [0x3C00 if (h & 0x7FFF) > 0x5000 and f16_is_finite(h) else h for h in V]
    for c in outliers:  # planted high-magnitude key channels
        for t in range(T):
            if K[t * D + c] not in (0x0000, 0x8000):
                K[t * D + c] = g.normal_f16(12.0 + 4.0 * g.r.random())
        if T:
            K[g.r.randrange(T) * D + c] = 0x8000  # -0.0 in an outlier channel
    if "extremes" in style:
        for _ in range(max(1, T * D // 50)):
            K[g.r.randrange(T * D)] = g.r.choice([0x7BFF, 0xFBFF])
            if not rot_safe:
                V[g.r.randrange(T * D)] = g.r.choice([0x7BFF, 0xFBFF])
    if "zero_token" in style and T > 1:
        t = g.r.randrange(T)
        for c in range(D):
            K[t * D + c] = g.r.choice([0x0000, 0x8000])
            V[t * D + c] = g.r.choice([0x0000, 0x8000])
    if "subnormal_token" in style and T > 2:
        t = g.r.randrange(T)
        for c in range(D):
            V[t * D + c] = g.subnormal()
    if "ties" in style:
        # values: per-token ties; the token's amax sets the scale exactly
        for t in range(T):
            s, amax = g.tie_scale(7 if "v4" in style else 127)
            row = [g.tie_value(s, 7 if "v4" in style else 127) for _ in range(D)]
            row = [h if h is not None else 0x0000 for h in row]
            row[g.r.randrange(D)] = amax | (0x8000 if g.r.random() < 0.5 else 0)
            V[t * D:(t + 1) * D] = row
    return K, V


def key_ties_grouped(g, K, T, D, G, kept):
    """Per (group, kept channel): one token holds 7*s, the others exact ties of s."""
    for t0 in range(0, T, G):
        n = min(G, T - t0)
        for c in kept:
            s, amax = g.tie_scale(7)
            for t in range(t0, t0 + n):
                h = g.tie_value(s, 7)
                K[t * D + c] = h if h is not None else 0x8000
            K[(t0 + g.r.randrange(n)) * D + c] = amax | (0x8000 if g.r.random() < 0.5 else 0)


def key_ties_token(g, K, T, D):
    for t in range(T):
        s, amax = g.tie_scale(127)
        row = [g.tie_value(s, 127) for _ in range(D)]
        row = [h if h is not None else 0x0000 for h in row]
        row[g.r.randrange(D)] = amax
        K[t * D:(t + 1) * D] = row


# (tier, D, T, G, outliers, style)
GOLDEN_CASES = [
    ("CQ8", 2, 1, 1, (), {"specials"}),
    ("CQ4", 2, 1, 128, (), {"specials"}),
    ("CQ4plus", 2, 3, 1, (1,), {"specials"}),            # k=1=D-1, D-k=1: padding every group
    ("CQ4plus", 2, 5, 2, (0,), {"specials", "extremes"}),
    ("CQ4", 32, 1, 128, (), {"specials"}),               # T=1, G>T
    ("CQ4plus", 32, 40, 16, tuple(range(1, 32)), {"specials"}),  # k=D-1
    ("CQ4plus", 32, 20, 8, (5,), {"specials", "zero_token", "zero_group"}),
    ("CQ8", 32, 9, 4, (), {"ties"}),
    ("CQ4", 32, 19, 8, (), {"ties", "v4", "key_ties"}),
    ("CQ4plus", 32, 21, 8, (0, 31), {"ties", "v4", "key_ties"}),
    ("CQ8", 96, 5, 8, (), {"specials", "extremes", "zero_token"}),
    ("CQ4", 96, 37, 16, (), {"specials", "subnormal_token"}),
    ("CQ4plus", 96, 130, 33, (0, 50, 95), {"specials", "extremes"}),  # D-k=93 odd, g=33 odd
    ("CQ4plus", 64, 200, 128, (3, 60), set()),
    ("CQ4plus", 64, 7, 1, (0, 63), {"specials", "zero_token"}),       # G=1
    ("CQ4plus", 256, 7, 3, (255,), {"specials"}),                     # D-k=255 odd, partial
    ("CQ4plus", 256, 5, 4, (0, 255), {"specials", "extremes"}),
    ("CQ8", 256, 4, 128, (), {"specials", "extremes"}),
    ("CQ4", 512, 3, 2, (), {"specials", "extremes"}),
    ("CQ8", 512, 2, 1, (), {"specials"}),
    ("CQ4plus", 512, 3, 2, (0, 7, 511), {"specials", "zero_token"}),
    ("CQ4", 128, 1, 1, (), {"specials"}),
]

# (D, T, outliers, style) for the replay slices (G = 128 fixed by section 8; D power of two)
SLICE_CASES = [
    (2, 1, (1,), {"specials"}),
    (2, 130, (), {"specials"}),
    (32, 300, (0, 31), {"specials", "zero_token", "subnormal_token"}),
    (32, 129, (7,), {"specials", "ties", "v4"}),
    (64, 80, (11, 40), set()),
    (64, 140, tuple(range(63)), {"specials", "extremes"}),
    (128, 131, (0, 127), {"specials", "zero_token"}),
    (256, 130, (1, 2, 200), {"specials"}),
    (512, 6, (0, 511), {"specials", "zero_token"}),
]


def gen_all(outdir, seed):
    g = Gen(seed)
    os.makedirs(outdir, exist_ok=False)
    for n, (tier, D, T, G, outl, style) in enumerate(GOLDEN_CASES):
        K, V = make_inputs(g, T, D, style, outl)
        mask = [0] * D
        if tier == "CQ4plus":
            for c in outl:
                mask[c] = 1
        kept = [c for c in range(D) if not mask[c]]
        if "key_ties" in style:
            key_ties_grouped(g, K, T, D, G, kept)
        elif "ties" in style and tier == "CQ8":
            key_ties_token(g, K, T, D)
        if "zero_group" in style and tier != "CQ8":
            c = kept[g.r.randrange(len(kept))]
            t0 = (g.r.randrange((T + G - 1) // G)) * G
            for t in range(t0, min(T, t0 + G)):
                K[t * D + c] = g.r.choice([0x0000, 0x8000])
        sub = os.path.join(outdir, "golden", "%02d" % n)
        os.makedirs(sub)
        print(write_golden(sub, tier, D, T, G, K, V, mask))
    slices = []
    for n, (D, T, outl, style) in enumerate(SLICE_CASES):
        while True:  # redraw the rare value rows whose fp16 rotation overflows
            K, V = make_inputs(g, T, D, style, outl, rot_safe=True)
            try:
                cq3rot_roundtrip(V, T, D)
                break
            except Overflow:
                continue
        mask = [1 if c in outl else 0 for c in range(D)]
        slices.append((D, T, n, len(outl), K, V, mask))
    write_slices(os.path.join(outdir, "slices"), slices)
    print(os.path.join(outdir, "slices"))
    print("coverage: " + " ".join("%s=%d" % kv for kv in sorted(COVER.items())), file=sys.stderr)
    missing = [k for k, v in COVER.items() if v == 0]
    if missing:
        print("gen: edge cases never exercised: %s" % " ".join(missing), file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- self tests


def selftest():
    """The exact helpers against Fraction-only definitions (cheap, run first)."""
    bad = 0
    # every fp16 pattern: value -> bits round trip
    for h in range(0x10000):
        if not f16_is_finite(h):
            continue
        back = f16_from_ratio(f16_units(h), 1 << UNIT_SHIFT, f16_is_neg_zero(h))
        bad += back != h
    # midpoints between adjacent positive fp16 values round to the even one
    for h in range(0, 0x7BFF):
        mid = f16_units(h) + f16_units(h + 1)  # 2 * midpoint in units
        r = f16_from_ratio(mid, 2 << UNIT_SHIFT)
        bad += r != (h if h % 2 == 0 else h + 1)
    # the overflow threshold: 65520 rounds to Inf, just below stays 65504
    bad += f16_from_ratio(65520, 1) != 0x7C00
    bad += f16_from_frac(Fraction(65520) - Fraction(1, 1 << 20)) != 0x7BFF
    # round() on a Fraction is half-to-even
    bad += [round(Fraction(k, 2)) for k in range(-5, 6)] != [-2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2]
    for n in range(-40, 41):
        for d in range(1, 9):
            bad += rne_div(n, d) != round(Fraction(n, d))
    bad += f16_widen_f32(0x8000) != 0x80000000 or f16_widen_f32(0x0001) != 0x33800000
    bad += f16_widen_f32(0x7BFF) != 0x477FE000
    print("selftest: %s" % ("ok" if not bad else "%d failures" % bad))
    return 1 if bad else 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    v = sub.add_parser("validate", help="reproduce the shipped vectors and slices")
    v.add_argument("vectors_dir", help="the shared vectors directory (../shared/vectors)")
    gp = sub.add_parser("gen", help="write new vectors and slices")
    gp.add_argument("outdir")
    gp.add_argument("--seed", type=int, default=20261123)
    sub.add_parser("selftest", help="check the exact helpers")
    a = ap.parse_args(argv)
    if a.mode == "selftest":
        return selftest()
    if a.mode == "validate":
        return validate(a.vectors_dir)
    return gen_all(a.outdir, a.seed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
