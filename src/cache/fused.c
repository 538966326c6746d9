/* SPDX-License-Identifier: MIT */
/*
 * fused.c - the table of the cache's fused formats (fused.h): which cq_fused_ops a
 * (codec, role) uses. One row per format and role; a codec without a row goes through
 * the generic path. The formats themselves: fused_fp16.c, fused_int8.c, fused_int4v.c,
 * fused_cq4k.c.
 */
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
