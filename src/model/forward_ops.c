/* SPDX-License-Identifier: MIT */
/*
 * forward_ops.c - the per-token math of the forward pass (forward_internal.h):
 * activations, matrix products on the thread pool, RMSNorm, RoPE, SwiGLU, logits.
 * The sessions (forward.c: one sequence; batch.c: many) own the KV store and the
 * attention; everything here works on rows that never see each other.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward_internal.h"

/* out[i] = x[i] / rms(x) * w[i];  x, out: [n] */
static void rmsnorm(float *out, const float *x, const cq_wtensor *w, uint32_t n, float eps,
                    float *wrow) {
    double ss = 0;
    for (uint32_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float inv = (float)(1.0 / sqrt(ss / n + eps));
    cq_wtensor_row_f32(w, 0, wrow);
    for (uint32_t i = 0; i < n; i++) out[i] = x[i] * inv * wrow[i];
}

static float dot_f32(const float *a, const float *b, uint32_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

typedef struct mm_job {
    cq_fwd *f;
    float *out;          /* [n][rows] */
    const float *x;      /* [n][cols] */
    uint32_t n;
    const cq_wtensor *w; /* [rows][cols] */
    const float *bias;   /* [rows] or NULL */
    uint32_t rows_per_task;
} mm_job;

static void mm_task(void *ctx, uint32_t task, uint32_t thread) {
    mm_job *j = ctx;
    const cq_wtensor *w = j->w;
    float *row = j->f->scratch + (size_t)thread * j->f->scratch_cols;
    uint32_t r0 = task * j->rows_per_task, r1 = r0 + j->rows_per_task;
    if (r1 > w->rows) r1 = w->rows;
    for (uint32_t r = r0; r < r1; r++) {
        const float *wr;
        if (w->type == CQ_WTYPE_F32) {
            wr = (const float *)w->data + (size_t)r * w->cols;
        } else {
            cq_wtensor_row_f32(w, r, row);
            wr = row;
        }
        float b = j->bias ? j->bias[r] : 0.0f;
        for (uint32_t i = 0; i < j->n; i++)
            j->out[(size_t)i * w->rows + r] = dot_f32(j->x + (size_t)i * w->cols, wr, w->cols) + b;
    }
}

/* out [n][rows] = x [n][cols] . W^T (+ bias): split by weight rows, so an output element
 * is the same dot product whatever n and the thread count are. */
static void matmul(cq_fwd *f, float *out, const float *x, uint32_t n, const cq_wtensor *w,
                   const float *bias) {
    mm_job j = {f, out, x, n, w, bias, 0};
    uint32_t tasks = f->n_threads * 8;
    if (tasks > w->rows) tasks = w->rows;
    j.rows_per_task = (w->rows + tasks - 1) / tasks;
    tasks = (w->rows + j.rows_per_task - 1) / j.rows_per_task;
    cq_pool_run(f->pool, f->n_threads, tasks, mm_task, &j);
}

/* Rotate one head vector v [D] at table row pos (interleaved pairs or half split). */
static void rope_head(float *v, uint32_t D, cq_rope_style style, const float *cs, const float *sn) {
    for (uint32_t i = 0; i < D / 2; i++) {
        uint32_t a = style == CQ_ROPE_INTERLEAVED ? 2 * i : i;
        uint32_t b = style == CQ_ROPE_INTERLEAVED ? 2 * i + 1 : i + D / 2;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x0 * sn[i] + x1 * cs[i];
    }
}

void cq_fwd_release(cq_fwd *f) {
    free(f->x);
    free(f->xb);
    free(f->xb2);
    free(f->q);
    free(f->k);
    free(f->v);
    free(f->hb);
    free(f->hb2);
    free(f->bias);
    free(f->rope_cos);
    free(f->rope_sin);
    free(f->scratch);
    free(f->pos);
    memset(f, 0, sizeof *f);
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

cq_status cq_fwd_init(cq_fwd *f, const cq_model *m, uint32_t rows, uint32_t max_pos,
                      cq_pool *pool, uint32_t n_threads, cq_err *err) {
    const cq_model_config *c = &m->cfg;
    memset(f, 0, sizeof *f);
    f->m = m;
    f->pool = pool;
    f->n_threads = n_threads ? n_threads : 1;
    f->rows = rows;
    f->max_pos = max_pos;
    uint32_t D = c->head_dim, qd = c->n_heads * D, kvd = c->n_kv_heads * D, B = rows;
    uint32_t wide = c->dim > qd ? c->dim : qd;
    uint32_t cols = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    if (qd > cols) cols = qd;
    if (kvd > cols) cols = kvd;
    f->scratch_cols = cols;
    int fail = 0;
    f->x = alloc_f(B, c->dim, &fail);
    f->xb = alloc_f(B, wide, &fail);
    f->xb2 = alloc_f(B, c->dim, &fail);
    f->q = alloc_f(B, qd, &fail);
    f->k = alloc_f(B, kvd, &fail);
    f->v = alloc_f(B, kvd, &fail);
    f->hb = alloc_f(B, c->hidden_dim, &fail);
    f->hb2 = alloc_f(B, c->hidden_dim, &fail);
    f->bias = alloc_f(qd + 2 * kvd, 1, &fail);
    f->rope_cos = alloc_f(max_pos, D / 2, &fail);
    f->rope_sin = alloc_f(max_pos, D / 2, &fail);
    f->scratch = alloc_f(f->n_threads, cols, &fail);
    if (!fail && !(f->pos = calloc(B ? B : 1, sizeof *f->pos))) fail = 1;
    if (fail) {
        cq_fwd_release(f);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "cannot allocate activations of %u tokens", B);
    }
    /* RoPE tables: angle(pos, i) = pos * theta^(-2i/D), computed in double */
    for (uint32_t p = 0; p < max_pos; p++)
        for (uint32_t i = 0; i < D / 2; i++) {
            double a = p * pow((double)c->rope_theta, -2.0 * i / D);
            f->rope_cos[(size_t)p * (D / 2) + i] = (float)cos(a);
            f->rope_sin[(size_t)p * (D / 2) + i] = (float)sin(a);
        }
    return CQ_OK;
}

void cq_fwd_embed(cq_fwd *f, const int32_t *tokens, uint32_t n) {
    const uint32_t dim = f->m->cfg.dim;
    for (uint32_t i = 0; i < n; i++)
        cq_wtensor_row_f32(&f->m->tok_embd, (uint32_t)tokens[i], f->x + (size_t)i * dim);
}

void cq_fwd_qkv(cq_fwd *f, uint32_t l, uint32_t n) {
    const cq_model_config *c = &f->m->cfg;
    const cq_layer_w *w = &f->m->layers[l];
    const uint32_t dim = c->dim, D = c->head_dim, H = c->n_heads, Hkv = c->n_kv_heads;
    const uint32_t qd = H * D, kvd = Hkv * D;
    float *wrow = f->scratch; /* thread 0's row: the main thread is alone here */
    /* xb [n][dim] = rmsnorm(x) * attn_norm */
    for (uint32_t i = 0; i < n; i++)
        rmsnorm(f->xb + (size_t)i * dim, f->x + (size_t)i * dim, &w->attn_norm, dim, c->rms_eps, wrow);
    /* q [n][H*D], k [n][Hkv*D], v [n][Hkv*D] (+ qwen2 biases, bias [H*D] scratch) */
    float *bq = NULL, *bk = NULL, *bv = NULL;
    if (w->bq.data) cq_wtensor_row_f32(&w->bq, 0, bq = f->bias);
    if (w->bk.data) cq_wtensor_row_f32(&w->bk, 0, bk = f->bias + qd);
    if (w->bv.data) cq_wtensor_row_f32(&w->bv, 0, bv = f->bias + qd + kvd);
    matmul(f, f->q, f->xb, n, &w->wq, bq);
    matmul(f, f->k, f->xb, n, &w->wk, bk);
    matmul(f, f->v, f->xb, n, &w->wv, bv);
    /* RoPE on every query and key head, at each row's absolute position */
    for (uint32_t i = 0; i < n; i++) {
        const float *cs = f->rope_cos + (size_t)f->pos[i] * (D / 2);
        const float *sn = f->rope_sin + (size_t)f->pos[i] * (D / 2);
        for (uint32_t h = 0; h < H; h++) rope_head(f->q + (size_t)i * qd + h * D, D, c->rope, cs, sn);
        for (uint32_t h = 0; h < Hkv; h++) rope_head(f->k + (size_t)i * kvd + h * D, D, c->rope, cs, sn);
    }
}

void cq_fwd_post_attn(cq_fwd *f, uint32_t l, uint32_t n) {
    const cq_model_config *c = &f->m->cfg;
    const cq_layer_w *w = &f->m->layers[l];
    const uint32_t dim = c->dim, F = c->hidden_dim;
    float *wrow = f->scratch;
    /* x [n][dim] += xb Wo */
    matmul(f, f->xb2, f->xb, n, &w->wo, NULL);
    for (size_t e = 0; e < (size_t)n * dim; e++) f->x[e] += f->xb2[e];
    /* SwiGLU: x += (silu(xb Wg) * (xb Wu)) Wd;  hb, hb2 [n][F] */
    for (uint32_t i = 0; i < n; i++)
        rmsnorm(f->xb + (size_t)i * dim, f->x + (size_t)i * dim, &w->ffn_norm, dim, c->rms_eps, wrow);
    matmul(f, f->hb, f->xb, n, &w->w_gate, NULL);
    matmul(f, f->hb2, f->xb, n, &w->w_up, NULL);
    for (size_t e = 0; e < (size_t)n * F; e++) {
        float g = f->hb[e];
        f->hb[e] = g / (1.0f + expf(-g)) * f->hb2[e];
    }
    matmul(f, f->xb2, f->hb, n, &w->w_down, NULL);
    for (size_t e = 0; e < (size_t)n * dim; e++) f->x[e] += f->xb2[e];
}

void cq_fwd_logits(cq_fwd *f, const uint32_t *sel, uint32_t first, uint32_t n_sel, float *logits) {
    const cq_model_config *c = &f->m->cfg;
    const uint32_t dim = c->dim;
    /* xb [n_sel][dim] = rmsnorm(x[row]) * out_norm; logits [n_sel][V] = xb Wout */
    for (uint32_t i = 0; i < n_sel; i++) {
        const uint32_t r = sel ? sel[i] : first + i;
        rmsnorm(f->xb + (size_t)i * dim, f->x + (size_t)r * dim, &f->m->out_norm, dim, c->rms_eps,
                f->scratch);
    }
    matmul(f, logits, f->xb, n_sel, &f->m->output, NULL);
}
