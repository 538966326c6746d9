/* SPDX-License-Identifier: MIT */
/*
 * test_serve_trunc.c - truncating a pool sequence inside a committed key group (the partial
 * block, docs/SERVING.md "Sequence operations"), for CQ-4, CQ-4+ and mixed layer formats, with
 * and without sinks, G = 32 and 128:
 *  - the kept tokens read back bit for bit as they did before the cut (the codes of their
 *    full group); tokens appended after the cut read back bit for bit as a fresh cache (no
 *    sinks) fed them alone: a new group grid starts at the cut;
 *  - a model (the cache's positions as a cq_cache fed the same tokens, with the partial blocks
 *    as held, and its own position map) predicts every read range and the exports bit for
 *    bit after each operation (second truncates, cuts inside a partial block, several
 *    partial blocks, forks, random operation sequences);
 *  - attention: decode and prefill (EXACT and FAST) against a double reference over the
 *    read-back tokens; batched (cq_kvpool_attend / _prefill) equal to single calls bit for
 *    bit; a prefill row equal to the single-query call at its position;
 *  - sharing: a fork cut inside a shared group copies nothing and leaves its source
 *    unchanged; slack accounting; cq_kvpool_check after each operation; a budget refusal
 *    after a cut changes nothing; publish stops at the partial block; save refuses it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>

#include "cq_serve.h"
#include "cq_test.h"
#include "util/cache_testutil.h"

#define NL 2u
#define H 2u
#define D 64u
#define QH (2 * H) /* GQA 2 */
#define ROW (QH * D)
#define MAXP 64u

typedef struct fmt {
    const char *name;
    cq_codec_id k, v;
    uint32_t outl; /* CQ-4+ outlier channels per head */
    int mixed;     /* layer 1: fp16 keys, INT4 values */
} fmt;

static const fmt FMTS[] = {
    {"cq4/cq4", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 0, 0},
    {"cq4+/cq4", CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 2, 0},
    {"cq4/cq8 + fp16/cq4 layers", CQ_CODEC_CQ4, CQ_CODEC_CQ8, 0, 1},
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
    if (f->mixed) {
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

static cq_cache *make_cache(const fmt *f, uint32_t G, uint32_t S) {
    cq_cache_config c = make_cfg(f, G, S, G);
    cq_cache *r = NULL;
    cq_err e;
    cq_status st = cq_cache_create(&c, &r, &e);
    CHECK(st == CQ_OK, "%s: cache: %s", f->name, e.msg);
    return r;
}

/* ------------------------------------------------------------ the model */

/* A sequence and what the documented design says it holds: the cache's positions (every
 * position of its blocks, the unused ones of partial blocks included) as token history, and
 * the partial blocks. */
typedef struct model {
    const fmt *f;
    uint32_t G, S;
    cq_kvpool *p;
    cq_seq *s;
    uint16_t *hk[NL], *hv[NL]; /* [cap][H][D] the tokens at the cache's positions */
    uint32_t np, cap;          /* cache positions (sinks included) */
    uint32_t pb[MAXP], pk[MAXP], npart;
    uint32_t n;                /* the sequence's tokens */
} model;

static void m_reserve(model *m, uint32_t n) {
    if (n <= m->cap) return;
    uint32_t cap = m->cap ? m->cap : 64;
    while (cap < n) cap *= 2;
    for (uint32_t L = 0; L < NL; L++) {
        m->hk[L] = realloc(m->hk[L], (size_t)cap * H * D * 2);
        m->hv[L] = realloc(m->hv[L], (size_t)cap * H * D * 2);
    }
    m->cap = cap;
}

static model m_new(cq_kvpool *p, const fmt *f, uint32_t G, uint32_t S) {
    model m = {.f = f, .G = G, .S = S, .p = p};
    cq_err e;
    cq_status st = cq_seq_create(p, &m.s, &e);
    CHECK(st == CQ_OK, "seq create: %s", e.msg);
    return m;
}

static void m_free(model *m) {
    cq_seq_free(m->s);
    for (uint32_t L = 0; L < NL; L++) free(m->hk[L]), free(m->hv[L]);
    memset(m, 0, sizeof *m);
}

static model m_fork(const model *src) {
    model m = *src;
    m.hk[0] = m.hk[1] = m.hv[0] = m.hv[1] = NULL;
    m.cap = 0;
    m_reserve(&m, src->np + 1);
    for (uint32_t L = 0; L < NL && src->np; L++) {
        memcpy(m.hk[L], src->hk[L], (size_t)src->np * H * D * 2);
        memcpy(m.hv[L], src->hv[L], (size_t)src->np * H * D * 2);
    }
    cq_err e;
    m.s = NULL;
    cq_status st = cq_seq_fork(src->s, &m.s, &e);
    CHECK(st == CQ_OK, "fork: %s", e.msg);
    return m;
}

/* The cache position of the sequence's token t: the sinks, then block by block the used
 * positions of each (all G, or k of a partial block). */
static uint32_t m_pos(const model *m, uint32_t t) {
    if (t < m->S) return t;
    uint32_t u = t - m->S;
    for (uint32_t b = 0;; b++) {
        uint32_t used = m->G;
        for (uint32_t i = 0; i < m->npart; i++)
            if (m->pb[i] == b) used = m->pk[i];
        if (u < used) return m->S + b * m->G + u;
        u -= used;
    }
}

/* Append x new random tokens (random chunks per layer); the pool's status. */
static cq_status m_append(model *m, cq_rng *r, uint32_t x, uint16_t *fk[NL], uint16_t *fv[NL]) {
    m_reserve(m, m->np + x);
    for (uint32_t L = 0; L < NL; L++) {
        ctu_fill_f16(r, m->hk[L] + (size_t)m->np * H * D, (size_t)x * H * D, 1.0f, 0);
        ctu_fill_f16(r, m->hv[L] + (size_t)m->np * H * D, (size_t)x * H * D, 1.0f, 0);
        if (fk) memcpy(fk[L], m->hk[L] + (size_t)m->np * H * D, (size_t)x * H * D * 2);
        if (fv) memcpy(fv[L], m->hv[L] + (size_t)m->np * H * D, (size_t)x * H * D * 2);
    }
    for (uint32_t L = 0; L < NL; L++)
        for (uint32_t a = 0; a < x;) {
            uint32_t c = 1 + cq_rng_below(r, 40);
            if (c > x - a) c = x - a;
            const size_t o = (size_t)(m->np + a) * H * D;
            cq_err e;
            cq_status st = cq_seq_append(m->s, L, m->hk[L] + o, m->hv[L] + o, c, &e);
            if (st) {
                CHECK(L == 0 && a == 0, "append refused in the middle (%s)", e.msg);
                return st;
            }
            a += c;
        }
    m->np += x;
    m->n += x;
    return CQ_OK;
}

/* Truncate to n tokens: the pool's status; the model follows the design. Returns whether
 * the cut made a partial block. */
static int m_truncate(model *m, uint32_t n) {
    cq_err e;
    cq_status st = cq_seq_truncate(m->s, n, &e);
    CHECK(st == CQ_OK, "%s: truncate %u -> %u: %s", m->f->name, m->n, n, e.msg);
    if (st) return 0;
    const uint32_t G = m->G, S = m->S, T = n > S ? n - S : 0;
    int part = 0;
    if (T == 0) {
        m->np = n;
        m->npart = 0;
    } else if (n != m->n) {
        const uint32_t PT = m_pos(m, n - 1) + 1 - S, done = (m->np - S) / G * G;
        uint32_t k = 0;
        while (k < m->npart && m->pb[k] * G + m->pk[k] < PT) k++;
        m->npart = k;
        if (PT % G && PT < done) { /* every format here has CQ-4 keys in layer 0 */
            m->pb[m->npart] = PT / G;
            m->pk[m->npart++] = PT % G;
            m->np = S + (PT / G + 1) * G;
            part = 1;
        } else {
            m->np = S + PT;
        }
    }
    m->n = n;
    return part;
}

/* The cache positions as a cq_cache fed the same tokens (page_tokens = G). */
static cq_cache *m_cache(const model *m) {
    cq_cache *c = make_cache(m->f, m->G, m->S);
    for (uint32_t L = 0; L < NL && m->np; L++) {
        cq_status st = cq_cache_append(c, L, m->hk[L], m->hv[L], m->np, NULL);
        CHECK(st == CQ_OK, "model cache append");
    }
    return c;
}

/* ------------------------------------------------------------ attention */

/* Double attention of n_q queries at positions pos0.. over the tokens K, V [T][D] of one
 * kv head h: out rows [n_q][QH][D] (only this head's query heads written). */
static void ref_attend(const float *K, const float *V, const float *q, uint32_t n_q,
                       uint32_t pos0, uint32_t h, float *out) {
    const uint32_t nh = QH / H;
    const double sc = 1.0 / sqrt((double)D);
    double *s = malloc(((size_t)pos0 + n_q) * sizeof *s), o[D];
    for (uint32_t i = 0; i < n_q; i++)
        for (uint32_t g = 0; g < nh; g++) {
            const float *qq = q + (size_t)i * ROW + (size_t)(h * nh + g) * D;
            const uint32_t n = pos0 + i + 1;
            double mx = -INFINITY, sum = 0.0;
            for (uint32_t t = 0; t < n; t++) {
                double a = 0.0;
                for (uint32_t d = 0; d < D; d++) a += (double)qq[d] * K[(size_t)t * D + d];
                s[t] = a * sc;
                if (s[t] > mx) mx = s[t];
            }
            memset(o, 0, sizeof o);
            for (uint32_t t = 0; t < n; t++) {
                double w = exp(s[t] - mx);
                sum += w;
                for (uint32_t d = 0; d < D; d++) o[d] += w * V[(size_t)t * D + d];
            }
            float *dst = out + (size_t)i * ROW + (size_t)(h * nh + g) * D;
            for (uint32_t d = 0; d < D; d++) dst[d] = (float)(o[d] / sum);
        }
    free(s);
}

static double g_worst[CQ_ATTN_FAST + 1];

/* Attention of m's sequence on layer L against the double reference over exp[h] (the
 * expected K then V of kv head h, [n][D] each); batched equal to single; prefill rows equal
 * single-query calls. `other`: a second sequence for the batches (or NULL). 0 when all hold. */
static int check_attn(const model *m, const cq_seq *other, uint32_t L, float *const *expK,
                      float *const *expV, cq_rng *r) {
    const uint32_t n = m->n;
    if (!n) return 0;
    int bad = 0;
    const uint32_t nq = n < 7 ? n : 7, pos0 = cq_rng_below(r, n - nq + 1);
    float *q = malloc((size_t)nq * ROW * 4), *ref = malloc((size_t)nq * ROW * 4),
          *a = malloc((size_t)nq * ROW * 4), *b = malloc((size_t)2 * nq * ROW * 4),
          *qb = malloc((size_t)2 * nq * ROW * 4), *refd = malloc(ROW * 4);
    for (size_t i = 0; i < (size_t)nq * ROW; i++) q[i] = (float)cq_rng_normal(r);
    for (uint32_t h = 0; h < H; h++) {
        ref_attend(expK[h], expV[h], q, nq, pos0, h, ref);
        ref_attend(expK[h], expV[h], q, 1, n - 1, h, refd);
    }
    const uint32_t on = other ? cq_seq_tokens(other, L) : 0, oq = on < nq ? on : nq;
    for (uint32_t prec = CQ_ATTN_EXACT; prec <= CQ_ATTN_FAST; prec++) {
        cq_attn_opts o = {.n_threads = 1 + cq_rng_below(r, 2), .precision = prec};
        cq_err e;
        /* decode */
        cq_status st = cq_seq_attend(m->s, L, q, QH, a, &o, &e);
        bad += st != CQ_OK;
        if (st) fprintf(stderr, "decode: %s\n", e.msg);
        double er = ctu_rel_err(a, refd, ROW);
        if (er > g_worst[prec]) g_worst[prec] = er;
        cq_seq *seqs[2] = {m->s, (cq_seq *)other};
        memcpy(qb, q, ROW * 4);
        memcpy(qb + ROW, q, ROW * 4);
        st = cq_kvpool_attend(m->p, L, seqs, on ? 2 : 1, qb, QH, b, &o, &e);
        bad += st != CQ_OK || memcmp(a, b, ROW * 4) != 0;
        /* prefill */
        st = cq_seq_attend_prefill(m->s, L, q, nq, pos0, QH, a, &o, &e);
        bad += st != CQ_OK;
        if (st) fprintf(stderr, "prefill: %s\n", e.msg);
        er = ctu_rel_err(a, ref, (size_t)nq * ROW);
        if (er > g_worst[prec]) g_worst[prec] = er;
        for (uint32_t i = 0; i < nq; i++) { /* each row: the single query at its position */
            st = cq_seq_attend_prefill(m->s, L, q + (size_t)i * ROW, 1, pos0 + i, QH, b, &o, NULL);
            bad += st != CQ_OK || memcmp(a + (size_t)i * ROW, b, ROW * 4) != 0;
        }
        /* batched prefill: this sequence first, then the other's last oq tokens */
        const uint32_t ofs[3] = {0, nq, nq + oq}, p0[2] = {pos0, on - oq};
        memcpy(qb, q, (size_t)nq * ROW * 4);
        memcpy(qb + (size_t)nq * ROW, q, (size_t)oq * ROW * 4);
        st = cq_kvpool_attend_prefill(m->p, L, seqs, oq ? 2 : 1, ofs, p0, qb, QH, b,
                                      &o, &e);
        bad += st != CQ_OK || memcmp(a, b, (size_t)nq * ROW * 4) != 0;
        if (st) fprintf(stderr, "batched prefill: %s\n", e.msg);
        if (oq) { /* the other sequence's rows equal its single call */
            float *c1 = malloc((size_t)oq * ROW * 4);
            st = cq_seq_attend_prefill(other, L, q, oq, on - oq, QH, c1, &o, NULL);
            bad += st != CQ_OK || memcmp(c1, b + (size_t)nq * ROW, (size_t)oq * ROW * 4) != 0;
            free(c1);
        }
    }
    free(q), free(ref), free(a), free(b), free(qb), free(refd);
    return bad;
}

/* ------------------------------------------------------------ the check */

/* Everything of m's sequence against the model: lengths, every read (full and random
 * ranges), exports, accounting, attention. 0 when all hold. */
static int check(const model *m, const cq_seq *other, cq_rng *r, int attend) {
    int bad = 0;
    const uint32_t n = m->n, G = m->G, S = m->S;
    cq_cache *c = m_cache(m);
    cq_kvpool *p = m->p;
    cq_err e;
    if (cq_kvpool_check(p, &e)) {
        fprintf(stderr, "cq_kvpool_check: %s\n", e.msg);
        bad++;
    }
    for (uint32_t L = 0; L < NL; L++) {
        bad += cq_seq_tokens(m->s, L) != n;
        float *ck = malloc(((size_t)m->np + 1) * D * 4), *cv = malloc(((size_t)m->np + 1) * D * 4);
        float *expK[H], *expV[H], *a = malloc(((size_t)n + 1) * D * 4 * 2);
        for (uint32_t h = 0; h < H; h++) {
            expK[h] = malloc(((size_t)n + 1) * D * 4);
            expV[h] = malloc(((size_t)n + 1) * D * 4);
            bad += cq_cache_read(c, L, h, 0, m->np, ck, cv, NULL) != CQ_OK;
            for (uint32_t t = 0; t < n; t++) { /* the model's position map */
                const uint32_t ph = m_pos(m, t);
                memcpy(expK[h] + (size_t)t * D, ck + (size_t)ph * D, D * 4);
                memcpy(expV[h] + (size_t)t * D, cv + (size_t)ph * D, D * 4);
            }
            cq_status st = cq_seq_read(m->s, L, h, 0, n, a, a + (size_t)n * D, &e);
            bad += st || memcmp(a, expK[h], (size_t)n * D * 4) ||
                   memcmp(a + (size_t)n * D, expV[h], (size_t)n * D * 4);
            for (int k = 0; k < 4 && n; k++) { /* ranges, K or V alone */
                uint32_t t0 = cq_rng_below(r, n), t1 = t0 + cq_rng_below(r, n - t0 + 1);
                const int role = cq_rng_below(r, 2);
                st = cq_seq_read(m->s, L, h, t0, t1, role ? NULL : a, role ? a : NULL, NULL);
                bad += st || memcmp(a, (role ? expV[h] : expK[h]) + (size_t)t0 * D,
                                    (size_t)(t1 - t0) * D * 4);
            }
            bad += cq_seq_read(m->s, L, h, 0, n + 1, a, NULL, NULL) != CQ_ERR_RANGE;
            for (int role = 0; role < 2; role++) { /* the blocks' bytes as held */
                size_t la = 0, lb = 0;
                cq_seq_export(m->s, L, h, (cq_role)role, NULL, 0, &la, NULL);
                cq_cache_export(c, L, h, (cq_role)role, NULL, 0, &lb, NULL);
                uint8_t *ea = malloc(la + 1), *eb = malloc(lb + 1);
                cq_status s1 = cq_seq_export(m->s, L, h, (cq_role)role, ea, la, &la, NULL);
                cq_status s2 = cq_cache_export(c, L, h, (cq_role)role, eb, lb, &lb, NULL);
                bad += s1 || s2 || la != lb || memcmp(ea, eb, la) != 0;
                free(ea), free(eb);
            }
        }
        if (attend) bad += check_attn(m, other, L, expK, expV, r);
        for (uint32_t h = 0; h < H; h++) free(expK[h]), free(expV[h]);
        free(ck), free(cv), free(a);
    }
    cq_seq_mem sm;
    cq_seq_memory(m->s, &sm);
    const uint32_t blocks = m->np == 0 ? 0 : m->np <= S ? 1 : (m->np - S + G - 1) / G;
    const uint64_t T = n > S ? n - S : 0;
    bad += sm.tokens != n || sm.blocks != blocks ||
           sm.slack != ((uint64_t)blocks * G - T) * cq_kvpool_block_bytes(p) / G;
    cq_cache_free(c);
    return bad;
}

/* ------------------------------------------------------------ tests */

static uint32_t rd_all(const cq_seq *s, uint32_t n, float *out) { /* [NL][H][K, V][n][D] */
    uint32_t bad = 0;
    for (uint32_t L = 0; L < NL; L++)
        for (uint32_t h = 0; h < H; h++) {
            float *o = out + (size_t)(L * H + h) * 2 * n * D;
            bad += cq_seq_read(s, L, h, 0, n, o, o + (size_t)n * D, NULL) != CQ_OK;
        }
    return bad;
}

/* The first n tokens of every (layer, head) alike in got and all (read by rd_all with
 * lengths Ng and N). */
static int prefix_equal(const float *got, uint32_t Ng, uint32_t n, const float *all, uint32_t N) {
    int bad = 0;
    for (uint32_t i = 0; i < NL * H; i++) {
        const float *g = got + (size_t)i * 2 * Ng * D, *w = all + (size_t)i * 2 * N * D;
        bad += memcmp(g, w, (size_t)n * D * 4) != 0;
        bad += memcmp(g + (size_t)Ng * D, w + (size_t)N * D, (size_t)n * D * 4) != 0;
    }
    return bad;
}

/* The scenario of the issue: a long sequence cut inside a committed group, then appended. */
static void test_cut(const fmt *f, uint32_t G, uint32_t S, uint32_t b, uint32_t k, int shared) {
    cq_rng r;
    cq_rng_seed(&r, 100 + G * 7 + S * 3 + b * 11 + k + shared);
    cq_kvpool *p = make_pool(f, G, S, 1ull << 30);
    model m = m_new(p, f, G, S);
    const uint32_t len = S + 4 * G + G / 3, n = S + b * G + k, X = 2 * G + 5;
    int bad = 0;
    m_append(&m, &r, len, NULL, NULL);
    float *before = malloc((size_t)NL * H * 2 * len * D * 4);
    float *got = malloc((size_t)NL * H * 2 * (len + X) * D * 4);
    bad += rd_all(m.s, len, before);
    model o = {0};
    float *obefore = NULL;
    if (shared) {
        o = m_fork(&m);
        obefore = malloc((size_t)NL * H * 2 * len * D * 4);
        bad += rd_all(o.s, len, obefore);
    }
    cq_kvpool_mem m0, m1;
    cq_kvpool_memory(p, &m0);
    const int part = m_truncate(&m, n);
    CHECK(part, "%s: the cut at %u makes a partial block", f->name, n);
    cq_kvpool_memory(p, &m1);
    if (shared) /* nothing copied; the fork holds every committed block, only the source's
                 * own open block (the fork copied it) is freed */
        bad += m1.prefix.live_blocks != m0.prefix.live_blocks - 1 ||
               m1.referenced != m0.referenced - cq_kvpool_block_bytes(p);
    else /* the blocks after the partial one are freed */
        bad += m1.prefix.live_blocks != b + 1;
    /* the kept tokens read back as before the cut */
    bad += rd_all(m.s, n, got) + prefix_equal(got, n, n, before, len);
    bad += check(&m, shared ? o.s : NULL, &r, 1);
    /* appended tokens: a fresh stream from n (a cache without sinks fed them alone) */
    uint16_t *xk[NL], *xv[NL];
    for (uint32_t L = 0; L < NL; L++) {
        xk[L] = malloc((size_t)X * H * D * 2);
        xv[L] = malloc((size_t)X * H * D * 2);
    }
    CHECK(m_append(&m, &r, X, xk, xv) == CQ_OK, "%s: append after the cut", f->name);
    cq_cache *fresh = make_cache(f, G, 0);
    for (uint32_t L = 0; L < NL; L++) cq_cache_append(fresh, L, xk[L], xv[L], X, NULL);
    bad += rd_all(m.s, n + X, got);
    bad += prefix_equal(got, n + X, n, before, len);
    float *fr = malloc((size_t)X * D * 4 * 2);
    for (uint32_t L = 0; L < NL; L++)
        for (uint32_t h = 0; h < H; h++) {
            bad += cq_cache_read(fresh, L, h, 0, X, fr, fr + (size_t)X * D, NULL) != CQ_OK;
            const float *g = got + (size_t)(L * H + h) * 2 * (n + X) * D;
            bad += memcmp(g + (size_t)n * D, fr, (size_t)X * D * 4) != 0;
            bad += memcmp(g + (size_t)(2 * n + X) * D, fr + (size_t)X * D, (size_t)X * D * 4) != 0;
        }
    bad += check(&m, shared ? o.s : NULL, &r, 1);
    if (shared) { /* the fork is unchanged */
        bad += rd_all(o.s, len, got) + prefix_equal(got, len, len, obefore, len);
        bad += check(&o, m.s, &r, 1);
    }
    /* publish: the blocks before the partial one only (an adopter gets those) */
    const uint32_t nt = m.n;
    uint32_t *tok = malloc((size_t)nt * sizeof *tok);
    for (uint32_t i = 0; i < nt; i++) tok[i] = 1000 + i;
    cq_err e;
    CHECK(cq_seq_publish(m.s, tok, nt, &e) == CQ_OK, "%s: publish: %s", f->name, e.msg);
    cq_seq *ad = NULL;
    uint32_t adopted = 99;
    cq_seq_create(p, &ad, NULL);
    CHECK(cq_seq_adopt_prefix(ad, tok, nt, &adopted, &e) == CQ_OK, "%s: adopt: %s", f->name, e.msg);
    CHECK(adopted == (b ? S + b * G : 0), "%s: %u tokens adopted, the partial block is at %u",
          f->name, adopted, b);
    cq_seq_free(ad);
    bad += check(&m, NULL, &r, 0);
    /* save refuses a sequence with a partial block, writes nothing */
    char path[64];
    snprintf(path, sizeof path, "/tmp/cq_trunc_%d.cqs", (int)getpid());
    unlink(path);
    CHECK(cq_kvpool_save_seq(m.s, tok, nt, path, &e) == CQ_ERR_UNSUPPORTED &&
              access(path, F_OK) != 0,
          "%s: save of a partial block", f->name);
    free(tok);
    /* cut inside the partial block's kept tokens, then append */
    if (k > 1) {
        const uint32_t n2 = S + b * G + k / 2;
        m_truncate(&m, n2);
        bad += rd_all(m.s, n2, got) + prefix_equal(got, n2, n2, before, len);
        bad += check(&m, NULL, &r, 1);
        m_append(&m, &r, G + 7, NULL, NULL);
        bad += check(&m, NULL, &r, 1);
        /* a second partial block in the new groups (5 tokens into the first new group) */
        const int p2 = m_truncate(&m, n2 + 5);
        CHECK(p2 && m.npart == 2, "%s: a second partial block", f->name);
        bad += check(&m, NULL, &r, 1);
        m_append(&m, &r, 2 * G, NULL, NULL);
        bad += check(&m, NULL, &r, 1);
        /* a fork shares both; cutting the fork inside the first changes nothing of m */
        model fk = m_fork(&m);
        bad += check(&fk, m.s, &r, 1);
        cq_kvpool_memory(p, &m0);
        m_truncate(&fk, S + b * G + 1);
        cq_kvpool_memory(p, &m1);
        bad += m1.prefix.live_blocks != m0.prefix.live_blocks; /* no copy */
        bad += check(&fk, m.s, &r, 1) + check(&m, fk.s, &r, 1);
        m_append(&fk, &r, G, NULL, NULL);
        bad += check(&fk, m.s, &r, 1) + check(&m, fk.s, &r, 1);
        m_free(&fk);
    }
    /* back to a border and into the sinks: no partial block left */
    m_truncate(&m, S + G);
    bad += check(&m, NULL, &r, 0);
    m_truncate(&m, S ? S - 1 : 0);
    bad += m.npart != 0 || check(&m, NULL, &r, 0);
    CHECK(bad == 0, "%s G=%u S=%u cut at block %u + %u%s: %d differences", f->name, G, S, b, k,
          shared ? " (shared)" : "", bad);
    for (uint32_t L = 0; L < NL; L++) free(xk[L]), free(xv[L]);
    free(before), free(got), free(obefore), free(fr);
    cq_cache_free(fresh);
    m_free(&m);
    if (shared) m_free(&o);
    cq_kvpool_mem pm;
    cq_kvpool_memory(p, &pm);
    CHECK(pm.prefix.referenced_blocks == 0 && pm.n_seqs == 0, "%s: blocks left", f->name);
    cq_kvpool_free(p);
}

/* A budget refusal after a cut changes nothing; the exact need is admitted. */
static void test_budget(const fmt *f, uint32_t G, uint32_t S) {
    cq_rng r;
    cq_rng_seed(&r, 900 + G + S);
    const uint32_t len = S + 4 * G + 3, n = S + G + G / 2;
    uint64_t need = 0;
    { /* the bytes of len tokens from empty */
        cq_kvpool *q = make_pool(f, G, S, 1ull << 30);
        cq_seq *s = NULL;
        cq_seq_create(q, &s, NULL);
        cq_seq_append_need(s, len, &need, NULL);
        cq_seq_free(s);
        cq_kvpool_free(q);
    }
    cq_kvpool *p = make_pool(f, G, S, need);
    model m = m_new(p, f, G, S);
    CHECK(m_append(&m, &r, len, NULL, NULL) == CQ_OK, "%s: the budget admits %u tokens", f->name,
          len);
    m_truncate(&m, n); /* keeps blocks 0 and 1 (partial): 3 blocks and the tail free */
    int bad = check(&m, NULL, &r, 0);
    cq_kvpool_mem m0, m1;
    cq_seq_mem s0, s1;
    cq_kvpool_memory(p, &m0);
    cq_seq_memory(m.s, &s0);
    uint64_t nd = 0;
    cq_seq_append_need(m.s, 3 * G + 1, &nd, NULL);
    uint16_t *k = calloc((size_t)(3 * G + 1) * H * D, 2);
    cq_err e;
    cq_status st = cq_seq_append(m.s, 0, k, k, 3 * G + 1, &e); /* a fourth block: refused */
    CHECK(st == CQ_ERR_BUDGET, "%s: append past the budget after a cut: %d", f->name, (int)st);
    cq_kvpool_memory(p, &m1);
    cq_seq_memory(m.s, &s1);
    bad += m0.total != m1.total || m0.referenced != m1.referenced || m0.tails != m1.tails ||
           m0.prefix.live_blocks != m1.prefix.live_blocks || s0.blocks != s1.blocks ||
           s0.slack != s1.slack || s0.tokens != s1.tokens || s0.private_bytes != s1.private_bytes;
    bad += check(&m, NULL, &r, 1);
    CHECK(m_append(&m, &r, 3 * G, NULL, NULL) == CQ_OK, "%s: 3 blocks fit", f->name);
    bad += check(&m, NULL, &r, 1);
    CHECK(bad == 0, "%s G=%u S=%u: budget after a cut: %d differences", f->name, G, S, bad);
    free(k);
    m_free(&m);
    cq_kvpool_free(p);
}

/* Random appends, cuts (anywhere), forks and frees against the model. */
#define MAXS 4
static void test_random(const fmt *f, uint32_t G, uint32_t S, uint64_t seed) {
    cq_rng r;
    cq_rng_seed(&r, seed);
    cq_kvpool *p = make_pool(f, G, S, 1ull << 30);
    model ms[MAXS] = {{0}};
    int bad = 0, parts = 0;
    for (int it = 0; it < 80; it++) {
        const uint32_t i = cq_rng_below(&r, MAXS), op = cq_rng_below(&r, 10);
        model *m = &ms[i];
        if (!m->s) {
            *m = m_new(p, f, G, S);
        } else if (op == 0) {
            m_free(m);
        } else if (op <= 1) {
            uint32_t j = 0;
            while (j < MAXS && ms[j].s) j++;
            if (j < MAXS) ms[j] = m_fork(m);
        } else if (op <= 5) {
            m_append(m, &r, 1 + cq_rng_below(&r, 2 * G), NULL, NULL);
        } else if (m->npart < MAXP - 1) {
            parts += m_truncate(m, cq_rng_below(&r, m->n + 1));
        }
        for (uint32_t k = 0; k < MAXS; k++)
            if (ms[k].s) bad += check(&ms[k], NULL, &r, it % 4 == 0);
    }
    for (uint32_t k = 0; k < MAXS; k++) m_free(&ms[k]);
    CHECK(bad == 0 && parts > 0, "%s G=%u S=%u: %d mismatches in random operations (%d partial "
          "blocks made)", f->name, G, S, bad, parts);
    cq_kvpool_mem pm;
    cq_kvpool_memory(p, &pm);
    CHECK(pm.prefix.referenced_blocks == 0 && pm.n_seqs == 0, "%s: blocks left", f->name);
    cq_kvpool_free(p);
}

int main(void) {
    for (size_t i = 0; i < NFMTS; i++) {
        const fmt *f = &FMTS[i];
        const uint32_t Gs[2] = {32, 128}, Ss[2] = {0, 3};
        for (int gi = 0; gi < 2; gi++)
            for (int si = 0; si < 2; si++) {
                const uint32_t G = Gs[gi], S = Ss[si];
                test_cut(f, G, S, 2, G / 2, 0);
                test_cut(f, G, S, 2, G / 2, 1);
                test_cut(f, G, S, 0, 1, gi == 0);
                test_cut(f, G, S, 3, G - 1, gi == 1);
                test_budget(f, G, S);
            }
        test_random(f, 32, 0, 7000 + i);
        test_random(f, 32, 2, 7100 + i);
    }
    CHECK(g_worst[CQ_ATTN_EXACT] <= 1e-4 && g_worst[CQ_ATTN_FAST] <= 0.1,
          "against the double reference: exact %.3g, fast %.3g", g_worst[CQ_ATTN_EXACT],
          g_worst[CQ_ATTN_FAST]);
    return cq_test_done("test_serve_trunc");
}
