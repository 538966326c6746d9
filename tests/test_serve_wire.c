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
 * bytes; encode, insert and adoption from two threads while a third appends to, publishes and
 * frees other sequences of both pools (run it under ThreadSanitizer: make TSAN=1).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cq_serve.h"
#include "cq_test.h"
#include "cq_util.h"
#include "util/cache_testutil.h"

#include "serve_fixture.h"

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

/* ------------------------------------------------------------ threads */

typedef struct thr_ctx {
    cq_kvpool *pa, *pb;
    uint8_t **blk;
    size_t *lens;
    uint64_t *hashes;
    uint32_t nb, rounds;
    const uint32_t *tok;
    uint32_t n;
    int bad;
} thr_ctx;

/* Encode every block again and again: the same bytes each time. */
static void *thr_encode(void *arg) {
    thr_ctx *c = arg;
    uint8_t *buf = malloc(cq_kvpool_block_wire_size(c->pa));
    for (uint32_t k = 0; k < c->rounds; k++)
        for (uint32_t b = 0; b < c->nb; b++) {
            size_t l = 0;
            if (cq_kvpool_block_encode(c->pa, c->hashes[b], buf, cq_kvpool_block_wire_size(c->pa),
                                       &l, NULL) != CQ_OK ||
                l != c->lens[b] || memcmp(buf, c->blk[b], l))
                c->bad++;
        }
    free(buf);
    return NULL;
}

/* Insert the blocks into the second pool, adopt them, free the sequence. */
static void *thr_insert(void *arg) {
    thr_ctx *c = arg;
    for (uint32_t k = 0; k < c->rounds; k++) {
        for (uint32_t b = 0; b < c->nb; b++)
            if (cq_kvpool_block_insert(c->pb, c->blk[b], c->lens[b], NULL, NULL) != CQ_OK) c->bad++;
        cq_seq *s = NULL;
        uint32_t got = 0;
        if (cq_seq_create(c->pb, &s, NULL) || cq_seq_adopt_prefix(s, c->tok, c->n, &got, NULL) ||
            got == 0)
            c->bad++;
        cq_seq_free(s);
    }
    return NULL;
}

/* Encode, insert and adopt from two threads while the main thread appends to, publishes
 * and frees other sequences of both pools (make tsan-style: run under ThreadSanitizer). */
static void test_threads(const fmt *f) {
    const uint32_t G = 32, S = 2, n = S + 3 * G + 1;
    uint32_t *P = malloc(n * sizeof *P), *Q = malloc(n * sizeof *Q);
    for (uint32_t i = 0; i < n; i++) P[i] = 3 + i, Q[i] = 9000 + i;
    cq_kvpool *pa = make_pool(f, G, S, 1ull << 30), *pb = make_pool(f, G, S, 1ull << 30);
    cq_seq *a = NULL;
    cq_seq_create(pa, &a, NULL);
    prefill(a, NULL, P, 0, n);
    cq_seq_publish(a, P, n, NULL);
    uint64_t h[4];
    size_t lens[4];
    uint32_t nb = 0;
    uint8_t **blk = encode_all(pa, P, n, &nb, lens, h, 4);
    thr_ctx c = {pa, pb, blk, lens, h, nb, 20, P, n, 0};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, thr_encode, &c);
    pthread_create(&t2, NULL, thr_insert, &c);
    int bad = 0;
    for (int k = 0; k < 6; k++) {
        cq_kvpool *p = k % 2 ? pb : pa;
        cq_seq *s = NULL;
        bad += cq_seq_create(p, &s, NULL) != CQ_OK;
        bad += prefill(s, NULL, Q, 0, n) != CQ_OK;
        bad += cq_seq_publish(s, Q, n, NULL) != CQ_OK;
        cq_seq_free(s);
    }
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(bad == 0 && c.bad == 0, "%s: %d / %d failures with threads", f->name, bad, c.bad);
    CHECK(pool_ok(pa) && pool_ok(pb), "%s: accounting after the threads", f->name);
    cq_seq_free(a);
    free_blocks(blk, nb);
    free(P);
    free(Q);
    cq_kvpool_free(pa);
    cq_kvpool_free(pb);
}

/* The wire size beside the block's bytes in the pool (printed: a figure for a shared store). */
static void print_sizes(void) {
    for (size_t i = 0; i < NFMTS; i++) {
        cq_kvpool *p = make_pool(&FMTS[i], 128, 0, 1ull << 30);
        const uint64_t bb = cq_kvpool_block_bytes(p);
        const size_t w = cq_kvpool_block_wire_size(p);
        printf("%s: %u layers x %u kv heads x D %u, G 128: a block holds %llu bytes in the pool, "
               "%zu on the wire (%.3fx)\n",
               FMTS[i].name, NL, H, D, (unsigned long long)bb, w, (double)w / (double)bb);
        CHECK(w > 0, "wire size");
        cq_kvpool_free(p);
    }
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
    test_threads(&FMTS[3]);
    print_sizes();
    return cq_test_done("test_serve_wire");
}
