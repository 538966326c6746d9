/* SPDX-License-Identifier: MIT */
/*
 * kernels_x86.h - internal pieces shared by the x86 kernel files (kernels_avx2.c,
 * kernels_avx512.c, tiles_avx2.c, tiles_avx512.c); included only by them. Not a public header.
 */
#ifndef CQ_KERNELS_X86_H
#define CQ_KERNELS_X86_H

#include <immintrin.h>
#include <stdint.h>

#include "cq_kernels.h"

#define HC 4 /* query heads per register block (GQA heads share each unpack) */
/* Software prefetch distance of the INT4 streaming loops, in bytes (a prefetch may
 * point past the buffer: prefetches never fault). */
#define PF_AHEAD 2048
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* The fp16 kernels' stream (dot_f16 keys, acc_f16 values) when a row is 256 bytes or more
 * (D >= 128): into L2, keys F16_PF_K_BYTES ahead of each token, values F16_PF_V_TOKENS rows
 * ahead (the next 128-token run's). acc_f16 reads a tile in channel passes, so at D >= 128
 * a pass touches part of every row and the hardware prefetchers see strides; with the
 * prefetch the step ran 1.3-1.7x faster at D = 128 (16K and 64K tokens, 2 threads, avx512
 * table), and 0.7-0.8x at D = 64, whose rows are one pass of sequential lines
 * (docs/CACHE.md, "Kernel ceilings"). Prefetches never fault, so they may point past the
 * run or the page. Both x86 tables (kernels_avx2.c, kernels_avx512.c) use them. */
#define F16_PF_MIN_D 128
#define F16_PF_V_TOKENS 128
#define F16_PF_K_BYTES 8192
/* into L2 only, written out: GCC 12 drops _mm_prefetch(.., _MM_HINT_T1) in these loops
 * (seen in the object code) */
static inline void pf_l2(const uint8_t *p) {
    __asm__ volatile("prefetcht1 %0" : : "m"(*(const char *)p));
}

/* Run BLK(NH) with NH a compile-time constant 1..4, so that the per-head
 * accumulator arrays are unrolled into registers. */
#define NH_SWITCH(nhc, BLK)                                                                        \
    switch (nhc) {                                                                                 \
    case 1: BLK(1); break;                                                                         \
    case 2: BLK(2); break;                                                                         \
    case 3: BLK(3); break;                                                                         \
    default: BLK(4); break;                                                                        \
    }

/* The sum of v's 8 lanes in the one order both x86 tables' exp_sum use (so the same bits):
 * the two halves, then pairs, then the last two. */
static inline float hsum8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* The four sums of a0..a3's lanes (hadd tree: the order every x86 score loop uses). */
static inline __m128 hsum4x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
    __m256 t2 = _mm256_hadd_ps(t0, t1);
    return _mm_add_ps(_mm256_castps256_ps128(t2), _mm256_extractf128_ps(t2, 1));
}

static inline __m256 load_f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* exp(x) for x <= 0 (softmax arguments), written once for the 256-bit (kernels_avx2.c exp8)
 * and 512-bit (kernels_avx512.c exp16) loops, which take the same steps so that an element
 * has the same bits in both: x clamped at CQ_EXP_MIN, n = round(x * log2 e), r = x - n ln2 (in
 * two parts), p = 1 + r + r^2 * poly(r) with these degree-5 Cephes expf coefficients (highest
 * first), result p * 2^n; relative error ~2 ulp, inputs below -87 give the 2^-126 floor. A NaN
 * (the inf - inf of an overflowed score) stays NaN, as with libm expf: the clamp is
 * max(CQ_EXP_MIN, x), and max returns its second operand when one is NaN. So the softmax sum
 * turns NaN and the call is CQ_ERR_OVERFLOW in every table (attend.c). */
#define CQ_EXP_MIN -87.0f
#define CQ_EXP_LOG2E 1.44269504088896341f
#define CQ_EXP_LN2_HI 0.693359375f
#define CQ_EXP_LN2_LO -2.12194440e-4f
static const float cq_exp_poly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                     4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

/* The 7-bit weights of one acc_i4q tile for up to 4 query heads (cq_kernels.h rule). */
typedef struct cq_i4q_tile {
    uint8_t wb[4][CQ_V8_TILE] __attribute__((aligned(64))); /* a8 per token, 0 past m */
    int32_t S8[4];                                           /* 8 * sum a8 */
    float d[4];                                              /* A / CQ_V8_MAX */
    int on[4];                                               /* A > 2^-100 */
} cq_i4q_tile;

/* acc_i4q's tile flush: dst[c] += (float)(I_c - 8 S) * d for the 32 channels whose int32
 * sums r[0..3] hold in channel order (8 per vector); only the first `valid` are written. */
static inline void cq_i4q_add32(const __m256i *r, int32_t S8, float d, float *dst,
                                uint32_t valid) {
    const __m256i s8 = _mm256_set1_epi32(S8);
    const __m256 dv = _mm256_set1_ps(d);
    if (valid >= 32) {
        for (int i = 0; i < 4; i++) {
            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(r[i], s8)), dv);
            _mm256_storeu_ps(dst + 8 * i, _mm256_add_ps(_mm256_loadu_ps(dst + 8 * i), f));
        }
        return;
    }
    float tmp[32];
    for (int i = 0; i < 4; i++)
        _mm256_storeu_ps(tmp + 8 * i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(r[i], s8)), dv));
    for (uint32_t c = 0; c < valid; c++) dst[c] += tmp[c];
}

/* Heads [0, nhc) (nhc <= 4) of the tile of m tokens whose first weight is w[0] (rows of
 * stride ws) and first value scale vs[0]. Defined in kernels_avx2.c. */
void cq_avx2_i4q_prep(const float *w, uint32_t ws, uint32_t nhc, uint32_t m, const uint16_t *vs,
                      cq_i4q_tile *tl);

/* The AVX2 table's loops over the compute layouts (cq_kernels.h: dot_i4tq, dot_i4t, acc_i4tq,
 * acc_i4t). Defined in tiles_avx2.c. */
void cq_avx2_dot_i4tq(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t nh,
                      const uint8_t *grp, uint32_t r0, uint32_t n, uint32_t kept, float *s,
                      uint32_t ss);
void cq_avx2_dot_i4t(const float *qp, uint32_t nh, const uint8_t *grp, uint32_t r0, uint32_t n,
                     uint32_t kept, float *s, uint32_t ss);
void cq_avx2_acc_i4tq(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
                      const uint16_t *vs, uint32_t n, uint32_t D, float *acc);
void cq_avx2_acc_i4t(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
                     const uint16_t *vs, uint32_t n, uint32_t D, float *acc);

#endif
