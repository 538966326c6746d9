/* SPDX-License-Identifier: MIT */
/*
 * test_cache_layout.c - the cache's bytes are a property of the data and the
 * configuration, never of the CPU: the same appends (decode and prefill sizes, sinks,
 * several pages, a flushed partial group) into caches forced to each kernel table this
 * CPU runs (scalar, avx2, avx512) leave the same bytes in every store's pages, compared
 * bit for bit over every byte a store defines (codes in their layout, scales, sidecar,
 * in-flight fp16). The layout (key tiles, value blocks or the contract's rows) follows
 * from the shape alone, so the scalar table holds and attends over the tiled layouts
 * too: checked against the double-precision reference.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cache/cache_internal.h"
#include "cq_test.h"
#include "util/cache_testutil.h"

typedef struct shape {
    const char *name;
    cq_codec_id k, v;
    uint32_t H, D, G, page, sinks, T, outl;
    int flush;
    int want_kt, want_vb; /* the layout the shape implies (key tiles, value blocks) */
} shape;

static const shape SHAPES[] = {
    {"cq4/cq4 D128 G128", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 2, 128, 128, 256, 2, 700, 0, 0, 1, 1},
    {"cq4/cq4 D128 G128 flushed", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 2, 128, 128, 256, 2, 700, 0, 1, 1, 1},
    {"cq4+ k2/cq4 D64 G64", CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 2, 64, 64, 128, 0, 333, 2, 1, 1, 1},
    {"cq4+ k1 (odd kept)/cq4 D64 G32", CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 1, 64, 32, 96, 1, 250, 1, 0, 1, 1},
    {"cq4+ k3/cq4 D96 G96", CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 2, 96, 96, 192, 0, 400, 3, 1, 1, 1},
    {"cq4/cq4 G48 D48 (rows)", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 2, 48, 48, 96, 1, 300, 0, 1, 0, 0},
    {"cq4/cq4 G6 (pages of 1026 tokens: rows)", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 1, 64, 6, 0, 0, 200, 0, 1, 0, 0},
    {"cq8/cq8", CQ_CODEC_CQ8, CQ_CODEC_CQ8, 2, 64, 128, 128, 1, 300, 0, 0, 0, 0},
    {"fp16/cq4", CQ_CODEC_FP16, CQ_CODEC_CQ4, 2, 64, 128, 128, 0, 300, 0, 0, 0, 1},
};
#define NSHAPES (sizeof SHAPES / sizeof SHAPES[0])

/* Mismatching bytes between two stores of the same configuration (every byte the store
 * defines; page slack past the data is never written and is not compared), or -1 when
 * their bookkeeping differs. */
static long store_diff(const cq_store *a, const cq_store *b) {
    if (a->kind != b->kind || a->tiled != b->tiled || a->n_done != b->n_done ||
        a->n_resid != b->n_resid || a->tail_g != b->tail_g || a->n_pages != b->n_pages ||
        a->page_bytes != b->page_bytes)
        return -1;
    long bad = 0;
    const uint32_t D = a->D;
    if (cq_store_per_token(a)) {
        for (uint32_t t = 0; t < a->n_done; t++) {
            if (a->tiled) { /* token t's bytes of its value block: 4m + t % 4 of each chunk */
                const uint8_t *x = cq_store_vblock(a, t), *y = cq_store_vblock(b, t);
                for (uint32_t q = 0; q < D / 32; q++)
                    for (uint32_t m = 0; m < 16; m++) {
                        size_t o = 64 * (size_t)q + 4 * m + t % CQ_VB_TOK;
                        bad += x[o] != y[o];
                    }
            } else {
                bad += memcmp(cq_store_codes(a, t), cq_store_codes(b, t), a->tok_bytes) != 0;
            }
            if (a->kind != ST_F16) bad += *cq_store_scale(a, t) != *cq_store_scale(b, t);
        }
    } else {
        const uint32_t nu = (a->n_done + a->unit - 1) / a->unit;
        for (uint32_t u = 0; u < nu; u++) {
            const uint8_t *x = cq_store_slot(a, u), *y = cq_store_slot(b, u);
            const uint32_t g = cq_store_unit_len(a, u);
            if (a->kind == ST_I4K) {
                const cq_params *p = a->params;
                size_t pay = a->tiled ? (size_t)(g + CQ_KT_TOK - 1) / CQ_KT_TOK * 16 * p->kept
                                      : cq_key_group_bytes(p, g);
                bad += memcmp(x, y, pay) != 0;
                bad += memcmp(x + a->off_scales, y + a->off_scales, 2 * (size_t)p->kept) != 0;
                bad += memcmp(x + a->off_sidecar, y + a->off_sidecar, 2 * (size_t)g * p->k) != 0;
            } else {
                bad += memcmp(x, y, cq_store_gen_bytes(a, u)) != 0;
            }
        }
    }
    if (a->n_resid) bad += memcmp(a->resid, b->resid, (size_t)a->n_resid * D * 2) != 0;
    return bad;
}

static cq_cache *build(const shape *sp, const char *kern, const uint8_t *masks, const uint16_t *K,
                       const uint16_t *V) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 2, sp->H, sp->D);
    cfg.key_codec = sp->k;
    cfg.val_codec = sp->v;
    cfg.group = sp->G;
    cfg.page_tokens = sp->page;
    cfg.n_sinks = sp->sinks;
    cfg.outlier_masks = sp->k == CQ_CODEC_CQ4P ? masks : NULL;
    cfg.kernels = kern;
    cq_cache *c = NULL;
    cq_err e;
    if (cq_cache_create(&cfg, &c, &e)) {
        fprintf(stderr, "%s (%s): %s\n", sp->name, kern, e.msg);
        return NULL;
    }
    const size_t row = (size_t)sp->H * sp->D;
    int ok = 1;
    for (uint32_t t = 0; t < sp->T && ok; t++) /* layer 0: token by token (decode) */
        ok = cq_cache_append(c, 0, K + t * row, V + t * row, 1, NULL) == CQ_OK;
    for (uint32_t t = 0, n = 1; t < sp->T && ok; t += n, n = n * 3 + 1) { /* layer 1: chunks */
        if (n > sp->T - t) n = sp->T - t;
        ok = cq_cache_append(c, 1, K + t * row, V + t * row, n, NULL) == CQ_OK;
    }
    if (ok && sp->flush) ok = cq_cache_flush(c, NULL) == CQ_OK;
    if (!ok) {
        cq_cache_free(c);
        return NULL;
    }
    return c;
}

static void check_shape(const shape *sp) {
    cq_rng r;
    cq_rng_seed(&r, 77 + sp->D + sp->T);
    const size_t N = (size_t)sp->T * sp->H * sp->D;
    uint16_t *K = malloc(N * 2), *V = malloc(N * 2);
    uint8_t *masks = calloc((size_t)2 * sp->H * sp->D, 1);
    ctu_fill_f16(&r, K, N, 1.0f, 1);
    ctu_fill_f16(&r, V, N, 0.5f, 1);
    if (sp->outl) ctu_random_masks(&r, masks, 2 * sp->H, sp->D, sp->outl);
    const char *names[] = {"scalar", "avx2", "avx512"};
    cq_cache *ref = build(sp, "scalar", masks, K, V);
    CHECK(ref != NULL, "%s: the scalar cache", sp->name);
    if (!ref) goto out;
    /* the layout the shape implies, with the scalar table */
    for (uint32_t L = 0; L < 2; L++)
        for (uint32_t h = 0; h < sp->H; h++) {
            const cq_head *hd = &ref->layers[L].heads[h];
            CHECK(hd->k.tiled == sp->want_kt && hd->v.tiled == sp->want_vb,
                  "%s: scalar table, layer %u head %u: key tiles %d, value blocks %d", sp->name, L,
                  h, hd->k.tiled, hd->v.tiled);
        }
    int tables = 0;
    for (int ti = 1; ti < 3; ti++) {
        if (!cq_kernels_by_name(names[ti])) continue; /* not on this CPU / build */
        cq_cache *c = build(sp, names[ti], masks, K, V);
        CHECK(c != NULL, "%s: the %s cache", sp->name, names[ti]);
        if (!c) continue;
        tables++;
        CHECK(!strcmp(cq_cache_kernels(c), names[ti]), "%s: table %s in use", sp->name, names[ti]);
        long bad = 0;
        for (uint32_t L = 0; L < 2; L++)
            for (uint32_t i = 0; i < cq_layer_n_stores(sp->H); i++) {
                const cq_store *a = cq_layer_store_c(&ref->layers[L], sp->H, i),
                               *b = cq_layer_store_c(&c->layers[L], sp->H, i);
                if (!a || !b) {
                    bad += a != b;
                    continue;
                }
                long d = store_diff(a, b);
                bad += d < 0 ? 1000000 : d;
            }
        CHECK(bad == 0, "%s: %s vs scalar: %ld store bytes differ", sp->name, names[ti], bad);
        cq_cache_free(c);
    }
    if (getenv("CQ_TEST_VERBOSE")) fprintf(stderr, "%s: %d SIMD tables compared\n", sp->name, tables);
    /* the scalar table attends over the layout it holds (tiled or not), EXACT and FAST,
     * within the bounds of docs/CACHE.md against the reference over the read-back cache */
    {
        const uint32_t nq = 2 * sp->H, T = cq_cache_tokens(ref, 1);
        float *q = malloc((size_t)nq * sp->D * 4), *o = malloc((size_t)nq * sp->D * 4),
              *want = malloc((size_t)nq * sp->D * 4);
        for (uint32_t i = 0; i < nq * sp->D; i++) q[i] = (float)cq_rng_normal(&r);
        CHECK(cq_cache_attend_ref(ref, 1, q, 1, T - 1, nq, want, 0.0f, NULL) == CQ_OK, "%s: ref",
              sp->name);
        for (uint32_t prec = CQ_ATTN_EXACT; prec <= CQ_ATTN_FAST; prec++) {
            cq_attn_opts ao = {.n_threads = 2, .precision = prec};
            CHECK(cq_cache_attend(ref, 1, q, nq, o, &ao, NULL) == CQ_OK, "%s: attend", sp->name);
            double e = ctu_rel_err(o, want, (size_t)nq * sp->D);
            CHECK(e < (prec == CQ_ATTN_FAST ? 3e-2 : 1e-4), "%s: scalar %s attention rel err %.3g",
                  sp->name, prec == CQ_ATTN_FAST ? "fast" : "exact", e);
        }
        free(q);
        free(o);
        free(want);
    }
    cq_cache_free(ref);
out:
    free(K);
    free(V);
    free(masks);
}

int main(void) {
    for (size_t i = 0; i < NSHAPES; i++) check_shape(&SHAPES[i]);
    return cq_test_done("test_cache_layout");
}
