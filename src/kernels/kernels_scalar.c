/* SPDX-License-Identifier: MIT */
/*
 * kernels_scalar.c - the scalar reference of every hot loop of the cache.
 * Encoders call the codec core itself (the contract), so they are the spec the
 * AVX2 encoders are tested against bit for bit. The attention loops are plain
 * fp32 loops in token order; the AVX2 versions reorder sums and agree within
 * the bound stated in docs/CACHE.md. The FAST-precision query quantization
 * (s_quant_q8, whose comment is the rule) and integer key scores (s_dot_i4q)
 * are specs every table matches bit for bit.
 * Not here: SIMD code (kernels_avx2.c), the choice of table (dispatch.c).
 */
#include <math.h>
#include <string.h>

#include "cq_kernels.h"

static void s_enc_token(const uint16_t *x, uint32_t D, unsigned bits, uint8_t *codes,
                        uint16_t *scale) {
    (void)cq_encode_token(x, D, bits, codes, scale, 0, NULL); /* finite: cannot fail */
}

static void s_enc_key_group(const cq_params *p, const uint16_t *K, uint32_t g, uint8_t *payload,
                            uint16_t *scales, uint16_t *sidecar) {
    (void)cq_encode_key_group(p, K, g, payload, scales, sidecar, 0, NULL);
}

static void s_dot_f16(const float *q, uint32_t nh, const uint16_t *k, uint32_t n, uint32_t D,
                      float *s, uint32_t ss) {
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < nh; h++) {
            float a = 0.0f;
            for (uint32_t c = 0; c < D; c++)
                a += q[(size_t)h * D + c] * cq_f16_to_f32(k[(size_t)t * D + c]);
            s[(size_t)h * ss + t] = a;
        }
}

static void s_dot_f32(const float *q, uint32_t nh, const float *k, uint32_t n, uint32_t D,
                      float *s, uint32_t ss) {
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < nh; h++) {
            float a = 0.0f;
            for (uint32_t c = 0; c < D; c++) a += q[(size_t)h * D + c] * k[(size_t)t * D + c];
            s[(size_t)h * ss + t] = a;
        }
}

static void s_dot_i8(const float *q, uint32_t nh, const int8_t *k, const uint16_t *ks, uint32_t n,
                     uint32_t D, float *s, uint32_t ss) {
    for (uint32_t t = 0; t < n; t++) {
        float sc = cq_f16_to_f32(ks[t]);
        for (uint32_t h = 0; h < nh; h++) {
            float a = 0.0f;
            for (uint32_t c = 0; c < D; c++) a += q[(size_t)h * D + c] * (float)k[(size_t)t * D + c];
            s[(size_t)h * ss + t] = a * sc;
        }
    }
}

/* FAST precision, the spec: the folded query x[kept] (q .* scales, finite) to int8 in
 * blocks of CQ_Q8_BLOCK kept channels (the last may be partial) with power-of-two block
 * steps. amax = max |x|, d = amax / 127; block b (a_b = max |x| over it) gets the step
 * d * 2^-e_b with e_b the largest e in [0, CQ_Q8_SHIFT_MAX] such that
 * a_b * 2^e <= amax (so |x / step| <= 127 and the step is below 2 a_b / 127, or
 * d * 2^-11 for tiny blocks); q8 = rint(x * (127 / amax) * 2^e_b) (nearest-even, by the
 * 1.5 * 2^23 addition, exact for |y| < 2^22; then clamped to +-127), sh[b] = 11 - e_b,
 * *qs = d * 2^-11, so that score = I * qs with I the exact integer of dot_i4q. All
 * zero (qs = 0) when amax is 0. */
static void s_quant_q8(const float *x, uint32_t kept, int8_t *q8, uint8_t *sh, float *qs) {
    const uint32_t nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK;
    float amax = 0.0f;
    for (uint32_t c = 0; c < kept; c++) amax = fabsf(x[c]) > amax ? fabsf(x[c]) : amax;
    if (!(amax > 0.0f)) {
        memset(q8, 0, kept);
        memset(sh, 0, nb);
        *qs = 0.0f;
        return;
    }
    const float inv = 127.0f / amax, magic = 12582912.0f; /* 1.5 * 2^23 */
    for (uint32_t b = 0; b < nb; b++) {
        const uint32_t c0 = b * CQ_Q8_BLOCK, c1 = c0 + CQ_Q8_BLOCK < kept ? c0 + CQ_Q8_BLOCK : kept;
        float ab = 0.0f;
        for (uint32_t c = c0; c < c1; c++) ab = fabsf(x[c]) > ab ? fabsf(x[c]) : ab;
        uint32_t e = 0;
        float p2 = 1.0f;
        while (e < CQ_Q8_SHIFT_MAX && ab * (2.0f * p2) <= amax) e++, p2 *= 2.0f;
        sh[b] = (uint8_t)(CQ_Q8_SHIFT_MAX - e);
        const float f = inv * p2; /* exact: p2 is a power of two */
        for (uint32_t c = c0; c < c1; c++) {
            float y = x[c] * f + magic; /* not folded: C11 semantics, no -ffast-math */
            float r = y - magic;
            r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
            q8[c] = (int8_t)r;
        }
    }
    *qs = (amax / 127.0f) / (float)(1u << CQ_Q8_SHIFT_MAX);
}

static void s_acc_f16(const float *w, uint32_t ws, uint32_t nh, const uint16_t *v, uint32_t n,
                      uint32_t D, float *acc) {
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < nh; h++) {
            float p = w[(size_t)h * ws + t];
            for (uint32_t c = 0; c < D; c++)
                acc[(size_t)h * D + c] += p * cq_f16_to_f32(v[(size_t)t * D + c]);
        }
}

static void s_acc_f32(const float *w, uint32_t ws, uint32_t nh, const float *v, uint32_t n,
                      uint32_t D, float *acc) {
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < nh; h++) {
            float p = w[(size_t)h * ws + t];
            for (uint32_t c = 0; c < D; c++) acc[(size_t)h * D + c] += p * v[(size_t)t * D + c];
        }
}

static void s_acc_i8(const float *w, uint32_t ws, uint32_t nh, const int8_t *v, const uint16_t *vs,
                     uint32_t n, uint32_t D, float *acc) {
    for (uint32_t t = 0; t < n; t++) {
        float sc = cq_f16_to_f32(vs[t]);
        for (uint32_t h = 0; h < nh; h++) {
            float p = w[(size_t)h * ws + t] * sc;
            for (uint32_t c = 0; c < D; c++)
                acc[(size_t)h * D + c] += p * (float)v[(size_t)t * D + c];
        }
    }
}

/* ------------------------------------------- INT4 loops, one rule each */

/* Where an INT4 loop of this table reads code (t, c) of a call: token-major rows (the
 * contract's form, `width / 2` bytes a token), a tiled key group from token `first`, or value
 * blocks from position `first` (cq_tiles.h). The rules below are written once over it, so a
 * layout is only a different way to fetch the same code. */
typedef struct code_src {
    enum { SRC_ROWS, SRC_KEY_TILES, SRC_VALUE_BLOCKS } kind;
    const uint8_t *p;
    uint32_t width; /* channels: kept (keys) or D (values) */
    uint32_t first;
} code_src;

static inline int code_at(const code_src *s, uint32_t t, uint32_t c) {
    switch (s->kind) {
    case SRC_ROWS: return cq_nibble_get(s->p + (size_t)t * (s->width / 2), c);
    case SRC_KEY_TILES: return cq_kt_get(s->p, s->width, s->first + t, c);
    default: {
        const uint32_t q = s->first + t;
        return cq_vb_get(s->p + (size_t)(q / CQ_VB_TOK) * 2 * s->width, c, q % CQ_VB_TOK);
    }
    }
}

/* dot_i4: fp32 in channel order */
static void dot_i4_rule(const float *qp, uint32_t nh, const code_src *k, uint32_t n, uint32_t kept,
                        float *s, uint32_t ss) {
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < nh; h++) {
            float a = 0.0f;
            for (uint32_t c = 0; c < kept; c++)
                a += qp[(size_t)h * kept + c] * (float)code_at(k, t, c);
            s[(size_t)h * ss + t] = a;
        }
}

/* dot_i4q (cq_kernels.h): the exact integer, then one product */
static void dot_i4q_rule(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t nh,
                         const code_src *k, uint32_t n, uint32_t kept, float *s, uint32_t ss) {
    const uint32_t nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK;
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < nh; h++) {
            int32_t a = 0; /* |a| <= 2^11 * 127 * 8 * 512 < 2^31: exact */
            for (uint32_t b = 0; b < nb; b++) {
                int32_t ab = 0;
                for (uint32_t c = b * CQ_Q8_BLOCK; c < kept && c < (b + 1) * CQ_Q8_BLOCK; c++)
                    ab += (int32_t)q8[(size_t)h * kept + c] * code_at(k, t, c);
                a += ab * (int32_t)(1u << sh[(size_t)h * nb + b]);
            }
            s[(size_t)h * ss + t] = (float)a * qs[h];
        }
}

/* acc_i4: the token's scale folded into its weight, fp32 */
static void acc_i4_rule(const float *w, uint32_t ws, uint32_t nh, const code_src *v,
                        const uint16_t *vs, uint32_t n, uint32_t D, float *acc) {
    for (uint32_t t = 0; t < n; t++) {
        float sc = cq_f16_to_f32(vs[t]);
        for (uint32_t h = 0; h < nh; h++) {
            float p = w[(size_t)h * ws + t] * sc;
            for (uint32_t c = 0; c < D; c++) acc[(size_t)h * D + c] += p * (float)code_at(v, t, c);
        }
    }
}

/* The rule of cq_kernels.acc_i4q (cq_kernels.h), written out plainly: this is the spec. */
static void acc_i4q_rule(const float *w, uint32_t ws, uint32_t nh, const code_src *v,
                         const uint16_t *vs, uint32_t n, uint32_t D, float *acc) {
    for (uint32_t t0 = 0; t0 < n; t0 += CQ_V8_TILE) {
        const uint32_t m = n - t0 < CQ_V8_TILE ? n - t0 : CQ_V8_TILE;
        float vf[CQ_V8_TILE];
        for (uint32_t t = 0; t < m; t++) vf[t] = cq_f16_to_f32(vs[t0 + t]);
        for (uint32_t h = 0; h < nh; h++) {
            const float *wh = w + (size_t)h * ws + t0;
            float a[CQ_V8_TILE], A = 0.0f;
            for (uint32_t t = 0; t < m; t++) {
                a[t] = wh[t] * vf[t];
                A = a[t] > A ? a[t] : A;
            }
            if (!(A > 0x1p-100f)) continue; /* negligible tile; keeps M / A finite */
            const float inv = (float)CQ_V8_MAX / A, d = A / (float)CQ_V8_MAX;
            int32_t a8[CQ_V8_TILE], S = 0;
            for (uint32_t t = 0; t < m; t++) {
                int32_t q = (int32_t)(a[t] * inv + cq_v8_dither[t]); /* C11: no contraction */
                a8[t] = q > CQ_V8_MAX ? CQ_V8_MAX : q;
                S += a8[t];
            }
            for (uint32_t c = 0; c < D; c++) {
                int32_t I = 0;
                for (uint32_t t = 0; t < m; t++) I += a8[t] * (code_at(v, t0 + t, c) + 8);
                acc[(size_t)h * D + c] += (float)(I - 8 * S) * d;
            }
        }
    }
}

/* the table's entries: the rules over each layout */
static void s_dot_i4(const float *qp, uint32_t nh, const uint8_t *k, uint32_t n, uint32_t kept,
                     float *s, uint32_t ss) {
    const code_src src = {SRC_ROWS, k, kept, 0};
    dot_i4_rule(qp, nh, &src, n, kept, s, ss);
}

static void s_dot_i4t(const float *qp, uint32_t nh, const uint8_t *grp, uint32_t r0, uint32_t n,
                      uint32_t kept, float *s, uint32_t ss) {
    const code_src src = {SRC_KEY_TILES, grp, kept, r0};
    dot_i4_rule(qp, nh, &src, n, kept, s, ss);
}

static void s_dot_i4q(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t nh,
                      const uint8_t *k, uint32_t n, uint32_t kept, float *s, uint32_t ss) {
    const code_src src = {SRC_ROWS, k, kept, 0};
    dot_i4q_rule(q8, sh, qs, nh, &src, n, kept, s, ss);
}

static void s_dot_i4tq(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t nh,
                       const uint8_t *grp, uint32_t r0, uint32_t n, uint32_t kept, float *s,
                       uint32_t ss) {
    const code_src src = {SRC_KEY_TILES, grp, kept, r0};
    dot_i4q_rule(q8, sh, qs, nh, &src, n, kept, s, ss);
}

static void s_acc_i4(const float *w, uint32_t ws, uint32_t nh, const uint8_t *v, const uint16_t *vs,
                     uint32_t n, uint32_t D, float *acc) {
    const code_src src = {SRC_ROWS, v, D, 0};
    acc_i4_rule(w, ws, nh, &src, vs, n, D, acc);
}

static void s_acc_i4t(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
                      const uint16_t *vs, uint32_t n, uint32_t D, float *acc) {
    const code_src src = {SRC_VALUE_BLOCKS, blk, D, o};
    acc_i4_rule(w, ws, nh, &src, vs, n, D, acc);
}

static void s_acc_i4q(const float *w, uint32_t ws, uint32_t nh, const uint8_t *v,
                      const uint16_t *vs, uint32_t n, uint32_t D, float *acc) {
    const code_src src = {SRC_ROWS, v, D, 0};
    acc_i4q_rule(w, ws, nh, &src, vs, n, D, acc);
}

static void s_acc_i4tq(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
                       const uint16_t *vs, uint32_t n, uint32_t D, float *acc) {
    const code_src src = {SRC_VALUE_BLOCKS, blk, D, o};
    acc_i4q_rule(w, ws, nh, &src, vs, n, D, acc);
}

static int s_any_nonfinite(const uint16_t *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!cq_f16_is_finite(x[i])) return 1;
    return 0;
}

static float s_max_f32(const float *x, uint32_t n) {
    float m = x[0];
    for (uint32_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static void s_exp_sum(float *x, uint32_t xs, uint32_t nh, uint32_t n, const float *m, float *sum) {
    for (uint32_t h = 0; h < nh; h++) {
        float *xr = x + (size_t)h * xs, t = 0.0f;
        for (uint32_t i = 0; i < n; i++) t += (xr[i] = expf(xr[i] - m[h]));
        sum[h] = t;
    }
}

static uint64_t s_read_sum(const uint8_t *p, size_t n) {
    const uint64_t *w = (const uint64_t *)(const void *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i < n / 8; i += 4) a += w[i], b += w[i + 1], c += w[i + 2], d += w[i + 3];
    return a ^ b ^ c ^ d;
}

static void s_fold_q(const float *q, uint32_t nh, uint32_t D, const uint16_t *idx,
                     const uint16_t *sc, uint32_t kept, float *qp) {
    for (uint32_t h = 0; h < nh; h++)
        for (uint32_t j = 0; j < kept; j++)
            qp[(size_t)h * kept + j] = q[(size_t)h * D + (idx ? idx[j] : j)] * cq_f16_to_f32(sc[j]);
}

static void s_fold_quant_q8(const float *q, uint32_t nh, uint32_t D, const uint16_t *sc,
                            uint32_t kept, int8_t *q8, uint8_t *sh, float *qs) {
    cq_fold_quant_q8_split(cq_kernels_scalar(), q, nh, D, sc, kept, q8, sh, qs);
}

static void s_side_dot(const float *qo, uint32_t nh, const uint16_t *side, uint32_t n,
                       uint32_t k, float *s, uint32_t ss) {
    for (uint32_t o = 0; o < k; o++)
        for (uint32_t t = 0; t < n; t++) {
            float x = cq_f16_to_f32(side[(size_t)t * k + o]);
            for (uint32_t h = 0; h < nh; h++) s[(size_t)h * ss + t] += qo[(size_t)h * k + o] * x;
        }
}

static void s_f16_to_f32(const uint16_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = cq_f16_to_f32(x[i]);
}

static const cq_kernels scalar_table = {
    .name = "scalar",
    .enc_token = s_enc_token,
    .enc_key_group = s_enc_key_group,
    .dot_f16 = s_dot_f16,
    .dot_f32 = s_dot_f32,
    .dot_i8 = s_dot_i8,
    .dot_i4 = s_dot_i4,
    .dot_i4q = s_dot_i4q,
    .dot_i4t = s_dot_i4t,
    .dot_i4tq = s_dot_i4tq,
    .quant_q8 = s_quant_q8,
    .acc_f16 = s_acc_f16,
    .acc_f32 = s_acc_f32,
    .acc_i8 = s_acc_i8,
    .acc_i4 = s_acc_i4,
    .acc_i4q = s_acc_i4q,
    .acc_i4t = s_acc_i4t,
    .acc_i4tq = s_acc_i4tq,
    .any_nonfinite = s_any_nonfinite,
    .max_f32 = s_max_f32,
    .exp_sum = s_exp_sum,
    .read_sum = s_read_sum,
    .read_sum_nt = s_read_sum, /* C has no non-temporal load: the plain loop */
    .fold_q = s_fold_q,
    .fold_quant_q8 = s_fold_quant_q8,
    .side_dot = s_side_dot,
    .f16_to_f32 = s_f16_to_f32,
};

const cq_kernels *cq_kernels_scalar(void) { return &scalar_table; }
