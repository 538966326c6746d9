/* SPDX-License-Identifier: MIT */
/*
 * serve_fixture.h - the pool fixture shared by test_serve_save.c and test_serve_wire.c
 * (static functions: each test binary has its own CHECK counters; included after
 * cq_test.h, cq_serve.h, cq_util.h and util/cache_testutil.h). 2 layers, 2 kv heads,
 * D = 64, GQA 2; the formats (fp16, CQ-8, CQ-4, CQ-4+ with random masks, a generic
 * registry pair, mixed layers); pools and reference caches of a format; K/V as a
 * function of (layer, position, token id); prefill of a sequence and / or a cache;
 * compare (reads, exports, decode and prefill attention in both precisions, bit for
 * bit); the pool's invariants and a snapshot of its observable state.
 */
#ifndef CQ_TEST_SERVE_FIXTURE_H
#define CQ_TEST_SERVE_FIXTURE_H

#define NL 2u
#define H 2u
#define D 64u
#define QH (2 * H)

typedef struct fmt {
    const char *name;
    cq_codec_id k, v;
    uint32_t outl;
} fmt;

static const fmt FMTS[] = {
    {"fp16/fp16", CQ_CODEC_FP16, CQ_CODEC_FP16, 0},
    {"cq8/cq8", CQ_CODEC_CQ8, CQ_CODEC_CQ8, 0},
    {"cq4/cq4", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 0},
    {"cq4+/cq4", CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 2},
    {"q4_0/q8_0 (generic)", CQ_CODEC_Q4_0, CQ_CODEC_Q8_0, 0},
    {"cq4/cq8 mixed layers", CQ_CODEC_CQ4, CQ_CODEC_CQ8, 0},
};
#define NFMTS (sizeof FMTS / sizeof FMTS[0])

static uint8_t g_masks[NL * H * D];
static cq_layer_codecs g_layers[NL];

static cq_cache_config make_cfg(const fmt *f, uint32_t G, uint32_t S, uint32_t page) {
    cq_cache_config c;
    cq_cache_config_default(&c, NL, H, D);
    c.key_codec = f->k;
    c.val_codec = f->v;
    c.group = G;
    c.n_sinks = S;
    c.page_tokens = page;
    if (f->outl) {
        cq_rng r;
        cq_rng_seed(&r, 77);
        ctu_random_masks(&r, g_masks, NL * H, D, f->outl);
        c.outlier_masks = g_masks;
    }
    if (f == &FMTS[NFMTS - 1]) { /* layer 1: fp16 keys, CQ-4 values */
        g_layers[0] = (cq_layer_codecs){f->k, f->v};
        g_layers[1] = (cq_layer_codecs){CQ_CODEC_FP16, CQ_CODEC_CQ4};
        c.layer_codecs = g_layers;
    }
    return c;
}

static cq_kvpool *make_pool_k(const fmt *f, uint32_t G, uint32_t S, uint64_t budget,
                              uint64_t model, const char *kernels) {
    cq_kvpool_config pc = {.cache = make_cfg(f, G, S, 0), .budget_bytes = budget,
                           .model_hash = model};
    pc.cache.kernels = kernels;
    cq_kvpool *p = NULL;
    cq_err e;
    CHECK(cq_kvpool_create(&pc, &p, &e) == CQ_OK, "%s: pool: %s", f->name, e.msg);
    return p;
}

static cq_kvpool *make_pool(const fmt *f, uint32_t G, uint32_t S, uint64_t budget) {
    return make_pool_k(f, G, S, budget, 7, NULL);
}

static cq_cache *make_ref(const fmt *f, uint32_t G, uint32_t S) {
    cq_cache_config c = make_cfg(f, G, S, G);
    cq_cache *r = NULL;
    CHECK(cq_cache_create(&c, &r, NULL) == CQ_OK, "reference cache");
    return r;
}

/* The K and V of token `tok` at position `pos` of layer L (a stand-in for a forward pass). */
static void kv_of(uint32_t L, uint32_t pos, uint32_t tok, uint16_t *k, uint16_t *v) {
    cq_rng r;
    cq_rng_seed(&r, ((uint64_t)tok << 32) ^ ((uint64_t)pos << 8) ^ L ^ 0x3a7eull);
    ctu_fill_f16(&r, k, (size_t)H * D, 1.0f, 0);
    ctu_fill_f16(&r, v, (size_t)H * D, 1.0f, 0);
}

/* Prefill tokens[t0, t1) into the sequence and / or the cache, every layer. */
static cq_status prefill(cq_seq *s, cq_cache *c, const uint32_t *tok, uint32_t t0, uint32_t t1) {
    const uint32_t n = t1 - t0;
    if (!n) return CQ_OK;
    uint16_t *k = malloc((size_t)n * H * D * 2), *v = malloc((size_t)n * H * D * 2);
    cq_status st = CQ_OK;
    for (uint32_t L = 0; L < NL && !st; L++) {
        for (uint32_t i = 0; i < n; i++)
            kv_of(L, t0 + i, tok[t0 + i], k + (size_t)i * H * D, v + (size_t)i * H * D);
        if (s) st = cq_seq_append(s, L, k, v, n, NULL);
        if (!st && c) st = cq_cache_append(c, L, k, v, n, NULL);
    }
    free(k);
    free(v);
    return st;
}

/* 0 when the sequence reads, exports and attends (decode and prefill, EXACT and FAST)
 * bit for bit like the cache. */
static int compare(const cq_seq *s, const cq_cache *c, cq_rng *r) {
    int bad = 0;
    for (uint32_t L = 0; L < NL; L++) {
        const uint32_t T = cq_cache_tokens(c, L);
        if (cq_seq_tokens(s, L) != T) return 1;
        float *a = malloc((size_t)T * D * 2 * 4 + 4), *b = malloc((size_t)T * D * 2 * 4 + 4);
        for (uint32_t h = 0; h < H; h++) {
            bad += cq_seq_read(s, L, h, 0, T, a, a + (size_t)T * D, NULL) != CQ_OK;
            bad += cq_cache_read(c, L, h, 0, T, b, b + (size_t)T * D, NULL) != CQ_OK;
            bad += memcmp(a, b, (size_t)T * D * 2 * 4) != 0;
            for (int role = 0; role < 2; role++) {
                size_t la = 0, lb = 0;
                cq_seq_export(s, L, h, (cq_role)role, NULL, 0, &la, NULL);
                cq_cache_export(c, L, h, (cq_role)role, NULL, 0, &lb, NULL);
                uint8_t *ea = malloc(la + 1), *eb = malloc(lb + 1);
                cq_seq_export(s, L, h, (cq_role)role, ea, la, &la, NULL);
                cq_cache_export(c, L, h, (cq_role)role, eb, lb, &lb, NULL);
                bad += la != lb || memcmp(ea, eb, la) != 0;
                free(ea);
                free(eb);
            }
        }
        free(a);
        free(b);
        const uint32_t nq = T < 4 ? T : 4;
        float *q = malloc((size_t)nq * QH * D * 4 + 4), *oa = malloc((size_t)nq * QH * D * 4 + 4),
              *ob = malloc((size_t)nq * QH * D * 4 + 4);
        for (size_t i = 0; i < (size_t)nq * QH * D; i++) q[i] = (float)cq_rng_normal(r);
        for (uint32_t prec = CQ_ATTN_EXACT; prec <= CQ_ATTN_FAST && nq; prec++) {
            cq_attn_opts o = {.n_threads = 1, .precision = prec};
            bad += cq_seq_attend(s, L, q, QH, oa, &o, NULL) != CQ_OK;
            bad += cq_cache_attend(c, L, q, QH, ob, &o, NULL) != CQ_OK;
            bad += memcmp(oa, ob, (size_t)QH * D * 4) != 0;
            bad += cq_seq_attend_prefill(s, L, q, nq, T - nq, QH, oa, &o, NULL) != CQ_OK;
            bad += cq_cache_attend_prefill(c, L, q, nq, T - nq, QH, ob, &o, NULL) != CQ_OK;
            bad += memcmp(oa, ob, (size_t)nq * QH * D * 4) != 0;
        }
        free(q);
        free(oa);
        free(ob);
    }
    return bad;
}

static int pool_ok(const cq_kvpool *p) {
    cq_kvpool_mem m;
    cq_err e;
    if (cq_kvpool_check(p, &e)) {
        fprintf(stderr, "cq_kvpool_check: %s\n", e.msg);
        return 0;
    }
    cq_kvpool_memory(p, &m);
    return m.total == cq_kvpool_allocated_bytes(p) &&
           m.arena_bytes == m.referenced + m.cached + m.arena_slack;
}

/* ------------------------------------------------------------ the observable pool state */

typedef struct snap {
    cq_prefix_stats ps;
    uint64_t alloc;
} snap;

static void snap_take(const cq_kvpool *p, snap *s) {
    cq_kvpool_mem m;
    cq_kvpool_memory(p, &m);
    s->ps = m.prefix;
    s->alloc = cq_kvpool_allocated_bytes(p);
}

static int snap_equal(const snap *a, const snap *b) {
    const cq_prefix_stats *x = &a->ps, *y = &b->ps;
    return a->alloc == b->alloc && x->used_bytes == y->used_bytes &&
           x->cached_bytes == y->cached_bytes && x->lru_bytes == y->lru_bytes &&
           x->live_blocks == y->live_blocks && x->cached_blocks == y->cached_blocks &&
           x->lru_blocks == y->lru_blocks && x->commits == y->commits &&
           x->blocks_evicted == y->blocks_evicted && x->allocs == y->allocs &&
           x->meta_bytes == y->meta_bytes;
}


#endif
