/* SPDX-License-Identifier: MIT */
/*
 * test_megaquant.c - the MegaQuant methods through the registry: the five
 * published modeled figures (BASELINES.md section 6) to 6 decimals, exact
 * packed sizes of every layout, hand-derived bytes (round half to even, the
 * channelwise levels, sink1), sink token exact bit for bit, per-element error
 * bounds of the affine quantizer, the Hadamard signs and normalization,
 * error on Gaussian data, flags, and the common codec contract.
 */
#include "baseline_common.h"

static const uint32_t CASES[4] = {97, 192, 288, 384};

static double modeled_mean(const char *name) {
    const cq_codec_traits *c = bl_get(name);
    if (!c || !c->modeled_bpv) return -1;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 64);
    double s = 0;
    for (int i = 0; i < 4; i++) s += c->modeled_bpv(&cfg, CQ_ROLE_KEY, CASES[i]);
    return s / 4;
}

static void test_modeled(void) {
    static const struct {
        const char *name, *want;
    } pub[5] = {
        {"affine_seven_level_3bit_g64_meta4", "3.130399"},
        {"hadamard_affine_four_level_2bit_g64_meta8", "2.255399"},
        {"sink1_channelwise_four_level_2bit", "2.161955"},
        {"hadamard_affine_four_level_2bit_g32", "3.000000"},
        {"affine_seven_level_3bit_g32", "4.000000"},
    };
    for (int i = 0; i < 5; i++) {
        double m = modeled_mean(pub[i].name);
        char got[32];
        snprintf(got, sizeof got, "%.6f", m);
        CHECK(strcmp(got, pub[i].want) == 0 && fabs(m - atof(pub[i].want)) < 5e-7,
              "%s modeled %.9f, published %s", pub[i].name, m, pub[i].want);
    }
}

/* Packed bytes at D = 64, T = 97 from each layout (ng = 64/G groups):
 *   codes ceil(b*T*D/8): 3-bit 2328, 2-bit 1552
 *   plain meta T*ng*4: g32 776, g64 388
 *   metaB: ceil(2*B*T*ng/8) + 8*ng: meta4 97+8, meta8 194+8
 *   channelwise: codes + 2*D = 1552+128; sink1: 2*D + ceil(2*(T-1)*D/8) + 2*D = 128+1536+128 */
static void test_sizes(void) {
    static const struct {
        const char *name;
        size_t bytes;
        int offline;
    } rows[9] = {
        {"affine_seven_level_3bit_g32", 2328 + 776, 0},
        {"affine_seven_level_3bit_g64", 2328 + 388, 0},
        {"affine_seven_level_3bit_g64_meta4", 2328 + 97 + 8, 1},
        {"affine_seven_level_3bit_g64_meta8", 2328 + 194 + 8, 1},
        {"affine_four_level_2bit_g64_meta8", 1552 + 194 + 8, 1},
        {"hadamard_affine_four_level_2bit_g64_meta8", 1552 + 194 + 8, 1},
        {"hadamard_affine_four_level_2bit_g32", 1552 + 776, 0},
        {"channelwise_four_level_2bit", 1552 + 128, 1},
        {"sink1_channelwise_four_level_2bit", 128 + 1536 + 128, 1},
    };
    for (int i = 0; i < 9; i++) {
        const cq_codec_traits *c = bl_get(rows[i].name);
        if (!c) continue;
        cq_codec_cfg cfg;
        cq_codec_cfg_default(&cfg, 64);
        bl_contract(c, &cfg, 97, rows[i].bytes);
        CHECK(!!(c->flags & CQ_CODEC_F_OFFLINE) == rows[i].offline &&
                  !!(c->flags & CQ_CODEC_F_STREAMING) == !rows[i].offline,
              "%s flags", rows[i].name);
        /* modeled and measured agree exactly for these layouts at D = 64 */
        double meas = 8.0 * (double)rows[i].bytes / (97.0 * 64);
        CHECK(fabs(c->modeled_bpv(&cfg, CQ_ROLE_VALUE, 97) - meas) < 1e-12, "%s: modeled %.6f measured %.6f",
              rows[i].name, c->modeled_bpv(&cfg, CQ_ROLE_VALUE, 97), meas);
        CHECK(c->packed_bytes(&cfg, CQ_ROLE_KEY, 0) == 0, "%s: T=0 packs to 0 bytes", rows[i].name);
    }
    /* a D that G does not divide: the last group is short (96 = 64 + 32) */
    const cq_codec_traits *c = bl_get("affine_seven_level_3bit_g64");
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 96);
    bl_contract(c, &cfg, 5, (3 * 5 * 96) / 8 + 5 * 2 * 4);
    /* Hadamard methods need a power of two */
    CHECK(cq_codec_supports(bl_get("hadamard_affine_four_level_2bit_g32"), &cfg, CQ_ROLE_KEY) ==
              CQ_ERR_DIM, "hadamard D=96 accepted");
}

static void enc(const char *name, uint32_t D, const uint16_t *x, uint32_t T, uint8_t *dst,
                size_t n) {
    const cq_codec_traits *c = bl_get(name);
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cq_err e;
    CHECK(c && c->packed_bytes(&cfg, CQ_ROLE_KEY, T) == n, "%s size", name);
    CHECK(c && c->encode(&cfg, CQ_ROLE_KEY, x, T, dst, n, &e) == CQ_OK, "%s encode", name);
}

static void test_hand_bytes(void) {
    /* affine 3-bit g32, D = 6, one token {0, 0.5, 1.5, 2.5, 3.5, 7}: mn = 0,
     * s = 7/7 + 1e-8 = 1.0f (1e-8 is below half an ulp of 1), codes
     * rint(x): 0, 0 (0.5 -> even 0), 2, 2 (2.5 -> even 2), 4, 7. Bit stream
     * (code i at bit 3i): 010 at bit 6 -> bit 7; 010 at 9 -> bit 10; 100 at
     * 12 -> bit 14; 111 at 15 -> bits 15,16,17: bytes 0x80 0xC4 0x03; then
     * fp16 mn 0x0000 and s 0x3C00. */
    uint16_t x[8] = {0x0000, 0x3800, 0x3E00, 0x4100, 0x4300, 0x4700};
    uint8_t b[16];
    enc("affine_seven_level_3bit_g32", 6, x, 1, b, 7);
    const uint8_t want[7] = {0x80, 0xC4, 0x03, 0x00, 0x00, 0x00, 0x3C};
    CHECK(memcmp(b, want, 7) == 0, "affine hand bytes %02x %02x %02x", b[0], b[1], b[2]);
    /* channelwise, D = 2, T = 4: channel 0 = {1, -2, 3, -10}: median|x| 2.5,
     * mean 4, s = 0.6*2.5 + 0.4*4 + 1e-8 = 3.1 -> fp16 0x4233; 0.75 s = 2.325:
     * 1, -2 inner, 3, -10 outer. Channel 1 all zero: s = 1e-8 -> fp16 0, x = 0
     * is inner and positive. Codes (bit 0 outer, bit 1 negative), i = 2t + c:
     * 0,0,2,0,1,0,3,0 -> bytes 0x20 0x31; then s: 33 42 00 00. */
    uint16_t y[8] = {0x3C00, 0, 0xC000, 0, 0x4200, 0, 0xC900, 0};
    enc("channelwise_four_level_2bit", 2, y, 4, b, 6);
    const uint8_t w2[6] = {0x20, 0x31, 0x33, 0x42, 0x00, 0x00};
    CHECK(memcmp(b, w2, 6) == 0, "channelwise hand bytes %02x %02x %02x %02x", b[0], b[1], b[2], b[3]);
    /* sink1 on the same input: token 0 raw (00 3C 00 00), codes of tokens 1..3
     * 2,0,1,0,3,0 -> 0x12 0x03, then the same scales */
    enc("sink1_channelwise_four_level_2bit", 2, y, 4, b, 10);
    const uint8_t w3[10] = {0x00, 0x3C, 0x00, 0x00, 0x12, 0x03, 0x33, 0x42, 0x00, 0x00};
    CHECK(memcmp(b, w3, 10) == 0, "sink1 hand bytes %02x %02x %02x %02x %02x", b[0], b[1], b[4], b[5], b[6]);
    float out[8];
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 2);
    bl_get("sink1_channelwise_four_level_2bit")->decode(&cfg, CQ_ROLE_KEY, b, 10, 4, out);
    float s = cq_f16_to_f32(0x4233);
    CHECK(out[0] == 1.0f && out[2] == -(0.55f * s) && out[4] == 1.85f * s && out[6] == -(1.85f * s) &&
              out[7] == 0.0f, "sink1 decode %g %g %g %g", out[0], out[2], out[4], out[6]);
    /* affine 3-bit g64 meta4, D = 2 (one short group), T = 3 tokens
     * {0, 7}, {1, 8}, {2, 16}: mn = 0, 1, 2; s = 1, 1, 2 (+1e-8 vanishes in
     * fp32); codes (x - mn)/s = {0, 7} every token -> 3-bit stream bits
     * 3-5, 9-11, 15-17: 0x38 0x8E 0x03.
     * mn column: min 0, max 2, step = 2/15 + 1e-12 = 0.13333334f; the middle
     * token's (1 - 0)/step is 7.4999995 in fp32 -> code 7 (in double it would
     * be 7.5 -> 8: this pins fp32 arithmetic), the last 14.999999 -> 15.
     * s column: min 1, max 2, step 1/15: codes 0, 0, 15. 4-bit stream
     * [t]{mn, s}: 0,0 | 7,0 | 15,15 -> 0x00 0x07 0xFF. Columns: mn min 0,
     * range 2.0 (0x4000), s min 1.0, range 1.0 (0x3C00). */
    uint16_t z[6] = {0x0000, 0x4700, 0x3C00, 0x4800, 0x4000, 0x4C00};
    enc("affine_seven_level_3bit_g64_meta4", 2, z, 3, b, 14);
    const uint8_t w4[14] = {0x38, 0x8E, 0x03, 0x00, 0x07, 0xFF, 0x00, 0x00,
                            0x00, 0x40, 0x00, 0x3C, 0x00, 0x3C};
    CHECK(memcmp(b, w4, 14) == 0, "meta4 hand bytes %02x %02x %02x | %02x %02x %02x", b[0], b[1],
          b[2], b[3], b[4], b[5]);
    /* decode uses the stored metadata: mn_hat = code * (range/15 + 1e-12) + min */
    float zo[6], st = 2.0f / 15.0f + 1e-12f, ss = 1.0f / 15.0f + 1e-12f;
    bl_get("affine_seven_level_3bit_g64_meta4")->decode(&cfg, CQ_ROLE_KEY, b, 14, 3, zo);
    CHECK(zo[0] == 0.0f && zo[1] == 7.0f && zo[2] == 7.0f * st && zo[3] == 7.0f * 1.0f + 7.0f * st &&
              zo[5] == 7.0f * (15.0f * ss + 1.0f) + 15.0f * st,
          "meta4 decode %.9g %.9g %.9g %.9g", zo[2], zo[3], zo[4], zo[5]);
}

/* Hadamard signs and normalization: mn = 1, s = 0 in every group makes
 * y_hat = 1 everywhere; FWHT(1)/sqrt(64) = 8 e_0; channel 0's sign is -1. */
static void test_hadamard_signs(void) {
    const cq_codec_traits *c = bl_get("hadamard_affine_four_level_2bit_g32");
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 64);
    uint8_t b[16 + 8];
    for (int i = 0; i < 16; i++) b[i] = (uint8_t)(37 * i); /* codes are irrelevant when s = 0 */
    for (int g = 0; g < 2; g++) b[16 + 4 * g] = 0, b[17 + 4 * g] = 0x3C, b[18 + 4 * g] = 0, b[19 + 4 * g] = 0;
    float out[64];
    CHECK(c->decode(&cfg, CQ_ROLE_KEY, b, sizeof b, 1, out) == CQ_OK, "decode");
    int ok = out[0] == -8.0f;
    for (int j = 1; j < 64; j++) ok &= out[j] == 0.0f;
    CHECK(ok, "hadamard signs: out[0] = %g out[1] = %g", out[0], out[1]);
}

/* Sink token exact; affine per-element bounds; Gaussian error levels. */
static void test_errors(void) {
    const uint32_t D = 64, T = 200;
    uint16_t *x = malloc((size_t)T * D * 2);
    float *out = malloc((size_t)T * D * sizeof *out);
    bl_gauss(x, (size_t)T * D, 1.0, 2024);
    const uint16_t special[6] = {0x8000, 0x0001, 0x7BFF, 0xFBFF, 0x03FF, 0x3555};
    for (int i = 0; i < 6; i++) x[i] = special[i];
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cq_err e;
    /* sink1: token 0 bit for bit (-0.0, subnormals, +-65504 included) */
    const cq_codec_traits *sk = bl_get("sink1_channelwise_four_level_2bit");
    size_t nb = sk->packed_bytes(&cfg, CQ_ROLE_KEY, T);
    uint8_t *buf = malloc(nb);
    CHECK(sk->encode(&cfg, CQ_ROLE_KEY, x, T, buf, nb, &e) == CQ_OK, "sink1 enc");
    sk->decode(&cfg, CQ_ROLE_KEY, buf, nb, T, out);
    int exact = 1;
    for (uint32_t c = 0; c < D; c++) exact &= cq_f32_bits(out[c]) == cq_f32_bits(cq_f16_to_f32(x[c]));
    CHECK(exact, "sink1: token 0 not exact");
    free(buf);
    for (int i = 0; i < 6; i++) x[i] = cq_f64_to_f16(0.1 * i); /* back to tame data */

    /* plain affine: |x - x_hat| <= s/2 + qmax*|s16 - s| + |mn16 - mn| + eps,
     * with s = range/qmax, |s16 - s| <= s 2^-11, |mn16 - mn| = 0 (mn is an input) */
    static const struct {
        const char *name;
        uint32_t G, qmax;
        double lo, hi; /* Gaussian NMSE window, see below */
    } aff[3] = {
        {"affine_seven_level_3bit_g32", 32, 7, 0.015, 0.04},
        {"affine_seven_level_3bit_g64", 64, 7, 0.02, 0.05},
        {"hadamard_affine_four_level_2bit_g32", 32, 3, 0.10, 0.20},
    };
    /* Expected levels: a group of G Gaussian samples spans about 2 x 2.0 sigma
     * (G = 32) or 2 x 2.3 sigma (G = 64); uniform steps of span/qmax give MSE
     * step^2/12: 3-bit g32 ~0.027, g64 ~0.036, 2-bit g32 ~0.15 (the Hadamard
     * of Gaussian data is Gaussian). Windows are about +-40% around those. */
    for (int k = 0; k < 3; k++) {
        const cq_codec_traits *c = bl_get(aff[k].name);
        double nm = bl_nmse(c, &cfg, CQ_ROLE_KEY, x, T, NULL);
        CHECK(nm > aff[k].lo && nm < aff[k].hi, "%s NMSE %.4f outside [%g, %g]", aff[k].name, nm,
              aff[k].lo, aff[k].hi);
        if (k == 2) continue; /* the bound below is in the un-rotated domain */
        nb = c->packed_bytes(&cfg, CQ_ROLE_KEY, T);
        buf = malloc(nb);
        c->encode(&cfg, CQ_ROLE_KEY, x, T, buf, nb, &e);
        c->decode(&cfg, CQ_ROLE_KEY, buf, nb, T, out);
        int bad = 0;
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t g = 0; g < D / aff[k].G; g++) {
                double lo = 1e9, hi = -1e9;
                for (uint32_t j = 0; j < aff[k].G; j++) {
                    double v = cq_f16_to_f32(x[t * D + g * aff[k].G + j]);
                    lo = fmin(lo, v), hi = fmax(hi, v);
                }
                double s = (hi - lo) / aff[k].qmax;
                for (uint32_t j = 0; j < aff[k].G; j++) {
                    size_t i = t * D + g * aff[k].G + j;
                    double err = fabs(out[i] - cq_f16_to_f32(x[i]));
                    bad += err > s / 2 + aff[k].qmax * s * 0x1p-11 + 1e-5;
                }
            }
        CHECK(bad == 0, "%s: %d elements beyond the half-step bound", aff[k].name, bad);
        free(buf);
    }
    /* meta8 metadata costs little accuracy; meta4 more; the 2-bit versions lose a lot */
    double g64 = bl_nmse(bl_get("affine_seven_level_3bit_g64"), &cfg, CQ_ROLE_KEY, x, T, NULL);
    double m8 = bl_nmse(bl_get("affine_seven_level_3bit_g64_meta8"), &cfg, CQ_ROLE_KEY, x, T, NULL);
    double m4 = bl_nmse(bl_get("affine_seven_level_3bit_g64_meta4"), &cfg, CQ_ROLE_KEY, x, T, NULL);
    CHECK(m8 < 1.05 * g64 && m8 > 0.95 * g64, "meta8 %.5f vs plain %.5f", m8, g64);
    CHECK(m4 > m8 && m4 < 2.0 * g64, "meta4 %.5f vs meta8 %.5f", m4, m8);
    /* channelwise on unit Gaussians: s = 0.6*0.674 + 0.4*0.798 = 0.724, levels
     * 0.55 s = 0.398 and 1.85 s = 1.340, switch at 0.75 s = 0.543 (well below
     * the midpoint 0.869, which costs accuracy): E[(|x| - level)^2] integrates
     * to 0.187 for N(0,1). Window +-15%. */
    double cw = bl_nmse(bl_get("channelwise_four_level_2bit"), &cfg, CQ_ROLE_KEY, x, T, NULL);
    CHECK(cw > 0.16 && cw < 0.215, "channelwise NMSE %.4f", cw);
    free(x), free(out);
}

int main(void) {
    test_modeled();
    test_sizes();
    test_hand_bytes();
    test_hadamard_signs();
    test_errors();
    return cq_test_done("test_megaquant");
}
