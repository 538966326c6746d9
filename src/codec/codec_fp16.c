/* SPDX-License-Identifier: MIT */
/*
 * codec_fp16.c - the identity codec: the fp16 reference every table starts
 * from. Packed form: the fp16 bit patterns, little-endian, [T][D].
 */
#include <string.h>

#include "cq_codec.h"
#include "cq_registry.h"

static size_t fp16_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role;
    return (size_t)T * cfg->dim * 2;
}

static cq_status fp16_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                             uint8_t *dst, size_t cap, cq_err *err) {
    size_t n = (size_t)T * cfg->dim;
    if (cap < fp16_bytes(cfg, role, T)) return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "dst too small");
    uint32_t bt, bc;
    if (cq_find_nonfinite(x, T, cfg->dim, &bt, &bc))
        return cq_err_set(err, CQ_ERR_NONFINITE, bt, (int32_t)bc,
                          "non-finite input at token %u, channel %u", bt, bc);
    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = (uint8_t)x[i];
        dst[2 * i + 1] = (uint8_t)(x[i] >> 8);
    }
    return CQ_OK;
}

static cq_status fp16_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                             uint32_t T, float *out) {
    if (len != fp16_bytes(cfg, role, T)) return CQ_ERR_BUFFER;
    size_t n = (size_t)T * cfg->dim;
    for (size_t i = 0; i < n; i++)
        out[i] = cq_f16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
    return CQ_OK;
}

static double fp16_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)cfg, (void)role, (void)T;
    return 16.0;
}

const cq_codec_traits cq_codec_fp16 = {
    .id = CQ_CODEC_FP16,
    .name = "fp16",
    .family = "reference",
    .layout = "[T][D] fp16, little-endian",
    .bits = 16.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING | CQ_CODEC_F_EXACT,
    .packed_bytes = fp16_bytes,
    .encode = fp16_encode,
    .decode = fp16_decode,
    .modeled_bpv = fp16_modeled,
};
