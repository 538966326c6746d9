/* SPDX-License-Identifier: MIT */
/*
 * mc_score.c - multiple-choice scoring with a compressed KV cache (EVAL.md
 * section 2, lm-eval-harness definitions): the (context, ending) token pair
 * of an item, the log-probability of a token under logits, and one K/V
 * format scored over a whole item set through the model runtime (acc,
 * acc_norm, the per-item acc_norm choices for agreement / McNemar, and the
 * measured cache bits). Declared in include/cq_eval.h. Not here: item sets
 * (mc.c), statistics (stats.c), printing (tools/cmd_eval_mc.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"
#include "eval_internal.h"


static cq_status encode_alloc(const cq_tokenizer *tok, const char *s, int bos, int32_t **out,
                              size_t *n, cq_err *err) {
    size_t len = strlen(s), cap = len + 8;
    *out = malloc(cap * sizeof **out);
    if (!*out) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_status st = cq_tokenizer_encode(tok, s, len, bos, *out, cap, n, err);
    if (st) {
        free(*out);
        *out = NULL;
    }
    return st;
}

/* lm-eval-harness's pair encoding: whole = tok(context + ending), ctx = tok(context),
 * continuation = whole[len(ctx):], fed after ctx. When whole does not extend ctx
 * (a merge across the boundary), the harness still cuts at len(ctx); so do we, and
 * count it. At least one continuation token is always scored. Sequences longer than
 * max_len lose context tokens from the left (after BOS). */
cq_status cq_mc_prepare(const cq_tokenizer *tok, const char *ctx, const char *ending, uint32_t max_len,
                        cq_mc_seq *q, cq_err *err) {
    if (!tok || !ctx || !ending || !q) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    memset(q, 0, sizeof *q);
    int bos = cq_tokenizer_add_bos(tok);
    size_t lc = strlen(ctx), le = strlen(ending);
    char *joint = malloc(lc + le + 1);
    if (!joint) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    memcpy(joint, ctx, lc);
    memcpy(joint + lc, ending, le + 1);
    int32_t *tc = NULL, *tw = NULL;
    size_t nc = 0, nw = 0;
    cq_status st = encode_alloc(tok, ctx, bos, &tc, &nc, err);
    if (!st) st = encode_alloc(tok, joint, bos, &tw, &nw, err);
    free(joint);
    if (st) {
        free(tc);
        return st;
    }
    size_t cut = nc < nw ? nc : (nw ? nw - 1 : 0);
    for (size_t i = 0; i < cut && i < nc; i++)
        if (tc[i] != tw[i]) q->retok = 1;
    if (nc >= nw) q->retok = 1;
    size_t ncont = nw - cut, n = cut + ncont;
    if (ncont == 0 || n < 2) {
        free(tc);
        free(tw);
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "item with an empty ending or context");
    }
    q->in = malloc(n * sizeof *q->in);
    if (!q->in) {
        free(tc);
        free(tw);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    memcpy(q->in, tc, cut * sizeof *q->in);
    memcpy(q->in + cut, tw + cut, ncont * sizeof *q->in);
    q->n = (uint32_t)n;
    q->cont = (uint32_t)cut;
    free(tc);
    free(tw);
    if (q->n > max_len) { /* drop the oldest context tokens, keep the first (BOS) */
        uint32_t drop = q->n - max_len;
        if (drop >= q->cont) {
            cq_mc_seq_free(q);
            return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "ending longer than the context window");
        }
        memmove(q->in + 1, q->in + 1 + drop, (q->n - 1 - drop) * sizeof *q->in);
        q->n -= drop;
        q->cont -= drop;
    }
    return CQ_OK;
}

double cq_mc_logprob(const float *logits, uint32_t V, int32_t t) {
    double mx = -INFINITY, s = 0;
    for (uint32_t i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    for (uint32_t i = 0; i < V; i++) s += exp((double)logits[i] - mx);
    return (double)logits[t] - mx - log(s);
}

void cq_mc_seq_free(cq_mc_seq *q) {
    if (!q) return;
    free(q->in);
    q->in = NULL;
}

void cq_mc_result_free(cq_mc_result *r) {
    if (!r) return;
    free(r->choice_norm);
    free(r->right_norm);
    r->choice_norm = NULL;
    r->right_norm = NULL;
}

cq_status cq_mc_score(const cq_model *m, const cq_tokenizer *tok, const cq_mc_set *set,
                      const cq_kv_format *f, const cq_mc_opts *o, cq_mc_result *r, cq_err *err) {
    cq_err_clear(err);
    if (!m || !tok || !set || !f || !r) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    cq_mc_opts none;
    if (!o) {
        memset(&none, 0, sizeof none);
        o = &none;
    }
    const cq_model_config *c = cq_model_get_config(m);
    memset(r, 0, sizeof *r);
    r->choice_norm = calloc(set->n + 1, sizeof *r->choice_norm);
    r->right_norm = calloc(set->n + 1, 1);
    const uint32_t V = c->vocab_size, max_len = c->max_seq_len;
    float *logits = malloc((size_t)max_len * V * sizeof(float)); /* [n][V] */
    if (!r->choice_norm || !r->right_norm || !logits) {
        free(logits);
        cq_mc_result_free(r);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    /* pages sized to the longest sequence of the set (as eval ppl sizes them to its context) */
    uint32_t longest = 16;
    cq_status st = CQ_OK;
    for (size_t i = 0; i < set->n && !st; i++)
        for (uint32_t j = 0; j < set->items[i].n_endings && !st; j++) {
            cq_mc_seq q;
            st = cq_mc_prepare(tok, set->items[i].context, set->items[i].endings[j], max_len, &q, err);
            if (!st && q.n > longest) longest = q.n;
            cq_mc_seq_free(&q);
        }
    cq_session *s = NULL;
    if (!st) st = cq_eval_session(m, f, &o->kv, o->threads, longest, 0, &s, err);
    double bits = 0, bits_ns = 0, len_sum = 0;
    uint64_t n_fw = 0;
    for (size_t i = 0; i < set->n && !st; i++) {
        const cq_mc_item *it = &set->items[i];
        double best = -INFINITY, best_n = -INFINITY;
        uint32_t arg = 0, arg_n = 0;
        int retok = 0;
        for (uint32_t j = 0; j < it->n_endings && !st; j++) {
            cq_mc_seq q;
            st = cq_mc_prepare(tok, it->context, it->endings[j], max_len, &q, err);
            if (st) break;
            retok |= q.retok;
            uint32_t w = cq_kv_format_warnings(f, q.n, o->kv.group);
            r->n_short += (w & CQ_WARN_CTX_LE_GROUP) != 0;
            r->warnings |= w;
            len_sum += q.n;
            cq_session_reset(s);
            st = cq_session_forward(s, q.in, q.n, logits, 0, err);
            if (!st) {
                double ll = 0;
                for (uint32_t t = q.cont; t < q.n; t++)
                    ll += cq_mc_logprob(logits + (size_t)(t - 1) * V, V, q.in[t]);
                double lln = ll / (double)(strlen(it->endings[j]) ? strlen(it->endings[j]) : 1);
                if (ll > best) best = ll, arg = j; /* ties: the lower index, as argmax does */
                if (lln > best_n) best_n = lln, arg_n = j;
                cq_cache *cache = cq_session_cache(s);
                cq_cache_mem mem;
                if (cache && cq_cache_memory(cache, -1, &mem) == CQ_OK && mem.tokens) {
                    bits += mem.bits_per_value;
                    bits_ns += 8.0 * (double)(mem.total - mem.slack) /
                               ((double)mem.tokens * c->head_dim * 2);
                } else {
                    bits += 32.0, bits_ns += 32.0;
                }
                n_fw++;
            }
            cq_mc_seq_free(&q);
        }
        if (st) break;
        r->retok += retok;
        r->correct += arg == it->label;
        r->correct_norm += arg_n == it->label;
        r->choice_norm[i] = arg_n;
        r->right_norm[i] = arg_n == it->label;
        r->n++;
        if (o->progress) o->progress(o->progress_user, i + 1, set->n);
    }
    r->bits_per_value = n_fw ? bits / (double)n_fw : NAN;
    r->bits_no_slack = n_fw ? bits_ns / (double)n_fw : NAN;
    r->mean_len = n_fw ? len_sum / (double)n_fw : NAN;
    r->codec_bpv = cq_format_codec_bits(f, c->n_kv_heads, c->head_dim, o->kv.group, o->kv.masks);
    r->longest = longest;
    if (r->bits_per_value > 16.0 && r->codec_bpv < 16.0) r->warnings |= CQ_WARN_CACHE_OVER_FP16;
    cq_session_free(s);
    free(logits);
    if (st) cq_mc_result_free(r);
    return st;
}
