/* SPDX-License-Identifier: MIT */
/*
 * tiles_avx512.c - the avx512 table's loops over the cache's compute layouts (cq_tiles.h),
 * 512-bit: key tiles (dot_i4tq FAST, dot_i4t EXACT) and value blocks (acc_i4tq FAST,
 * acc_i4t EXACT). Same rules as the scalar table (cq_kernels.h): the integer rules bit for
 * bit, the fp32 ones within the EXACT bound (tests/test_cache_kernels.c). Compiled with
 * the AVX-512 flags (the _avx512.c suffix) and reached only through the avx512 table
 * (kernels_avx512.c). Not here: the token-major loops, softmax and the query rounding
 * (kernels_avx512.c), the 256-bit tiled loops (tiles_avx2.c).
 *
 * FAST loops use vpdpbusd with no transpose and no horizontal sum; EXACT loops widen the
 * codes by a shift pair and accumulate in fp32 with FMA. All four prefetch their code
 * stream (pf_line: L1 and L2; the FAST loops' pf_line3 adds a farther request).
 */
#include <immintrin.h>
#include <string.h>

#include "cq_kernels.h"
#include "kernels_avx512.h"
#include "kernels_x86.h"

/* Software prefetch of the tiled loops' code streams, a line or two per unit of work so
 * that the requests spread over the loop: into L1 PF_NEAR bytes ahead and into L2 PF_FAR
 * bytes ahead; the FAST loops (pf_line3) also ask PF_FARTHER bytes ahead with prefetcht2.
 * Measured on the 2-vCPU Zen 4 VM (cq bench, FAST CQ-4, D = 128, 16K tokens): with no
 * software prefetch a step took 1.6x as long; L1 only at 2-8 KiB gave 1.45-1.55 ms per
 * layer on one thread against 1.31 for 2 KiB + 16 KiB into L2 (an older kernel); the third
 * request took 2-4% off the FAST steps with one thread at D = 64 and 128, 16K and 64K
 * tokens (alternated runs; with two threads the medians ranged from 7% slower to 13% faster,
 * the spells of the shared machine) and made the EXACT step, which is bound by its FMAs, 2%
 * slower with one thread, so EXACT keeps two.
 * Prefetches never fault, so they may point past a page. */
#define PF_NEAR 2048
#define PF_FAR 8192
#define PF_FARTHER 32768
/* The fp16 kernels' L2 prefetch (F16_PF_MIN_D, F16_PF_V_TOKENS, pf_l2): kernels_x86.h. */
static inline void pf_line(const uint8_t *p) {
    _mm_prefetch((const char *)(p + PF_NEAR), _MM_HINT_T0);
    /* GCC 12 drops the _mm_prefetch(.., _MM_HINT_T1) of these loops (seen in the object
     * code; a plain loop keeps it), so the L2 request is written out */
    __asm__ volatile("prefetcht1 %0" : : "m"(*(const char *)(p + PF_FAR)));
}
static inline void pf_line3(const uint8_t *p) {
    pf_line(p);
    __asm__ volatile("prefetcht2 %0" : : "m"(*(const char *)(p + PF_FARTHER)));
}

/* EXACT key scores over a tiled group (cq_tiles.h), fp32. A quad unit read as 16 dwords
 * holds channel 4u + k of token lane j in bits 8k..8k+3 (tokens 0-15) and 8k+4..8k+7
 * (16-31): a left shift that puts the nibble on top and an arithmetic right shift by 28
 * give the signed code, converted and multiplied into the heads' fp32 token lanes with
 * the query channel broadcast. Sums in channel order per lane; the EXACT bound covers any
 * order. */
#define NIB_LO(x, k) _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32((x), 28 - 8 * (k)), 28))
#define NIB_HI(x, k) _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32((x), 24 - 8 * (k)), 28))

static ALWAYS_INLINE void ktx_unit(const uint32_t nhc, const float *qp, uint32_t kept,
                                   __m512i x, uint32_t c, uint32_t w, __m512 acc[HC][2]) {
    _Pragma("GCC unroll 4") for (uint32_t k = 0; k < 4; k++) {
        if (k >= w) break;
        const __m512 lo = NIB_LO(x, k), hi = NIB_HI(x, k);
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
            const __m512 qv = _mm512_set1_ps(qp[(size_t)h * kept + c + k]);
            acc[h][0] = _mm512_fmadd_ps(qv, lo, acc[h][0]);
            acc[h][1] = _mm512_fmadd_ps(qv, hi, acc[h][1]);
        }
    }
}

static __attribute__((noinline)) void ktx_tail(const float *qp, uint32_t kept, const uint8_t *p,
                                               uint32_t nhc, __m512 add[HC][2]) {
    const uint32_t Q = kept / 4, r = kept % 4;
    for (uint32_t h = 0; h < HC; h++) add[h][0] = add[h][1] = _mm512_setzero_ps();
    if (r >= 2) {
        ktx_unit(nhc, qp, kept, _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 4 * Q,
                 2, add);
        p += 32;
    }
    if (r & 1)
        ktx_unit(nhc, qp, kept, _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)), kept - 1,
                 1, add);
}

static ALWAYS_INLINE void ktx_run(const uint32_t nhc, const float *qp, const uint8_t *grp,
                                  uint32_t r0, uint32_t n, uint32_t kept, float *s, uint32_t ss) {
    const size_t tb = (size_t)16 * kept;
    const uint32_t Q = kept / 4, r = kept % 4;
    for (uint32_t t = r0 / CQ_KT_TOK * CQ_KT_TOK; t < r0 + n; t += CQ_KT_TOK) {
        const uint8_t *tile = grp + (size_t)(t / CQ_KT_TOK) * tb;
        __m512 acc[HC][2];
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < HC; h++)
            acc[h][0] = acc[h][1] = _mm512_setzero_ps();
        for (uint32_t u = 0; u < Q; u++) {
            pf_line(tile + 64 * (size_t)u);
            ktx_unit(nhc, qp, kept, _mm512_loadu_si512(tile + 64 * (size_t)u), 4 * u, 4, acc);
        }
        if (r) { /* the pair and single units, out of line: the sums stay in registers */
            __m512 add[HC][2];
            ktx_tail(qp, kept, tile + 64 * (size_t)Q, nhc, add);
            _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
                acc[h][0] = _mm512_add_ps(acc[h][0], add[h][0]);
                acc[h][1] = _mm512_add_ps(acc[h][1], add[h][1]);
            }
        }
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
            float tmp[CQ_KT_TOK];
            _mm512_storeu_ps(tmp, acc[h][0]);
            _mm512_storeu_ps(tmp + 16, acc[h][1]);
            const uint32_t a = t < r0 ? r0 - t : 0, b = t + CQ_KT_TOK < r0 + n ? CQ_KT_TOK : r0 + n - t;
            memcpy(s + (size_t)h * ss + (t + a - r0), tmp + a, (b - a) * sizeof(float));
        }
    }
}

void cq_avx512_dot_i4t(const float *qp, uint32_t nh, const uint8_t *grp, uint32_t r0, uint32_t n,
                       uint32_t kept, float *s, uint32_t ss) {
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
#define B(NH) ktx_run(NH, qp + (size_t)h0 * kept, grp, r0, n, kept, s + (size_t)h0 * ss, ss)
        NH_SWITCH(nhc, B)
#undef B
    }
}

/* EXACT values over value blocks, fp32: token i of a block is bits 8i..8i+3 (channel m)
 * and 8i+4..8i+7 (channel 16 + m) of a chunk's dword lanes; the same shift pair gives
 * its signed codes, multiplied by w * vs of that token (one fp32 product, as in acc_i4)
 * into fp32 channel accumulators. Weights sit by storage position, zero outside the run. */
static ALWAYS_INLINE void vbx_chunk(const uint32_t nhc, const uint32_t TWO,
                                    const float pw[HC][CQ_V8_TILE + 8], const uint8_t *blk,
                                    uint32_t nblk, size_t bb, float *acc, uint32_t D) {
    __m512 a[HC][4];
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++)
        _Pragma("GCC unroll 4") for (uint32_t i = 0; i < 4; i++)
            a[h][i] = i < 2 + 2 * TWO ? _mm512_loadu_ps(acc + (size_t)h * D + 16 * i) : _mm512_setzero_ps();
    for (uint32_t k = 0; k < nblk; k++) {
        const uint8_t *p = blk + k * bb;
        pf_line(p);
        if (TWO) pf_line(p + 64);
        const __m512i x0 = _mm512_loadu_si512(p);
        const __m512i x1 = TWO ? _mm512_loadu_si512(p + 64) : x0;
        _Pragma("GCC unroll 4") for (uint32_t i = 0; i < CQ_VB_TOK; i++) {
            const __m512 l0 = NIB_LO(x0, i), h0 = NIB_HI(x0, i);
            const __m512 l1 = NIB_LO(x1, i), h1 = NIB_HI(x1, i);
            _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
                const __m512 wv = _mm512_set1_ps(pw[h][4 * k + i]);
                a[h][0] = _mm512_fmadd_ps(wv, l0, a[h][0]);
                a[h][1] = _mm512_fmadd_ps(wv, h0, a[h][1]);
                if (TWO) {
                    a[h][2] = _mm512_fmadd_ps(wv, l1, a[h][2]);
                    a[h][3] = _mm512_fmadd_ps(wv, h1, a[h][3]);
                }
            }
        }
    }
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++)
        _Pragma("GCC unroll 4") for (uint32_t i = 0; i < 2 + 2 * TWO; i++)
            _mm512_storeu_ps(acc + (size_t)h * D + 16 * i, a[h][i]);
}

static ALWAYS_INLINE void vbx_piece(const uint32_t nhc, const float pw[HC][CQ_V8_TILE + 8],
                                    const uint8_t *blk, uint32_t nblk, uint32_t D, float *acc) {
    const size_t bb = 2 * (size_t)D;
    uint32_t c = 0;
    for (; c + 64 <= D; c += 64) vbx_chunk(nhc, 1, pw, blk + 2 * (size_t)c, nblk, bb, acc + c, D);
    if (c < D) vbx_chunk(nhc, 0, pw, blk + 2 * (size_t)c, nblk, bb, acc + c, D);
}
#undef NIB_LO
#undef NIB_HI

void cq_avx512_acc_i4t(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
                       const uint16_t *vs, uint32_t n, uint32_t D, float *acc) {
    const size_t bb = 2 * (size_t)D;
    for (uint32_t t0 = 0; t0 < n; t0 += CQ_V8_TILE) {
        const uint32_t m = n - t0 < CQ_V8_TILE ? n - t0 : CQ_V8_TILE;
        const uint32_t p0 = o + t0, sft = p0 % CQ_VB_TOK, nblk = (sft + m + CQ_VB_TOK - 1) / CQ_VB_TOK;
        const uint8_t *b0 = blk + (size_t)(p0 / CQ_VB_TOK) * bb;
        _mm_prefetch((const char *)(vs + t0) + 8 * 2 * CQ_V8_TILE, _MM_HINT_T0); /* scales */
        float vf[CQ_V8_TILE];
        for (uint32_t t = 0; t < m; t++) vf[t] = cq_f16_to_f32(vs[t0 + t]);
        for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
            const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
            float pw[HC][CQ_V8_TILE + 8];
            for (uint32_t h = 0; h < nhc; h++) {
                memset(pw[h], 0, sizeof pw[h]);
                for (uint32_t t = 0; t < m; t++) pw[h][sft + t] = w[(size_t)(h0 + h) * ws + t0 + t] * vf[t];
            }
#define B(NH) vbx_piece(NH, pw, b0, nblk, D, acc + (size_t)h0 * D)
            NH_SWITCH(nhc, B)
#undef B
        }
    }
}

/* FAST key scores over a tiled group (cq_tiles.h). A quad unit read as 16 dwords holds 4
 * channels of tokens 0-15 (low nibbles) and 16-31 (high nibbles) of a tile: XOR 0x88 and
 * two masks give u = code + 8 for both halves, and one vpdpbusd per half and head (query
 * quad as a broadcast dword) adds 4 products to every token lane. The two quads of an
 * 8-channel block (CQ_Q8_BLOCK) go into an accumulator that is shifted by the block's sh
 * and added to the total: the exact integer of the rule, without a horizontal sum.
 * Consecutive whole blocks with the same sh share one accumulator and one shift and add
 * (last[][] marks where a run of equal shifts ends; sum(P_b) << s equals sum(P_b << s)
 * modulo 2^32, where the lanes live): with Gaussian queries most blocks take sh 10 or 11, and
 * the run fold took dot_i4tq from 3.99-4.10 to 3.47-3.49 ns per token at L1 (cq bench
 * --kernels, three alternated runs). The channels past the last whole block (a quad, a pair, a single channel) are
 * one more block; pair and single units are widened to dwords (vpmovzxwd / vpmovzxbd), so
 * their missing channels are padding that meets a zero query byte. */
typedef struct kt_query {
    int32_t qd[HC][CQ_MAX_DIM / 4 + 2]; /* per unit: its query bytes as one dword */
    uint32_t sh[HC][CQ_MAX_DIM / CQ_Q8_BLOCK + 1];
    uint8_t last[HC][CQ_MAX_DIM / CQ_Q8_BLOCK + 1]; /* 1: block b ends a run of equal shifts */
    int32_t corr[HC];                   /* 8 * sum(q8), shift-weighted */
    float qs[HC];
} kt_query;

static void kt_setup(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t h0,
                     uint32_t nhc, uint32_t kept, kt_query *kq) {
    const uint32_t nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK, Q = kept / 4, r = kept % 4;
    for (uint32_t h = 0; h < nhc; h++) {
        const int8_t *q = q8 + (size_t)(h0 + h) * kept;
        const uint8_t *shh = sh + (size_t)(h0 + h) * nb;
        uint32_t u = Q;
        memcpy(kq->qd[h], q, 4 * (size_t)Q); /* quads: the query bytes as they are */
        if (r >= 2) { /* the pair unit: bytes 0-1 */
            int8_t b[4] = {q[4 * Q], q[4 * Q + 1], 0, 0};
            memcpy(&kq->qd[h][u++], b, 4);
        }
        if (r & 1) {
            int8_t b[4] = {q[kept - 1], 0, 0, 0};
            memcpy(&kq->qd[h][u++], b, 4);
        }
        uint32_t cr = 0; /* unsigned: wraps like the int32 lanes */
        uint32_t b = 0;
        { /* 8 blocks at a time: 4-channel sums (past kept: zero bytes), shifted per block */
            __m512i cv = _mm512_setzero_si512();
            const __m512i eight = _mm512_set1_epi8(8);
            for (; b < nb; b += 8) {
                const uint32_t left = kept - 8 * b, nbl = nb - b < 8 ? nb - b : 8;
                const __mmask64 km = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
                const __m512i s4 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight,
                                                       _mm512_maskz_loadu_epi8(km, q + 8 * b));
                __m128i s8 = _mm_maskz_loadu_epi8((__mmask16)((1u << nbl) - 1), shh + b);
                __m512i cnt = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(s8, s8)); /* one per quad */
                cv = _mm512_add_epi32(cv, _mm512_sllv_epi32(s4, cnt));
            }
            cr = (uint32_t)_mm512_reduce_add_epi32(cv);
        }
        for (; b < nb; b++) {
            int32_t sb = 0;
            for (uint32_t c = b * CQ_Q8_BLOCK; c < kept && c < (b + 1) * CQ_Q8_BLOCK; c++) sb += q[c];
            cr += (uint32_t)(8 * sb) << shh[b];
        }
        for (b = 0; b + 16 <= nb; b += 16)
            _mm512_storeu_si512(kq->sh[h] + b, _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(shh + b))));
        for (; b < nb; b++) kq->sh[h][b] = shh[b];
        {
            const uint32_t fbk = kept / 8;
            for (b = 0; b < fbk; b++) kq->last[h][b] = b + 1 == fbk || shh[b + 1] != shh[b];
        }
        kq->corr[h] = (int32_t)cr;
        kq->qs[h] = qs[h0 + h];
    }
}

#define KT_SPLIT(x, lo, hi)                                                                        \
    do {                                                                                           \
        const __m512i x_ = (x); /* u = (nibble ^ 8) & 15, one vpternlogd per side */           \
        lo = _mm512_ternarylogic_epi32(x_, x88, m15, TERN_XOR_AND);                                \
        hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(x_, 4), x88, m15, TERN_XOR_AND);          \
    } while (0)

/* The last block of a tile whose kept is not a multiple of 8: the units 2 fb .. (a quad if
 * Q is odd, then the pair and single units), shifted by the block's sh, into add[h]. */
static __attribute__((noinline)) void kt_tail(const kt_query *kq, const uint8_t *p, uint32_t fb,
                                              uint32_t Q, uint32_t r, uint32_t nhc,
                                              __m512i add[HC][2]) {
    const __m512i m15 = _mm512_set1_epi8(0x0F), x88 = _mm512_set1_epi8((char)0x88);
    __m512i lo[3], hi[3];
    uint32_t nu = 0;
    if (Q & 1) {
        KT_SPLIT(_mm512_loadu_si512(p), lo[nu], hi[nu]);
        p += 64, nu++;
    }
    if (r >= 2) {
        KT_SPLIT(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), lo[nu], hi[nu]);
        p += 32, nu++;
    }
    if (r & 1) {
        KT_SPLIT(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)), lo[nu], hi[nu]);
        nu++;
    }
    for (uint32_t h = 0; h < nhc; h++) {
        __m512i a = _mm512_setzero_si512(), c = _mm512_setzero_si512();
        for (uint32_t i = 0; i < nu; i++) {
            const __m512i qv = _mm512_set1_epi32(kq->qd[h][2 * fb + i]);
            a = _mm512_dpbusd_epi32(a, lo[i], qv);
            c = _mm512_dpbusd_epi32(c, hi[i], qv);
        }
        const __m128i cnt = _mm_cvtsi32_si128((int)kq->sh[h][fb]);
        add[h][0] = _mm512_sll_epi32(a, cnt);
        add[h][1] = _mm512_sll_epi32(c, cnt);
    }
}

/* one tile's 32 token lanes, heads [0, nhc): tot[h][0] tokens 0-15, tot[h][1] 16-31 */
static ALWAYS_INLINE void kt_tile(const uint32_t nhc, const kt_query *kq, const uint8_t *tile,
                                  uint32_t kept, __m512i tot[HC][2]) {
    const __m512i m15 = _mm512_set1_epi8(0x0F), x88 = _mm512_set1_epi8((char)0x88);
    const uint32_t Q = kept / 4, r = kept % 4, fb = Q / 2;
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < HC; h++)
        tot[h][0] = tot[h][1] = _mm512_setzero_si512();
    __m512i ra[HC], rc[HC]; /* the current run of blocks with one shift */
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < HC; h++)
        ra[h] = rc[h] = _mm512_setzero_si512();
    for (uint32_t b = 0; b < fb; b++) {
        const uint8_t *p = tile + 128 * (size_t)b;
        pf_line3(p); /* the stream from DRAM */
        pf_line3(p + 64);
        __m512i l0, h0, l1, h1;
        KT_SPLIT(_mm512_loadu_si512(p), l0, h0);
        KT_SPLIT(_mm512_loadu_si512(p + 64), l1, h1);
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
            const __m512i qa = _mm512_set1_epi32(kq->qd[h][2 * b]),
                          qb = _mm512_set1_epi32(kq->qd[h][2 * b + 1]);
            ra[h] = _mm512_dpbusd_epi32(ra[h], l0, qa);
            rc[h] = _mm512_dpbusd_epi32(rc[h], h0, qa);
            ra[h] = _mm512_dpbusd_epi32(ra[h], l1, qb);
            rc[h] = _mm512_dpbusd_epi32(rc[h], h1, qb);
            if (kq->last[h][b]) {
                const __m128i cnt = _mm_cvtsi32_si128((int)kq->sh[h][b]);
                tot[h][0] = _mm512_add_epi32(tot[h][0], _mm512_sll_epi32(ra[h], cnt));
                tot[h][1] = _mm512_add_epi32(tot[h][1], _mm512_sll_epi32(rc[h], cnt));
                ra[h] = rc[h] = _mm512_setzero_si512();
            }
        }
    }
    if (4 * Q + r == 8 * fb) return;
    __m512i add[HC][2]; /* the last block, out of line: the loop's sums stay in registers */
    kt_tail(kq, tile + 128 * (size_t)fb, fb, Q, r, nhc, add);
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
        tot[h][0] = _mm512_add_epi32(tot[h][0], add[h][0]);
        tot[h][1] = _mm512_add_epi32(tot[h][1], add[h][1]);
    }
}
#undef KT_SPLIT

static ALWAYS_INLINE void kt_run(const uint32_t nhc, const kt_query *kq, const uint8_t *grp,
                                 uint32_t r0, uint32_t n, uint32_t kept, float *s, uint32_t ss) {
    const size_t tb = (size_t)16 * kept;
    for (uint32_t t = r0 / CQ_KT_TOK * CQ_KT_TOK; t < r0 + n; t += CQ_KT_TOK) {
        __m512i tot[HC][2];
        kt_tile(nhc, kq, grp + (size_t)(t / CQ_KT_TOK) * tb, kept, tot);
        const int full = t >= r0 && t + CQ_KT_TOK <= r0 + n;
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
            const __m512i cr = _mm512_set1_epi32(kq->corr[h]);
            const __m512 f = _mm512_set1_ps(kq->qs[h]);
            __m512 s0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(tot[h][0], cr)), f);
            __m512 s1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(tot[h][1], cr)), f);
            float *dst = s + (size_t)h * ss;
            if (full) {
                _mm512_storeu_ps(dst + (t - r0), s0);
                _mm512_storeu_ps(dst + (t - r0) + 16, s1);
                continue;
            }
            float tmp[CQ_KT_TOK];
            _mm512_storeu_ps(tmp, s0);
            _mm512_storeu_ps(tmp + 16, s1);
            for (uint32_t i = 0; i < CQ_KT_TOK; i++)
                if (t + i >= r0 && t + i < r0 + n) dst[t + i - r0] = tmp[i];
        }
    }
}

void cq_avx512_dot_i4tq(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t nh,
                        const uint8_t *grp, uint32_t r0, uint32_t n, uint32_t kept, float *s,
                        uint32_t ss) {
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
        kt_query kq;
        kt_setup(q8, sh, qs, h0, nhc, kept, &kq);
#define B(NH) kt_run(NH, &kq, grp, r0, n, kept, s + (size_t)h0 * ss, ss)
        NH_SWITCH(nhc, B)
#undef B
    }
}


/* cq_avx2_i4q_prep on 16 lanes, the same operations in the same order per weight (product,
 * max, one division, product then dithered sum, truncation, clamp), so the same tile.
 * The tile holds CQ_V8_TILE = 32 weights: two vectors per head. The heads' maxima and code
 * sums are reduced together (max and integer sums are exact in any order): four vectors
 * fold to one whose 128-bit lane h holds head h's value, and the two divisions run once
 * for the four heads. */
_Static_assert(CQ_V8_TILE == 32, "x_i4q_prep holds a tile in two 16-lane vectors");
#define X4_FOLD(OP, CAST, v0, v1, v2, v3, out)                                                     \
    do {                                                                                           \
        const __m512 f0_ = CAST(v0), f1_ = CAST(v1), f2_ = CAST(v2), f3_ = CAST(v3);             \
        const __m512 t0_ = OP(_mm512_shuffle_f32x4(f0_, f1_, 0x44), _mm512_shuffle_f32x4(f0_, f1_, 0xEE)); \
        const __m512 t1_ = OP(_mm512_shuffle_f32x4(f2_, f3_, 0x44), _mm512_shuffle_f32x4(f2_, f3_, 0xEE)); \
        __m512 u_ = OP(_mm512_shuffle_f32x4(t0_, t1_, 0x88), _mm512_shuffle_f32x4(t0_, t1_, 0xDD)); \
        u_ = OP(u_, _mm512_permute_ps(u_, 0x4E));                                                  \
        (out) = OP(u_, _mm512_permute_ps(u_, 0xB1));                                               \
    } while (0)
#define X4_ID(x) (x)
#define X4_ADDI(a, b) _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)))
static ALWAYS_INLINE void x_i4q_prep(const float *w, uint32_t ws, uint32_t nhc, uint32_t m,
                                     const uint16_t *vs, cq_i4q_tile *tl) {
    const __mmask16 k0 = (__mmask16)(m >= 16 ? 0xFFFF : (1u << m) - 1),
                    k1 = (__mmask16)(m >= 32 ? 0xFFFF : m > 16 ? (1u << (m - 16)) - 1 : 0);
    const __m512 v0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k0, vs)),
                 v1 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k1, vs + 16));
    const __m512 d0 = _mm512_loadu_ps(cq_v8_dither), d1 = _mm512_loadu_ps(cq_v8_dither + 16);
    const __m512i cmax = _mm512_set1_epi32(CQ_V8_MAX);
    __m512 a0[HC], a1[HC], mx[HC];
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < HC; h++) {
        if (h < nhc) {
            const float *wr = w + (size_t)h * ws;
            a0[h] = _mm512_mul_ps(_mm512_maskz_loadu_ps(k0, wr), v0);
            a1[h] = _mm512_mul_ps(_mm512_maskz_loadu_ps(k1, wr + 16), v1);
            mx[h] = _mm512_max_ps(a0[h], a1[h]);
        } else {
            a0[h] = a1[h] = mx[h] = _mm512_setzero_ps();
        }
    }
    __m512 Av; /* lane 4h: head h's A */
    X4_FOLD(_mm512_max_ps, X4_ID, mx[0], mx[1], mx[2], mx[3], Av);
    const __m512 c127 = _mm512_set1_ps((float)CQ_V8_MAX);
    const __m512 ivv = _mm512_div_ps(c127, Av), dvv = _mm512_div_ps(Av, c127);
    const __mmask16 on = _mm512_cmp_ps_mask(Av, _mm512_set1_ps(0x1p-100f), _CMP_GT_OQ);
    __m512i sq[HC], q0[HC], q1[HC];
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < HC; h++) {
        sq[h] = q0[h] = q1[h] = _mm512_setzero_si512();
        tl->on[h] = h < nhc && ((on >> (4 * h)) & 1);
        if (!tl->on[h]) continue; /* the tile adds nothing: zero weights */
        /* lane h of ivv in every lane (an index vector: h is not an immediate for every
         * compiler) */
        const __m512 iv = _mm512_permutexvar_ps(
            _mm512_add_epi32(_mm512_set1_epi32((int)(4 * h)),
                             _mm512_set_epi32(3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0)),
            ivv);
        q0[h] = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(a0[h], iv), d0)), cmax);
        q1[h] = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(a1[h], iv), d1)), cmax);
        /* tokens past m: a = 0, so q = trunc(dither) = 0 */
        sq[h] = _mm512_add_epi32(q0[h], q1[h]);
    }
    /* the codes (0..127) to bytes, two heads' 32 tokens per vector */
    _mm512_store_si512((__m512i *)&tl->wb[0][0], pack4_epi8(q0[0], q1[0], q0[1], q1[1]));
    _mm512_store_si512((__m512i *)&tl->wb[2][0], pack4_epi8(q0[2], q1[2], q0[3], q1[3]));
    __m512 Sv;
    X4_FOLD(X4_ADDI, _mm512_castsi512_ps, sq[0], sq[1], sq[2], sq[3], Sv);
    float dt[16] __attribute__((aligned(64)));
    int32_t st[16] __attribute__((aligned(64)));
    _mm512_store_ps(dt, dvv);
    _mm512_store_si512(st, _mm512_castps_si512(Sv));
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
        tl->S8[h] = 8 * st[4 * h];
        tl->d[h] = dt[4 * h];
    }
}
#undef X4_FOLD
#undef X4_ID
#undef X4_ADDI

/* acc += the four u8 x s8 products of each dword of u and s, in place. Written out because
 * GCC 12 gives the intrinsic's loop-carried accumulators a copy each per use (two vector
 * moves per vpdpbusd and stack stores in vb_chunk's loop, seen in the object code). */
static ALWAYS_INLINE __m512i dpbusd_inplace(__m512i acc, __m512i u, __m512i s) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
    return acc;
}

/* FAST values over value blocks (cq_tiles.h). A chunk read as 16 dwords holds 4 tokens of
 * channel m (low nibbles) and of channel 16 + m (high): one vpdpbusd per nibble side and
 * head multiplies the four u = code + 8 of the block (unsigned operand) by its four 7-bit
 * weights (signed operand, a broadcast dword) and adds to the channel's int32 lane, with no
 * transpose. The high side is not shifted down: its operand is 16 u ((x ^ 0x88) & 0xF0, one
 * vpternlogd like the low side's (x ^ 0x88) & 0x0F, both at most 240), so its lane sums
 * 16 (I - 8 S) (from -128 S) and the flush multiplies by d / 16: the exact product
 * (16 K) (d / 16) is K d (16 K < 2^24 converts exactly, d / 16 >= 2^-111 is a normal
 * float), so the rounded product and the sum have the rule's bits. Per acc_i4q tile the
 * weights come from x_i4q_prep (the same rule); they are laid out by storage position, so a
 * run that starts mid-block gives its first and last blocks zero weights on the positions
 * outside it. 64 channels at a time: 4 heads x 4 vectors of accumulators. */
/* 32 * (1 + TWO) channels from byte 2c of each block (TWO: a second 32-channel chunk) */
static ALWAYS_INLINE void vb_chunk(const uint32_t nhc, const uint32_t TWO,
                                   const uint8_t *wb, size_t wst, const cq_i4q_tile *tl,
                                   const uint8_t *blk, uint32_t nblk, size_t bb, float *acc,
                                   uint32_t D) {
    const __m512i m15 = _mm512_set1_epi8(0x0F), m240 = _mm512_set1_epi8((char)0xF0),
                  x88 = _mm512_set1_epi8((char)0x88);
    __m512i a[HC][4]; /* low sides from -8 S, high sides from -128 S */
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < HC; h++) {
        a[h][0] = a[h][2] = _mm512_set1_epi32(h < nhc ? -tl->S8[h] : 0);
        a[h][1] = a[h][3] = _mm512_set1_epi32(h < nhc ? -16 * tl->S8[h] : 0);
    }
    for (uint32_t k = 0; k < nblk; k++) {
        const uint8_t *p = blk + k * bb;
        pf_line3(p); /* the stream from DRAM: the lines this chunk reads */
        if (TWO) pf_line3(p + 64);
        const __m512i x0 = _mm512_loadu_si512(p);
        const __m512i l0 = _mm512_ternarylogic_epi32(x0, x88, m15, TERN_XOR_AND),
                      h0 = _mm512_ternarylogic_epi32(x0, x88, m240, TERN_XOR_AND);
        __m512i l1 = l0, h1 = h0;
        if (TWO) {
            const __m512i x1 = _mm512_loadu_si512(p + 64);
            l1 = _mm512_ternarylogic_epi32(x1, x88, m15, TERN_XOR_AND);
            h1 = _mm512_ternarylogic_epi32(x1, x88, m240, TERN_XOR_AND);
        }
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
            int32_t w4;
            memcpy(&w4, wb + h * wst + 4 * k, 4);
            const __m512i wv = _mm512_set1_epi32(w4);
            a[h][0] = dpbusd_inplace(a[h][0], l0, wv);
            a[h][1] = dpbusd_inplace(a[h][1], h0, wv);
            if (TWO) {
                a[h][2] = dpbusd_inplace(a[h][2], l1, wv);
                a[h][3] = dpbusd_inplace(a[h][3], h1, wv);
            }
        }
    }
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
        if (!tl->on[h]) continue;
        const __m512 dv = _mm512_set1_ps(tl->d[h]), dv16 = _mm512_set1_ps(tl->d[h] * 0.0625f);
        float *dst = acc + (size_t)h * D;
        _Pragma("GCC unroll 4") for (uint32_t i = 0; i < 2 + 2 * TWO; i++) {
            const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(a[h][i]), (i & 1) ? dv16 : dv);
            _mm512_storeu_ps(dst + 16 * i, _mm512_add_ps(_mm512_loadu_ps(dst + 16 * i), f));
        }
    }
}

static ALWAYS_INLINE void vb_tile(const uint32_t nhc, const uint8_t *wb, size_t wst,
                                  const cq_i4q_tile *tl, const uint8_t *blk, uint32_t nblk,
                                  uint32_t D, float *acc) {
    const size_t bb = 2 * (size_t)D;
    uint32_t c = 0;
    for (; c + 64 <= D; c += 64)
        vb_chunk(nhc, 1, wb, wst, tl, blk + 2 * (size_t)c, nblk, bb, acc + c, D);
    if (c < D) vb_chunk(nhc, 0, wb, wst, tl, blk + 2 * (size_t)c, nblk, bb, acc + c, D);
}

/* One tile's weights, by storage position (a run that starts mid-block gives its first and
 * last blocks zero weights on the positions outside it). */
typedef struct x_tile {
    cq_i4q_tile tl;
    uint8_t wsh[HC][CQ_V8_TILE + 8] __attribute__((aligned(16)));
    const uint8_t *wb;
    size_t wst;
} x_tile;

/* the weights of the tile of tokens [t0, t0 + 32) of a run of n tokens from storage position o
 * (w: the first head's row, vs: the run's value scales) */
static ALWAYS_INLINE void x_tile_prep(const float *w, uint32_t ws, uint32_t nhc,
                                      const uint16_t *vs, uint32_t n, uint32_t o, uint32_t t0,
                                      x_tile *x) {
    const uint32_t m = n - t0 < CQ_V8_TILE ? n - t0 : CQ_V8_TILE, sft = (o + t0) % CQ_VB_TOK;
    x_i4q_prep(w + t0, ws, nhc, m, vs + t0, &x->tl);
    x->wb = &x->tl.wb[0][0], x->wst = sizeof x->tl.wb[0];
    if (sft) {
        for (uint32_t h = 0; h < nhc; h++) {
            memset(x->wsh[h], 0, sizeof x->wsh[h]);
            memcpy(x->wsh[h] + sft, x->tl.wb[h], m);
        }
        x->wb = &x->wsh[0][0], x->wst = sizeof x->wsh[0];
    }
}

/* Each tile's weights are prepared one tile ahead, before the previous tile's loops: the
 * prep's dependency chain (loads, the max, the divisions, the conversion and the byte
 * stores the loop reads back) runs beside those loops' vpdpbusd instead of stalling its own
 * tile. Each head's tiles still add to acc in token order: the same bits. */
void cq_avx512_acc_i4tq(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
                        const uint16_t *vs, uint32_t n, uint32_t D, float *acc) {
    const size_t bb = 2 * (size_t)D;
    const uint32_t nt = (n + CQ_V8_TILE - 1) / CQ_V8_TILE;
    for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
        const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
        const float *wh = w + (size_t)h0 * ws;
        float *ah = acc + (size_t)h0 * D;
        x_tile xt[2];
        x_tile_prep(wh, ws, nhc, vs, n, o, 0, &xt[0]);
        for (uint32_t j = 0; j < nt; j++) {
            const uint32_t t0 = j * CQ_V8_TILE, m = n - t0 < CQ_V8_TILE ? n - t0 : CQ_V8_TILE;
            if (j + 1 < nt) {
                /* the value scales are a stream of their own (64 bytes a tile) */
                _mm_prefetch((const char *)(vs + t0 + CQ_V8_TILE) + 8 * 2 * CQ_V8_TILE, _MM_HINT_T0);
                x_tile_prep(wh, ws, nhc, vs, n, o, t0 + CQ_V8_TILE, &xt[(j + 1) & 1]);
            }
            const x_tile *x = &xt[j & 1];
            const uint32_t p0 = o + t0, nblk = (p0 % CQ_VB_TOK + m + CQ_VB_TOK - 1) / CQ_VB_TOK;
            const uint8_t *b0 = blk + (size_t)(p0 / CQ_VB_TOK) * bb;
#define B(NH) vb_tile(NH, x->wb, x->wst, &x->tl, b0, nblk, D, ah)
            NH_SWITCH(nhc, B)
#undef B
        }
    }
}
