/* SPDX-License-Identifier: MIT */
/*
 * codec_int4_token.c - the naive "int4-token" baseline (BASELINES.md section
 * 1): keys and values alike INT4 with one fp16 scale per token, by the rules
 * of CONTRACT.md section 3 (scale = fp16(max(amax/7, 2^-14)), round half to
 * even, clamp [-8, 7]). Per-token keys are what collapses on GQA models: a
 * few large key channels set every token's scale.
 * Layout: [T][D] nibbles (element 2i low nibble, token-major) | T fp16 scales
 * (LE), i.e. the CQ-4 value stream. 4 + 16/D bits/value.
 */
#include "blockfmt.h"

static size_t i4_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role;
    return cq_tokint_bytes(cfg, 4, T);
}

static cq_status i4_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                           uint8_t *dst, size_t cap, cq_err *err) {
    (void)role;
    return cq_tokint_encode("int4-token", 4, cfg, x, T, dst, cap, err);
}

static cq_status i4_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                           uint32_t T, float *out) {
    (void)role;
    return cq_tokint_decode(4, cfg, src, len, T, out);
}

static double i4_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role, (void)T;
    return 4.0 + 16.0 / cfg->dim;
}

const cq_codec_traits cq_codec_int4_token = {
    .id = CQ_CODEC_INT4_TOKEN, .name = "int4-token", .family = "int",
    .layout = "INT4 per token: [T][D] nibbles (2i low) | T fp16 scales",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .packed_bytes = i4_bytes, .encode = i4_encode, .decode = i4_decode,
    .modeled_bpv = i4_modeled,
};
