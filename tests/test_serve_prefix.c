/* SPDX-License-Identifier: MIT */
/*
 * test_serve_prefix.c - prefix caching through the serving pool (include/cq_serve.h,
 * slice 3 of docs/SERVING.md): adopting a published prefix and prefilling the rest
 * reads, exports and attends bit for bit like a full prefill (a cq_cache fed every
 * token), per format, with and without sinks; the run adopted stops where the prompt
 * diverges and always leaves a token; publishing a block that is cached already
 * deduplicates it; 32 sequences sharing a 2048-token prompt hold less than 1.1x one
 * sequence's memory, by the pool's accounting and by the allocator's count (8 kv heads,
 * head_dim 128, G = 128, as the serving benchmark of issue 14); cached
 * blocks without a reference are evicted deepest first when the budget needs room.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cq_serve.h"
#include "cq_test.h"
#include "util/cache_testutil.h"

#define NL 2u
#define H 8u
#define D 128u
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
};
#define NFMTS (sizeof FMTS / sizeof FMTS[0])

static uint8_t g_masks[NL * H * D];

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
    return c;
}

static cq_kvpool *make_pool(const fmt *f, uint32_t G, uint32_t S, uint64_t budget) {
    cq_kvpool_config pc = {.cache = make_cfg(f, G, S, 0), .budget_bytes = budget, .model_hash = 9};
    cq_kvpool *p = NULL;
    cq_err e;
    CHECK(cq_kvpool_create(&pc, &p, &e) == CQ_OK, "%s: pool: %s", f->name, e.msg);
    return p;
}

/* The K and V a model would compute for token `tok` at position `pos` of layer L: the
 * same tokens give the same rows (a stand-in for a forward pass). */
static void kv_of(uint32_t L, uint32_t pos, uint32_t tok, uint16_t *k, uint16_t *v) {
    cq_rng r;
    cq_rng_seed(&r, ((uint64_t)tok << 32) ^ ((uint64_t)pos << 8) ^ L ^ 0x5eedull);
    ctu_fill_f16(&r, k, (size_t)H * D, 1.0f, 0);
    ctu_fill_f16(&r, v, (size_t)H * D, 1.0f, 0);
}

/* Prefill tokens[t0, t1) into the sequence (and the cache, if any), every layer. */
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
        float *q = malloc((size_t)nq * QH * D * 4), *oa = malloc((size_t)nq * QH * D * 4),
              *ob = malloc((size_t)nq * QH * D * 4);
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

static cq_cache *make_ref(const fmt *f, uint32_t G, uint32_t S) {
    cq_cache_config c = make_cfg(f, G, S, G);
    cq_cache *r = NULL;
    CHECK(cq_cache_create(&c, &r, NULL) == CQ_OK, "reference cache");
    return r;
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

/* Adoption + prefill of the rest == a full prefill; divergence; dedup. */
static void test_adopt(const fmt *f, uint32_t G, uint32_t S) {
    cq_rng r;
    cq_rng_seed(&r, 11 + G + S);
    cq_kvpool *p = make_pool(f, G, S, 1ull << 30);
    const uint32_t n = S + 5 * G + 7;
    uint32_t *P = malloc(n * sizeof *P), *Q = malloc(n * sizeof *Q);
    for (uint32_t i = 0; i < n; i++) P[i] = Q[i] = 1 + cq_rng_below(&r, 30000);
    Q[S + 3 * G + 2] ^= 1; /* diverges inside block 3 */
    cq_seq *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    cq_seq_create(p, &a, NULL);
    CHECK(prefill(a, NULL, P, 0, n) == CQ_OK, "prefill");
    cq_err e;
    CHECK(cq_seq_publish(a, P, n, &e) == CQ_OK, "%s: publish: %s", f->name, e.msg);
    CHECK(cq_seq_publish(a, P, n, &e) == CQ_OK, "%s: publish again: %s", f->name, e.msg);
    cq_kvpool_mem m;
    cq_kvpool_memory(p, &m);
    CHECK(m.prefix.cached_blocks == 5 && m.prefix.commits == 5, "%s: %u blocks published",
          f->name, m.prefix.cached_blocks);
    /* b adopts 5 blocks and prefills 7 tokens */
    uint32_t got = 0;
    cq_seq_create(p, &b, NULL);
    CHECK(cq_seq_adopt_prefix(b, P, n, &got, &e) == CQ_OK && got == S + 5 * G,
          "%s: adopted %u tokens: %s", f->name, got, e.msg);
    CHECK(prefill(b, NULL, P, got, n) == CQ_OK, "prefill the rest");
    cq_cache *full = make_ref(f, G, S);
    prefill(NULL, full, P, 0, n);
    CHECK(compare(b, full, &r) == 0, "%s G=%u S=%u: adoption differs from a full prefill",
          f->name, G, S);
    CHECK(compare(a, full, &r) == 0, "%s: the publisher changed", f->name);
    cq_seq_mem sm;
    cq_seq_memory(b, &sm);
    CHECK(sm.shared_blocks == 5 && sm.blocks == 6, "%s: b shares %u of %u blocks", f->name,
          sm.shared_blocks, sm.blocks);
    /* a prompt of exactly 5 blocks leaves its last block to prefill */
    cq_seq_create(p, &c, NULL);
    CHECK(cq_seq_adopt_prefix(c, P, S + 5 * G, &got, NULL) == CQ_OK && got == S + 4 * G,
          "%s: exact prompt adopted %u", f->name, got);
    CHECK(cq_seq_adopt_prefix(c, P, n, &got, NULL) == CQ_ERR_STATE, "%s: adopt twice", f->name);
    cq_seq_free(c);
    /* a divergent prompt adopts up to the divergence; its own blocks dedup nothing */
    cq_seq_create(p, &d, NULL);
    CHECK(cq_seq_adopt_prefix(d, Q, n, &got, NULL) == CQ_OK && got == S + 3 * G,
          "%s: divergent prompt adopted %u", f->name, got);
    prefill(d, NULL, Q, got, n);
    cq_cache *qfull = make_ref(f, G, S);
    prefill(NULL, qfull, Q, 0, n);
    CHECK(compare(d, qfull, &r) == 0, "%s: divergent adoption", f->name);
    CHECK(cq_seq_publish(d, Q, n, &e) == CQ_OK, "%s: publish the branch: %s", f->name, e.msg);
    cq_kvpool_memory(p, &m);
    CHECK(m.prefix.cached_blocks == 7, "%s: branch: %u cached", f->name, m.prefix.cached_blocks);
    CHECK(cq_seq_publish(d, P, n, &e) == CQ_ERR_MISMATCH, "%s: other tokens", f->name);
    cq_seq_free(d);
    /* dedup: c prefills P itself, then publishes: its blocks become the cached ones */
    cq_seq_create(p, &c, NULL);
    prefill(c, NULL, P, 0, n);
    cq_kvpool_mem m0, m1;
    cq_kvpool_memory(p, &m0);
    CHECK(cq_seq_publish(c, P, n, &e) == CQ_OK, "%s: publish duplicate: %s", f->name, e.msg);
    cq_kvpool_memory(p, &m1);
    CHECK(m1.prefix.duplicates == m0.prefix.duplicates + 5 &&
              m1.referenced + 5 * cq_kvpool_block_bytes(p) + cq_kvpool_sink_bytes(p) ==
                  m0.referenced,
          "%s: dedup freed %lld bytes", f->name,
          (long long)m0.referenced - (long long)m1.referenced);
    CHECK(compare(c, full, &r) == 0, "%s: dedup changed what the sequence reads", f->name);
    cq_seq_memory(c, &sm);
    CHECK(sm.shared_blocks == 5, "%s: dedup shares %u", f->name, sm.shared_blocks);
    CHECK(pool_ok(p), "%s: pool accounting", f->name);
    cq_seq_free(a);
    cq_seq_free(b);
    cq_seq_free(c);
    cq_kvpool_memory(p, &m);
    CHECK(m.referenced == 0 && m.prefix.lru_blocks == 7 && m.cached == m.prefix.lru_bytes,
          "%s: cached blocks stay after the frees (%u)", f->name, m.prefix.lru_blocks);
    cq_cache_free(full);
    cq_cache_free(qfull);
    free(P);
    free(Q);
    cq_kvpool_free(p);
}

/* 32 sequences of one 2048-token prompt: adopt, prefill the last block, publish. */
static void test_shared_32(const fmt *f) {
    const uint32_t G = 128, n = 2048, NSEQ = 32;
    cq_rng r;
    cq_rng_seed(&r, 32);
    cq_kvpool *p = make_pool(f, G, 0, 1ull << 30);
    uint32_t *P = malloc(n * sizeof *P);
    for (uint32_t i = 0; i < n; i++) P[i] = cq_rng_below(&r, 50000);
    cq_kvpool_mem e0, e1, e32;
    cq_kvpool_memory(p, &e0);
    const uint64_t a0 = cq_kvpool_allocated_bytes(p);
    cq_seq *s[32] = {0};
    uint64_t a1 = 0;
    int bad = 0;
    for (uint32_t i = 0; i < NSEQ; i++) {
        uint32_t got = 0;
        bad += cq_seq_create(p, &s[i], NULL) != CQ_OK;
        bad += cq_seq_adopt_prefix(s[i], P, n, &got, NULL) != CQ_OK;
        bad += got != (i ? n - G : 0);
        bad += prefill(s[i], NULL, P, got, n) != CQ_OK;
        bad += cq_seq_publish(s[i], P, n, NULL) != CQ_OK;
        if (i == 0) {
            cq_kvpool_memory(p, &e1);
            a1 = cq_kvpool_allocated_bytes(p);
        }
    }
    CHECK(bad == 0, "%s: %d failures building 32 sequences", f->name, bad);
    cq_kvpool_memory(p, &e32);
    const uint64_t a32 = cq_kvpool_allocated_bytes(p);
    const double acc = (double)(e32.total - e0.total) / (double)(e1.total - e0.total);
    const double alc = (double)(a32 - a0) / (double)(a1 - a0);
    printf("%s: 32 sequences sharing a %u-token prompt: %.4fx one sequence by the accounting "
           "(%llu / %llu bytes), %.4fx by the allocator; %llu bytes saved by sharing\n",
           f->name, n, acc, (unsigned long long)(e32.total - e0.total),
           (unsigned long long)(e1.total - e0.total), alc,
           (unsigned long long)e32.shared_saved);
    printf("  per sequence: %llu bytes of bookkeeping; index %llu, tables %llu, arena slack %llu\n",
           (unsigned long long)(e32.sequences / e32.n_seqs), (unsigned long long)e32.index,
           (unsigned long long)e32.tables, (unsigned long long)e32.arena_slack);
    CHECK(acc < 1.1 && alc < 1.1, "%s: 32 sequences hold %.3fx / %.3fx one", f->name, acc, alc);
    CHECK(e32.prefix.live_blocks == n / G, "%s: %u blocks live", f->name,
          e32.prefix.live_blocks);
    cq_cache *full = make_ref(f, G, 0);
    prefill(NULL, full, P, 0, n);
    CHECK(compare(s[NSEQ - 1], full, &r) == 0, "%s: a sharing sequence reads its prompt",
          f->name);
    /* one decode step: a private open block and (unit-coded keys) a tail */
    prefill(s[0], NULL, P, 0, 1); /* any token */
    cq_seq_mem sm;
    cq_seq_memory(s[0], &sm);
    printf("%s: after one decode token, sequence 0 holds %llu private bytes (block %llu, tail "
           "%llu)\n",
           f->name, (unsigned long long)sm.private_bytes,
           (unsigned long long)cq_kvpool_block_bytes(p), (unsigned long long)cq_kvpool_tail_bytes(p));
    CHECK(sm.private_bytes == cq_kvpool_block_bytes(p) + cq_kvpool_tail_bytes(p) *
                                                              (f->k == CQ_CODEC_CQ4 ||
                                                               f->k == CQ_CODEC_CQ4P),
          "%s: private bytes after decode", f->name);
    CHECK(pool_ok(p), "%s: pool accounting", f->name);
    for (uint32_t i = 0; i < NSEQ; i++) cq_seq_free(s[i]);
    cq_cache_free(full);
    free(P);
    cq_kvpool_free(p);
}

/* Budget pressure evicts unreferenced cached blocks, deepest (least recent) first. */
static void test_eviction(const fmt *f, uint32_t S) {
    const uint32_t G = 32;
    cq_rng r;
    cq_rng_seed(&r, 99);
    cq_kvpool *probe = make_pool(f, G, S, 1);
    const uint64_t bb = cq_kvpool_block_bytes(probe), sk = cq_kvpool_sink_bytes(probe),
                   tb = cq_kvpool_tail_bytes(probe);
    cq_kvpool_free(probe);
    /* room for 8 blocks (two with sinks) and a tail */
    cq_kvpool *p = make_pool(f, G, S, 8 * bb + 2 * sk + tb);
    const uint32_t n = S + 6 * G;
    uint32_t *P = malloc(n * sizeof *P), *Q = malloc(n * sizeof *Q);
    for (uint32_t i = 0; i < n; i++) P[i] = 1 + cq_rng_below(&r, 1000), Q[i] = 2000 + i;
    cq_seq *a = NULL, *b = NULL, *c = NULL;
    cq_seq_create(p, &a, NULL);
    prefill(a, NULL, P, 0, n);
    cq_seq_publish(a, P, n, NULL);
    cq_seq_free(a);
    cq_kvpool_mem m;
    cq_kvpool_memory(p, &m);
    CHECK(m.prefix.lru_blocks == 6 && m.referenced == 0, "%s: 6 cached", f->name);
    /* 5 blocks of another prompt: 3 of the cached ones must go */
    cq_seq_create(p, &b, NULL);
    cq_status st = prefill(b, NULL, Q, 0, S + 5 * G);
    CHECK(st == CQ_OK, "%s: prefill under pressure: %d", f->name, (int)st);
    cq_kvpool_memory(p, &m);
    CHECK(m.prefix.blocks_evicted == 3 && m.prefix.lru_blocks == 3, "%s: evicted %llu", f->name,
          (unsigned long long)m.prefix.blocks_evicted);
    cq_cache *qref = make_ref(f, G, S);
    prefill(NULL, qref, Q, 0, S + 5 * G);
    CHECK(compare(b, qref, &r) == 0, "%s: the sequence written over evicted blocks", f->name);
    cq_seq_free(b);
    /* the first three blocks of P survived */
    uint32_t got = 0;
    cq_seq_create(p, &c, NULL);
    CHECK(cq_seq_adopt_prefix(c, P, n, &got, NULL) == CQ_OK && got == S + 3 * G,
          "%s: adopted %u after eviction", f->name, got);
    prefill(c, NULL, P, got, n);
    cq_cache *pref = make_ref(f, G, S);
    prefill(NULL, pref, P, 0, n);
    CHECK(compare(c, pref, &r) == 0, "%s: adoption after eviction", f->name);
    CHECK(pool_ok(p), "%s: pool accounting", f->name);
    cq_seq_free(c);
    cq_cache_free(qref);
    cq_cache_free(pref);
    free(P);
    free(Q);
    cq_kvpool_free(p);
}

int main(void) {
    for (size_t i = 0; i < NFMTS; i++) {
        test_adopt(&FMTS[i], 32, 0);
        test_adopt(&FMTS[i], 32, 3);
        test_eviction(&FMTS[i], i % 2 ? 2 : 0);
    }
    test_adopt(&FMTS[2], 128, 0);
    test_shared_32(&FMTS[2]);
    test_shared_32(&FMTS[3]);
    test_shared_32(&FMTS[0]);
    return cq_test_done("test_serve_prefix");
}
