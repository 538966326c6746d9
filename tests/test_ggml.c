/* SPDX-License-Identifier: MIT */
/*
 * test_ggml.c - the ggml cache types (q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl)
 * and q4_0_rot: hand-computed bytes of at least one block per type (the
 * arithmetic is in the comments, not in an encoder), round trips within each
 * method's error bound on random data, packed sizes, the normalized Hadamard
 * transform, and the properties every codec shares (baseline_rt.h).
 */
#include "baseline_rt.h"

static const cq_codec_traits *get(const char *name) {
    const cq_codec_traits *c = cq_codec_find(name);
    CHECK(c != NULL, "codec %s not registered", name);
    return c;
}

static uint16_t h(double v) { return cq_f64_to_f16(v); }

/* Encode one token of 32 values (D = 32) and compare with the expected bytes. */
static void expect_block(const char *name, const double *vals, const uint8_t *want, size_t nb) {
    const cq_codec_traits *c = get(name);
    if (!c) return;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 32);
    uint16_t x[32];
    for (int j = 0; j < 32; j++) x[j] = h(vals[j]);
    CHECK(c->packed_bytes(&cfg, CQ_ROLE_KEY, 1) == nb, "%s: block size %zu, want %zu", name,
          c->packed_bytes(&cfg, CQ_ROLE_KEY, 1), nb);
    uint8_t got[64] = {0};
    cq_err e;
    cq_status st = c->encode(&cfg, CQ_ROLE_KEY, x, 1, got, sizeof got, &e);
    CHECK(st == CQ_OK, "%s: %s", name, e.msg);
    size_t bad = nb;
    for (size_t i = 0; i < nb; i++)
        if (got[i] != want[i]) {
            bad = i;
            break;
        }
    CHECK(bad == nb, "%s: byte %zu is %02x, expected %02x", name, bad, bad < nb ? got[bad] : 0,
          bad < nb ? want[bad] : 0);
}

/* Decode expected bytes and compare with expected values exactly. */
static void expect_decode(const char *name, const uint8_t *bytes, size_t nb, const float *want) {
    const cq_codec_traits *c = get(name);
    if (!c) return;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 32);
    float y[32];
    CHECK(c->decode(&cfg, CQ_ROLE_KEY, bytes, nb, 1, y) == CQ_OK, "%s decode", name);
    int bad = -1;
    for (int j = 0; j < 32 && bad < 0; j++)
        if (cq_f32_bits(y[j]) != cq_f32_bits(want[j])) bad = j;
    CHECK(bad < 0, "%s: decoded element %d = %g, expected %g", name, bad, bad >= 0 ? y[bad] : 0.0,
          bad >= 0 ? want[bad] : 0.0);
}

static void test_q8_0_bytes(void) {
    /* amax = 127 -> d = 127/127 = 1.0 (fp16 0x3C00), id = 1, q = roundf(x): half AWAY from
     * zero (2.5 -> 3, -2.5 -> -3, unlike the contract's half-even). */
    double v[32] = {127, -127, 0.5, -0.5, 1.5, 2.5, -2.5, 0.25, 100.75, -3.25};
    const int8_t q[32] = {127, -127, 1, -1, 2, 3, -3, 0, 101, -3};
    uint8_t want[34] = {0x00, 0x3C};
    float dec[32];
    for (int j = 0; j < 32; j++) {
        want[2 + j] = (uint8_t)q[j];
        dec[j] = (float)q[j];
    }
    expect_block("q8_0", v, want, 34);
    expect_decode("q8_0", want, 34, dec);
}

static void test_q4_0_bytes(void) {
    /* m = the first element of largest magnitude = -8 (8 at j=5 ties, comes later)
     * d = m / -8 = 1.0 (0x3C00), id = 1, q = min(15, (int)(x + 8.5)):
     *  j0 -8 -> 0; j1 7 -> 15; j2 0 -> 8; j3 0.5 -> (int)9.0 = 9; j4 -0.5 -> (int)8.0 = 8;
     *  j5 8 -> (int)16.5 = 16 -> 15 (clamped); j6 -1.5 -> 7; j7 2.4 -> (int)10.9 = 10;
     *  j8 -3.7 -> (int)4.8 = 4; j9..j15 0 -> 8; j16 3 -> 11; j17 -7 -> 1; j18..31 0 -> 8.
     * byte j = q[j] | q[j+16] << 4. */
    double v[32] = {-8, 7, 0, 0.5, -0.5, 8, -1.5, 2.4, -3.7};
    v[16] = 3;
    v[17] = -7;
    uint8_t want[18] = {0x00, 0x3C, 0xB0, 0x1F, 0x88, 0x89, 0x88, 0x8F, 0x87, 0x8A, 0x84};
    for (int j = 9; j < 16; j++) want[2 + j] = 0x88;
    expect_block("q4_0", v, want, 18);
    /* decode: (q - 8) * 1.0 */
    const int q[32] = {0, 15, 8, 9, 8, 15, 7, 10, 4, 8, 8, 8, 8, 8, 8, 8,
                       11, 1, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
    float dec[32];
    for (int j = 0; j < 32; j++) dec[j] = (float)(q[j] - 8);
    expect_decode("q4_0", want, 18, dec);

    /* a positive extreme flips the sign of d: m = 4 -> d = -0.5 (0xB800), id = -2;
     * x = 4 -> -8 + 8.5 -> 0; x = -4 -> 8 + 8.5 = 16.5 -> 16 -> 15; x = 1 -> -2 + 8.5 -> 6. */
    double w[32] = {4, -4, 1};
    uint8_t want2[18] = {0x00, 0xB8, 0x80, 0x8F, 0x86};
    for (int j = 3; j < 16; j++) want2[2 + j] = 0x88;
    expect_block("q4_0", w, want2, 18);

    /* all zero: d = 0 / -8 = -0.0 (0x8000), id = 0, codes (int)8.5 = 8: ggml's exact bytes */
    double z[32] = {0};
    uint8_t want3[18] = {0x00, 0x80};
    for (int j = 0; j < 16; j++) want3[2 + j] = 0x88;
    expect_block("q4_0", z, want3, 18);
}

static void test_q4_1_bytes(void) {
    /* min = -1, max = 14 -> d = 15/15 = 1 (0x3C00), m = -1 (0xBC00), id = 1,
     * q = min(15, (int)(x + 1 + 0.5)): j0 -1 -> 0; j1 14 -> 15; j2 0 -> 1; j3 0.5 -> 2;
     * j4 1.4 -> (int)2.9 = 2; j5 6.5 -> 8; j6..15 0 -> 1; j16 3 -> (int)4.5 = 4; j17..31 0 -> 1. */
    double v[32] = {-1, 14, 0, 0.5, 1.4, 6.5};
    v[16] = 3;
    uint8_t want[20] = {0x00, 0x3C, 0x00, 0xBC, 0x40, 0x1F, 0x11, 0x12, 0x12, 0x18};
    for (int j = 6; j < 16; j++) want[4 + j] = 0x11;
    expect_block("q4_1", v, want, 20);
    const int q[32] = {0, 15, 1, 2, 2, 8, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                       4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    float dec[32];
    for (int j = 0; j < 32; j++) dec[j] = (float)q[j] * 1.0f + -1.0f;
    expect_decode("q4_1", want, 20, dec);
}

static void test_q5_0_bytes(void) {
    /* m = -16 -> d = 1 (0x3C00), q = min(31, (int)(x + 16.5)):
     * j0 -16 -> 0; j1 15 -> 31; j2 16 -> 32 -> 31; j3 0 -> 16; j4 0.5 -> 17; j5 -0.5 -> 16;
     * j6 3 -> 19; j7 -3 -> 13; j8..15 0 -> 16; j16 -10 -> 6; j17..31 0 -> 16.
     * low nibbles: byte j = (q[j] & 15) | (q[j+16] & 15) << 4;
     * qh bit i = bit 4 of q[i]: set for j = 1,2,3,4,5,6, 8..15 and 17..31 (16 -> 0x10),
     * clear for j = 0, 7 (13), 16 (6): qh = 0xFFFEFF7E, little-endian 7E FF FE FF. */
    double v[32] = {-16, 15, 16, 0, 0.5, -0.5, 3, -3};
    v[16] = -10;
    uint8_t want[22] = {0x00, 0x3C, 0x7E, 0xFF, 0xFE, 0xFF,
                        0x60, 0x0F, 0x0F, 0x00, 0x01, 0x00, 0x03, 0x0D};
    for (int j = 8; j < 16; j++) want[6 + j] = 0x00;
    expect_block("q5_0", v, want, 22);
    const int q[32] = {0, 31, 31, 16, 17, 16, 19, 13, 16, 16, 16, 16, 16, 16, 16, 16,
                       6, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16};
    float dec[32];
    for (int j = 0; j < 32; j++) dec[j] = (float)(q[j] - 16);
    expect_decode("q5_0", want, 22, dec);
}

static void test_q5_1_bytes(void) {
    /* min = 0, max = 31 -> d = 31/31 = 1 (0x3C00), m = 0 (0x0000), q = (int)(x + 0.5):
     * j0 31 -> 31; j1 16 -> 16; j2 2.5 -> 3; j3 17.4 -> 17; others 0 -> 0; j16 20 -> 20.
     * nibbles: byte0 = 15 | (20 & 15) << 4 = 0x4F; byte1 = 0; byte2 = 3; byte3 = 1.
     * qh bits: j0 (31), j1 (16), j3 (17), j16 (20): 0x0001000B -> 0B 00 01 00. */
    double v[32] = {31, 16, 2.5, 17.4};
    v[16] = 20;
    uint8_t want[24] = {0x00, 0x3C, 0x00, 0x00, 0x0B, 0x00, 0x01, 0x00, 0x4F, 0x00, 0x03, 0x01};
    expect_block("q5_1", v, want, 24);
    float dec[32] = {31, 16, 3, 17};
    dec[16] = 20;
    expect_decode("q5_1", want, 24, dec);
}

static void test_iq4_nl_bytes(void) {
    /* amax 127 at j0 with m = -127: d0 = m / -127 = 1, id = 1. Indices (nearest level, an exact
     * midpoint goes up): j0 -127 -> 0; j1 7 (midpoint of 1 and 13) -> 9; j2 -4.5 (midpoint of
     * -10 and 1) -> 8; zeros -> 8 (level 1 is nearer than -10).
     * Refit with w = x^2: sum(wqx) = 127^4 + 49*13*7 - 20.25*4.5 and sum(wqq) = 127^4 + 49*169
     * + 20.25, ratio 0.99998..., whose fp16 rounding is 1.0 (0x3C00) however the fp32 sums
     * round (the fp16 step below 1 is 2^-11). bytes: j | j+16 << 4 -> 0x80, 0x89, 0x88... */
    double v[32] = {-127, 7, -4.5};
    uint8_t want[18] = {0x00, 0x3C, 0x80, 0x89};
    for (int j = 2; j < 16; j++) want[2 + j] = 0x88;
    expect_block("iq4_nl", v, want, 18);
    float dec[32];
    for (int j = 0; j < 32; j++) dec[j] = 1.0f;
    dec[0] = -127.0f;
    dec[1] = 13.0f;
    expect_decode("iq4_nl", want, 18, dec);
    /* positive extreme: m = 127 -> d0 = -1, index of 127 is 0 (level -127); refit d = -1
     * (0xBC00); zeros -> -0 * id = -0, still nearest level 1 (index 8). */
    double w[32] = {127};
    uint8_t want2[18] = {0x00, 0xBC, 0x80};
    for (int j = 1; j < 16; j++) want2[2 + j] = 0x88;
    expect_block("iq4_nl", w, want2, 18);
}

/* ---------------------------------------------------------------- bounds */

/* Per-element bounds, from each quantizer's definition, with d (the fp32 scale
 * the quantizer used) recomputed here and d16 read from the packed block. */
static void roundtrip_bounds(const char *name, uint32_t D, uint32_t T, uint64_t seed) {
    const cq_codec_traits *c = get(name);
    if (!c) return;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cq_rng r;
    cq_rng_seed(&r, seed);
    uint16_t *x = malloc((size_t)T * D * sizeof *x);
    float *y = malloc((size_t)T * D * sizeof *y);
    rt_gauss(&r, x, T, D, 1.0, 3);
    x[5] = 0; /* an exact zero and a few ties somewhere */
    uint8_t *pk = NULL;
    size_t n = rt_roundtrip(c, &cfg, CQ_ROLE_KEY, x, T, y, &pk);
    size_t bb = n / ((size_t)T * D / 32);
    CHECK(n == (size_t)T * (D / 32) * bb, "%s: size", name);
    size_t worst = 0, nbad = 0;
    double worst_ratio = 0;
    for (size_t b = 0; n && b < (size_t)T * D / 32; b++) {
        const uint16_t *xb = x + b * 32;
        const uint8_t *blk = pk + b * bb;
        float xf[32], amax = 0, mx = 0, mn = INFINITY, mxv = -INFINITY;
        for (int j = 0; j < 32; j++) {
            xf[j] = cq_f16_to_f32(xb[j]);
            if (fabsf(xf[j]) > amax) amax = fabsf(xf[j]), mx = xf[j];
            if (xf[j] < mn) mn = xf[j];
            if (xf[j] > mxv) mxv = xf[j];
        }
        const float d16 = cq_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
        for (int j = 0; j < 32; j++) {
            double err = fabs((double)xf[j] - y[b * 32 + j]), bound;
            if (!strcmp(name, "q8_0")) {
                double d = amax / 127.0f;
                /* |x - q d| <= d/2 (roundf), plus |q| <= 127 times the fp16 error of d */
                bound = d / 2 + 127 * fabs(d - d16) + 1e-6 * fabs(xf[j]);
            } else if (!strcmp(name, "q4_0") || !strcmp(name, "q5_0")) {
                double half = !strcmp(name, "q4_0") ? 8 : 16;
                double d = mx / -half, v = xf[j] / d;
                /* round half up below (half - 0.5); the top level is lost, so up to 1 step above */
                bound = fabs(d) * (v <= half - 0.5 ? 0.5 : v - (half - 1)) + half * fabs(d - d16) +
                        1e-6 * fabs(xf[j]);
            } else { /* q4_1, q5_1 */
                double lv = !strcmp(name, "q4_1") ? 15 : 31;
                double d = (mxv - mn) / (float)lv;
                const float m16 = cq_f16_to_f32((uint16_t)(blk[2] | blk[3] << 8));
                bound = d / 2 + lv * fabs(d - d16) + fabs(mn - m16) + 1e-6 * fabs(xf[j]);
            }
            if (err > bound) nbad++, worst = b * 32 + j;
            if (bound > 0 && err / bound > worst_ratio) worst_ratio = err / bound;
        }
    }
    CHECK(nbad == 0, "%s: %zu elements beyond the bound (e.g. #%zu: x=%g y=%g)", name, nbad, worst,
          cq_f16_to_f32(x[worst]), y[worst]);
    CHECK(worst_ratio > 0.5, "%s: the bound is never approached (%g): suspicious", name,
          worst_ratio);
    free(pk);
    free(x);
    free(y);
}

/* iq4_nl: every index is the nearest level to x/d0 (d0 = m/-127, midpoints up), and the
 * stored scale is the fp16 of the weighted least-squares refit (checked in double to 1e-3). */
static void iq4_nl_properties(uint64_t seed) {
    static const int lv[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                               1,    13,   25,  38,  53,  69,  89,  113};
    const cq_codec_traits *c = get("iq4_nl");
    if (!c) return;
    const uint32_t D = 128, T = 64;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cq_rng r;
    cq_rng_seed(&r, seed);
    uint16_t x[64 * 128];
    float y[64 * 128];
    rt_gauss(&r, x, T, D, 0.5, 1);
    uint8_t *pk = NULL;
    size_t n = rt_roundtrip(c, &cfg, CQ_ROLE_VALUE, x, T, y, &pk);
    size_t idx_bad = 0, d_bad = 0, err_bad = 0;
    for (size_t b = 0; n && b < (size_t)T * D / 32; b++) {
        const uint8_t *blk = pk + b * 18;
        float xf[32], amax = 0, m = 0;
        for (int j = 0; j < 32; j++) {
            xf[j] = cq_f16_to_f32(x[b * 32 + j]);
            if (fabsf(xf[j]) > amax) amax = fabsf(xf[j]), m = xf[j];
        }
        const float d0 = m / -127.0f;
        double sqx = 0, sqq = 0;
        for (int j = 0; j < 32; j++) {
            int l = j < 16 ? blk[2 + j] & 15 : blk[2 + j - 16] >> 4;
            double a = (double)(xf[j] * (1.0f / d0));
            int best = 0;
            for (int k = 1; k < 16; k++)
                if (2 * a >= lv[k - 1] + lv[k]) best = k;
            idx_bad += l != best;
            double w = (double)xf[j] * xf[j];
            sqx += w * lv[l] * xf[j];
            sqq += w * lv[l] * lv[l];
        }
        const double d = sqx / sqq;
        const double d16 = cq_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
        d_bad += fabs(d16 - d) > 1e-3 * fabs(d);
        /* decode bound: half the widest level gap (24/2) of d0 or the top clip (127-113 = 14),
         * plus 127 times the distance between d0 and the stored scale */
        for (int j = 0; j < 32; j++)
            err_bad += fabs(xf[j] - y[b * 32 + j]) > 14 * fabs(d0) + 127 * fabs(d16 - d0) + 1e-6;
    }
    CHECK(idx_bad == 0, "iq4_nl: %zu indices are not the nearest level", idx_bad);
    CHECK(d_bad == 0, "iq4_nl: %zu scales are not the least-squares refit", d_bad);
    CHECK(err_bad == 0, "iq4_nl: %zu elements beyond the bound", err_bad);
    free(pk);
}

/* --------------------------------------------------------------- hadamard */

static void test_hadamard(void) {
    cq_rng r;
    cq_rng_seed(&r, 77);
    for (uint32_t n = 1; n <= 512; n *= 2) {
        float x[512], y[512];
        double nx = 0, ny = 0, amax = 0;
        for (uint32_t i = 0; i < n; i++) {
            x[i] = y[i] = (float)cq_rng_normal(&r);
            nx += (double)x[i] * x[i];
            if (fabs(x[i]) > amax) amax = fabs(x[i]);
        }
        cq_fwht_orthonormal_f32(y, n);
        for (uint32_t i = 0; i < n; i++) ny += (double)y[i] * y[i];
        CHECK(fabs(nx - ny) <= 1e-5 * nx, "n=%u: norm %g -> %g", n, nx, ny);
        cq_fwht_orthonormal_f32(y, n);
        double e = 0;
        for (uint32_t i = 0; i < n; i++) e = fmax(e, fabs((double)y[i] - x[i]));
        CHECK(e <= 1e-6 * fmax(1.0, amax), "n=%u: inverse error %g", n, e);
    }
    /* the matrix is Sylvester's: entry (i, j) = (-1)^popcount(i & j) / sqrt(n) */
    const uint32_t n = 64;
    double worst = 0;
    for (uint32_t j = 0; j < n; j++) {
        float e[64] = {0};
        e[j] = 1.0f;
        cq_fwht_orthonormal_f32(e, n);
        for (uint32_t i = 0; i < n; i++) {
            int sgn = __builtin_popcount(i & j) & 1 ? -1 : 1;
            worst = fmax(worst, fabs(e[i] - sgn / 8.0));
        }
    }
    CHECK(worst < 1e-7, "Hadamard entries off by %g", worst);
}

/* q4_0_rot: decode is in the original space; the error of a token equals the error of its
 * rotated blocks (orthonormal), each bounded as in q4_0. Also: the bytes are q4_0 of the
 * rotated token, so decoding them as q4_0 and rotating back reproduces the decode. */
static void test_q4_0_rot(uint32_t D, cq_role role, uint64_t seed) {
    const cq_codec_traits *c = get("q4_0_rot"), *q = get("q4_0");
    if (!c || !q) return;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    const uint32_t T = 24;
    cq_rng r;
    cq_rng_seed(&r, seed);
    uint16_t *x = malloc((size_t)T * D * sizeof *x);
    float *y = malloc((size_t)T * D * sizeof *y), *z = malloc((size_t)T * D * sizeof *z);
    rt_gauss(&r, x, T, D, 1.0, 2);
    uint8_t *pk = NULL;
    size_t n = rt_roundtrip(c, &cfg, role, x, T, y, &pk);
    CHECK(n == (size_t)T * D / 32 * 18, "q4_0_rot size %zu", n);
    uint32_t nrot = 64;
    if (role == CQ_ROLE_KEY)
        while (D % (2 * nrot) == 0) nrot *= 2;
    size_t bad = 0;
    double worst_plain = 0, worst_rot = 0;
    for (uint32_t t = 0; n && t < T; t++) {
        float rot[512];
        for (uint32_t i = 0; i < D; i++) rot[i] = cq_f16_to_f32(x[(size_t)t * D + i]);
        for (uint32_t i = 0; i < D; i += nrot) cq_fwht_orthonormal_f32(rot + i, nrot);
        double bound2 = 0, err2 = 0;
        for (uint32_t b = 0; b < D / 32; b++) {
            float amax = 0, m = 0;
            for (int j = 0; j < 32; j++)
                if (fabsf(rot[b * 32 + j]) > amax) amax = fabsf(rot[b * 32 + j]), m = rot[b * 32 + j];
            const uint8_t *blk = pk + ((size_t)t * (D / 32) + b) * 18;
            double d = m / -8.0f, d16 = cq_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
            for (int j = 0; j < 32; j++) {
                double v = rot[b * 32 + j] / d;
                double bd = fabs(d) * (v <= 7.5 ? 0.5 : v - 7) + 8 * fabs(d - d16) + 1e-5;
                bound2 += bd * bd;
            }
        }
        for (uint32_t i = 0; i < D; i++) {
            double e = cq_f16_to_f32(x[(size_t)t * D + i]) - y[(size_t)t * D + i];
            err2 += e * e;
        }
        bad += sqrt(err2) > sqrt(bound2) * (1 + 1e-4);
        worst_rot = fmax(worst_rot, sqrt(err2 / D));
    }
    CHECK(bad == 0, "q4_0_rot D=%u role=%d: %zu tokens beyond the L2 bound", D, (int)role, bad);
    /* decode = q4_0 decode of the same bytes, rotated back */
    CHECK(q->decode(&cfg, role, pk, n, T, z) == CQ_OK, "q4_0 decode of q4_0_rot bytes");
    double worst_diff = 0;
    for (uint32_t t = 0; t < T; t++) {
        for (uint32_t i = 0; i < D; i += nrot) cq_fwht_orthonormal_f32(z + (size_t)t * D + i, nrot);
        for (uint32_t i = 0; i < D; i++)
            worst_diff = fmax(worst_diff, fabs(z[(size_t)t * D + i] - y[(size_t)t * D + i]));
    }
    CHECK(worst_diff == 0, "q4_0_rot decode differs from un-rotated q4_0 decode by %g", worst_diff);
    /* rotation spreads the 20x outlier channels: on this data it must beat plain q4_0 */
    float *yq = malloc((size_t)T * D * sizeof *yq);
    rt_roundtrip(q, &cfg, role, x, T, yq, NULL);
    double e_rot = rt_nmse(x, y, (size_t)T * D), e_plain = rt_nmse(x, yq, (size_t)T * D);
    CHECK(e_rot < e_plain, "q4_0_rot NMSE %g not below q4_0 %g on outlier data", e_rot, e_plain);
    (void)worst_plain;
    free(yq);
    free(pk);
    free(x);
    free(y);
    free(z);
}

int main(void) {
    test_q8_0_bytes();
    test_q4_0_bytes();
    test_q4_1_bytes();
    test_q5_0_bytes();
    test_q5_1_bytes();
    test_iq4_nl_bytes();
    const char *types[] = {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1"};
    for (int i = 0; i < 5; i++) {
        roundtrip_bounds(types[i], 64, 40, 100 + i);
        roundtrip_bounds(types[i], 128, 17, 200 + i);
    }
    iq4_nl_properties(9);
    test_hadamard();
    test_q4_0_rot(64, CQ_ROLE_KEY, 1);
    test_q4_0_rot(128, CQ_ROLE_KEY, 2);
    test_q4_0_rot(128, CQ_ROLE_VALUE, 3);
    test_q4_0_rot(192, CQ_ROLE_KEY, 4);
    const char *all[] = {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "q4_0_rot"};
    for (int i = 0; i < 7; i++) {
        const cq_codec_traits *c = get(all[i]);
        if (!c) continue;
        for (int role = 0; role < 2; role++) {
            cq_codec_cfg cfg;
            cq_codec_cfg_default(&cfg, 128);
            rt_common(c, &cfg, (cq_role)role, 9, 1000 + i);
            cq_codec_cfg_default(&cfg, 64);
            rt_common(c, &cfg, (cq_role)role, 1, 2000 + i);
            rt_common(c, &cfg, (cq_role)role, 0, 3000 + i);
            rt_refuses_dim(c, 48, (cq_role)role);
            rt_refuses_dim(c, 16, (cq_role)role);
            /* nominal bits/value of the block layouts */
            double want = i == 0 ? 8.5 : i == 2 ? 5.0 : i == 3 ? 5.5 : i == 4 ? 6.0 : 4.5;
            CHECK(c->modeled_bpv && c->modeled_bpv(&cfg, (cq_role)role, 10) == want,
                  "%s modeled bpv", all[i]);
        }
    }
    rt_refuses_dim(cq_codec_find("q4_0_rot"), 96, CQ_ROLE_KEY); /* 96 % 32 == 0 but % 64 != 0 */
    return cq_test_done("test_ggml");
}
