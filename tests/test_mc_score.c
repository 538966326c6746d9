/* SPDX-License-Identifier: MIT */
/*
 * test_mc_score.c - multiple-choice scoring in the library (src/eval/mc_score.c):
 * the log-probability against a direct double computation, the lm-eval pair
 * encoding (context tokens, then the joint tokenization's continuation; left
 * truncation keeping BOS; refusals), and cq_mc_score against an independent
 * loop over the model runtime (same choices, counts and the reference's 32
 * bits), plus a cache format in the row layout (q4_0 at head_dim 8) running.
 * Needs stories260K under CQ_SHARED for the model parts (skipped without).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "channelquant.h"
#include "cq_eval.h"
#include "cq_test.h"

static void test_logprob(void) {
    const float l[4] = {1.0f, 2.0f, 3.0f, -1.0f};
    double z = exp(1.0) + exp(2.0) + exp(3.0) + exp(-1.0);
    for (int t = 0; t < 4; t++)
        CHECK(fabs(cq_mc_logprob(l, 4, t) - ((double)l[t] - log(z))) < 1e-12, "logprob %d", t);
    const float big[3] = {1000.0f, 1001.0f, 999.0f}; /* no overflow */
    double zb = exp(-1.0) + 1.0 + exp(-2.0);
    CHECK(fabs(cq_mc_logprob(big, 3, 1) - (-log(zb))) < 1e-12, "logprob of large logits");
}

static size_t enc(const cq_tokenizer *tok, const char *s, int32_t *out, size_t cap) {
    size_t n = 0;
    cq_err e;
    if (cq_tokenizer_encode(tok, s, strlen(s), cq_tokenizer_add_bos(tok), out, cap, &n, &e)) return 0;
    return n;
}

static void test_prepare(const cq_tokenizer *tok) {
    const char *ctx = "Once upon a time, there was a little girl.", *end = " She liked to run.";
    int32_t tc[256], tw[256];
    size_t nc = enc(tok, ctx, tc, 256);
    char joint[256];
    snprintf(joint, sizeof joint, "%s%s", ctx, end);
    size_t nw = enc(tok, joint, tw, 256);
    cq_mc_seq q;
    cq_err e;
    CHECK(cq_mc_prepare(tok, ctx, end, 512, &q, &e) == CQ_OK, "prepare: %s", e.msg);
    CHECK(q.cont == nc && q.n == nw && !q.retok, "cont %u = %zu, n %u = %zu", q.cont, nc, q.n, nw);
    int ok = 1;
    for (uint32_t i = 0; i < q.n && q.n == nw; i++) ok &= q.in[i] == (i < nc ? tc[i] : tw[i]);
    CHECK(ok, "tokens: the context's, then the joint continuation");
    /* too long: the oldest context tokens after BOS go */
    uint32_t ml = q.n - 3;
    cq_mc_seq t;
    CHECK(cq_mc_prepare(tok, ctx, end, ml, &t, &e) == CQ_OK && t.n == ml && t.cont == q.cont - 3 &&
              t.in[0] == q.in[0] && memcmp(t.in + 1, q.in + 4, (ml - 1) * sizeof *t.in) == 0,
          "left truncation keeps BOS");
    cq_mc_seq_free(&t);
    CHECK(cq_mc_prepare(tok, ctx, end, 2, &t, &e) == CQ_ERR_RANGE && !t.in, "ending too long");
    /* an empty ending: the harness still scores one token (the context's last), flagged */
    CHECK(cq_mc_prepare(tok, ctx, "", 512, &t, &e) == CQ_OK && t.n == nc && t.cont == nc - 1 &&
              t.retok, "empty ending: one token, retok");
    cq_mc_seq_free(&t);
    CHECK(cq_mc_prepare(tok, "", "", 512, &t, &e) == CQ_ERR_ARG && !t.in, "nothing to score");
    CHECK(cq_mc_prepare(NULL, ctx, end, 512, &t, &e) == CQ_ERR_NULL, "NULL tokenizer");
    cq_mc_seq_free(&q);
    cq_mc_seq_free(NULL);
}

/* The independent loop: each ending through a fresh fp32 reference session. */
static void direct(const cq_model *m, const cq_tokenizer *tok, const cq_mc_set *set,
                   uint32_t *choice, uint32_t *choice_norm) {
    const cq_model_config *c = cq_model_get_config(m);
    uint32_t longest = 16;
    for (size_t i = 0; i < set->n; i++)
        for (uint32_t j = 0; j < set->items[i].n_endings; j++) {
            cq_mc_seq q;
            if (cq_mc_prepare(tok, set->items[i].context, set->items[i].endings[j], c->max_seq_len, &q, NULL) == CQ_OK && q.n > longest)
                longest = q.n;
            cq_mc_seq_free(&q);
        }
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.mode = CQ_KV_REFERENCE;
    so.n_threads = 1;
    so.max_tokens = so.batch = longest;
    float *logits = malloc((size_t)longest * c->vocab_size * sizeof *logits);
    for (size_t i = 0; i < set->n; i++) {
        double best = -INFINITY, best_n = -INFINITY;
        for (uint32_t j = 0; j < set->items[i].n_endings; j++) {
            cq_mc_seq q;
            cq_session *s = NULL;
            cq_err e;
            double ll = 0;
            if (cq_mc_prepare(tok, set->items[i].context, set->items[i].endings[j], c->max_seq_len, &q, &e) ||
                cq_session_create(m, &so, &s, &e) || cq_session_forward(s, q.in, q.n, logits, 0, &e)) {
                CHECK(0, "direct scoring: %s", e.msg);
            } else {
                for (uint32_t t = q.cont; t < q.n; t++) {
                    const float *lg = logits + (size_t)(t - 1) * c->vocab_size;
                    double mx = -INFINITY, z = 0;
                    for (uint32_t v = 0; v < c->vocab_size; v++) mx = lg[v] > mx ? lg[v] : mx;
                    for (uint32_t v = 0; v < c->vocab_size; v++) z += exp((double)lg[v] - mx);
                    ll += (double)lg[q.in[t]] - mx - log(z);
                }
            }
            cq_session_free(s);
            cq_mc_seq_free(&q);
            double lln = ll / (double)strlen(set->items[i].endings[j]);
            if (ll > best) best = ll, choice[i] = j;
            if (lln > best_n) best_n = lln, choice_norm[i] = j;
        }
    }
    free(logits);
}

static void test_score(const cq_model *m, const cq_tokenizer *tok) {
    static const char *text =
        "Tom had a big red ball. He liked to play with it in the park. One day the ball went "
        "into the pond. Tom asked his dad to help him get it back.\n\n"
        "Lily saw a small cat under a tree. The cat was cold and hungry. Lily gave the cat some "
        "milk. The cat purred and followed Lily home.\n\n"
        "Ben wanted to build a tall tower. He used all his blocks. The tower fell down with a loud "
        "noise. Ben laughed and started to build it again.\n\n"
        "Sue went to the beach with her mom. They made a sand castle by the sea. A big wave came "
        "and took the castle away. Sue was sad but her mom gave her a hug.\n\n"
        "Max found a shiny stone in the garden. He showed it to his sister. She said it was the "
        "best stone she had ever seen. Max put it in his pocket to keep it safe.\n";
    cq_mc_set set;
    cq_err e;
    CHECK(cq_mc_build_cloze(text, strlen(text), 0, 1, &set, &e) == CQ_OK && set.n == 5,
          "cloze set: %s", e.msg);
    if (set.n != 5) return;
    uint32_t choice[5] = {0}, choice_norm[5] = {0};
    direct(m, tok, &set, choice, choice_norm);
    cq_kv_format f;
    cq_kv_format_parse("fp32", &f, &e);
    cq_mc_opts o;
    memset(&o, 0, sizeof o);
    o.threads = 1;
    cq_mc_result r;
    CHECK(cq_mc_score(m, tok, &set, &f, &o, &r, &e) == CQ_OK, "score fp32: %s", e.msg);
    uint64_t correct = 0, correct_norm = 0;
    int same = 1;
    for (size_t i = 0; i < set.n; i++) {
        correct += choice[i] == set.items[i].label;
        correct_norm += choice_norm[i] == set.items[i].label;
        same &= r.choice_norm[i] == choice_norm[i] &&
                r.right_norm[i] == (choice_norm[i] == set.items[i].label);
    }
    CHECK(r.n == 5 && r.correct == correct && r.correct_norm == correct_norm && same,
          "cq_mc_score = the direct loop (acc %llu/%llu, acc_norm %llu/%llu)",
          (unsigned long long)r.correct, (unsigned long long)correct,
          (unsigned long long)r.correct_norm, (unsigned long long)correct_norm);
    CHECK(r.bits_per_value == 32.0 && r.bits_no_slack == 32.0, "reference: 32 bits");
    CHECK(r.correct_norm >= 3, "the model gets most of these easy items (%llu/5)",
          (unsigned long long)r.correct_norm);
    cq_mc_result_free(&r);
    cq_mc_result_free(&r);  /* idempotent */
    /* caches: fp16 agrees with the reference here; q4_0 runs in the row layout (4 heads x 8) */
    const char *fmts[] = {"fp16/fp16", "q4_0", "kivi-4"};
    for (int k = 0; k < 3; k++) {
        cq_kv_format_parse(fmts[k], &f, &e);
        cq_status st = cq_mc_score(m, tok, &set, &f, &o, &r, &e);
        CHECK(st == CQ_OK && r.n == 5 && r.bits_per_value > 4.0 && r.bits_per_value < 100.0 &&
                  r.bits_no_slack <= r.bits_per_value,
              "%s: scored, %.3f bits (%s)", fmts[k], st ? 0.0 : r.bits_per_value, e.msg);
        if (!st && k == 0) {
            int agree = 1;
            for (size_t i = 0; i < set.n; i++) agree &= r.choice_norm[i] == choice_norm[i];
            CHECK(agree, "fp16 cache: the reference's choices");
        }
        if (!st) cq_mc_result_free(&r);
    }
    CHECK(cq_mc_score(NULL, tok, &set, &f, &o, &r, &e) == CQ_ERR_NULL, "NULL model");
    cq_mc_free(&set);
}

int main(void) {
    test_logprob();
    char mpath[1024], tpath[1024];
    snprintf(mpath, sizeof mpath, "%s/models/stories260K/stories260K.bin", cq_test_shared());
    snprintf(tpath, sizeof tpath, "%s/models/stories260K/tok512.bin", cq_test_shared());
    cq_model *m = NULL;
    cq_tokenizer *tok = NULL;
    if (cq_model_load(mpath, &m, NULL) || cq_tokenizer_load_llama2c(tpath, 512, &tok, NULL)) {
        printf("test_mc_score: no stories260K under %s: model parts skipped\n", cq_test_shared());
    } else {
        test_prepare(tok);
        test_score(m, tok);
    }
    cq_model_free(m);
    cq_tokenizer_free(tok);
    return cq_test_done("test_mc_score");
}
