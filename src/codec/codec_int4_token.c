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
#include "cq_codec.h"

static size_t i4_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role;
    return (size_t)T * (cfg->dim / 2) + 2 * (size_t)T;
}

static cq_status i4_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                           uint8_t *dst, size_t cap, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || (T && (!x || !dst))) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (cap < i4_bytes(cfg, role, T))
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "int4-token: dst too small");
    cq_status st = cq_refuse_nonfinite("int4-token", x, T, cfg->dim, err);
    if (st) return st;
    const uint32_t D = cfg->dim;
    const size_t tb = D / 2;
    uint8_t *scales = dst + (size_t)T * tb;
    for (uint32_t t = 0; t < T; t++) {
        uint16_t s;
        st = cq_encode_token(x + (size_t)t * D, D, 4, dst + (size_t)t * tb, &s, t, err);
        if (st) return st;
        cq_put_u16le(scales + 2 * (size_t)t, s);
    }
    return CQ_OK;
}

static cq_status i4_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                           uint32_t T, float *out) {
    if (!cfg || (T && (!src || !out))) return CQ_ERR_NULL;
    if (len != i4_bytes(cfg, role, T)) return CQ_ERR_BUFFER;
    const uint32_t D = cfg->dim;
    const size_t tb = D / 2;
    const uint8_t *scales = src + (size_t)T * tb;
    for (uint32_t t = 0; t < T; t++)
        cq_decode_token(src + (size_t)t * tb, cq_get_u16le(scales + 2 * (size_t)t), D, 4,
                        out + (size_t)t * D);
    return CQ_OK;
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
