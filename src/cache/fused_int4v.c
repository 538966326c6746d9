/* SPDX-License-Identifier: MIT */
/*
 * fused_int4v.c - the INT4 value store of CQ-4 / CQ-4+ (fused.h): INT4 codes per token
 * with one fp16 scale per token (cq_encode_token, bits 4). Held as value blocks
 * (cq_tiles.h) when head_dim is a multiple of 32 and the page size of CQ_VB_TOK, else as
 * the contract's rows: a function of the shape only, so the bytes never depend on the
 * kernel table. Attention: acc_i4 / acc_i4q over rows, acc_i4t / acc_i4tq over blocks.
 */
#include "fused.h"

static void layout(cq_store *s, uint32_t P) {
    s->tok_bytes = s->D / 2;
    s->tiled = s->D % 32 == 0 && P % CQ_VB_TOK == 0;
}

static void put_token(const cq_kernels *k, cq_store *s, uint32_t t, const uint16_t *x) {
    if (s->tiled) { /* the contract's bytes, then into the value block */
        uint8_t codes[CQ_MAX_DIM / 2];
        k->enc_token(x, s->D, 4, codes, cq_store_scale(s, t));
        cq_store_put_codes(s, t, codes);
    } else {
        k->enc_token(x, s->D, 4, cq_store_codes(s, t), cq_store_scale(s, t));
    }
}

static cq_status read(const cq_store *s, const cq_kernels *k, uint32_t t0, uint32_t t1,
                      float *out) {
    (void)k;
    uint8_t tmp[CQ_MAX_DIM / 2];
    for (uint32_t t = t0; t < t1; t++) {
        const uint8_t *codes = cq_store_codes(s, t);
        if (s->tiled) cq_store_get_codes(s, t, tmp), codes = tmp;
        cq_decode_token(codes, *cq_store_scale(s, t), s->D, 4, out + (size_t)(t - t0) * s->D);
    }
    return CQ_OK;
}

static void export(const cq_store *s, uint8_t *dst) { cq_store_export_tokens(s, dst, 0); }

/* FAST: 7-bit dithered weights, integer sums (acc_i4q / acc_i4tq) */
static void acc(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n, const float *w,
                uint32_t nh, float *a, run_scratch *sc) {
    const int fast = sc->prec == CQ_ATTN_FAST;
    if (s->tiled)
        (fast ? k->acc_i4tq : k->acc_i4t)(w, BLK, nh, cq_store_vblock(s, u), u % CQ_VB_TOK,
                                          cq_store_scale(s, u), n, s->D, a);
    else
        (fast ? k->acc_i4q : k->acc_i4)(w, BLK, nh, cq_store_codes(s, u), cq_store_scale(s, u), n,
                                        s->D, a);
}

const cq_fused_ops cq_fused_int4v = {
    .name = "int4 values",
    .kind = ST_I4V,
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
    .acc = acc,
};
