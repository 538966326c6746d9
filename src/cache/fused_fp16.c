/* SPDX-License-Identifier: MIT */
/*
 * fused_fp16.c - the fp16 store of the cache (fused.h): each token's D fp16 values as
 * appended, native byte order in the pages, little-endian in the packed form; attention
 * straight over them (dot_f16 / acc_f16).
 */
#include <string.h>

#include "../core/cq_le.h"
#include "fused.h"

static void layout(cq_store *s, uint32_t P) {
    (void)P;
    s->tok_bytes = 2 * s->D;
}

static void put_token(const cq_kernels *k, cq_store *s, uint32_t t, const uint16_t *x) {
    (void)k;
    memcpy(cq_store_codes(s, t), x, (size_t)s->D * 2);
}

static cq_status read(const cq_store *s, const cq_kernels *k, uint32_t t0, uint32_t t1,
                      float *out) {
    for (uint32_t t = t0; t < t1; t++)
        k->f16_to_f32((const uint16_t *)cq_store_codes(s, t), out + (size_t)(t - t0) * s->D, s->D);
    return CQ_OK;
}

static void export(const cq_store *s, uint8_t *dst) { cq_store_export_tokens(s, dst, 1); }

/* persistence: every value finite; the codes are native fp16 in the pages */
static cq_status check(const cq_store *s, const uint8_t *d, uint32_t n_done, uint32_t tail_g,
                       const char *where, cq_err *err) {
    (void)tail_g;
    if (!cq_fused_all_finite(d, (size_t)n_done * s->D))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: non-finite fp16 token", where);
    return CQ_OK;
}

static void import(cq_store *s, const uint8_t *d) {
    for (uint32_t t = 0; t < s->n_done; t++)
        cq_get_u16le_n((uint16_t *)cq_store_codes(s, t), d + (size_t)t * s->tok_bytes, s->D);
}

static void scores(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n, const float *q,
                   uint32_t nh, run_scratch *sc) {
    k->dot_f16(q, nh, (const uint16_t *)cq_store_codes(s, u), n, s->D, sc->s, BLK);
}

static void acc(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n, const float *w,
                uint32_t nh, float *a, run_scratch *sc) {
    (void)sc;
    k->acc_f16(w, BLK, nh, (const uint16_t *)cq_store_codes(s, u), n, s->D, a);
}

const cq_fused_ops cq_fused_fp16 = {
    .name = "fp16",
    .kind = ST_F16,
    .per_token = 1,
    .has_scales = 0,
    .layout = layout,
    .put_token = put_token,
    .read = read,
    .export_len = cq_store_export_tokens_len,
    .export = export,
    .data_len = cq_fused_tokens_data_len,
    .check = check,
    .import = import,
    .scores = scores,
    .acc = acc,
};
