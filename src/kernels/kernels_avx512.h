/* SPDX-License-Identifier: MIT */
/*
 * kernels_avx512.h - what the two AVX-512 files share (kernels_avx512.c, tiles_avx512.c);
 * included only by them, which are compiled with the AVX-512 flags. Not a public header.
 */
#ifndef CQ_KERNELS_AVX512_H
#define CQ_KERNELS_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels_x86.h"

#define TERN_XOR_AND 0x28 /* vpternlogd: (a ^ b) & c */

/* Four vectors of int32 codes in [-128, 127] (the saturating packs are exact there) to their
 * 64 bytes in order: a's 16, then b's, c's, d's. The packs leave dword 4L + k of each 128-bit
 * lane L holding lanes 4L..4L+3 of the k-th vector; one vpermd puts them in order. */
static ALWAYS_INLINE __m512i pack4_epi8(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i ord = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_epi32(
        ord, _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d)));
}

/* The avx512 table's loops over the compute layouts (cq_kernels.h: dot_i4tq, dot_i4t,
 * acc_i4tq, acc_i4t). Defined in tiles_avx512.c. */
void cq_avx512_dot_i4tq(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t nh,
                        const uint8_t *grp, uint32_t r0, uint32_t n, uint32_t kept, float *s,
                        uint32_t ss);
void cq_avx512_dot_i4t(const float *qp, uint32_t nh, const uint8_t *grp, uint32_t r0,
                       uint32_t n, uint32_t kept, float *s, uint32_t ss);
void cq_avx512_acc_i4tq(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk,
                        uint32_t o, const uint16_t *vs, uint32_t n, uint32_t D, float *acc);
void cq_avx512_acc_i4t(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk,
                       uint32_t o, const uint16_t *vs, uint32_t n, uint32_t D, float *acc);

#endif
