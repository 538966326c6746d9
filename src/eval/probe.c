/* SPDX-License-Identifier: MIT */
/*
 * probe.c - protocols that drive the model runtime and look at what it gives
 * the cache: outlier calibration on held-out text through the key observer
 * (EVAL.md section 4) and the capture of post-RoPE Q/K/V for the attention-
 * fidelity protocol. Declared in include/cq_eval.h.
 */
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"

/* ---------------------------------------------------------- calibration */

typedef struct calib_obs {
    cq_calib *cal;
    uint32_t batch;
} calib_obs;

static void calib_observe(void *user, uint32_t layer, uint32_t pos0, uint32_t n, const float *q,
                          const float *k, const float *v) {
    (void)pos0, (void)q, (void)v;
    calib_obs *o = user;
    cq_calib_observe(o->cal, o->batch, layer, k, n);
}

cq_status cq_eval_calibrate(const cq_model *m, const int32_t *tokens, size_t n_tokens, int32_t bos,
                            cq_calib_run_opts *o, cq_calib **out, cq_err *err) {
    const cq_model_config *c = cq_model_get_config(m);
    *out = NULL;
    uint32_t len = o->len < c->max_seq_len ? o->len : c->max_seq_len;
    uint32_t seqs = o->seqs;
    if (len < 2) return cq_err_set(err, CQ_ERR_ARG, -1, -1, "calibration length %u too small", len);
    if ((uint64_t)seqs * len > n_tokens) seqs = (uint32_t)(n_tokens / len);
    if (!seqs) return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "text too short for one sequence of %u", len);
    uint32_t B = o->batches < seqs ? o->batches : seqs;
    o->used_seqs = seqs;
    o->used_len = len;
    o->used_batches = B;
    o->start = n_tokens - (size_t)seqs * len; /* the END of the text: held out from ppl and mc */
    cq_calib *cal = NULL;
    cq_status st = cq_calib_create(c->n_layers, c->n_kv_heads, c->head_dim, B, &cal, err);
    if (st) return st;
    calib_obs ob = {cal, 0};
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.n_threads = o->threads;
    so.max_tokens = len;
    so.batch = len;
    so.observer = calib_observe;
    so.observer_user = &ob;
    cq_session *s = NULL;
    st = cq_session_create(m, &so, &s, err);
    int32_t *seq = malloc((size_t)len * sizeof *seq);
    if (!st && !seq) st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    for (uint32_t q = 0; !st && q < seqs; q++) {
        memcpy(seq, tokens + o->start + (size_t)q * len, (size_t)len * sizeof *seq);
        if (bos >= 0) seq[0] = bos; /* every sequence starts as the model saw its training data */
        ob.batch = (uint32_t)((uint64_t)q * B / seqs); /* contiguous batches in file order */
        cq_session_reset(s);
        st = cq_session_forward(s, seq, len, NULL, 0, err);
        if (o->progress) o->progress(o->progress_user, q + 1, seqs);
    }
    free(seq);
    cq_session_free(s);
    if (st) {
        cq_calib_free(cal);
        return st;
    }
    *out = cal;
    return CQ_OK;
}

cq_status cq_calib_masks(const cq_calib *cal, const cq_model_config *c, uint32_t k,
                              uint8_t *masks) {
    size_t lh = (size_t)c->n_layers * c->n_kv_heads;
    uint16_t *ch = malloc((lh * k + 1) * sizeof *ch);
    if (!ch) return CQ_ERR_NOMEM;
    cq_status st = cq_calib_topk(cal, -1, k, ch);
    memset(masks, 0, lh * c->head_dim);
    if (!st)
        for (size_t i = 0; i < lh; i++)
            for (uint32_t j = 0; j < k; j++) masks[i * c->head_dim + ch[i * k + j]] = 1;
    free(ch);
    return st;
}

/* ---------------------------------------------------------------- capture */

typedef struct cap_obs {
    uint32_t T, H, Hkv, D;
    float *q, *k, *v; /* [L][H][T][D], [L][Hkv][T][D] */
} cap_obs;

static void cap_observe(void *user, uint32_t layer, uint32_t pos0, uint32_t n, const float *q,
                        const float *k, const float *v) {
    cap_obs *o = user;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = pos0 + i;
        if (t >= o->T) return;
        for (uint32_t h = 0; h < o->H; h++)
            memcpy(o->q + (((size_t)layer * o->H + h) * o->T + t) * o->D,
                   q + ((size_t)i * o->H + h) * o->D, o->D * sizeof(float));
        for (uint32_t h = 0; h < o->Hkv; h++) {
            size_t dst = (((size_t)layer * o->Hkv + h) * o->T + t) * o->D;
            memcpy(o->k + dst, k + ((size_t)i * o->Hkv + h) * o->D, o->D * sizeof(float));
            memcpy(o->v + dst, v + ((size_t)i * o->Hkv + h) * o->D, o->D * sizeof(float));
        }
    }
}

cq_status cq_capture_qkv(const cq_model *m, const int32_t *tokens, uint32_t T, uint32_t threads,
                          float **q, float **k, float **v, cq_err *err) {
    const cq_model_config *c = cq_model_get_config(m);
    *q = *k = *v = NULL;
    if (T == 0 || T > c->max_seq_len)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "capture length %u outside 1..%u", T,
                          c->max_seq_len);
    cap_obs o = {T, c->n_heads, c->n_kv_heads, c->head_dim, NULL, NULL, NULL};
    size_t nq = (size_t)c->n_layers * c->n_heads * T * c->head_dim;
    size_t nk = (size_t)c->n_layers * c->n_kv_heads * T * c->head_dim;
    o.q = malloc(nq * sizeof(float));
    o.k = malloc(nk * sizeof(float));
    o.v = malloc(nk * sizeof(float));
    cq_status st = CQ_OK;
    if (!o.q || !o.k || !o.v) st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_session_opts so;
    cq_session_opts_default(&so); /* fp16/fp16 cache: K/V exactly as the cache stores them */
    so.n_threads = threads;
    so.max_tokens = T;
    so.batch = T;
    so.observer = cap_observe;
    so.observer_user = &o;
    cq_session *s = NULL;
    if (!st) st = cq_session_create(m, &so, &s, err);
    if (!st) st = cq_session_forward(s, tokens, T, NULL, 0, err);
    cq_session_free(s);
    if (st) {
        free(o.q);
        free(o.k);
        free(o.v);
        return st;
    }
    *q = o.q;
    *k = o.k;
    *v = o.v;
    return CQ_OK;
}
