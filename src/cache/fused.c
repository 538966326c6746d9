/* SPDX-License-Identifier: MIT */
/*
 * fused.c - the table of the cache's fused formats (fused.h): which cq_fused_ops a
 * (codec, role) uses. One row per format and role; a codec without a row goes through
 * the generic path. The formats themselves: fused_fp16.c, fused_int8.c, fused_int4v.c,
 * fused_cq4k.c. Also the persistence helpers the per-token formats share.
 */
#include "../core/cq_le.h"
#include "fused.h"

typedef struct fused_row {
    cq_codec_id id;
    int role;       /* CQ_ROLE_KEY, CQ_ROLE_VALUE, or -1 for both */
    int needs_mask; /* the configuration must carry outlier masks for this codec */
    const cq_fused_ops *ops;
} fused_row;

static const fused_row FUSED[] = {
    {CQ_CODEC_FP16, -1, 0, &cq_fused_fp16},
    {CQ_CODEC_CQ8, -1, 0, &cq_fused_int8},
    {CQ_CODEC_CQ4, CQ_ROLE_KEY, 0, &cq_fused_cq4k},
    {CQ_CODEC_CQ4P, CQ_ROLE_KEY, 1, &cq_fused_cq4k},
    {CQ_CODEC_CQ4, CQ_ROLE_VALUE, 0, &cq_fused_int4v},
    {CQ_CODEC_CQ4P, CQ_ROLE_VALUE, 0, &cq_fused_int4v},
};

const cq_fused_ops *cq_fused_find(cq_codec_id id, cq_role role) {
    for (size_t i = 0; i < sizeof FUSED / sizeof FUSED[0]; i++)
        if (FUSED[i].id == id && (FUSED[i].role < 0 || FUSED[i].role == (int)role))
            return FUSED[i].ops;
    return NULL;
}

int cq_fused_needs_mask(cq_codec_id id) {
    for (size_t i = 0; i < sizeof FUSED / sizeof FUSED[0]; i++)
        if (FUSED[i].id == id && FUSED[i].needs_mask) return 1;
    return 0;
}

/* ------------------------------------------------- shared by the per-token formats */

int cq_fused_is_scale(uint16_t s) {
    uint32_t e = (s >> 10) & 0x1F;
    return !(s & 0x8000) && e >= 1 && e <= 30;
}

int cq_fused_all_finite(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!cq_f16_is_finite(cq_get_u16le(p + 2 * i))) return 0;
    return 1;
}

uint64_t cq_fused_tokens_data_len(const cq_store *s, uint32_t n_done, uint32_t tail_g) {
    (void)tail_g; /* < 2^32 tokens x < 2^17 bytes: no overflow */
    return (uint64_t)n_done * ((uint64_t)s->tok_bytes + (s->fused->has_scales ? 2 : 0));
}

cq_status cq_fused_tokens_check_scales(const cq_store *s, const uint8_t *d, uint32_t n_done,
                                       uint32_t tail_g, const char *where, cq_err *err) {
    (void)tail_g;
    const uint8_t *sc = d + (size_t)n_done * s->tok_bytes;
    for (uint32_t t = 0; t < n_done; t++)
        if (!cq_fused_is_scale(cq_get_u16le(sc + 2 * (size_t)t)))
            return cq_err_set(err, CQ_ERR_FORMAT, t, -1,
                              "%s: token %u has scale 0x%04x (not a positive normal fp16)",
                              where, t, cq_get_u16le(sc + 2 * (size_t)t));
    return CQ_OK;
}

void cq_fused_tokens_import_scaled(cq_store *s, const uint8_t *d) {
    const uint32_t T = s->n_done;
    const uint8_t *sc = d + (size_t)T * s->tok_bytes;
    for (uint32_t t = 0; t < T; t++) {
        cq_store_put_codes(s, t, d + (size_t)t * s->tok_bytes);
        *cq_store_scale(s, t) = cq_get_u16le(sc + 2 * (size_t)t);
    }
}
