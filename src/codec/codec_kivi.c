/* SPDX-License-Identifier: MIT */
/*
 * codec_kivi.c - KIVI-4 and KIVI-2 (Liu et al., ICML 2024; BASELINES.md
 * section 1): asymmetric min/scale quantization, keys per channel over token
 * groups of 32, values per token over channel groups of 32, with KIVI's fp16
 * residual windows of R = cfg->residual tokens (a multiple of 32; default 128;
 * 0 = no window). One method at two bit widths b = 4 and b = 2, so one file.
 *
 * Arithmetic of one group of n fp16 values x (exact; no fp16 intermediates):
 *   mn = min x, mx = max x                      (fp16 values, stored as is)
 *   s  = fp16_RNE((mx - mn) / (2^b - 1))        (difference exact in double,
 *                                                quotient rounded once to fp16)
 *   q  = s == 0 ? 0 : clamp(round_half_even((x - mn) / s), 0, 2^b - 1)
 *        ((x - mn) / s evaluated in double)
 *   x_hat = fp32(q * s + mn)                    (q * s is exact in fp32; one
 *                                                rounding for the sum)
 *
 * What a [T][D] block holds: the state of a KIVI cache that has received
 * tokens 0..T-1, in order, starting empty (KIVI's prefill and decode paths
 * agree on it):
 *   keys:   the first nk = floor(T / R) * R tokens are quantized, in groups of
 *           32 consecutive tokens per channel (KIVI fills an fp16 buffer of R
 *           tokens and quantizes it when full); the last T - nk tokens are
 *           the fp16 residual.
 *   values: the first nv = max(0, T - R) tokens are quantized, each token in
 *           D/32 groups of 32 consecutive channels (KIVI keeps a sliding fp16
 *           window of the last R tokens and quantizes the token that leaves
 *           it); the last min(T, R) tokens are the fp16 residual.
 *   R = 0:  no window: nk = nv = T; the last key group may then be partial
 *           (n < 32 tokens, min/max over the tokens present).
 * Residual tokens decode exactly (their fp16 widened to fp32).
 *
 * Packed layout (all fp16 little-endian; code i of a stream at bits
 * [b*i, b*i + b) LSB-first, b divides 8 so no code straddles bytes):
 *   keys:   per key group of n tokens: mins [D] fp16 | scales [D] fp16 |
 *           D channel streams of ceil(n*b/8) bytes (channel c's n codes,
 *           token order); then the residual [T - nk][D] fp16.
 *   values: per quantized token: mins [D/32] fp16 | scales [D/32] fp16 |
 *           D*b/8 bytes of codes (channel order); then the residual
 *           [T - nv][D] fp16.
 * Per 32 coded values: 32b bits + 2 x 16 bits = KIVI's "+1 bpv" (5.0 / 3.0
 * bits/value), plus the fp16 window.
 *
 * Streaming (unit_tokens): keys R (32 when R = 0): a cache that holds up to R
 * key tokens in fp16 and encodes each full [R][D] unit reproduces KIVI's key
 * policy exactly (a T = R block is all quantized). Values 1: KIVI's value
 * window slides, which the fill-then-encode unit model cannot express; a
 * cache reproduces it by keeping the last R value tokens in fp16 itself and
 * encoding each token that leaves the window with cfg->residual = 0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blockfmt.h"
#include "cq_codec.h"

#define KIVI_GROUP 32

static cq_status kivi_check_cfg(const cq_codec_cfg *cfg, cq_role role) {
    if (!cfg) return CQ_ERR_NULL;
    if (cfg->residual % KIVI_GROUP) return CQ_ERR_ARG;
    if (role == CQ_ROLE_VALUE && (cfg->dim == 0 || cfg->dim % KIVI_GROUP)) return CQ_ERR_DIM;
    if (role == CQ_ROLE_KEY && cfg->dim == 0) return CQ_ERR_DIM;
    return CQ_OK;
}

/* Tokens of a T-token block that are quantized (the rest is the fp16 residual). */
static uint32_t kivi_quantized(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    const uint32_t R = cfg->residual;
    if (R == 0) return T;
    if (role == CQ_ROLE_KEY) return T / R * R;
    return T > R ? T - R : 0;
}

static size_t stream_bytes(uint32_t n, unsigned b) { return ((size_t)n * b + 7) / 8; }

static size_t key_group_bytes(uint32_t D, uint32_t n, unsigned b) {
    return 4 * (size_t)D + (size_t)D * stream_bytes(n, b);
}

static size_t val_token_bytes(uint32_t D, unsigned b) {
    return 4 * (size_t)(D / KIVI_GROUP) + (size_t)D * b / 8;
}

static size_t kivi_size(const cq_codec_cfg *cfg, cq_role role, uint32_t T, unsigned b) {
    if (kivi_check_cfg(cfg, role)) return 0;
    const uint32_t D = cfg->dim, nq = kivi_quantized(cfg, role, T);
    size_t bytes = 2 * (size_t)(T - nq) * D;
    if (role == CQ_ROLE_VALUE) return bytes + (size_t)nq * val_token_bytes(D, b);
    uint32_t full = nq / KIVI_GROUP, tail = nq % KIVI_GROUP;
    bytes += (size_t)full * key_group_bytes(D, KIVI_GROUP, b);
    if (tail) bytes += key_group_bytes(D, tail, b);
    return bytes;
}

/* Quantize n fp16 values x[i * stride]: writes mn, s and n codes into the
 * LSB-first stream at `codes` (zeroed first). */
static void quant_group(const uint16_t *x, size_t n, size_t stride, unsigned b, uint16_t *mn_out,
                        uint16_t *s_out, uint8_t *codes) {
    const int qmax = (1 << b) - 1;
    float mn = cq_f16_to_f32(x[0]), mx = mn;
    uint16_t mn_h = x[0];
    for (size_t i = 1; i < n; i++) {
        float v = cq_f16_to_f32(x[i * stride]);
        if (v < mn) mn = v, mn_h = x[i * stride];
        if (v > mx) mx = v;
    }
    const uint16_t s_h = cq_f64_to_f16(((double)mx - (double)mn) / qmax);
    const double s = cq_f16_to_f32(s_h);
    memset(codes, 0, stream_bytes((uint32_t)n, b));
    for (size_t i = 0; i < n; i++) {
        int q = 0;
        if (s > 0.0) {
            double r = rint(((double)cq_f16_to_f32(x[i * stride]) - mn) / s);
            q = r < 0.0 ? 0 : r > qmax ? qmax : (int)r;
        }
        size_t bit = i * b;
        codes[bit / 8] = (uint8_t)(codes[bit / 8] | (q << (bit % 8)));
    }
    *mn_out = mn_h;
    *s_out = s_h;
}

static inline float dequant(const uint8_t *codes, size_t i, unsigned b, float s, float mn) {
    size_t bit = i * b;
    int q = (codes[bit / 8] >> (bit % 8)) & ((1 << b) - 1);
    return (float)q * s + mn;
}

static cq_status kivi_encode_b(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                               uint8_t *dst, size_t cap, cq_err *err, unsigned b, const char *name) {
    cq_err_clear(err);
    if (!cfg || (T && (!x || !dst))) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    cq_status st = kivi_check_cfg(cfg, role);
    if (st == CQ_ERR_ARG)
        return cq_err_set(err, st, -1, -1, "%s: residual R=%u is not a multiple of 32", name,
                          cfg->residual);
    if (st)
        return cq_err_set(err, st, -1, -1, "%s: D=%u unsupported (values need D %% 32 == 0)",
                          name, cfg->dim);
    if (cap < kivi_size(cfg, role, T, b))
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "%s: dst too small", name);
    if ((st = cq_refuse_nonfinite(name, x, T, cfg->dim, err))) return st;
    const uint32_t D = cfg->dim, nq = kivi_quantized(cfg, role, T);
    uint8_t *p = dst;
    if (role == CQ_ROLE_KEY) {
        for (uint32_t t0 = 0; t0 < nq; t0 += KIVI_GROUP) {
            const uint32_t n = nq - t0 < KIVI_GROUP ? nq - t0 : KIVI_GROUP;
            const size_t sb = stream_bytes(n, b);
            uint8_t *codes = p + 4 * (size_t)D;
            for (uint32_t c = 0; c < D; c++) {
                uint16_t mn, s;
                quant_group(x + (size_t)t0 * D + c, n, D, b, &mn, &s, codes + c * sb);
                cq_put_u16le(p + 2 * (size_t)c, mn);
                cq_put_u16le(p + 2 * ((size_t)D + c), s);
            }
            p += key_group_bytes(D, n, b);
        }
    } else {
        const uint32_t ng = D / KIVI_GROUP;
        for (uint32_t t = 0; t < nq; t++) {
            uint8_t *codes = p + 4 * (size_t)ng;
            for (uint32_t g = 0; g < ng; g++) {
                uint16_t mn, s;
                quant_group(x + (size_t)t * D + g * KIVI_GROUP, KIVI_GROUP, 1, b, &mn, &s,
                            codes + stream_bytes(g * KIVI_GROUP, b));
                cq_put_u16le(p + 2 * (size_t)g, mn);
                cq_put_u16le(p + 2 * ((size_t)ng + g), s);
            }
            p += val_token_bytes(D, b);
        }
    }
    for (size_t i = (size_t)nq * D; i < (size_t)T * D; i++, p += 2) cq_put_u16le(p, x[i]);
    return CQ_OK;
}

static cq_status kivi_decode_b(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src,
                               size_t len, uint32_t T, float *out, unsigned b) {
    if (!cfg || (T && (!src || !out))) return CQ_ERR_NULL;
    cq_status st = kivi_check_cfg(cfg, role);
    if (st) return st;
    if (len != kivi_size(cfg, role, T, b)) return CQ_ERR_BUFFER;
    const uint32_t D = cfg->dim, nq = kivi_quantized(cfg, role, T);
    const uint8_t *p = src;
    if (role == CQ_ROLE_KEY) {
        for (uint32_t t0 = 0; t0 < nq; t0 += KIVI_GROUP) {
            const uint32_t n = nq - t0 < KIVI_GROUP ? nq - t0 : KIVI_GROUP;
            const size_t sb = stream_bytes(n, b);
            const uint8_t *codes = p + 4 * (size_t)D;
            for (uint32_t c = 0; c < D; c++) {
                const float mn = cq_f16_to_f32(cq_get_u16le(p + 2 * (size_t)c));
                const float s = cq_f16_to_f32(cq_get_u16le(p + 2 * ((size_t)D + c)));
                for (uint32_t i = 0; i < n; i++)
                    out[(size_t)(t0 + i) * D + c] = dequant(codes + c * sb, i, b, s, mn);
            }
            p += key_group_bytes(D, n, b);
        }
    } else {
        const uint32_t ng = D / KIVI_GROUP;
        for (uint32_t t = 0; t < nq; t++) {
            const uint8_t *codes = p + 4 * (size_t)ng;
            for (uint32_t c = 0; c < D; c++) {
                const uint32_t g = c / KIVI_GROUP;
                const float mn = cq_f16_to_f32(cq_get_u16le(p + 2 * (size_t)g));
                const float s = cq_f16_to_f32(cq_get_u16le(p + 2 * ((size_t)ng + g)));
                out[(size_t)t * D + c] = dequant(codes, c, b, s, mn);
            }
            p += val_token_bytes(D, b);
        }
    }
    for (size_t i = (size_t)nq * D; i < (size_t)T * D; i++, p += 2)
        out[i] = cq_f16_to_f32(cq_get_u16le(p));
    return CQ_OK;
}

/* Values slide: the newest R tokens stay fp16, each token leaving the window is
 * quantized on its own (cq_codec_traits.window_tokens). Keys: no window. */
static uint32_t kivi_window(const cq_codec_cfg *cfg, cq_role role) {
    return role == CQ_ROLE_VALUE ? cfg->residual : 0;
}

static uint32_t kivi_unit(const cq_codec_cfg *cfg, cq_role role) {
    if (role == CQ_ROLE_VALUE) return 1;
    return cfg->residual ? cfg->residual : KIVI_GROUP;
}

#define DEFINE_KIVI(SYM, BITS, NAME)                                                               \
    static cq_status SYM##_check(const cq_codec_cfg *cfg, cq_role role) {                          \
        return kivi_check_cfg(cfg, role);                                                          \
    }                                                                                              \
    static size_t SYM##_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {                 \
        return kivi_size(cfg, role, T, BITS);                                                      \
    }                                                                                              \
    static cq_status SYM##_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x,        \
                                  uint32_t T, uint8_t *dst, size_t cap, cq_err *err) {             \
        return kivi_encode_b(cfg, role, x, T, dst, cap, err, BITS, NAME);                          \
    }                                                                                              \
    static cq_status SYM##_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src,       \
                                  size_t len, uint32_t T, float *out) {                            \
        return kivi_decode_b(cfg, role, src, len, T, out, BITS);                                   \
    }                                                                                              \
    static double SYM##_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {               \
        (void)cfg, (void)role, (void)T;                                                            \
        return BITS + 32.0 / KIVI_GROUP; /* KIVI's figure: 2 fp16 per 32 values */                 \
    }

DEFINE_KIVI(kivi4, 4, "kivi-4")
DEFINE_KIVI(kivi2, 2, "kivi-2")

const cq_codec_traits cq_codec_kivi4 = {
    .id = CQ_CODEC_KIVI4, .name = "kivi-4", .family = "kivi",
    .layout = "K: per 32-token group: D fp16 min | D fp16 scale | D x 16 B codes, then fp16 "
              "residual; V: per token: D/32 min | D/32 scale | D/2 B, then last R tokens fp16",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .check = kivi4_check, .packed_bytes = kivi4_bytes, .encode = kivi4_encode,
    .decode = kivi4_decode, .modeled_bpv = kivi4_modeled, .unit_tokens = kivi_unit,
    .window_tokens = kivi_window,
};

const cq_codec_traits cq_codec_kivi2 = {
    .id = CQ_CODEC_KIVI2, .name = "kivi-2", .family = "kivi",
    .layout = "as kivi-4 with 2-bit codes (8 B per channel per key group, D/4 B per value token)",
    .bits = 2.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .check = kivi2_check, .packed_bytes = kivi2_bytes, .encode = kivi2_encode,
    .decode = kivi2_decode, .modeled_bpv = kivi2_modeled, .unit_tokens = kivi_unit,
    .window_tokens = kivi_window,
};
