/* SPDX-License-Identifier: MIT */
/*
 * fp16.c - exact IEEE binary16 <-> binary32/binary64 conversions (scalar).
 * Round to nearest, ties to even; overflow to +-Inf; NaN payload kept, always
 * quiet (widening a signalling fp16 NaN sets the fp32 quiet bit, as F16C does).
 * The f64 path rounds once (needed for the CQ-3-rot butterflies, whose exact
 * sums fit in a double but not always in a float).
 */
#include "cq_fp16.h"

float cq_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    if (exp == 0x1F) {
        /* Inf, or NaN quieted as an IEEE conversion (and F16C vcvtph2ps) does:
         * a signalling fp16 NaN must not become a signalling fp32 NaN */
        uint32_t quiet = man ? 0x00400000u : 0;
        return cq_f32_from_bits(sign | 0x7F800000u | quiet | (man << 13));
    }
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in fp32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return cq_f32_from_bits(cq_f32_bits(v) | sign);
    }
    return cq_f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Round m (with `shift` low bits to drop) to nearest even. shift in [1, 63]. */
static uint64_t rne_shift(uint64_t m, unsigned shift) {
    uint64_t q = m >> shift;
    uint64_t rem = m & ((1ull << shift) - 1);
    uint64_t half = 1ull << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

uint16_t cq_f32_to_f16(float f) {
    uint32_t x = cq_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu)); /* NaN */
    if (ax >= 0x47800000u) return (uint16_t)(sign | 0x7C00u); /* >= 65536 (and Inf) */
    if (ax >= 0x38800000u) {                                   /* normal fp16 range */
        /* exponent rebias by subtracting (127-15)<<23, then RNE on 13 bits;
         * a mantissa carry correctly bumps the exponent (up to Inf). */
        return (uint16_t)(sign | rne_shift(ax - 0x38000000u, 13));
    }
    if (ax < 0x33000000u) return sign; /* < 2^-25: rounds to zero (2^-25 ties to 0) */
    uint32_t e = ax >> 23;
    uint64_t m = (ax & 0x7FFFFFu) | 0x800000u;
    /* value = m * 2^(e-150); in units of 2^-24: m >> (126 - e) */
    return (uint16_t)(sign | rne_shift(m, 126u - e));
}

uint16_t cq_f64_to_f16(double d) {
    union { double d; uint64_t u; } v;
    v.d = d;
    uint64_t x = v.u;
    uint16_t sign = (uint16_t)((x >> 48) & 0x8000u);
    uint64_t ax = x & 0x7FFFFFFFFFFFFFFFull;
    if (ax > 0x7FF0000000000000ull) return (uint16_t)(sign | 0x7E00u | ((ax >> 42) & 0x3FFu));
    if (ax >= 0x40F0000000000000ull) return (uint16_t)(sign | 0x7C00u); /* >= 65536 */
    if (ax >= 0x3F10000000000000ull) {                                   /* >= 2^-14 */
        return (uint16_t)(sign | rne_shift(ax - 0x3F00000000000000ull, 42));
    }
    uint64_t e = ax >> 52;
    if (e < 998) return sign; /* < 2^-25 */
    uint64_t m = (ax & 0xFFFFFFFFFFFFFull) | 0x10000000000000ull;
    /* value = m * 2^(e-1075); in units of 2^-24: m >> (1051 - e), shift in [43, 53] */
    return (uint16_t)(sign | rne_shift(m, (unsigned)(1051 - e)));
}

void cq_f16_to_f32_n(const uint16_t *src, float *dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) dst[i] = cq_f16_to_f32(src[i]);
}

void cq_f32_to_f16_n(const float *src, uint16_t *dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) dst[i] = cq_f32_to_f16(src[i]);
}
