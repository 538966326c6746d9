/* SPDX-License-Identifier: MIT */
/*
 * tiles_avx2.c - the AVX2 table's loops over the cache's compute layouts (cq_tiles.h):
 * key tiles (dot_i4tq FAST, dot_i4t EXACT) and value blocks (acc_i4tq FAST, acc_i4t
 * EXACT), 256-bit. Same rules as the scalar table (cq_kernels.h): the integer rules bit
 * for bit, the fp32 ones within the EXACT bound. Compiled with the AVX2 flags (the _avx2.c
 * suffix) and reached only through the avx2 table (kernels_avx2.c). Not here: the
 * token-major loops (kernels_avx2.c), the 512-bit ones (tiles_avx512.c).
 *
 * A key tile unit (a quad of 4 channels, 64 bytes; a pair, 32; a single channel, 16) is
 * read as two vectors of 8 dwords, dword j holding the unit's channels of token j (low
 * nibbles) and 16 + j (high), tokens 0-7 / 16-23 in the first vector and 8-15 / 24-31 in
 * the second (pair and single units widened to dwords by vpmovzxwd / vpmovzxbd, their
 * missing channels meeting zero query bytes). A value-block chunk (32 channels, 64 bytes)
 * is read the same way: dword m holds the block's 4 tokens of channel m (low nibbles) and
 * of channel 16 + m (high).
 */
#include <immintrin.h>
#include <string.h>

#include "cq_kernels.h"
#include "kernels_x86.h"

#define HP 2 /* query heads per pass of the fp32 loops (their accumulators stay in registers) */

/* The code streams come from DRAM: each loop asks, per tile of n bytes at p (keys: 32
 * tokens; values: 8 blocks), for the tile after next into L1 and the one 4 tiles ahead into
 * L2, a line at a time (prefetches never fault, so they may point past the group or page;
 * the L2 request is written out as tiles_avx512.c's is, GCC 12 dropping _MM_HINT_T1). */
static inline void prefetch_ahead(const uint8_t *p, size_t n) {
    for (size_t o = 0; o < n; o += 64) {
        _mm_prefetch((const char *)p + 2 * n + o, _MM_HINT_T0);
        __asm__ volatile("prefetcht1 %0" : : "m"(*((const char *)p + 4 * n + o)));
    }
}

/* The units of a tile of `kept` channels: Q quads, then a pair if kept % 4 >= 2, then a
 * single channel if kept is odd; unit i's two 8-dword halves. */
static inline void unit_load(const uint8_t *tile, uint32_t Q, uint32_t r, uint32_t i, __m256i *a,
                             __m256i *b) {
    if (i < Q) {
        const uint8_t *p = tile + 64 * (size_t)i;
        *a = _mm256_loadu_si256((const __m256i *)p);
        *b = _mm256_loadu_si256((const __m256i *)(p + 32));
        return;
    }
    const uint8_t *p = tile + 64 * (size_t)Q;
    if (i == Q && r >= 2) {
        *a = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
        *b = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 16)));
        return;
    }
    p += r >= 2 ? 32 : 0;
    *a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    *b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8)));
}

/* u = code + 8 of both nibble sides: out[0..3] = tokens 0-7, 8-15, 16-23, 24-31 */
static inline void split_u(__m256i a, __m256i b, __m256i out[4]) {
    const __m256i x88 = _mm256_set1_epi8((char)0x88), m15 = _mm256_set1_epi8(0x0F);
    a = _mm256_xor_si256(a, x88);
    b = _mm256_xor_si256(b, x88);
    out[0] = _mm256_and_si256(a, m15);
    out[1] = _mm256_and_si256(b, m15);
    out[2] = _mm256_and_si256(_mm256_srli_epi16(a, 4), m15);
    out[3] = _mm256_and_si256(_mm256_srli_epi16(b, 4), m15);
}

/* ------------------------------------------------------ FAST key scores */

/* Per call and query head: each unit's query bytes as one dword, each 8-channel block's
 * multiplier 2^sh, and 8 * sum(q8) weighted the same way (u = code + 8). Consecutive whole
 * blocks with the same shift share one int16 sum and one multiply-add: a block adds at most
 * 2 x 2 x 15 x 127 = 7620 to an int16 lane, so a run is cut after KTQ_RUN_MAX blocks
 * (30480 <= 32767); last[b] marks the block that ends a run. */
#define KTQ_RUN_MAX 4u
typedef struct ktq_head {
    int32_t qd[CQ_MAX_DIM / 4 + 2];
    int16_t mult[CQ_MAX_DIM / CQ_Q8_BLOCK + 1];
    uint8_t last[CQ_MAX_DIM / CQ_Q8_BLOCK + 1];
    uint32_t corr; /* unsigned: wraps like the int32 lanes */
} ktq_head;

static void ktq_setup(const int8_t *q, const uint8_t *shh, uint32_t kept, ktq_head *kq) {
    const uint32_t Q = kept / 4, r = kept % 4, nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK;
    uint32_t u = Q;
    memcpy(kq->qd, q, 4 * (size_t)Q); /* quads: the query bytes as they are */
    if (r >= 2) {
        int8_t b[4] = {q[4 * Q], q[4 * Q + 1], 0, 0};
        memcpy(&kq->qd[u++], b, 4);
    }
    if (r & 1) {
        int8_t b[4] = {q[kept - 1], 0, 0, 0};
        memcpy(&kq->qd[u++], b, 4);
    }
    kq->corr = 0;
    for (uint32_t bk = 0; bk < nb; bk++) {
        int32_t sb = 0;
        for (uint32_t c = bk * CQ_Q8_BLOCK; c < kept && c < (bk + 1) * CQ_Q8_BLOCK; c++) sb += q[c];
        kq->corr += (uint32_t)(8 * sb) << shh[bk];
        kq->mult[bk] = (int16_t)(1 << shh[bk]); /* <= 2^11 */
    }
    const uint32_t fb = Q / 2; /* whole blocks (the last, partial one is summed alone) */
    for (uint32_t bk = 0, run = 0; bk < fb; bk++) {
        run++;
        kq->last[bk] = bk + 1 == fb || shh[bk + 1] != shh[bk] || run == KTQ_RUN_MAX;
        if (kq->last[bk]) run = 0;
    }
}

/* a16[k] += u . q of unit i (int16 pairs: at most 3 units of 2 x 15 x 127 per block) */
static inline void ktq_unit(const __m256i u[4], int32_t qd, __m256i a16[4]) {
    const __m256i qv = _mm256_set1_epi32(qd);
    a16[0] = _mm256_add_epi16(a16[0], _mm256_maddubs_epi16(u[0], qv));
    a16[1] = _mm256_add_epi16(a16[1], _mm256_maddubs_epi16(u[1], qv));
    a16[2] = _mm256_add_epi16(a16[2], _mm256_maddubs_epi16(u[2], qv));
    a16[3] = _mm256_add_epi16(a16[3], _mm256_maddubs_epi16(u[3], qv));
}

static inline void ktq_block(const __m256i a16[4], int16_t mult, __m256i tot[4]) {
    const __m256i m = _mm256_set1_epi16(mult);
    tot[0] = _mm256_add_epi32(tot[0], _mm256_madd_epi16(a16[0], m));
    tot[1] = _mm256_add_epi32(tot[1], _mm256_madd_epi16(a16[1], m));
    tot[2] = _mm256_add_epi32(tot[2], _mm256_madd_epi16(a16[2], m));
    tot[3] = _mm256_add_epi32(tot[3], _mm256_madd_epi16(a16[3], m));
}

void cq_avx2_dot_i4tq(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t nh,
                      const uint8_t *grp, uint32_t r0, uint32_t n, uint32_t kept, float *s,
                      uint32_t ss) {
    const uint32_t Q = kept / 4, r = kept % 4, nu = Q + (r >= 2) + (r & 1);
    const uint32_t nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK, fb = Q / 2; /* whole blocks */
    const size_t tb = (size_t)16 * kept;
    __m256i sp[CQ_MAX_DIM / 4 + 2][4]; /* the tile's units, split */
    for (uint32_t g0 = 0; g0 < nh; g0 += HC) {
        const uint32_t ng = nh - g0 < HC ? nh - g0 : HC;
        ktq_head kq[HC];
        for (uint32_t h = 0; h < ng; h++)
            ktq_setup(q8 + (size_t)(g0 + h) * kept, sh + (size_t)(g0 + h) * nb, kept, &kq[h]);
        for (uint32_t t = r0 / CQ_KT_TOK * CQ_KT_TOK; t < r0 + n; t += CQ_KT_TOK) {
            const uint8_t *tile = grp + (size_t)(t / CQ_KT_TOK) * tb;
            prefetch_ahead(tile, tb);
            for (uint32_t i = 0; i < nu; i++) {
                __m256i a, b;
                unit_load(tile, Q, r, i, &a, &b);
                split_u(a, b, sp[i]);
            }
            const uint32_t lo = t < r0 ? r0 - t : 0, e = t + CQ_KT_TOK < r0 + n ? CQ_KT_TOK : r0 + n - t;
            for (uint32_t h = 0; h < ng; h++) {
                const ktq_head *k = &kq[h];
                __m256i tot[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),
                                  _mm256_setzero_si256(), _mm256_setzero_si256()};
                __m256i a16[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(),
                                  _mm256_setzero_si256(), _mm256_setzero_si256()};
                for (uint32_t bk = 0; bk < fb; bk++) { /* two quads */
                    ktq_unit(sp[2 * bk], k->qd[2 * bk], a16);
                    ktq_unit(sp[2 * bk + 1], k->qd[2 * bk + 1], a16);
                    if (k->last[bk]) { /* the run's sum, shifted once */
                        ktq_block(a16, k->mult[bk], tot);
                        a16[0] = a16[1] = a16[2] = a16[3] = _mm256_setzero_si256();
                    }
                }
                if (fb < nb) { /* the last block: a quad if Q is odd, the pair, the single */
                    for (uint32_t i = 2 * fb; i < nu; i++) ktq_unit(sp[i], k->qd[i], a16);
                    ktq_block(a16, k->mult[fb], tot);
                }
                const __m256i cr = _mm256_set1_epi32((int32_t)k->corr);
                const __m256 f = _mm256_set1_ps(qs[g0 + h]);
                float tmp[CQ_KT_TOK]; /* tot[j]: tokens 8j.. (split_u's order) */
                for (int j = 0; j < 4; j++)
                    _mm256_storeu_ps(tmp + 8 * j,
                                     _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(tot[j], cr)), f));
                memcpy(s + (size_t)(g0 + h) * ss + (t + lo - r0), tmp + lo, (e - lo) * sizeof(float));
            }
        }
    }
}

/* ----------------------------------------------------- EXACT key scores */

#define NIB(x, sh) _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32((x), (sh)), 28))

/* channel c of a unit read as (a, b): its nibble side at bits SL (tokens j) and SH (16 + j),
 * multiplied into the heads' token lanes */
#define KT_CHANNEL(a, b, SL, SH, c)                                                                \
    do {                                                                                           \
        const __m256 x0_ = NIB(a, SL), x1_ = NIB(b, SL), x2_ = NIB(a, SH), x3_ = NIB(b, SH);       \
        _Pragma("GCC unroll 2") for (uint32_t h_ = 0; h_ < nhc; h_++) {                           \
            const __m256 qv_ = _mm256_broadcast_ss(qp + (size_t)h_ * kept + (c));                  \
            acc[h_][0] = _mm256_fmadd_ps(qv_, x0_, acc[h_][0]);                                    \
            acc[h_][1] = _mm256_fmadd_ps(qv_, x1_, acc[h_][1]);                                    \
            acc[h_][2] = _mm256_fmadd_ps(qv_, x2_, acc[h_][2]);                                    \
            acc[h_][3] = _mm256_fmadd_ps(qv_, x3_, acc[h_][3]);                                    \
        }                                                                                          \
    } while (0)

/* one tile's scores for heads [0, nhc) (nhc <= HP) of qp rows of stride kept; out[h][token] */
static ALWAYS_INLINE void kt_exact(const uint32_t nhc, const float *qp, const uint8_t *tile,
                                   uint32_t kept, float out[HP][CQ_KT_TOK]) {
    const uint32_t Q = kept / 4, r = kept % 4;
    __m256 acc[HP][4];
    _Pragma("GCC unroll 2") for (uint32_t h = 0; h < HP; h++)
        acc[h][0] = acc[h][1] = acc[h][2] = acc[h][3] = _mm256_setzero_ps();
    for (uint32_t i = 0; i < Q; i++) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(tile + 64 * (size_t)i)),
                      b = _mm256_loadu_si256((const __m256i *)(tile + 64 * (size_t)i + 32));
        KT_CHANNEL(a, b, 28, 24, 4 * i);
        KT_CHANNEL(a, b, 20, 16, 4 * i + 1);
        KT_CHANNEL(a, b, 12, 8, 4 * i + 2);
        KT_CHANNEL(a, b, 4, 0, 4 * i + 3);
    }
    if (r >= 2) {
        __m256i a, b;
        unit_load(tile, Q, r, Q, &a, &b);
        KT_CHANNEL(a, b, 28, 24, 4 * Q);
        KT_CHANNEL(a, b, 20, 16, 4 * Q + 1);
    }
    if (r & 1) {
        __m256i a, b;
        unit_load(tile, Q, r, Q + (r >= 2), &a, &b);
        KT_CHANNEL(a, b, 28, 24, kept - 1);
    }
    _Pragma("GCC unroll 2") for (uint32_t h = 0; h < nhc; h++)
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(out[h] + 8 * j, acc[h][j]);
}
#undef KT_CHANNEL

void cq_avx2_dot_i4t(const float *qp, uint32_t nh, const uint8_t *grp, uint32_t r0, uint32_t n,
                     uint32_t kept, float *s, uint32_t ss) {
    const size_t tb = (size_t)16 * kept;
    for (uint32_t t = r0 / CQ_KT_TOK * CQ_KT_TOK; t < r0 + n; t += CQ_KT_TOK) {
        const uint8_t *tile = grp + (size_t)(t / CQ_KT_TOK) * tb;
        prefetch_ahead(tile, tb);
        const uint32_t a = t < r0 ? r0 - t : 0, e = t + CQ_KT_TOK < r0 + n ? CQ_KT_TOK : r0 + n - t;
        for (uint32_t h0 = 0; h0 < nh; h0 += HP) {
            float out[HP][CQ_KT_TOK];
            if (nh - h0 >= 2) kt_exact(2, qp + (size_t)h0 * kept, tile, kept, out);
            else kt_exact(1, qp + (size_t)h0 * kept, tile, kept, out);
            for (uint32_t h = 0; h < HP && h0 + h < nh; h++)
                memcpy(s + (size_t)(h0 + h) * ss + (t + a - r0), out[h] + a, (e - a) * sizeof(float));
        }
    }
}

/* --------------------------------------------------- FAST value sums */

/* One half (HALF 0: bytes 0-31 of each block's chunk, channels c + 0-7 and c + 16-23; 1:
 * bytes 32-63, channels c + 8-15 and c + 24-31) of a 32-channel chunk, heads [0, nhc): the
 * blocks' u = code + 8 times the 4 tokens' 7-bit weights (vpmaddubsw; int16 sums stay
 * below 16 x 127 x 15 per lane), widened once and flushed as acc += (I - 8 S) * d. */
static ALWAYS_INLINE void vb_fast_half(const uint32_t nhc, const uint8_t (*wb)[CQ_V8_TILE + 8],
                                       const cq_i4q_tile *tl, const uint8_t *p0, size_t bb,
                                       uint32_t nblk, float *acc, uint32_t D, uint32_t c,
                                       uint32_t half) {
    const __m256i x88 = _mm256_set1_epi8((char)0x88), m15 = _mm256_set1_epi8(0x0F),
                  ones = _mm256_set1_epi16(1);
    __m256i lo[HC], hi[HC];
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < HC; h++) lo[h] = hi[h] = _mm256_setzero_si256();
    for (uint32_t k = 0; k < nblk; k++) {
        const __m256i x = _mm256_xor_si256(
            _mm256_loadu_si256((const __m256i *)(p0 + k * bb + 32 * (size_t)half)), x88);
        const __m256i ul = _mm256_and_si256(x, m15), uh = _mm256_and_si256(_mm256_srli_epi16(x, 4), m15);
        _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
            int32_t w4;
            memcpy(&w4, &wb[h][4 * k], 4);
            const __m256i wv = _mm256_set1_epi32(w4);
            lo[h] = _mm256_add_epi16(lo[h], _mm256_maddubs_epi16(wv, ul));
            hi[h] = _mm256_add_epi16(hi[h], _mm256_maddubs_epi16(wv, uh));
        }
    }
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
        if (!tl->on[h]) continue;
        const __m256i s8 = _mm256_set1_epi32(tl->S8[h]);
        const __m256 dv = _mm256_set1_ps(tl->d[h]);
        float *dst = acc + (size_t)h * D + c + 8 * half;
        const __m256 fl = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_madd_epi16(lo[h], ones), s8)), dv);
        const __m256 fh = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_madd_epi16(hi[h], ones), s8)), dv);
        _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), fl));
        _mm256_storeu_ps(dst + 16, _mm256_add_ps(_mm256_loadu_ps(dst + 16), fh));
    }
}

static ALWAYS_INLINE void vb_fast(const uint32_t nhc, const uint8_t (*wb)[CQ_V8_TILE + 8],
                                  const cq_i4q_tile *tl, const uint8_t *b0, uint32_t nblk,
                                  uint32_t D, float *acc) {
    const size_t bb = 2 * (size_t)D;
    for (uint32_t c = 0; c < D; c += 32) {
        vb_fast_half(nhc, wb, tl, b0 + 2 * (size_t)c, bb, nblk, acc, D, c, 0);
        vb_fast_half(nhc, wb, tl, b0 + 2 * (size_t)c, bb, nblk, acc, D, c, 1);
    }
}

/* Tiles are prepared VB_PREP_TILES at a time before their loops run, so that the preps'
 * dependency chains (the max, the division, the conversion, the byte stores the loop reads
 * back) overlap one another instead of each stalling its tile's loop. Each head's tiles
 * still add to acc in token order: the same bits. */
#define VB_PREP_TILES 4u
void cq_avx2_acc_i4tq(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
                      const uint16_t *vs, uint32_t n, uint32_t D, float *acc) {
    const size_t bb = 2 * (size_t)D;
    for (uint32_t G = 0; G < n; G += VB_PREP_TILES * CQ_V8_TILE) {
        const uint32_t gn = n - G < VB_PREP_TILES * CQ_V8_TILE ? n - G : VB_PREP_TILES * CQ_V8_TILE;
        const uint32_t nt = (gn + CQ_V8_TILE - 1) / CQ_V8_TILE;
        for (uint32_t g0 = 0; g0 < nh; g0 += HC) {
            const uint32_t ng = nh - g0 < HC ? nh - g0 : HC;
            cq_i4q_tile tl[VB_PREP_TILES];
            /* the weights by storage position: a run may start mid-block */
            uint8_t wsh[VB_PREP_TILES][HC][CQ_V8_TILE + 8];
            for (uint32_t j = 0; j < nt; j++) {
                const uint32_t t0 = G + j * CQ_V8_TILE, m = n - t0 < CQ_V8_TILE ? n - t0 : CQ_V8_TILE;
                const uint32_t sft = (o + t0) % CQ_VB_TOK;
                cq_avx2_i4q_prep(w + (size_t)g0 * ws + t0, ws, ng, m, vs + t0, &tl[j]);
                for (uint32_t h = 0; h < ng; h++) {
                    memset(wsh[j][h], 0, sizeof wsh[j][h]);
                    memcpy(wsh[j][h] + sft, tl[j].wb[h], m);
                }
            }
            float *ag = acc + (size_t)g0 * D;
            for (uint32_t j = 0; j < nt; j++) {
                const uint32_t t0 = G + j * CQ_V8_TILE, m = n - t0 < CQ_V8_TILE ? n - t0 : CQ_V8_TILE;
                const uint32_t p0 = o + t0, nblk = (p0 % CQ_VB_TOK + m + CQ_VB_TOK - 1) / CQ_VB_TOK;
                const uint8_t *b0 = blk + (size_t)(p0 / CQ_VB_TOK) * bb;
                if (g0 == 0) prefetch_ahead(b0, (CQ_V8_TILE / CQ_VB_TOK) * bb);
#define B(NH) vb_fast(NH, (const uint8_t(*)[CQ_V8_TILE + 8])wsh[j], &tl[j], b0, nblk, D, ag)
                NH_SWITCH(ng, B)
#undef B
            }
        }
    }
}

/* --------------------------------------------------- EXACT value sums */

/* One half of a 32-channel chunk (as vb_fast_half), heads [0, nhc): fp32 accumulators of the
 * two 8-channel vectors, w * vs of each token (by storage position) times its codes. */
static ALWAYS_INLINE void vb_exact_half(const uint32_t nhc, const float (*pw)[CQ_V8_TILE + 8],
                                        const uint8_t *p0, size_t bb, uint32_t nblk, float *acc,
                                        uint32_t D, uint32_t c, uint32_t half) {
    __m256 lo[HC], hi[HC];
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
        lo[h] = _mm256_loadu_ps(acc + (size_t)h * D + c + 8 * half);
        hi[h] = _mm256_loadu_ps(acc + (size_t)h * D + c + 16 + 8 * half);
    }
    for (uint32_t k = 0; k < nblk; k++) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(p0 + k * bb + 32 * (size_t)half));
        /* token i of the block: bits 8i..8i+3 (channel m) and 8i+4..8i+7 (16 + m) */
#define VB_TOKEN(SL, SH, i)                                                                        \
    do {                                                                                           \
        const __m256 yl_ = NIB(x, SL), yh_ = NIB(x, SH);                                           \
        _Pragma("GCC unroll 4") for (uint32_t h_ = 0; h_ < nhc; h_++) {                           \
            const __m256 wv_ = _mm256_broadcast_ss(&pw[h_][4 * k + (i)]);                          \
            lo[h_] = _mm256_fmadd_ps(wv_, yl_, lo[h_]);                                            \
            hi[h_] = _mm256_fmadd_ps(wv_, yh_, hi[h_]);                                            \
        }                                                                                          \
    } while (0)
        VB_TOKEN(28, 24, 0);
        VB_TOKEN(20, 16, 1);
        VB_TOKEN(12, 8, 2);
        VB_TOKEN(4, 0, 3);
#undef VB_TOKEN
    }
    _Pragma("GCC unroll 4") for (uint32_t h = 0; h < nhc; h++) {
        _mm256_storeu_ps(acc + (size_t)h * D + c + 8 * half, lo[h]);
        _mm256_storeu_ps(acc + (size_t)h * D + c + 16 + 8 * half, hi[h]);
    }
}

static ALWAYS_INLINE void vb_exact(const uint32_t nhc, const float (*pw)[CQ_V8_TILE + 8],
                                   const uint8_t *b0, uint32_t nblk, uint32_t D, float *acc) {
    const size_t bb = 2 * (size_t)D;
    for (uint32_t c = 0; c < D; c += 32) {
        vb_exact_half(nhc, pw, b0 + 2 * (size_t)c, bb, nblk, acc, D, c, 0);
        vb_exact_half(nhc, pw, b0 + 2 * (size_t)c, bb, nblk, acc, D, c, 1);
    }
}
#undef NIB

void cq_avx2_acc_i4t(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
                     const uint16_t *vs, uint32_t n, uint32_t D, float *acc) {
    const size_t bb = 2 * (size_t)D;
    for (uint32_t t0 = 0; t0 < n; t0 += CQ_V8_TILE) {
        const uint32_t m = n - t0 < CQ_V8_TILE ? n - t0 : CQ_V8_TILE;
        const uint32_t p0 = o + t0, sft = p0 % CQ_VB_TOK, nblk = (sft + m + CQ_VB_TOK - 1) / CQ_VB_TOK;
        const uint8_t *b0 = blk + (size_t)(p0 / CQ_VB_TOK) * bb;
        prefetch_ahead(b0, (CQ_V8_TILE / CQ_VB_TOK) * bb);
        float vf[CQ_V8_TILE];
        for (uint32_t t = 0; t < m; t++) vf[t] = cq_f16_to_f32(vs[t0 + t]);
        for (uint32_t h0 = 0; h0 < nh; h0 += HC) {
            const uint32_t nhc = nh - h0 < HC ? nh - h0 : HC;
            float pw[HC][CQ_V8_TILE + 8]; /* w * vs of each token (one product), by position */
            for (uint32_t h = 0; h < nhc; h++) {
                memset(pw[h], 0, sizeof pw[h]);
                for (uint32_t t = 0; t < m; t++) pw[h][sft + t] = w[(size_t)(h0 + h) * ws + t0 + t] * vf[t];
            }
#define B(NH) vb_exact(NH, (const float(*)[CQ_V8_TILE + 8])pw, b0, nblk, D, acc + (size_t)h0 * D)
            NH_SWITCH(nhc, B)
#undef B
        }
    }
}
