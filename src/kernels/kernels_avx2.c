/* SPDX-License-Identifier: MIT */
/*
 * kernels_avx2.c - AVX2 + FMA + F16C versions of the cache's hot loops.
 * Compiled with -mavx2 -mfma -mf16c; reached only through dispatch.c after
 * cpuid said yes. Encoders are bit-identical to the codec core (fp32 divide,
 * RNE round, clamp: CONTRACT.md section 3's checked facts); attention loops
 * reorder fp32 sums (8 lanes, split accumulators) and are tested against the
 * scalar table within the bound of docs/CACHE.md; the FAST-precision query
 * quantization and integer key scores (vpmaddubsw / vpmaddwd) are bit-identical
 * to the scalar table.
 *
 * INT4 unpack: 8 packed bytes (16 channels) are zero-extended into 8 int32
 * lanes; the low nibble of lane i is channel 2i, the high nibble 2i+1. Each
 * is sign-extended with a shift pair (<<28 >>28, <<24 >>28) and converted.
 * The query chunk is permuted once per call to the same (even | odd) order,
 * so no shuffles sit in the per-token loop.
 */
#include <immintrin.h>
#include <string.h>

#include "cq_kernels.h"
#include "kernels_x86.h"


static inline float hmax8(__m256 v) { /* exact in any order */
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* the four horizontal sums of a0..a3 in one __m128 */
/* ------------------------------------------------------------ encoders */

static uint16_t amax_f16(const uint16_t *x, uint32_t D) {
    __m256i m = _mm256_setzero_si256(), mask = _mm256_set1_epi16(0x7FFF);
    uint32_t c = 0;
    for (; c + 16 <= D; c += 16)
        m = _mm256_max_epu16(m, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + c)), mask));
    __m128i r = _mm_max_epu16(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    r = _mm_max_epu16(r, _mm_srli_si128(r, 8));
    r = _mm_max_epu16(r, _mm_srli_si128(r, 4));
    r = _mm_max_epu16(r, _mm_srli_si128(r, 2));
    uint16_t a = (uint16_t)_mm_extract_epi16(r, 0);
    for (; c < D; c++) {
        uint16_t v = (uint16_t)(x[c] & 0x7FFF);
        if (v > a) a = v;
    }
    return a;
}

/* 8 codes: clamp(rint(x / s)) as int32, bit-identical to cq_quantize */
static inline __m256i quant8(__m256 x, __m256 s, __m256 lo, __m256 hi) {
    __m256 r = _mm256_round_ps(_mm256_div_ps(x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
    return _mm256_cvttps_epi32(r);
}

/* 32 int32 codes (4 vectors, in order) -> 32 int8 in order */
static inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i x = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* 32 int8 codes in order -> 16 bytes of nibbles (even channel low) */
static inline __m128i nibbles32(__m256i x) {
    __m256i w = _mm256_or_si256(_mm256_and_si256(x, _mm256_set1_epi16(0x000F)),
                                _mm256_and_si256(_mm256_srli_epi16(x, 4), _mm256_set1_epi16(0x00F0)));
    __m256i p = _mm256_packus_epi16(w, w);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0x08));
}

/* codes of 32 channels x[c..c+32) with per-lane scales sc[c..] (fp32) */
static inline __m256i quant32(const uint16_t *x, const float *sc, __m256 lo, __m256 hi) {
    __m256i a = quant8(load_f16x8(x), _mm256_loadu_ps(sc), lo, hi);
    __m256i b = quant8(load_f16x8(x + 8), _mm256_loadu_ps(sc + 8), lo, hi);
    __m256i c = quant8(load_f16x8(x + 16), _mm256_loadu_ps(sc + 16), lo, hi);
    __m256i d = quant8(load_f16x8(x + 24), _mm256_loadu_ps(sc + 24), lo, hi);
    return pack32(a, b, c, d);
}

static void v_enc_token(const uint16_t *x, uint32_t D, unsigned bits, uint8_t *codes,
                        uint16_t *scale) {
    const int qmax = bits == 8 ? 127 : 7;
    uint16_t s = cq_scale_from_amax(amax_f16(x, D), qmax);
    *scale = s;
    float sf[32];
    const float s32 = cq_f16_to_f32(s);
    for (int i = 0; i < 32; i++) sf[i] = s32;
    const __m256 lo = _mm256_set1_ps((float)(-qmax - 1)), hi = _mm256_set1_ps((float)qmax);
    uint32_t c = 0;
    for (; c + 32 <= D; c += 32) {
        __m256i q = quant32(x + c, sf, lo, hi);
        if (bits == 8) _mm256_storeu_si256((__m256i *)(codes + c), q);
        else _mm_storeu_si128((__m128i *)(codes + c / 2), nibbles32(q));
    }
    for (; c < D; c++) { /* tail: the reference primitive itself */
        int q = cq_quantize(x[c], s, qmax);
        if (bits == 8) codes[c] = (uint8_t)(int8_t)q;
        else cq_nibble_put(codes, c, q);
    }
}

static void v_enc_key_group(const cq_params *p, const uint16_t *K, uint32_t g, uint8_t *payload,
                            uint16_t *scales, uint16_t *sidecar) {
    const uint32_t D = p->dim;
    uint16_t amax[CQ_MAX_DIM];
    float sf[CQ_MAX_DIM];
    int8_t row8[CQ_MAX_DIM];
    uint32_t c = 0;
    const __m256i m7 = _mm256_set1_epi16(0x7FFF);
    for (; c + 16 <= D; c += 16) {
        __m256i m = _mm256_setzero_si256();
        for (uint32_t t = 0; t < g; t++)
            m = _mm256_max_epu16(m, _mm256_and_si256(
                                        _mm256_loadu_si256((const __m256i *)(K + (size_t)t * D + c)), m7));
        _mm256_storeu_si256((__m256i *)(amax + c), m);
    }
    for (; c < D; c++) amax[c] = cq_amax_f16(K + c, g, D);
    uint16_t sfull[CQ_MAX_DIM];
    for (c = 0; c < D; c++) {
        sfull[c] = p->mask[c] ? 0x3C00 : cq_scale_from_amax(amax[c], 7); /* 1.0: outliers unused */
        sf[c] = cq_f16_to_f32(sfull[c]);
    }
    for (uint32_t j = 0; j < p->kept; j++) scales[j] = sfull[p->kept_idx[j]];
    const __m256 lo = _mm256_set1_ps(-8.0f), hi = _mm256_set1_ps(7.0f);
    memset(payload, 0, cq_key_group_bytes(p, g));
    const uint32_t kept = p->kept;
    for (uint32_t t = 0; t < g; t++) {
        const uint16_t *x = K + (size_t)t * D;
        if (p->k == 0) { /* kept == D, even: a token is D/2 whole bytes */
            uint8_t *dst = payload + (size_t)t * (D / 2);
            for (c = 0; c + 32 <= D; c += 32)
                _mm_storeu_si128((__m128i *)(dst + c / 2), nibbles32(quant32(x + c, sf + c, lo, hi)));
            for (; c < D; c++) cq_nibble_put(dst, c, cq_quantize(x[c], sfull[c], 7));
            continue;
        }
        for (c = 0; c + 32 <= D; c += 32)
            _mm256_storeu_si256((__m256i *)(row8 + c), quant32(x + c, sf + c, lo, hi));
        for (; c < D; c++) row8[c] = (int8_t)cq_quantize(x[c], sfull[c], 7);
        size_t i = (size_t)t * kept;
        for (uint32_t j = 0; j < kept; j++, i++) cq_nibble_put(payload, i, row8[p->kept_idx[j]]);
        for (uint32_t o = 0; o < p->k; o++) sidecar[(size_t)t * p->k + o] = x[p->outlier[o]];
    }
}

/* ---------------------------------------------------------- dot products */

/* One token row against nhc <= HC query heads; LOAD8(c) gives channels c..c+7 as
 * fp32, SCAL(c) one channel. Two accumulators per head for FMA latency. */
#define DOT_ROW(nhc, q, D, LOAD8, SCAL, out)                                                       \
    do {                                                                                           \
        __m256 a0[HC], a1[HC];                                                                     \
        _Pragma("GCC unroll 4") for (int h_ = 0; h_ < HC; h_++) a0[h_] = a1[h_] = _mm256_setzero_ps(); \
        uint32_t c_ = 0;                                                                           \
        for (; c_ + 16 <= (D); c_ += 16) {                                                         \
            __m256 x0 = LOAD8(c_), x1 = LOAD8(c_ + 8);                                             \
            _Pragma("GCC unroll 4") for (uint32_t h_ = 0; h_ < (nhc); h_++) {                           \
                a0[h_] = _mm256_fmadd_ps(x0, _mm256_loadu_ps((q) + (size_t)h_ * (D) + c_), a0[h_]); \
                a1[h_] = _mm256_fmadd_ps(x1, _mm256_loadu_ps((q) + (size_t)h_ * (D) + c_ + 8), a1[h_]); \
            }                                                                                      \
        }                                                                                          \
        for (; c_ + 8 <= (D); c_ += 8) {                                                           \
            __m256 x0 = LOAD8(c_);                                                                 \
            _Pragma("GCC unroll 4") for (uint32_t h_ = 0; h_ < (nhc); h_++)                             \
                a0[h_] = _mm256_fmadd_ps(x0, _mm256_loadu_ps((q) + (size_t)h_ * (D) + c_), a0[h_]); \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int h_ = 0; h_ < HC; h_++) a0[h_] = _mm256_add_ps(a0[h_], a1[h_]); \
        _mm_storeu_ps((out), hsum4x8(a0[0], a0[1], a0[2], a0[3]));                                 \
        for (; c_ < (D); c_++) {                                                                   \
            float x_ = SCAL(c_);                                                                   \
            for (uint32_t h_ = 0; h_ < (nhc); h_++) (out)[h_] += (q)[(size_t)h_ * (D) + c_] * x_;       \
        }                                                                                          \
    } while (0)


/* pf: ask for each row's lines F16_PF_K_BYTES ahead into L2 */
static ALWAYS_INLINE void dot_f16_blk(const uint32_t nhc, const float *qh, const uint16_t *k,
                                      uint32_t n, uint32_t D, float *s, uint32_t ss, int pf) {
    for (uint32_t t = 0; t < n; t++) {
        const uint16_t *row = k + (size_t)t * D;
        if (pf)
            for (uint32_t o = 0; o < 2 * D; o += 64) pf_l2((const uint8_t *)row + o + F16_PF_K_BYTES);
        float o[4];
#define L8(c) load_f16x8(row + (c))
#define S1(c) cq_f16_to_f32(row[c])
        DOT_ROW(nhc, qh, D, L8, S1, o);
#undef L8
#undef S1
        for (uint32_t h = 0; h < nhc; h++) s[(size_t)h * ss + t] = o[h];
    }
}

static void v_dot_f16(const float *q, uint32_t nh, const uint16_t *k, uint32_t n, uint32_t D,
                      float *s, uint32_t ss) {
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
        const int pf = D >= F16_PF_MIN_D && h0 == 0;
#define B(NH) dot_f16_blk(NH, q + (size_t)h0 * D, k, n, D, s + (size_t)h0 * ss, ss, pf)
        NH_SWITCH(nhc, B)
#undef B
    }
}

static ALWAYS_INLINE void dot_f32_blk(const uint32_t nhc, const float *qh, const float *k,
                                      uint32_t n, uint32_t D, float *s, uint32_t ss) {
    for (uint32_t t = 0; t < n; t++) {
        const float *row = k + (size_t)t * D;
        float o[4];
#define L8(c) _mm256_loadu_ps(row + (c))
#define S1(c) row[c]
        DOT_ROW(nhc, qh, D, L8, S1, o);
#undef L8
#undef S1
        for (uint32_t h = 0; h < nhc; h++) s[(size_t)h * ss + t] = o[h];
    }
}

static void v_dot_f32(const float *q, uint32_t nh, const float *k, uint32_t n, uint32_t D,
                      float *s, uint32_t ss) {
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
#define B(NH) dot_f32_blk(NH, q + (size_t)h0 * D, k, n, D, s + (size_t)h0 * ss, ss)
        NH_SWITCH(nhc, B)
#undef B
    }
}

static inline __m256 load_i8x8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

static ALWAYS_INLINE void dot_i8_blk(const uint32_t nhc, const float *qh, const int8_t *k,
                                     const uint16_t *ks, uint32_t n, uint32_t D, float *s,
                                     uint32_t ss) {
    for (uint32_t t = 0; t < n; t++) {
        const int8_t *row = k + (size_t)t * D;
        float o[4], sc = cq_f16_to_f32(ks[t]);
#define L8(c) load_i8x8(row + (c))
#define S1(c) (float)row[c]
        DOT_ROW(nhc, qh, D, L8, S1, o);
#undef L8
#undef S1
        for (uint32_t h = 0; h < nhc; h++) s[(size_t)h * ss + t] = o[h] * sc;
    }
}

static void v_dot_i8(const float *q, uint32_t nh, const int8_t *k, const uint16_t *ks, uint32_t n,
                     uint32_t D, float *s, uint32_t ss) {
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
#define B(NH) dot_i8_blk(NH, q + (size_t)h0 * D, k, ks, n, D, s + (size_t)h0 * ss, ss)
        NH_SWITCH(nhc, B)
#undef B
    }
}

/* 16 INT4 channels from 8 bytes: lo = channels 0,2,..,14, hi = 1,3,..,15 */
static inline void unpack16(const uint8_t *p, __m256 *lo, __m256 *hi) {
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    *lo = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(v, 28), 28));
    *hi = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(v, 24), 28));
}

/* qperm: [nhc][kp] in (even | odd) order per 16-channel chunk, kp = kept rounded up
 * to 16 with zero weights, so a partial last chunk needs no scalar tail: its extra
 * nibbles (the next token's, or the slot's padding) are multiplied by 0. Reads up to
 * 7 bytes past the last token (the cache's slots guarantee they are readable). */
static ALWAYS_INLINE void dot_i4_blk(const uint32_t nhc, const float *qperm, uint32_t kp,
                                     const uint8_t *k, uint32_t n, uint32_t kept, float *s,
                                     uint32_t ss) {
    const uint32_t kb = kept / 2;
    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *row = k + (size_t)t * kb;
        __m256 a0[HC], a1[HC];
        _Pragma("GCC unroll 4") for (int h = 0; h < HC; h++) a0[h] = a1[h] = _mm256_setzero_ps();
        for (uint32_t b = 0; b < kp / 2; b += 8) {
            __m256 lo, hi;
            unpack16(row + b, &lo, &hi);
            const float *qc = qperm + 2 * b;
            _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
                a0[h] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(qc + (size_t)h * kp), a0[h]);
                a1[h] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(qc + (size_t)h * kp + 8), a1[h]);
            }
        }
        _Pragma("GCC unroll 4") for (int h = 0; h < HC; h++) a0[h] = _mm256_add_ps(a0[h], a1[h]);
        float o[4];
        _mm_storeu_ps(o, hsum4x8(a0[0], a0[1], a0[2], a0[3]));
        for (uint32_t h = 0; h < nhc; h++) s[(size_t)h * ss + t] = o[h];
    }
}

static void v_dot_i4(const float *qp, uint32_t nh, const uint8_t *k, uint32_t n, uint32_t kept,
                     float *s, uint32_t ss) {
    const uint32_t kp = (kept + 15) & ~15u;
    float qperm[HC * (CQ_MAX_DIM + 16)];
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
        /* permute each 16-channel chunk of the query to (even | odd) order, zero-padded */
        for (uint32_t h = 0; h < nhc; h++) {
            const float *src = qp + (size_t)(h0 + h) * kept;
            float *dst = qperm + (size_t)h * kp;
            for (uint32_t c = 0; c < kp; c += 16)
                for (uint32_t i = 0; i < 8; i++) {
                    dst[c + i] = c + 2 * i < kept ? src[c + 2 * i] : 0.0f;
                    dst[c + 8 + i] = c + 2 * i + 1 < kept ? src[c + 2 * i + 1] : 0.0f;
                }
        }
#define B(NH) dot_i4_blk(NH, qperm, kp, k, n, kept, s + (size_t)h0 * ss, ss)
        NH_SWITCH(nhc, B)
#undef B
    }
}

#define DOT_I4Q_NAME v_dot_i4q
#define DOT_I4Q_SETUP v_dot_i4q_setup
#define I4Q_MADD(acc, s16, w16) _mm256_add_epi32((acc), _mm256_madd_epi16((s16), (w16)))
#include "dot_i4q_x86.inc"
#undef I4Q_MADD
#undef DOT_I4Q_NAME
#undef DOT_I4Q_SETUP

/* The rule of the scalar table's s_quant_q8 (its comment is the spec), vectorized for
 * 8-channel blocks (one vector each): three permutes give every lane its block's max a_b; the block exponent
 * e_b (largest e <= 11 with a_b 2^e <= amax) comes from the float fields: for normal
 * a, A, a 2^k <= A iff (Ea + k, Ma) <= (EA, MA), so e = EA - Ea - (Ma > MA), clamped to
 * [0, 11] (a_b = 0 gives a huge e: 11). A tiny amax (< 2^-100, where blocks may be
 * subnormal) takes the scalar table. The factor 127 / amax * 2^e is exact in its power
 * of two; vroundps nearest-even equals the reference's 1.5 * 2^23 rounding for |y| <= 128. */
_Static_assert(CQ_Q8_BLOCK == 8, "v_quant_q8 computes block maxima of 8 lanes");
static void v_quant_q8(const float *x, uint32_t kept, int8_t *q8, uint8_t *sh, float *qs) {
    const uint32_t nb = (kept + 7) / 8, k32 = (kept + 31) & ~31u;
    float xs[CQ_MAX_DIM + 32] __attribute__((aligned(32)));
    int32_t et[CQ_MAX_DIM + 32] __attribute__((aligned(32)));
    int8_t qt[CQ_MAX_DIM + 32] __attribute__((aligned(32)));
    memcpy(xs, x, kept * sizeof *x);
    memset(xs + kept, 0, (k32 - kept) * sizeof *x);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 m = _mm256_setzero_ps();
    for (uint32_t c = 0; c < k32; c += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_load_ps(xs + c), absm));
    const float amax = hmax8(m);
    if (!(amax > 0.0f) || amax < 0x1p-100f) {
        cq_kernels_scalar()->quant_q8(x, kept, q8, sh, qs);
        return;
    }
    uint32_t ua;
    memcpy(&ua, &amax, 4);
    const __m256i EA = _mm256_set1_epi32((int)(ua >> 23)), MA = _mm256_set1_epi32((int)(ua & 0x7FFFFF));
    const __m256i mm = _mm256_set1_epi32(0x7FFFFF), emax = _mm256_set1_epi32((int)CQ_Q8_SHIFT_MAX);
    const __m256i b127 = _mm256_set1_epi32(127), zero = _mm256_setzero_si256();
    const __m256 inv = _mm256_set1_ps(127.0f / amax), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (uint32_t c = 0; c < k32; c += 32) {
        __m256i v[4];
        for (int i = 0; i < 4; i++) {
            __m256 xv = _mm256_load_ps(xs + c + 8 * i), a = _mm256_and_ps(xv, absm);
            a = _mm256_max_ps(a, _mm256_permute_ps(a, 0xB1));
            a = _mm256_max_ps(a, _mm256_permute_ps(a, 0x4E));
            a = _mm256_max_ps(a, _mm256_permute2f128_ps(a, a, 0x01)); /* block max in every lane */
            __m256i bits = _mm256_castps_si256(a);
            __m256i e = _mm256_sub_epi32(EA, _mm256_srli_epi32(bits, 23));
            e = _mm256_add_epi32(e, _mm256_cmpgt_epi32(_mm256_and_si256(bits, mm), MA));
            e = _mm256_min_epi32(_mm256_max_epi32(e, zero), emax);
            _mm256_store_si256((__m256i *)(et + c + 8 * i), e);
            __m256 f = _mm256_mul_ps(inv, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, b127), 23)));
            __m256 y = _mm256_round_ps(_mm256_mul_ps(xv, f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v[i] = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(y, lo), hi));
        }
        _mm256_store_si256((__m256i *)(qt + c), pack32(v[0], v[1], v[2], v[3]));
    }
    memcpy(q8, qt, kept);
    for (uint32_t b = 0; b < nb; b++) sh[b] = (uint8_t)(CQ_Q8_SHIFT_MAX - (uint32_t)et[8 * b]);
    *qs = (amax / 127.0f) / (float)(1u << CQ_Q8_SHIFT_MAX);
}

/* --------------------------------------------------- value accumulation */

#define NO_PF(t, c) ((void)0)

/* acc[h][c..c+16) += sum_t w[h][t] * x_t(c..c+16), for one 16-channel chunk at a time:
 * accumulators stay in registers across the token loop. */
#define ACC_CHUNKS(nhc, wt, n, D, acc, LOAD8, SCAL, PF)                                            \
    do {                                                                                           \
        uint32_t c_ = 0;                                                                           \
        for (; c_ + 16 <= (D); c_ += 16) {                                                         \
            __m256 a0[HC], a1[HC];                                                                 \
            _Pragma("GCC unroll 4") for (uint32_t h_ = 0; h_ < HC; h_++) {                         \
                a0[h_] = a1[h_] = _mm256_setzero_ps();                                             \
                if (h_ < (nhc)) {                                                                  \
                    a0[h_] = _mm256_loadu_ps((acc) + (size_t)h_ * (D) + c_);                       \
                    a1[h_] = _mm256_loadu_ps((acc) + (size_t)h_ * (D) + c_ + 8);                   \
                }                                                                                  \
            }                                                                                      \
            for (uint32_t t_ = 0; t_ < (n); t_++) {                                                \
                PF(t_, c_);                                                                        \
                __m256 x0 = LOAD8(t_, c_), x1 = LOAD8(t_, c_ + 8);                                 \
                _Pragma("GCC unroll 4") for (uint32_t h_ = 0; h_ < (nhc); h_++) {                  \
                    __m256 b_ = _mm256_broadcast_ss((wt) + (size_t)h_ * (n) + t_);                 \
                    a0[h_] = _mm256_fmadd_ps(b_, x0, a0[h_]);                                      \
                    a1[h_] = _mm256_fmadd_ps(b_, x1, a1[h_]);                                      \
                }                                                                                  \
            }                                                                                      \
            _Pragma("GCC unroll 4") for (uint32_t h_ = 0; h_ < (nhc); h_++) {                      \
                _mm256_storeu_ps((acc) + (size_t)h_ * (D) + c_, a0[h_]);                           \
                _mm256_storeu_ps((acc) + (size_t)h_ * (D) + c_ + 8, a1[h_]);                       \
            }                                                                                      \
        }                                                                                          \
        for (; c_ < (D); c_++)                                                                     \
            for (uint32_t t_ = 0; t_ < (n); t_++) {                                                \
                float x_ = SCAL(t_, c_);                                                           \
                for (uint32_t h_ = 0; h_ < (nhc); h_++)                                            \
                    (acc)[(size_t)h_ * (D) + c_] += (wt)[(size_t)h_ * (n) + t_] * x_;              \
            }                                                                                      \
    } while (0)

#define TB 64 /* tokens per weight tile */

/* copy w[h0..h0+nhc)[t0..t0+n) (times a per-token scale when vs != NULL) into wt [nhc][n] */
static void weights_tile(const float *w, uint32_t ws, uint32_t h0, uint32_t nhc, uint32_t t0,
                         uint32_t n, const uint16_t *vs, float *wt) {
    float sc[TB];
    uint32_t t = 0;
    if (vs)
        for (; t + 8 <= n; t += 8) _mm256_storeu_ps(sc + t, load_f16x8(vs + t0 + t));
    for (; t < n; t++) sc[t] = vs ? cq_f16_to_f32(vs[t0 + t]) : 1.0f;
    for (uint32_t h = 0; h < nhc; h++) {
        const float *src = w + (size_t)(h0 + h) * ws + t0;
        float *dst = wt + h * n;
        for (t = 0; t + 8 <= n; t += 8)
            _mm256_storeu_ps(dst + t, _mm256_mul_ps(_mm256_loadu_ps(src + t), _mm256_loadu_ps(sc + t)));
        for (; t < n; t++) dst[t] = src[t] * sc[t];
    }
}

/* pf != NULL: the first 16-channel pass asks for token t's row F16_PF_V_TOKENS rows ahead of
 * pf into L2 (a line at a time, spread over the token loop) */
static ALWAYS_INLINE void acc_f16_blk(const uint32_t nhc, const float *wt, uint32_t m,
                                      const uint16_t *vb, uint32_t D, float *ah,
                                      const uint8_t *pf) {
#define L8(t, c) load_f16x8(vb + (size_t)(t) * D + (c))
#define S1(t, c) cq_f16_to_f32(vb[(size_t)(t) * D + (c)])
#define PFV(t, c)                                                                                  \
    do {                                                                                           \
        if (pf && (c) == 0)                                                                        \
            for (uint32_t o_ = 0; o_ < 2 * D; o_ += 64)                                            \
                pf_l2(pf + ((size_t)(t) + F16_PF_V_TOKENS) * D * 2 + o_);                          \
    } while (0)
    ACC_CHUNKS(nhc, wt, m, D, ah, L8, S1, PFV);
#undef PFV
#undef L8
#undef S1
}

static ALWAYS_INLINE void acc_f32_blk(const uint32_t nhc, const float *wt, uint32_t m,
                                      const float *vb, uint32_t D, float *ah) {
#define L8(t, c) _mm256_loadu_ps(vb + (size_t)(t) * D + (c))
#define S1(t, c) vb[(size_t)(t) * D + (c)]
    ACC_CHUNKS(nhc, wt, m, D, ah, L8, S1, NO_PF);
#undef L8
#undef S1
}

static ALWAYS_INLINE void acc_i8_blk(const uint32_t nhc, const float *wt, uint32_t m,
                                     const int8_t *vb, uint32_t D, float *ah) {
#define L8(t, c) load_i8x8(vb + (size_t)(t) * D + (c))
#define S1(t, c) (float)vb[(size_t)(t) * D + (c)]
    ACC_CHUNKS(nhc, wt, m, D, ah, L8, S1, NO_PF);
#undef L8
#undef S1
}

static void v_acc_f16(const float *w, uint32_t ws, uint32_t nh, const uint16_t *v, uint32_t n,
                      uint32_t D, float *acc) {
    float wt[HC * TB];
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
        for (uint32_t t0 = 0; t0 < n; t0 += TB) {
            uint32_t m = n - t0 < TB ? n - t0 : TB;
            weights_tile(w, ws, h0, nhc, t0, m, NULL, wt);
            const uint8_t *pf = D >= F16_PF_MIN_D && h0 == 0 ? (const uint8_t *)(v + (size_t)t0 * D) : NULL;
#define B(NH) acc_f16_blk(NH, wt, m, v + (size_t)t0 * D, D, acc + (size_t)h0 * D, pf)
            NH_SWITCH(nhc, B)
#undef B
        }
    }
}

static void v_acc_f32(const float *w, uint32_t ws, uint32_t nh, const float *v, uint32_t n,
                      uint32_t D, float *acc) {
    float wt[HC * TB];
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
        for (uint32_t t0 = 0; t0 < n; t0 += TB) {
            uint32_t m = n - t0 < TB ? n - t0 : TB;
            weights_tile(w, ws, h0, nhc, t0, m, NULL, wt);
#define B(NH) acc_f32_blk(NH, wt, m, v + (size_t)t0 * D, D, acc + (size_t)h0 * D)
            NH_SWITCH(nhc, B)
#undef B
        }
    }
}

static void v_acc_i8(const float *w, uint32_t ws, uint32_t nh, const int8_t *v, const uint16_t *vs,
                     uint32_t n, uint32_t D, float *acc) {
    float wt[HC * TB];
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
        for (uint32_t t0 = 0; t0 < n; t0 += TB) {
            uint32_t m = n - t0 < TB ? n - t0 : TB;
            weights_tile(w, ws, h0, nhc, t0, m, vs, wt);
#define B(NH) acc_i8_blk(NH, wt, m, v + (size_t)t0 * D, D, acc + (size_t)h0 * D)
            NH_SWITCH(nhc, B)
#undef B
        }
    }
}

static ALWAYS_INLINE void acc_i4_blk(const uint32_t nhc, const float *wt, uint32_t m,
                                     const uint8_t *base, uint32_t D, float *ah) {
    const uint32_t kb = D / 2, vb = kb & ~7u;
    for (uint32_t b = 0; b < vb; b += 8) {
        /* accumulate in (even | odd) order, interleave once at the end */
        __m256 a0[HC], a1[HC];
        _Pragma("GCC unroll 4") for (int h = 0; h < HC; h++) a0[h] = a1[h] = _mm256_setzero_ps();
        for (uint32_t t = 0; t < m; t++) {
            __m256 lo, hi;
            unpack16(base + (size_t)t * kb + b, &lo, &hi);
            _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
                __m256 bw = _mm256_broadcast_ss(wt + (size_t)h * m + t);
                a0[h] = _mm256_fmadd_ps(bw, lo, a0[h]);
                a1[h] = _mm256_fmadd_ps(bw, hi, a1[h]);
            }
        }
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
            __m256 u0 = _mm256_unpacklo_ps(a0[h], a1[h]); /* c0..3 | c8..11 */
            __m256 u1 = _mm256_unpackhi_ps(a0[h], a1[h]); /* c4..7 | c12..15 */
            __m256 r0 = _mm256_permute2f128_ps(u0, u1, 0x20);
            __m256 r1 = _mm256_permute2f128_ps(u0, u1, 0x31);
            float *dst = ah + (size_t)h * D + 2 * b;
            _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), r0));
            _mm256_storeu_ps(dst + 8, _mm256_add_ps(_mm256_loadu_ps(dst + 8), r1));
        }
    }
    for (uint32_t c = 2 * vb; c < D; c++)
        for (uint32_t t = 0; t < m; t++) {
            float x = (float)cq_nibble_get(base + (size_t)t * kb, c);
            for (uint32_t h = 0; h < nhc; h++) ah[(size_t)h * D + c] += wt[h * m + t] * x;
        }
}

static void v_acc_i4(const float *w, uint32_t ws, uint32_t nh, const uint8_t *v, const uint16_t *vs,
                     uint32_t n, uint32_t D, float *acc) {
    float wt[HC * TB];
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
        for (uint32_t t0 = 0; t0 < n; t0 += TB) {
            uint32_t m = n - t0 < TB ? n - t0 : TB;
            weights_tile(w, ws, h0, nhc, t0, m, vs, wt);
#define B(NH) acc_i4_blk(NH, wt, m, v + (size_t)t0 * (D / 2), D, acc + (size_t)h0 * D)
            NH_SWITCH(nhc, B)
#undef B
        }
    }
}

/* FAST value accumulation (cq_kernels.h acc_i4q). A token pair's 16-byte chunks are
 * byte-interleaved (lane 0: bytes 0-7, lane 1: bytes 8-15), XOR 0x88 makes both
 * nibbles u = code + 8, and vpmaddubsw against the pair's two 7-bit weights gives per
 * 16-bit lane a8_t u_t + a8_t' u_t' <= 3810 for the even (low nibble) and odd (high
 * nibble) channel of that byte. The 16 pairs of a tile sum to <= 60960 < 2^16: exact
 * as unsigned 16-bit, widened by zero-extension once per tile. */
_Static_assert(CQ_V8_TILE % 8 == 0 && CQ_V8_TILE / 2 * 2 * 15 * CQ_V8_MAX < 65536,
               "a tile's 16-bit sums must not wrap");
#define TG ((int)(CQ_V8_TILE / 8)) /* 8-token groups per tile */
typedef cq_i4q_tile i4q_tile;

static inline __m256i pair_chunk(const uint8_t *r0, const uint8_t *r1, uint32_t avail) {
    __m128i x0 = load_chunk16(r0, avail), x1 = load_chunk16(r1, avail);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi8(x0, x1)),
                                   _mm_unpackhi_epi8(x0, x1), 1);
}

/* acc[h][c0 .. c0 + 32) += (I - 8 S) * d from the unsigned 16-bit sums of one chunk
 * (lo: even channels, hi: odd; lane j of either is byte j of the chunk) */
static inline void i4q_flush(__m256i lo, __m256i hi, int32_t S8, float d, float *dst,
                             uint32_t valid) {
    const __m256i z = _mm256_setzero_si256();
    __m256i e0 = _mm256_unpacklo_epi16(lo, z), e1 = _mm256_unpackhi_epi16(lo, z);
    __m256i o0 = _mm256_unpacklo_epi16(hi, z), o1 = _mm256_unpackhi_epi16(hi, z);
    __m256i a0 = _mm256_unpacklo_epi32(e0, o0), a1 = _mm256_unpackhi_epi32(e0, o0);
    __m256i b0 = _mm256_unpacklo_epi32(e1, o1), b1 = _mm256_unpackhi_epi32(e1, o1);
    __m256i r[4] = {_mm256_permute2x128_si256(a0, a1, 0x20), _mm256_permute2x128_si256(b0, b1, 0x20),
                    _mm256_permute2x128_si256(a0, a1, 0x31), _mm256_permute2x128_si256(b0, b1, 0x31)};
    cq_i4q_add32(r, S8, d, dst, valid);
}

static ALWAYS_INLINE void acc_i4q_blk(const uint32_t nhc, const i4q_tile *tl, const uint8_t *base,
                                      uint32_t m, uint32_t D, float *ah, const int full) {
    /* full: m == CQ_V8_TILE and whole 16-byte chunks, so the loop has no tail tests */
    const uint32_t kb = D / 2;
    const __m256i x88 = _mm256_set1_epi8((char)0x88), m15 = _mm256_set1_epi8(0x0F);
    for (uint32_t c = 0; c < kb; c += 16) {
        __m256i lo[HC], hi[HC];
        _Pragma("GCC unroll 4") for (int h = 0; h < HC; h++) lo[h] = hi[h] = _mm256_setzero_si256();
        const uint32_t mm = full ? CQ_V8_TILE : m;
        for (uint32_t t = 0; t < mm; t += 2) {
            const uint8_t *r0 = base + (size_t)t * kb + c, *r1 = full || t + 1 < m ? r0 + kb : r0;
            __m256i x;
            if (full) {
                __m128i x0 = _mm_loadu_si128((const __m128i *)r0), x1 = _mm_loadu_si128((const __m128i *)r1);
                x = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi8(x0, x1)),
                                            _mm_unpackhi_epi8(x0, x1), 1);
            } else {
                x = pair_chunk(r0, r1, kb - c);
            }
            x = _mm256_xor_si256(x, x88);
            __m256i xl = _mm256_and_si256(x, m15), xh = _mm256_and_si256(_mm256_srli_epi16(x, 4), m15);
            _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
                uint16_t wp;
                memcpy(&wp, &tl->wb[h][t], 2);
                __m256i wv = _mm256_set1_epi16((short)wp);
                lo[h] = _mm256_add_epi16(lo[h], _mm256_maddubs_epi16(wv, xl));
                hi[h] = _mm256_add_epi16(hi[h], _mm256_maddubs_epi16(wv, xh));
            }
        }
        const uint32_t valid = D - 2 * c < 32 ? D - 2 * c : 32;
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++)
            if (tl->on[h]) i4q_flush(lo[h], hi[h], tl->S8[h], tl->d[h], ah + (size_t)h * D + 2 * c, valid);
    }
}

/* The weights of one tile for heads [0, nhc): kernels_x86.h. */
void cq_avx2_i4q_prep(const float *w, uint32_t ws, uint32_t nhc, uint32_t m, const uint16_t *vs,
                      cq_i4q_tile *tl) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256i cmax = _mm256_set1_epi32(CQ_V8_MAX);
    float wt[CQ_V8_TILE] __attribute__((aligned(32)));
    const int full = m == CQ_V8_TILE; /* else copies padded with zero weights */
    uint16_t vh[CQ_V8_TILE] = {0};
    if (!full) memcpy(vh, vs, m * sizeof *vh);
    __m256 vf[TG];
    for (int g = 0; g < TG; g++) vf[g] = load_f16x8((full ? vs : vh) + 8 * g);
    for (uint32_t h = 0; h < nhc; h++) {
        const float *wr = w + (size_t)h * ws;
        if (!full) {
            memcpy(wt, wr, m * sizeof *wt);
            for (uint32_t t = m; t < CQ_V8_TILE; t++) wt[t] = 0.0f;
            wr = wt;
        }
        __m256 a[TG], mx = zero;
        for (int g = 0; g < TG; g++) {
            a[g] = _mm256_mul_ps(_mm256_loadu_ps(wr + 8 * g), vf[g]);
            mx = _mm256_max_ps(mx, a[g]);
        }
        const float A = hmax8(mx);
        tl->on[h] = A > 0x1p-100f;
        if (!tl->on[h]) {
            memset(tl->wb[h], 0, CQ_V8_TILE);
            continue;
        }
        const float inv = (float)CQ_V8_MAX / A, d = A / (float)CQ_V8_MAX;
        const __m256 iv = _mm256_set1_ps(inv);
        __m256i sum = _mm256_setzero_si256(), q[TG];
        for (int g = 0; g < TG; g++) {
            __m256 y = _mm256_add_ps(_mm256_mul_ps(a[g], iv), _mm256_load_ps(cq_v8_dither + 8 * g));
            q[g] = _mm256_min_epi32(_mm256_cvttps_epi32(y), cmax);
            sum = _mm256_add_epi32(sum, q[g]);
        }
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        tl->S8[h] = 8 * _mm_cvtsi128_si32(s4);
        tl->d[h] = d;
        for (int g = 0; g < TG; g += 2) {
            __m256i p16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(q[g], q[g + 1]), 0xD8);
            __m128i p8 = _mm_packus_epi16(_mm256_castsi256_si128(p16), _mm256_extracti128_si256(p16, 1));
            _mm_store_si128((__m128i *)(tl->wb[h] + 8 * g), p8);
        }
    }
}

static void v_acc_i4q(const float *w, uint32_t ws, uint32_t nh, const uint8_t *v, const uint16_t *vs,
                      uint32_t n, uint32_t D, float *acc) {
    for (uint32_t t0 = 0; t0 < n; t0 += CQ_V8_TILE) {
        const uint32_t m = n - t0 < CQ_V8_TILE ? n - t0 : CQ_V8_TILE;
        /* the codes stream from DRAM: ask for the tile after next (prefetches never fault) */
        const uint8_t *ahead = v + (size_t)(t0 + 2 * CQ_V8_TILE) * (D / 2);
        for (size_t o = 0; o < (size_t)CQ_V8_TILE * (D / 2); o += 64)
            _mm_prefetch((const char *)ahead + o, _MM_HINT_T0);
        for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
            const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
            i4q_tile tl;
            cq_avx2_i4q_prep(w + (size_t)h0 * ws + t0, ws, nhc, m, vs + t0, &tl);
            const uint8_t *vb = v + (size_t)t0 * (D / 2);
            if (m == CQ_V8_TILE && D % 32 == 0) {
#define B(NH) acc_i4q_blk(NH, &tl, vb, m, D, acc + (size_t)h0 * D, 1)
                NH_SWITCH(nhc, B)
#undef B
            } else {
#define B(NH) acc_i4q_blk(NH, &tl, vb, m, D, acc + (size_t)h0 * D, 0)
                NH_SWITCH(nhc, B)
#undef B
            }
        }
    }
}

static int v_any_nonfinite(const uint16_t *x, size_t n) {
    const __m256i m = _mm256_set1_epi16(0x7C00);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), m);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi16(v, m));
    }
    int any = !_mm256_testz_si256(bad, bad);
    for (; i < n; i++) any |= (x[i] & 0x7C00) == 0x7C00;
    return any;
}

/* exp(x) for x <= 0: the steps and constants of kernels_x86.h (CQ_EXP_*), 8 lanes */
static inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(CQ_EXP_MIN), x); /* NaN (inf - inf) stays NaN */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(CQ_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(CQ_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(CQ_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(cq_exp_poly[0]);
    for (int i = 1; i < 6; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(cq_exp_poly[i]));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static float v_max_f32(const float *x, uint32_t n) {
    __m256 m = _mm256_set1_ps(x[0]);
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float r = hmax8(m);
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

/* Rows [0, NH) of exp_sum, interleaved so that their dependency chains overlap; per row
 * the same operations in the same order whatever NH: an 8-lane sum in token order. */
static ALWAYS_INLINE void exp_rows(const uint32_t NH, float *x, uint32_t xs, uint32_t n,
                                   const float *m, float *sum) {
    __m256 vm[HC], acc[HC];
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < NH; h++) {
        vm[h] = _mm256_set1_ps(m[h]);
        acc[h] = _mm256_setzero_ps();
    }
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < NH; h++) {
            float *xr = x + (size_t)h * xs + i;
            const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(xr), vm[h]));
            _mm256_storeu_ps(xr, e);
            acc[h] = _mm256_add_ps(acc[h], e);
        }
    }
    if (i < n) { /* tail through the same polynomial, so every weight has one definition */
        for (uint32_t h = 0; h < NH; h++) {
            float *xr = x + (size_t)h * xs, buf[8];
            for (uint32_t j = 0; j < 8; j++) buf[j] = i + j < n ? xr[i + j] - m[h] : -87.0f;
            const __m256 e = exp8(_mm256_loadu_ps(buf));
            _mm256_storeu_ps(buf, e);
            for (uint32_t j = 0; i + j < n; j++) xr[i + j] = buf[j];
            for (uint32_t j = n - i; j < 8; j++) buf[j] = 0.0f;
            acc[h] = _mm256_add_ps(acc[h], _mm256_loadu_ps(buf));
        }
    }
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < NH; h++) sum[h] = hsum8(acc[h]);
}

static void v_exp_sum(float *x, uint32_t xs, uint32_t nh, uint32_t n, const float *m, float *sum) {
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
#define B(NH) exp_rows(NH, x + (size_t)h0 * xs, xs, n, m + h0, sum + h0)
        NH_SWITCH(nhc, B)
#undef B
    }
}

static uint64_t v_read_sum(const uint8_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i < n; i += 128) {
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 32)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 64)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}

/* v_read_sum with vmovntdqa: on write-back memory a hint that the lines are not reused */
static uint64_t v_read_sum_nt(const uint8_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i < n; i += 128) {
        a = _mm256_add_epi64(a, _mm256_stream_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_stream_load_si256((const __m256i *)(p + i + 32)));
        c = _mm256_add_epi64(c, _mm256_stream_load_si256((const __m256i *)(p + i + 64)));
        d = _mm256_add_epi64(d, _mm256_stream_load_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}

static void v_fold_q(const float *q, uint32_t nh, uint32_t D, const uint16_t *idx,
                     const uint16_t *sc, uint32_t kept, float *qp) {
    for (uint32_t h = 0; h < nh; h++) {
        const float *qh = q + (size_t)h * D;
        float *dst = qp + (size_t)h * kept;
        uint32_t j = 0;
        for (; j + 8 <= kept; j += 8) {
            __m256 x = idx ? _mm256_i32gather_ps(qh, _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(idx + j))), 4)
                           : _mm256_loadu_ps(qh + j);
            _mm256_storeu_ps(dst + j, _mm256_mul_ps(x, load_f16x8(sc + j)));
        }
        for (; j < kept; j++) dst[j] = qh[idx ? idx[j] : j] * cq_f16_to_f32(sc[j]);
    }
}

static void v_f16_to_f32(const uint16_t *x, float *y, size_t n);

/* 8 tokens at a time: the sidecar's column o gathered with stride k (after one fp16
 * conversion of the block), then per head a product and a sum, as in the scalar table */
static void v_side_dot(const float *qo, uint32_t nh, const uint16_t *side, uint32_t n, uint32_t k,
                       float *s, uint32_t ss) {
    float xs[64 * 8];
    const uint32_t tb = k <= 8 ? 64 : 8; /* tokens per converted block (xs holds tb * k) */
    const __m256i step = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32((int)k));
    for (uint32_t t0 = 0; t0 < n; t0 += tb) {
        const uint32_t m = n - t0 < tb ? n - t0 : tb;
        if (k > 64) { /* huge outlier sets: not worth a vector path */
            cq_kernels_scalar()->side_dot(qo, nh, side + (size_t)t0 * k, m, k, s + t0, ss);
            continue;
        }
        v_f16_to_f32(side + (size_t)t0 * k, xs, (size_t)m * k);
        for (uint32_t o = 0; o < k; o++) {
            uint32_t t = 0;
            for (; t + 8 <= m; t += 8) {
                __m256 x = _mm256_i32gather_ps(xs + (size_t)t * k + o, step, 4);
                for (uint32_t h = 0; h < nh; h++) {
                    float *dst = s + (size_t)h * ss + t0 + t;
                    __m256 p = _mm256_mul_ps(_mm256_set1_ps(qo[(size_t)h * k + o]), x);
                    _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), p));
                }
            }
            for (; t < m; t++)
                for (uint32_t h = 0; h < nh; h++)
                    s[(size_t)h * ss + t0 + t] += qo[(size_t)h * k + o] * xs[(size_t)t * k + o];
        }
    }
}

static void v_f16_to_f32(const uint16_t *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_f16x8(x + i));
    for (; i < n; i++) y[i] = cq_f16_to_f32(x[i]);
}

static void v_fold_quant_q8(const float *q, uint32_t nh, uint32_t D, const uint16_t *sc,
                            uint32_t kept, int8_t *q8, uint8_t *sh, float *qs) {
    cq_fold_quant_q8_split(&cq_kernels_avx2_table, q, nh, D, sc, kept, q8, sh, qs);
}

const cq_kernels cq_kernels_avx2_table = {
    .name = "avx2",
    .enc_token = v_enc_token,
    .enc_key_group = v_enc_key_group,
    .dot_f16 = v_dot_f16,
    .dot_f32 = v_dot_f32,
    .dot_i8 = v_dot_i8,
    .dot_i4 = v_dot_i4,
    .dot_i4q = v_dot_i4q,
    .dot_i4t = cq_avx2_dot_i4t,   /* the compute layouts: tiles_avx2.c */
    .dot_i4tq = cq_avx2_dot_i4tq,
    .quant_q8 = v_quant_q8,
    .acc_f16 = v_acc_f16,
    .acc_f32 = v_acc_f32,
    .acc_i8 = v_acc_i8,
    .acc_i4 = v_acc_i4,
    .acc_i4q = v_acc_i4q,
    .acc_i4t = cq_avx2_acc_i4t,
    .acc_i4tq = cq_avx2_acc_i4tq,
    .any_nonfinite = v_any_nonfinite,
    .max_f32 = v_max_f32,
    .exp_sum = v_exp_sum,
    .read_sum = v_read_sum,
    .read_sum_nt = v_read_sum_nt,
    .fold_q = v_fold_q,
    .fold_quant_q8 = v_fold_quant_q8,
    .side_dot = v_side_dot,
    .f16_to_f32 = v_f16_to_f32,
};
