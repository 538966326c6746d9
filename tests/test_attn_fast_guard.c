/* SPDX-License-Identifier: MIT */
/*
 * test_attn_fast_guard.c - the FAST precision's key guard (docs/CACHE.md, "Tolerance"): a
 * key-group run whose 8-bit query blocks could move a score by more than CQ_FAST_KEY_DELTA
 * (1 nat) takes the EXACT dot, so FAST gives EXACT's bits there; below the threshold FAST's
 * own arithmetic runs. Checked at both sides of the threshold with a bound computed by hand
 * (every block holding the row's max, so every block step is max / 127: delta = 4 * max *
 * kept / 127), and on an adversarial row (one huge channel with constant keys in a block of
 * small ones: FAST without the guard rounds the small ones to zero and was off by 0.3 to 1.1
 * of max |ref|), for every kernel table, token-major and tiled key groups, decode and
 * prefill. CQ-8 values, whose arithmetic is the same in both precisions, so the keys decide.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_test.h"
#include "util/cache_testutil.h"

enum { D = 16, NQ = 2, MAXT = 3 * 32 + 5 };

static cq_cache *make(const char *kern, uint32_t G) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, 1, D);
    cfg.key_codec = CQ_CODEC_CQ4;
    cfg.val_codec = CQ_CODEC_CQ8;
    cfg.group = G;
    cfg.kernels = kern;
    cq_cache *c = NULL;
    cq_err e;
    if (cq_cache_create(&cfg, &c, &e) != CQ_OK) return NULL;
    return c;
}

/* Keys: integers in [-7, 7] with +-7 in every channel of every group (token 0 of the group), so
 * every stored channel scale is exactly 1 and the codes are the keys; channel 0 is 7 on every
 * token when const0 (a constant key channel: the same term in every score). Values random. */
static void fill_kv(cq_rng *r, uint32_t T, uint32_t G, int const0, uint16_t *K, uint16_t *V) {
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t c = 0; c < D; c++) {
            int k = (int)cq_rng_below(r, 15) - 7;
            if (t % G == 0) k = (c + t / G) % 2 ? 7 : -7;
            if (const0 && c == 0) k = 7;
            K[t * D + c] = cq_f32_to_f16((float)k);
            V[t * D + c] = cq_f32_to_f16((float)cq_rng_normal(r));
        }
}

/* Decode of the last token and prefill of the last 4 rows, in one precision. */
static cq_status run(const cq_cache *c, uint32_t T, const float *q, uint32_t prec, float *dec,
                     float *pre) {
    const cq_attn_opts o = {1, 1.0f, prec, NULL};
    cq_err e;
    cq_status st = cq_cache_attend(c, 0, q + (size_t)3 * NQ * D, NQ, dec, &o, &e);
    if (st) return st;
    return cq_cache_attend_prefill(c, 0, q, 4, T - 4, NQ, pre, &o, &e);
}

/* The query rows [4][NQ][D]: in every block of 8 channels one channel at +-amax and the
 * others at +-amax * u, u in [0.05, 0.9]; with huge, channel 0 is 1000 and the rest of its
 * block at most 0.4. */
static void fill_q(cq_rng *r, float amax, int huge, float *q) {
    for (uint32_t i = 0; i < 4 * NQ; i++)
        for (uint32_t c = 0; c < D; c++) {
            float u = 0.05f + 0.85f * (float)cq_rng_uniform(r);
            float a = c % 8 == (i % 8) ? amax : amax * u;
            if (huge) a = c == 0 ? 1000.0f : c < 8 ? 0.4f * u : 1.0f;
            q[i * D + c] = cq_rng_below(r, 2) ? a : -a;
        }
}

int main(void) {
    static const char *const KERNS[] = {"scalar", "avx2", "avx512"};
    static const uint32_t GS[] = {16, 32}; /* token-major and tiled key groups */
    cq_rng r;
    cq_rng_seed(&r, 4242);
    int tables = 0;
    for (int kn = 0; kn < 3; kn++)
        for (int gi = 0; gi < 2; gi++) {
            const uint32_t G = GS[gi], T = 3 * G + 5;
            cq_cache *probe = make(KERNS[kn], G);
            if (!probe) { /* a SIMD=0 build or a CPU without the table */
                CHECK(kn > 0, "the scalar table exists");
                continue;
            }
            cq_cache_free(probe);
            tables++;
            /* delta = 4 * amax * 16 / 127: 0.76 (FAST runs) and 1.26 (EXACT runs) */
            for (int side = 0; side < 3; side++) {
                const float amax = side == 0 ? 1.5f : 2.5f;
                const int huge = side == 2;
                cq_cache *c = make(KERNS[kn], G);
                uint16_t K[MAXT * D], V[MAXT * D];
                fill_kv(&r, T, G, huge, K, V);
                cq_err e;
                CHECK(cq_cache_append(c, 0, K, V, T, &e) == CQ_OK, "append: %s", e.msg);
                float q[4 * NQ * D], ex[NQ * D], fa[NQ * D], exp_[4 * NQ * D], fap[4 * NQ * D],
                    ref[4 * NQ * D];
                fill_q(&r, amax, huge, q);
                CHECK(run(c, T, q, CQ_ATTN_EXACT, ex, exp_) == CQ_OK, "exact");
                CHECK(run(c, T, q, CQ_ATTN_FAST, fa, fap) == CQ_OK, "fast");
                const char *what = side == 0   ? "delta 0.76"
                                   : side == 1 ? "delta 1.26"
                                               : "huge channel";
                if (side == 0) {
                    CHECK(ctu_first_diff(fa, ex, NQ * D) >= 0 ||
                              ctu_first_diff(fap, exp_, 4 * NQ * D) >= 0,
                          "%s G %u: %s runs FAST (its bits differ from EXACT's)", KERNS[kn], G,
                          what);
                } else {
                    CHECK(ctu_first_diff(fa, ex, NQ * D) < 0,
                          "%s G %u %s: FAST decode = EXACT bits", KERNS[kn], G, what);
                    CHECK(ctu_first_diff(fap, exp_, 4 * NQ * D) < 0,
                          "%s G %u %s: FAST prefill = EXACT bits", KERNS[kn], G, what);
                }
                /* against the double reference within EXACT's bound (docs/CACHE.md) */
                CHECK(cq_cache_attend_ref(c, 0, q, 4, T - 4, NQ, ref, 1.0f, &e) == CQ_OK, "ref");
                double lmax = 0.0;
                for (uint32_t i = 0; i < 4 * NQ; i++)
                    for (uint32_t t = 0; t < T; t++) {
                        double l = 0.0;
                        for (uint32_t ch = 0; ch < D; ch++)
                            l += fabs((double)q[i * D + ch] * cq_f16_to_f32(K[t * D + ch]));
                        if (l > lmax) lmax = l;
                    }
                const double bound = 2e-5 + 8.0 * 0x1p-23 * lmax;
                if (side > 0) {
                    double err = ctu_rel_err(fap, ref, 4 * NQ * D);
                    CHECK(err <= bound, "%s G %u %s: FAST prefill rel err %g > EXACT's bound %g",
                          KERNS[kn], G, what, err, bound);
                    err = ctu_rel_err(fa, ref + 3 * NQ * D, NQ * D);
                    CHECK(err <= bound, "%s G %u %s: FAST decode rel err %g > EXACT's bound %g",
                          KERNS[kn], G, what, err, bound);
                }
                cq_cache_free(c);
            }
        }
    CHECK(tables >= 2, "at least the scalar table in both layouts");
    return cq_test_done("test_attn_fast_guard");
}
