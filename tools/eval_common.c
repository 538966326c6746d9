/*
 * eval_common.c - what the evaluation commands share (eval ppl/mc/capture/attn,
 * calibrate, sweep, run): reading and tokenizing a text, parsing K/V format
 * lists and saying why a format cannot run on a model, outlier calibration on
 * held-out text through the runtime's key observer, capturing Q/K/V, and the
 * attention-fidelity loop over a case layout. The protocols themselves live in
 * the library (src/eval, src/model); this file only wires them together.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

char *cq_tool_read_file(const char *path, size_t *len) {
    char *b;
    cq_err e;
    cq_err_clear(&e);
    if (cq_read_text(path, CQ_TEXT_MAX_BYTES, &b, len, &e)) {
        fprintf(stderr, "cq: %s: %s\n", cq_status_name(e.code), e.msg);
        return NULL;
    }
    return b;
}

const char *cq_tool_default_text(char *buf, size_t cap) {
    const char *sh = getenv("CQ_SHARED");
    snprintf(buf, cap, "%.4000s/eval/tinystories_val.txt", sh && *sh ? sh : "../shared");
    return buf;
}

int cq_tool_tokenize_file(const char *cmd, const cq_tokenizer *tok, const char *path,
                          int32_t **tokens, size_t *n_tokens) {
    size_t len;
    *tokens = NULL;
    *n_tokens = 0;
    char *text = cq_tool_read_file(path, &len);
    if (!text) {
        fprintf(stderr, "cq %s: CQ_ERR_IO: cannot read %s\n", cmd, path);
        return 1;
    }
    size_t cap = len + 16;
    int32_t *t = malloc(cap * sizeof *t);
    cq_err e;
    cq_err_clear(&e);
    cq_status st = t ? cq_tokenizer_encode(tok, text, len, cq_tokenizer_add_bos(tok), t, cap,
                                           n_tokens, &e)
                     : CQ_ERR_NOMEM;
    free(text);
    if (st) {
        free(t);
        cq_report(cmd, st, &e);
        return 1;
    }
    *tokens = t;
    return 0;
}

int cq_tool_parse_formats(const char *cmd, const char *list, cq_kv_format *f, uint32_t max,
                          uint32_t *n) {
    char buf[1024];
    *n = 0;
    if (strlen(list) >= sizeof buf) {
        fprintf(stderr, "cq %s: --formats too long\n", cmd);
        return 2;
    }
    strcpy(buf, list);
    cq_err e;
    cq_err_clear(&e);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (*n == max) {
            fprintf(stderr, "cq %s: at most %u formats\n", cmd, max);
            return 2;
        }
        cq_status st = cq_kv_format_parse(t, &f[*n], &e);
        if (st) {
            cq_report(cmd, st, &e);
            return 2;
        }
        (*n)++;
    }
    if (!*n) {
        fprintf(stderr, "cq %s: no formats\n", cmd);
        return 2;
    }
    return 0;
}

const char *cq_tool_format_na(const cq_model_config *c, const cq_kv_format *f, uint32_t group,
                              const uint8_t *masks, char *buf, size_t cap) {
    if (f->reference) return NULL;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, c->head_dim);
    if (group) cfg.group = group;
    cfg.mask = masks; /* layer 0 head 0's mask: enough for the shape checks */
    const cq_codec_id ids[2] = {f->key, f->val};
    for (int r = 0; r < 2; r++) {
        const cq_codec_traits *t = cq_codec_get(ids[r]);
        cq_role role = r ? CQ_ROLE_VALUE : CQ_ROLE_KEY;
        const char *rn = r ? "values" : "keys";
        if (!t) {
            snprintf(buf, cap, "unknown codec");
            return buf;
        }
        if (!(t->flags & CQ_CODEC_F_STREAMING) || (t->flags & CQ_CODEC_F_OFFLINE)) {
            snprintf(buf, cap, "%s is not a streaming codec (needs the whole sequence)", t->name);
            return buf;
        }
        if (t->id == CQ_CODEC_CQ4P && r == 0 && !masks) {
            snprintf(buf, cap, "cq4+ keys need an outlier mask");
            return buf;
        }
        /* the cache codes a per-token codec over each token's row of all kv heads when
         * a head is too narrow for its blocks (docs/CACHE.md, "Row layout") */
        if (cq_codec_supports(t, &cfg, role) != CQ_OK &&
            cq_cache_layout_for(t->id, role, c->n_kv_heads, c->head_dim, group) != CQ_LAYOUT_ROW) {
            if (c->n_kv_heads > 1)
                snprintf(buf, cap, "%s cannot code %s at head_dim %u, nor as a row of %u kv heads "
                         "x %u = %u channels", t->name, rn, c->head_dim, c->n_kv_heads,
                         c->head_dim, c->n_kv_heads * c->head_dim);
            else
                snprintf(buf, cap, "%s cannot code %s at head_dim %u", t->name, rn, c->head_dim);
            return buf;
        }
    }
    return NULL;
}

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

cq_status cq_tool_calibrate(const cq_model *m, const int32_t *tokens, size_t n_tokens, int32_t bos,
                            cq_tool_calib_opts *o, cq_calib **out, cq_err *err) {
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
        if (!o->quiet && ((q + 1) % 16 == 0 || q + 1 == seqs))
            fprintf(stderr, "\rcq calibrate: sequence %u/%u", q + 1, seqs);
    }
    if (!o->quiet) fprintf(stderr, "\n");
    free(seq);
    cq_session_free(s);
    if (st) {
        cq_calib_free(cal);
        return st;
    }
    *out = cal;
    return CQ_OK;
}

cq_status cq_tool_calib_masks(const cq_calib *cal, const cq_model_config *c, uint32_t k,
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

cq_status cq_tool_capture(const cq_model *m, const int32_t *tokens, uint32_t T, uint32_t threads,
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

/* ------------------------------------------------------ attention fidelity */

void cq_tool_linspace(uint32_t lo, uint32_t hi, int n, cq_tool_sel *out) {
    out->n = 0;
    for (int i = 0; i < n && i < CQ_TOOL_MAX_SEL; i++) {
        uint32_t v = n == 1 ? lo : (uint32_t)(lo + (double)(hi - lo) * i / (n - 1)); /* int() */
        if (out->n && out->v[out->n - 1] == v) continue;
        out->v[out->n++] = v;
    }
}

cq_status cq_tool_attn_pair(const cq_codec_traits *kc, const cq_codec_traits *vc,
                            const cq_codec_cfg *cfg, const cq_tool_qkv *x,
                            const cq_tool_sel *layers, const cq_tool_sel *heads,
                            const cq_tool_sel *pos, const uint8_t *masks, cq_attn_metrics *mean,
                            double *bpv, cq_err *err) {
    const uint32_t D = x->D, grp = x->NQH / x->NKV;
    float *qbuf = malloc((size_t)grp * D * sizeof(float));
    if (!qbuf) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_attn_metrics acc;
    cq_attn_metrics_clear(&acc);
    cq_codec_cfg hc = *cfg;
    double bits = 0, vals = 0;
    cq_status st = CQ_OK;
    for (int li = 0; li < layers->n && !st; li++)
        for (int pj = 0; pj < pos->n && !st; pj++) {
            uint32_t L = pos->v[pj] + 1;
            for (uint32_t kv = 0; kv < x->NKV && !st; kv++) {
                /* the selected query heads of this kv head, query of token p */
                uint32_t nq = 0;
                for (int hi = 0; hi < heads->n; hi++) {
                    uint32_t h = heads->v[hi];
                    if (h / grp != kv) continue;
                    const uint16_t *src =
                        x->Q + (((size_t)layers->v[li] * x->NQH + h) * x->T + pos->v[pj]) * D;
                    for (uint32_t c = 0; c < D; c++) qbuf[(size_t)nq * D + c] = cq_f16_to_f32(src[c]);
                    nq++;
                }
                if (!nq) continue;
                size_t base = ((size_t)layers->v[li] * x->NKV + kv) * x->T * D;
                if (masks) hc.mask = masks + ((size_t)layers->v[li] * x->NKV + kv) * D;
                st = cq_attn_fidelity_case(kc, vc, &hc, x->K + base, x->V + base, L, qbuf, nq, &acc,
                                           err);
                if (!st) {
                    bits += 8.0 * (double)(kc->packed_bytes(&hc, CQ_ROLE_KEY, L) +
                                           vc->packed_bytes(&hc, CQ_ROLE_VALUE, L));
                    vals += 2.0 * L * D;
                }
            }
        }
    free(qbuf);
    if (st) return st;
    cq_attn_metrics_mean(&acc, mean);
    *bpv = vals > 0 ? bits / vals : NAN;
    return CQ_OK;
}
