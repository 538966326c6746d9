/* SPDX-License-Identifier: MIT */
/*
 * codec_megaquant.c - the MegaQuant research methods (BASELINES.md section 6),
 * which the PoC only fake-quantized, here packed for real:
 *   affine_seven_level_3bit_g32 / _g64 / _g64_meta4 / _g64_meta8,
 *   affine_four_level_2bit_g64_meta8,
 *   hadamard_affine_four_level_2bit_g64_meta8 / _g32,
 *   channelwise_four_level_2bit, sink1_channelwise_four_level_2bit.
 *
 * Arithmetic is float32 with round-half-even (rintf), as the PoC's torch code:
 *   affine (per token, per group of G contiguous channels; the last group of
 *   a D that G does not divide is short):
 *     mn = min, mx = max, s = (mx - mn)/qmax + 1e-8, q = clamp(rint((x - mn)/s), 0, qmax)
 *   hadamard_*: y = FWHT(x (.) signs)/sqrt(D) (signs -1, +1, -1, ... from
 *     channel 0), affine on y, x_hat = FWHT(y_hat)/sqrt(D) (.) signs; D a power of two.
 *   _metaB: the mn column and the s column of each group (over all tokens)
 *     are re-quantized between the column's min and max:
 *     step = (max - min)/(2^B - 1) + 1e-12, code = rint((m - min)/step).
 *   channelwise: per channel over all tokens s_c = 0.6 median|x| + 0.4 mean|x| + 1e-8
 *     (median of an even count = mean of the two middle values, as numpy);
 *     |x| < 0.75 s -> +-0.55 s else +-1.85 s, sign from x (x = 0 and -0 take +:
 *     four levels have no zero).
 *   sink1: the channelwise codes of the whole matrix (token 0 included in the
 *     statistics), then token 0 restored exactly (stored as fp16, no codes).
 * The codes are the PoC's (computed from the fp32 metadata); decode uses the
 * metadata as stored, i.e. at its stated width: fp16 mn and s for plain
 * methods, B-bit codes plus per-column fp16 min and range for _metaB, fp16
 * s_c for channelwise. That storage rounding is the only difference from the
 * fake-quantized PoC.
 *
 * Packed layouts (bit streams are LSB-first; [T][D] token-major):
 *   plain affine:  codes b-bit [T][D] | [T][ng] {fp16 mn, fp16 s}
 *   _metaB:        codes b-bit [T][D] | B-bit stream [T][ng]{mn code, s code}
 *                  | [ng] {fp16 mn_min, fp16 mn_range, fp16 s_min, fp16 s_range}
 *   channelwise:   codes 2-bit [T][D] (bit 0 = outer level, bit 1 = negative) | [D] fp16 s
 *   sink1:         token 0 as [D] fp16 | codes 2-bit [T-1][D] | [D] fp16 s
 * T = 0 packs to 0 bytes. Metadata that overflows fp16 (a Hadamard of huge
 * inputs) is refused with CQ_ERR_OVERFLOW, nothing written.
 *
 * Two accounting figures: packed_bytes (measured) and modeled_bpv, the PoC's
 * effective_bits_per_dim(dim, L):
 *   token groups: bits + ng*(scale_bits + zero_bits)/D + ng*fields*2*16/(L*D)
 *   channelwise:  bits + 16/L;  sink1 adds 1*(16 - 2)/L.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_bits.h"
#include "cq_codec.h"
#include "cq_registry.h"
#include "cq_util.h"

typedef struct mq_desc {
    unsigned bits;   /* code bits: 3 or 2 */
    uint32_t group;  /* channels per group (affine) */
    unsigned meta;   /* 0, 4 or 8 */
    int hadamard;
    int chan;        /* channelwise four-level */
    int sink;        /* sink1 over channelwise */
} mq_desc;

static mq_desc mq_of(cq_codec_id id) {
    switch (id) {
    case CQ_CODEC_MQ_A3_G32: return (mq_desc){3, 32, 0, 0, 0, 0};
    case CQ_CODEC_MQ_A3_G64: return (mq_desc){3, 64, 0, 0, 0, 0};
    case CQ_CODEC_MQ_A3_G64_META4: return (mq_desc){3, 64, 4, 0, 0, 0};
    case CQ_CODEC_MQ_A3_G64_META8: return (mq_desc){3, 64, 8, 0, 0, 0};
    case CQ_CODEC_MQ_A2_G64_META8: return (mq_desc){2, 64, 8, 0, 0, 0};
    case CQ_CODEC_MQ_H2_G64_META8: return (mq_desc){2, 64, 8, 1, 0, 0};
    case CQ_CODEC_MQ_H2_G32: return (mq_desc){2, 32, 0, 1, 0, 0};
    case CQ_CODEC_MQ_CW2: return (mq_desc){2, 0, 0, 0, 1, 0};
    default: return (mq_desc){2, 0, 0, 0, 1, 1}; /* CQ_CODEC_MQ_SINK1_CW2 */
    }
}

static uint32_t mq_groups(const mq_desc *m, uint32_t D) {
    return m->chan ? 0 : (D + m->group - 1) / m->group;
}

static cq_status mq_check_d(const mq_desc *m, uint32_t D) {
    if (D < CQ_MIN_DIM || D > CQ_MAX_DIM || (D & 1)) return CQ_ERR_DIM;
    return m->hadamard && !cq_is_pow2(D) ? CQ_ERR_DIM : CQ_OK;
}

/* Byte offsets of the sections of a packed block. */
typedef struct mq_sizes {
    size_t codes, meta, cols, total; /* offsets: codes at 0 (after token 0 for sink) */
    size_t sink;                     /* bytes of the raw token 0 (sink1) */
} mq_sizes;

static mq_sizes mq_sizes_of(const mq_desc *m, uint32_t D, uint32_t T) {
    mq_sizes s = {0, 0, 0, 0, 0};
    if (T == 0) return s;
    uint32_t ng = mq_groups(m, D);
    if (m->chan) {
        s.sink = m->sink ? (size_t)2 * D : 0;
        s.codes = cqb_stream_bytes((size_t)(m->sink ? T - 1 : T) * D, 2);
        s.cols = (size_t)2 * D;
    } else {
        s.codes = cqb_stream_bytes((size_t)T * D, m->bits);
        s.meta = m->meta ? cqb_stream_bytes((size_t)T * ng * 2, m->meta) : (size_t)T * ng * 4;
        s.cols = m->meta ? (size_t)ng * 8 : 0;
    }
    s.total = s.sink + s.codes + s.meta + s.cols;
    return s;
}

static float alt_sign(uint32_t c) { return (c & 1) ? 1.0f : -1.0f; }

/* ------------------------------------------------------------------ affine */

static cq_status affine_encode(const mq_desc *m, const char *name, uint32_t D, const uint16_t *x,
                               uint32_t T, uint8_t *out, cq_err *err) {
    uint32_t ng = mq_groups(m, D);
    unsigned qmax = (1u << m->bits) - 1u;
    mq_sizes sz = mq_sizes_of(m, D, T);
    float *mn = malloc(((size_t)T * ng + 1) * sizeof *mn);
    float *sc = malloc(((size_t)T * ng + 1) * sizeof *sc);
    if (!mn || !sc) {
        free(mn), free(sc);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    float y[CQ_MAX_DIM];
    for (uint32_t t = 0; t < T; t++) {
        for (uint32_t c = 0; c < D; c++) y[c] = cq_f16_to_f32(x[(size_t)t * D + c]);
        if (m->hadamard) {
            for (uint32_t c = 0; c < D; c++) y[c] *= alt_sign(c);
            cq_fwht_orthonormal_f32(y, D);
        }
        for (uint32_t g = 0; g < ng; g++) {
            uint32_t c0 = g * m->group, c1 = c0 + m->group < D ? c0 + m->group : D;
            float lo = y[c0], hi = y[c0];
            for (uint32_t c = c0 + 1; c < c1; c++) {
                lo = y[c] < lo ? y[c] : lo;
                hi = y[c] > hi ? y[c] : hi;
            }
            float s = (hi - lo) / (float)qmax + 1e-8f;
            for (uint32_t c = c0; c < c1; c++) {
                float q = rintf((y[c] - lo) / s);
                q = q < 0.0f ? 0.0f : q > (float)qmax ? (float)qmax : q;
                cqb_put_bits(out, (size_t)t * D + c, m->bits, (unsigned)q);
            }
            mn[(size_t)t * ng + g] = lo;
            sc[(size_t)t * ng + g] = s;
        }
    }
    cq_status st = CQ_OK;
    uint8_t *meta = out + sz.codes;
    if (!m->meta) {
        for (size_t i = 0; i < (size_t)T * ng && !st; i++) {
            uint16_t a = cq_f32_to_f16(mn[i]), b = cq_f32_to_f16(sc[i]);
            if (!cq_f16_is_finite(a) || !cq_f16_is_finite(b))
                st = cq_err_set(err, CQ_ERR_OVERFLOW, (int64_t)(i / ng), (int32_t)(i % ng * m->group),
                                "%s: group metadata of token %zu overflows fp16", name, i / ng);
            cqb_put16(meta + 4 * i, a);
            cqb_put16(meta + 4 * i + 2, b);
        }
    } else {
        unsigned cmax = (1u << m->meta) - 1u;
        uint8_t *cols = meta + sz.meta;
        for (uint32_t g = 0; g < ng && !st; g++)
            for (int f = 0; f < 2 && !st; f++) {
                const float *col = f ? sc : mn;
                float lo = col[g], hi = col[g];
                for (uint32_t t = 1; t < T; t++) {
                    float v = col[(size_t)t * ng + g];
                    lo = v < lo ? v : lo;
                    hi = v > hi ? v : hi;
                }
                float step = (hi - lo) / (float)cmax + 1e-12f;
                for (uint32_t t = 0; t < T; t++) {
                    float q = rintf((col[(size_t)t * ng + g] - lo) / step);
                    q = q < 0.0f ? 0.0f : q > (float)cmax ? (float)cmax : q;
                    cqb_put_bits(meta, ((size_t)t * ng + g) * 2 + (size_t)f, m->meta, (unsigned)q);
                }
                uint16_t a = cq_f32_to_f16(lo), b = cq_f32_to_f16(hi - lo);
                if (!cq_f16_is_finite(a) || !cq_f16_is_finite(b))
                    st = cq_err_set(err, CQ_ERR_OVERFLOW, -1, (int32_t)(g * m->group),
                                    "%s: column metadata of group %u overflows fp16", name, g);
                cqb_put16(cols + 8 * g + 4 * f, a);
                cqb_put16(cols + 8 * g + 4 * f + 2, b);
            }
    }
    free(mn), free(sc);
    return st;
}

static void affine_decode(const mq_desc *m, uint32_t D, const uint8_t *src, uint32_t T, float *out) {
    uint32_t ng = mq_groups(m, D);
    mq_sizes sz = mq_sizes_of(m, D, T);
    const uint8_t *meta = src + sz.codes, *cols = meta + sz.meta;
    unsigned cmax = m->meta ? (1u << m->meta) - 1u : 0;
    for (uint32_t t = 0; t < T; t++) {
        float *y = out + (size_t)t * D;
        for (uint32_t g = 0; g < ng; g++) {
            float lo, s;
            size_t i = (size_t)t * ng + g;
            if (!m->meta) {
                lo = cq_f16_to_f32(cqb_get16(meta + 4 * i));
                s = cq_f16_to_f32(cqb_get16(meta + 4 * i + 2));
            } else {
                float v[2];
                for (int f = 0; f < 2; f++) {
                    float cmin = cq_f16_to_f32(cqb_get16(cols + 8 * g + 4 * f));
                    float rng = cq_f16_to_f32(cqb_get16(cols + 8 * g + 4 * f + 2));
                    float step = rng / (float)cmax + 1e-12f;
                    v[f] = (float)cqb_get_bits(meta, i * 2 + (size_t)f, m->meta) * step + cmin;
                }
                lo = v[0], s = v[1];
            }
            uint32_t c0 = g * m->group, c1 = c0 + m->group < D ? c0 + m->group : D;
            for (uint32_t c = c0; c < c1; c++)
                y[c] = (float)cqb_get_bits(src, (size_t)t * D + c, m->bits) * s + lo;
        }
        if (m->hadamard) {
            cq_fwht_orthonormal_f32(y, D);
            for (uint32_t c = 0; c < D; c++) y[c] *= alt_sign(c);
        }
    }
}

/* ------------------------------------------------------------- channelwise */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static cq_status chan_encode(const mq_desc *m, uint32_t D, const uint16_t *x, uint32_t T,
                             uint8_t *out, cq_err *err) {
    mq_sizes sz = mq_sizes_of(m, D, T);
    float *a = malloc((size_t)T * sizeof *a);
    float *s = malloc((size_t)D * sizeof *s);
    if (!a || !s) {
        free(a), free(s);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    for (uint32_t c = 0; c < D; c++) {
        double sum = 0.0;
        for (uint32_t t = 0; t < T; t++) {
            a[t] = fabsf(cq_f16_to_f32(x[(size_t)t * D + c]));
            sum += a[t];
        }
        qsort(a, T, sizeof *a, cmp_float);
        float med = (T & 1) ? a[T / 2] : (a[T / 2 - 1] + a[T / 2]) * 0.5f;
        float mean = (float)(sum / T);
        s[c] = 0.6f * med + 0.4f * mean + 1e-8f;
    }
    uint8_t *codes = out + sz.sink;
    uint32_t t0 = m->sink ? 1 : 0;
    for (uint32_t t = t0; t < T; t++)
        for (uint32_t c = 0; c < D; c++) {
            float v = cq_f16_to_f32(x[(size_t)t * D + c]);
            unsigned code = (fabsf(v) < 0.75f * s[c] ? 0u : 1u) | (v < 0.0f ? 2u : 0u);
            cqb_put_bits(codes, (size_t)(t - t0) * D + c, 2, code);
        }
    if (m->sink)
        for (uint32_t c = 0; c < D; c++) cqb_put16(out + 2 * c, x[c]);
    uint8_t *cols = out + sz.sink + sz.codes;
    for (uint32_t c = 0; c < D; c++) cqb_put16(cols + 2 * c, cq_f32_to_f16(s[c]));
    free(a), free(s);
    return CQ_OK;
}

static void chan_decode(const mq_desc *m, uint32_t D, const uint8_t *src, uint32_t T, float *out) {
    mq_sizes sz = mq_sizes_of(m, D, T);
    const uint8_t *codes = src + sz.sink, *cols = src + sz.sink + sz.codes;
    uint32_t t0 = m->sink ? 1 : 0;
    if (T == 0) return; /* nothing stored, not even the scales */
    if (m->sink)
        for (uint32_t c = 0; c < D; c++) out[c] = cq_f16_to_f32(cqb_get16(src + 2 * c));
    for (uint32_t c = 0; c < D; c++) {
        float s = cq_f16_to_f32(cqb_get16(cols + 2 * c));
        float lv[4] = {0.55f * s, 1.85f * s, -(0.55f * s), -(1.85f * s)};
        for (uint32_t t = t0; t < T; t++)
            out[(size_t)t * D + c] = lv[cqb_get_bits(codes, (size_t)(t - t0) * D + c, 2)];
    }
}

/* ------------------------------------------------------------ registry glue */

static cq_status mq_encode_id(cq_codec_id id, const char *name, const cq_codec_cfg *cfg,
                              const uint16_t *x, uint32_t T, uint8_t *dst, size_t cap,
                              cq_err *err) {
    mq_desc m = mq_of(id);
    uint32_t D = cfg->dim;
    if (mq_check_d(&m, D))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "%s: unsupported head_dim %u%s", name, D,
                          m.hadamard ? " (needs a power of two)" : "");
    mq_sizes sz = mq_sizes_of(&m, D, T);
    if (cap < sz.total) return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "dst too small");
    uint32_t bt, bc;
    if (cq_find_nonfinite(x, T, D, &bt, &bc))
        return cq_err_set(err, CQ_ERR_NONFINITE, bt, (int32_t)bc,
                          "non-finite input at token %u, channel %u: refused, nothing written", bt,
                          bc);
    if (T == 0) return CQ_OK;
    uint8_t *tmp = calloc(sz.total, 1);
    if (!tmp) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_status st = m.chan ? chan_encode(&m, D, x, T, tmp, err) : affine_encode(&m, name, D, x, T, tmp, err);
    if (!st) memcpy(dst, tmp, sz.total);
    free(tmp);
    return st;
}

static cq_status mq_decode_id(cq_codec_id id, const cq_codec_cfg *cfg, const uint8_t *src,
                              size_t len, uint32_t T, float *out) {
    mq_desc m = mq_of(id);
    if (mq_check_d(&m, cfg->dim)) return CQ_ERR_DIM;
    if (len != mq_sizes_of(&m, cfg->dim, T).total) return CQ_ERR_BUFFER;
    if (m.chan) chan_decode(&m, cfg->dim, src, T, out);
    else affine_decode(&m, cfg->dim, src, T, out);
    return CQ_OK;
}

static double mq_modeled_id(cq_codec_id id, const cq_codec_cfg *cfg, uint32_t T) {
    mq_desc m = mq_of(id);
    double D = cfg->dim, L = T ? T : 1;
    if (m.chan) return m.bits + 16.0 / L + (m.sink ? 1.0 * (16.0 - m.bits) / L : 0.0);
    double ng = mq_groups(&m, cfg->dim);
    double field_bits = m.meta ? m.meta : 16.0, fields = m.meta ? 2.0 : 0.0;
    return m.bits + ng * 2.0 * field_bits / D + ng * fields * 2.0 * 16.0 / (L * D);
}

#define MQ_CODEC(SYM, ID, NAME, BITS, FLAGS, LAYOUT)                                               \
    static cq_status SYM##_check(const cq_codec_cfg *cfg, cq_role role) {                          \
        (void)role;                                                                                \
        mq_desc m = mq_of(ID);                                                                     \
        return mq_check_d(&m, cfg->dim);                                                           \
    }                                                                                              \
    static size_t SYM##_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {                 \
        (void)role;                                                                                \
        mq_desc m = mq_of(ID);                                                                     \
        return mq_check_d(&m, cfg->dim) ? 0 : mq_sizes_of(&m, cfg->dim, T).total;                  \
    }                                                                                              \
    static cq_status SYM##_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x,        \
                                  uint32_t T, uint8_t *dst, size_t cap, cq_err *err) {             \
        (void)role;                                                                                \
        return mq_encode_id(ID, NAME, cfg, x, T, dst, cap, err);                                   \
    }                                                                                              \
    static cq_status SYM##_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src,       \
                                  size_t len, uint32_t T, float *out) {                            \
        (void)role;                                                                                \
        return mq_decode_id(ID, cfg, src, len, T, out);                                            \
    }                                                                                              \
    static double SYM##_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {               \
        (void)role;                                                                                \
        return mq_modeled_id(ID, cfg, T);                                                          \
    }                                                                                              \
    const cq_codec_traits cq_codec_##SYM = {                                                       \
        .id = ID, .name = NAME, .family = "megaquant", .layout = LAYOUT, .bits = BITS,             \
        .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | (FLAGS), .check = SYM##_check,              \
        .packed_bytes = SYM##_bytes, .encode = SYM##_encode, .decode = SYM##_decode,               \
        .modeled_bpv = SYM##_modeled,                                                              \
    };

extern const cq_codec_traits cq_codec_mq_a3_g32, cq_codec_mq_a3_g64, cq_codec_mq_a3_g64_meta4,
    cq_codec_mq_a3_g64_meta8, cq_codec_mq_a2_g64_meta8, cq_codec_mq_h2_g64_meta8,
    cq_codec_mq_h2_g32, cq_codec_mq_cw2, cq_codec_mq_sink1_cw2;

#define STREAM CQ_CODEC_F_STREAMING
#define OFFLINE CQ_CODEC_F_OFFLINE
MQ_CODEC(mq_a3_g32, CQ_CODEC_MQ_A3_G32, "affine_seven_level_3bit_g32", 3.0, STREAM,
         "3-bit codes [T][D] | [T][D/32] {fp16 mn, fp16 s}")
MQ_CODEC(mq_a3_g64, CQ_CODEC_MQ_A3_G64, "affine_seven_level_3bit_g64", 3.0, STREAM,
         "3-bit codes [T][D] | [T][D/64] {fp16 mn, fp16 s}")
MQ_CODEC(mq_a3_g64_meta4, CQ_CODEC_MQ_A3_G64_META4, "affine_seven_level_3bit_g64_meta4", 3.0,
         OFFLINE, "3-bit codes | 4-bit mn,s codes [T][D/64] | per group fp16 min,range of mn and s")
MQ_CODEC(mq_a3_g64_meta8, CQ_CODEC_MQ_A3_G64_META8, "affine_seven_level_3bit_g64_meta8", 3.0,
         OFFLINE, "3-bit codes | 8-bit mn,s codes [T][D/64] | per group fp16 min,range of mn and s")
MQ_CODEC(mq_a2_g64_meta8, CQ_CODEC_MQ_A2_G64_META8, "affine_four_level_2bit_g64_meta8", 2.0,
         OFFLINE, "2-bit codes | 8-bit mn,s codes [T][D/64] | per group fp16 min,range of mn and s")
MQ_CODEC(mq_h2_g64_meta8, CQ_CODEC_MQ_H2_G64_META8, "hadamard_affine_four_level_2bit_g64_meta8",
         2.0, OFFLINE, "alternating-sign orthonormal WHT, then affine_four_level_2bit_g64_meta8")
MQ_CODEC(mq_h2_g32, CQ_CODEC_MQ_H2_G32, "hadamard_affine_four_level_2bit_g32", 2.0, STREAM,
         "alternating-sign orthonormal WHT | 2-bit codes | [T][D/32] {fp16 mn, fp16 s}")
MQ_CODEC(mq_cw2, CQ_CODEC_MQ_CW2, "channelwise_four_level_2bit", 2.0, OFFLINE,
         "2-bit codes [T][D] (+-0.55s, +-1.85s) | [D] fp16 s (whole sequence)")
MQ_CODEC(mq_sink1_cw2, CQ_CODEC_MQ_SINK1_CW2, "sink1_channelwise_four_level_2bit", 2.0, OFFLINE,
         "token 0 raw fp16 [D] | 2-bit codes [T-1][D] | [D] fp16 s (whole sequence)")
