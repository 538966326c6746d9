/* SPDX-License-Identifier: MIT */
/*
 * test_fp4.c - MXFP4 and NVFP4: element (E2M1) and scale (E8M0, E4M3)
 * encodings on hand-picked values (ties, saturation, subnormals, zero
 * blocks) with the expected bytes worked out in the comments, round trips
 * within the bound of the format, and the shared codec properties.
 */
#include "baseline_rt.h"

static uint16_t h(double v) { return cq_f64_to_f16(v); }

/* Encode one token [D] and compare every byte; then decode and compare with `dec`. */
static void expect_token(const char *name, uint32_t D, const double *vals, const uint8_t *want,
                         size_t nb, const float *dec) {
    const cq_codec_traits *c = cq_codec_find(name);
    CHECK(c != NULL, "%s missing", name);
    if (!c) return;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    uint16_t x[64];
    for (uint32_t j = 0; j < D; j++) x[j] = h(vals[j]);
    CHECK(c->packed_bytes(&cfg, CQ_ROLE_KEY, 1) == nb, "%s: %zu bytes, want %zu", name,
          c->packed_bytes(&cfg, CQ_ROLE_KEY, 1), nb);
    uint8_t got[128];
    cq_err e;
    CHECK(c->encode(&cfg, CQ_ROLE_KEY, x, 1, got, sizeof got, &e) == CQ_OK, "%s: %s", name, e.msg);
    size_t bad = nb;
    for (size_t i = 0; i < nb && bad == nb; i++)
        if (got[i] != want[i]) bad = i;
    CHECK(bad == nb, "%s: byte %zu is %02x, expected %02x", name, bad, bad < nb ? got[bad] : 0,
          bad < nb ? want[bad] : 0);
    float y[64];
    CHECK(c->decode(&cfg, CQ_ROLE_KEY, want, nb, 1, y) == CQ_OK, "%s decode", name);
    uint32_t badj = D;
    for (uint32_t j = 0; j < D && badj == D; j++)
        if (cq_f32_bits(y[j]) != cq_f32_bits(dec[j])) badj = j;
    CHECK(badj == D, "%s: decoded element %u = %g, expected %g", name, badj,
          badj < D ? y[badj] : 0.0, badj < D ? dec[badj] : 0.0);
}

/* E2M1 magnitudes by code (independent of the library's table). */
static float e2m1(int code) {
    static const float m[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    return code & 8 ? -m[code & 7] : m[code & 7];
}

static void test_mxfp4_bytes(void) {
    /* amax 6: floor(log2 6) = 2, X = 2^(2-2) = 1, e = 127 = 0x7F. Codes (RNE, ties to the even
     * code = even mantissa bit): 6 -> 7; 0.25 (tie 0|0.5) -> 0; 0.75 (tie 0.5|1) -> 2 (1.0);
     * 1.25 (tie 1|1.5) -> 2; 1.75 (tie 1.5|2) -> 4 (2.0); 2.5 (tie 2|3) -> 4; 3.5 (tie 3|4) -> 6;
     * 5 (tie 4|6) -> 6 (4.0); -0.75 -> 8|2 = A; -5 -> 8|6 = E; 0 -> 0; -0 -> 8; fp16(0.3) -> 1;
     * fp16(4.9) = 4.898 -> 6; 3 -> 5; 1.5 -> 3; j16 -6 -> F; j17 5.5 -> 7; j18 -2.75 -> 8|5 = D;
     * j19 0.5 -> 1; rest 0.
     * qs[j] = code[j] | code[j+16] << 4: F7 70 D2 12 04 04 06 06 0A 0E 00 08 01 06 05 03 */
    double v[32] = {6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -0.75, -5, 0, -0.0, 0.3, 4.9, 3, 1.5,
                    -6, 5.5, -2.75, 0.5};
    const uint8_t want[17] = {0x7F, 0xF7, 0x70, 0xD2, 0x12, 0x04, 0x04, 0x06, 0x06,
                              0x0A, 0x0E, 0x00, 0x08, 0x01, 0x06, 0x05, 0x03};
    const int codes[32] = {7, 0, 2, 2, 4, 4, 6, 6, 0xA, 0xE, 0, 8, 1, 6, 5, 3, 0xF, 7, 0xD, 1};
    float dec[32];
    for (int j = 0; j < 32; j++) dec[j] = e2m1(codes[j]) * 1.0f;
    expect_token("mxfp4", 32, v, want, 17, dec);

    /* saturation: amax 7.5 -> floor(log2) = 2, X = 1, 7.5 > 6 -> 7 (6.0); 0.1 -> 0 */
    double s[32] = {7.5, 0.1};
    uint8_t want_s[17] = {0x7F, 0x07};
    float dec_s[32] = {6.0f};
    expect_token("mxfp4", 32, s, want_s, 17, dec_s);

    /* zero block: e = 0 (ggml's convention), every code 0; decodes to +0 */
    double z[32] = {0};
    uint8_t want_z[17] = {0};
    float dec_z[32] = {0};
    expect_token("mxfp4", 32, z, want_z, 17, dec_z);

    /* amax 0.75: floor(log2 0.75) = -1, X = 2^-3, e = 124 = 0x7C: 0.75/X = 6 -> 7;
     * 0.0625/X = 0.5 -> 1; 0.09375/X = 0.75 (tie) -> 2; -0.03125/X = -0.25 (tie) -> -0 = 8 */
    double m[32] = {0.75, 0.0625, 0.09375, -0.03125};
    uint8_t want_m[17] = {0x7C, 0x07, 0x01, 0x02, 0x08};
    float dec_m[32] = {0.75f, 0.0625f, 0.125f, -0.0f};
    expect_token("mxfp4", 32, m, want_m, 17, dec_m);

    /* top of the fp16 range: amax 65504, floor(log2) = 15, X = 2^13, e = 140 = 0x8C;
     * 65504/8192 = 7.996 -> 7 (6 * 8192 = 49152); 40000/8192 = 4.88 -> 6 (32768) */
    double t[32] = {65504, 40000};
    uint8_t want_t[17] = {0x8C, 0x07, 0x06};
    float dec_t[32] = {49152.0f, 32768.0f};
    expect_token("mxfp4", 32, t, want_t, 17, dec_t);
}

static void test_nvfp4_bytes(void) {
    /* tensor amax 2688 -> s_t = 2688 / (448 * 6) = 1.0f, stored 00 00 80 3F.
     * block 0 {2688, -2688, 0...}: (2688/6)/1 = 448 -> E4M3 0x7E (e=15, m=6); ds = 448;
     *   codes 6 -> 7, -6 -> F; byte (2i low, 2i+1 high) = 0xF7.
     * block 1 (amax 6): scale 1.0 -> 0x38 (e=7, m=0); ds = 1; codes as in the MXFP4 list:
     *   {6, .25, .75, 1.25, 1.75, 2.5, 3.5, 5, -.75, -5, 0, -0, .3, 4.9, 3, 1.5}
     *   -> {7,0,2,2,4,4,6,6,A,E,0,8,1,6,5,3} -> bytes 07 22 44 66 EA 80 61 35.
     * block 2 (amax 7.125): 7.125/6 = 1.1875, a tie between 1.125 (m=1) and 1.25 (m=2) -> 0x3A;
     *   ds = 1.25: 7.125/1.25 = 5.7 -> 7; 1.25/1.25 = 1 -> 2; -0.625/1.25 = -0.5 -> 9;
     *   bytes 27 09 00...
     * block 3 (amax 0.01171875 = 6 * 2^-9): scale 2^-9, the smallest subnormal -> 0x01;
     *   0.01171875 / 2^-9 = 6 -> 7; 0.005859375 / 2^-9 = 3 -> 5: byte 0x57. */
    double v[64] = {2688, -2688};
    const double b1[16] = {6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -0.75, -5, 0, -0.0, 0.3, 4.9, 3, 1.5};
    for (int j = 0; j < 16; j++) v[16 + j] = b1[j];
    v[32] = 7.125, v[33] = 1.25, v[34] = -0.625;
    v[48] = 0.01171875, v[49] = 0.005859375;
    uint8_t want[4 + 36] = {0x00, 0x00, 0x80, 0x3F,
                            0x7E, 0xF7, 0, 0, 0, 0, 0, 0, 0,
                            0x38, 0x07, 0x22, 0x44, 0x66, 0xEA, 0x80, 0x61, 0x35,
                            0x3A, 0x27, 0x09, 0, 0, 0, 0, 0, 0,
                            0x01, 0x57, 0, 0, 0, 0, 0, 0, 0};
    float dec[64] = {2688.0f, -2688.0f};
    const int c1[16] = {7, 0, 2, 2, 4, 4, 6, 6, 0xA, 0xE, 0, 8, 1, 6, 5, 3};
    for (int j = 0; j < 16; j++) dec[16 + j] = e2m1(c1[j]);
    for (int j = 32; j < 48; j++) dec[j] = 0.0f;
    dec[32] = 7.5f, dec[33] = 1.25f, dec[34] = -0.625f;
    for (int j = 48; j < 64; j++) dec[j] = 0.0f;
    dec[48] = 6.0f * 0x1p-9f, dec[49] = 3.0f * 0x1p-9f;
    expect_token("nvfp4", 64, v, want, sizeof want, dec);

    /* more scale roundings (tensor amax 2688 again, so s_t = 1):
     * amax 6.375: 6.375/6 = 1.0625, tie between 1.0 (m=0) and 1.125 (m=1) -> 0x38; ds 1:
     *   6.375 -> saturates to 6 -> 7.
     * amax 0.017578125 = 9 * 2^-9: /6 = 3 * 2^-10, tie between 2^-9 (m=1) and 2^-8 (m=2) -> 0x02;
     *   ds = 2^-8: 0.017578125 / 2^-8 = 4.5 -> 6 (4.0).
     * amax 0.005859375 = 6 * 2^-10: /6 = 2^-10, tie between 0 and 2^-9 -> 0x00: ds = 0, codes
     *   keep only the sign: 0.005859375 -> 0, -0.001 -> 8: byte 0x80. */
    double w[64] = {2688};
    w[16] = 6.375;
    w[32] = 0.017578125;
    w[48] = 0.005859375, w[49] = -0.001;
    uint8_t want2[40] = {0x00, 0x00, 0x80, 0x3F,
                         0x7E, 0x07, 0, 0, 0, 0, 0, 0, 0,
                         0x38, 0x07, 0, 0, 0, 0, 0, 0, 0,
                         0x02, 0x06, 0, 0, 0, 0, 0, 0, 0,
                         0x00, 0x80, 0, 0, 0, 0, 0, 0, 0};
    float dec2[64] = {2688.0f};
    dec2[16] = 6.0f;
    dec2[32] = 4.0f * 0x1p-8f;
    dec2[48] = 0.0f, dec2[49] = -0.0f;
    expect_token("nvfp4", 64, w, want2, sizeof want2, dec2);

    /* all-zero tensor: s_t = 0, scales 0, codes 0 */
    double z[16] = {0};
    uint8_t want_z[13] = {0};
    float dec_z[16] = {0};
    expect_token("nvfp4", 16, z, want_z, sizeof want_z, dec_z);
}

/* Half the E2M1 gap around magnitude a (in units of the scale), or the clip beyond 6. */
static double e2m1_bound(double a) {
    if (a > 6) return a - 6;
    return a < 2 ? 0.25 : a < 4 ? 0.5 : 1.0;
}

static float e4m3_value(uint8_t b) {
    int e = (b >> 3) & 15, m = b & 7;
    return e ? ldexpf(1 + m / 8.0f, e - 7) : ldexpf((float)m, -9);
}

static void fp4_roundtrip(uint32_t D, uint32_t T, uint64_t seed) {
    cq_rng r;
    cq_rng_seed(&r, seed);
    uint16_t *x = malloc((size_t)T * D * sizeof *x);
    float *y = malloc((size_t)T * D * sizeof *y);
    rt_gauss(&r, x, T, D, 1.0, 2);
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    /* MXFP4: X = 2^(floor(log2 amax) - 2) per 32 channels */
    const cq_codec_traits *mx = cq_codec_find("mxfp4"), *nv = cq_codec_find("nvfp4");
    uint8_t *pk = NULL;
    size_t n = rt_roundtrip(mx, &cfg, CQ_ROLE_KEY, x, T, y, &pk);
    CHECK(n == (size_t)T * D / 32 * 17, "mxfp4 size %zu", n);
    size_t bad = 0, ebad = 0;
    for (size_t b = 0; n && b < (size_t)T * D / 32; b++) {
        double amax = 0;
        for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(cq_f16_to_f32(x[b * 32 + j])));
        double X = amax > 0 ? ldexp(1.0, (int)floor(log2(amax)) - 2) : 0;
        ebad += amax > 0 && pk[b * 17] != (uint8_t)(floor(log2(amax)) - 2 + 127);
        for (int j = 0; j < 32; j++) {
            double xv = cq_f16_to_f32(x[b * 32 + j]);
            double bound = X > 0 ? X * e2m1_bound(fabs(xv) / X) : 0;
            bad += fabs(xv - y[b * 32 + j]) > bound;
        }
    }
    CHECK(bad == 0 && ebad == 0, "mxfp4 D=%u: %zu elements beyond the bound, %zu scales wrong", D,
          bad, ebad);
    free(pk);

    /* NVFP4: s_t = amax/2688, block scale near (amax_b/6)/s_t within E4M3 precision,
     * element error within the E2M1 bound of ds = e4m3 * s_t */
    if (D % 16 == 0) {
        n = rt_roundtrip(nv, &cfg, CQ_ROLE_VALUE, x, T, y, &pk);
        CHECK(n == 4 + (size_t)T * D / 16 * 9, "nvfp4 size %zu", n);
        double amax_t = 0;
        for (size_t i = 0; i < (size_t)T * D; i++) amax_t = fmax(amax_t, fabs(cq_f16_to_f32(x[i])));
        float s_t = cq_f32_from_bits((uint32_t)pk[0] | (uint32_t)pk[1] << 8 |
                                     (uint32_t)pk[2] << 16 | (uint32_t)pk[3] << 24);
        CHECK(s_t == (float)amax_t / 2688.0f, "nvfp4 tensor scale %g", s_t);
        bad = ebad = 0;
        for (size_t b = 0; n && b < (size_t)T * D / 16; b++) {
            const uint8_t *blk = pk + 4 + b * 9;
            double amax = 0;
            for (int j = 0; j < 16; j++) amax = fmax(amax, fabs(cq_f16_to_f32(x[b * 16 + j])));
            double want = amax / 6 / s_t, got = e4m3_value(blk[0]);
            ebad += fabs(got - want) > want / 16 + 0x1p-10;
            double ds = (double)(float)(e4m3_value(blk[0]) * s_t);
            for (int j = 0; j < 16; j++) {
                double xv = cq_f16_to_f32(x[b * 16 + j]);
                /* x_hat = code * ds is rounded to fp32: allow 2^-23 relative on top */
                double bound = ds > 0 ? ds * e2m1_bound(fabs(xv) / ds) + 0x1p-23 * fabs(xv) : fabs(xv);
                bad += fabs(xv - y[b * 16 + j]) > bound;
            }
        }
        CHECK(bad == 0 && ebad == 0, "nvfp4 D=%u: %zu elements beyond the bound, %zu scales off",
              D, bad, ebad);
        free(pk);
    }
    free(x);
    free(y);
}

int main(void) {
    test_mxfp4_bytes();
    test_nvfp4_bytes();
    fp4_roundtrip(64, 40, 1);
    fp4_roundtrip(128, 33, 2);
    fp4_roundtrip(96, 5, 3);
    const char *names[] = {"mxfp4", "nvfp4"};
    for (int i = 0; i < 2; i++) {
        const cq_codec_traits *c = cq_codec_find(names[i]);
        CHECK(c != NULL, "%s missing", names[i]);
        if (!c) continue;
        for (int role = 0; role < 2; role++) {
            cq_codec_cfg cfg;
            cq_codec_cfg_default(&cfg, 128);
            rt_common(c, &cfg, (cq_role)role, 7, 10 + i);
            cq_codec_cfg_default(&cfg, 64);
            rt_common(c, &cfg, (cq_role)role, 1, 20 + i);
            rt_common(c, &cfg, (cq_role)role, 0, 30 + i);
            rt_refuses_dim(c, i == 0 ? 48 : 24, (cq_role)role);
            rt_refuses_dim(c, 8, (cq_role)role);
        }
    }
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 64);
    CHECK(cq_codec_find("mxfp4")->modeled_bpv(&cfg, CQ_ROLE_KEY, 10) == 4.25, "mxfp4 bpv");
    CHECK(cq_codec_find("nvfp4")->modeled_bpv(&cfg, CQ_ROLE_KEY, 10) == 4.5 + 32.0 / 640,
          "nvfp4 bpv");
    return cq_test_done("test_fp4");
}
