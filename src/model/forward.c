/* SPDX-License-Identifier: MIT */
/*
 * forward.c - the Llama-family forward pass (llama, qwen2) over a batch of
 * tokens, and the session that owns its activations and KV store.
 *
 * One readable pass, llama2.c style, every tensor's shape in a comment
 * (B = tokens in the batch, dim = residual width, H = query heads,
 * Hkv = key/value heads, D = head_dim, F = SwiGLU width, V = vocabulary):
 *   x = embed(tokens)
 *   per layer: xb = rmsnorm(x) * w; q,k,v = xb Wq,Wk,Wv (+ biases);
 *              rope(q, k); append k, v to the KV store; o = attention(q);
 *              x += o Wo; xb = rmsnorm(x) * w; x += (silu(xb Wg) * (xb Wu)) Wd
 *   logits = rmsnorm(x) * w  Wout
 * The KV store is either the ChannelQuant cache (cq_cache_append_f32, then
 * cq_cache_attend_prefill / cq_cache_attend) or the reference store: plain
 * fp32 arrays with exact softmax attention in double, kept as the oracle.
 * Matrix products run on the session's thread pool (include/cq_pool.h; the cache's
 * attention runs on the same one), split by output rows, so the result never depends
 * on the thread count. The per-token math is forward_ops.c's (forward_internal.h),
 * shared with the batch session (batch.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_fp16.h"
#include "forward_internal.h"

struct cq_session {
    const cq_model *m;
    cq_session_opts o;
    cq_pool *pool;     /* the caller's (o.pool) or the session's own */
    int own_pool;
    uint32_t n_threads, max_tokens, batch, pos;
    uint32_t S, G;     /* prompt_blocks: chunks end on n_sinks + k G */
    cq_cache *cache;   /* CQ_KV_CACHE */
    float *key_ref;    /* CQ_KV_REFERENCE: [n_layers][max_tokens][Hkv*D] */
    float *val_ref;    /* same */
    cq_fwd f;          /* activations of batch rows, RoPE tables, weight-row scratch */
    double *att;       /* [n_threads][max_tokens] reference attention scores */
};

void cq_session_opts_default(cq_session_opts *o) {
    memset(o, 0, sizeof *o);
    o->mode = CQ_KV_REFERENCE;
    o->n_threads = 1;
    o->prompt_blocks = 1; /* the KV of a one-call prefill, as the batch session's */
}

/* ------------------------------------------------------------- building blocks */

/* Reference attention: query token i (absolute position pos0 + i) over the stored
 * tokens [0, pos0 + i], exact softmax in double. */
typedef struct ref_job {
    cq_session *s;
    uint32_t layer, pos0, n;
    const float *q; /* [n][H][D] */
    float *out;     /* [n][H][D] */
} ref_job;

static void ref_attn_task(void *ctx, uint32_t task, uint32_t thread) {
    ref_job *j = ctx;
    const cq_model_config *c = &j->s->m->cfg;
    uint32_t D = c->head_dim, H = c->n_heads, Hkv = c->n_kv_heads, kvd = Hkv * D;
    uint32_t i = task / H, h = task % H, hk = h / (H / Hkv);
    uint32_t len = j->pos0 + i + 1;
    const float *q = j->q + ((size_t)i * H + h) * D;           /* [D] */
    const float *K = j->s->key_ref + (size_t)j->layer * j->s->max_tokens * kvd + hk * D; /* row t at t*kvd */
    const float *Vv = j->s->val_ref + (size_t)j->layer * j->s->max_tokens * kvd + hk * D;
    double *sc = j->s->att + (size_t)thread * j->s->max_tokens; /* [len] */
    double scale = 1.0 / sqrt((double)D), mx = -INFINITY, sum = 0;
    for (uint32_t t = 0; t < len; t++) {
        double d = 0;
        for (uint32_t e = 0; e < D; e++) d += (double)q[e] * K[(size_t)t * kvd + e];
        sc[t] = d * scale;
        if (sc[t] > mx) mx = sc[t];
    }
    for (uint32_t t = 0; t < len; t++) sum += (sc[t] = exp(sc[t] - mx));
    float *o = j->out + ((size_t)i * H + h) * D;
    for (uint32_t e = 0; e < D; e++) {
        double acc = 0;
        for (uint32_t t = 0; t < len; t++) acc += sc[t] * Vv[(size_t)t * kvd + e];
        o[e] = (float)(acc / sum);
    }
}

/* ------------------------------------------------------------------ session */

void cq_session_free(cq_session *s) {
    if (!s) return;
    if (s->own_pool) cq_pool_free(s->pool);
    cq_cache_free(s->cache);
    free(s->key_ref);
    free(s->val_ref);
    cq_fwd_release(&s->f);
    free(s->att);
    free(s);
}

static float *alloc_f(size_t a, size_t b, int *fail) {
    size_t n;
    if (cq_mul_sz(a, b, &n) || cq_mul_sz(n, sizeof(float), &n)) {
        *fail = 1;
        return NULL;
    }
    float *p = calloc(n ? n / sizeof(float) : 1, sizeof(float));
    if (!p) *fail = 1;
    return p;
}

cq_status cq_fwd_check_precision(uint32_t p, cq_err *err) {
    if (!p || p == CQ_ATTN_EXACT || p == CQ_ATTN_FAST) return CQ_OK;
    return cq_err_set(err, CQ_ERR_ARG, -1, -1,
                      "attn_precision %u is neither CQ_ATTN_EXACT (%d) nor CQ_ATTN_FAST (%d)", p,
                      CQ_ATTN_EXACT, CQ_ATTN_FAST);
}

cq_status cq_session_create(const cq_model *m, const cq_session_opts *o, cq_session **out,
                            cq_err *err) {
    if (!m || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "model or out is NULL");
    *out = NULL;
    const cq_model_config *c = &m->cfg;
    cq_session *s = calloc(1, sizeof *s);
    if (!s) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    if (o) s->o = *o;
    else cq_session_opts_default(&s->o);
    s->m = m;
    s->n_threads = s->o.n_threads ? s->o.n_threads : 1;
    if (s->n_threads > CQ_POOL_MAX) s->n_threads = CQ_POOL_MAX;
    s->max_tokens = s->o.max_tokens ? s->o.max_tokens : c->max_seq_len;
    s->batch = s->o.batch ? s->o.batch : 64;
    cq_status pst = cq_fwd_check_precision(s->o.attn_precision, err);
    if (pst) {
        free(s);
        return pst;
    }
    if (s->o.mode == CQ_KV_CACHE && s->o.prompt_blocks) {
        s->G = s->o.cache && s->o.cache->group ? s->o.cache->group : 128;
        s->S = s->o.cache ? s->o.cache->n_sinks : 0;
        if (s->batch < s->S + s->G) s->batch = s->S + s->G;
    }
    if (s->batch > s->max_tokens) s->batch = s->max_tokens;
    cq_status st;
    /* one pool for the matrix products and the cache's attention: n_threads threads in all */
    if (s->o.pool) {
        s->pool = s->o.pool;
        if (!s->o.n_threads || s->n_threads > cq_pool_threads(s->pool))
            s->n_threads = cq_pool_threads(s->pool);
    } else if (s->n_threads > 1) {
        cq_pool_opts po;
        cq_pool_opts_default(&po, s->n_threads);
        if ((st = cq_pool_create(&po, &s->pool))) {
            cq_session_free(s);
            return cq_err_set(err, st, -1, -1, "cannot start %u threads", po.n_threads);
        }
        s->own_pool = 1;
    }
    uint32_t D = c->head_dim, kvd = c->n_kv_heads * D;
    if ((st = cq_fwd_init(&s->f, m, s->batch, s->max_tokens, s->pool, s->n_threads, err))) {
        cq_session_free(s);
        return st;
    }
    int fail = 0;
    {
        size_t n;
        if (cq_mul_sz(s->n_threads, s->max_tokens, &n) || !(s->att = calloc(n, sizeof(double))))
            fail = 1;
    }
    if (!fail && s->o.mode == CQ_KV_REFERENCE) {
        size_t n;
        if (cq_mul_sz((size_t)c->n_layers * s->max_tokens, kvd, &n)) fail = 1;
        else {
            s->key_ref = alloc_f(n, 1, &fail);
            s->val_ref = alloc_f(n, 1, &fail);
        }
    }
    if (fail) {
        uint32_t mt = s->max_tokens;
        cq_session_free(s);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "cannot allocate a session of %u tokens", mt);
    }
    if (s->o.mode == CQ_KV_CACHE) {
        cq_cache_config cc;
        if (s->o.cache) cc = *s->o.cache;
        else { /* fp16/fp16: the cache's own default is CQ-4 */
            cq_cache_config_default(&cc, c->n_layers, c->n_kv_heads, D);
            cc.key_codec = cc.val_codec = CQ_CODEC_FP16;
        }
        if (cc.n_layers != c->n_layers || cc.n_kv_heads != c->n_kv_heads || cc.head_dim != D) {
            cq_session_free(s);
            return cq_err_set(err, CQ_ERR_SHAPE, -1, -1,
                              "cache is %u layers x %u kv heads x %u, model %u x %u x %u",
                              cc.n_layers, cc.n_kv_heads, cc.head_dim, c->n_layers, c->n_kv_heads, D);
        }
        if ((st = cq_cache_create(&cc, &s->cache, err))) {
            cq_session_free(s);
            return st;
        }
    } else if (s->o.mode != CQ_KV_REFERENCE) {
        cq_session_free(s);
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "unknown KV mode %d", (int)s->o.mode);
    }
    *out = s;
    return CQ_OK;
}

void cq_session_reset(cq_session *s) {
    if (!s) return;
    s->pos = 0;
    if (s->cache) cq_cache_reset(s->cache);
}

uint32_t cq_session_pos(const cq_session *s) { return s ? s->pos : 0; }
cq_cache *cq_session_cache(cq_session *s) { return s ? s->cache : NULL; }

/* ------------------------------------------------------------------ forward */

/* One batch of n <= batch tokens at positions pos..pos+n-1. logits: NULL, [n][V],
 * or with last_only [V] (the last token's only: the classifier runs on one row). */
static cq_status forward_batch(cq_session *s, const int32_t *tokens, uint32_t n, float *logits,
                               int last_only, int prefill, cq_err *err) {
    const cq_model_config *c = &s->m->cfg;
    const uint32_t D = c->head_dim, H = c->n_heads, Hkv = c->n_kv_heads;
    const uint32_t kvd = Hkv * D, pos0 = s->pos;
    cq_fwd *f = &s->f;
    cq_status st;

    cq_fwd_embed(f, tokens, n); /* x [n][dim] */
    for (uint32_t i = 0; i < n; i++) f->pos[i] = pos0 + i;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        cq_fwd_qkv(f, l, n); /* q [n][H*D], k, v [n][Hkv*D], after RoPE */
        if (s->o.observer) s->o.observer(s->o.observer_user, l, pos0, n, f->q, f->k, f->v);
        /* store k, v; attention: xb [n][H*D] */
        if (s->cache) {
            if ((st = cq_cache_append_f32(s->cache, l, f->k, f->v, n, err))) return st;
            cq_attn_opts ao = {.n_threads = s->n_threads, .scale = 0.0f,
                               .precision = s->o.attn_precision, .pool = s->pool};
            if (n == 1 && !prefill) st = cq_cache_attend(s->cache, l, f->q, H, f->xb, &ao, err);
            else st = cq_cache_attend_prefill(s->cache, l, f->q, n, pos0, H, f->xb, &ao, err);
            if (st) return st;
        } else {
            float *Kd = s->key_ref + ((size_t)l * s->max_tokens + pos0) * kvd; /* [n][Hkv*D] */
            float *Vd = s->val_ref + ((size_t)l * s->max_tokens + pos0) * kvd;
            for (size_t e = 0; e < (size_t)n * kvd; e++) {
                Kd[e] = s->o.ref_kv_fp16 ? cq_f16_to_f32(cq_f32_to_f16(f->k[e])) : f->k[e];
                Vd[e] = s->o.ref_kv_fp16 ? cq_f16_to_f32(cq_f32_to_f16(f->v[e])) : f->v[e];
                if (!isfinite(Kd[e]) || !isfinite(Vd[e]))
                    return cq_err_set(err, CQ_ERR_NONFINITE, (int64_t)(pos0 + e / kvd), (int32_t)(e % kvd),
                                      "layer %u: non-finite key/value", l);
            }
            ref_job j = {s, l, pos0, n, f->q, f->xb};
            cq_pool_run(s->pool, s->n_threads, n * H, ref_attn_task, &j);
        }
        cq_fwd_post_attn(f, l, n); /* x += xb Wo; x += SwiGLU */
    }
    s->pos += n;
    if (!logits) return CQ_OK;
    /* logits [n][V] (or [1][V] of the last token) */
    uint32_t first = last_only ? n - 1 : 0;
    cq_fwd_logits(f, NULL, first, n - first, logits);
    return CQ_OK;
}

cq_status cq_session_forward(cq_session *s, const int32_t *tokens, uint32_t n, float *logits,
                             int last_only, cq_err *err) {
    if (!s || (!tokens && n)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "session or tokens NULL");
    const cq_model_config *c = &s->m->cfg;
    if (n > s->max_tokens - s->pos)
        return cq_err_set(err, CQ_ERR_RANGE, (int64_t)s->pos, -1,
                          "context full: %u + %u tokens exceed %u", s->pos, n, s->max_tokens);
    for (uint32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= c->vocab_size)
            return cq_err_set(err, CQ_ERR_RANGE, (int64_t)i, -1, "token %d outside vocabulary %u",
                              tokens[i], c->vocab_size);
    const size_t V = c->vocab_size;
    for (uint32_t done = 0; done < n;) {
        uint32_t b = n - done < s->batch ? n - done : s->batch;
        if (s->G && b < n - done) { /* prompt_blocks: end on the last group border in reach */
            const uint32_t p = s->pos, end = p + b;
            const uint32_t border = end < s->S + s->G ? 0 : s->S + (end - s->S) / s->G * s->G;
            if (border > p) b = border - p; /* there is one: batch >= S + G */
        }
        int last_batch = done + b == n;
        float *dst = NULL;
        if (logits && !last_only) dst = logits + (size_t)done * V;
        else if (logits && last_batch) dst = logits;
        cq_status st = forward_batch(s, tokens + done, b, dst, last_only, s->G && n > 1, err);
        if (st) return st;
        done += b;
    }
    return CQ_OK;
}
