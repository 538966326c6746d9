/* SPDX-License-Identifier: MIT */
/*
 * test_batch.c - the batch session (include/cq_batch.h) on stories260K (a real tiny
 * model, ../shared/models):
 *   - prefix adoption: a prompt that adopts the cached blocks of an earlier prompt's
 *     prefix gets the same logits, bit for bit, as a full prefill of it in a pool of its
 *     own (one chunk), and as a prefill in chunks of one block (max_batch = S + G), at
 *     the first and every later sampled token;
 *   - batched == alone: the token ids of several prompts (a shared prefix, different
 *     lengths, so sequences join and leave at different steps) run in one batch session
 *     (2 threads, small max_batch) equal each prompt run alone (1 thread, no prefix
 *     cache), for fp16/fp16, cq4/cq4 (with and without sinks) and cq4+/cq4 (a random
 *     top-2 key mask: any mask is a valid CQ-4+ configuration);
 *   - preemption under a small budget keeps the tokens identical, and the pool is
 *     consistent (cq_kvpool_check) with no block referenced at the end;
 *   - the single-sequence session with prompt_blocks (the default: chunks on group
 *     borders, prefill attention for every prompt token) and pages of G tokens generates
 *     the batch session's tokens, with a session batch that does not divide G and a
 *     prompt whose last chunk is one token;
 *   - refusals: max_batch below one block, bad prompts.
 * Needs ../shared (skipped without it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_batch.h"
#include "cq_test.h"
#include "cq_util.h"
#include "util/cache_testutil.h"

#define V_MAX 512u
#define NGEN 6u

typedef struct fmt {
    const char *name;
    cq_codec_id k, v;
    uint32_t G, S, outl;
} fmt;

static uint8_t *g_masks;

static cq_cache_config make_cfg(const cq_model *m, const fmt *f) {
    const cq_model_config *c = cq_model_get_config(m);
    cq_cache_config cc;
    cq_cache_config_default(&cc, c->n_layers, c->n_kv_heads, c->head_dim);
    cc.key_codec = f->k;
    cc.val_codec = f->v;
    cc.group = f->G;
    cc.n_sinks = f->S;
    if (f->outl) {
        const size_t n = (size_t)c->n_layers * c->n_kv_heads;
        free(g_masks);
        g_masks = calloc(n * c->head_dim, 1);
        cq_rng r;
        cq_rng_seed(&r, 31);
        ctu_random_masks(&r, g_masks, (uint32_t)n, c->head_dim, f->outl);
        cc.outlier_masks = g_masks;
    }
    return cc;
}

/* logits captured per (request, index) */
typedef struct capture {
    uint32_t id;
    float lg[NGEN][V_MAX];
    uint32_t got;
} capture;

static void on_logits(void *user, uint32_t id, uint32_t index, const float *logits) {
    capture *c = user;
    if (id != c->id || index >= NGEN) return;
    memcpy(c->lg[index], logits, sizeof c->lg[index]);
    c->got |= 1u << index;
}

static cq_batch *make_batch(const cq_model *m, const cq_cache_config *cc, uint32_t max_batch,
                            uint32_t threads, int no_prefix, uint64_t budget, capture *cap) {
    cq_batch_opts o;
    cq_batch_opts_default(&o);
    o.cache = cc;
    o.max_batch = max_batch;
    o.n_threads = threads;
    o.no_prefix_cache = no_prefix;
    o.budget_bytes = budget;
    if (cap) {
        o.on_logits = on_logits;
        o.logits_user = cap;
    }
    cq_batch *b = NULL;
    cq_err e;
    cq_err_clear(&e);
    cq_status st = cq_batch_create(m, &o, &b, &e);
    CHECK(st == CQ_OK, "batch create: %s", e.msg);
    return b;
}

static int run_all(cq_batch *b) {
    cq_err e;
    cq_err_clear(&e);
    int steps = 0;
    while (cq_batch_unfinished(b)) {
        cq_status st = cq_batch_step(b, NULL, &e);
        if (st) {
            fprintf(stderr, "step: %s\n", e.msg);
            return -1;
        }
        if (cq_kvpool_check(cq_batch_kvpool(b), &e)) {
            fprintf(stderr, "pool check: %s\n", e.msg);
            return -1;
        }
        if (++steps > 100000) return -1;
    }
    return 0;
}

/* prompt i: the shared prefix of `pre` tokens, then its own tokens (`len` in all) */
static void make_prompt(int32_t *p, uint32_t len, uint32_t pre, uint32_t salt) {
    cq_rng r;
    cq_rng_seed(&r, 1000);
    for (uint32_t t = 0; t < len; t++) {
        if (t == pre) cq_rng_seed(&r, 2000 + salt);
        p[t] = t == 0 ? 1 : (int32_t)(3 + cq_rng_u64(&r) % 500);
    }
}

static void test_adoption_logits(const cq_model *m) {
    const fmt f = {"cq4/cq4 G 32 S 4", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 32, 4, 0};
    cq_cache_config cc = make_cfg(m, &f);
    int32_t p1[120], p2[110];
    make_prompt(p1, 120, 120, 0);
    make_prompt(p2, 110, 100, 7); /* shares 100 tokens with p1: S + 3 G = 100 adoptable */
    static capture ca, cb, cc2;
    ca.id = 1, cb.id = 0, cc2.id = 0;
    ca.got = cb.got = cc2.got = 0;
    uint32_t id;
    cq_err e;
    cq_err_clear(&e);
    /* (a) p1 first (publishes its blocks), then p2 adopts */
    cq_batch *a = make_batch(m, &cc, 256, 2, 0, 0, &ca);
    CHECK(cq_batch_submit(a, p1, 120, 1, &id, &e) == CQ_OK && id == 0, "submit p1: %s", e.msg);
    CHECK(run_all(a) == 0, "p1 ran");
    CHECK(cq_batch_submit(a, p2, 110, NGEN, &id, &e) == CQ_OK && id == 1, "submit p2: %s", e.msg);
    CHECK(run_all(a) == 0, "p2 ran");
    cq_batch_stats st;
    cq_batch_stats_get(a, &st);
    CHECK(st.adopted_tokens == 100, "p2 adopted %llu tokens, expected S + 3 G = 100",
          (unsigned long long)st.adopted_tokens);
    /* (b) p2 alone, one chunk; (c) p2 alone in chunks of one block */
    cq_batch *b = make_batch(m, &cc, 256, 1, 1, 0, &cb);
    CHECK(cq_batch_submit(b, p2, 110, NGEN, &id, &e) == CQ_OK, "submit: %s", e.msg);
    CHECK(run_all(b) == 0, "p2 alone ran");
    cq_batch *c = make_batch(m, &cc, 36, 2, 1, 0, &cc2);
    CHECK(cq_batch_submit(c, p2, 110, NGEN, &id, &e) == CQ_OK, "submit: %s", e.msg);
    CHECK(run_all(c) == 0, "p2 in chunks ran");
    cq_batch_stats_get(c, &st);
    CHECK(st.steps >= 4 + NGEN - 1, "chunked prefill took %llu steps", (unsigned long long)st.steps);
    const uint32_t all = (1u << NGEN) - 1;
    CHECK(ca.got == all && cb.got == all && cc2.got == all, "logits captured %x %x %x", ca.got,
          cb.got, cc2.got);
    const size_t V = cq_model_get_config(m)->vocab_size;
    int bad_ab = 0, bad_bc = 0;
    for (uint32_t i = 0; i < NGEN; i++) {
        bad_ab += memcmp(ca.lg[i], cb.lg[i], V * sizeof(float)) != 0;
        bad_bc += memcmp(cb.lg[i], cc2.lg[i], V * sizeof(float)) != 0;
    }
    CHECK(bad_ab == 0, "adopted prefix: %d of %u logit rows differ from a full prefill", bad_ab, NGEN);
    CHECK(bad_bc == 0, "block-border chunks: %d of %u logit rows differ from one chunk", bad_bc, NGEN);
    cq_batch_free(a);
    cq_batch_free(b);
    cq_batch_free(c);
}

#define NP 5
static const uint32_t LENS[NP] = {130, 97, 7, 160, 101};
static const uint32_t GENS[NP] = {NGEN, 3, NGEN + 4, 2, NGEN};

/* Several prompts in one session against each alone; returns the preemptions seen. */
static uint64_t batched_vs_alone(const cq_model *m, const fmt *f, uint32_t max_batch,
                                 uint64_t budget) {
    cq_cache_config cc = make_cfg(m, f);
    int32_t p[NP][160];
    for (uint32_t i = 0; i < NP; i++) make_prompt(p[i], LENS[i], 90, i);
    cq_batch *b = make_batch(m, &cc, max_batch, 2, 0, budget, NULL);
    cq_err e;
    cq_err_clear(&e);
    uint32_t id;
    for (uint32_t i = 0; i < NP; i++)
        CHECK(cq_batch_submit(b, p[i], LENS[i], GENS[i], &id, &e) == CQ_OK, "%s: submit: %s", f->name, e.msg);
    CHECK(run_all(b) == 0, "%s: the batch ran", f->name);
    cq_batch_stats st;
    cq_batch_stats_get(b, &st);
    CHECK(st.peak_seqs >= 2, "%s: %u sequences live at once", f->name, st.peak_seqs);
    cq_kvpool_mem mem;
    cq_kvpool_memory(cq_batch_kvpool(b), &mem);
    CHECK(mem.referenced == 0 && mem.tails == 0 && mem.n_seqs == 0,
          "%s: every sequence freed at the end (referenced %llu, tails %llu)", f->name,
          (unsigned long long)mem.referenced, (unsigned long long)mem.tails);
    CHECK(mem.prefix.hits > 0, "%s: prefix hits", f->name);
    /* the steps of each request: admitted, then a first token, within the run; the
     * prompts queue in order, so their first admissions do not go backwards */
    uint64_t prev_adm = 0;
    for (uint32_t i = 0; i < NP; i++) {
        uint64_t adm = 0, first = 0;
        CHECK(cq_batch_request_steps(b, i, &adm, &first, &e) == CQ_OK, "request steps: %s", e.msg);
        CHECK(adm >= 1 && first >= adm && first <= st.steps && adm >= prev_adm,
              "%s: prompt %u admitted at step %llu, first token at %llu (%llu steps)", f->name, i,
              (unsigned long long)adm, (unsigned long long)first, (unsigned long long)st.steps);
        prev_adm = adm;
    }
    CHECK(cq_batch_request_steps(b, NP, NULL, NULL, &e) == CQ_ERR_RANGE, "request steps: no request");
    int bad = 0;
    for (uint32_t i = 0; i < NP; i++) {
        cq_batch *a = make_batch(m, &cc, 256, 1, 1, 0, NULL);
        CHECK(cq_batch_submit(a, p[i], LENS[i], GENS[i], &id, &e) == CQ_OK, "submit: %s", e.msg);
        CHECK(run_all(a) == 0, "%s: prompt %u alone", f->name, i);
        const int32_t *ta, *tb;
        uint32_t na = 0, nb = 0;
        cq_batch_stop sa, sb;
        cq_batch_result(a, 0, &ta, &na, &sa, NULL);
        cq_batch_result(b, i, &tb, &nb, &sb, NULL);
        if (na != nb || sa != sb || memcmp(ta, tb, na * sizeof *ta)) {
            fprintf(stderr, "%s: prompt %u: batched %u tokens, alone %u\n", f->name, i, nb, na);
            bad++;
        }
        CHECK(na == GENS[i] && sa == CQ_BATCH_LENGTH, "%s: prompt %u generated %u", f->name, i, na);
        cq_batch_free(a);
    }
    CHECK(bad == 0, "%s: %d of %d prompts differ between the batch and alone", f->name, bad, NP);
    cq_batch_free(b);
    return st.preemptions;
}

/* greedy through cq_session (cq generate's path) */
static int session_greedy_prec(const cq_model *m, const cq_cache_config *cc, const int32_t *p,
                               uint32_t n, uint32_t batch, int32_t *out, uint32_t ng, uint32_t prec) {
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.attn_precision = prec;
    cq_cache_config c = *cc;
    c.page_tokens = cc->group; /* the pool's pages: attention runs with the same borders */
    so.mode = CQ_KV_CACHE;
    so.cache = &c;
    so.batch = batch;
    so.n_threads = 2;
    so.max_tokens = n + ng;
    cq_session *s = NULL;
    cq_err e;
    cq_err_clear(&e);
    const uint32_t V = cq_model_get_config(m)->vocab_size;
    float *lg = malloc((size_t)V * sizeof *lg);
    int rc = -1;
    if (!lg || cq_session_create(m, &so, &s, &e) || cq_session_forward(s, p, n, lg, 1, &e)) goto done;
    for (uint32_t i = 0; i < ng; i++) {
        int32_t b = 0;
        for (uint32_t v = 1; v < V; v++)
            if (lg[v] > lg[b]) b = (int32_t)v;
        out[i] = b;
        if (i + 1 < ng && cq_session_forward(s, &b, 1, lg, 1, &e)) goto done;
    }
    rc = 0;
done:
    if (rc) fprintf(stderr, "session: %s\n", e.msg);
    cq_session_free(s);
    free(lg);
    return rc;
}

static int session_greedy(const cq_model *m, const cq_cache_config *cc, const int32_t *p, uint32_t n,
                          uint32_t batch, int32_t *out, uint32_t ng) {
    return session_greedy_prec(m, cc, p, n, batch, out, ng, 0);
}

static void test_session_equals_batch(const cq_model *m) {
    const fmt f = {"cq4/cq4 G 32", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 32, 0, 0};
    cq_cache_config cc = make_cfg(m, &f);
    int32_t p[129], a[NGEN + 4];
    make_prompt(p, 129, 129, 3); /* 4 blocks and one token: a one-token last chunk */
    cq_batch *b = make_batch(m, &cc, 256, 1, 1, 0, NULL);
    uint32_t id;
    cq_err e;
    cq_err_clear(&e);
    CHECK(cq_batch_submit(b, p, 129, NGEN + 4, &id, &e) == CQ_OK, "submit: %s", e.msg);
    CHECK(run_all(b) == 0, "batch ran");
    const int32_t *t;
    uint32_t n = 0;
    cq_batch_result(b, 0, &t, &n, NULL, NULL);
    for (uint32_t batch = 24; batch <= 72; batch += 48) { /* raised to G = 32; 72 -> chunks of 64 */
        CHECK(session_greedy(m, &cc, p, 129, batch, a, NGEN + 4) == 0, "session ran");
        CHECK(n == NGEN + 4 && !memcmp(a, t, n * sizeof *a),
              "session (batch %u, prompt_blocks) tokens differ from the batch session's", batch);
    }
    cq_batch_free(b);
}

/* cq_batch_opts.attn_precision reaches the batch's attention: with EXACT and FAST the batch
 * gives the tokens of a session of the same precision (cq_session_opts.attn_precision), and
 * the two precisions' logits differ; a value that is neither is refused */
static void test_precision(const cq_model *m) {
    const fmt f = {"cq4/cq4 G 32", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 32, 0, 0};
    cq_cache_config cc = make_cfg(m, &f);
    int32_t p[129], a[NGEN];
    make_prompt(p, 129, 129, 5);
    static capture cap[2];
    const uint32_t prec[2] = {CQ_ATTN_EXACT, CQ_ATTN_FAST};
    for (int k = 0; k < 2; k++) {
        cq_batch_opts o;
        cq_batch_opts_default(&o);
        o.cache = &cc;
        o.no_prefix_cache = 1;
        o.attn_precision = prec[k];
        o.on_logits = on_logits;
        o.logits_user = &cap[k];
        memset(&cap[k], 0, sizeof cap[k]);
        cq_batch *b = NULL;
        cq_err e;
        uint32_t id;
        CHECK(cq_batch_create(m, &o, &b, &e) == CQ_OK, "create: %s", e.msg);
        CHECK(b && cq_batch_submit(b, p, 129, NGEN, &id, &e) == CQ_OK, "submit");
        cap[k].id = id;
        CHECK(b && run_all(b) == 0, "batch ran");
        const int32_t *t = NULL;
        uint32_t n = 0;
        if (b) cq_batch_result(b, id, &t, &n, NULL, NULL);
        CHECK(session_greedy_prec(m, &cc, p, 129, 72, a, NGEN, prec[k]) == 0, "session ran");
        CHECK(n == NGEN && t && !memcmp(a, t, n * sizeof *a),
              "precision %u: batch tokens differ from a session of the same precision", prec[k]);
        cq_batch_free(b);
    }
    CHECK(cap[0].got && cap[0].got == cap[1].got &&
              memcmp(cap[0].lg, cap[1].lg, sizeof cap[0].lg) != 0,
          "EXACT and FAST logits differ (the precision reached attention)");
    cq_batch_opts o;
    cq_batch_opts_default(&o);
    o.cache = &cc;
    o.attn_precision = 9;
    cq_batch *b = NULL;
    cq_err e;
    CHECK(cq_batch_create(m, &o, &b, &e) == CQ_ERR_ARG && !b, "attn_precision 9 refused");
}

static void test_refusals(const cq_model *m) {
    const fmt f = {"cq4/cq4", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 32, 4, 0};
    cq_cache_config cc = make_cfg(m, &f);
    cq_batch_opts o;
    cq_batch_opts_default(&o);
    o.cache = &cc;
    o.max_batch = 35; /* S + G = 36 */
    cq_batch *b = NULL;
    cq_err e;
    CHECK(cq_batch_create(m, &o, &b, &e) == CQ_ERR_ARG && !b, "max_batch below a block refused");
    o.max_batch = 36;
    o.max_seqs = 37;
    CHECK(cq_batch_create(m, &o, &b, &e) == CQ_ERR_ARG && !b, "max_seqs above max_batch refused");
    o.max_seqs = 0;
    CHECK(cq_batch_create(m, &o, &b, &e) == CQ_OK, "create: %s", e.msg);
    int32_t bad[3] = {1, 600, 2}, ok[2] = {1, 2};
    uint32_t id;
    CHECK(cq_batch_submit(b, bad, 3, 2, &id, &e) == CQ_ERR_RANGE, "token outside the vocabulary");
    CHECK(cq_batch_submit(b, ok, 0, 2, &id, &e) == CQ_ERR_RANGE, "empty prompt");
    CHECK(cq_batch_unfinished(b) == 0, "refused prompts are not queued");
    CHECK(cq_batch_step(b, NULL, &e) == CQ_OK, "an empty step does nothing");
    cq_batch_free(b);
}

int main(void) {
    char path[4200];
    snprintf(path, sizeof path, "%.4000s/models/stories260K/stories260K.bin", cq_test_shared());
    cq_model *m = NULL;
    cq_err e;
    cq_err_clear(&e);
    if (cq_model_load(path, &m, &e)) {
        printf("test_batch: skipped (%s)\n", e.msg);
        return cq_test_done("test_batch");
    }
    test_refusals(m);
    test_adoption_logits(m);
    test_precision(m);
    test_session_equals_batch(m);
    static const fmt F[] = {
        {"fp16/fp16 G 32", CQ_CODEC_FP16, CQ_CODEC_FP16, 32, 0, 0},
        {"cq4/cq4 G 32", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 32, 0, 0},
        {"cq4/cq4 G 32 S 4", CQ_CODEC_CQ4, CQ_CODEC_CQ4, 32, 4, 0},
        {"cq4+/cq4 G 32 (random top-2 mask)", CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 32, 0, 2},
    };
    for (size_t i = 0; i < sizeof F / sizeof F[0]; i++) (void)batched_vs_alone(m, &F[i], 48, 0);
    /* a budget below what the five sequences hold at once: the youngest is preempted */
    uint64_t pre = batched_vs_alone(m, &F[1], 48, 80000);
    printf("budget 80000 bytes: %llu preemptions\n", (unsigned long long)pre);
    CHECK(pre > 0, "a small budget preempted %llu times", (unsigned long long)pre);
    free(g_masks);
    cq_model_free(m);
    return cq_test_done("test_batch");
}
