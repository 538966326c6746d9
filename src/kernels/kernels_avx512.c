/*
 * kernels_avx512.c - the loops that AVX-512 VNNI speeds up, on 256-bit vectors
 * (AVX512VL encodings of vpdpbusd and vpternlogd, 32 ymm registers). Compiled
 * with the AVX2 flags plus -mavx512f -mavx512bw -mavx512vl -mavx512vnni and
 * reached only through dispatch.c after cpuid said yes: the "avx512" table is
 * the AVX2 table with these entries replaced. Same rules, same bits as the
 * scalar table (tests/test_cache_kernels.c checks every table).
 *
 * dot_i4q (FAST key scores): the AVX2 loop of dot_i4q_x86.inc with each
 * vpmaddwd + vpaddd pair fused into one vpdpwssd.
 *
 * acc_i4q (FAST INT4 values, cq_kernels.h): four tokens at a time. Their
 * 16-byte chunks are transposed so that dword j holds byte j of all four
 * (two unpack levels); one vpternlogd per nibble side makes u = code + 8 of
 * channel 2j (low nibbles) or 2j+1 (high), and vpdpbusd multiplies the four
 * tokens' 7-bit weights (unsigned operand, one dword broadcast) by their four
 * u (signed operand, <= 15) and adds to an int32 lane per channel: no 16-bit
 * stage, no widening, one instruction per 32 multiply-adds.
 */
#include <immintrin.h>
#include <string.h>

#include "cq_kernels.h"
#include "kernels_x86.h"

#define TERN_XOR_AND 0x28 /* vpternlogd: (a ^ b) & c */

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

/* Called once by dispatch.c (avx512_init, after cpuid): the AVX2 table, these entries replaced. */
void cq_kernels_avx512_fill(cq_kernels *t) {
    *t = cq_kernels_avx2_table;
    t->name = "avx512";
    t->acc_i4q = x_acc_i4q;
    t->dot_i4q = x_dot_i4q;
}
