/* SPDX-License-Identifier: MIT */
/*
 * test_rotor.c - PlanarQuant-3 and IsoQuant-3 through the registry: storage
 * (codes + the charged fp16 norm), error against the 3-bit Lloyd-Max
 * distortion, orthonormality of the rotations (decoded norm = stored norm x
 * centroid-vector norm for arbitrary codes), seed dependence, D limits, a
 * hand-derived byte pattern, and the common codec contract.
 */
#include "baseline_common.h"

static const double LM3[4] = {0.245094, 0.756005, 1.343909, 2.151946};

/* Centroid index i (0..7, ascending) of N(0, 1/D). */
static double cent(int i, uint32_t D) {
    double v = i >= 4 ? LM3[i - 4] : -LM3[3 - i];
    return v / sqrt((double)D);
}

static size_t rec_bytes(uint32_t D) { return (3 * (size_t)D + 7) / 8 + 2; }

static void test_storage_and_error(void) {
    const char *names[2] = {"planar3", "iso3"};
    for (int k = 0; k < 2; k++) {
        const cq_codec_traits *c = bl_get(names[k]);
        if (!c) continue;
        const uint32_t dims[3] = {64, 128, 12};
        for (int d = 0; d < 3; d++) {
            cq_codec_cfg cfg;
            cq_codec_cfg_default(&cfg, dims[d]);
            bl_contract(c, &cfg, 9, 9 * rec_bytes(dims[d]));
            CHECK(fabs(c->modeled_bpv(&cfg, CQ_ROLE_VALUE, 9) - 8.0 * rec_bytes(dims[d]) / dims[d]) < 1e-12,
                  "%s modeled", names[k]);
        }
        /* 64 x 128 Gaussian: after any rotation the unit vector's coordinates
         * are ~N(0, 1/D); Lloyd-Max 3-bit distortion is 0.03454 (relative);
         * the fp16 norm adds < 1e-6. Bounds [0.8, 1.12] x distortion. */
        uint16_t *x = malloc(64 * 128 * 2);
        bl_gauss(x, 64 * 128, 0.5, 17);
        cq_codec_cfg cfg;
        cq_codec_cfg_default(&cfg, 128);
        double nm = bl_nmse(c, &cfg, CQ_ROLE_KEY, x, 64, NULL);
        CHECK(nm > 0.8 * 0.03454 && nm < 1.12 * 0.03454, "%s NMSE %.5f", names[k], nm);
        /* another seed: another rotation, other bytes, similar error */
        uint8_t *a = malloc(64 * rec_bytes(128)), *b = malloc(64 * rec_bytes(128));
        cq_err e;
        size_t nb = 64 * rec_bytes(128);
        c->encode(&cfg, CQ_ROLE_KEY, x, 64, a, nb, &e);
        cq_codec_cfg cfg2 = cfg;
        cfg2.seed = 12345;
        c->encode(&cfg2, CQ_ROLE_KEY, x, 64, b, nb, &e);
        CHECK(memcmp(a, b, nb) != 0, "%s: the seed does not change the rotation", names[k]);
        double nm2 = bl_nmse(c, &cfg2, CQ_ROLE_KEY, x, 64, NULL);
        CHECK(nm2 > 0.8 * 0.03454 && nm2 < 1.12 * 0.03454, "%s NMSE (seed 2) %.5f", names[k], nm2);
        free(x), free(a), free(b);
    }
    cq_codec_cfg bad;
    cq_codec_cfg_default(&bad, 6);
    CHECK(cq_codec_supports(cq_codec_find("iso3"), &bad, CQ_ROLE_KEY) == CQ_ERR_DIM, "iso3 D=6");
    CHECK(cq_codec_supports(cq_codec_find("planar3"), &bad, CQ_ROLE_KEY) == CQ_OK, "planar3 D=6");
    cq_codec_cfg_default(&bad, 7);
    CHECK(cq_codec_supports(cq_codec_find("planar3"), &bad, CQ_ROLE_KEY) == CQ_ERR_DIM, "planar3 D=7");
}

/* For arbitrary codes and norm field 1.0, ||x_hat|| = ||C[idx]||: the inverse
 * rotation preserves norms (orthonormal), to 1e-6 relative. */
static void test_orthonormal(void) {
    const char *names[2] = {"planar3", "iso3"};
    cq_rng r;
    cq_rng_seed(&r, 9);
    for (int k = 0; k < 2; k++) {
        const cq_codec_traits *c = bl_get(names[k]);
        for (uint32_t D = 8; c && D <= 256; D *= 2) {
            cq_codec_cfg cfg;
            cq_codec_cfg_default(&cfg, D);
            size_t nb = rec_bytes(D);
            uint8_t blk[100];
            float out[256];
            double worst = 0;
            for (int trial = 0; trial < 20; trial++) {
                for (size_t i = 0; i < nb; i++) blk[i] = (uint8_t)cq_rng_u64(&r);
                blk[nb - 2] = 0x00, blk[nb - 1] = 0x3C; /* norm 1.0 */
                CHECK(c->decode(&cfg, CQ_ROLE_KEY, blk, nb, 1, out) == CQ_OK, "decode");
                double n2 = 0, c2 = 0;
                for (uint32_t j = 0; j < D; j++) {
                    unsigned bit = 3 * j, v = 0;
                    for (int b = 0; b < 3; b++, bit++) v |= ((blk[bit / 8] >> (bit % 8)) & 1u) << b;
                    c2 += cent((int)v, D) * cent((int)v, D);
                    n2 += (double)out[j] * out[j];
                }
                worst = fmax(worst, fabs(sqrt(n2) / sqrt(c2) - 1));
            }
            CHECK(worst < 1e-6, "%s D=%u: rotation not orthonormal (rel %g)", names[k], D, worst);
        }
    }
}

/* A vector that every rotation maps to something we can predict: the zero
 * vector (u = 0 -> every code is the smallest positive centroid, idx 4 =
 * 0b100; norm 0). 8 codes 100 in 3 bytes: bits 2,5 | 8,11,14 | 17,20,23 ->
 * 0x24 0x49 0x92. Decodes to exactly 0. */
static void test_hand_bytes(void) {
    const char *names[2] = {"planar3", "iso3"};
    for (int k = 0; k < 2; k++) {
        const cq_codec_traits *c = bl_get(names[k]);
        cq_codec_cfg cfg;
        cq_codec_cfg_default(&cfg, 64);
        uint16_t x[64] = {0};
        uint8_t got[26];
        float out[64];
        cq_err e;
        CHECK(c->encode(&cfg, CQ_ROLE_VALUE, x, 1, got, 26, &e) == CQ_OK, "enc");
        int ok = got[24] == 0 && got[25] == 0;
        for (int i = 0; i < 24; i++) ok &= got[i] == (uint8_t[]){0x24, 0x49, 0x92}[i % 3];
        CHECK(ok, "%s zero vector bytes %02x %02x %02x", names[k], got[0], got[1], got[2]);
        c->decode(&cfg, CQ_ROLE_VALUE, got, 26, 1, out);
        int z = 1;
        for (int j = 0; j < 64; j++) z &= out[j] == 0.0f;
        CHECK(z, "%s zero vector decodes to non-zero", names[k]);
    }
    /* planar with the identity: a one-hot in channel 0 of a pair rotated by
     * theta gives (cos, sin) -> codes are the nearest centroids of cos/sin;
     * check on the decoded side: x_hat lies in the span of channels 0, 1. */
    const cq_codec_traits *p = bl_get("planar3");
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 64);
    uint16_t x[64] = {0};
    x[0] = 0x3C00;
    uint8_t buf[26];
    float out[64];
    cq_err e;
    p->encode(&cfg, CQ_ROLE_KEY, x, 1, buf, 26, &e);
    p->decode(&cfg, CQ_ROLE_KEY, buf, 26, 1, out);
    /* other pairs see u = 0: code idx 4 (+0.245/8) in both coordinates, which
     * the pair rotation maps back to a vector of norm 0.245094*sqrt(2)/8 */
    double pr = sqrt((double)out[2] * out[2] + (double)out[3] * out[3]);
    CHECK(fabs(pr - 0.245094 * sqrt(2.0) / 8.0) < 1e-6, "planar3 pair (2,3) norm %.8f", pr);
    /* pair 0 rotates to (cos, sin) with max(|cos|, |sin|) >= 0.707, beyond the
     * outer centroid 2.151946/8 = 0.269: at least that coordinate saturates,
     * so the decoded pair has norm >= 0.269 (the codebook clips: a one-hot is
     * exactly the case these per-coordinate codebooks handle badly) */
    double p0 = sqrt((double)out[0] * out[0] + (double)out[1] * out[1]);
    CHECK(p0 >= 2.151946 / 8 - 1e-6 && p0 <= 2.151946 * sqrt(2.0) / 8 + 1e-6,
          "planar3: pair 0 decoded norm %.6f", p0);
}

int main(void) {
    test_storage_and_error();
    test_orthonormal();
    test_hand_bytes();
    return cq_test_done("test_rotor");
}
