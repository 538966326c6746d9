/* SPDX-License-Identifier: MIT */
/*
 * kernels_avx512.c - the loops that AVX-512 (F/BW/VL/VNNI) speeds up. Compiled with
 * the AVX2 flags plus -mavx512f -mavx512bw -mavx512vl -mavx512vnni and reached only
 * through dispatch.c after cpuid said yes: the "avx512" table is the AVX2 table with
 * these entries replaced. Same rules, same bits as the scalar table where the rule is
 * integer (tests/test_cache_kernels.c checks every table).
 *
 * Here: fp16 scores and values (dot_f16, acc_f16), softmax and query (exp_sum with the
 * AVX2 polynomial and sum order on 16 lanes, max_f32, quant_q8, fold_quant_q8), and the
 * loops over the contract's token-major form (256-bit; key groups whose G, value pages
 * whose head_dim or page size the layouts do not fit): dot_i4q is the AVX2 loop of
 * dot_i4q_x86.inc with each vpmaddwd + vpaddd fused into one vpdpwssd; acc_i4q transposes
 * four tokens' 16-byte chunks so that dword j holds byte j of all four, one vpternlogd per
 * nibble side makes u = code + 8, and vpdpbusd multiplies the four tokens' 7-bit weights
 * by their four u. The 512-bit loops over the compute layouts (cq_tiles.h) are in
 * tiles_avx512.c.
 */
#include <immintrin.h>
#include <string.h>

#include "cq_kernels.h"
#include "kernels_avx512.h"
#include "kernels_x86.h"

/* dot_i4q: the shared x86 loop with vpmaddwd + vpaddd fused into vpdpwssd */
#define DOT_I4Q_NAME x_dot_i4q
#define DOT_I4Q_SETUP x_dot_i4q_setup
#define I4Q_MADD(acc, s16, w16) _mm256_dpwssd_epi32((acc), (s16), (w16))
#include "dot_i4q_x86.inc"
#undef I4Q_MADD
#undef DOT_I4Q_NAME
#undef DOT_I4Q_SETUP

/* acc[0 .. 32) += (I - 8 S) * d from the int32 sums of one 32-channel chunk: e0 / o0 hold
 * channels 2j / 2j+1 of bytes j = 0..7, e1 / o1 of bytes 8..15 */
static inline void flush32(__m256i e0, __m256i o0, __m256i e1, __m256i o1, int32_t S8, float d,
                           float *dst) {
    __m256i a0 = _mm256_unpacklo_epi32(e0, o0), a1 = _mm256_unpackhi_epi32(e0, o0);
    __m256i b0 = _mm256_unpacklo_epi32(e1, o1), b1 = _mm256_unpackhi_epi32(e1, o1);
    /* a0: ch 0-3 | 8-11, a1: 4-7 | 12-15 (within the bytes 0-7 half), likewise b for 16-31 */
    __m256i r[4] = {_mm256_permute2x128_si256(a0, a1, 0x20), _mm256_permute2x128_si256(a0, a1, 0x31),
                    _mm256_permute2x128_si256(b0, b1, 0x20), _mm256_permute2x128_si256(b0, b1, 0x31)};
    cq_i4q_add32(r, S8, d, dst, 32);
}

/* One whole tile (CQ_V8_TILE tokens, D a multiple of 32) for nhc <= 4 heads. */
static ALWAYS_INLINE void tile_vnni(const uint32_t nhc, const cq_i4q_tile *tl,
                                    const uint8_t *base, uint32_t D, float *ah) {
    const uint32_t kb = D / 2;
    const __m256i c88 = _mm256_set1_epi8((char)0x88), c08 = _mm256_set1_epi8(0x08),
                  c0f = _mm256_set1_epi8(0x0F);
    for (uint32_t c = 0; c < kb; c += 16) {
        __m256i acc[HC][4];
        _Pragma("GCC unroll 4") for (int h = 0; h < HC; h++)
            acc[h][0] = acc[h][1] = acc[h][2] = acc[h][3] = _mm256_setzero_si256();
        for (uint32_t t = 0; t < CQ_V8_TILE; t += 4) {
            const uint8_t *r = base + (size_t)t * kb + c;
            __m128i x0 = _mm_loadu_si128((const __m128i *)r);
            __m128i x1 = _mm_loadu_si128((const __m128i *)(r + kb));
            __m128i x2 = _mm_loadu_si128((const __m128i *)(r + 2 * kb));
            __m128i x3 = _mm_loadu_si128((const __m128i *)(r + 3 * kb));
            __m128i a = _mm_unpacklo_epi8(x0, x1), b = _mm_unpackhi_epi8(x0, x1);
            __m128i p = _mm_unpacklo_epi8(x2, x3), q = _mm_unpackhi_epi8(x2, x3);
            /* dword j = byte j of tokens t..t+3: y0 bytes 0-7, y1 bytes 8-15 */
            __m256i y0 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(a, p)),
                                                 _mm_unpackhi_epi16(a, p), 1);
            __m256i y1 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(b, q)),
                                                 _mm_unpackhi_epi16(b, q), 1);
            __m256i l0 = _mm256_ternarylogic_epi32(y0, c88, c0f, TERN_XOR_AND);
            __m256i h0 = _mm256_ternarylogic_epi32(_mm256_srli_epi16(y0, 4), c08, c0f, TERN_XOR_AND);
            __m256i l1 = _mm256_ternarylogic_epi32(y1, c88, c0f, TERN_XOR_AND);
            __m256i h1 = _mm256_ternarylogic_epi32(_mm256_srli_epi16(y1, 4), c08, c0f, TERN_XOR_AND);
            _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
                int32_t w4;
                memcpy(&w4, &tl->wb[h][t], 4);
                const __m256i wv = _mm256_set1_epi32(w4);
                acc[h][0] = _mm256_dpbusd_epi32(acc[h][0], wv, l0);
                acc[h][1] = _mm256_dpbusd_epi32(acc[h][1], wv, h0);
                acc[h][2] = _mm256_dpbusd_epi32(acc[h][2], wv, l1);
                acc[h][3] = _mm256_dpbusd_epi32(acc[h][3], wv, h1);
            }
        }
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++)
            if (tl->on[h])
                flush32(acc[h][0], acc[h][1], acc[h][2], acc[h][3], tl->S8[h], tl->d[h],
                        ah + (size_t)h * D + 2 * c);
    }
}

static void x_acc_i4q(const float *w, uint32_t ws, uint32_t nh, const uint8_t *v, const uint16_t *vs,
                      uint32_t n, uint32_t D, float *acc) {
    const uint32_t kb = D / 2;
    for (uint32_t t0 = 0; t0 < n; t0 += CQ_V8_TILE) {
        const uint32_t m = n - t0 < CQ_V8_TILE ? n - t0 : CQ_V8_TILE;
        if (m < CQ_V8_TILE || D % 32) { /* partial tile or chunk: the AVX2 loop, same rule */
            cq_kernels_avx2_table.acc_i4q(w + t0, ws, nh, v + (size_t)t0 * kb, vs + t0, m, D, acc);
            continue;
        }
        /* the codes stream from DRAM: ask for the tile after next (prefetches never fault) */
        const uint8_t *ahead = v + (size_t)(t0 + 2 * CQ_V8_TILE) * kb;
        for (size_t o = 0; o < (size_t)CQ_V8_TILE * kb; o += 64)
            _mm_prefetch((const char *)ahead + o, _MM_HINT_T0);
        for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
            const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
            cq_i4q_tile tl;
            cq_avx2_i4q_prep(w + (size_t)h0 * ws + t0, ws, nhc, m, vs + t0, &tl);
            const uint8_t *vb = v + (size_t)t0 * kb;
            float *ah = acc + (size_t)h0 * D;
#define B(NH) tile_vnni(NH, &tl, vb, D, ah)
            NH_SWITCH(nhc, B)
#undef B
        }
    }
}

/* ------------------------------------------------ fp16 key scores */

/* fp16 key scores, two tokens per pass. The AVX2 loop (kernels_avx2.c, DOT_ROW) reloads
 * the query for every token and is bound by loads (at D = 128 with 4 heads: 80 loads for
 * 64 FMAs per token); here two tokens share every query load (48 per token), which needs
 * 16 accumulators: AVX-512VL's 32 vector registers. Per (token, head) the sums are the
 * AVX2 loop's (two accumulators over alternate 8-channel chunks, the last odd chunk into
 * the first, added, then hsum4x8), so the bits are the same (tested). D % 8 != 0 and a
 * last odd token take the AVX2 loop. */
static ALWAYS_INLINE void f16_pair(const uint32_t nhc, const float *q, const uint16_t *k0,
                                   uint32_t D, float *s, uint32_t ss) {
    const uint16_t *k1 = k0 + D;
    __m256 a0[2][HC], a1[2][HC];
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < HC; h++)
        a0[0][h] = a1[0][h] = a0[1][h] = a1[1][h] = _mm256_setzero_ps();
    uint32_t c = 0;
    for (; c + 16 <= D; c += 16) {
        const __m256 x00 = load_f16x8(k0 + c), x01 = load_f16x8(k0 + c + 8);
        const __m256 x10 = load_f16x8(k1 + c), x11 = load_f16x8(k1 + c + 8);
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
            __m256 qa = _mm256_loadu_ps(q + (size_t)h * D + c);
            __m256 qb = _mm256_loadu_ps(q + (size_t)h * D + c + 8);
            /* one load per query vector: GCC would fold it into both tokens' FMAs */
            __asm__("" : "+v"(qa), "+v"(qb));
            a0[0][h] = _mm256_fmadd_ps(x00, qa, a0[0][h]);
            a1[0][h] = _mm256_fmadd_ps(x01, qb, a1[0][h]);
            a0[1][h] = _mm256_fmadd_ps(x10, qa, a0[1][h]);
            a1[1][h] = _mm256_fmadd_ps(x11, qb, a1[1][h]);
        }
    }
    if (c < D) { /* D % 16 == 8: one more 8-channel chunk, into the first accumulator */
        const __m256 x0 = load_f16x8(k0 + c), x1 = load_f16x8(k1 + c);
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
            __m256 qa = _mm256_loadu_ps(q + (size_t)h * D + c);
            __asm__("" : "+v"(qa));
            a0[0][h] = _mm256_fmadd_ps(x0, qa, a0[0][h]);
            a0[1][h] = _mm256_fmadd_ps(x1, qa, a0[1][h]);
        }
    }
    float o[2][4];
    _Pragma("GCC unroll 2") for (uint32_t i = 0; i < 2; i++) {
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < HC; h++)
            a0[i][h] = _mm256_add_ps(a0[i][h], a1[i][h]);
        _mm_storeu_ps(o[i], hsum4x8(a0[i][0], a0[i][1], a0[i][2], a0[i][3]));
    }
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
        s[(size_t)h * ss] = o[0][h];
        s[(size_t)h * ss + 1] = o[1][h];
    }
}

static void x_dot_f16(const float *q, uint32_t nh, const uint16_t *k, uint32_t n, uint32_t D,
                      float *s, uint32_t ss) {
    if (D % 8) {
        cq_kernels_avx2_table.dot_f16(q, nh, k, n, D, s, ss);
        return;
    }
    const uint32_t n2 = n & ~1u;
    const int pf = D >= F16_PF_MIN_D;
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
        const float *qh = q + (size_t)h0 * D;
        for (uint32_t t = 0; t < n2; t += 2) {
            if (pf && h0 == 0) /* the pair's lines, F16_PF_K_BYTES ahead */
                for (uint32_t o = 0; o < 4 * D; o += 64)
                    pf_l2((const uint8_t *)(k + (size_t)t * D) + o + F16_PF_K_BYTES);
#define B(NH) f16_pair(NH, qh, k + (size_t)t * D, D, s + (size_t)h0 * ss + t, ss)
            NH_SWITCH(nhc, B)
#undef B
        }
    }
    if (n2 < n) cq_kernels_avx2_table.dot_f16(q, nh, k + (size_t)n2 * D, 1, D, s + n2, ss);
}

/* fp16 value accumulation: NZ 16-channel zmm lanes per head, nhc heads, tokens [0, m) of a
 * tile. Per (head, channel) the same FMA sequence over the tokens as the AVX2 loop
 * (acc = w_t * x + acc, in token order; the accumulator stored and reloaded between tiles is
 * exact), so the same bits. */
static ALWAYS_INLINE void f16_acc_chunk(const uint32_t nhc, const uint32_t NZ, const float *w,
                                        uint32_t ws, const uint16_t *v, uint32_t m, uint32_t D,
                                        float *a, const uint8_t *pf) {
    __m512 A[HC][4];
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < HC; h++)
        _Pragma("GCC unroll 4") for (uint32_t z = 0; z < NZ; z++)
            A[h][z] = h < nhc ? _mm512_loadu_ps(a + (size_t)h * D + 16 * z) : _mm512_setzero_ps();
    for (uint32_t t = 0; t < m; t++) {
        const uint16_t *r = v + (size_t)t * D;
        if (pf) /* token t's row, F16_PF_V_TOKENS ahead */
            for (uint32_t o = 0; o < 2 * D; o += 64)
                pf_l2(pf + ((size_t)t + F16_PF_V_TOKENS) * D * 2 + o);
        __m512 x[4];
        _Pragma("GCC unroll 4") for (uint32_t z = 0; z < NZ; z++)
            x[z] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + 16 * z)));
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
            const __m512 b = _mm512_set1_ps(w[(size_t)h * ws + t]);
            _Pragma("GCC unroll 4") for (uint32_t z = 0; z < NZ; z++)
                A[h][z] = _mm512_fmadd_ps(b, x[z], A[h][z]);
        }
    }
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++)
        _Pragma("GCC unroll 4") for (uint32_t z = 0; z < NZ; z++)
            _mm512_storeu_ps(a + (size_t)h * D + 16 * z, A[h][z]);
}

static void x_acc_f16(const float *w, uint32_t ws, uint32_t nh, const uint16_t *v, uint32_t n,
                      uint32_t D, float *acc) {
    if (D % 16) {
        cq_kernels_avx2_table.acc_f16(w, ws, nh, v, n, D, acc);
        return;
    }
    const int pfv = D >= F16_PF_MIN_D;
    for (uint32_t t0 = 0; t0 < n; t0 += 64) {
        const uint32_t m = n - t0 < 64 ? n - t0 : 64;
        const uint16_t *vt = v + (size_t)t0 * D;
        for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
            const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
            const float *wh = w + (size_t)h0 * ws + t0;
            for (uint32_t c = 0; c < D;) {
                const uint8_t *pf = pfv && h0 == 0 && c == 0 ? (const uint8_t *)vt : NULL;
                float *a = acc + (size_t)h0 * D + c;
                if (c + 64 <= D) {
#define B(NH) f16_acc_chunk(NH, 4, wh, ws, vt + c, m, D, a, pf)
                    NH_SWITCH(nhc, B)
#undef B
                    c += 64;
                } else if (c + 32 <= D) {
#define B(NH) f16_acc_chunk(NH, 2, wh, ws, vt + c, m, D, a, pf)
                    NH_SWITCH(nhc, B)
#undef B
                    c += 32;
                } else {
#define B(NH) f16_acc_chunk(NH, 1, wh, ws, vt + c, m, D, a, pf)
                    NH_SWITCH(nhc, B)
#undef B
                    c += 16;
                }
            }
        }
    }
}


/* ------------------------------------------- softmax and query, 512-bit */

/* exp8 of kernels_avx2.c on 16 lanes: the steps and constants of kernels_x86.h (CQ_EXP_*),
 * so every element has the AVX2 table's bits. */
static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(CQ_EXP_MIN), x); /* NaN (inf - inf) stays NaN */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(CQ_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(CQ_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(CQ_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(cq_exp_poly[0]);
    for (int i = 1; i < 6; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(cq_exp_poly[i]));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    /* p * 2^n in one vscalefps: n is an integer in [-126, 127] for x in [CQ_EXP_MIN, 88],
     * so this is the one correctly rounded product p * 2^n, the bits of the AVX2 table's
     * multiply by the constructed power */
    return _mm512_scalef_ps(p, n);
}

/* Rows [0, NH) of exp_sum, the rows interleaved so that their dependency chains (the
 * polynomial, the in-order sum) overlap; per row the same operations in the same order as
 * one row alone: v_exp_sum's 8-lane sum, so the AVX2 table's bits. */
static ALWAYS_INLINE void exp_rows(const uint32_t NH, float *x, uint32_t xs, uint32_t n,
                                   const float *m, float *sum) {
    __m512 vm[HC];
    __m256 acc[HC];
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < NH; h++) {
        vm[h] = _mm512_set1_ps(m[h]);
        acc[h] = _mm256_setzero_ps();
    }
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < NH; h++) {
            float *xr = x + (size_t)h * xs + i;
            const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(xr), vm[h]));
            _mm512_storeu_ps(xr, e);
            acc[h] = _mm256_add_ps(acc[h], _mm512_castps512_ps256(e));
            acc[h] = _mm256_add_ps(acc[h], _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
        }
    }
    if (i < n) { /* the tail through the same polynomial, masked; missing lanes add 0 */
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < NH; h++) {
            float *xr = x + (size_t)h * xs + i;
            const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_mask_loadu_ps(vm[h], k, xr), vm[h])));
            _mm512_mask_storeu_ps(xr, k, e);
            acc[h] = _mm256_add_ps(acc[h], _mm512_castps512_ps256(e));
            if (n - i > 8)
                acc[h] = _mm256_add_ps(acc[h], _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
        }
    }
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < NH; h++) sum[h] = hsum8(acc[h]);
}

static void x_exp_sum(float *x, uint32_t xs, uint32_t nh, uint32_t n, const float *m, float *sum) {
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
#define B(NH) exp_rows(NH, x + (size_t)h0 * xs, xs, n, m + h0, sum + h0)
        NH_SWITCH(nhc, B)
#undef B
    }
}

static float x_max_f32(const float *x, uint32_t n) {
    __m512 m = _mm512_set1_ps(x[0]);
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    if (i < n) m = _mm512_max_ps(m, _mm512_mask_loadu_ps(m, (__mmask16)((1u << (n - i)) - 1), x + i));
    return _mm512_reduce_max_ps(m); /* exact in any order */
}

/* The rule of s_quant_q8 as v_quant_q8 computes it (block exponents from the float
 * fields), 16 lanes = two 8-channel blocks at a time; kept % 16 != 0 takes the AVX2 loop. */
_Static_assert(CQ_Q8_BLOCK == 8, "x_quant_q8 computes block maxima of 8 lanes");
/* 16 channels (km: those that exist) of x_quant_q8's second pass */
/* quant_q8's exponent rule per lane: for block maxima bmax (lanes of one block hold its max),
 * e = the largest e in [0, CQ_Q8_SHIFT_MAX] with bmax * 2^e <= amax (EA, MA: amax's exponent
 * and mantissa fields), from the float fields; the block factor (127 / amax) 2^e in *f. */
static ALWAYS_INLINE __m512i q8_exps(__m512 bmax, const __m512 inv, const __m512i EA,
                                     const __m512i MA, __m512 *f) {
    const __m512i bits = _mm512_castps_si512(bmax);
    __m512i e = _mm512_sub_epi32(EA, _mm512_srli_epi32(bits, 23));
    e = _mm512_mask_sub_epi32(e, _mm512_cmpgt_epi32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFF)), MA),
                              e, _mm512_set1_epi32(1));
    e = _mm512_min_epi32(_mm512_max_epi32(e, _mm512_setzero_si512()),
                         _mm512_set1_epi32((int)CQ_Q8_SHIFT_MAX));
    *f = _mm512_mul_ps(inv, _mm512_castsi512_ps(_mm512_slli_epi32(
                                _mm512_add_epi32(e, _mm512_set1_epi32(127)), 23)));
    return e;
}

static ALWAYS_INLINE void q8_lanes(__m512 xv, const __m512 inv, const __m512i EA, const __m512i MA,
                                   __mmask16 km, int8_t *q8, uint8_t *sh, uint32_t nsh) {
    __m512 a = _mm512_abs_ps(xv), f;
    a = _mm512_max_ps(a, _mm512_permute_ps(a, 0xB1));
    a = _mm512_max_ps(a, _mm512_permute_ps(a, 0x4E));
    a = _mm512_max_ps(a, _mm512_shuffle_f32x4(a, a, 0xB1)); /* 8-lane block max */
    const __m512i e = q8_exps(a, inv, EA, MA, &f);
    /* |x f| <= 127 (1 + 2^-22) by the exponent rule, so the rule's clamp never acts; the
     * conversion rounds in the current mode, as the scalar rule's 1.5 * 2^23 addition does */
    const __m128i qb = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(xv, f)));
    if (km == 0xFFFF) _mm_storeu_si128((__m128i *)q8, qb);
    else _mm_mask_storeu_epi8(q8, km, qb);
    /* the blocks' exponents: lanes 0 and 8 */
    sh[0] = (uint8_t)(CQ_Q8_SHIFT_MAX - (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(e)));
    if (nsh > 1)
        sh[1] = (uint8_t)(CQ_Q8_SHIFT_MAX - (uint32_t)_mm_cvtsi128_si32(_mm512_extracti32x4_epi32(e, 2)));
}

/* x_quant_q8's second pass over 64 channels (8 whole blocks) at once: the 8 block maxima
 * gathered into one vector by a transposing reduction, the exponent rule of q8_lanes run
 * once on it, each block's factor broadcast back to its 8 lanes by one vpermps per 16
 * channels, the codes (|y| <= 127: the saturating packs are exact) packed to one 64-byte
 * store and the 8 shifts to one 8-byte store. The same operations per value as q8_lanes
 * (max, the exponent fields, one product with the same factor, the same rounding). */
static ALWAYS_INLINE void q8_chunk64(const float *x, const __m512 inv, const __m512i EA,
                                     const __m512i MA, int8_t *q8, uint8_t *sh) {
    const __m512i one = _mm512_set1_epi32(1);
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16),
                 v2 = _mm512_loadu_ps(x + 32), v3 = _mm512_loadu_ps(x + 48);
    const __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1), a2 = _mm512_abs_ps(v2),
                 a3 = _mm512_abs_ps(v3);
    /* 128-bit lane k of c: 4-lane maxima of block k (blocks 0-3: channels 0-31), of e:
     * block 4 + k */
    const __m512 c = _mm512_max_ps(_mm512_shuffle_f32x4(a0, a1, 0x88), _mm512_shuffle_f32x4(a0, a1, 0xDD));
    const __m512 e = _mm512_max_ps(_mm512_shuffle_f32x4(a2, a3, 0x88), _mm512_shuffle_f32x4(a2, a3, 0xDD));
    __m512 m = _mm512_max_ps(_mm512_unpacklo_ps(c, e), _mm512_unpackhi_ps(c, e));
    m = _mm512_max_ps(m, _mm512_permute_ps(m, 0x4E)); /* lane 4k: block k, 4k + 1: block 4 + k */
    __m512 f;
    const __m512i ex = q8_exps(m, inv, EA, MA, &f);
    /* block j's lane of f: 4j for j < 4, 4 (j - 4) + 1 after */
    const __m512i i0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
    const __m512i i1 = _mm512_setr_epi32(8, 8, 8, 8, 8, 8, 8, 8, 12, 12, 12, 12, 12, 12, 12, 12);
    const __m512i y0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_permutexvar_ps(i0, f)));
    const __m512i y1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_permutexvar_ps(i1, f)));
    const __m512i y2 = _mm512_cvtps_epi32(_mm512_mul_ps(v2, _mm512_permutexvar_ps(_mm512_add_epi32(i0, one), f)));
    const __m512i y3 = _mm512_cvtps_epi32(_mm512_mul_ps(v3, _mm512_permutexvar_ps(_mm512_add_epi32(i1, one), f)));
    _mm512_storeu_si512(q8, pack4_epi8(y0, y1, y2, y3));
    const __m512i sv = _mm512_sub_epi32(_mm512_set1_epi32((int)CQ_Q8_SHIFT_MAX), _mm512_permutexvar_epi32(
                                                  _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0), ex));
    _mm_storel_epi64((__m128i *)sh, _mm512_cvtepi32_epi8(sv));
}

/* The rounding pass of quant_q8 over a row x of kept values whose max |x| is amax (lanes past
 * kept are read masked: they change no block maximum and are never stored). */
static void q8_row(const float *x, uint32_t kept, float amax, int8_t *q8, uint8_t *sh, float *qs) {
    if (!(amax > 0.0f) || amax < 0x1p-100f) { /* zero or tiny rows: the scalar rule */
        cq_kernels_scalar()->quant_q8(x, kept, q8, sh, qs);
        return;
    }
    const uint32_t kf = kept & ~15u;
    const __mmask16 kt = (__mmask16)((1u << (kept - kf)) - 1);
    uint32_t ua;
    memcpy(&ua, &amax, 4);
    const __m512i EA = _mm512_set1_epi32((int)(ua >> 23)), MA = _mm512_set1_epi32((int)(ua & 0x7FFFFF));
    const __m512 inv = _mm512_set1_ps(127.0f / amax);
    uint32_t c = 0;
    for (; c + 64 <= kf; c += 64) q8_chunk64(x + c, inv, EA, MA, q8 + c, sh + c / 8);
    for (; c < kf; c += 16)
        q8_lanes(_mm512_loadu_ps(x + c), inv, EA, MA, 0xFFFF, q8 + c, sh + c / 8, 2);
    if (kt)
        q8_lanes(_mm512_maskz_loadu_ps(kt, x + kf), inv, EA, MA, kt, q8 + kf, sh + kf / 8,
                 kept - kf > 8 ? 2 : 1);
    *qs = (amax / 127.0f) / (float)(1u << CQ_Q8_SHIFT_MAX);
}

static void x_quant_q8(const float *x, uint32_t kept, int8_t *q8, uint8_t *sh, float *qs) {
    const uint32_t kf = kept & ~15u;
    const __mmask16 kt = (__mmask16)((1u << (kept - kf)) - 1);
    __m512 m = _mm512_setzero_ps();
    for (uint32_t c = 0; c < kf; c += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + c)));
    if (kt) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_maskz_loadu_ps(kt, x + kf)));
    q8_row(x, kept, _mm512_reduce_max_ps(m), q8, sh, qs);
}

/* fold_q then quant_q8 per head, in one pass: the scales widened once for all heads, the
 * products (one fp32 multiply each, as fold_q) and their maximum in the same loop, then the
 * quant_q8 rounding over the folded row. */
static void x_fold_quant_q8(const float *q, uint32_t nh, uint32_t D, const uint16_t *sc,
                            uint32_t kept, int8_t *q8, uint8_t *sh, float *qs) {
    float sf[CQ_MAX_DIM] __attribute__((aligned(64))), x[CQ_MAX_DIM] __attribute__((aligned(64)));
    const uint32_t kf = kept & ~15u, nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK;
    const __mmask16 kt = (__mmask16)((1u << (kept - kf)) - 1);
    for (uint32_t c = 0; c < kf; c += 16)
        _mm512_store_ps(sf + c, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sc + c))));
    if (kt) _mm512_store_ps(sf + kf, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(kt, sc + kf)));
    for (uint32_t h = 0; h < nh; h++) {
        const float *qh = q + (size_t)h * D;
        __m512 m = _mm512_setzero_ps();
        for (uint32_t c = 0; c < kf; c += 16) {
            const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(qh + c), _mm512_load_ps(sf + c));
            _mm512_store_ps(x + c, v);
            m = _mm512_max_ps(m, _mm512_abs_ps(v));
        }
        if (kt) {
            const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(kt, qh + kf), _mm512_load_ps(sf + kf));
            _mm512_store_ps(x + kf, v);
            m = _mm512_max_ps(m, _mm512_abs_ps(v));
        }
        q8_row(x, kept, _mm512_reduce_max_ps(m), q8 + (size_t)h * kept, sh + (size_t)h * nb, &qs[h]);
    }
}

/* Called once by dispatch.c (avx512_init, after cpuid): the AVX2 table, these entries replaced. */
void cq_kernels_avx512_fill(cq_kernels *t) {
    *t = cq_kernels_avx2_table;
    t->name = "avx512";
    t->acc_i4q = x_acc_i4q;
    t->dot_i4q = x_dot_i4q;
    t->dot_i4t = cq_avx512_dot_i4t;
    t->dot_i4tq = cq_avx512_dot_i4tq;
    t->acc_i4t = cq_avx512_acc_i4t;
    t->acc_i4tq = cq_avx512_acc_i4tq;
    t->exp_sum = x_exp_sum;
    t->max_f32 = x_max_f32;
    t->dot_f16 = x_dot_f16;
    t->acc_f16 = x_acc_f16;
    t->quant_q8 = x_quant_q8;
    t->fold_quant_q8 = x_fold_quant_q8;
}
