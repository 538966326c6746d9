/* SPDX-License-Identifier: MIT */
/*
 * codec_int8_token.c - the "int8-token" baseline (BASELINES.md section 1):
 * keys and values alike INT8 with one fp16 scale per token, by the rules of
 * CONTRACT.md section 3 (symmetric, scale = fp16(max(amax/127, 2^-14)),
 * round half to even). It is CQ-8 under a baseline name, so that sweeps list
 * the plain integer family on its own; the bytes are those of cq_tier.c.
 * Layout: [T][D] int8 codes | T fp16 scales (LE). 8 + 16/D bits/value.
 */
#include "blockfmt.h"

static size_t i8_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role;
    return cq_tokint_bytes(cfg, 8, T);
}

static cq_status i8_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                           uint8_t *dst, size_t cap, cq_err *err) {
    (void)role;
    return cq_tokint_encode("int8-token", 8, cfg, x, T, dst, cap, err);
}

static cq_status i8_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                           uint32_t T, float *out) {
    (void)role;
    return cq_tokint_decode(8, cfg, src, len, T, out);
}

static double i8_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role, (void)T;
    return 8.0 + 16.0 / cfg->dim;
}

const cq_codec_traits cq_codec_int8_token = {
    .id = CQ_CODEC_INT8_TOKEN, .name = "int8-token", .family = "int",
    .layout = "INT8 per token (CQ-8 rules): [T][D] int8 | T fp16 scales",
    .bits = 8.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .packed_bytes = i8_bytes, .encode = i8_encode, .decode = i8_decode,
    .modeled_bpv = i8_modeled,
};
