/* SPDX-License-Identifier: MIT */
/*
 * baseline_common.h - checks every baseline codec must pass through the
 * registry interface, shared by test_turbo.c, test_rotor.c and
 * test_megaquant.c (static functions: each test binary has its own CHECK
 * counters). Included after cq_test.h.
 *
 *   bl_contract():  exact packed size, deterministic encode, non-finite input
 *                   refused with token/channel named and dst untouched, short
 *                   buffers refused, decode of arbitrary bytes safe (ASan/UBSan
 *                   runs make that a real check), wrong length refused.
 *   bl_nmse():      encode + decode NMSE of a block.
 *   bl_gauss():     N(0, sd^2) fp16 block from the project RNG.
 */
#ifndef CQ_BASELINE_COMMON_H
#define CQ_BASELINE_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channelquant.h"
#include "cq_test.h"

static inline void bl_gauss(uint16_t *x, size_t n, double sd, uint64_t seed) {
    cq_rng r;
    cq_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = cq_f64_to_f16(sd * cq_rng_normal(&r));
}

static inline const cq_codec_traits *bl_get(const char *name) {
    const cq_codec_traits *c = cq_codec_find(name);
    CHECK(c != NULL, "codec %s not registered", name);
    return c;
}

/* NMSE = sum (x_hat - x)^2 / sum x^2 of one encode/decode; -1 on failure. */
static inline double bl_nmse(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role,
                      const uint16_t *x, uint32_t T, float *maxerr) {
    size_t n = (size_t)T * cfg->dim, nb = c->packed_bytes(cfg, role, T);
    uint8_t *buf = malloc(nb + 1);
    float *out = malloc(n * sizeof *out);
    double se = 0.0, sx = 0.0;
    cq_err e;
    int ok = buf && out && c->encode(cfg, role, x, T, buf, nb, &e) == CQ_OK &&
             c->decode(cfg, role, buf, nb, T, out) == CQ_OK;
    CHECK(ok, "%s: round trip failed", c->name);
    if (maxerr) *maxerr = 0.0f;
    for (size_t i = 0; ok && i < n; i++) {
        double xv = cq_f16_to_f32(x[i]), d = out[i] - xv;
        se += d * d, sx += xv * xv;
        if (maxerr && fabs(d) > *maxerr) *maxerr = (float)fabs(d);
    }
    free(buf), free(out);
    return ok ? se / sx : -1.0;
}

static inline void bl_contract(const cq_codec_traits *c, const cq_codec_cfg *cfg, uint32_t T,
                        size_t expect_bytes) {
    uint32_t D = cfg->dim;
    size_t n = (size_t)T * D;
    for (int r = 0; r < 2; r++) {
        cq_role role = (cq_role)r;
        CHECK(cq_codec_supports(c, cfg, role) == CQ_OK, "%s D=%u role %d unsupported", c->name, D, r);
        size_t nb = c->packed_bytes(cfg, role, T);
        CHECK(nb == expect_bytes, "%s D=%u T=%u: packed_bytes %zu, expected %zu", c->name, D, T,
              nb, expect_bytes);
        uint16_t *x = malloc(n * 2);
        uint8_t *a = malloc(nb + 16), *b = malloc(nb + 16);
        float *out = malloc(n * sizeof *out);
        bl_gauss(x, n, 0.7, 1000 + D + T);
        cq_err e;
        memset(a, 0xA5, nb + 16);
        memset(b, 0x5A, nb + 16);
        CHECK(c->encode(cfg, role, x, T, a, nb, &e) == CQ_OK, "%s encode: %s", c->name, e.msg);
        CHECK(c->encode(cfg, role, x, T, b, nb, &e) == CQ_OK, "%s encode 2", c->name);
        CHECK(memcmp(a, b, nb) == 0, "%s: encode is not deterministic", c->name);
        CHECK(a[nb] == 0xA5 && b[nb] == 0x5A, "%s: encode wrote past packed_bytes", c->name);
        CHECK(c->decode(cfg, role, a, nb, T, out) == CQ_OK, "%s decode", c->name);
        /* a short destination is refused */
        if (nb) CHECK(c->encode(cfg, role, x, T, b, nb - 1, &e) == CQ_ERR_BUFFER, "%s short dst", c->name);
        /* non-finite input: refused, located, nothing written */
        uint32_t bt = T > 3 ? 3 : T - 1, bc = D > 5 ? 5 : D - 1;
        uint16_t keep = x[(size_t)bt * D + bc];
        const uint16_t bad[3] = {0x7C00, 0xFC00, 0x7E01};
        for (int k = 0; k < 3; k++) {
            x[(size_t)bt * D + bc] = bad[k];
            memset(b, 0x5A, nb + 16);
            cq_err_clear(&e);
            cq_status st = c->encode(cfg, role, x, T, b, nb, &e);
            int untouched = 1;
            for (size_t i = 0; i < nb + 16; i++) untouched &= b[i] == 0x5A;
            CHECK(st == CQ_ERR_NONFINITE && e.token == bt && e.channel == (int32_t)bc && untouched,
                  "%s: non-finite %04x: status %d token %lld channel %d untouched %d", c->name,
                  bad[k], (int)st, (long long)e.token, e.channel, untouched);
        }
        x[(size_t)bt * D + bc] = keep;
        /* decode is safe on arbitrary bytes of the right length, and refuses others */
        cq_rng g;
        cq_rng_seed(&g, 77 + nb);
        for (int trial = 0; trial < 8; trial++) {
            for (size_t i = 0; i < nb; i++)
                b[i] = trial == 0 ? 0xFF : trial == 1 ? 0x00 : (uint8_t)cq_rng_u64(&g);
            CHECK(c->decode(cfg, role, b, nb, T, out) == CQ_OK, "%s: decode of random bytes", c->name);
        }
        CHECK(c->decode(cfg, role, a, nb + 1, T, out) == CQ_ERR_BUFFER, "%s: long src accepted", c->name);
        if (nb) CHECK(c->decode(cfg, role, a, nb - 1, T, out) == CQ_ERR_BUFFER, "%s: short src accepted", c->name);
        free(x), free(a), free(b), free(out);
    }
}

#endif
