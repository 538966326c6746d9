/*
 * codec_int8_token.c - the "int8-token" baseline (BASELINES.md section 1):
 * keys and values alike INT8 with one fp16 scale per token, by the rules of
 * CONTRACT.md section 3 (symmetric, scale = fp16(max(amax/127, 2^-14)),
 * round half to even). It is CQ-8 under a baseline name, so that sweeps list
 * the plain integer family on its own; the bytes are those of cq_tier.c.
 * Layout: [T][D] int8 codes | T fp16 scales (LE). 8 + 16/D bits/value.
 */
#include "blockfmt.h"
#include "cq_codec.h"

static size_t i8_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role;
    return (size_t)T * cfg->dim + 2 * (size_t)T;
}

static cq_status i8_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                           uint8_t *dst, size_t cap, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || (T && (!x || !dst))) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (cap < i8_bytes(cfg, role, T))
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "int8-token: dst too small");
    cq_status st = cq_refuse_nonfinite("int8-token", x, T, cfg->dim, err);
    if (st) return st;
    const uint32_t D = cfg->dim;
    uint8_t *scales = dst + (size_t)T * D;
    for (uint32_t t = 0; t < T; t++) {
        uint16_t s;
        st = cq_encode_token(x + (size_t)t * D, D, 8, dst + (size_t)t * D, &s, t, err);
        if (st) return st;
        cq_put_u16le(scales + 2 * (size_t)t, s);
    }
    return CQ_OK;
}

static cq_status i8_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                           uint32_t T, float *out) {
    if (!cfg || (T && (!src || !out))) return CQ_ERR_NULL;
    if (len != i8_bytes(cfg, role, T)) return CQ_ERR_BUFFER;
    const uint32_t D = cfg->dim;
    const uint8_t *scales = src + (size_t)T * D;
    for (uint32_t t = 0; t < T; t++)
        cq_decode_token(src + (size_t)t * D, cq_get_u16le(scales + 2 * (size_t)t), D, 8,
                        out + (size_t)t * D);
    return CQ_OK;
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
