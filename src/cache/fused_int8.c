/* SPDX-License-Identifier: MIT */
/*
 * fused_int8.c - the CQ-8 store of the cache (fused.h): INT8 codes per token with one
 * fp16 scale per token (the contract's cq_encode_token, bits 8), keys or values;
 * attention with the token's scale applied inside the kernels (dot_i8 / acc_i8).
 */
#include "fused.h"

static void layout(cq_store *s, uint32_t P) {
    (void)P;
    s->tok_bytes = s->D;
}

static void put_token(const cq_kernels *k, cq_store *s, uint32_t t, const uint16_t *x) {
    k->enc_token(x, s->D, 8, cq_store_codes(s, t), cq_store_scale(s, t));
}

static cq_status read(const cq_store *s, const cq_kernels *k, uint32_t t0, uint32_t t1,
                      float *out) {
    (void)k;
    for (uint32_t t = t0; t < t1; t++)
        cq_decode_token(cq_store_codes(s, t), *cq_store_scale(s, t), s->D, 8,
                        out + (size_t)(t - t0) * s->D);
    return CQ_OK;
}

static void export(const cq_store *s, uint8_t *dst) { cq_store_export_tokens(s, dst, 0); }

static void scores(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n, const float *q,
                   uint32_t nh, run_scratch *sc) {
    k->dot_i8(q, nh, (const int8_t *)cq_store_codes(s, u), cq_store_scale(s, u), n, s->D, sc->s,
              BLK);
}

static void acc(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n, const float *w,
                uint32_t nh, float *a, run_scratch *sc) {
    (void)sc;
    k->acc_i8(w, BLK, nh, (const int8_t *)cq_store_codes(s, u), cq_store_scale(s, u), n, s->D, a);
}

const cq_fused_ops cq_fused_int8 = {
    .name = "int8",
    .kind = ST_I8,
    .per_token = 1,
    .has_scales = 1,
    .layout = layout,
    .put_token = put_token,
    .read = read,
    .export_len = cq_store_export_tokens_len,
    .export = export,
    .data_len = cq_fused_tokens_data_len,
    .check = cq_fused_tokens_check_scales,
    .import = cq_fused_tokens_import_scaled,
    .scores = scores,
    .acc = acc,
};
