/* SPDX-License-Identifier: MIT */
/*
 * test_quant.c - the contract's arithmetic primitives (src/core/quant.c)
 * against exact integer references (tests/util/cq_exact.c):
 *   - the scale over every finite fp16 amax (31,744, both signs) for qmax 3,
 *     7 and 127, proving the fp32 shortcut of CONTRACT.md section 3;
 *   - cq_quantize over 2e6 random (x, scale) pairs, every exact rounding tie
 *     (n + 1/2) * scale for every scale, and every x for a few scales;
 *   - the clamp (AFTER rounding), and that a zero code is the integer 0;
 *   - dequantize exactness for every code and every scale;
 *   - amax as an integer compare of h & 0x7FFF.
 */
#include <math.h>

#include "cq_codec.h"
#include "cq_test.h"
#include "cq_util.h"
#include "util/cq_exact.h"

static const int qmaxes[] = {3, 7, 127};

static void test_scale_exhaustive(void) {
    for (size_t q = 0; q < 3; q++) {
        int qmax = qmaxes[q];
        long bad = 0, floor_hits = 0, n = 0;
        for (uint32_t a = 0; a <= 0x7BFF; a++) {
            uint16_t want = cq_ref_scale((uint16_t)a, qmax);
            uint16_t got = cq_scale_from_amax((uint16_t)a, qmax);
            uint16_t got_neg = cq_scale_from_amax((uint16_t)(a | 0x8000), qmax); /* sign ignored */
            bad += got != want || got_neg != want;
            bad += got < 0x0400 || got > 0x7BFF; /* never subnormal, never overflows */
            floor_hits += want == 0x0400;
            n++;
        }
        CHECK(bad == 0, "qmax %d: %ld of %ld scales differ from the exact reference", qmax, bad, n);
        CHECK(floor_hits > 1000, "qmax %d: the 2^-14 floor was exercised %ld times", qmax, floor_hits);
    }
    CHECK(cq_scale_from_amax(0, 7) == 0x0400, "all-zero axis gets 0x0400");
    CHECK(cq_scale_from_amax(0x8000, 127) == 0x0400, "-0.0 amax gets 0x0400");
    CHECK(cq_scale_from_amax(0x4700, 7) == 0x3C00, "amax 7 -> scale 1.0");
    CHECK(cq_scale_from_amax(0x7BFF, 7) == cq_ref_scale(0x7BFF, 7), "65504/7");
}

static void test_quantize_random(void) {
    cq_rng r;
    cq_rng_seed(&r, 0x9A17ull);
    long bad = 0;
    const long N = 2000000;
    for (long i = 0; i < N; i++) {
        uint16_t x = (uint16_t)cq_rng_u64(&r);
        if (!cq_f16_is_finite(x)) x &= 0xBBFF;
        uint16_t s = (uint16_t)(0x0400 + cq_rng_below(&r, 0x7C00 - 0x0400));
        /* half of the pairs: x near the scale, where codes are not all clamped */
        if (i & 1) {
            int32_t e = (int32_t)((s >> 10) & 0x1F) + (int32_t)cq_rng_below(&r, 9) - 1;
            if (e < 0) e = 0;
            if (e > 30) e = 30;
            x = (uint16_t)((x & 0x83FF) | ((uint32_t)e << 10));
        }
        int qmax = qmaxes[i % 3];
        bad += cq_quantize(x, s, qmax) != cq_ref_quantize(x, s, qmax);
    }
    CHECK(bad == 0, "%ld of %ld random quantizations differ from exact rounding", bad, N);
}

static void test_quantize_ties(void) {
    /* every exact tie x = (n + 1/2) * s, for every scale and n in [-qmax-1, qmax] */
    long bad = 0, ties = 0, odd_even = 0;
    for (size_t q = 0; q < 3; q++) {
        int qmax = qmaxes[q];
        for (uint32_t s = 0x0400; s <= 0x7BFF; s++) {
            int64_t S = cq_ref_f16_units((uint16_t)s);
            for (int n = -qmax - 2; n <= qmax + 1; n++) {
                int64_t twice = (2 * (int64_t)n + 1) * S; /* 2x in units */
                if (twice & 1) continue;
                long double xv = ldexpl((long double)(twice / 2), -24);
                uint16_t x = cq_ref_f16_from_ld(xv);
                if (!cq_f16_is_finite(x) || cq_ref_f16_units(x) != twice / 2) continue; /* not an fp16 */
                int got = cq_quantize(x, (uint16_t)s, qmax);
                int want = cq_ref_quantize(x, (uint16_t)s, qmax);
                /* half to even, then clamp: n + 1/2 goes to whichever of n, n+1 is even */
                int even = (n % 2 == 0) ? n : n + 1;
                if (even > qmax) even = qmax;
                if (even < -qmax - 1) even = -qmax - 1;
                bad += got != want || got != even;
                odd_even += (n & 1) != 0;
                ties++;
            }
        }
    }
    CHECK(ties > 400000, "only %ld ties exercised", ties);
    CHECK(odd_even > 100000, "ties with an odd floor exercised %ld times", odd_even);
    CHECK(bad == 0, "%ld of %ld exact ties not rounded half to even", bad, ties);
    /* named ties at scale 1.0 */
    CHECK(cq_quantize(0x3800, 0x3C00, 7) == 0, "0.5 -> 0");
    CHECK(cq_quantize(0x3E00, 0x3C00, 7) == 2, "1.5 -> 2");
    CHECK(cq_quantize(0x4100, 0x3C00, 7) == 2, "2.5 -> 2");
    CHECK(cq_quantize(0xC100, 0x3C00, 7) == -2, "-2.5 -> -2");
    CHECK(cq_quantize(0xC300, 0x3C00, 7) == -4, "-3.5 -> -4");
    CHECK(cq_quantize(0x4780, 0x3C00, 7) == 7, "7.5 -> 8 -> clamped to 7 (clamp after rounding)");
    CHECK(cq_quantize(0xC780, 0x3C00, 7) == -8, "-7.5 -> -8 (in range)");
    CHECK(cq_quantize(0xC880, 0x3C00, 7) == -8, "-8.5 -> -8 -> clamp -8");
    CHECK(cq_quantize(0xC400, 0x3C00, 3) == -4 && cq_quantize(0x4400, 0x3C00, 3) == 3, "INT3 clamp");
}

static void test_quantize_all_x(void) {
    /* every finite x for a few scales, including the floor and the largest */
    static const uint16_t scales[] = {0x0400, 0x0401, 0x1000, 0x2E66, 0x3C00, 0x3C01, 0x5A5A, 0x7BFF};
    long bad = 0, negzero = 0;
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++)
        for (uint32_t x = 0; x < 0x10000; x++) {
            if (!cq_f16_is_finite((uint16_t)x)) continue;
            for (size_t q = 0; q < 3; q++) {
                int got = cq_quantize((uint16_t)x, scales[i], qmaxes[q]);
                bad += got != cq_ref_quantize((uint16_t)x, scales[i], qmaxes[q]);
                /* a zero code dequantizes to +0.0, even for negative x */
                if (got == 0) negzero += cq_f32_bits(cq_dequantize(got, scales[i])) != 0;
            }
        }
    CHECK(bad == 0, "%ld exhaustive-x quantizations differ", bad);
    CHECK(negzero == 0, "%ld zero codes dequantized to something other than +0.0", negzero);
    CHECK(cq_quantize(0x8000, 0x3C00, 7) == 0 && cq_quantize(0xB4CD, 0x3C00, 7) == 0,
          "-0.0 and -0.3 quantize to the integer 0");
}

static void test_dequantize(void) {
    long bad = 0;
    for (int code = -128; code <= 127; code++)
        for (uint32_t s = 0x0400; s <= 0x7BFF; s++) {
            int exact;
            uint32_t want = cq_ref_f32_bits((int64_t)code * cq_ref_f16_units((uint16_t)s), 24, &exact);
            bad += !exact || cq_f32_bits(cq_dequantize(code, (uint16_t)s)) != want;
        }
    CHECK(bad == 0, "%ld dequantized products are not the exact product", bad);
}

static void test_amax(void) {
    uint16_t x[8] = {0x3C00, 0xBC01, 0x8000, 0x0001, 0x7BFF, 0xFBFF, 0x0000, 0x4000};
    CHECK(cq_amax_f16(x, 4, 1) == 0x3C01, "amax ignores the sign bit");
    CHECK(cq_amax_f16(x, 8, 1) == 0x7BFF, "amax of +-65504");
    CHECK(cq_amax_f16(x + 2, 2, 1) == 0x0001, "subnormal amax");
    CHECK(cq_amax_f16(x + 2, 1, 1) == 0, "-0.0 has magnitude 0");
    CHECK(cq_amax_f16(x, 2, 2) == 0x3C00, "strided: x[0], x[2]");
    CHECK(cq_amax_f16(x + 1, 3, 2) == 0x7BFF, "strided: x[1], x[3], x[5] (-65504)");
}

int main(void) {
    test_scale_exhaustive();
    test_quantize_random();
    test_quantize_ties();
    test_quantize_all_x();
    test_dequantize();
    test_amax();
    return cq_test_done("test_quant");
}
