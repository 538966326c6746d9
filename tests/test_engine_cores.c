/* SPDX-License-Identifier: MIT */
/*
 * test_engine_cores.c - proves the KVCE integer cores (engine_cores.c) bit for
 * bit against the codec core, which is the contract:
 *   - scale core: every finite fp16 amax (both sign bits), qmax 7 and 127;
 *   - quantize core: CQ_ENGINE_QPAIRS random (value, scale) pairs (default one
 *     million; the environment knob exists for slow sanitizer runs), every
 *     finite x for a set of scales, every rounding tie n + 1/2 that fp16 can
 *     represent (qmax 7: all scales; qmax 127: every 7th scale), clamps at both
 *     ends; and the core always takes 24 cycles;
 *   - dequantize core: every code -128..127 x every finite positive fp16 field
 *     (a zero field gives +0.0 where code * 0.0 would be -0.0 for code < 0),
 *     plus raw negative fields (the v0.2 outlier lane: identical except -0.0,
 *     which the v0.2 datapath returns as +0.0, ENGINE.md gap 8);
 *   - widening core (v0.3 outlier lane): every finite fp16, -0.0 included.
 */
#include <stdint.h>
#include <stdlib.h>

#include "channelquant.h"
#include "cq_engine.h"
#include "cq_test.h"

static void test_scale(void) {
    static const int qmaxes[] = {7, 127};
    for (int qi = 0; qi < 2; qi++) {
        long bad = 0, n = 0;
        for (uint32_t h = 0; h < 0x10000u; h++) {
            if (!cq_f16_is_finite((uint16_t)h)) continue;
            uint16_t want = cq_scale_from_amax((uint16_t)h, qmaxes[qi]);
            uint16_t got = cq_eng_scale_core((uint16_t)h, qmaxes[qi]);
            n++;
            if (want != got && bad++ < 5)
                fprintf(stderr, "scale amax %04x qmax %d: codec %04x core %04x\n", h, qmaxes[qi],
                        want, got);
        }
        CHECK(bad == 0, "scale core qmax %d: %ld of %ld differ", qmaxes[qi], bad, n);
        CHECK(n == 2 * 31744, "finite amax count %ld", n);
    }
}

static long q_bad, q_n, q_cyc_bad;
static void q_check(uint16_t x, uint16_t s, int qmax) {
    int cyc = 0;
    int got = cq_eng_quantize_core(x, s, qmax, &cyc);
    int want = cq_quantize(x, s, qmax);
    q_n++;
    if (cyc != CQ_ENG_QCORE_CYCLES) q_cyc_bad++;
    if (got != want && q_bad++ < 5)
        fprintf(stderr, "quantize x %04x s %04x qmax %d: codec %d core %d\n", x, s, qmax, want,
                got);
}

static uint16_t rand_finite(cq_rng *r) {
    for (;;) {
        uint16_t h = (uint16_t)cq_rng_u64(r);
        if (cq_f16_is_finite(h)) return h;
    }
}

static void test_quantize(void) {
    long pairs = 1000000;
    const char *env = getenv("CQ_ENGINE_QPAIRS");
    if (env && *env) pairs = strtol(env, NULL, 10);
    cq_rng r;
    cq_rng_seed(&r, 0x5EED);
    q_bad = q_n = q_cyc_bad = 0;
    for (long i = 0; i < pairs; i++) {
        uint16_t x = rand_finite(&r);
        uint16_t s = (uint16_t)(0x0400u + cq_rng_below(&r, 0x7C00u - 0x0400u));
        /* half the pairs near the interesting range: |x|/s up to about 2^8 */
        if (i & 1) {
            int sh = (int)cq_rng_below(&r, 9);
            uint32_t e = ((s >> 10) & 0x1Fu) + (uint32_t)sh;
            if (e >= 2u && e < 31u)
                x = (uint16_t)((x & 0x83FFu) | ((e - (uint32_t)cq_rng_below(&r, 3)) << 10));
        }
        q_check(x, s, (i & 2) ? 127 : 7);
    }
    CHECK(q_bad == 0, "quantize core random: %ld of %ld differ", q_bad, q_n);
    long rnd_n = q_n;

    /* every finite x for a few scales (covers ties, clamps, subnormal x) */
    static const uint16_t scales[] = {0x0400, 0x0401, 0x2E66, 0x3555, 0x3C00, 0x3C01,
                                      0x4B00, 0x5BFF, 0x7BFF};
    q_bad = 0;
    for (size_t si = 0; si < sizeof scales / sizeof scales[0]; si++)
        for (uint32_t h = 0; h < 0x10000u; h++)
            if (cq_f16_is_finite((uint16_t)h)) {
                q_check((uint16_t)h, scales[si], 7);
                q_check((uint16_t)h, scales[si], 127);
            }
    CHECK(q_bad == 0, "quantize core exhaustive x: %ld differ", q_bad);

    /* rounding ties x = (n + 1/2) * s, and the clamp boundary, both signs */
    q_bad = 0;
    long ties = 0;
    for (int qi = 0; qi < 2; qi++) {
        int qmax = qi ? 127 : 7;
        for (uint32_t s = 0x0400u; s < 0x7C00u; s += qi ? 7u : 1u) {
            double sv = cq_f16_to_f32((uint16_t)s);
            for (int n = 0; n <= qmax + 2; n++) {
                double xv = (n + 0.5) * sv;
                uint16_t xh = cq_f64_to_f16(xv);
                if (!cq_f16_is_finite(xh) || cq_f16_to_f32(xh) != xv) continue;
                ties++;
                q_check(xh, (uint16_t)s, qmax);
                q_check((uint16_t)(xh | 0x8000u), (uint16_t)s, qmax);
            }
        }
    }
    CHECK(q_bad == 0, "quantize core ties/clamps: %ld differ", q_bad);
    CHECK(ties > 50000, "only %ld representable ties tested", ties);
    q_check(0x7BFF, 0x0400, 7);
    q_check(0xFBFF, 0x0400, 127);
    q_check(0x8000, 0x3C00, 7);
    CHECK(q_bad == 0, "quantize core extremes");
    CHECK(q_cyc_bad == 0, "quantize core: %ld runs not %d cycles", q_cyc_bad, CQ_ENG_QCORE_CYCLES);
    printf("quantize core: %ld random pairs, %ld total checks, %ld ties\n", rnd_n, q_n, ties);
}

static void test_dequant(void) {
    long bad = 0, n = 0;
    for (int code = -128; code <= 127; code++)
        for (uint32_t s = 1; s < 0x7C00u; s++) { /* a zero field: see below */
            uint32_t want = cq_f32_bits(cq_dequantize(code, (uint16_t)s));
            uint32_t got = cq_eng_dequant_core(code, (uint16_t)s);
            n++;
            if (want != got && bad++ < 5)
                fprintf(stderr, "dequant code %d s %04x: codec %08x core %08x\n", code, s, want,
                        got);
        }
    CHECK(bad == 0, "dequant core: %ld of %ld differ", bad, n);
    /* a zero field never is a scale (scales are >= 2^-14); the datapath gives +0.0 */
    for (int code = -128; code <= 127; code++)
        if (cq_eng_dequant_core(code, 0) != 0u) bad++;
    CHECK(bad == 0, "dequant core: zero field must give +0.0");
    /* v0.2 outlier lane: code +1 x raw key (any sign) */
    long bad_other = 0, negzero = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if (!cq_f16_is_finite((uint16_t)h)) continue;
        uint32_t want = cq_f32_bits(cq_f16_to_f32((uint16_t)h));
        uint32_t got = cq_eng_dequant_core(1, (uint16_t)h);
        if (h == 0x8000u) negzero = (got == 0u && want == 0x80000000u);
        else if (want != got) bad_other++;
    }
    CHECK(bad_other == 0, "v0.2 outlier lane: %ld values differ besides -0.0", bad_other);
    CHECK(negzero, "v0.2 outlier lane must turn -0.0 into +0.0 (gap 8)");
    long wbad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if (!cq_f16_is_finite((uint16_t)h)) continue;
        if (cq_eng_widen_core((uint16_t)h) != cq_f32_bits(cq_f16_to_f32((uint16_t)h))) wbad++;
    }
    CHECK(wbad == 0, "widen core: %ld differ", wbad);
}

int main(void) {
    test_scale();
    test_quantize();
    test_dequant();
    return cq_test_done("test_engine_cores");
}
