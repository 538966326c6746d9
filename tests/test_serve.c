/* SPDX-License-Identifier: MIT */
/*
 * test_serve.c - the serving pool and its sequences (include/cq_serve.h): a pool
 * sequence equals a cq_cache (page_tokens = G) fed the same tokens, per format (fp16,
 * CQ-8, CQ-4, CQ-4+, generic registry codecs) with and without sinks: read-back,
 * exports and attention (decode and prefill, EXACT and FAST) compared bit for bit;
 * fork independence and sharing (blocks counted once, the allocator agrees);
 * truncate + append against a fresh sequence (a cut inside a committed key group keeps
 * the codes of the kept tokens: tests/test_serve_trunc.c tests it in full); budget refusals in create / append / fork / truncate leave the
 * whole observable state unchanged; windowed codecs and shifts refused; randomized
 * operation sequences against a model of cq_caches; attention over shared blocks from
 * two threads while a third appends to, forks and frees other sequences (make tsan);
 * cq_seq_append_need is exact: a budget of used + need admits the appends of every
 * layer, one byte less refuses them; no block left after the frees.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cq_serve.h"
#include "cq_test.h"
#include "util/cache_testutil.h"

#define NL 2u
#define H 2u
#define D 64u
#define QH (2 * H) /* GQA 2 */

typedef struct fmt {
    const char *name;
    cq_codec_id k, v;
    uint32_t outl;  /* CQ-4+ outlier channels per head */
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

/* The cache configuration of format f; the last format gives layer 1 fp16 keys. */
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
    if (f == &FMTS[NFMTS - 1]) {
        g_layers[0] = (cq_layer_codecs){f->k, f->v};
        g_layers[1] = (cq_layer_codecs){CQ_CODEC_FP16, CQ_CODEC_CQ4};
        c.layer_codecs = g_layers;
    }
    return c;
}

static cq_kvpool *make_pool(const fmt *f, uint32_t G, uint32_t S, uint64_t budget) {
    cq_kvpool_config pc = {.cache = make_cfg(f, G, S, 0), .budget_bytes = budget, .model_hash = 1};
    cq_kvpool *p = NULL;
    cq_err e;
    cq_status st = cq_kvpool_create(&pc, &p, &e);
    CHECK(st == CQ_OK && p, "%s: pool create: %s", f->name, e.msg);
    return p;
}

static cq_cache *make_ref(const fmt *f, uint32_t G, uint32_t S) {
    cq_cache_config c = make_cfg(f, G, S, G);
    cq_cache *r = NULL;
    cq_err e;
    cq_status st = cq_cache_create(&c, &r, &e);
    CHECK(st == CQ_OK, "%s: reference cache: %s", f->name, e.msg);
    return r;
}

/* ------------------------------------------------------------ the model of a sequence */

typedef struct mseq {
    cq_seq *s;
    cq_cache *ref;         /* a cq_cache fed the same tokens */
    uint16_t *hk[NL], *hv[NL]; /* history [cap][H][D] per layer */
    uint32_t n, cap;
} mseq;

static void hist_reserve(mseq *m, uint32_t n) {
    if (n <= m->cap) return;
    uint32_t cap = m->cap ? m->cap : 64;
    while (cap < n) cap *= 2;
    for (uint32_t L = 0; L < NL; L++) {
        m->hk[L] = realloc(m->hk[L], (size_t)cap * H * D * 2);
        m->hv[L] = realloc(m->hv[L], (size_t)cap * H * D * 2);
    }
    m->cap = cap;
}

static void mseq_free(mseq *m) {
    cq_seq_free(m->s);
    cq_cache_free(m->ref);
    for (uint32_t L = 0; L < NL; L++) free(m->hk[L]), free(m->hv[L]);
    memset(m, 0, sizeof *m);
}

/* Append n new random tokens to every layer of the sequence and its reference, in
 * chunks of random size (decode and prefill shapes). Returns the pool's status. */
static cq_status mseq_append(mseq *m, cq_rng *r, uint32_t n) {
    hist_reserve(m, m->n + n);
    for (uint32_t L = 0; L < NL; L++) {
        ctu_fill_f16(r, m->hk[L] + (size_t)m->n * H * D, (size_t)n * H * D, 1.0f, 0);
        ctu_fill_f16(r, m->hv[L] + (size_t)m->n * H * D, (size_t)n * H * D, 1.0f, 0);
    }
    for (uint32_t L = 0; L < NL; L++)
        for (uint32_t a = 0; a < n;) {
            uint32_t c = 1 + cq_rng_below(r, 40);
            if (c > n - a) c = n - a;
            const size_t o = (size_t)(m->n + a) * H * D;
            cq_err e;
            cq_status st = cq_seq_append(m->s, L, m->hk[L] + o, m->hv[L] + o, c, &e);
            if (st) {
                CHECK(L == 0 && a == 0, "append refused in the middle (%s)", e.msg);
                return st;
            }
            st = cq_cache_append(m->ref, L, m->hk[L] + o, m->hv[L] + o, c, &e);
            CHECK(st == CQ_OK, "reference append: %s", e.msg);
            a += c;
        }
    m->n += n;
    return CQ_OK;
}

/* A fresh reference cache holding the first n tokens of m's history. */
static cq_cache *refeed(const fmt *f, uint32_t G, uint32_t S, const mseq *m, uint32_t n) {
    cq_cache *c = make_ref(f, G, S);
    for (uint32_t L = 0; L < NL && n; L++) {
        cq_status st = cq_cache_append(c, L, m->hk[L], m->hv[L], n, NULL);
        CHECK(st == CQ_OK, "refeed");
    }
    return c;
}

/* ------------------------------------------------------------ comparisons */

/* 0 when the sequence and the cache read, export and attend bit for bit alike. */
static int compare(const cq_seq *s, const cq_cache *c, cq_rng *r, int attend) {
    int bad = 0;
    for (uint32_t L = 0; L < NL; L++) {
        const uint32_t T = cq_cache_tokens(c, L);
        if (cq_seq_tokens(s, L) != T) return 1;
        float *a = malloc(((size_t)T + 1) * D * 4 * 4), *b = a + ((size_t)T + 1) * D * 2;
        for (uint32_t h = 0; h < H; h++) {
            cq_status s1 = cq_seq_read(s, L, h, 0, T, a, a + (size_t)T * D, NULL);
            cq_status s2 = cq_cache_read(c, L, h, 0, T, b, b + (size_t)T * D, NULL);
            bad += s1 || s2 || memcmp(a, b, (size_t)T * D * 2 * 4) != 0;
            if (T > 3) { /* an inner range */
                s1 = cq_seq_read(s, L, h, 1, T - 2, a, NULL, NULL);
                s2 = cq_cache_read(c, L, h, 1, T - 2, b, NULL, NULL);
                bad += s1 || s2 || memcmp(a, b, (size_t)(T - 3) * D * 4) != 0;
            }
            for (int role = 0; role < 2; role++) {
                size_t la = 0, lb = 0;
                cq_seq_export(s, L, h, (cq_role)role, NULL, 0, &la, NULL);
                cq_cache_export(c, L, h, (cq_role)role, NULL, 0, &lb, NULL);
                if (la != lb) {
                    bad++;
                    continue;
                }
                uint8_t *ea = malloc(la + 1), *eb = malloc(la + 1);
                s1 = cq_seq_export(s, L, h, (cq_role)role, ea, la, &la, NULL);
                s2 = cq_cache_export(c, L, h, (cq_role)role, eb, lb, &lb, NULL);
                bad += s1 || s2 || memcmp(ea, eb, la) != 0;
                free(ea);
                free(eb);
            }
        }
        free(a);
        if (!attend || T == 0) continue;
        const uint32_t nq = T < 5 ? T : 5;
        float *q = malloc((size_t)nq * QH * D * 4), *oa = malloc((size_t)nq * QH * D * 4),
              *ob = malloc((size_t)nq * QH * D * 4);
        for (size_t i = 0; i < (size_t)nq * QH * D; i++) q[i] = (float)cq_rng_normal(r);
        for (uint32_t prec = CQ_ATTN_EXACT; prec <= CQ_ATTN_FAST; prec++) {
            cq_attn_opts o = {.n_threads = 1, .precision = prec};
            memset(oa, 0, (size_t)nq * QH * D * 4);
            memset(ob, 0xFF, (size_t)nq * QH * D * 4);
            cq_status s1 = cq_seq_attend(s, L, q, QH, oa, &o, NULL);
            cq_status s2 = cq_cache_attend(c, L, q, QH, ob, &o, NULL);
            bad += s1 || s2 || memcmp(oa, ob, (size_t)QH * D * 4) != 0;
            s1 = cq_seq_attend_prefill(s, L, q, nq, T - nq, QH, oa, &o, NULL);
            s2 = cq_cache_attend_prefill(c, L, q, nq, T - nq, QH, ob, &o, NULL);
            bad += s1 || s2 || memcmp(oa, ob, (size_t)nq * QH * D * 4) != 0;
        }
        free(q);
        free(oa);
        free(ob);
    }
    return bad;
}

static int accounting_agrees(const cq_kvpool *p) {
    cq_kvpool_mem m;
    cq_err e;
    if (cq_kvpool_memory(p, &m)) return 0;
    if (cq_kvpool_check(p, &e)) {
        fprintf(stderr, "cq_kvpool_check: %s\n", e.msg);
        return 0;
    }
    const uint64_t bb = cq_kvpool_block_bytes(p), sk = cq_kvpool_sink_bytes(p),
                   tb = cq_kvpool_tail_bytes(p);
    const uint64_t extra = m.referenced + m.cached - (uint64_t)m.prefix.live_blocks * bb;
    return m.total == cq_kvpool_allocated_bytes(p) &&
           m.arena_bytes == m.referenced + m.cached + m.arena_slack &&
           m.referenced + m.cached >= (uint64_t)m.prefix.live_blocks * bb &&
           (sk ? extra % sk == 0 && extra / sk <= m.n_seqs : extra == 0) &&
           (tb ? m.tails % tb == 0 && m.tails / tb <= m.n_seqs : m.tails == 0);
}

static mseq mseq_new(cq_kvpool *p, const fmt *f, uint32_t G, uint32_t S) {
    mseq m = {0};
    cq_err e;
    cq_status st = cq_seq_create(p, &m.s, &e);
    CHECK(st == CQ_OK, "seq create: %s", e.msg);
    m.ref = make_ref(f, G, S);
    return m;
}

/* ------------------------------------------------------------ tests */

/* A pool sequence equals a cq_cache fed the same tokens, at many lengths. */
static void test_equal(const fmt *f, uint32_t G, uint32_t S) {
    cq_rng r;
    cq_rng_seed(&r, 1000 + G + S);
    cq_kvpool *p = make_pool(f, G, S, 1ull << 30);
    mseq m = mseq_new(p, f, G, S);
    int bad = compare(m.s, m.ref, &r, 1);
    for (int step = 0; step < 6; step++) {
        mseq_append(&m, &r, 1 + cq_rng_below(&r, 3 * G / 2));
        bad += compare(m.s, m.ref, &r, 1);
    }
    CHECK(bad == 0, "%s G=%u S=%u: %d differences against cq_cache", f->name, G, S, bad);
    CHECK(accounting_agrees(p), "%s: accounting", f->name);
    cq_seq_mem sm;
    cq_seq_memory(m.s, &sm);
    CHECK(sm.blocks == (m.n - (m.n > S ? S : m.n) + G - 1) / G || m.n <= S,
          "%s: %u blocks for %u tokens", f->name, sm.blocks, m.n);
    mseq_free(&m);
    cq_kvpool_mem pm;
    cq_kvpool_memory(p, &pm);
    CHECK(pm.prefix.live_blocks == 0 && pm.tails == 0 && pm.n_seqs == 0,
          "%s: %u blocks live after the free", f->name, pm.prefix.live_blocks);
    cq_kvpool_free(p);
}

/* Fork: equal at once, independent afterwards, committed blocks shared once. */
static void test_fork(const fmt *f, uint32_t G, uint32_t S) {
    cq_rng r;
    cq_rng_seed(&r, 2000 + G);
    cq_kvpool *p = make_pool(f, G, S, 1ull << 30);
    const uint64_t bb = cq_kvpool_block_bytes(p), sk = cq_kvpool_sink_bytes(p);
    for (int open = 0; open < 2; open++) {
        mseq a = mseq_new(p, f, G, S);
        mseq_append(&a, &r, S + 3 * G + (open ? G / 2 + 1 : 0));
        cq_kvpool_mem m0, m1;
        cq_kvpool_memory(p, &m0);
        mseq b = {0};
        cq_err e;
        cq_status st = cq_seq_fork(a.s, &b.s, &e);
        CHECK(st == CQ_OK, "fork: %s", e.msg);
        cq_cache_clone(a.ref, &b.ref, NULL);
        hist_reserve(&b, a.n);
        for (uint32_t L = 0; L < NL; L++) {
            memcpy(b.hk[L], a.hk[L], (size_t)a.n * H * D * 2);
            memcpy(b.hv[L], a.hv[L], (size_t)a.n * H * D * 2);
        }
        b.n = a.n;
        CHECK(compare(b.s, a.ref, &r, 1) == 0, "%s: the fork differs from its source", f->name);
        cq_kvpool_memory(p, &m1);
        /* only the open block is new; every committed block is counted once */
        CHECK(m1.referenced == m0.referenced + (open ? bb : 0),
              "%s open=%d: referenced %llu -> %llu", f->name, open,
              (unsigned long long)m0.referenced, (unsigned long long)m1.referenced);
        CHECK(m1.shared_saved == 3 * bb + sk, "%s: shared_saved %llu, 3 blocks of %llu", f->name,
              (unsigned long long)m1.shared_saved, (unsigned long long)bb);
        cq_seq_mem sa, sb;
        cq_seq_memory(a.s, &sa);
        cq_seq_memory(b.s, &sb);
        CHECK(sa.shared_blocks == 3 && sb.shared_blocks == 3 && sa.shared_bytes == 3 * bb + sk,
              "%s: shared blocks %u / %u", f->name, sa.shared_blocks, sb.shared_blocks);
        CHECK(accounting_agrees(p), "%s: accounting after fork", f->name);
        /* diverge: each sequence equals its own reference, so neither saw the other */
        int bad = 0;
        for (int k = 0; k < 3; k++) {
            mseq_append(&b, &r, 1 + cq_rng_below(&r, G));
            bad += compare(a.s, a.ref, &r, 1);
            mseq_append(&a, &r, 1 + cq_rng_below(&r, G));
            bad += compare(b.s, b.ref, &r, 1);
        }
        CHECK(bad == 0, "%s open=%d: fork not independent (%d)", f->name, open, bad);
        mseq_free(&a);
        CHECK(compare(b.s, b.ref, &r, 1) == 0, "%s: fork changed by freeing its source", f->name);
        mseq_free(&b);
    }
    cq_kvpool_mem pm;
    cq_kvpool_memory(p, &pm);
    CHECK(pm.prefix.live_blocks == 0 && pm.tails == 0, "%s: leak after fork", f->name);
    cq_kvpool_free(p);
}

static int is_unit_key(const fmt *f) { return f->k == CQ_CODEC_CQ4 || f->k == CQ_CODEC_CQ4P; }

/* The first n tokens of every layer and head read alike from s and c (bit for bit). */
static int prefix_same(const cq_seq *s, const cq_cache *c, uint32_t n) {
    int bad = 0;
    float *a = malloc(((size_t)n + 1) * D * 4 * 4), *b = a + ((size_t)n + 1) * D * 2;
    for (uint32_t L = 0; L < NL; L++)
        for (uint32_t h = 0; h < H; h++) {
            cq_status s1 = cq_seq_read(s, L, h, 0, n, a, a + (size_t)n * D, NULL);
            cq_status s2 = cq_cache_read(c, L, h, 0, n, b, b + (size_t)n * D, NULL);
            bad += s1 || s2 || memcmp(a, b, (size_t)n * D * 2 * 4) != 0;
        }
    free(a);
    return bad;
}

/* Truncate + append equals a fresh sequence where the cut is on a border of every
 * unit; a cut inside a committed key group keeps the codes of the kept tokens (reads equal
 * the long sequence's). */
static void test_truncate(const fmt *f, uint32_t G, uint32_t S) {
    cq_rng r;
    cq_rng_seed(&r, 3000 + G + S);
    cq_kvpool *p = make_pool(f, G, S, 1ull << 30);
    const uint32_t len = S + 4 * G + G / 3;
    const uint32_t cuts[] = {len, len - 1, S + 4 * G, S + 4 * G + 1, S + 2 * G, S + 2 * G + 5,
                             S + G - 1, S ? S - 1 : 0, 0, S + 3 * G + 7};
    int bad = 0;
    for (size_t ci = 0; ci < sizeof cuts / sizeof cuts[0]; ci++) {
        for (int shared = 0; shared < 2; shared++) {
            const uint32_t n = cuts[ci];
            mseq a = mseq_new(p, f, G, S);
            mseq_append(&a, &r, len);
            cq_seq *other = NULL;
            cq_cache *longref = NULL;
            if (shared) {
                cq_seq_fork(a.s, &other, NULL);
                longref = refeed(f, G, S, &a, len);
            }
            const uint32_t T = n > S ? n - S : 0, done = (len - S) / G * G;
            const int refuse = is_unit_key(f) && T % G && T < done;
            cq_err e;
            cq_status st = cq_seq_truncate(a.s, n, &e);
            if (refuse) { /* a partial block: a.ref still holds the long sequence */
                CHECK(st == CQ_OK, "%s: cut at %u inside a committed group: %s", f->name, n,
                      e.msg);
                bad += cq_seq_tokens(a.s, 0) != n || cq_seq_tokens(a.s, 1) != n;
                bad += prefix_same(a.s, a.ref, n);
            } else {
                CHECK(st == CQ_OK, "%s: truncate to %u: %s", f->name, n, e.msg);
                cq_cache_free(a.ref);
                a.ref = refeed(f, G, S, &a, n);
                a.n = n;
                bad += compare(a.s, a.ref, &r, 1);
                mseq_append(&a, &r, G + 3); /* continues as a fresh sequence would */
                bad += compare(a.s, a.ref, &r, 1);
            }
            if (other) bad += compare(other, longref, &r, 1); /* the fork never changes */
            cq_cache_free(longref);
            CHECK(accounting_agrees(p), "%s: accounting after truncate to %u", f->name, n);
            cq_seq_free(other);
            mseq_free(&a);
        }
    }
    CHECK(bad == 0, "%s G=%u S=%u: %d truncate differences", f->name, G, S, bad);
    /* every layer must have the same length */
    mseq a = mseq_new(p, f, G, S);
    mseq_append(&a, &r, 10);
    uint16_t x[H * D] = {0};
    cq_seq_append(a.s, 0, x, x, 1, NULL);
    CHECK(cq_seq_truncate(a.s, 5, NULL) == CQ_ERR_STATE, "%s: ragged truncate", f->name);
    cq_seq *fk = NULL;
    CHECK(cq_seq_fork(a.s, &fk, NULL) == CQ_ERR_STATE && !fk, "%s: ragged fork", f->name);
    CHECK(cq_seq_truncate(a.s, 100, NULL) == CQ_ERR_STATE, "%s: beyond", f->name);
    CHECK(cq_seq_shift(a.s, 0, 5, 3, NULL) == CQ_ERR_UNSUPPORTED, "%s: shift", f->name);
    mseq_free(&a);
    cq_kvpool_free(p);
}

/* A fork that keeps reading the long sequence after its source was cut inside a
 * shared committed block (per-token formats: the block is copied first). */
static void test_truncate_cow(const fmt *f, uint32_t G) {
    cq_rng r;
    cq_rng_seed(&r, 3500 + G);
    cq_kvpool *p = make_pool(f, G, 0, 1ull << 30);
    mseq a = mseq_new(p, f, G, 0);
    mseq_append(&a, &r, 3 * G);
    cq_cache *longref = refeed(f, G, 0, &a, 3 * G);
    cq_seq *b = NULL;
    cq_seq_fork(a.s, &b, NULL);
    cq_kvpool_mem m0, m1;
    cq_kvpool_memory(p, &m0);
    cq_err e;
    cq_status st = cq_seq_truncate(a.s, G + 5, &e);
    CHECK(st == CQ_OK, "%s: cut in a shared block: %s", f->name, e.msg);
    cq_kvpool_memory(p, &m1);
    /* a holds blocks 0 (shared) and a copy of 1; b holds 0, 1, 2 */
    CHECK(m1.referenced == m0.referenced + cq_kvpool_block_bytes(p), "%s: copy-on-write bytes",
          f->name);
    cq_cache_free(a.ref);
    a.ref = refeed(f, G, 0, &a, G + 5);
    a.n = G + 5;
    mseq_append(&a, &r, G);
    int bad = compare(a.s, a.ref, &r, 1) + compare(b, longref, &r, 1);
    CHECK(bad == 0, "%s: copy-on-write truncate (%d)", f->name, bad);
    CHECK(accounting_agrees(p), "%s: accounting", f->name);
    cq_seq_free(b);
    cq_cache_free(longref);
    mseq_free(&a);
    cq_kvpool_free(p);
}

/* Everything a caller can observe of a pool holding the given sequences. */
typedef struct pool_snap {
    cq_kvpool_mem m;
    uint64_t alloc;
    uint32_t n;
    float *reads;
    size_t n_reads;
} pool_snap;

static void pool_snap_take(const cq_kvpool *p, cq_seq *const *s, uint32_t ns, pool_snap *o) {
    cq_kvpool_memory(p, &o->m);
    o->alloc = cq_kvpool_allocated_bytes(p);
    size_t tot = 0;
    for (uint32_t i = 0; i < ns; i++)
        for (uint32_t L = 0; L < NL; L++) tot += (size_t)cq_seq_tokens(s[i], L) * H * D * 2;
    o->reads = malloc((tot + 1) * 4);
    o->n_reads = 0;
    for (uint32_t i = 0; i < ns; i++)
        for (uint32_t L = 0; L < NL; L++)
            for (uint32_t h = 0; h < H; h++) {
                const uint32_t T = cq_seq_tokens(s[i], L);
                cq_seq_read(s[i], L, h, 0, T, o->reads + o->n_reads,
                            o->reads + o->n_reads + (size_t)T * D, NULL);
                o->n_reads += (size_t)T * D * 2;
            }
}

static int pool_snap_same(const pool_snap *a, const pool_snap *b) {
    return !memcmp(&a->m, &b->m, sizeof a->m) && a->alloc == b->alloc &&
           a->n_reads == b->n_reads && !memcmp(a->reads, b->reads, a->n_reads * 4);
}

/* Refusals by the budget change nothing, in create, append, fork and truncate. */
static void test_budget(const fmt *f, uint32_t G, uint32_t S) {
    cq_rng r;
    cq_rng_seed(&r, 4000);
    cq_kvpool *probe = make_pool(f, G, S, 1);
    const uint64_t bb = cq_kvpool_block_bytes(probe), sk = cq_kvpool_sink_bytes(probe),
                   tb = cq_kvpool_tail_bytes(probe);
    cq_kvpool_free(probe);
    const uint32_t len = S + 3 * G + G / 2; /* 4 blocks, the last open, a group in flight */
    const int tail = is_unit_key(f) || f->k == CQ_CODEC_Q4_0 ? 0 : 0;
    (void)tail;
    /* what the sequence holds, with less than a block to spare */
    cq_kvpool *p = make_pool(f, G, S, 4 * bb + sk + (is_unit_key(f) ? tb : 0) + bb - 1);
    mseq a = mseq_new(p, f, G, S);
    CHECK(mseq_append(&a, &r, len) == CQ_OK, "%s: the sequence fits", f->name);
    cq_seq *b = NULL;
    pool_snap s0, s1;
    cq_seq *all[2] = {a.s, NULL};
    cq_err e;
    /* fork needs a copy of the open block (and of the tail): no room */
    pool_snap_take(p, all, 1, &s0);
    cq_status st = cq_seq_fork(a.s, &b, &e);
    CHECK(st == CQ_ERR_BUDGET && !b, "%s: fork beyond the budget: %d", f->name, (int)st);
    pool_snap_take(p, all, 1, &s1);
    s0.m.prefix.budget_refusals = s1.m.prefix.budget_refusals; /* the one counter that moves */
    CHECK(pool_snap_same(&s0, &s1), "%s: a refused fork changed the pool", f->name);
    free(s0.reads);
    free(s1.reads);
    /* append needing a fifth block */
    pool_snap_take(p, all, 1, &s0);
    uint16_t *k = calloc((size_t)G * H * D, 2), *v = calloc((size_t)G * H * D, 2);
    ctu_fill_f16(&r, k, (size_t)G * H * D, 1.0f, 0);
    ctu_fill_f16(&r, v, (size_t)G * H * D, 1.0f, 0);
    st = cq_seq_append(a.s, 0, k, v, G, &e);
    CHECK(st == CQ_ERR_BUDGET, "%s: append beyond the budget: %d", f->name, (int)st);
    pool_snap_take(p, all, 1, &s1);
    s0.m.prefix.budget_refusals = s1.m.prefix.budget_refusals;
    CHECK(pool_snap_same(&s0, &s1), "%s: a refused append changed the pool", f->name);
    CHECK(compare(a.s, a.ref, &r, 1) == 0, "%s: a refused append changed the sequence", f->name);
    free(s0.reads);
    free(s1.reads);
    /* a new sequence holds nothing until its first token */
    cq_seq *c2 = NULL;
    CHECK(cq_seq_create(p, &c2, &e) == CQ_OK, "%s: an empty sequence is free", f->name);
    all[1] = c2;
    if (S) { /* its first token needs block 0 with its sink slot: no room */
        pool_snap_take(p, all, 2, &s0);
        st = cq_seq_append(c2, 0, k, v, 1, &e);
        CHECK(st == CQ_ERR_BUDGET, "%s: a first token beyond the budget: %d", f->name, (int)st);
        pool_snap_take(p, all, 2, &s1);
        s0.m.prefix.budget_refusals = s1.m.prefix.budget_refusals;
        CHECK(pool_snap_same(&s0, &s1), "%s: a refused first token changed the pool", f->name);
        free(s0.reads);
        free(s1.reads);
    }
    cq_seq_free(c2);
    /* after freeing blocks by a truncate, the append fits */
    CHECK(cq_seq_truncate(a.s, S + 2 * G, NULL) == CQ_OK, "%s: truncate", f->name);
    cq_cache_free(a.ref);
    a.ref = refeed(f, G, S, &a, S + 2 * G);
    a.n = S + 2 * G;
    CHECK(mseq_append(&a, &r, G) == CQ_OK, "%s: append after truncate", f->name);
    CHECK(compare(a.s, a.ref, &r, 1) == 0, "%s: after the budget refusals", f->name);
    CHECK(accounting_agrees(p), "%s: accounting", f->name);
    free(k);
    free(v);
    mseq_free(&a);
    cq_kvpool_mem pm;
    cq_kvpool_memory(p, &pm);
    CHECK(pm.prefix.live_blocks == 0 && pm.prefix.used_bytes == 0, "%s: leak", f->name);
    cq_kvpool_free(p);
}

/* Random create / free / fork / append / truncate against a model of cq_caches. */
#define MAXS 6
static void test_random(const fmt *f, uint32_t G, uint32_t S, uint64_t seed) {
    cq_rng r;
    cq_rng_seed(&r, seed);
    cq_kvpool *p = make_pool(f, G, S, 1ull << 30);
    mseq ms[MAXS] = {{0}};
    int bad = 0, ops = 0, refused = 0;
    for (int it = 0; it < 120; it++) {
        const uint32_t i = cq_rng_below(&r, MAXS), op = cq_rng_below(&r, 10);
        mseq *m = &ms[i];
        if (!m->s) {
            *m = mseq_new(p, f, G, S);
        } else if (op == 0) {
            mseq_free(m);
        } else if (op <= 2) { /* fork into a free slot */
            uint32_t j = 0;
            while (j < MAXS && ms[j].s) j++;
            if (j == MAXS) continue;
            mseq *d = &ms[j];
            cq_err e;
            cq_status st = cq_seq_fork(m->s, &d->s, &e);
            CHECK(st == CQ_OK, "fork: %s", e.msg);
            cq_cache_clone(m->ref, &d->ref, NULL);
            hist_reserve(d, m->n);
            for (uint32_t L = 0; L < NL && m->n; L++) {
                memcpy(d->hk[L], m->hk[L], (size_t)m->n * H * D * 2);
                memcpy(d->hv[L], m->hv[L], (size_t)m->n * H * D * 2);
            }
            d->n = m->n;
        } else if (op <= 6) {
            mseq_append(m, &r, 1 + cq_rng_below(&r, 2 * G));
        } else {
            uint32_t n = cq_rng_below(&r, m->n + 1);
            const uint32_t T = n > S ? n - S : 0, done = (m->n > S ? m->n - S : 0) / G * G;
            /* a cut inside a committed key group makes a partial block, which no cq_cache
             * models (tests/test_serve_trunc.c): cut on the group's border instead */
            if (is_unit_key(f) && T % G && T < done) {
                refused++;
                n -= T % G;
            }
            cq_status st = cq_seq_truncate(m->s, n, NULL);
            bad += st != CQ_OK;
            cq_cache_free(m->ref);
            m->ref = refeed(f, G, S, m, n);
            m->n = n;
        }
        ops++;
        for (uint32_t k = 0; k < MAXS; k++)
            if (ms[k].s) bad += compare(ms[k].s, ms[k].ref, &r, it % 8 == 0);
        if (!accounting_agrees(p)) bad++;
    }
    for (uint32_t k = 0; k < MAXS; k++) mseq_free(&ms[k]);
    cq_kvpool_mem pm;
    cq_kvpool_memory(p, &pm);
    CHECK(bad == 0, "%s G=%u S=%u: %d mismatches in %d random operations (%d cuts moved)",
          f->name, G, S, bad, ops, refused);
    CHECK(pm.prefix.live_blocks == 0 && pm.prefix.used_bytes == 0 && pm.n_seqs == 0,
          "%s: %u blocks left", f->name, pm.prefix.live_blocks);
    cq_kvpool_free(p);
}

static void test_refusals(void) {
    cq_err e;
    cq_kvpool *p = NULL;
    cq_kvpool_config pc = {.cache = make_cfg(&FMTS[2], 32, 0, 0), .budget_bytes = 1 << 20};
    pc.cache.key_codec = CQ_CODEC_KIVI4;
    CHECK(cq_kvpool_create(&pc, &p, &e) == CQ_ERR_UNSUPPORTED && !p && strstr(e.msg, "kivi"),
          "a windowed codec is refused: %s", e.msg);
    pc = (cq_kvpool_config){.cache = make_cfg(&FMTS[2], 32, 0, 0), .budget_bytes = 0};
    CHECK(cq_kvpool_create(&pc, &p, &e) == CQ_ERR_ARG && !p, "budget 0");
    pc.budget_bytes = 1;
    pc.cache.page_tokens = 64;
    CHECK(cq_kvpool_create(&pc, &p, &e) == CQ_ERR_ARG && !p, "page_tokens set");
    CHECK(cq_kvpool_create(NULL, &p, &e) == CQ_ERR_NULL, "NULL config");
    CHECK(cq_seq_create(NULL, NULL, &e) == CQ_ERR_NULL, "NULL pool");
    CHECK(cq_seq_append(NULL, 0, NULL, NULL, 1, &e) == CQ_ERR_NULL, "NULL sequence");
    cq_seq_free(NULL);
    cq_kvpool_free(NULL);
    /* the configuration hash covers the formats and the model */
    cq_kvpool *a = make_pool(&FMTS[2], 32, 0, 1 << 20), *b = make_pool(&FMTS[2], 32, 0, 1 << 20),
              *c = make_pool(&FMTS[1], 32, 0, 1 << 20);
    CHECK(cq_kvpool_config_hash(a) == cq_kvpool_config_hash(b) &&
              cq_kvpool_config_hash(a) != cq_kvpool_config_hash(c),
          "configuration hash");
    cq_seq *s = NULL;
    cq_seq_create(a, &s, NULL);
    uint16_t x[H * D] = {0};
    CHECK(cq_seq_append(s, NL, x, x, 1, &e) == CQ_ERR_RANGE, "layer out of range");
    x[3] = 0x7C00; /* +inf */
    CHECK(cq_seq_append(s, 0, x, x, 1, &e) == CQ_ERR_NONFINITE && cq_seq_tokens(s, 0) == 0,
          "non-finite input refused");
    cq_kvpool_mem m;
    cq_kvpool_memory(a, &m);
    CHECK(m.prefix.live_blocks == 0, "a refused append holds no block");
    /* the pool frees what its caller left */
    cq_kvpool_free(a);
    cq_kvpool_free(b);
    cq_kvpool_free(c);
}

/* Attention on sequences that share blocks, from two threads, while the main thread
 * changes other sequences of the pool (forks of the same source among them). */
typedef struct reader {
    const cq_seq *s;
    const float *q, *want;
    int bad;
} reader;

static void *read_loop(void *arg) {
    reader *r = arg;
    float out[QH * D];
    cq_attn_opts o = {.n_threads = 1, .precision = CQ_ATTN_EXACT};
    for (int i = 0; i < 40; i++) {
        if (cq_seq_attend(r->s, 0, r->q, QH, out, &o, NULL) ||
            memcmp(out, r->want, sizeof out))
            r->bad++;
        float k[4 * D];
        if (cq_seq_read(r->s, 1, 0, 0, 4, k, NULL, NULL)) r->bad++;
    }
    return NULL;
}

static void test_threads(const fmt *f) {
    const uint32_t G = 32;
    cq_rng r;
    cq_rng_seed(&r, 6000);
    cq_kvpool *p = make_pool(f, G, 2, 1ull << 30);
    mseq a = mseq_new(p, f, G, 2);
    mseq_append(&a, &r, 5 * G + 3);
    cq_seq *b = NULL;
    cq_seq_fork(a.s, &b, NULL);
    float q[QH * D], want[QH * D];
    for (size_t i = 0; i < QH * D; i++) q[i] = (float)cq_rng_normal(&r);
    cq_attn_opts o = {.n_threads = 1, .precision = CQ_ATTN_EXACT};
    cq_cache_attend(a.ref, 0, q, QH, want, &o, NULL);
    reader rd[2] = {{a.s, q, want, 0}, {b, q, want, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, read_loop, &rd[i]);
    int bad = 0;
    for (int it = 0; it < 6; it++) { /* structure changes elsewhere in the pool */
        cq_seq *c = NULL, *d = NULL;
        bad += cq_seq_fork(a.s, &c, NULL) != CQ_OK;
        bad += cq_seq_create(p, &d, NULL) != CQ_OK;
        uint16_t *x = calloc((size_t)(G + 1) * H * D, 2);
        ctu_fill_f16(&r, x, (size_t)(G + 1) * H * D, 1.0f, 0);
        for (uint32_t L = 0; L < NL; L++) {
            bad += cq_seq_append(c, L, x, x, G + 1, NULL) != CQ_OK;
            bad += cq_seq_append(d, L, x, x, G + 1, NULL) != CQ_OK;
        }
        bad += cq_seq_truncate(c, 2 + 2 * G, NULL) != CQ_OK;
        free(x);
        cq_seq_free(c);
        cq_seq_free(d);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK(bad == 0 && rd[0].bad == 0 && rd[1].bad == 0,
          "%s: concurrent attention over shared blocks: %d / %d / %d", f->name, bad, rd[0].bad,
          rd[1].bad);
    cq_seq_free(b);
    mseq_free(&a);
    cq_kvpool_free(p);
}

/* Append n tokens to every layer of s (K/V from r); the first failing status. */
static cq_status append_all(cq_seq *s, cq_rng *r, uint32_t n) {
    uint16_t *k = calloc((size_t)n * H * D, 2), *v = calloc((size_t)n * H * D, 2);
    cq_status st = k && v ? CQ_OK : CQ_ERR_NOMEM;
    for (uint32_t L = 0; L < NL && !st; L++) {
        ctu_fill_f16(r, k, (size_t)n * H * D, 1.0f, 0);
        ctu_fill_f16(r, v, (size_t)n * H * D, 1.0f, 0);
        st = cq_seq_append(s, L, k, v, n, NULL);
    }
    free(k);
    free(v);
    return st;
}

static uint64_t used_of(const cq_kvpool *p) {
    cq_kvpool_mem m;
    cq_kvpool_memory(p, &m);
    return m.prefix.used_bytes;
}

/* The bytes cq_seq_append_need names for n tokens after L0 are what the appends of every
 * layer need at their peak: a budget of used + need admits them, one byte less refuses
 * them (the batch session's step check relies on it). */
static void test_append_need(const fmt *f, uint32_t G, uint32_t S) {
    static const uint32_t L0s[] = {0, 1, 2 + 32, 40}, Ns[] = {1, 5, 32, 70};
    int bad = 0;
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 4; b++) {
            const uint32_t L0 = L0s[a], n = Ns[b];
            uint64_t used0 = 0, need = 0, fresh = 0;
            { /* a generous pool: the figures */
                cq_kvpool *p = make_pool(f, G, S, 1u << 30);
                cq_seq *s = NULL;
                cq_rng r;
                cq_rng_seed(&r, 5 + a);
                cq_seq_create(p, &s, NULL);
                if (L0) cq_seq_append_need(s, L0, &fresh, NULL);
                bad += L0 && append_all(s, &r, L0) != CQ_OK;
                used0 = used_of(p);
                bad += cq_seq_append_need(s, n, &need, NULL) != CQ_OK;
                cq_kvpool_free(p);
            }
            for (int less = 0; less < 2; less++) {
                const uint64_t budget = used0 + need - (uint64_t)less;
                if (budget < fresh || !need) continue; /* the prefill itself would not fit */
                cq_kvpool *p = make_pool(f, G, S, budget);
                cq_seq *s = NULL;
                cq_rng r;
                cq_rng_seed(&r, 5 + a);
                cq_seq_create(p, &s, NULL);
                bad += L0 && append_all(s, &r, L0) != CQ_OK;
                const cq_status st = append_all(s, &r, n);
                if (st != (less ? CQ_ERR_BUDGET : CQ_OK)) {
                    fprintf(stderr, "%s G %u S %u: %u after %u tokens, budget used + need%s: %s\n",
                            f->name, G, S, n, L0, less ? " - 1" : "", cq_status_name(st));
                    bad++;
                }
                cq_kvpool_free(p);
            }
        }
    CHECK(bad == 0, "%s G %u S %u: cq_seq_append_need is not exact", f->name, G, S);
}

int main(void) {
    test_threads(&FMTS[2]);
    test_threads(&FMTS[0]);
    test_refusals();
    for (size_t i = 0; i < NFMTS; i++) {
        const fmt *f = &FMTS[i];
        test_equal(f, 32, 0);
        test_equal(f, 32, 3);
        test_equal(f, 128, 0);
        test_equal(f, 128, 2);
        test_fork(f, 32, 0);
        test_fork(f, 32, 2);
        test_truncate(f, 32, 0);
        test_truncate(f, 32, 3);
        if (!is_unit_key(f)) test_truncate_cow(f, 32);
        test_budget(f, 32, 0);
        test_budget(f, 32, 2);
        test_random(f, 32, i % 2 ? 2 : 0, 5000 + i);
        test_append_need(f, 32, 0);
        test_append_need(f, 32, 2);
    }
    return cq_test_done("test_serve");
}
