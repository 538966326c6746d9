/*
 * test_cache_attn.c - attention over the compressed cache against the
 * reference (read back, exact attention in double): every key/value format,
 * awkward D and G, sinks, the in-flight group, flushed partial groups, GQA,
 * split-KV over long contexts, prefill with the causal mask, thread-count
 * independence, concurrent callers, and the real Qwen2-0.5B slices.
 * The bound (docs/CACHE.md): per call, max |out - ref| / max |ref| <=
 * TOL + 8 * 2^-23 * Lmax, where Lmax = max over query rows and tokens of
 * scale * sum_c |q_c k_c| (fp32 score rounding grows with the logit size).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_test.h"
#include "cq_vectors.h"
#include "util/cache_testutil.h"

#define TOL 2e-5

static const cq_codec_id FMT[] = {CQ_CODEC_FP16, CQ_CODEC_CQ8, CQ_CODEC_CQ4, CQ_CODEC_CQ4P};
static double worst;

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

static int check_decode(const cq_cache *c, uint32_t layer, const float *q, uint32_t nq, uint32_t thr,
                        const char *what) {
    const uint32_t D = cq_cache_get_config(c)->head_dim;
    float *o = malloc((size_t)nq * D * 4), *ref = malloc((size_t)nq * D * 4);
    cq_attn_opts op = {thr, 0.0f};
    cq_err e;
    cq_status s1 = cq_cache_attend(c, layer, q, nq, o, &op, &e);
    uint32_t T = cq_cache_tokens(c, layer);
    cq_status s2 = cq_cache_attend_ref(c, layer, q, 1, T - 1, nq, ref, 0.0f, NULL);
    double err = ctu_rel_err(o, ref, (size_t)nq * D);
    double bound = TOL + 8.0 * ldexp(1.0, -23) * logit_l1(c, layer, q, nq);
    if (err / bound > worst) worst = err / bound;
    int ok = !s1 && !s2 && err <= bound;
    if (!ok) fprintf(stderr, "%s: status %s/%s rel err %.3g bound %.3g\n", what,
                     cq_status_name(s1), cq_status_name(s2), err, bound);
    free(o);
    free(ref);
    return ok;
}

static void test_formats(void) {
    cq_rng r;
    cq_rng_seed(&r, 21);
    static const uint32_t dims[] = {2, 40, 64, 128, 130};
    int bad = 0, n = 0;
    static const char *const KERNS[] = {"scalar", "avx2"};
    for (int kn = 0; kn < 2; kn++) {
        const char *kern = KERNS[kn];
        cq_cache *probe = make(1, 1, 8, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 8, 0, kern, 0, NULL);
        if (!probe) { /* a SIMD=0 build or a CPU without AVX2: the scalar pass covers it */
            CHECK(kn == 1, "scalar kernels must exist");
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
        cq_attn_opts a1 = {1, 0}, a2 = {2, 0}, a3 = {3, 0};
        cq_cache_attend(c, 0, q, nq, o1, &a1, NULL);
        cq_cache_attend(c, 0, q, nq, o2, &a2, NULL);
        cq_cache_attend(c, 0, q, nq, o3, &a3, NULL);
        CHECK(ctu_first_diff(o1, o2, nq * D) < 0 && ctu_first_diff(o1, o3, nq * D) < 0,
              "results independent of the thread count");
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
        cq_attn_opts op = {2, 0.1f};
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
    cq_attn_opts op = {2, 0};
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
            bad += !check_decode(c, 0, q, 2, 1, "qwen");
            n++;
            cq_cache_free(c);
        }
        cq_slice_free(&s);
    }
    cq_slice_manifest_free(&m);
    CHECK(bad == 0 && n == 80, "qwen slices: %d of %d outside the bound", bad, n);
}

int main(void) {
    test_formats();
    test_long();
    test_prefill();
    test_concurrent();
    test_qwen();
    printf("worst error seen: %.3g of the bound\n", worst);
    return cq_test_done("test_cache_attn");
}
