/* SPDX-License-Identifier: MIT */
/*
 * codec_int4_channel.c - the "int4-channel" baseline (BASELINES.md section 1):
 * keys INT4 with one fp16 scale per channel over the WHOLE sequence (the
 * [T][D] block), values INT4 per token; CONTRACT.md section 3 arithmetic.
 * Offline: a channel's scale needs every token, so it cannot be streamed.
 * It equals CQ-4 keys with one group of G = T tokens; the bytes are those of
 * cq_tier.c.
 * Layout: keys [T][D] nibbles (token-major, element 2i low) | D fp16 scales;
 *         values [T][D] nibbles | T fp16 scales (LE). Keys 4 + 16/T bits/value,
 *         values 4 + 16/D.
 */
#include <stdlib.h>

#include "blockfmt.h"
#include "cq_codec.h"

/* Keys: CQ-4 with one group of G = T tokens. Values: per-token INT4 (blockfmt.c). */
static cq_status ic_params(const cq_codec_cfg *cfg, uint32_t T, cq_params *p) {
    return cq_params_init(p, CQ_TIER_CQ4, cfg->dim, T ? T : 1, NULL, 0, NULL);
}

static size_t ic_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    if (role == CQ_ROLE_VALUE) return cq_tokint_bytes(cfg, 4, T);
    cq_params p;
    cq_stream_sizes s;
    if (ic_params(cfg, T, &p) || cq_stream_sizes_of(&p, T, &s)) return 0;
    return s.key_payload + 2 * s.key_scales;
}

static cq_status ic_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                           uint8_t *dst, size_t cap, cq_err *err) {
    if (role == CQ_ROLE_VALUE) return cq_tokint_encode("int4-channel", 4, cfg, x, T, dst, cap, err);
    cq_err_clear(err);
    if (!cfg || (T && (!x || !dst))) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    cq_params p;
    cq_stream_sizes s;
    cq_status st = ic_params(cfg, T, &p);
    if (st || (st = cq_stream_sizes_of(&p, T, &s)))
        return cq_err_set(err, st, -1, -1, "int4-channel: invalid D=%u or T=%u", cfg->dim, T);
    if (cap < s.key_payload + 2 * s.key_scales)
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "int4-channel: dst too small");
    if ((st = cq_refuse_nonfinite("int4-channel", x, T, cfg->dim, err))) return st;
    uint16_t *sc = malloc((s.key_scales + 1) * sizeof *sc);
    if (!sc) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_key_stream ks = {dst, sc, NULL};
    st = cq_encode_keys(&p, x, T, &ks, err);
    for (size_t i = 0; !st && i < s.key_scales; i++) cq_put_u16le(dst + s.key_payload + 2 * i, sc[i]);
    free(sc);
    return st;
}

static cq_status ic_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                           uint32_t T, float *out) {
    if (role == CQ_ROLE_VALUE) return cq_tokint_decode(4, cfg, src, len, T, out);
    if (!cfg || (T && (!src || !out))) return CQ_ERR_NULL;
    cq_params p;
    cq_stream_sizes s;
    cq_status st = ic_params(cfg, T, &p);
    if (st || (st = cq_stream_sizes_of(&p, T, &s))) return st;
    if (len != s.key_payload + 2 * s.key_scales) return CQ_ERR_BUFFER;
    uint16_t *sc = malloc((s.key_scales + 1) * sizeof *sc);
    if (!sc) return CQ_ERR_NOMEM;
    for (size_t i = 0; i < s.key_scales; i++) sc[i] = cq_get_u16le(src + s.key_payload + 2 * i);
    st = cq_decode_keys(&p, src, sc, NULL, T, out);
    free(sc);
    return st;
}

static double ic_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    if (role == CQ_ROLE_VALUE) return 4.0 + 16.0 / cfg->dim;
    return T ? 4.0 + 16.0 / T : 4.0;
}

const cq_codec_traits cq_codec_int4_channel = {
    .id = CQ_CODEC_INT4_CHANNEL, .name = "int4-channel", .family = "int",
    .layout = "K: INT4 per channel over all T: [T][D] nibbles | D fp16 scales; "
              "V: INT4 per token: [T][D] nibbles | T fp16 scales",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_OFFLINE,
    .packed_bytes = ic_bytes, .encode = ic_encode, .decode = ic_decode,
    .modeled_bpv = ic_modeled,
};
