/* SPDX-License-Identifier: MIT */
/*
 * codec_outlier_top2.c - the "outlier-top2" baseline (BASELINES.md section 1,
 * the c17 "outlier" row): int4-channel keys, except that the 2 key channels
 * of largest max|K| over the block are chosen AT RUN TIME from the data and
 * kept as raw fp16 (lossless). Values INT4 per token. Offline, like
 * int4-channel. (ChannelQuant's CQ-4+ instead uses a static, calibrated set.)
 *
 * Channel choice: rank channels by max |K[t][c]| over the T tokens (fp16
 * magnitude compared as an integer), ties to the lower index; keep the top
 * 2, ascending. T = 0 picks channels 0 and 1.
 * Layout: keys  c0 (u16 LE) | c1 (u16 LE) | codes [T][D-2] nibbles (kept
 *         channels ascending, element 2i low, one zero-padded stream) |
 *         D-2 fp16 scales | sidecar [T][2] fp16 (the raw outlier values);
 *         values [T][D] nibbles | T fp16 scales. The bytes after the channel
 *         pair are exactly the CQ-4+ key streams with G = T (cq_tier.c).
 * Decoding refuses a channel pair that is not c0 < c1 < D (CQ_ERR_FORMAT).
 */
#include <stdlib.h>
#include <string.h>

#include "blockfmt.h"
#include "cq_codec.h"

#define TOP2_HDR 4

static cq_status ot_check(const cq_codec_cfg *cfg, cq_role role) {
    (void)role;
    if (!cfg) return CQ_ERR_NULL;
    return cfg->dim >= 4 ? CQ_OK : CQ_ERR_DIM; /* two outliers and at least two coded channels */
}

/* Keys: CQ-4+ with the run-time pair and one group of G = T tokens. Values: per-token
 * INT4 (blockfmt.c). */
static cq_status ot_params(const cq_codec_cfg *cfg, uint32_t T, uint16_t c0, uint16_t c1,
                           cq_params *p) {
    const uint16_t out[2] = {c0, c1};
    return cq_params_init(p, CQ_TIER_CQ4P, cfg->dim, T ? T : 1, out, 2, NULL);
}

static size_t key_bytes(const cq_stream_sizes *s) {
    return TOP2_HDR + s->key_payload + 2 * (s->key_scales + s->sidecar);
}

static size_t ot_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    if (ot_check(cfg, role)) return 0;
    if (role == CQ_ROLE_VALUE) return cq_tokint_bytes(cfg, 4, T);
    cq_params p;
    cq_stream_sizes s;
    if (ot_params(cfg, T, 0, 1, &p) || cq_stream_sizes_of(&p, T, &s)) return 0;
    return key_bytes(&s);
}

/* The two channels of largest max|x| (ties to the lower index), ascending. */
static void top2(const uint16_t *x, uint32_t T, uint32_t D, uint16_t *c0, uint16_t *c1) {
    int32_t best = -1, second = -1;
    uint16_t mb = 0, ms = 0;
    for (uint32_t c = 0; c < D; c++) {
        uint16_t m = cq_amax_f16(x + c, T, D);
        if (best < 0 || m > mb) { /* strict: an equal later channel never displaces */
            second = best, ms = mb;
            best = (int32_t)c, mb = m;
        } else if (second < 0 || m > ms) {
            second = (int32_t)c, ms = m;
        }
    }
    *c0 = (uint16_t)(best < second ? best : second);
    *c1 = (uint16_t)(best < second ? second : best);
}

static cq_status ot_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                           uint8_t *dst, size_t cap, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || !dst || (T && !x)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (ot_check(cfg, role))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "outlier-top2: D=%u < 4", cfg->dim);
    if (role == CQ_ROLE_VALUE) return cq_tokint_encode("outlier-top2", 4, cfg, x, T, dst, cap, err);
    cq_status st = cq_refuse_nonfinite("outlier-top2", x, T, cfg->dim, err);
    if (st) return st;
    uint16_t c0, c1;
    top2(x, T, cfg->dim, &c0, &c1);
    cq_params p;
    cq_stream_sizes s;
    if ((st = ot_params(cfg, T, c0, c1, &p)) || (st = cq_stream_sizes_of(&p, T, &s)))
        return cq_err_set(err, st, -1, -1, "outlier-top2: invalid D=%u or T=%u", cfg->dim, T);
    if (cap < key_bytes(&s))
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "outlier-top2: dst too small");
    const size_t nsc = s.key_scales + s.sidecar;
    uint16_t *sc = malloc((nsc + 1) * sizeof *sc);
    if (!sc) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_key_stream ks = {dst + TOP2_HDR, sc, sc + s.key_scales};
    st = cq_encode_keys(&p, x, T, &ks, err); /* input already validated: cannot fail */
    if (!st) {
        cq_put_u16le(dst, c0);
        cq_put_u16le(dst + 2, c1);
        for (size_t i = 0; i < nsc; i++)
            cq_put_u16le(dst + TOP2_HDR + s.key_payload + 2 * i, sc[i]);
    }
    free(sc);
    return st;
}

static cq_status ot_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                           uint32_t T, float *out) {
    if (!cfg || !src || (T && !out)) return CQ_ERR_NULL;
    if (ot_check(cfg, role)) return CQ_ERR_DIM;
    if (role == CQ_ROLE_VALUE) return cq_tokint_decode(4, cfg, src, len, T, out);
    if (len != ot_bytes(cfg, role, T)) return CQ_ERR_BUFFER;
    const uint16_t c0 = cq_get_u16le(src), c1 = cq_get_u16le(src + 2);
    if (!(c0 < c1 && c1 < cfg->dim)) return CQ_ERR_FORMAT;
    cq_params p;
    cq_stream_sizes s;
    cq_status st = ot_params(cfg, T, c0, c1, &p);
    if (st || (st = cq_stream_sizes_of(&p, T, &s))) return st;
    const size_t nsc = s.key_scales + s.sidecar;
    uint16_t *sc = malloc((nsc + 1) * sizeof *sc);
    if (!sc) return CQ_ERR_NOMEM;
    for (size_t i = 0; i < nsc; i++) sc[i] = cq_get_u16le(src + TOP2_HDR + s.key_payload + 2 * i);
    st = cq_decode_keys(&p, src + TOP2_HDR, sc, sc + s.key_scales, T, out);
    free(sc);
    return st;
}

static double ot_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    const double D = cfg->dim;
    if (role == CQ_ROLE_VALUE) return 4.0 + 16.0 / D;
    /* CONTRACT.md section 6's exact CQ-4+ key figure with G = T and k = 2 */
    return (4.0 * (D - 2) + (T ? 16.0 * (D - 2) / T : 0.0) + 32.0) / D;
}

const cq_codec_traits cq_codec_outlier_top2 = {
    .id = CQ_CODEC_OUTLIER_TOP2, .name = "outlier-top2", .family = "int",
    .layout = "K: u16 c0, c1 | [T][D-2] nibbles | D-2 fp16 scales (over all T) | [T][2] fp16 "
              "sidecar; V: INT4 per token",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_OFFLINE,
    .check = ot_check, .packed_bytes = ot_bytes, .encode = ot_encode, .decode = ot_decode,
    .modeled_bpv = ot_modeled,
};
