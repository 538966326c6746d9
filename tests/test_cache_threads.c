/* SPDX-License-Identifier: MIT */
/*
 * test_cache_threads.c - concurrency of the cache (include/cq_cache.h,
 * "Threading"): several threads attend (decode and prefill, each with its own
 * n_threads, so the shared pool is contended), read, account and save one
 * cache at once, and every result equals the single-threaded one bit for bit;
 * separate caches are appended in parallel and end up identical to one built
 * alone. Meant to run under ThreadSanitizer too (`make tsan`).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_test.h"
#include "util/cache_testutil.h"

enum { NL = 2, H = 4, D = 64, G = 32, NQ = 8, NQRY = 4, NTHR = 4 };
/* more than one attention chunk (4096 tokens) so one call uses several pool tasks */
#define T_TOK 4500u
#define PF 3u /* prefill queries */

static cq_cache_config config(uint8_t *masks) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, NL, H, D);
    cfg.key_codec = CQ_CODEC_CQ4P;
    cfg.val_codec = CQ_CODEC_CQ4;
    cfg.group = G;
    cfg.n_sinks = 3;
    cfg.outlier_masks = masks;
    return cfg;
}

typedef struct shared {
    const cq_cache *c;
    const float *q;          /* [NQRY][NQ][D] */
    const float *qp;         /* [PF][NQ][D] */
    const float *ref;        /* [NL][NQRY][NQ][D] */
    const float *ref_pf;     /* [NL][PF][NQ][D] */
    const float *ref_read;   /* [NL][H][T][D] keys then the same for values */
    const uint8_t *img;
    size_t img_len;
    uint64_t bytes;
} shared;

typedef struct worker {
    const shared *sh;
    uint32_t id;
    long bad;
} worker;

static void *reader(void *arg) {
    worker *w = arg;
    const shared *sh = w->sh;
    cq_rng r;
    cq_rng_seed(&r, 100 + w->id);
    float *out = malloc((size_t)PF * NQ * D * 4);
    float *k = malloc((size_t)T_TOK * D * 4), *v = malloc((size_t)T_TOK * D * 4);
    for (int it = 0; it < 6; it++) {
        uint32_t L = cq_rng_below(&r, NL), qi = cq_rng_below(&r, NQRY);
        cq_attn_opts o = {.n_threads = 1 + cq_rng_below(&r, 3)};
        if (cq_cache_attend(sh->c, L, sh->q + (size_t)qi * NQ * D, NQ, out, &o, NULL) != CQ_OK ||
            memcmp(out, sh->ref + ((size_t)L * NQRY + qi) * NQ * D, (size_t)NQ * D * 4))
            w->bad++;
        if (cq_cache_attend_prefill(sh->c, L, sh->qp, PF, T_TOK - PF, NQ, out, &o, NULL) != CQ_OK ||
            memcmp(out, sh->ref_pf + (size_t)L * PF * NQ * D, (size_t)PF * NQ * D * 4))
            w->bad++;
        uint32_t h = cq_rng_below(&r, H), t0 = cq_rng_below(&r, T_TOK), t1 = t0 + cq_rng_below(&r, T_TOK - t0 + 1);
        if (cq_cache_read(sh->c, L, h, t0, t1, k, v, NULL) != CQ_OK) w->bad++;
        const float *rk = sh->ref_read + (((size_t)0 * NL + L) * H + h) * T_TOK * D;
        const float *rv = sh->ref_read + (((size_t)1 * NL + L) * H + h) * T_TOK * D;
        if (memcmp(k, rk + (size_t)t0 * D, (size_t)(t1 - t0) * D * 4) ||
            memcmp(v, rv + (size_t)t0 * D, (size_t)(t1 - t0) * D * 4))
            w->bad++;
        cq_cache_mem m;
        if (cq_cache_memory(sh->c, -1, &m) != CQ_OK || m.total != sh->bytes ||
            cq_cache_allocated_bytes(sh->c, -1) != sh->bytes)
            w->bad++;
        if (it == 0) { /* saving is read-only as well */
            uint8_t *img = NULL;
            size_t len = 0;
            if (cq_cache_save_mem(sh->c, &img, &len, NULL) != CQ_OK || len != sh->img_len ||
                memcmp(img, sh->img, len))
                w->bad++;
            free(img);
        }
    }
    free(out);
    free(k);
    free(v);
    return NULL;
}

typedef struct builder {
    const uint16_t *K, *V; /* [NL][T][H][D] */
    uint32_t T, id;
    cq_cache *c;
    int ok;
} builder;

static void *build_one(void *arg) {
    builder *b = arg;
    uint8_t masks[NL * H * D] = {0};
    for (uint32_t i = 0; i < NL * H; i++) masks[i * D + 7] = masks[i * D + 40] = 1;
    cq_cache_config cfg = config(masks);
    b->ok = cq_cache_create(&cfg, &b->c, NULL) == CQ_OK;
    cq_rng r;
    cq_rng_seed(&r, 7 + b->id);
    for (uint32_t L = 0; L < NL && b->ok; L++)
        for (uint32_t t = 0; t < b->T && b->ok;) {
            uint32_t n = b->id == 0 ? b->T : 1 + cq_rng_below(&r, 100); /* id 0: one append */
            if (n > b->T - t) n = b->T - t;
            size_t o = ((size_t)L * b->T + t) * H * D;
            b->ok = cq_cache_append(b->c, L, b->K + o, b->V + o, n, NULL) == CQ_OK;
            t += n;
        }
    if (b->ok) {
        float q[NQ * D], out[NQ * D];
        for (int i = 0; i < NQ * D; i++) q[i] = (float)(i % 7) * 0.25f - 0.5f;
        cq_attn_opts o = {.n_threads = 2};
        b->ok = cq_cache_attend(b->c, 0, q, NQ, out, &o, NULL) == CQ_OK;
    }
    return NULL;
}

int main(void) {
    cq_rng r;
    cq_rng_seed(&r, 2024);
    const size_t per = (size_t)T_TOK * H * D;
    uint16_t *K = malloc(per * NL * 2), *V = malloc(per * NL * 2);
    ctu_fill_f16(&r, K, per * NL, 1.0f, 1);
    ctu_fill_f16(&r, V, per * NL, 1.0f, 1);

    /* ---- separate caches appended in parallel (different chunkings) */
    builder b[NTHR];
    pthread_t th[NTHR];
    for (uint32_t i = 0; i < NTHR; i++) {
        b[i] = (builder){K, V, T_TOK, i, NULL, 0};
        CHECK(pthread_create(&th[i], NULL, build_one, &b[i]) == 0, "pthread_create");
    }
    for (uint32_t i = 0; i < NTHR; i++) pthread_join(th[i], NULL);
    for (uint32_t i = 0; i < NTHR; i++) {
        cq_err e;
        CHECK(b[i].ok, "parallel build %u", i);
        if (i && b[i].ok && b[0].ok)
            CHECK(cq_cache_compare(b[0].c, b[i].c, &e) == CQ_OK, "parallel cache %u: %s", i, e.msg);
    }
    cq_cache *c = b[0].c;
    for (uint32_t i = 1; i < NTHR; i++) cq_cache_free(b[i].c);
    if (!c || !b[0].ok) {
        free(K);
        free(V);
        cq_cache_free(c);
        return cq_test_done("test_cache_threads");
    }

    /* ---- single-threaded references */
    float *q = malloc((size_t)NQRY * NQ * D * 4), *qp = malloc((size_t)PF * NQ * D * 4);
    for (size_t i = 0; i < (size_t)NQRY * NQ * D; i++) q[i] = (float)cq_rng_normal(&r);
    for (size_t i = 0; i < (size_t)PF * NQ * D; i++) qp[i] = (float)cq_rng_normal(&r);
    float *ref = malloc((size_t)NL * NQRY * NQ * D * 4), *ref_pf = malloc((size_t)NL * PF * NQ * D * 4);
    float *ref_read = malloc((size_t)2 * NL * H * T_TOK * D * 4);
    cq_attn_opts one = {.n_threads = 1}, three = {.n_threads = 3};
    float *tmp = malloc((size_t)NQ * D * 4);
    int ok = 1;
    for (uint32_t L = 0; L < NL; L++) {
        for (uint32_t i = 0; i < NQRY; i++) {
            float *o = ref + ((size_t)L * NQRY + i) * NQ * D;
            ok &= cq_cache_attend(c, L, q + (size_t)i * NQ * D, NQ, o, &one, NULL) == CQ_OK;
            /* the thread count does not change the result */
            ok &= cq_cache_attend(c, L, q + (size_t)i * NQ * D, NQ, tmp, &three, NULL) == CQ_OK &&
                  memcmp(tmp, o, (size_t)NQ * D * 4) == 0;
        }
        ok &= cq_cache_attend_prefill(c, L, qp, PF, T_TOK - PF, NQ, ref_pf + (size_t)L * PF * NQ * D,
                                      &one, NULL) == CQ_OK;
        for (uint32_t h = 0; h < H; h++)
            ok &= cq_cache_read(c, L, h, 0, T_TOK, ref_read + ((size_t)L * H + h) * T_TOK * D,
                                ref_read + (((size_t)NL + L) * H + h) * T_TOK * D, NULL) == CQ_OK;
    }
    CHECK(ok, "single-threaded reference runs (and n_threads 1 == 3)");
    free(tmp);
    shared sh = {c, q, qp, ref, ref_pf, ref_read, NULL, 0, cq_cache_allocated_bytes(c, -1)};
    CHECK(cq_cache_save_mem(c, (uint8_t **)&sh.img, &sh.img_len, NULL) == CQ_OK, "save_mem");

    /* ---- several threads on one cache */
    worker w[NTHR];
    for (uint32_t i = 0; i < NTHR; i++) {
        w[i] = (worker){&sh, i, 0};
        CHECK(pthread_create(&th[i], NULL, reader, &w[i]) == 0, "pthread_create");
    }
    long bad = 0;
    for (uint32_t i = 0; i < NTHR; i++) {
        pthread_join(th[i], NULL);
        bad += w[i].bad;
    }
    CHECK(bad == 0, "%ld concurrent results differ from the single-threaded ones", bad);

    free((void *)sh.img);
    free(q);
    free(qp);
    free(ref);
    free(ref_pf);
    free(ref_read);
    free(K);
    free(V);
    cq_cache_free(c);
    return cq_test_done("test_cache_threads");
}
