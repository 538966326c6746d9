/* SPDX-License-Identifier: MIT */
/*
 * test_serve_wire.c - blocks of the serving pool on the wire (include/cq_serve.h, "Blocks
 * on the wire"): blocks published in one pool, encoded, inserted into a second pool of
 * the same configuration and adopted there read, export and attend bit for bit like the
 * publishing pool's sequence and like a full prefill (a cq_cache fed every token), per
 * format (fp16, CQ-8, CQ-4, CQ-4+ with masks, generic registry codecs, mixed layers),
 * with and without sinks, G 32 and 128; the second pool's own encoding is the same
 * bytes; pools of another model or configuration refuse (CQ_ERR_MISMATCH); bit flips
 * (every bit of the header, the store table, the tokens and the CRC, a dense sample of
 * the rest), every truncation, a wrong version, forged fields with a valid CRC and a
 * missing parent are refused and change nothing; inserts under budget pressure evict
 * unrelated blocks, never the block's ancestors, and refuse with nothing changed when
 * only ancestors could make room; the scalar and the SIMD kernel tables encode the same
 * bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cq_serve.h"
#include "cq_test.h"
#include "cq_util.h"
#include "util/cache_testutil.h"

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

/* ------------------------------------------------------------ moving blocks */

/* Encode every full block of tokens[0, n) from pool a; *nb blocks, *lens their lengths. */
static uint8_t **encode_all(const cq_kvpool *a, const uint32_t *tok, uint32_t n, uint32_t *nb,
                            size_t *lens, uint64_t *hashes, uint32_t cap) {
    cq_err e;
    CHECK(cq_kvpool_chain_hashes(a, tok, n, hashes, cap, nb, &e) == CQ_OK, "chain hashes: %s",
          e.msg);
    uint8_t **blk = calloc(*nb + 1, sizeof *blk);
    const size_t wmax = cq_kvpool_block_wire_size(a);
    for (uint32_t b = 0; b < *nb; b++) {
        size_t need = 0;
        CHECK(cq_kvpool_block_encode(a, hashes[b], NULL, 0, &need, &e) == CQ_OK && need <= wmax,
              "block %u: size %zu of at most %zu: %s", b, need, wmax, e.msg);
        blk[b] = malloc(need + 16);
        memset(blk[b] + need, 0xA5, 16); /* canaries */
        size_t l2 = 0;
        CHECK(cq_kvpool_block_encode(a, hashes[b], blk[b], need - 1, &l2, NULL) == CQ_ERR_BUFFER,
              "block %u: a short buffer is refused", b);
        CHECK(cq_kvpool_block_encode(a, hashes[b], blk[b], need, &lens[b], &e) == CQ_OK &&
                  lens[b] == need,
              "block %u: encode: %s", b, e.msg);
        int canary = 0;
        for (int i = 0; i < 16; i++) canary |= blk[b][need + i] != 0xA5;
        CHECK(!canary, "block %u: encode wrote past its length", b);
    }
    return blk;
}

static void free_blocks(uint8_t **blk, uint32_t nb) {
    for (uint32_t b = 0; b < nb; b++) free(blk[b]);
    free(blk);
}

/* Publish in pool a, move every block to pool b, adopt there: equal to a full prefill. */
static void test_move(const fmt *f, uint32_t G, uint32_t S) {
    cq_rng r;
    cq_rng_seed(&r, 5 + G + S);
    cq_kvpool *pa = make_pool(f, G, S, 1ull << 30), *pb = make_pool(f, G, S, 1ull << 30);
    const uint32_t n = S + 3 * G + G / 2;
    uint32_t *P = malloc(n * sizeof *P);
    for (uint32_t i = 0; i < n; i++) P[i] = 1 + cq_rng_below(&r, 30000);
    cq_seq *a = NULL, *b = NULL;
    cq_seq_create(pa, &a, NULL);
    CHECK(prefill(a, NULL, P, 0, n) == CQ_OK, "prefill");
    cq_err e;
    CHECK(cq_seq_publish(a, P, n, &e) == CQ_OK, "%s: publish: %s", f->name, e.msg);
    uint64_t ha[8], hb[8];
    size_t lens[8];
    uint32_t nb = 0, nb2 = 0;
    uint8_t **blk = encode_all(pa, P, n, &nb, lens, ha, 8);
    CHECK(nb == 3, "%s: %u full blocks", f->name, nb);
    CHECK(cq_kvpool_chain_hashes(pb, P, n, hb, 8, &nb2, NULL) == CQ_OK && nb2 == nb &&
              !memcmp(ha, hb, nb * sizeof *ha),
          "%s: the chain hashes are the configuration's", f->name);
    CHECK(cq_kvpool_chain_hashes(pb, P, n, hb, 2, &nb2, NULL) == CQ_OK && nb2 == 2,
          "%s: at most cap hashes", f->name);
    for (uint32_t k = 0; k < nb; k++) {
        cq_block_wire_info in;
        int ins = -1;
        CHECK(cq_kvpool_block_check(pb, blk[k], lens[k], &in, &e) == CQ_OK && in.pos == k &&
                  in.chain_hash == ha[k] && in.parent_hash == (k ? ha[k - 1] : 0) &&
                  in.n_tokens == (k ? G : S + G),
              "%s: check block %u: %s", f->name, k, e.msg);
        CHECK(cq_kvpool_block_insert(pb, blk[k], lens[k], &ins, &e) == CQ_OK && ins == 1,
              "%s: insert block %u: %s", f->name, k, e.msg);
        CHECK(cq_kvpool_block_insert(pb, blk[k], lens[k], &ins, &e) == CQ_OK && ins == 0,
              "%s: insert block %u again: %s", f->name, k, e.msg);
    }
    /* the second pool encodes the same bytes */
    size_t lens2[8];
    uint8_t **blk2 = encode_all(pb, P, n, &nb2, lens2, hb, 8);
    int same = nb2 == nb;
    for (uint32_t k = 0; same && k < nb; k++)
        same = lens2[k] == lens[k] && !memcmp(blk2[k], blk[k], lens[k]);
    CHECK(same, "%s G=%u S=%u: the receiving pool re-encodes other bytes", f->name, G, S);
    free_blocks(blk2, nb2);
    cq_kvpool_mem m;
    cq_kvpool_memory(pb, &m);
    CHECK(m.prefix.cached_blocks == 3 && m.prefix.lru_blocks == 3 && m.referenced == 0,
          "%s: 3 cached, unreferenced blocks inserted (%u)", f->name, m.prefix.cached_blocks);
    /* adopt in the second pool, prefill the rest: a full prefill, and the publisher */
    uint32_t got = 0;
    cq_seq_create(pb, &b, NULL);
    CHECK(cq_seq_adopt_prefix(b, P, n, &got, &e) == CQ_OK && got == S + 3 * G,
          "%s: adopted %u tokens: %s", f->name, got, e.msg);
    CHECK(prefill(b, NULL, P, got, n) == CQ_OK, "prefill the rest");
    cq_cache *full = make_ref(f, G, S);
    prefill(NULL, full, P, 0, n);
    CHECK(compare(b, full, &r) == 0, "%s G=%u S=%u: moved blocks differ from a full prefill",
          f->name, G, S);
    CHECK(compare(a, full, &r) == 0, "%s G=%u S=%u: the publisher differs", f->name, G, S);
    /* and keeps decoding like the full prefill */
    const uint32_t n2 = n + G;
    uint32_t *P2 = malloc(n2 * sizeof *P2);
    memcpy(P2, P, n * sizeof *P);
    for (uint32_t i = n; i < n2; i++) P2[i] = 7 + i;
    prefill(b, full, P2, n, n2);
    CHECK(compare(b, full, &r) == 0, "%s: decoding past the moved blocks", f->name);
    CHECK(pool_ok(pa) && pool_ok(pb), "%s: pool accounting", f->name);
    cq_seq_free(a);
    cq_seq_free(b);
    cq_cache_free(full);
    free_blocks(blk, nb);
    free(P);
    free(P2);
    cq_kvpool_free(pa);
    cq_kvpool_free(pb);
}

/* Refusals: other configurations, corruption, truncation, versions, a missing parent. */
static void test_refusals(const fmt *f, uint32_t G, uint32_t S) {
    cq_rng r;
    cq_rng_seed(&r, 42);
    cq_kvpool *pa = make_pool(f, G, S, 1ull << 30), *pb = make_pool(f, G, S, 1ull << 30);
    const uint32_t n = S + 2 * G + 1;
    uint32_t *P = malloc(n * sizeof *P);
    for (uint32_t i = 0; i < n; i++) P[i] = 100 + cq_rng_below(&r, 1000);
    cq_seq *a = NULL;
    cq_seq_create(pa, &a, NULL);
    prefill(a, NULL, P, 0, n);
    cq_seq_publish(a, P, n, NULL);
    uint64_t ha[4];
    size_t lens[4];
    uint32_t nb = 0;
    uint8_t **blk = encode_all(pa, P, n, &nb, lens, ha, 4);
    CHECK(nb == 2, "two blocks");
    cq_err e;
    /* another model, another configuration */
    cq_kvpool *pm = make_pool_k(f, G, S, 1ull << 30, 8, NULL);
    cq_kvpool *pg = make_pool(f, G * 2, S, 1ull << 30);
    cq_kvpool *ps = make_pool(f, G, S + 1, 1ull << 30);
    cq_kvpool *pf = make_pool(&FMTS[f == &FMTS[0] ? 1 : 0], G, S, 1ull << 30);
    cq_kvpool *others[4] = {pm, pg, ps, pf};
    for (int i = 0; i < 4; i++) {
        snap s0, s1;
        snap_take(others[i], &s0);
        int ins = 5;
        CHECK(cq_kvpool_block_check(others[i], blk[0], lens[0], NULL, &e) == CQ_ERR_MISMATCH,
              "%s: pool %d: check: %s", f->name, i, e.msg);
        CHECK(cq_kvpool_block_insert(others[i], blk[0], lens[0], &ins, &e) == CQ_ERR_MISMATCH &&
                  ins == 0,
              "%s: pool %d: insert: %s", f->name, i, e.msg);
        snap_take(others[i], &s1);
        CHECK(snap_equal(&s0, &s1), "%s: pool %d changed", f->name, i);
        cq_kvpool_free(others[i]);
    }
    /* a missing parent */
    snap s0, s1;
    snap_take(pb, &s0);
    CHECK(cq_kvpool_block_insert(pb, blk[1], lens[1], NULL, &e) == CQ_ERR_STATE,
          "%s: block 1 without its parent: %s", f->name, e.msg);
    snap_take(pb, &s1);
    CHECK(snap_equal(&s0, &s1), "%s: a refused insert changed the pool", f->name);
    /* every truncation; bit flips (all of the header, store table, tokens and CRC; a
     * dense sample of the slot bytes): refused by check and insert, nothing changed */
    int bad = 0;
    for (uint32_t k = 0; k < nb; k++) {
        if (k) CHECK(cq_kvpool_block_insert(pb, blk[k - 1], lens[k - 1], NULL, NULL) == CQ_OK,
                     "parent");
        snap_take(pb, &s0);
        const size_t L = lens[k];
        uint8_t *m = malloc(L);
        for (size_t t = 0; t < L; t++) {
            bad += cq_kvpool_block_check(pb, blk[k], t, NULL, NULL) == CQ_OK;
            if (t % 97 == 0) bad += cq_kvpool_block_insert(pb, blk[k], t, NULL, NULL) == CQ_OK;
        }
        const size_t dense = 80 + 16 * (size_t)NL * (2 * H + 2) + 4 * (size_t)(S + G) + 64;
        for (size_t bit = 0; bit < L * 8; bit++) {
            const size_t byte = bit / 8;
            if (byte >= dense && byte < L - 4 && bit % 29) continue;
            memcpy(m, blk[k], L);
            m[byte] ^= (uint8_t)(1u << (bit % 8));
            cq_status st = cq_kvpool_block_check(pb, m, L, NULL, NULL);
            bad += st == CQ_OK;
            if (bit % 7 == 0) bad += cq_kvpool_block_insert(pb, m, L, NULL, NULL) == CQ_OK;
        }
        snap_take(pb, &s1);
        CHECK(bad == 0 && snap_equal(&s0, &s1),
              "%s G=%u S=%u block %u: %d corrupt forms accepted or the pool changed", f->name,
              G, S, k, bad);
        /* forged fields with a valid CRC: each refused with its own code */
        struct {
            size_t off;
            uint32_t val;
            cq_status want;
        } forge[] = {{4, 2, CQ_ERR_VERSION},        {4, 0, CQ_ERR_VERSION},
                     {8, 0x1234, CQ_ERR_MISMATCH},  {16, 0x99, CQ_ERR_MISMATCH},
                     {24, NL + 1, CQ_ERR_MISMATCH}, {36, G + 1, CQ_ERR_MISMATCH},
                     {48, k ? 0 : 1, CQ_ERR_FORMAT},    {52, G + S + 1, CQ_ERR_FORMAT},
                     {80, 77, CQ_ERR_FORMAT},
                     {80 + 16 * (size_t)NL * (2 * H + 2), 0xBEEF, CQ_ERR_MISMATCH}};
        for (size_t i = 0; i < sizeof forge / sizeof forge[0]; i++) {
            memcpy(m, blk[k], L);
            m[forge[i].off] = (uint8_t)forge[i].val;
            m[forge[i].off + 1] = (uint8_t)(forge[i].val >> 8);
            uint32_t crc = cq_crc32c(0, m, L - 4);
            for (int j = 0; j < 4; j++) m[L - 4 + j] = (uint8_t)(crc >> (8 * j));
            cq_status st = cq_kvpool_block_check(pb, m, L, NULL, &e);
            CHECK(st == forge[i].want, "%s block %u: forged offset %zu: %s (%s)", f->name, k,
                  forge[i].off, cq_status_name(st), e.msg);
            CHECK(cq_kvpool_block_insert(pb, m, L, NULL, NULL) == forge[i].want, "insert forged");
        }
        /* a version the CRC covers but this library does not read */
        memcpy(m, blk[k], L);
        m[4] = 9;
        CHECK(cq_kvpool_block_check(pb, m, L, NULL, NULL) == CQ_ERR_VERSION, "version 9");
        snap_take(pb, &s1);
        CHECK(snap_equal(&s0, &s1), "%s: forged blocks changed the pool", f->name);
        free(m);
    }
    CHECK(cq_kvpool_block_encode(pa, 0x1234, NULL, 0, &lens[0], NULL) == CQ_ERR_RANGE,
          "%s: an unknown hash", f->name);
    CHECK(pool_ok(pb), "%s: pool accounting", f->name);
    cq_seq_free(a);
    free_blocks(blk, nb);
    free(P);
    cq_kvpool_free(pa);
    cq_kvpool_free(pb);
}

/* Budget: an insert evicts unrelated cached blocks, never its own ancestors. */
static void test_budget(const fmt *f, uint32_t S) {
    const uint32_t G = 32;
    cq_rng r;
    cq_rng_seed(&r, 3);
    cq_kvpool *pa = make_pool(f, G, S, 1ull << 30);
    const uint64_t bb = cq_kvpool_block_bytes(pa), sb = cq_kvpool_sink_bytes(pa);
    const uint32_t n = S + 3 * G;
    uint32_t *X = malloc(n * sizeof *X), *Y = malloc(n * sizeof *Y);
    for (uint32_t i = 0; i < n; i++) X[i] = 1 + i, Y[i] = 5000 + cq_rng_below(&r, 100);
    cq_seq *a = NULL;
    cq_seq_create(pa, &a, NULL);
    prefill(a, NULL, X, 0, n);
    cq_seq_publish(a, X, n, NULL);
    cq_seq_free(a);
    cq_seq_create(pa, &a, NULL);
    prefill(a, NULL, Y, 0, n);
    cq_seq_publish(a, Y, n, NULL);
    cq_seq_free(a);
    uint64_t hx[4], hy[4];
    size_t lx[4], ly[4];
    uint32_t nx = 0, ny = 0;
    uint8_t **bx = encode_all(pa, X, n, &nx, lx, hx, 4), **by = encode_all(pa, Y, n, &ny, ly, hy, 4);
    CHECK(nx == 3 && ny == 3, "three blocks each");
    cq_err e;
    /* room for y0, x0, x1: x2 evicts y0 */
    cq_kvpool *pb = make_pool(f, G, S, 2 * (bb + sb) + bb);
    int ins = 0;
    CHECK(cq_kvpool_block_insert(pb, by[0], ly[0], &ins, &e) == CQ_OK && ins, "y0: %s", e.msg);
    CHECK(cq_kvpool_block_insert(pb, bx[0], lx[0], &ins, &e) == CQ_OK && ins, "x0: %s", e.msg);
    CHECK(cq_kvpool_block_insert(pb, bx[1], lx[1], &ins, &e) == CQ_OK && ins, "x1: %s", e.msg);
    CHECK(cq_kvpool_block_insert(pb, bx[2], lx[2], &ins, &e) == CQ_OK && ins,
          "%s: x2 under pressure: %s", f->name, e.msg);
    cq_kvpool_mem m;
    cq_kvpool_memory(pb, &m);
    CHECK(m.prefix.blocks_evicted == 1 && m.prefix.cached_blocks == 3, "%s: evicted %llu",
          f->name, (unsigned long long)m.prefix.blocks_evicted);
    uint32_t got = 0;
    cq_seq *b = NULL;
    cq_seq_create(pb, &b, NULL);
    /* the whole chain survived: adopt all of it (a prompt one token longer) */
    uint32_t *X1 = malloc((n + 1) * sizeof *X1);
    memcpy(X1, X, n * sizeof *X);
    X1[n] = 9;
    CHECK(cq_seq_adopt_prefix(b, X1, n + 1, &got, &e) == CQ_OK && got == n,
          "%s: adopted %u of %u", f->name, got, n);
    cq_cache *full = make_ref(f, G, S);
    prefill(NULL, full, X, 0, n);
    CHECK(compare(b, full, &r) == 0, "%s: adopted inserted blocks", f->name);
    cq_seq_free(b);
    CHECK(pool_ok(pb), "%s: pool accounting", f->name);
    cq_kvpool_free(pb);
    /* room for x0 and x1 only: x2 could fit only by evicting its ancestors: refused */
    pb = make_pool(f, G, S, (bb + sb) + bb);
    CHECK(cq_kvpool_block_insert(pb, bx[0], lx[0], NULL, NULL) == CQ_OK, "x0");
    CHECK(cq_kvpool_block_insert(pb, bx[1], lx[1], NULL, NULL) == CQ_OK, "x1");
    snap s0, s1;
    snap_take(pb, &s0);
    ins = 3;
    CHECK(cq_kvpool_block_insert(pb, bx[2], lx[2], &ins, &e) == CQ_ERR_BUDGET && ins == 0,
          "%s: x2 with only its ancestors evictable: %s", f->name, e.msg);
    snap_take(pb, &s1);
    CHECK(snap_equal(&s0, &s1), "%s: a refused insert changed the pool", f->name);
    CHECK(pool_ok(pb), "%s: pool accounting", f->name);
    cq_kvpool_free(pb);
    cq_cache_free(full);
    free_blocks(bx, nx);
    free_blocks(by, ny);
    free(X);
    free(X1);
    free(Y);
    cq_kvpool_free(pa);
}

/* The scalar and the SIMD kernel tables encode the same bytes; blocks cross between them. */
static void test_kernels(const fmt *f, uint32_t G, uint32_t S) {
    cq_rng r;
    cq_rng_seed(&r, 17);
    cq_kvpool *ps = make_pool_k(f, G, S, 1ull << 30, 7, "scalar");
    cq_kvpool *pv = make_pool_k(f, G, S, 1ull << 30, 7, NULL); /* auto: the fastest here */
    const uint32_t n = S + 2 * G + 3;
    uint32_t *P = malloc(n * sizeof *P);
    for (uint32_t i = 0; i < n; i++) P[i] = cq_rng_below(&r, 9999);
    cq_seq *a = NULL, *b = NULL;
    cq_seq_create(ps, &a, NULL);
    cq_seq_create(pv, &b, NULL);
    prefill(a, NULL, P, 0, n);
    prefill(b, NULL, P, 0, n);
    cq_seq_publish(a, P, n, NULL);
    cq_seq_publish(b, P, n, NULL);
    uint64_t h1[4], h2[4];
    size_t l1[4], l2[4];
    uint32_t n1 = 0, n2 = 0;
    uint8_t **e1 = encode_all(ps, P, n, &n1, l1, h1, 4), **e2 = encode_all(pv, P, n, &n2, l2, h2, 4);
    int same = n1 == n2 && n1 == 2;
    for (uint32_t k = 0; same && k < n1; k++) same = l1[k] == l2[k] && !memcmp(e1[k], e2[k], l1[k]);
    CHECK(same, "%s G=%u: the scalar table encodes other bytes than the automatic one",
          f->name, G);
    cq_seq_free(a);
    cq_seq_free(b);
    free_blocks(e1, n1);
    free_blocks(e2, n2);
    free(P);
    cq_kvpool_free(ps);
    cq_kvpool_free(pv);
}

int main(void) {
    for (size_t i = 0; i < NFMTS; i++) {
        test_move(&FMTS[i], 32, 0);
        test_move(&FMTS[i], 32, 3);
        test_move(&FMTS[i], 128, i % 2 ? 4 : 0);
        test_budget(&FMTS[i], i % 2 ? 2 : 0);
        test_kernels(&FMTS[i], 128, 2);
    }
    test_refusals(&FMTS[3], 32, 3); /* CQ-4+ with masks and sinks */
    test_refusals(&FMTS[4], 32, 0); /* the generic path */
    return cq_test_done("test_serve_wire");
}
