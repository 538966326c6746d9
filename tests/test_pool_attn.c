/* SPDX-License-Identifier: MIT */
/*
 * test_pool_attn.c - batched attention over many sequences of a serving pool
 * (cq_kvpool_attend, cq_kvpool_attend_prefill; include/cq_serve.h): every sequence's
 * batched output equals its single call (cq_seq_attend / cq_seq_attend_prefill) bit for
 * bit (memcmp), for every format of test_serve.c's list (fp16, CQ-8, CQ-4, CQ-4+ with
 * masks, generic q4_0 / q8_0, mixed per-layer formats), EXACT and FAST, with and without
 * sinks, G in {32, 128}, mixed lengths (1 token, inside the in-flight group, on a block
 * border, several blocks, more than one split-KV chunk, shared-prefix forks), 1, 2 and 3
 * threads, in different batch memberships and orders; decode and prefill outputs against
 * cq_cache_attend_ref over the sequence's stores; every refused input leaves out untouched and
 * names the sequence; an overflowing sequence is zeroed while the rest of its batch
 * stays valid; batched attention from two threads over shared blocks while a third
 * appends to, forks and frees other sequences (make tsan).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cq_pool.h"
#include "cq_serve.h"
#include "cq_test.h"
#include "util/cache_testutil.h"
#include "../src/serve/kvpool_internal.h" /* a sequence's cq_cache, for cq_cache_attend_ref */

#define NL 2u
#define H 2u
#define D 64u
#define QH (2 * H) /* GQA 2 */
#define ROW (QH * D)
#define MAXS 12u
#define NPRE 5u /* most prefill queries per sequence */

typedef struct fmt {
    const char *name;
    cq_codec_id k, v;
    uint32_t outl; /* CQ-4+ outlier channels per head */
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
static cq_pool *g_thr; /* 3 threads: every call picks 1, 2 or 3 of them */

static cq_kvpool *make_pool(const fmt *f, uint32_t G, uint32_t S) {
    cq_kvpool_config pc = {.budget_bytes = 1ull << 30, .model_hash = 1};
    cq_cache_config *c = &pc.cache;
    cq_cache_config_default(c, NL, H, D);
    c->key_codec = f->k;
    c->val_codec = f->v;
    c->group = G;
    c->n_sinks = S;
    c->page_tokens = 0;
    c->max_tokens = 0;
    if (f->outl) {
        cq_rng r;
        cq_rng_seed(&r, 77);
        ctu_random_masks(&r, g_masks, NL * H, D, f->outl);
        c->outlier_masks = g_masks;
    }
    if (f == &FMTS[NFMTS - 1]) { /* layer 1: fp16 keys, CQ-4 values */
        g_layers[0] = (cq_layer_codecs){f->k, f->v};
        g_layers[1] = (cq_layer_codecs){CQ_CODEC_FP16, CQ_CODEC_CQ4};
        c->layer_codecs = g_layers;
    }
    cq_kvpool *p = NULL;
    cq_err e;
    cq_status st = cq_kvpool_create(&pc, &p, &e);
    CHECK(st == CQ_OK && p, "%s: pool create: %s", f->name, e.msg);
    return p;
}

/* n random tokens appended to every layer of s in chunks of random size. */
static void append_random(cq_seq *s, cq_rng *r, uint32_t n) {
    uint16_t *k = malloc((size_t)n * H * D * 2), *v = malloc((size_t)n * H * D * 2);
    ctu_fill_f16(r, k, (size_t)n * H * D, 1.0f, 0);
    ctu_fill_f16(r, v, (size_t)n * H * D, 1.0f, 0);
    for (uint32_t L = 0; L < NL; L++)
        for (uint32_t a = 0; a < n;) {
            uint32_t c = 1 + cq_rng_below(r, 300);
            if (c > n - a) c = n - a;
            cq_err e;
            cq_status st = cq_seq_append(s, L, k + (size_t)a * H * D, v + (size_t)a * H * D, c, &e);
            CHECK(st == CQ_OK, "append: %s", e.msg);
            a += c;
        }
    free(k);
    free(v);
}

/* The set of sequences every batch test draws from: 1 token, inside the in-flight group,
 * on a block border, several blocks, three split-KV chunks per head (> 8192 tokens), forks
 * sharing a prefix (one identical to its source, one diverged by a block and more, one by
 * a token). Returns the count. */
static uint32_t make_set(cq_kvpool *p, uint32_t G, uint32_t S, cq_rng *r, cq_seq **seqs) {
    const uint32_t lens[] = {1, S + G / 2, S + 3 * G, S + 5 * G + 7, 8300};
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        CHECK(cq_seq_create(p, &seqs[n], NULL) == CQ_OK, "create");
        append_random(seqs[n++], r, lens[i]);
    }
    CHECK(cq_seq_fork(seqs[3], &seqs[n++], NULL) == CQ_OK, "fork");
    CHECK(cq_seq_fork(seqs[3], &seqs[n], NULL) == CQ_OK, "fork");
    append_random(seqs[n++], r, 2 * G + 3);
    CHECK(cq_seq_fork(seqs[4], &seqs[n], NULL) == CQ_OK, "fork");
    append_random(seqs[n++], r, 1);
    return n;
}

static void random_q(cq_rng *r, float *q, size_t n) {
    for (size_t i = 0; i < n; i++) q[i] = (float)cq_rng_normal(r);
}

/* cq_cache_attend_ref (read back, exact attention in double) over the sequence's stores:
 * n_q queries at positions pos0 .. pos0 + n_q - 1; max |out - ref| / max |ref|. */
static double ref_err(const cq_seq *s, uint32_t L, const float *q, uint32_t n_q, uint32_t pos0,
                      const float *out) {
    if (!n_q) return 0.0;
    float *ref = malloc((size_t)n_q * ROW * 4);
    cq_status st = cq_cache_attend_ref(s->c, L, q, n_q, pos0, QH, ref, 0.0f, NULL);
    double e = st ? INFINITY : ctu_rel_err(out, ref, (size_t)n_q * ROW);
    free(ref);
    return e;
}

/* A random permutation of [0, n) into idx; returns k: a random size in [1, n] when
 * subset, else n. */
static uint32_t pick(cq_rng *r, uint32_t n, uint32_t *idx, int subset) {
    for (uint32_t i = 0; i < n; i++) idx[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = cq_rng_below(r, i), t = idx[i - 1];
        idx[i - 1] = idx[j], idx[j] = t;
    }
    return subset ? 1 + cq_rng_below(r, n) : n;
}

/* Batched == single for one pool configuration. */
static void test_equal(const fmt *f, uint32_t G, uint32_t S, uint64_t seed) {
    cq_rng r;
    cq_rng_seed(&r, seed);
    cq_kvpool *p = make_pool(f, G, S);
    cq_seq *seqs[MAXS];
    const uint32_t n = make_set(p, G, S, &r, seqs);
    float *q = malloc((size_t)n * NPRE * ROW * 4), *single = malloc((size_t)n * NPRE * ROW * 4);
    float *bq = malloc((size_t)n * NPRE * ROW * 4), *bout = malloc((size_t)n * NPRE * ROW * 4);
    int bad_eq = 0, bad_st = 0;
    double worst[3] = {0};
    for (uint32_t prec = CQ_ATTN_EXACT; prec <= CQ_ATTN_FAST; prec++)
        for (uint32_t L = 0; L < NL; L++) {
            /* decode: the single calls (1 thread) are the expectation */
            random_q(&r, q, (size_t)n * ROW);
            cq_attn_opts o1 = {.n_threads = 1, .precision = prec, .pool = g_thr};
            for (uint32_t i = 0; i < n; i++)
                bad_st += cq_seq_attend(seqs[i], L, q + (size_t)i * ROW, QH,
                                        single + (size_t)i * ROW, &o1, NULL) != CQ_OK;
            for (uint32_t i = 0; i < n; i++) {
                const uint32_t T = cq_seq_tokens(seqs[i], L);
                double e = ref_err(seqs[i], L, q + (size_t)i * ROW, 1, T - 1, single + (size_t)i * ROW);
                if (e > worst[prec]) worst[prec] = e;
            }
            for (uint32_t thr = 1; thr <= 3; thr++)
                for (int b = 0; b < 3; b++) { /* all in order, all shuffled, a random subset */
                    uint32_t idx[MAXS], k = n;
                    if (b) k = pick(&r, n, idx, b == 2);
                    else
                        for (uint32_t i = 0; i < n; i++) idx[i] = i;
                    cq_seq *bs[MAXS];
                    for (uint32_t i = 0; i < k; i++) {
                        bs[i] = seqs[idx[i]];
                        memcpy(bq + (size_t)i * ROW, q + (size_t)idx[i] * ROW, ROW * 4);
                    }
                    cq_attn_opts o = {.n_threads = thr, .precision = prec, .pool = g_thr};
                    cq_err e;
                    cq_status st = cq_kvpool_attend(p, L, bs, k, bq, QH, bout, &o, &e);
                    bad_st += st != CQ_OK;
                    if (st) fprintf(stderr, "%s: batched decode: %s\n", f->name, e.msg);
                    for (uint32_t i = 0; i < k; i++)
                        bad_eq += memcmp(bout + (size_t)i * ROW, single + (size_t)idx[i] * ROW,
                                         ROW * 4) != 0;
                }
            /* prefill: each sequence's last nq tokens (0 to NPRE, at most its length) */
            uint32_t nq[MAXS], pos0[MAXS], ofs[MAXS + 1] = {0};
            for (uint32_t i = 0; i < n; i++) {
                const uint32_t T = cq_seq_tokens(seqs[i], L);
                nq[i] = cq_rng_below(&r, NPRE + 1);
                if (nq[i] > T) nq[i] = T;
                pos0[i] = T - nq[i];
                ofs[i + 1] = ofs[i] + nq[i];
            }
            random_q(&r, q, (size_t)ofs[n] * ROW);
            for (uint32_t i = 0; i < n; i++)
                bad_st += cq_seq_attend_prefill(seqs[i], L, q + (size_t)ofs[i] * ROW, nq[i],
                                                pos0[i], QH, single + (size_t)ofs[i] * ROW, &o1,
                                                NULL) != CQ_OK;
            for (uint32_t i = 0; i < n; i++) {
                double e = ref_err(seqs[i], L, q + (size_t)ofs[i] * ROW, nq[i], pos0[i],
                                   single + (size_t)ofs[i] * ROW);
                if (e > worst[prec]) worst[prec] = e;
            }
            for (uint32_t thr = 1; thr <= 3; thr++) {
                uint32_t idx[MAXS], k = pick(&r, n, idx, thr == 3), bofs[MAXS + 1] = {0},
                                    bpos[MAXS];
                cq_seq *bs[MAXS];
                for (uint32_t i = 0; i < k; i++) {
                    bs[i] = seqs[idx[i]];
                    bpos[i] = pos0[idx[i]];
                    bofs[i + 1] = bofs[i] + nq[idx[i]];
                    memcpy(bq + (size_t)bofs[i] * ROW, q + (size_t)ofs[idx[i]] * ROW,
                           (size_t)nq[idx[i]] * ROW * 4);
                }
                cq_attn_opts o = {.n_threads = thr, .precision = prec, .pool = g_thr};
                cq_err e;
                cq_status st = cq_kvpool_attend_prefill(p, L, bs, k, bofs, bpos, bq, QH, bout, &o, &e);
                bad_st += st != CQ_OK;
                if (st) fprintf(stderr, "%s: batched prefill: %s\n", f->name, e.msg);
                for (uint32_t i = 0; i < k; i++)
                    bad_eq += memcmp(bout + (size_t)bofs[i] * ROW, single + (size_t)ofs[idx[i]] * ROW,
                                     (size_t)nq[idx[i]] * ROW * 4) != 0;
            }
        }
    CHECK(bad_st == 0 && bad_eq == 0, "%s G=%u S=%u: batched == single: %d failed calls, %d outputs differ",
          f->name, G, S, bad_st, bad_eq);
    /* against cq_cache_attend_ref: the tolerance of test_cache_rows.c for EXACT; FAST: a
     * sanity bound (its per-call bound is test_cache_attn.c's, on the single call the batch
     * equals bit for bit) */
    CHECK(worst[CQ_ATTN_EXACT] <= 1e-4 && worst[CQ_ATTN_FAST] <= 0.1,
          "%s G=%u S=%u: against the double reference: exact %.3g, fast %.3g", f->name, G, S,
          worst[CQ_ATTN_EXACT], worst[CQ_ATTN_FAST]);
    for (uint32_t i = 0; i < n; i++) cq_seq_free(seqs[i]);
    cq_kvpool_mem m;
    cq_kvpool_memory(p, &m);
    CHECK(m.prefix.live_blocks == 0, "%s: no block left", f->name);
    cq_kvpool_free(p);
    free(q), free(single), free(bq), free(bout);
}

/* ------------------------------------------------------------ refusals */

#define CANARY 0x7fc12345u

static int untouched(const float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &out[i], 4);
        if (u != CANARY) return 0;
    }
    return 1;
}

static void fill_canary(float *out, size_t n) {
    const uint32_t c = CANARY;
    for (size_t i = 0; i < n; i++) memcpy(&out[i], &c, 4);
}

static void test_refusals(void) {
    cq_rng r;
    cq_rng_seed(&r, 9);
    cq_kvpool *p = make_pool(&FMTS[2], 32, 2), *p2 = make_pool(&FMTS[2], 32, 2);
    cq_seq *a = NULL, *b = NULL, *empty = NULL, *other = NULL;
    cq_seq_create(p, &a, NULL);
    cq_seq_create(p, &b, NULL);
    cq_seq_create(p, &empty, NULL);
    cq_seq_create(p2, &other, NULL);
    append_random(a, &r, 70);
    append_random(b, &r, 33);
    append_random(other, &r, 40);
    float q[3 * ROW], out[3 * ROW];
    random_q(&r, q, 3 * ROW);
    cq_attn_opts o = {.n_threads = 2, .pool = g_thr};
    cq_err e;
    struct {
        cq_seq *s[3];
        uint32_t n, layer, nqh;
        int nullq, nullout, nullp, nullseqs;
        cq_status want;
        int64_t token; /* the sequence the error names, -1: none */
    } cases[] = {
        {{a, b}, 2, 0, QH, 0, 0, 1, 0, CQ_ERR_NULL, -1},
        {{a, b}, 2, 0, QH, 0, 0, 0, 1, CQ_ERR_NULL, -1},
        {{a, b}, 2, 0, QH, 1, 0, 0, 0, CQ_ERR_NULL, -1},
        {{a, b}, 2, 0, QH, 0, 1, 0, 0, CQ_ERR_NULL, -1},
        {{a, NULL}, 2, 0, QH, 0, 0, 0, 0, CQ_ERR_NULL, 1},
        {{a, other}, 2, 0, QH, 0, 0, 0, 0, CQ_ERR_ARG, 1},
        {{a, b, a}, 3, 0, QH, 0, 0, 0, 0, CQ_ERR_ARG, 2},
        {{a, b}, 2, NL, QH, 0, 0, 0, 0, CQ_ERR_RANGE, 0},
        {{a, b}, 2, 0, 0, 0, 0, 0, 0, CQ_ERR_SHAPE, 0},
        {{a, b}, 2, 0, H + 1, 0, 0, 0, 0, CQ_ERR_SHAPE, 0},
        {{a, empty}, 2, 0, QH, 0, 0, 0, 0, CQ_ERR_STATE, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        fill_canary(out, 3 * ROW);
        cq_status st = cq_kvpool_attend(cases[c].nullp ? NULL : p, cases[c].layer,
                                        cases[c].nullseqs ? NULL : cases[c].s, cases[c].n,
                                        cases[c].nullq ? NULL : q, cases[c].nqh,
                                        cases[c].nullout ? NULL : out, &o, &e);
        CHECK(st == cases[c].want && e.code == st && untouched(out, 3 * ROW) &&
                  (cases[c].token < 0 || e.token == cases[c].token),
              "decode refusal %zu: %s (token %lld): %s", c, cq_status_name(st), (long long)e.token,
              e.msg);
        /* prefill refuses the same inputs (one query per sequence at its last token) */
        uint32_t ofs[4] = {0, 1, 2, 3}, pos[3] = {69, 32, 69};
        if (cases[c].s[1] == empty) pos[1] = 0;
        fill_canary(out, 3 * ROW);
        st = cq_kvpool_attend_prefill(cases[c].nullp ? NULL : p, cases[c].layer,
                                      cases[c].nullseqs ? NULL : cases[c].s, cases[c].n, ofs, pos,
                                      cases[c].nullq ? NULL : q, cases[c].nqh,
                                      cases[c].nullout ? NULL : out, &o, &e);
        const cq_status want = cases[c].want == CQ_ERR_STATE ? CQ_ERR_RANGE : cases[c].want;
        CHECK(st == want && untouched(out, 3 * ROW) &&
                  (cases[c].token < 0 || e.token == cases[c].token),
              "prefill refusal %zu: %s (token %lld): %s", c, cq_status_name(st), (long long)e.token,
              e.msg);
    }
    cq_seq *ab[2] = {a, b};
    /* a non-finite query element of sequence 1 */
    q[ROW + 5] = NAN;
    fill_canary(out, 3 * ROW);
    CHECK(cq_kvpool_attend(p, 0, ab, 2, q, QH, out, &o, &e) == CQ_ERR_NONFINITE && e.token == 1 &&
              untouched(out, 3 * ROW),
          "non-finite query: %s", e.msg);
    q[ROW + 5] = 0.5f;
    /* precision and scale */
    const float scales[] = {-1.0f, NAN, INFINITY};
    for (size_t i = 0; i < 3; i++) {
        cq_attn_opts ob = o;
        ob.scale = scales[i];
        fill_canary(out, 3 * ROW);
        CHECK(cq_kvpool_attend(p, 0, ab, 2, q, QH, out, &ob, &e) == CQ_ERR_ARG &&
                  untouched(out, 3 * ROW),
              "scale %g refused", (double)scales[i]);
    }
    cq_attn_opts ob = o;
    ob.precision = 7;
    fill_canary(out, 3 * ROW);
    CHECK(cq_kvpool_attend(p, 0, ab, 2, q, QH, out, &ob, &e) == CQ_ERR_ARG && untouched(out, 3 * ROW),
          "unknown precision refused");
    /* prefill: the row offsets and the positions */
    uint32_t ofs_bad0[3] = {1, 2, 3}, ofs_dec[3] = {0, 2, 1}, ofs[3] = {0, 2, 3};
    uint32_t pos[2] = {68, 32}, pos_far[2] = {68, 33};
    fill_canary(out, 3 * ROW);
    CHECK(cq_kvpool_attend_prefill(p, 0, ab, 2, NULL, pos, q, QH, out, &o, &e) == CQ_ERR_NULL &&
              cq_kvpool_attend_prefill(p, 0, ab, 2, ofs, NULL, q, QH, out, &o, &e) == CQ_ERR_NULL &&
              cq_kvpool_attend_prefill(p, 0, ab, 2, ofs_bad0, pos, q, QH, out, &o, &e) == CQ_ERR_ARG &&
              cq_kvpool_attend_prefill(p, 0, ab, 2, ofs_dec, pos, q, QH, out, &o, &e) == CQ_ERR_ARG &&
              cq_kvpool_attend_prefill(p, 0, ab, 2, ofs, pos_far, q, QH, out, &o, &e) == CQ_ERR_RANGE &&
              e.token == 1 && untouched(out, 3 * ROW),
          "prefill offsets and positions: %s", e.msg);
    /* nothing to do */
    CHECK(cq_kvpool_attend(p, 0, ab, 0, q, QH, out, &o, &e) == CQ_OK && untouched(out, 3 * ROW),
          "an empty batch");
    uint32_t zero[3] = {0, 0, 0};
    CHECK(cq_kvpool_attend_prefill(p, 0, ab, 2, zero, pos, q, QH, out, &o, &e) == CQ_OK &&
              untouched(out, 3 * ROW),
          "a prefill batch without queries");
    cq_seq_free(a);
    cq_seq_free(b);
    cq_seq_free(empty);
    cq_kvpool_free(p);
    cq_kvpool_free(p2);
}

/* One sequence whose scores overflow fp32: its out is zeroed, the batch says
 * CQ_ERR_OVERFLOW naming it, every other output equals its single call. */
static void test_overflow(void) {
    cq_rng r;
    cq_rng_seed(&r, 10);
    cq_kvpool *p = make_pool(&FMTS[0], 32, 0);
    cq_seq *s[3];
    for (int i = 0; i < 3; i++) {
        cq_seq_create(p, &s[i], NULL);
        append_random(s[i], &r, 50 + 20 * i);
    }
    float q[3 * ROW], out[3 * ROW], want[3 * ROW];
    random_q(&r, q, 3 * ROW);
    for (uint32_t i = 0; i < ROW; i++) q[ROW + i] = 3e38f; /* sequence 1 */
    cq_attn_opts o = {.n_threads = 2, .pool = g_thr};
    cq_err e;
    for (int i = 0; i < 3; i++)
        CHECK(cq_seq_attend(s[i], 0, q + i * ROW, QH, want + i * ROW, &o, NULL) ==
                  (i == 1 ? CQ_ERR_OVERFLOW : CQ_OK),
              "single %d", i);
    fill_canary(out, 3 * ROW);
    cq_status st = cq_kvpool_attend(p, 0, s, 3, q, QH, out, &o, &e);
    CHECK(st == CQ_ERR_OVERFLOW && e.token == 1 && memcmp(out, want, sizeof out) == 0,
          "overflow of one sequence: %s (token %lld), rest valid", cq_status_name(st),
          (long long)e.token);
    int zero = 1;
    for (uint32_t i = 0; i < ROW; i++) zero &= out[ROW + i] == 0.0f;
    CHECK(zero, "the overflowing sequence's output is zeroed");
    for (int i = 0; i < 3; i++) cq_seq_free(s[i]);
    cq_kvpool_free(p);
}

/* ------------------------------------------------------------ concurrency */

typedef struct reader {
    cq_kvpool *p;
    cq_seq **s;
    uint32_t n;
    const float *q, *want;
    int bad;
} reader;

static void *read_loop(void *arg) {
    reader *r = arg;
    float *out = malloc((size_t)r->n * ROW * 4);
    cq_attn_opts o = {.n_threads = 2, .precision = CQ_ATTN_EXACT}; /* the default pool */
    for (int i = 0; i < 12; i++)
        if (cq_kvpool_attend(r->p, 0, r->s, r->n, r->q, QH, out, &o, NULL) ||
            memcmp(out, r->want, (size_t)r->n * ROW * 4))
            r->bad++;
    free(out);
    return NULL;
}

static void test_threads(const fmt *f) {
    const uint32_t G = 32;
    cq_rng r;
    cq_rng_seed(&r, 6001);
    cq_kvpool *p = make_pool(f, G, 2);
    cq_seq *s[4] = {NULL};
    cq_seq_create(p, &s[0], NULL);
    append_random(s[0], &r, 6 * G + 5);
    for (int i = 1; i < 4; i++) { /* forks sharing s[0]'s blocks */
        cq_seq_fork(s[0], &s[i], NULL);
        append_random(s[i], &r, (uint32_t)i * 7);
    }
    float q[4 * ROW], want[4 * ROW];
    random_q(&r, q, 4 * ROW);
    cq_attn_opts o1 = {.n_threads = 1, .precision = CQ_ATTN_EXACT};
    for (int i = 0; i < 4; i++) cq_seq_attend(s[i], 0, q + i * ROW, QH, want + i * ROW, &o1, NULL);
    cq_seq *rev[4] = {s[3], s[2], s[1], s[0]};
    float qrev[4 * ROW], wrev[4 * ROW];
    for (int i = 0; i < 4; i++) {
        memcpy(qrev + i * ROW, q + (3 - i) * ROW, ROW * 4);
        memcpy(wrev + i * ROW, want + (3 - i) * ROW, ROW * 4);
    }
    reader rd[2] = {{p, s, 4, q, want, 0}, {p, rev, 4, qrev, wrev, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, read_loop, &rd[i]);
    int bad = 0;
    for (int it = 0; it < 4; it++) { /* structure changes elsewhere in the pool */
        cq_seq *c = NULL, *d = NULL;
        bad += cq_seq_fork(s[0], &c, NULL) != CQ_OK;
        bad += cq_seq_create(p, &d, NULL) != CQ_OK;
        append_random(c, &r, G + 1);
        append_random(d, &r, G + 1);
        bad += cq_seq_truncate(c, 2 + 2 * G, NULL) != CQ_OK;
        cq_seq_free(c);
        cq_seq_free(d);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK(bad == 0 && rd[0].bad == 0 && rd[1].bad == 0,
          "%s: concurrent batched attention over shared blocks: %d / %d / %d", f->name, bad,
          rd[0].bad, rd[1].bad);
    for (int i = 0; i < 4; i++) cq_seq_free(s[i]);
    cq_kvpool_free(p);
}

/* Under ThreadSanitizer (make tsan: about 15x slower) the equality grid runs one G and no
 * sinks per format: its threads are what TSan checks, the grid is the default build's. */
#if defined(__SANITIZE_THREAD__)
#define TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN_BUILD 1
#endif
#endif
#ifndef TSAN_BUILD
#define TSAN_BUILD 0
#endif

int main(void) {
    cq_pool_opts po;
    cq_pool_opts_default(&po, 3);
    CHECK(cq_pool_create(&po, &g_thr) == CQ_OK, "thread pool");
    test_threads(&FMTS[2]);
    test_threads(&FMTS[0]);
    test_refusals();
    test_overflow();
    for (size_t i = 0; i < NFMTS; i++)
        for (uint32_t G = 32; G <= (TSAN_BUILD ? 32u : 128u); G *= 4) {
            test_equal(&FMTS[i], G, 0, 100 + i * 8 + G);
            if (!TSAN_BUILD) test_equal(&FMTS[i], G, 3, 200 + i * 8 + G);
        }
    cq_pool_free(g_thr);
    return cq_test_done("test_pool_attn");
}
