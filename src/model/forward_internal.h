/* SPDX-License-Identifier: MIT */
/*
 * forward_internal.h - the per-token math of the Llama-family forward pass, shared by
 * the single-sequence session (forward.c) and the batch session (batch.c): the
 * activations of up to `rows` token rows, the matrix products, RMSNorm, RoPE and the
 * SwiGLU block (forward_ops.c). Not a public header.
 *
 * Every function works row by row: an output row depends only on its own input row
 * (each output element of a matrix product is one dot product of one token's row with
 * one weight row, in a fixed order), so the rows of one sequence give the same bits in
 * any batch, beside any other rows, on any number of threads.
 */
#ifndef CQ_FORWARD_INTERNAL_H
#define CQ_FORWARD_INTERNAL_H

#include <stdint.h>

#include "cq_pool.h"
#include "model_internal.h"

/* Activations of up to `rows` token rows (B = rows; shapes as in forward.c). */
typedef struct cq_fwd {
    const cq_model *m;
    cq_pool *pool;          /* may be NULL (one thread) */
    uint32_t n_threads;
    uint32_t rows;          /* B */
    uint32_t max_pos;       /* RoPE table rows */
    float *x;               /* [B][dim] residual stream */
    float *xb;              /* [B][max(dim, H*D)] normed input / attention output */
    float *xb2;             /* [B][dim] */
    float *q;               /* [B][H*D] */
    float *k, *v;           /* [B][Hkv*D] */
    float *hb, *hb2;        /* [B][F] */
    float *bias;            /* [H*D + 2*Hkv*D] q, k, v biases of the current layer */
    float *rope_cos, *rope_sin; /* [max_pos][D/2] */
    float *scratch;         /* [n_threads][scratch_cols] dequantized weight rows */
    uint32_t scratch_cols;
    uint32_t *pos;          /* [B] the absolute position of every row */
} cq_fwd;

/* Allocate the activations and the RoPE tables; CQ_ERR_NOMEM (everything freed). */
cq_status cq_fwd_init(cq_fwd *f, const cq_model *m, uint32_t rows, uint32_t max_pos,
                      cq_pool *pool, uint32_t n_threads, cq_err *err);
void cq_fwd_release(cq_fwd *f); /* accepts a zeroed or half-initialized f */

/* x [n][dim] = the token embeddings (tokens already checked against the vocabulary). */
void cq_fwd_embed(cq_fwd *f, const int32_t *tokens, uint32_t n);
/* The attention input of layer l for rows [0, n): xb = rmsnorm(x); q, k, v = xb W (+ bias);
 * RoPE on q and k at f->pos[i]. */
void cq_fwd_qkv(cq_fwd *f, uint32_t l, uint32_t n);
/* After attention wrote xb [n][H*D]: x += xb Wo; x += SwiGLU(rmsnorm(x)). */
void cq_fwd_post_attn(cq_fwd *f, uint32_t l, uint32_t n);
/* logits [n_sel][V] of rows sel[0..n_sel) (sel NULL: rows first.. first + n_sel - 1):
 * rmsnorm(x) * out_norm, then the classifier. Uses xb. */
void cq_fwd_logits(cq_fwd *f, const uint32_t *sel, uint32_t first, uint32_t n_sel, float *logits);

/* The attn_precision of a session's or a batch's options, checked at create: 0 (the library
 * default), CQ_ATTN_EXACT or CQ_ATTN_FAST; else CQ_ERR_ARG. */
cq_status cq_fwd_check_precision(uint32_t p, cq_err *err);

#endif
