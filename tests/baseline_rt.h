/* SPDX-License-Identifier: MIT */
/*
 * baseline_rt.h - helpers of the baseline codec tests (test_baselines_*.c,
 * test_ggml.c, test_fp4.c): random fp16 blocks, a registry round trip, and
 * the properties every registered codec must have whatever its method
 * (exact packed size, refusal of non-finite input with nothing written,
 * decode of arbitrary bytes, refusal of wrong lengths and unsupported D).
 * Include after cq_test.h; everything is static to the including test.
 */
#ifndef CQ_BASELINE_RT_H
#define CQ_BASELINE_RT_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channelquant.h"
#include "cq_test.h"
#include "cq_util.h"

/* Not every test uses every helper. */
#if defined(__GNUC__)
#define RT_MAYBE_UNUSED __attribute__((unused))
#else
#define RT_MAYBE_UNUSED
#endif

/* x [T][D] fp16 of N(0, sigma^2), plus `spikes` channels scaled by 20 (key-like outliers). */
RT_MAYBE_UNUSED static void rt_gauss(cq_rng *r, uint16_t *x, uint32_t T, uint32_t D, double sigma,
                     uint32_t spikes) {
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t c = 0; c < D; c++) {
            double v = sigma * cq_rng_normal(r);
            if (c < spikes) v *= 20.0;
            x[(size_t)t * D + c] = cq_f64_to_f16(v);
        }
}

/* Encode then decode through the registry. Returns the packed size (0 on failure: CHECKed). */
RT_MAYBE_UNUSED static size_t rt_roundtrip(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role,
                           const uint16_t *x, uint32_t T, float *out, uint8_t **packed) {
    size_t n = c->packed_bytes(cfg, role, T);
    uint8_t *buf = malloc(n + 1);
    cq_err e;
    cq_status st = c->encode(cfg, role, x, T, buf, n, &e);
    CHECK(st == CQ_OK, "%s: encode T=%u D=%u role=%d: %s %s", c->name, T, cfg->dim, (int)role,
          cq_status_name(st), e.msg);
    if (st == CQ_OK) {
        st = c->decode(cfg, role, buf, n, T, out);
        CHECK(st == CQ_OK, "%s: decode: %s", c->name, cq_status_name(st));
    }
    if (packed) *packed = buf;
    else free(buf);
    return st == CQ_OK ? n : 0;
}

/* NMSE = sum (x - y)^2 / sum x^2 over a [T][D] block. */
RT_MAYBE_UNUSED static double rt_nmse(const uint16_t *x, const float *y, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double a = cq_f16_to_f32(x[i]), d = a - y[i];
        num += d * d;
        den += a * a;
    }
    return den > 0 ? num / den : num;
}

/* Properties every codec of the registry must have, for one (cfg, role). */
RT_MAYBE_UNUSED static void rt_common(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role, uint32_t T,
                      uint64_t seed) {
    const uint32_t D = cfg->dim;
    cq_rng r;
    cq_rng_seed(&r, seed);
    uint16_t *x = malloc(((size_t)T * D + 1) * sizeof *x);
    float *y = malloc(((size_t)T * D + 1) * sizeof *y);
    rt_gauss(&r, x, T, D, 1.0, 2);
    const size_t n = c->packed_bytes(cfg, role, T);
    uint8_t *buf = malloc(n + 64);

    /* encode writes exactly packed_bytes and no more; a smaller cap is refused */
    memset(buf, 0xA5, n + 64);
    cq_err e;
    cq_status st = c->encode(cfg, role, x, T, buf, n, &e);
    CHECK(st == CQ_OK, "%s D=%u T=%u: %s %s", c->name, D, T, cq_status_name(st), e.msg);
    int tail_ok = 1;
    for (size_t i = n; i < n + 64; i++) tail_ok &= buf[i] == 0xA5;
    CHECK(tail_ok, "%s: encode wrote past packed_bytes", c->name);
    if (n) {
        st = c->encode(cfg, role, x, T, buf, n - 1, &e);
        CHECK(st == CQ_ERR_BUFFER, "%s: cap n-1 gave %s", c->name, cq_status_name(st));
    }
    /* deterministic */
    uint8_t *buf2 = malloc(n + 1);
    if (c->encode(cfg, role, x, T, buf2, n, NULL) == CQ_OK)
        CHECK(!memcmp(buf, buf2, n), "%s: two encodes differ", c->name);
    /* wrong lengths are refused */
    CHECK(c->decode(cfg, role, buf, n + 1, T, y) != CQ_OK, "%s: decode accepted n+1", c->name);
    if (n) CHECK(c->decode(cfg, role, buf, n - 1, T, y) != CQ_OK, "%s: decode accepted n-1", c->name);

    /* non-finite input: refused with token and channel, nothing written */
    const uint16_t bad[3] = {0x7C00, 0xFC00, 0x7E01};
    for (int k = 0; k < 3 && T > 0; k++) {
        uint32_t bt = cq_rng_below(&r, T), bc = cq_rng_below(&r, D);
        uint16_t keep = x[(size_t)bt * D + bc];
        x[(size_t)bt * D + bc] = bad[k];
        memset(buf2, 0x5A, n);
        cq_err_clear(&e);
        st = c->encode(cfg, role, x, T, buf2, n, &e);
        int untouched = 1;
        for (size_t i = 0; i < n; i++) untouched &= buf2[i] == 0x5A;
        CHECK(st == CQ_ERR_NONFINITE && e.token == bt && e.channel == (int32_t)bc && untouched,
              "%s: non-finite at (%u,%u): %s token %lld channel %d untouched %d", c->name, bt, bc,
              cq_status_name(st), (long long)e.token, e.channel, untouched);
        x[(size_t)bt * D + bc] = keep;
    }

    /* arbitrary bytes decode without complaint about content and without UB (ASan/UBSan) */
    int fuzz_ok = 1;
    for (int it = 0; it < 40; it++) {
        for (size_t i = 0; i < n; i++) buf2[i] = (uint8_t)cq_rng_u64(&r);
        if (it == 0) memset(buf2, 0xFF, n);
        if (it == 1) memset(buf2, 0x00, n);
        st = c->decode(cfg, role, buf2, n, T, y);
        /* only codecs with a validated header may refuse (outlier-top2's channel pair) */
        fuzz_ok &= st == CQ_OK || st == CQ_ERR_FORMAT;
    }
    CHECK(fuzz_ok, "%s: decode of random bytes failed unexpectedly", c->name);
    free(buf2);
    free(buf);
    free(y);
    free(x);
}

/* Unsupported D: cq_codec_supports and encode both refuse, naming CQ_ERR_DIM. */
RT_MAYBE_UNUSED static void rt_refuses_dim(const cq_codec_traits *c, uint32_t D, cq_role role) {
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cq_status st = cq_codec_supports(c, &cfg, role);
    CHECK(st == CQ_ERR_DIM, "%s: D=%u supports() gave %s", c->name, D, cq_status_name(st));
    uint16_t x[2 * 520] = {0};
    uint8_t dst[4096];
    cq_err e;
    st = c->encode(&cfg, role, x, 2, dst, sizeof dst, &e);
    CHECK(st == CQ_ERR_DIM, "%s: D=%u encode gave %s", c->name, D, cq_status_name(st));
}

#endif
