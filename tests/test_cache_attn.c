/* SPDX-License-Identifier: MIT */
/*
 * test_cache_attn.c - attention over the compressed cache against the
 * reference (read back, exact attention in double): every key/value format,
 * awkward D and G, sinks, the in-flight group, flushed partial groups, GQA,
 * split-KV over long contexts, prefill with the causal mask, thread-count
 * independence, concurrent callers, and the real Qwen2-0.5B slices.
 * The bound (docs/CACHE.md): per call, max |out - ref| / max |ref| <=
 * TOL + 8 * 2^-23 * Lmax, where Lmax = max over query rows and tokens of
 * scale * sum_c |q_c k_c| (fp32 score rounding grows with the logit size).
 * FAST precision (8-bit query blocks for CQ-4 / CQ-4+ keys) adds
 * (exp(2 delta) - 1) * max|V| / max|ref|, delta the largest score error its
 * rounding allows (fast_delta below), and for INT4 values (7-bit dithered weights per
 * tile of CQ_V8_TILE tokens) the term of fast_vterm; every call is checked in both
 * precisions.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_test.h"
#include "cq_vectors.h"
#include "util/cache_testutil.h"
#include "../src/kernels/cq_kernels.h" /* CQ_Q8_BLOCK, CQ_Q8_SHIFT_MAX */

#define TOL 2e-5

static const cq_codec_id FMT[] = {CQ_CODEC_FP16, CQ_CODEC_CQ8, CQ_CODEC_CQ4, CQ_CODEC_CQ4P};
static double worst, worst_fast, worst_fast_rel, last_fast_rel;

static cq_cache *make(uint32_t NL, uint32_t H, uint32_t D, cq_codec_id k, cq_codec_id v, uint32_t G,
                      uint32_t S, const char *kern, int generic, const uint8_t *masks) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, NL, H, D);
    cfg.key_codec = k;
    cfg.val_codec = v;
    cfg.group = G;
    cfg.n_sinks = S;
    cfg.kernels = kern;
    cfg.force_generic = (uint32_t)generic;
    cfg.outlier_masks = masks;
    cq_cache *c = NULL;
    cq_err e;
    if (cq_cache_create(&cfg, &c, &e)) fprintf(stderr, "create: %s\n", e.msg);
    return c;
}

/* Lmax: max over query rows and tokens of scale * sum_c |q_c k_c| over the read-back keys */
static double logit_l1(const cq_cache *c, uint32_t layer, const float *q, uint32_t nq) {
    const cq_cache_config *cfg = cq_cache_get_config(c);
    const uint32_t D = cfg->head_dim, H = cfg->n_kv_heads, T = cq_cache_tokens(c, layer);
    float *K = malloc((size_t)T * D * 4);
    double mx = 0.0;
    for (uint32_t h = 0; h < H; h++) {
        cq_cache_read(c, layer, h, 0, T, K, NULL, NULL);
        for (uint32_t g = h * (nq / H); g < (h + 1) * (nq / H); g++)
            for (uint32_t t = 0; t < T; t++) {
                double a = 0.0;
                for (uint32_t d = 0; d < D; d++) a += fabs((double)q[(size_t)g * D + d] * K[(size_t)t * D + d]);
                if (a > mx) mx = a;
            }
    }
    free(K);
    return mx / sqrt((double)D);
}

/* FAST precision: the largest key-score error the 8-bit query rounding allows, over
 * query rows and CQ-4 / CQ-4+ key tokens: per key group, s_c = max_t |K_tc| / 7 (the
 * stored scale: the group's largest code is +-7), codes K_tc / s_c, the folded query
 * x_c = scale * q_c * s_c over the kept channels in blocks of CQ_Q8_BLOCK, block step
 * d_b <= max(2 a_b, amax / 2^11) / 127 (a_b = max |x| over the block, amax over all),
 * error <= sum_b d_b / 2 * sum_{c in b} |code_c|. Sinks and fp16 tokens count as
 * keys too (an upper bound). 0 for other key formats. */
static double fast_delta(const cq_cache *c, uint32_t layer, const float *q, uint32_t nq) {
    const cq_cache_config *cfg = cq_cache_get_config(c);
    if (cfg->key_codec != CQ_CODEC_CQ4 && cfg->key_codec != CQ_CODEC_CQ4P) return 0.0;
    const uint32_t D = cfg->head_dim, H = cfg->n_kv_heads, T = cq_cache_tokens(c, layer);
    const uint32_t G = cfg->group ? cfg->group : 128, S = cfg->n_sinks;
    const double scale = 1.0 / sqrt((double)D);
    float *K = malloc((size_t)T * D * 4);
    double *s = malloc(D * sizeof *s), *x = malloc(D * sizeof *x), best = 0.0;
    uint32_t *kept = malloc(D * sizeof *kept);
    for (uint32_t h = 0; h < H; h++) {
        cq_cache_read(c, layer, h, 0, T, K, NULL, NULL);
        const uint8_t *mask = cfg->key_codec == CQ_CODEC_CQ4P && cfg->outlier_masks
                                  ? cfg->outlier_masks + ((size_t)layer * H + h) * D : NULL;
        uint32_t nk = 0;
        for (uint32_t d = 0; d < D; d++)
            if (!mask || !mask[d]) kept[nk++] = d;
        for (uint32_t g0 = 0; g0 < T; g0 = g0 < S ? S : g0 + G) {
            uint32_t g1 = g0 < S ? S : (g0 + G < T ? g0 + G : T);
            if (g1 > T) g1 = T;
            for (uint32_t d = 0; d < D; d++) {
                double m = 0.0;
                for (uint32_t t = g0; t < g1; t++) m = fmax(m, fabs((double)K[(size_t)t * D + d]));
                s[d] = m / 7.0;
            }
            for (uint32_t row = h * (nq / H); row < (h + 1) * (nq / H); row++) {
                double amax = 0.0;
                for (uint32_t j = 0; j < nk; j++) {
                    x[j] = fabs(scale * q[(size_t)row * D + kept[j]] * s[kept[j]]);
                    amax = fmax(amax, x[j]);
                }
                for (uint32_t t = g0; t < g1; t++) {
                    double e = 0.0;
                    for (uint32_t b = 0; b < nk; b += CQ_Q8_BLOCK) {
                        double ab = 0.0, codes = 0.0;
                        for (uint32_t j = b; j < nk && j < b + CQ_Q8_BLOCK; j++) {
                            ab = fmax(ab, x[j]);
                            uint32_t d = kept[j];
                            if (s[d] > 0.0) codes += fabs((double)K[(size_t)t * D + d]) / s[d];
                        }
                        e += fmax(2.0 * ab, ldexp(amax, -(int)CQ_Q8_SHIFT_MAX)) / 127.0 / 2.0 * codes;
                    }
                    best = fmax(best, e);
                }
            }
        }
    }
    free(K);
    free(s);
    free(x);
    free(kept);
    return best * (1.0 + 1e-4) + 1e-12; /* slack for the fp32 folding of x */
}

/* FAST precision, INT4 values: a token's weighted value w_t vs_t is rounded to a step of
 * d = A / CQ_V8_MAX (A the largest w vs of its tile, dithered rounding: error < d), and a
 * code is at most 8 in magnitude, so max_c |acc error| <= 8 / CQ_V8_MAX * sum_t A(t), A(t)
 * <= max of w vs over the tokens within CQ_V8_TILE - 1 of t (any tile holding t lies
 * there). Weights here are the exact softmax's, times exp(2 delta) for the FAST key
 * scores; vs_t = max_c |V_tc| / 7 (the stored scale). Per query row, over L = sum w.
 * 0 unless the values are INT4. */
static double fast_vterm(const cq_cache *c, uint32_t layer, const float *q, uint32_t nq,
                         double delta) {
    const cq_cache_config *cfg = cq_cache_get_config(c);
    if (cfg->val_codec != CQ_CODEC_CQ4 && cfg->val_codec != CQ_CODEC_CQ4P) return 0.0;
    const uint32_t D = cfg->head_dim, H = cfg->n_kv_heads, T = cq_cache_tokens(c, layer);
    const int R = (int)CQ_V8_TILE - 1;
    float *K = malloc((size_t)T * D * 4), *V = malloc((size_t)T * D * 4);
    double *wv = malloc(T * sizeof *wv), *vs = malloc(T * sizeof *vs), best = 0.0;
    for (uint32_t h = 0; h < H; h++) {
        cq_cache_read(c, layer, h, 0, T, K, V, NULL);
        for (uint32_t t = 0; t < T; t++) {
            double m = 0.0;
            for (uint32_t d = 0; d < D; d++) m = fmax(m, fabs((double)V[(size_t)t * D + d]));
            vs[t] = m / 7.0;
        }
        for (uint32_t row = h * (nq / H); row < (h + 1) * (nq / H); row++) {
            double mx = -INFINITY, L = 0.0, sum = 0.0;
            for (uint32_t t = 0; t < T; t++) {
                double a = 0.0;
                for (uint32_t d = 0; d < D; d++) a += (double)q[(size_t)row * D + d] * K[(size_t)t * D + d];
                wv[t] = a / sqrt((double)D);
                mx = fmax(mx, wv[t]);
            }
            for (uint32_t t = 0; t < T; t++) {
                double w = exp(wv[t] - mx);
                L += w;
                wv[t] = w * vs[t];
            }
            for (int t = 0; t < (int)T; t++) {
                double a = 0.0;
                for (int u = t - R < 0 ? 0 : t - R; u <= t + R && u < (int)T; u++) a = fmax(a, wv[u]);
                sum += a;
            }
            best = fmax(best, 8.0 / CQ_V8_MAX * exp(2.0 * delta) * sum / L);
        }
    }
    free(K);
    free(V);
    free(wv);
    free(vs);
    return best;
}

static double max_abs_v(const cq_cache *c, uint32_t layer) {
    const cq_cache_config *cfg = cq_cache_get_config(c);
    const uint32_t D = cfg->head_dim, T = cq_cache_tokens(c, layer);
    float *V = malloc((size_t)T * D * 4);
    double m = 0.0;
    for (uint32_t h = 0; h < cfg->n_kv_heads; h++) {
        cq_cache_read(c, layer, h, 0, T, NULL, V, NULL);
        for (size_t i = 0; i < (size_t)T * D; i++) m = fmax(m, fabs((double)V[i]));
    }
    free(V);
    return m;
}

static int check_decode(const cq_cache *c, uint32_t layer, const float *q, uint32_t nq, uint32_t thr,
                        const char *what) {
    const uint32_t D = cq_cache_get_config(c)->head_dim;
    float *o = malloc((size_t)nq * D * 4), *ref = malloc((size_t)nq * D * 4);
    uint32_t T = cq_cache_tokens(c, layer);
    cq_status s2 = cq_cache_attend_ref(c, layer, q, 1, T - 1, nq, ref, 0.0f, NULL);
    double den = 1e-30;
    for (size_t i = 0; i < (size_t)nq * D; i++) den = fmax(den, fabs((double)ref[i]));
    const double exact = TOL + 8.0 * ldexp(1.0, -23) * logit_l1(c, layer, q, nq);
    const double delta = fast_delta(c, layer, q, nq);
    int ok = !s2;
    for (uint32_t prec = CQ_ATTN_EXACT; prec <= CQ_ATTN_FAST; prec++) {
        cq_attn_opts op = {thr, 0.0f, prec, NULL};
        cq_err e;
        cq_status s1 = cq_cache_attend(c, layer, q, nq, o, &op, &e);
        double err = ctu_rel_err(o, ref, (size_t)nq * D);
        double bound = exact;
        if (prec == CQ_ATTN_FAST)
            bound += (expm1(2.0 * delta) * max_abs_v(c, layer) + fast_vterm(c, layer, q, nq, delta)) / den;
        double *w = prec == CQ_ATTN_FAST ? &worst_fast : &worst;
        if (err / bound > *w) *w = err / bound;
        if (prec == CQ_ATTN_FAST && err > worst_fast_rel) worst_fast_rel = err;
        if (prec == CQ_ATTN_FAST) last_fast_rel = err;

        if (s1 || err > bound) {
            ok = 0;
            fprintf(stderr, "%s (%s): status %s/%s rel err %.3g bound %.3g\n", what,
                    prec == CQ_ATTN_FAST ? "fast" : "exact", cq_status_name(s1),
                    cq_status_name(s2), err, bound);
        }
    }
    free(o);
    free(ref);
    return ok;
}

static void test_formats(void) {
    cq_rng r;
    cq_rng_seed(&r, 21);
    static const uint32_t dims[] = {2, 40, 64, 128, 130};
    int bad = 0, n = 0;
    static const char *const KERNS[] = {"scalar", "avx2", "avx512"};
    for (int kn = 0; kn < 3; kn++) {
        const char *kern = KERNS[kn];
        cq_cache *probe = make(1, 1, 8, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 8, 0, kern, 0, NULL);
        if (!probe) { /* a SIMD=0 build or a CPU without it: the scalar pass covers it */
            CHECK(kn > 0, "scalar kernels must exist");
            continue;
        }
        cq_cache_free(probe);
        for (size_t di = 0; di < 5; di++)
            for (int ki = 0; ki < 4; ki++)
                for (int vi = 0; vi < 4; vi++) {
                    const uint32_t D = dims[di], H = 2, nq = 2 * (1 + cq_rng_below(&r, 3));
                    const uint32_t G = (uint32_t[]){1, 16, 128}[cq_rng_below(&r, 3)];
                    const uint32_t T = 1 + cq_rng_below(&r, 700), S = cq_rng_below(&r, 2) * 4;
                    uint8_t masks[2 * 130];
                    ctu_random_masks(&r, masks, H, D, D > 2 ? 1 + cq_rng_below(&r, 3) : 1);
                    cq_cache *c = make(1, H, D, FMT[ki], FMT[vi], G, S, kern, 0, masks);
                    CHECK(c != NULL, "create");
                    if (!c) continue;
                    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
                    ctu_fill_f16(&r, K, (size_t)T * H * D, 1.5f, 0);
                    ctu_fill_f16(&r, V, (size_t)T * H * D, 1.0f, 1);
                    cq_cache_append(c, 0, K, V, T, NULL);
                    float *q = malloc((size_t)nq * D * 4);
                    for (uint32_t i = 0; i < nq * D; i++) q[i] = (float)cq_rng_normal(&r) * 2.0f;
                    char what[128];
                    snprintf(what, sizeof what, "%s D=%u K=%d V=%d G=%u T=%u S=%u", kern, D, ki, vi,
                             G, T, S);
                    bad += !check_decode(c, 0, q, nq, 1 + (uint32_t)(T & 1), what);
                    cq_cache_flush(c, NULL);
                    bad += !check_decode(c, 0, q, nq, 2, what);
                    n += 2;
                    free(q);
                    free(K);
                    free(V);
                    cq_cache_free(c);
                }
    }
    CHECK(bad == 0, "%d of %d attention calls outside the bound", bad, n);
}

/* long context: split-KV merge, thread-count independence (bit for bit), generic path */
static void test_long(void) {
    cq_rng r;
    cq_rng_seed(&r, 8);
    const uint32_t D = 128, H = 2, nq = 8, T = 9000;
    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
    ctu_fill_f16(&r, K, (size_t)T * H * D, 1.0f, 0);
    ctu_fill_f16(&r, V, (size_t)T * H * D, 1.0f, 0);
    float q[8 * 128];
    for (uint32_t i = 0; i < nq * D; i++) q[i] = (float)cq_rng_normal(&r) * 3.0f;
    for (int variant = 0; variant < 3; variant++) {
        cq_codec_id k = variant == 1 ? CQ_CODEC_FP16 : CQ_CODEC_CQ4;
        cq_cache *c = make(1, H, D, k, variant == 1 ? CQ_CODEC_CQ8 : CQ_CODEC_CQ4, 128, 2, NULL,
                           variant == 2, NULL);
        CHECK(cq_cache_append(c, 0, K, V, T, NULL) == CQ_OK, "append");
        CHECK(check_decode(c, 0, q, nq, 2, "long"), "long context variant %d", variant);
        float o1[8 * 128], o2[8 * 128], o3[8 * 128];
        for (uint32_t prec = CQ_ATTN_EXACT; prec <= CQ_ATTN_FAST; prec++) {
            cq_attn_opts a1 = {1, 0, prec, NULL}, a2 = {2, 0, prec, NULL}, a3 = {3, 0, prec, NULL};
            cq_cache_attend(c, 0, q, nq, o1, &a1, NULL);
            cq_cache_attend(c, 0, q, nq, o2, &a2, NULL);
            cq_cache_attend(c, 0, q, nq, o3, &a3, NULL);
            CHECK(ctu_first_diff(o1, o2, nq * D) < 0 && ctu_first_diff(o1, o3, nq * D) < 0,
                  "results independent of the thread count (precision %u)", prec);
        }
        cq_cache_free(c);
    }
    free(K);
    free(V);
}

static void test_prefill(void) {
    cq_rng r;
    cq_rng_seed(&r, 4);
    const uint32_t D = 64, H = 2, nqh = 6, T = 300, NQ = 37, pos0 = T - NQ;
    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
    ctu_fill_f16(&r, K, (size_t)T * H * D, 1.0f, 0);
    ctu_fill_f16(&r, V, (size_t)T * H * D, 1.0f, 0);
    float *q = malloc((size_t)NQ * nqh * D * 4), *o = malloc((size_t)NQ * nqh * D * 4),
          *ref = malloc((size_t)NQ * nqh * D * 4);
    for (uint32_t i = 0; i < NQ * nqh * D; i++) q[i] = (float)cq_rng_normal(&r);
    for (int ki = 0; ki < 3; ki++) {
        cq_cache *c = make(2, H, D, FMT[ki], FMT[2 - ki], 32, 3, NULL, 0, NULL);
        cq_cache_append(c, 1, K, V, T, NULL);
        cq_attn_opts op = {2, 0.1f, CQ_ATTN_EXACT, NULL}; /* TOL is EXACT's bound */
        cq_err e;
        CHECK(cq_cache_attend_prefill(c, 1, q, NQ, pos0, nqh, o, &op, &e) == CQ_OK, "prefill %s",
              e.msg);
        CHECK(cq_cache_attend_ref(c, 1, q, NQ, pos0, nqh, ref, 0.1f, NULL) == CQ_OK, "ref");
        double err = ctu_rel_err(o, ref, (size_t)NQ * nqh * D);
        CHECK(err <= TOL, "prefill rel err %.3g", err);
        /* the last query of a prefill is the decode of the same token */
        float od[6 * 64];
        cq_cache_attend(c, 1, q + (size_t)(NQ - 1) * nqh * D, nqh, od, &op, NULL);
        CHECK(ctu_rel_err(od, o + (size_t)(NQ - 1) * nqh * D, nqh * D) <= TOL, "prefill = decode");
        CHECK(cq_cache_attend_prefill(c, 1, q, NQ, T - NQ + 1, nqh, o, &op, &e) == CQ_ERR_RANGE,
              "beyond the tokens");
        CHECK(cq_cache_attend(c, 0, q, nqh, o, &op, &e) == CQ_ERR_STATE, "empty layer");
        CHECK(cq_cache_attend(c, 1, q, 5, o, &op, &e) == CQ_ERR_SHAPE, "GQA shape");
        q[3] = NAN;
        CHECK(cq_cache_attend(c, 1, q, nqh, o, &op, &e) == CQ_ERR_NONFINITE, "NaN query");
        q[3] = 0.5f;
        cq_cache_free(c);
    }
    free(q);
    free(o);
    free(ref);
    free(K);
    free(V);
}

typedef struct conc_arg {
    const cq_cache *c;
    const float *q;
    float out[8 * 64];
} conc_arg;

static void *conc_main(void *p) {
    conc_arg *a = p;
    cq_attn_opts op = {2, 0, 0, NULL};
    for (int i = 0; i < 20; i++) cq_cache_attend(a->c, 0, a->q, 8, a->out, &op, NULL);
    return NULL;
}

static void test_concurrent(void) {
    cq_rng r;
    cq_rng_seed(&r, 6);
    const uint32_t D = 64, H = 2, T = 5000;
    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
    ctu_fill_f16(&r, K, (size_t)T * H * D, 1.0f, 0);
    ctu_fill_f16(&r, V, (size_t)T * H * D, 1.0f, 0);
    cq_cache *c = make(1, H, D, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 128, 0, NULL, 0, NULL);
    cq_cache_append(c, 0, K, V, T, NULL);
    float q[8 * 64], want[8 * 64];
    for (int i = 0; i < 8 * 64; i++) q[i] = (float)cq_rng_normal(&r);
    cq_cache_attend(c, 0, q, 8, want, NULL, NULL);
    conc_arg a[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        a[i].c = c;
        a[i].q = q;
        pthread_create(&th[i], NULL, conc_main, &a[i]);
    }
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++)
        CHECK(ctu_first_diff(a[i].out, want, 8 * 64) < 0, "concurrent caller %d", i);
    cq_cache_free(c);
    free(K);
    free(V);
}

/* real data: Qwen2-0.5B slices as K/V of one head, CQ-4+ keys with the slice's mask */
static void test_qwen(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/vectors/qwen2-0.5b", cq_test_shared());
    cq_slice_manifest m;
    cq_err e;
    if (cq_slice_manifest_load(dir, &m, &e)) {
        CHECK(0, "qwen slices: %s", e.msg);
        return;
    }
    int bad = 0, n = 0;
    double fe[4][64]; /* FAST relative error per variant and slice, for the summary */
    for (uint32_t i = 0; i < m.count; i++) {
        cq_slice s;
        if (cq_slice_load(dir, &m, i, &s, &e)) {
            CHECK(0, "slice %u: %s", i, e.msg);
            continue;
        }
        const uint32_t D = s.D, T = s.T;
        for (int variant = 0; variant < 4; variant++) {
            cq_codec_id k = variant == 3 ? CQ_CODEC_CQ4 : CQ_CODEC_CQ4P;
            cq_cache *c = make(1, 1, D, k, variant == 2 ? CQ_CODEC_CQ8 : CQ_CODEC_CQ4,
                               variant == 0 ? 128 : 32, variant == 1 ? 4 : 0,
                               variant & 1 ? "scalar" : NULL, 0, s.mask);
            CHECK(cq_cache_append(c, 0, s.key, s.val, T, &e) == CQ_OK, "append %s", e.msg);
            if (variant == 2) cq_cache_flush(c, NULL);
            /* queries: real key rows of the slice (realistic magnitudes), GQA 2 */
            float q[2 * 512];
            for (uint32_t d = 0; d < D; d++) {
                q[d] = cq_f16_to_f32(s.key[(size_t)(T - 1) * D + d]);
                q[D + d] = cq_f16_to_f32(s.key[(size_t)(T / 3) * D + d]) * 0.5f;
            }
            char what[64];
            snprintf(what, sizeof what, "qwen slice %u variant %d", i, variant);
            bad += !check_decode(c, 0, q, 2, 1, what);
            if (i < 64) fe[variant][i] = last_fast_rel;
            n++;
            cq_cache_free(c);
        }
        cq_slice_free(&s);
    }
    static const char *const vname[4] = {"CQ-4+/CQ-4 G=128", "CQ-4+/CQ-4 G=32 S=4 scalar",
                                         "CQ-4+/CQ-8 G=32 flushed", "CQ-4/CQ-4 G=32 scalar"};
    for (int v = 0; v < 4 && m.count && m.count <= 64; v++) {
        double *x = fe[v];
        for (uint32_t a = 1; a < m.count; a++) /* insertion sort: 20 values */
            for (uint32_t b = a; b > 0 && x[b] < x[b - 1]; b--) {
                double t = x[b];
                x[b] = x[b - 1];
                x[b - 1] = t;
            }
        printf("qwen slices, FAST, %s: relative error median %.2g, max %.2g\n", vname[v],
               x[m.count / 2], x[m.count - 1]);
    }
    cq_slice_manifest_free(&m);
    CHECK(bad == 0 && n == 80, "qwen slices: %d of %d outside the bound", bad, n);
}

/* the precision option: validation, the default, the environment override */
static void test_precision_opt(void) {
    cq_rng r;
    cq_rng_seed(&r, 12);
    const uint32_t D = 64, H = 1, T = 300, nq = 2;
    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
    ctu_fill_f16(&r, K, (size_t)T * H * D, 1.0f, 0);
    ctu_fill_f16(&r, V, (size_t)T * H * D, 1.0f, 0);
    float q[2 * 64], od[2 * 64], oe[2 * 64], of[2 * 64];
    for (uint32_t i = 0; i < nq * D; i++) q[i] = (float)cq_rng_normal(&r);
    cq_cache *c = make(1, H, D, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 128, 0, NULL, 0, NULL);
    cq_cache_append(c, 0, K, V, T, NULL);
    cq_attn_opts o0 = {1, 0, 0, NULL}, oE = {1, 0, CQ_ATTN_EXACT, NULL},
                 oF = {1, 0, CQ_ATTN_FAST, NULL}, bad = {1, 0, 7, NULL};
    cq_err e;
    CHECK(cq_cache_attend(c, 0, q, nq, od, &bad, &e) == CQ_ERR_ARG, "unknown precision refused");
    CHECK(cq_cache_attend_prefill(c, 0, q, 1, T - 1, nq, od, &bad, &e) == CQ_ERR_ARG,
          "unknown precision refused (prefill)");
    unsetenv("CQ_ATTN_PRECISION");
    CHECK(cq_attn_precision_resolve(0) == CQ_ATTN_FAST, "default is fast");
    cq_cache_attend(c, 0, q, nq, od, &o0, NULL);
    cq_cache_attend(c, 0, q, nq, oe, &oE, NULL);
    cq_cache_attend(c, 0, q, nq, of, &oF, NULL);
    CHECK(ctu_first_diff(od, of, nq * D) < 0, "default = fast");
    CHECK(ctu_first_diff(oe, of, nq * D) >= 0, "fast differs from exact (the test can tell them apart)");
    setenv("CQ_ATTN_PRECISION", "exact", 1);
    CHECK(cq_attn_precision_resolve(0) == CQ_ATTN_EXACT, "env selects exact");
    cq_cache_attend(c, 0, q, nq, od, &o0, NULL);
    CHECK(ctu_first_diff(od, oe, nq * D) < 0, "env default = exact");
    cq_cache_attend(c, 0, q, nq, od, &oF, NULL);
    CHECK(ctu_first_diff(od, of, nq * D) < 0, "explicit fast wins over the environment");
    setenv("CQ_ATTN_PRECISION", "fast", 1);
    CHECK(cq_attn_precision_resolve(0) == CQ_ATTN_FAST, "env fast = fast");
    setenv("CQ_ATTN_PRECISION", "bogus", 1);
    CHECK(cq_attn_precision_resolve(0) == CQ_ATTN_FAST, "an unknown env value = the default");
    unsetenv("CQ_ATTN_PRECISION");
    cq_cache_free(c);
    free(K);
    free(V);
}

int main(void) {
    test_precision_opt();
    test_formats();
    test_long();
    test_prefill();
    test_concurrent();
    test_qwen();
    printf("worst error seen: %.3g of the bound (exact), %.3g of the bound and %.3g relative "
           "(fast)\n", worst, worst_fast, worst_fast_rel);
    return cq_test_done("test_cache_attn");
}
