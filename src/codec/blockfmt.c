/* SPDX-License-Identifier: MIT */
/*
 * blockfmt.c - the shared driver of per-token block codecs (see blockfmt.h):
 * size, check, encode and decode of a [T][D] block given one codec's block
 * quantizer. The methods themselves live in their own codec files.
 */
#include <string.h>

#include "blockfmt.h"
#include "cq_codec.h"

cq_status cq_refuse_nonfinite(const char *codec, const uint16_t *x, uint32_t T, uint32_t D,
                              cq_err *err) {
    uint32_t bt, bc;
    if (!cq_find_nonfinite(x, T, D, &bt, &bc)) return CQ_OK;
    return cq_err_set(err, CQ_ERR_NONFINITE, bt, (int32_t)bc,
                      "%s: non-finite input at token %u, channel %u (fp16 0x%04x): refused, "
                      "nothing written",
                      codec, bt, bc, x[(size_t)bt * D + bc]);
}

cq_status cq_blockfmt_check(const cq_blockfmt *f, const cq_codec_cfg *cfg) {
    if (!cfg) return CQ_ERR_NULL;
    return cfg->dim && cfg->dim % f->block == 0 ? CQ_OK : CQ_ERR_DIM;
}

size_t cq_blockfmt_bytes(const cq_blockfmt *f, const cq_codec_cfg *cfg, uint32_t T) {
    if (cq_blockfmt_check(f, cfg)) return 0;
    return (size_t)T * (cfg->dim / f->block) * f->bytes;
}

cq_status cq_blockfmt_encode(const cq_blockfmt *f, const cq_codec_cfg *cfg, const uint16_t *x,
                             uint32_t T, uint8_t *dst, size_t cap, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || (T && (!x || !dst))) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (cq_blockfmt_check(f, cfg))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "%s: D=%u is not a multiple of %u", f->name,
                          cfg->dim, f->block);
    if (cap < cq_blockfmt_bytes(f, cfg, T))
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "%s: dst too small", f->name);
    cq_status st = cq_refuse_nonfinite(f->name, x, T, cfg->dim, err);
    if (st) return st;
    const uint32_t D = cfg->dim, B = f->block;
    float buf[64]; /* B <= 64 for every block format */
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t c0 = 0; c0 < D; c0 += B) {
            for (uint32_t j = 0; j < B; j++) buf[j] = cq_f16_to_f32(x[(size_t)t * D + c0 + j]);
            f->quantize(buf, dst);
            dst += f->bytes;
        }
    return CQ_OK;
}

cq_status cq_blockfmt_decode(const cq_blockfmt *f, const cq_codec_cfg *cfg, const uint8_t *src,
                             size_t len, uint32_t T, float *out) {
    if (!cfg || (T && (!src || !out))) return CQ_ERR_NULL;
    if (cq_blockfmt_check(f, cfg)) return CQ_ERR_DIM;
    if (len != cq_blockfmt_bytes(f, cfg, T)) return CQ_ERR_BUFFER;
    size_t nblocks = (size_t)T * (cfg->dim / f->block);
    for (size_t i = 0; i < nblocks; i++) f->dequantize(src + i * f->bytes, out + i * f->block);
    return CQ_OK;
}

size_t cq_tokint_bytes(const cq_codec_cfg *cfg, unsigned bits, uint32_t T) {
    return (size_t)T * cq_token_bytes(cfg->dim, bits) + 2 * (size_t)T;
}

cq_status cq_tokint_encode(const char *name, unsigned bits, const cq_codec_cfg *cfg,
                           const uint16_t *x, uint32_t T, uint8_t *dst, size_t cap, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || (T && (!x || !dst))) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (cap < cq_tokint_bytes(cfg, bits, T))
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "%s: dst too small", name);
    cq_status st = cq_refuse_nonfinite(name, x, T, cfg->dim, err);
    if (st) return st;
    const uint32_t D = cfg->dim;
    const size_t tb = cq_token_bytes(D, bits);
    uint8_t *scales = dst + (size_t)T * tb;
    for (uint32_t t = 0; t < T; t++) {
        uint16_t s;
        st = cq_encode_token(x + (size_t)t * D, D, bits, dst + (size_t)t * tb, &s, t, err);
        if (st) return st; /* only an invalid D gets here, before anything is written */
        cq_put_u16le(scales + 2 * (size_t)t, s);
    }
    return CQ_OK;
}

cq_status cq_tokint_decode(unsigned bits, const cq_codec_cfg *cfg, const uint8_t *src, size_t len,
                           uint32_t T, float *out) {
    if (!cfg || (T && (!src || !out))) return CQ_ERR_NULL;
    if (len != cq_tokint_bytes(cfg, bits, T)) return CQ_ERR_BUFFER;
    const uint32_t D = cfg->dim;
    const size_t tb = cq_token_bytes(D, bits);
    const uint8_t *scales = src + (size_t)T * tb;
    for (uint32_t t = 0; t < T; t++)
        cq_decode_token(src + (size_t)t * tb, cq_get_u16le(scales + 2 * (size_t)t), D, bits,
                        out + (size_t)t * D);
    return CQ_OK;
}
