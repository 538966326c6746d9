/* SPDX-License-Identifier: MIT */
/*
 * test_fp16.c - the fp16 conversions of src/core/fp16.c against independent
 * references: widening over all 65,536 patterns (exact value, -0.0, NaN
 * quieted), narrowing from fp32 and fp64 over every rounding boundary
 * (each value, each midpoint between neighbours, the next representable
 * numbers either side, the subnormal range, the overflow threshold 65520) and
 * a large random set, against a long-double neighbour search; and, where the
 * CPU has F16C, against the hardware conversions.
 */
#include <float.h>
#include <math.h>

#include "cq_fp16.h"
#include "cq_test.h"
#include "cq_util.h"
#include "util/cq_exact.h"

static int is_nan16(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF); }

/* Narrowing reference for a non-NaN input. */
static uint16_t want16(long double x) { return cq_ref_f16_from_ld(x); }

static void test_widen_all(void) {
    long bad_value = 0, bad_nan = 0, bad_round = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = cq_f16_to_f32((uint16_t)h);
        uint32_t u = cq_f32_bits(f);
        if ((h & 0x7C00) == 0x7C00) {
            if (h & 0x3FF) {
                /* NaN: fp32 NaN, same sign, quiet bit set, payload kept in the top bits */
                uint32_t want = ((h & 0x8000u) << 16) | 0x7FC00000u | ((h & 0x3FFu) << 13);
                bad_nan += u != want;
                uint16_t back = cq_f32_to_f16(f);
                bad_nan += !is_nan16(back) || !(back & 0x0200) || (back & 0x8000) != (h & 0x8000) ||
                           (back & 0x1FF) != (h & 0x1FF);
            } else {
                bad_value += u != (((h & 0x8000u) << 16) | 0x7F800000u);
                bad_round += cq_f32_to_f16(f) != h;
            }
            continue;
        }
        /* exact value: integer units of 2^-24 */
        int exact;
        uint32_t want = cq_ref_f32_bits(cq_ref_f16_units((uint16_t)h), 24, &exact);
        if (h == 0x8000) want = 0x80000000u; /* -0.0 stays -0.0 */
        bad_value += !exact || u != want;
        bad_round += cq_f32_to_f16(f) != h || cq_f64_to_f16((double)f) != h;
    }
    CHECK(bad_value == 0, "%ld fp16->fp32 values differ from the exact value", bad_value);
    CHECK(bad_nan == 0, "%ld NaN patterns not widened/narrowed as quiet NaNs", bad_nan);
    CHECK(bad_round == 0, "%ld patterns do not survive fp16->fp32->fp16", bad_round);
    /* the bulk helpers agree with the scalar ones */
    uint16_t src[1024], back[1024];
    float mid[1024];
    for (int i = 0; i < 1024; i++) src[i] = (uint16_t)(i * 64 + 7);
    cq_f16_to_f32_n(src, mid, 1024);
    cq_f32_to_f16_n(mid, back, 1024);
    long bulk = 0;
    for (int i = 0; i < 1024; i++)
        bulk += cq_f32_bits(mid[i]) != cq_f32_bits(cq_f16_to_f32(src[i])) ||
                (!is_nan16(src[i]) && back[i] != src[i]);
    CHECK(bulk == 0, "%ld bulk conversions differ", bulk);
}

/* Check f32 and f64 narrowing at x (any non-NaN). Returns mismatches. */
static long check_narrow_f32(float x) {
    return cq_f32_to_f16(x) != want16((long double)x);
}
static long check_narrow_f64(double x) {
    return cq_f64_to_f16(x) != want16((long double)x);
}

static void test_boundaries(void) {
    long bad32 = 0, bad64 = 0, n = 0;
    for (uint32_t h = 0; h <= 0x7BFF; h++) {
        for (int sgn = 0; sgn < 2; sgn++) {
            long double s = sgn ? -1.0L : 1.0L;
            long double v = ldexpl((long double)cq_ref_f16_units((uint16_t)h), -24);
            long double next = h == 0x7BFF ? 65536.0L : ldexpl((long double)cq_ref_f16_units((uint16_t)(h + 1)), -24);
            long double mid = (v + next) / 2; /* exact: 12 significant bits */
            /* fp32: the value, the midpoint and their float neighbours */
            float fv = (float)(s * v), fm = (float)(s * mid);
            float f32s[] = {fv, nextafterf(fv, INFINITY), nextafterf(fv, -INFINITY), fm,
                            nextafterf(fm, INFINITY), nextafterf(fm, -INFINITY)};
            for (size_t i = 0; i < sizeof f32s / sizeof f32s[0]; i++, n++) bad32 += check_narrow_f32(f32s[i]);
            /* fp64: the same, with double neighbours (the double-rounding traps) */
            double dv = (double)(s * v), dm = (double)(s * mid);
            double f64s[] = {dv, nextafter(dv, INFINITY), nextafter(dv, -INFINITY), dm,
                             nextafter(dm, INFINITY), nextafter(dm, -INFINITY),
                             dm + (double)s * ldexp(1.0, -60), dm - (double)s * ldexp(1.0, -60),
                             dm + (double)s * (double)(next - v) / 4096.0 / 8192.0};
            for (size_t i = 0; i < sizeof f64s / sizeof f64s[0]; i++) bad64 += check_narrow_f64(f64s[i]);
        }
    }
    CHECK(bad32 == 0, "%ld of %ld fp32 boundary conversions wrong", bad32, n);
    CHECK(bad64 == 0, "%ld fp64 boundary conversions wrong", bad64);
    /* named cases */
    CHECK(cq_f32_to_f16(65520.0f) == 0x7C00, "65520 must overflow to Inf");
    CHECK(cq_f32_to_f16(nextafterf(65520.0f, 0)) == 0x7BFF, "just below 65520 is 65504");
    CHECK(cq_f64_to_f16(65520.0) == 0x7C00 && cq_f64_to_f16(nextafter(65520.0, 0)) == 0x7BFF,
          "f64 overflow threshold");
    CHECK(cq_f32_to_f16(-65520.0f) == 0xFC00, "-65520 must overflow to -Inf");
    CHECK(cq_f32_to_f16(INFINITY) == 0x7C00 && cq_f32_to_f16(-INFINITY) == 0xFC00, "Inf");
    CHECK(cq_f64_to_f16(INFINITY) == 0x7C00 && cq_f64_to_f16(-INFINITY) == 0xFC00, "Inf f64");
    CHECK(cq_f32_to_f16(ldexpf(1, -25)) == 0x0000, "2^-25 ties to even zero");
    CHECK(cq_f32_to_f16(nextafterf(ldexpf(1, -25), 1)) == 0x0001, "just above 2^-25 is 2^-24");
    CHECK(cq_f32_to_f16(ldexpf(3, -25)) == 0x0002, "3*2^-25 ties to even 2^-23");
    CHECK(cq_f32_to_f16(-0.0f) == 0x8000 && cq_f64_to_f16(-0.0) == 0x8000, "-0.0 kept");
    CHECK(cq_f32_to_f16(FLT_TRUE_MIN) == 0 && cq_f64_to_f16(DBL_TRUE_MIN) == 0, "tiny -> 0");
    CHECK(cq_f32_to_f16(-FLT_TRUE_MIN) == 0x8000 && cq_f64_to_f16(-DBL_TRUE_MIN) == 0x8000,
          "tiny negative -> -0");
    CHECK(cq_f32_to_f16(FLT_MAX) == 0x7C00 && cq_f64_to_f16(DBL_MAX) == 0x7C00, "huge -> Inf");
    CHECK(cq_f64_to_f16(1.0 + ldexp(1.0, -11) + ldexp(1.0, -40)) == 0x3C01,
          "f64 just above a midpoint rounds up (no double rounding through fp32)");
    CHECK(cq_f64_to_f16(ldexp(1.0, -14) - ldexp(1.0, -25)) == 0x0400,
          "largest-subnormal midpoint rounds up into the normal range");
    /* NaN narrowing: any NaN gives a quiet fp16 NaN with its sign */
    CHECK(is_nan16(cq_f32_to_f16(NAN)) && (cq_f32_to_f16(NAN) & 0x0200), "f32 NaN");
    CHECK(cq_f32_to_f16(cq_f32_from_bits(0x7F800001u)) == 0x7E00, "f32 sNaN quieted");
    CHECK(cq_f32_to_f16(cq_f32_from_bits(0xFF800001u)) == 0xFE00, "negative sNaN keeps its sign");
    CHECK(is_nan16(cq_f64_to_f16(NAN)) && (cq_f64_to_f16(NAN) & 0x0200), "f64 NaN");
}

static void test_random(void) {
    cq_rng r;
    cq_rng_seed(&r, 0xF16F16ull);
    long bad32 = 0, bad64 = 0;
    const long N = 2000000;
    for (long i = 0; i < N; i++) {
        /* half of the draws land in or near the fp16 range, the rest anywhere */
        uint32_t u = (uint32_t)cq_rng_u64(&r);
        if (i & 1) u = (u & 0x80FFFFFFu) | ((uint32_t)(0x66 + cq_rng_below(&r, 0x90 - 0x66)) << 23);
        float f = cq_f32_from_bits(u);
        if (!isnan(f)) bad32 += check_narrow_f32(f);
        else bad32 += !is_nan16(cq_f32_to_f16(f));
        uint64_t w = cq_rng_u64(&r);
        if (i & 1) w = (w & 0x800FFFFFFFFFFFFFull) | ((uint64_t)(0x3E0 + cq_rng_below(&r, 0x410 - 0x3E0)) << 52);
        double d;
        memcpy(&d, &w, sizeof d);
        if (!isnan(d)) bad64 += check_narrow_f64(d);
        else bad64 += !is_nan16(cq_f64_to_f16(d));
    }
    CHECK(bad32 == 0, "%ld of %ld random fp32 narrowings wrong", bad32, N);
    CHECK(bad64 == 0, "%ld of %ld random fp64 narrowings wrong", bad64, N);
}

/* Cross-check with the CPU's own F16C conversions when present (an independent oracle). */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(CQ_NO_SIMD)
#include <immintrin.h>
__attribute__((target("f16c"))) static float hw_widen(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) static uint16_t hw_narrow(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static void test_hardware(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx")) { /* F16C needs the AVX state; f16c itself is not queryable everywhere */
        printf("test_fp16: no AVX/F16C, hardware cross-check skipped\n");
        return;
    }
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    if (!(c & (1u << 29))) {
        printf("test_fp16: no F16C, hardware cross-check skipped\n");
        return;
    }
    long bad_w = 0, bad_n = 0;
    for (uint32_t h = 0; h < 0x10000; h++)
        bad_w += cq_f32_bits(cq_f16_to_f32((uint16_t)h)) != cq_f32_bits(hw_widen((uint16_t)h));
    cq_rng r;
    cq_rng_seed(&r, 0x16Cull);
    for (long i = 0; i < 1000000; i++) {
        uint32_t u = (uint32_t)cq_rng_u64(&r);
        if (i & 1) u = (u & 0x80FFFFFFu) | ((uint32_t)(0x66 + cq_rng_below(&r, 0x90 - 0x66)) << 23);
        float f = cq_f32_from_bits(u);
        bad_n += cq_f32_to_f16(f) != hw_narrow(f);
    }
    CHECK(bad_w == 0, "%ld of 65536 widenings differ from F16C vcvtph2ps", bad_w);
    CHECK(bad_n == 0, "%ld of 1e6 narrowings differ from F16C vcvtps2ph", bad_n);
}
#else
static void test_hardware(void) {}
#endif

int main(void) {
    test_widen_all();
    test_boundaries();
    test_random();
    test_hardware();
    return cq_test_done("test_fp16");
}
