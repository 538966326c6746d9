/* SPDX-License-Identifier: MIT */
/*
 * test_prefix_index.c - the serving pool's prefix index and block accounting
 * (include/cq_prefix.h): CQH64 known answers (from tests/ref/cqh64.py) and chain
 * properties, longest-run adoption (also with forced hash collisions), reference
 * counts, LRU order and eviction (subtrees, orphans), refused allocations and
 * bad input leaving the whole state unchanged, exact counters, randomized
 * operation sequences against a reference model written here, and leak checks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cq_prefix.h"
#include "cq_test.h"

#define NONE CQ_BLOCK_NONE
#define MAXB 512u  /* ids the reference model tracks */
#define MAXT 8u    /* tokens of a block in the randomized test */

/* ------------------------------------------------------------ helpers */

typedef struct freelog {
    uint32_t n;
    uint32_t ids[4096];
    uint64_t bytes[4096];
} freelog;

static void on_free(void *ctx, uint32_t id, uint64_t bytes) {
    freelog *f = ctx;
    if (f->n < 4096) f->ids[f->n] = id, f->bytes[f->n] = bytes;
    f->n++;
}

static cq_prefix_index *make(uint64_t cfg_hash, uint32_t G, uint32_t F, uint64_t budget,
                             uint32_t hash_bits, freelog *fl) {
    cq_prefix_config c = {.config_hash = cfg_hash, .block_tokens = G, .first_block_tokens = F,
                          .budget_bytes = budget, .on_free = on_free, .ctx = fl,
                          .hash_bits = hash_bits};
    cq_prefix_index *ix = NULL;
    cq_err e;
    cq_status st = cq_prefix_create(&c, &ix, &e);
    CHECK(st == CQ_OK && ix, "create: %s", e.msg);
    return ix;
}

/* cq_prefix_find against a scan of every id: the lowest cached id with the hash and position,
 * for every cached block, the same hash at the next position and a hash nobody has. */
static uint32_t find_scan(const cq_prefix_index *ix, uint64_t hash, uint32_t pos) {
    cq_prefix_block_info bi;
    for (uint32_t id = 0; id < cq_prefix_capacity(ix); id++)
        if (cq_prefix_info(ix, id, &bi, NULL) == CQ_OK && bi.state == CQ_BLOCK_CACHED &&
            bi.hash == hash && bi.pos == pos)
            return id;
    return CQ_BLOCK_NONE;
}

static int find_ok(const cq_prefix_index *ix) {
    cq_prefix_block_info bi;
    for (uint32_t id = 0; id < cq_prefix_capacity(ix); id++) {
        if (cq_prefix_info(ix, id, &bi, NULL) != CQ_OK || bi.state != CQ_BLOCK_CACHED) continue;
        const uint64_t h[3] = {bi.hash, bi.hash, bi.hash ^ 0x8000000000000000ull};
        const uint32_t pos[3] = {bi.pos, bi.pos + 1, bi.pos};
        for (int k = 0; k < 3; k++)
            if (cq_prefix_find(ix, h[k], pos[k]) != find_scan(ix, h[k], pos[k])) {
                fprintf(stderr, "cq_prefix_find(%016llx, %u) = %u, a scan finds %u\n",
                        (unsigned long long)h[k], pos[k], cq_prefix_find(ix, h[k], pos[k]),
                        find_scan(ix, h[k], pos[k]));
                return 0;
            }
        if (cq_prefix_find(ix, bi.hash, bi.pos) == CQ_BLOCK_NONE) return 0;
    }
    return cq_prefix_find(NULL, 0, 0) == CQ_BLOCK_NONE;
}

static int check_ok(const cq_prefix_index *ix) {
    cq_err e;
    if (!find_ok(ix)) return 0;
    if (cq_prefix_check(ix, &e) == CQ_OK) return 1;
    fprintf(stderr, "cq_prefix_check: %s\n", e.msg);
    return 0;
}

/* The whole observable state: stats, every id's info and tokens, the LRU order. */
typedef struct snap {
    cq_prefix_stats st;
    uint32_t cap, n_lru;
    cq_prefix_block_info *info;
    uint32_t *tok; /* [cap][64] */
    uint32_t *lru;
} snap;

static void snap_take(const cq_prefix_index *ix, snap *s) {
    cq_prefix_stats_get(ix, &s->st);
    s->cap = cq_prefix_capacity(ix);
    s->info = calloc(s->cap + 1, sizeof *s->info);
    s->tok = calloc((size_t)(s->cap + 1) * 64, sizeof *s->tok);
    s->lru = calloc(s->cap + 1, sizeof *s->lru);
    for (uint32_t i = 0; i < s->cap; i++) {
        cq_prefix_info(ix, i, &s->info[i], NULL);
        if (s->info[i].tokens && s->info[i].n_tokens <= 64)
            memcpy(s->tok + (size_t)i * 64, s->info[i].tokens, s->info[i].n_tokens * 4);
        s->info[i].tokens = NULL;
    }
    cq_prefix_lru(ix, s->lru, s->cap, &s->n_lru, NULL);
}

static void snap_free(snap *s) {
    free(s->info);
    free(s->tok);
    free(s->lru);
}

/* Equal states; the refusal counter may differ by `refusals`. */
static int snap_same(const snap *a, const snap *b, uint64_t refusals) {
    cq_prefix_stats x = a->st, y = b->st;
    if (y.budget_refusals != x.budget_refusals + refusals) return 0;
    y.budget_refusals = x.budget_refusals;
    if (memcmp(&x, &y, sizeof x) || a->cap != b->cap || a->n_lru != b->n_lru) return 0;
    if (memcmp(a->info, b->info, a->cap * sizeof *a->info)) return 0;
    if (memcmp(a->tok, b->tok, (size_t)a->cap * 64 * sizeof *a->tok)) return 0;
    return !memcmp(a->lru, b->lru, a->n_lru * sizeof *a->lru);
}

/* Allocate and publish a chain of nb blocks spelling tokens (F, then G at a time) under
 * parent; ids[nb]. Every block keeps its reference. */
static int publish_chain(cq_prefix_index *ix, uint32_t parent, const uint32_t *tokens,
                         uint32_t F, uint32_t G, uint32_t nb, uint64_t bytes, uint32_t *ids) {
    uint32_t off = 0;
    for (uint32_t k = 0; k < nb; k++) {
        uint32_t len = parent == NONE ? F : G, canon;
        cq_err e;
        if (cq_prefix_alloc(ix, &bytes, 1, &ids[k], &e)) return 0;
        if (cq_prefix_commit(ix, ids[k], parent, tokens + off, len, &canon, &e) || canon != ids[k]) {
            fprintf(stderr, "publish_chain: block %u: %s\n", k, e.msg);
            return 0;
        }
        parent = ids[k];
        off += len;
    }
    return 1;
}

static int sorted_eq(uint32_t *a, uint32_t na, uint32_t *b, uint32_t nb) {
    if (na != nb) return 0;
    for (uint32_t i = 0; i < na; i++)
        for (uint32_t j = i + 1; j < na; j++) {
            if (a[j] < a[i]) { uint32_t t = a[i]; a[i] = a[j]; a[j] = t; }
            if (b[j] < b[i]) { uint32_t t = b[i]; b[i] = b[j]; b[j] = t; }
        }
    return !memcmp(a, b, na * sizeof *a);
}

/* ------------------------------------------------------------ the hash */

static void test_hash_known_answers(void) {
    /* values of tests/ref/cqh64.py, an independent Python implementation of the text */
    uint32_t t3[3] = {1, 2, 3}, tmax[1] = {0xFFFFFFFFu}, g[128];
    for (uint32_t i = 0; i < 128; i++) g[i] = (uint32_t)(i * 2654435761u);
    CHECK(cq_prefix_chain_hash(0, 0, NULL, 0) == 0x42ecd683c5456ca3ull, "chain empty");
    CHECK(cq_prefix_chain_hash(1, 2, t3, 3) == 0x5bd576e340501c05ull, "chain 1 2 [1 2 3]");
    CHECK(cq_prefix_chain_hash(7, 0, tmax, 1) == 0xe8c296f500898514ull, "chain max token");
    CHECK(cq_prefix_chain_hash(0xDEADBEEFCAFEF00Dull, 0x0123456789ABCDEFull, g, 128) ==
              0x55bf1742ad3008e7ull, "chain of 128 tokens");
    uint8_t b16[16];
    for (int i = 0; i < 16; i++) b16[i] = (uint8_t)i;
    CHECK(cq_prefix_hash_bytes("", 0) == 0xa5e5ea06f930aa9aull, "bytes empty");
    CHECK(cq_prefix_hash_bytes(NULL, 0) == 0xa5e5ea06f930aa9aull, "bytes NULL, 0");
    CHECK(cq_prefix_hash_bytes("abc", 3) == 0x4277413c65c635fdull, "bytes abc");
    CHECK(cq_prefix_hash_bytes("123456789", 9) == 0xe7a764fd429e8396ull, "bytes 123456789");
    CHECK(cq_prefix_hash_bytes(b16, 16) == 0x1762b29065f3dd48ull, "bytes 0..15");
}

/* chain[k] of a prompt: F tokens, then G at a time */
static void chain_of(uint64_t cfg, const uint32_t *t, uint32_t F, uint32_t G, uint32_t nb,
                     uint64_t *h) {
    uint64_t p = 0;
    for (uint32_t k = 0, off = 0; k < nb; k++) {
        uint32_t len = k ? G : F;
        h[k] = p = cq_prefix_chain_hash(cfg, p, t + off, len);
        off += len;
    }
}

static void test_hash_chain(void) {
    enum { F = 6, G = 4, NB = 8, NT = F + G * (NB - 1) };
    uint32_t a[NT], b[NT];
    uint64_t ha[NB], hb[NB], hc[NB];
    uint64_t seed = 12345;
    int bad_prefix = 0, bad_later = 0, bad_cfg = 0, trials = 0;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < NT; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            a[i] = (uint32_t)(seed >> 33) % 50;
        }
        memcpy(b, a, sizeof a);
        /* change one token of block j */
        uint32_t j = (uint32_t)trial % NB, start = j ? F + G * (j - 1) : 0, len = j ? G : F;
        b[start + (uint32_t)trial % len] += 1 + (uint32_t)trial % 7;
        chain_of(99, a, F, G, NB, ha);
        chain_of(99, b, F, G, NB, hb);
        chain_of(100, a, F, G, NB, hc);
        for (uint32_t k = 0; k < NB; k++) {
            if (k < j && ha[k] != hb[k]) bad_prefix++;
            if (k >= j && ha[k] == hb[k]) bad_later++;
            if (ha[k] == hc[k]) bad_cfg++;
        }
        trials++;
    }
    CHECK(trials == 200 && !bad_prefix, "same prefix, same chain: %d differ", bad_prefix);
    CHECK(!bad_later, "a changed block changes it and every later hash: %d equal", bad_later);
    CHECK(!bad_cfg, "the configuration hash changes every hash: %d equal", bad_cfg);
    /* parent, order and length all participate */
    uint32_t t[3] = {5, 6, 7}, s[3] = {6, 5, 7};
    CHECK(cq_prefix_chain_hash(1, 2, t, 3) != cq_prefix_chain_hash(1, 3, t, 3), "parent");
    CHECK(cq_prefix_chain_hash(1, 2, t, 3) != cq_prefix_chain_hash(1, 2, s, 3), "order");
    CHECK(cq_prefix_chain_hash(1, 2, t, 2) != cq_prefix_chain_hash(1, 2, t, 3), "length");
    uint32_t z1[1] = {0}, z2[2] = {0, 0};
    CHECK(cq_prefix_chain_hash(1, 2, z1, 1) != cq_prefix_chain_hash(1, 2, z2, 2), "zero tokens");
    CHECK(cq_prefix_hash_bytes("a\0", 2) != cq_prefix_hash_bytes("a", 1), "bytes length");
}

/* ------------------------------------------------------------ adoption */

static void test_adopt(uint32_t hash_bits) {
    enum { F = 6, G = 4, NB = 5, NT = F + G * (NB - 1) };
    freelog fl = {0};
    cq_prefix_index *ix = make(77, G, F, 1u << 20, hash_bits, &fl);
    uint32_t p[NT + 3], ids[NB], got[16], n = 0;
    for (uint32_t i = 0; i < NT + 3; i++) p[i] = 1000 + i;
    CHECK(publish_chain(ix, NONE, p, F, G, NB, 100, ids), "publish");
    CHECK(cq_prefix_release_chain(ix, ids, NB, NULL) == CQ_OK, "release chain");
    cq_prefix_stats st;
    cq_prefix_stats_get(ix, &st);
    CHECK(st.lru_blocks == NB && st.referenced_blocks == 0 && st.cached_blocks == NB, "all cached");

    CHECK(!cq_prefix_match(ix, p, NT, UINT32_MAX, got, 16, &n, NULL) && n == NB &&
              !memcmp(got, ids, sizeof ids), "whole prompt: %u blocks", n);
    CHECK(!cq_prefix_match(ix, p, NT + 3, UINT32_MAX, got, 16, &n, NULL) && n == NB,
          "partial last block ignored");
    CHECK(!cq_prefix_match(ix, p, NT - 1, UINT32_MAX, got, 16, &n, NULL) && n == NB - 1,
          "a prompt one short: %u", n);
    CHECK(!cq_prefix_match(ix, p, F - 1, UINT32_MAX, got, 16, &n, NULL) && n == 0,
          "shorter than the first block");
    CHECK(!cq_prefix_match(ix, p, NT, 3, got, 16, &n, NULL) && n == 3, "max_blocks");
    CHECK(!cq_prefix_match(ix, p, NT, UINT32_MAX, got, 2, &n, NULL) && n == NB && got[1] == ids[1],
          "cap below the run");
    CHECK(!cq_prefix_match(ix, p, NT, UINT32_MAX, NULL, 0, &n, NULL) && n == NB, "count only");
    uint32_t q[NT];
    memcpy(q, p, sizeof q);
    q[F + G + 1] ^= 1; /* inside block 2 */
    CHECK(!cq_prefix_match(ix, q, NT, UINT32_MAX, got, 16, &n, NULL) && n == 2, "diverges in 2");
    memcpy(q, p, sizeof q);
    q[0] ^= 1;
    CHECK(!cq_prefix_match(ix, q, NT, UINT32_MAX, got, 16, &n, NULL) && n == 0, "diverges at 0");
    /* a block with the same tokens under another parent is not a match */
    memcpy(q, p, sizeof q);
    memcpy(q + F, p + F + G, G * sizeof *q); /* block 1 := block 2's tokens */
    CHECK(!cq_prefix_match(ix, q, NT, UINT32_MAX, got, 16, &n, NULL) && n == 1, "parent matters");
    cq_prefix_stats_get(ix, &st);
    CHECK(st.lookups == 0 && st.lru_blocks == NB, "match is read-only");

    /* adopt 4 of 5: references, LRU, counters */
    CHECK(!cq_prefix_adopt(ix, p, NT, 4, got, 16, &n, NULL) && n == 4 &&
              !memcmp(got, ids, 4 * sizeof *ids), "adopt 4");
    uint32_t lru[16], nl;
    cq_prefix_lru(ix, lru, 16, &nl, NULL);
    CHECK(nl == 1 && lru[0] == ids[4], "only the fifth block is left in the LRU");
    CHECK(!cq_prefix_adopt(ix, q, NT, UINT32_MAX, got, 16, &n, NULL) && n == 1, "second adopt");
    CHECK(!cq_prefix_adopt(ix, p + 1, NT - 1, UINT32_MAX, got, 16, &n, NULL) && n == 0, "a miss");
    cq_prefix_stats_get(ix, &st);
    CHECK(st.lookups == 3 && st.hits == 2 && st.blocks_reused == 5 &&
              st.tokens_reused == (F + 3 * G) + F,
          "counters: lookups %llu hits %llu blocks %llu tokens %llu",
          (unsigned long long)st.lookups, (unsigned long long)st.hits,
          (unsigned long long)st.blocks_reused, (unsigned long long)st.tokens_reused);
    cq_prefix_block_info bi;
    cq_prefix_info(ix, ids[0], &bi, NULL);
    CHECK(bi.refs == 2 && !bi.in_lru && bi.pos == 0 && bi.parent == NONE, "block 0 adopted twice");
    cq_prefix_info(ix, ids[3], &bi, NULL);
    uint64_t hp[NB];
    chain_of(77, p, F, G, NB, hp);
    CHECK(bi.refs == 1 && bi.pos == 3 && bi.parent == ids[2] && bi.n_tokens == G &&
              !memcmp(bi.tokens, p + F + 2 * G, G * sizeof *p) && bi.hash == hp[3],
          "block 3 info");

    /* a branch: shares blocks 0-1, then diverges */
    uint32_t br[2], r[F + 3 * G];
    memcpy(r, p, sizeof r);
    for (uint32_t i = F + G; i < F + 3 * G; i++) r[i] = 5000 + i;
    CHECK(publish_chain(ix, ids[1], r + F + G, F, G, 2, 100, br), "publish branch");
    CHECK(!cq_prefix_match(ix, r, F + 3 * G, UINT32_MAX, got, 16, &n, NULL) && n == 4 &&
              got[1] == ids[1] && got[2] == br[0] && got[3] == br[1], "branch matched");
    /* duplicate commit: a second copy of block 2 of the branch */
    uint32_t dup, canon;
    uint64_t by = 100;
    CHECK(!cq_prefix_alloc(ix, &by, 1, &dup, NULL), "alloc dup");
    CHECK(!cq_prefix_commit(ix, dup, ids[1], r + F + G, G, &canon, NULL) && canon == br[0],
          "duplicate names the existing block");
    cq_prefix_info(ix, dup, &bi, NULL);
    CHECK(bi.state == CQ_BLOCK_PRIVATE, "the duplicate stays private");
    cq_prefix_stats_get(ix, &st);
    CHECK(st.duplicates == 1 && st.commits == NB + 2, "commit counters");
    CHECK(check_ok(ix), "invariants (hash_bits %u)", hash_bits);

    /* leak check: release everything, drop the cache */
    uint32_t fl0 = fl.n;
    CHECK(!cq_prefix_release(ix, dup, NULL) && fl.n == fl0 + 1 && fl.ids[fl0] == dup,
          "private block freed on release");
    CHECK(!cq_prefix_release_chain(ix, br, 2, NULL), "release branch");
    CHECK(!cq_prefix_release_chain(ix, ids, 4, NULL) && !cq_prefix_release(ix, ids[0], NULL),
          "release adopted");
    uint64_t freed;
    CHECK(!cq_prefix_evict(ix, UINT64_MAX, &freed, NULL) && freed == 7 * 100, "drop the cache");
    cq_prefix_stats_get(ix, &st);
    CHECK(st.live_blocks == 0 && st.used_bytes == 0 && fl.n == st.blocks_allocated,
          "no leak: %u live, %u freed of %llu", st.live_blocks, fl.n,
          (unsigned long long)st.blocks_allocated);
    CHECK(check_ok(ix), "invariants after the drop");
    cq_prefix_free(ix);
}

/* ------------------------------------------------------------ LRU and eviction */

static void test_lru_evict(void) {
    enum { F = 3, G = 2 };
    freelog fl = {0};
    cq_prefix_index *ix = make(5, G, F, 1000, 0, &fl);
    uint32_t ta[F + 3 * G], tb[F + G], tc[F + G], A[4], B[2], C[2], lru[32], nl, got[8], n;
    for (uint32_t i = 0; i < F + 3 * G; i++) ta[i] = i;
    for (uint32_t i = 0; i < F + G; i++) tb[i] = 100 + i, tc[i] = 200 + i;
    CHECK(publish_chain(ix, NONE, ta, F, G, 4, 100, A) && A[0] == 0 && A[3] == 3, "chain A");
    CHECK(!cq_prefix_release_chain(ix, A, 4, NULL), "release A");
    CHECK(publish_chain(ix, NONE, tb, F, G, 2, 100, B) && B[0] == 4 && B[1] == 5, "chain B");
    CHECK(!cq_prefix_release_chain(ix, B, 2, NULL), "release B");
    cq_prefix_lru(ix, lru, 32, &nl, NULL);
    uint32_t want1[6] = {3, 2, 1, 0, 5, 4};
    CHECK(nl == 6 && !memcmp(lru, want1, sizeof want1), "LRU: deepest first, oldest first");

    /* 5 x 100 more: 100 over the budget -> exactly the oldest (A3) goes */
    uint64_t by[5] = {100, 100, 100, 100, 100};
    uint32_t ids[5];
    CHECK(!cq_prefix_alloc(ix, by, 5, ids, NULL), "alloc 5");
    uint32_t want_ids[5] = {3, 6, 7, 8, 9};
    CHECK(!memcmp(ids, want_ids, sizeof ids), "ids lowest free first: %u %u %u %u %u", ids[0],
          ids[1], ids[2], ids[3], ids[4]);
    CHECK(fl.n == 1 && fl.ids[0] == 3 && fl.bytes[0] == 100, "evicted A3 only");
    cq_prefix_stats st;
    cq_prefix_stats_get(ix, &st);
    CHECK(st.blocks_evicted == 1 && st.bytes_evicted == 100 && st.used_bytes == 1000, "counters");
    CHECK(!cq_prefix_release_chain(ix, ids, 5, NULL) && fl.n == 6, "private blocks freed");

    /* adopt A's prompt: A0..A2 (A3 is gone) */
    CHECK(!cq_prefix_adopt(ix, ta, F + 3 * G, UINT32_MAX, got, 8, &n, NULL) && n == 3 &&
              got[0] == 0 && got[2] == 2, "adopt after eviction: %u", n);
    /* release out of chain order: A0 becomes older than its children */
    CHECK(!cq_prefix_release(ix, 0, NULL) && !cq_prefix_release(ix, 2, NULL) &&
              !cq_prefix_release(ix, 1, NULL), "release A0, A2, A1");
    cq_prefix_lru(ix, lru, 32, &nl, NULL);
    uint32_t want2[5] = {5, 4, 0, 2, 1};
    CHECK(nl == 5 && !memcmp(lru, want2, sizeof want2), "LRU after re-release");
    uint64_t freed;
    CHECK(!cq_prefix_evict(ix, 150, &freed, NULL) && freed == 200, "evict 150: B1 and B0");
    fl.n = 0;
    CHECK(!cq_prefix_evict(ix, 1, &freed, NULL) && freed == 300, "A0 takes its subtree");
    uint32_t want3[3] = {0, 1, 2};
    CHECK(fl.n == 3 && sorted_eq(fl.ids, 3, want3, 3), "A0, A1, A2 freed");
    cq_prefix_stats_get(ix, &st);
    CHECK(st.cached_blocks == 0 && st.live_blocks == 0 && st.blocks_evicted == 6 &&
              st.bytes_evicted == 600, "all evicted: %llu", (unsigned long long)st.blocks_evicted);

    /* an orphan: the parent is released, the child keeps its reference */
    CHECK(publish_chain(ix, NONE, tc, F, G, 2, 100, C), "chain C");
    CHECK(!cq_prefix_release(ix, C[0], NULL), "release C0 only");
    fl.n = 0;
    CHECK(!cq_prefix_evict(ix, 1, &freed, NULL) && freed == 100 && fl.n == 1 && fl.ids[0] == C[0],
          "C0 evicted");
    cq_prefix_block_info bi;
    cq_prefix_info(ix, C[1], &bi, NULL);
    CHECK(bi.state == CQ_BLOCK_PRIVATE && bi.refs == 1 && bi.parent == NONE, "C1 orphaned");
    cq_prefix_stats_get(ix, &st);
    CHECK(st.blocks_orphaned == 1 && st.cached_blocks == 0, "orphan counted");
    CHECK(!cq_prefix_match(ix, tc, F + G, UINT32_MAX, got, 8, &n, NULL) && n == 0, "C gone");
    CHECK(!cq_prefix_release(ix, C[1], NULL) && fl.n == 2 && fl.ids[1] == C[1], "orphan freed");
    cq_prefix_stats_get(ix, &st);
    CHECK(st.live_blocks == 0 && check_ok(ix), "no leak");
    cq_prefix_free(ix);
}

/* ------------------------------------------------------------ refusals change nothing */

static void test_refusals(void) {
    enum { F = 3, G = 2 };
    freelog fl = {0};
    cq_prefix_index *ix = make(9, G, F, 1000, 0, &fl);
    uint32_t t[F + 2 * G], A[3], P[2], got[4], n, canon;
    for (uint32_t i = 0; i < F + 2 * G; i++) t[i] = 40 + i;
    /* 300 cached (A1, A2 unreferenced: 200 evictable), 2 private blocks of 150 */
    CHECK(publish_chain(ix, NONE, t, F, G, 3, 100, A), "chain");
    CHECK(!cq_prefix_release_chain(ix, A + 1, 2, NULL), "A1, A2 to the LRU");
    uint64_t b2[2] = {150, 150};
    CHECK(!cq_prefix_alloc(ix, b2, 2, P, NULL), "private");
    snap s0, s1;
    snap_take(ix, &s0);
    cq_err e;
    uint32_t ids[4];
    uint64_t big[2] = {300, 301}; /* free 400 + evictable 200 = 600 < 601 */
    CHECK(cq_prefix_alloc(ix, big, 2, ids, &e) == CQ_ERR_BUDGET && strstr(e.msg, "nothing changed"),
          "over budget: %s", e.msg);
    snap_take(ix, &s1);
    CHECK(snap_same(&s0, &s1, 1) && fl.n == 0, "a refused allocation changes nothing");
    snap_free(&s1);
    uint64_t huge = 1001;
    CHECK(cq_prefix_alloc(ix, &huge, 1, ids, &e) == CQ_ERR_BUDGET, "more than the budget");
    snap_take(ix, &s1);
    CHECK(snap_same(&s0, &s1, 2), "unchanged");
    snap_free(&s1);

    /* bad input: each refused with its status, nothing changed */
    uint64_t zero[2] = {100, 0}, ovf[2] = {UINT64_MAX, 2};
    struct { cq_status got, want; const char *what; } cases[] = {
        {cq_prefix_alloc(ix, b2, 0, ids, &e), CQ_ERR_ARG, "0 blocks"},
        {cq_prefix_alloc(ix, zero, 2, ids, &e), CQ_ERR_ARG, "0 bytes"},
        {cq_prefix_alloc(ix, ovf, 2, ids, &e), CQ_ERR_OVERFLOW, "size overflow"},
        {cq_prefix_alloc(ix, NULL, 1, ids, &e), CQ_ERR_NULL, "NULL bytes"},
        {cq_prefix_alloc(NULL, b2, 1, ids, &e), CQ_ERR_NULL, "NULL index"},
        {cq_prefix_ref(ix, 1000000, &e), CQ_ERR_RANGE, "ref out of range"},
        {cq_prefix_ref(ix, 10, &e), CQ_ERR_STATE, "ref of a free id"},
        {cq_prefix_release(ix, 10, &e), CQ_ERR_STATE, "release of a free id"},
        {cq_prefix_release(ix, A[1], &e), CQ_ERR_STATE, "release of an LRU block"},
        {cq_prefix_release_chain(ix, (uint32_t[]){P[0], A[0], A[2]}, 3, &e), CQ_ERR_STATE,
         "a chain with a bad last entry"},
        {cq_prefix_release_chain(ix, (uint32_t[]){A[0], A[0]}, 2, &e), CQ_ERR_STATE,
         "one reference released twice"},
        {cq_prefix_release_chain(ix, NULL, 1, &e), CQ_ERR_NULL, "NULL chain"},
        {cq_prefix_commit(ix, 10, NONE, t, F, &canon, &e), CQ_ERR_STATE, "commit a free id"},
        {cq_prefix_commit(ix, 1000000, NONE, t, F, &canon, &e), CQ_ERR_RANGE, "commit out of range"},
        {cq_prefix_commit(ix, A[0], NONE, t, F, &canon, &e), CQ_ERR_STATE, "commit twice"},
        {cq_prefix_commit(ix, P[0], P[1], t, G, &canon, &e), CQ_ERR_STATE, "private parent"},
        {cq_prefix_commit(ix, P[0], P[0], t, G, &canon, &e), CQ_ERR_STATE, "own parent"},
        {cq_prefix_commit(ix, P[0], 1000000, t, G, &canon, &e), CQ_ERR_STATE, "parent out of range"},
        {cq_prefix_commit(ix, P[0], NONE, t, G, &canon, &e), CQ_ERR_SHAPE, "short first block"},
        {cq_prefix_commit(ix, P[0], A[2], t, F, &canon, &e), CQ_ERR_SHAPE, "long later block"},
        {cq_prefix_commit(ix, P[0], NONE, NULL, F, &canon, &e), CQ_ERR_NULL, "NULL tokens"},
        {cq_prefix_match(ix, NULL, 3, 9, got, 4, &n, &e), CQ_ERR_NULL, "match NULL tokens"},
        {cq_prefix_adopt(ix, t, F, 9, NULL, 4, &n, &e), CQ_ERR_NULL, "adopt NULL ids"},
        {cq_prefix_lru(ix, NULL, 3, &n, &e), CQ_ERR_NULL, "lru NULL ids"},
        {cq_prefix_info(ix, 1000000, &(cq_prefix_block_info){0}, &e), CQ_ERR_RANGE, "info range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK(cases[i].got == cases[i].want, "%s: %s, want %s", cases[i].what,
              cq_status_name(cases[i].got), cq_status_name(cases[i].want));
    snap_take(ix, &s1);
    CHECK(snap_same(&s0, &s1, 2) && fl.n == 0, "bad input changed nothing");
    snap_free(&s1);

    /* charges: the same budget rule; uncharging more than is charged is refused */
    CHECK(cq_prefix_charge(ix, 601, &e) == CQ_ERR_BUDGET && strstr(e.msg, "nothing changed"),
          "charge over budget: %s", e.msg);
    CHECK(cq_prefix_uncharge(ix, 1, &e) == CQ_ERR_RANGE, "uncharge of nothing");
    snap_take(ix, &s1);
    CHECK(snap_same(&s0, &s1, 3) && fl.n == 0, "refused charges changed nothing");
    snap_free(&s1);
    CHECK(!cq_prefix_charge(ix, 450, NULL) && fl.n == 1, "a charge evicts the oldest LRU block");
    cq_prefix_stats st;
    cq_prefix_stats_get(ix, &st);
    CHECK(st.used_bytes == 600 - 100 + 450 && st.charged_bytes == 450, "charged: %llu used",
          (unsigned long long)st.used_bytes);
    CHECK(!cq_prefix_uncharge(ix, 450, NULL) && cq_prefix_uncharge(ix, 1, NULL) == CQ_ERR_RANGE,
          "uncharge");
    /* exactly the budget: fits by evicting the last LRU block */
    uint64_t exact[2] = {300, 300};
    CHECK(!cq_prefix_alloc(ix, exact, 2, ids, NULL) && fl.n == 2, "exact fit evicts the LRU");
    cq_prefix_stats_get(ix, &st);
    CHECK(st.used_bytes == 1000 && st.lru_bytes == 0 && st.budget_refusals == 3 &&
              st.allocs == 5 && st.blocks_allocated == 7, "budget full; counters");
    uint64_t one = 1;
    CHECK(cq_prefix_alloc(ix, &one, 1, ids + 2, NULL) == CQ_ERR_BUDGET, "one byte more refused");
    CHECK(!cq_prefix_release_chain(ix, ids, 2, NULL) && !cq_prefix_release_chain(ix, P, 2, NULL) &&
              !cq_prefix_release(ix, A[0], NULL), "release all");
    cq_prefix_evict(ix, UINT64_MAX, NULL, NULL);
    cq_prefix_stats_get(ix, &st);
    CHECK(st.live_blocks == 0 && fl.n == st.blocks_allocated && check_ok(ix), "no leak");
    snap_free(&s0);
    cq_prefix_free(ix);

    /* create */
    cq_prefix_index *bad = (cq_prefix_index *)&fl;
    cq_prefix_config c = {.block_tokens = 0, .budget_bytes = 1};
    CHECK(cq_prefix_create(&c, &bad, &e) == CQ_ERR_ARG && !bad, "G = 0");
    c.block_tokens = 4, c.budget_bytes = 0;
    CHECK(cq_prefix_create(&c, &bad, &e) == CQ_ERR_ARG, "budget 0");
    c.budget_bytes = 1, c.hash_bits = 65;
    CHECK(cq_prefix_create(&c, &bad, &e) == CQ_ERR_ARG, "hash_bits 65");
    CHECK(cq_prefix_create(NULL, &bad, &e) == CQ_ERR_NULL, "NULL config");
    cq_prefix_free(NULL);
}

/* ------------------------------------------------------------ the reference model */

typedef struct rblk {
    int state;
    uint32_t refs, parent, pos, ntok;
    uint64_t bytes;
    uint32_t tok[MAXT];
} rblk;

typedef struct model {
    uint32_t G, F;
    uint64_t budget, used, charged; /* used includes charged */
    rblk b[MAXB];
    uint32_t lru[MAXB], n_lru;
    uint32_t freed[MAXB], n_freed;
    cq_prefix_stats st; /* counters only */
} model;

static uint64_t m_lru_bytes(const model *m) {
    uint64_t s = 0;
    for (uint32_t i = 0; i < m->n_lru; i++) s += m->b[m->lru[i]].bytes;
    return s;
}
static void m_lru_remove(model *m, uint32_t id) {
    for (uint32_t i = 0; i < m->n_lru; i++)
        if (m->lru[i] == id) {
            memmove(m->lru + i, m->lru + i + 1, (m->n_lru - i - 1) * sizeof *m->lru);
            m->n_lru--;
            return;
        }
}
static void m_free(model *m, uint32_t id) {
    m->used -= m->b[id].bytes;
    memset(&m->b[id], 0, sizeof m->b[id]);
    m->freed[m->n_freed++] = id;
}
/* evict root and every cached descendant */
static uint64_t m_evict_one(model *m, uint32_t root) {
    static uint8_t mark[MAXB];
    memset(mark, 0, sizeof mark);
    mark[root] = 1;
    for (int changed = 1; changed;) {
        changed = 0;
        for (uint32_t i = 0; i < MAXB; i++)
            if (!mark[i] && m->b[i].state == CQ_BLOCK_CACHED && m->b[i].parent != NONE &&
                mark[m->b[i].parent])
                mark[i] = 1, changed = 1;
    }
    uint64_t f = 0;
    for (uint32_t i = 0; i < MAXB; i++) {
        if (!mark[i]) continue;
        rblk *x = &m->b[i];
        if (x->refs == 0) {
            m_lru_remove(m, i);
            f += x->bytes;
            m->st.blocks_evicted++;
            m->st.bytes_evicted += x->bytes;
            m_free(m, i);
        } else {
            x->state = CQ_BLOCK_PRIVATE;
            x->parent = NONE;
            x->pos = x->ntok = 0;
            m->st.blocks_orphaned++;
        }
    }
    return f;
}
static cq_status m_alloc(model *m, const uint64_t *bytes, uint32_t n, uint32_t *ids) {
    uint64_t need = 0;
    for (uint32_t i = 0; i < n; i++) need += bytes[i];
    if (need > m->budget - m->used + m_lru_bytes(m)) {
        m->st.budget_refusals++;
        return CQ_ERR_BUDGET;
    }
    while (m->budget - m->used < need) m_evict_one(m, m->lru[0]);
    for (uint32_t i = 0, id = 0; i < n; i++) {
        while (id < MAXB && m->b[id].state != CQ_BLOCK_FREE) id++;
        if (id >= MAXB) abort(); /* the budget keeps far fewer blocks live */
        m->b[id].state = CQ_BLOCK_PRIVATE;
        m->b[id].refs = 1;
        m->b[id].bytes = bytes[i];
        m->used += bytes[i];
        ids[i] = id;
    }
    m->st.allocs++;
    m->st.blocks_allocated += n;
    return CQ_OK;
}
static cq_status m_release_chain(model *m, const uint32_t *ids, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (m->b[ids[i]].state == CQ_BLOCK_FREE || m->b[ids[i]].refs == 0) {
            while (i--) m->b[ids[i]].refs++;
            return CQ_ERR_STATE;
        }
        m->b[ids[i]].refs--;
    }
    for (uint32_t i = n; i--;) {
        rblk *x = &m->b[ids[i]];
        if (x->state == CQ_BLOCK_FREE || x->refs) continue;
        int in_lru = 0;
        for (uint32_t j = 0; j < m->n_lru; j++) in_lru |= m->lru[j] == ids[i];
        if (in_lru) continue;
        if (x->state == CQ_BLOCK_CACHED) m->lru[m->n_lru++] = ids[i];
        else m_free(m, ids[i]);
    }
    return CQ_OK;
}
static void m_ref(model *m, uint32_t id) {
    if (m->b[id].refs++ == 0) m_lru_remove(m, id);
}
static uint32_t m_find(const model *m, uint32_t parent, const uint32_t *t, uint32_t n) {
    for (uint32_t i = 0; i < MAXB; i++) {
        const rblk *x = &m->b[i];
        if (x->state == CQ_BLOCK_CACHED && x->parent == parent && x->ntok == n &&
            !memcmp(x->tok, t, n * sizeof *t))
            return i;
    }
    return NONE;
}
static cq_status m_commit(model *m, uint32_t id, uint32_t parent, const uint32_t *t, uint32_t n,
                          uint32_t *canon) {
    if (m->b[id].state != CQ_BLOCK_PRIVATE) return CQ_ERR_STATE;
    if (parent != NONE && (parent >= MAXB || m->b[parent].state != CQ_BLOCK_CACHED))
        return CQ_ERR_STATE;
    if (n != (parent == NONE ? m->F : m->G)) return CQ_ERR_SHAPE;
    uint32_t e = m_find(m, parent, t, n);
    if (e != NONE) {
        m->st.duplicates++;
        *canon = e;
        return CQ_OK;
    }
    rblk *x = &m->b[id];
    x->state = CQ_BLOCK_CACHED;
    x->parent = parent;
    x->pos = parent == NONE ? 0 : m->b[parent].pos + 1;
    x->ntok = n;
    memcpy(x->tok, t, n * sizeof *t);
    m->st.commits++;
    *canon = id;
    return CQ_OK;
}
static uint32_t m_walk(const model *m, const uint32_t *t, uint32_t n, uint32_t max, uint32_t *ids,
                       uint64_t *covered) {
    uint32_t k = 0, parent = NONE, off = 0;
    while (k < max) {
        uint32_t len = k ? m->G : m->F;
        if (n - off < len) break;
        uint32_t e = m_find(m, parent, t + off, len);
        if (e == NONE) break;
        ids[k++] = e;
        parent = e;
        off += len;
    }
    *covered = off;
    return k;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* Compare the index with the model: every id, the LRU order, the figures, the freed ids. */
static int same_as_model(const cq_prefix_index *ix, model *m, freelog *fl, uint64_t cfg_hash) {
    uint32_t cap = cq_prefix_capacity(ix);
    uint64_t used = 0, ref = 0, cached = 0;
    uint32_t live = 0, nref = 0, ncached = 0;
    for (uint32_t i = 0; i < MAXB; i++) {
        const rblk *x = &m->b[i];
        if (i >= cap) {
            if (x->state != CQ_BLOCK_FREE) return fprintf(stderr, "id %u beyond capacity\n", i), 0;
            continue;
        }
        cq_prefix_block_info bi;
        cq_prefix_info(ix, i, &bi, NULL);
        if ((int)bi.state != x->state || bi.refs != x->refs || bi.bytes != x->bytes)
            return fprintf(stderr, "id %u: state %u/%d refs %u/%u bytes %llu/%llu\n", i, bi.state,
                           x->state, bi.refs, x->refs, (unsigned long long)bi.bytes,
                           (unsigned long long)x->bytes), 0;
        if (x->state == CQ_BLOCK_CACHED) {
            if (bi.parent != x->parent || bi.pos != x->pos || bi.n_tokens != x->ntok ||
                memcmp(bi.tokens, x->tok, x->ntok * sizeof *x->tok))
                return fprintf(stderr, "id %u: index entry differs\n", i), 0;
            uint64_t ph = 0;
            if (x->parent != NONE) {
                cq_prefix_block_info pi;
                cq_prefix_info(ix, x->parent, &pi, NULL);
                ph = pi.hash;
            }
            if (bi.hash != cq_prefix_chain_hash(cfg_hash, ph, x->tok, x->ntok))
                return fprintf(stderr, "id %u: hash\n", i), 0;
            ncached++, cached += x->bytes;
        }
        if (x->state != CQ_BLOCK_FREE) live++, used += x->bytes;
        if (x->refs) nref++, ref += x->bytes;
    }
    uint32_t lru[MAXB], nl;
    cq_prefix_lru(ix, lru, MAXB, &nl, NULL);
    if (nl != m->n_lru || memcmp(lru, m->lru, nl * sizeof *lru))
        return fprintf(stderr, "LRU differs (%u vs %u entries)\n", nl, m->n_lru), 0;
    cq_prefix_stats s;
    cq_prefix_stats_get(ix, &s);
    const cq_prefix_stats *c = &m->st;
    used += m->charged;
    if (s.used_bytes != used || used != m->used || s.charged_bytes != m->charged || s.referenced_bytes != ref ||
        s.cached_bytes != cached || s.lru_bytes != m_lru_bytes(m) || s.live_blocks != live ||
        s.referenced_blocks != nref || s.cached_blocks != ncached || s.lru_blocks != m->n_lru)
        return fprintf(stderr, "state figures differ\n"), 0;
    if (s.allocs != c->allocs || s.blocks_allocated != c->blocks_allocated ||
        s.budget_refusals != c->budget_refusals || s.commits != c->commits ||
        s.duplicates != c->duplicates || s.lookups != c->lookups || s.hits != c->hits ||
        s.blocks_reused != c->blocks_reused || s.tokens_reused != c->tokens_reused ||
        s.blocks_evicted != c->blocks_evicted || s.bytes_evicted != c->bytes_evicted ||
        s.blocks_orphaned != c->blocks_orphaned)
        return fprintf(stderr, "counters differ\n"), 0;
    if (fl->n > 4096 || !sorted_eq(fl->ids, fl->n, m->freed, m->n_freed))
        return fprintf(stderr, "freed ids differ (%u vs %u)\n", fl->n, m->n_freed), 0;
    fl->n = 0;
    m->n_freed = 0;
    return check_ok(ix);
}

/* A prompt: an existing chain's tokens (from a random cached block up to the root) plus
 * random tokens, or random tokens only. */
static uint32_t make_prompt(const model *m, uint64_t *rs, uint32_t *t, uint32_t cap) {
    uint32_t chain[64], nc = 0, n = 0;
    if (rng_next(rs) % 4) {
        uint32_t start = (uint32_t)(rng_next(rs) % MAXB);
        for (uint32_t i = 0; i < MAXB; i++) {
            uint32_t id = (start + i) % MAXB;
            if (m->b[id].state != CQ_BLOCK_CACHED) continue;
            for (uint32_t e = id; e != NONE && nc < 64; e = m->b[e].parent) chain[nc++] = e;
            break;
        }
    }
    while (nc--) {
        const rblk *x = &m->b[chain[nc]];
        if (n + x->ntok > cap) break;
        memcpy(t + n, x->tok, x->ntok * sizeof *t);
        n += x->ntok;
    }
    uint32_t extra = (uint32_t)(rng_next(rs) % 6);
    while (extra-- && n < cap) t[n++] = (uint32_t)(rng_next(rs) % 3);
    return n;
}

static void test_random(uint64_t seed, uint32_t hash_bits, int ops) {
    freelog fl = {0};
    static model m;
    memset(&m, 0, sizeof m);
    m.G = 2, m.F = 3, m.budget = 1500;
    const uint64_t cfg = 0xC0FFEE ^ seed;
    cq_prefix_index *ix = make(cfg, m.G, m.F, m.budget, hash_bits, &fl);
    uint64_t rs = seed * 0x9E3779B97F4A7C15ull | 1;
    uint32_t hi = 0; /* ids ever handed out: [0, hi) */
    int bad = 0, op_counts[9] = {0};
    for (int it = 0; it < ops && !bad; it++) {
        int op = (int)(rng_next(&rs) % 9);
        cq_status a = CQ_OK, b = CQ_OK;
        op_counts[op]++;
        if (op == 0 || op == 1) { /* alloc 1-3 blocks */
            uint32_t n = 1 + (uint32_t)(rng_next(&rs) % 3), ia[3], ib[3];
            uint64_t by[3];
            for (uint32_t i = 0; i < n; i++) by[i] = 20 + rng_next(&rs) % 200;
            a = cq_prefix_alloc(ix, by, n, ia, NULL);
            b = m_alloc(&m, by, n, ib);
            if (!a && !b && memcmp(ia, ib, n * sizeof *ia)) bad = 1;
            for (uint32_t i = 0; !a && i < n; i++) hi = ia[i] + 1 > hi ? ia[i] + 1 : hi;
        } else if (op == 2 && hi) { /* commit a random block under a random parent */
            uint32_t id = (uint32_t)(rng_next(&rs) % hi), parent = NONE, t[MAXT], ca = 0, cb = 0;
            if (rng_next(&rs) % 3) parent = (uint32_t)(rng_next(&rs) % hi);
            uint32_t n = parent == NONE ? m.F : m.G;
            if (rng_next(&rs) % 20 == 0) n = m.F + m.G - n; /* wrong length */
            for (uint32_t i = 0; i < n; i++) t[i] = (uint32_t)(rng_next(&rs) % 2);
            a = cq_prefix_commit(ix, id, parent, t, n, &ca, NULL);
            b = m_commit(&m, id, parent, t, n, &cb);
            if (!a && !b && ca != cb) bad = 1;
        } else if (op == 3 && hi) { /* release one */
            uint32_t id = (uint32_t)(rng_next(&rs) % hi);
            a = cq_prefix_release(ix, id, NULL);
            b = m_release_chain(&m, &id, 1);
        } else if (op == 4 && hi) { /* release a chain of up to 4 random ids */
            uint32_t n = 1 + (uint32_t)(rng_next(&rs) % 4), ids[4];
            for (uint32_t i = 0; i < n; i++) ids[i] = (uint32_t)(rng_next(&rs) % hi);
            a = cq_prefix_release_chain(ix, ids, n, NULL);
            b = m_release_chain(&m, ids, n);
        } else if (op == 5 && hi) { /* ref */
            uint32_t id = (uint32_t)(rng_next(&rs) % hi);
            a = cq_prefix_ref(ix, id, NULL);
            b = m.b[id].state == CQ_BLOCK_FREE ? CQ_ERR_STATE : (m_ref(&m, id), CQ_OK);
        } else if (op == 6) { /* adopt or match */
            uint32_t t[256], ia[128], ib[128], na = 0;
            uint64_t cov;
            uint32_t n = make_prompt(&m, &rs, t, 256);
            uint32_t max = rng_next(&rs) % 4 ? UINT32_MAX : (uint32_t)(rng_next(&rs) % 4);
            uint32_t nb = m_walk(&m, t, n, max, ib, &cov);
            if (rng_next(&rs) % 2) {
                a = cq_prefix_adopt(ix, t, n, max, ia, 128, &na, NULL);
                for (uint32_t i = 0; i < nb; i++) m_ref(&m, ib[i]);
                m.st.lookups++;
                m.st.hits += nb > 0;
                m.st.blocks_reused += nb;
                m.st.tokens_reused += cov;
            } else {
                a = cq_prefix_match(ix, t, n, max, ia, 128, &na, NULL);
            }
            if (a || na != nb || memcmp(ia, ib, nb * sizeof *ia)) bad = 1;
        } else if (op == 7) { /* evict */
            uint64_t want = rng_next(&rs) % 300, fa = 0, fb = 0;
            a = cq_prefix_evict(ix, want, &fa, NULL);
            while (fb < want && m.n_lru) fb += m_evict_one(&m, m.lru[0]);
            if (fa != fb) bad = 1;
        } else if (op == 8) { /* charge or give back non-block bytes */
            uint64_t by = rng_next(&rs) % 250;
            if (rng_next(&rs) % 2) {
                a = cq_prefix_charge(ix, by, NULL);
                if (by > m.budget - m.used + m_lru_bytes(&m)) {
                    m.st.budget_refusals++;
                    b = CQ_ERR_BUDGET;
                } else {
                    while (m.budget - m.used < by) m_evict_one(&m, m.lru[0]);
                    m.used += by, m.charged += by;
                }
            } else {
                a = cq_prefix_uncharge(ix, by, NULL);
                if (by > m.charged) b = CQ_ERR_RANGE;
                else m.used -= by, m.charged -= by;
            }
        }
        if (a != b) {
            fprintf(stderr, "op %d at step %d: index %s, model %s\n", op, it, cq_status_name(a),
                    cq_status_name(b));
            bad = 1;
        }
        if (!bad && !same_as_model(ix, &m, &fl, cfg)) {
            fprintf(stderr, "state differs after op %d at step %d\n", op, it);
            bad = 1;
        }
    }
    CHECK(!bad, "seed %llu, hash_bits %u: index and model agree", (unsigned long long)seed,
          hash_bits);
    int all_ops = 1;
    for (int i = 0; i < 9; i++) all_ops &= op_counts[i] > ops / 20;
    cq_prefix_stats s;
    cq_prefix_stats_get(ix, &s);
    CHECK(all_ops && s.blocks_evicted > 10 && s.budget_refusals > 5 && s.duplicates > 5 &&
              s.hits > 10 && s.commits > 20,
          "the walk exercised everything: evicted %llu refused %llu dup %llu hits %llu",
          (unsigned long long)s.blocks_evicted, (unsigned long long)s.budget_refusals,
          (unsigned long long)s.duplicates, (unsigned long long)s.hits);
    /* leak check: release every reference the model knows, drop the cache */
    for (uint32_t i = 0; i < MAXB; i++)
        while (m.b[i].refs) {
            if (cq_prefix_release(ix, i, NULL)) break;
            m_release_chain(&m, &i, 1);
        }
    cq_prefix_evict(ix, UINT64_MAX, NULL, NULL);
    CHECK(!cq_prefix_uncharge(ix, m.charged, NULL), "give back the charges");
    cq_prefix_stats_get(ix, &s);
    CHECK(s.live_blocks == 0 && s.used_bytes == 0 && check_ok(ix), "no leak after the walk");
    cq_prefix_free(ix);
}

int main(void) {
    test_hash_known_answers();
    test_hash_chain();
    test_adopt(0);
    test_adopt(1); /* every chain hash in two buckets: lookups compare tokens and parents */
    test_lru_evict();
    test_refusals();
    for (uint64_t seed = 1; seed <= 4; seed++) {
        test_random(seed, 0, 3000);
        test_random(seed, 2, 3000);
    }
    return cq_test_done("test_prefix_index");
}
