/* SPDX-License-Identifier: MIT */
/*
 * kernels_avx512.c - the loops that AVX-512 (F/BW/VL/VNNI) speeds up. Compiled with
 * the AVX2 flags plus -mavx512f -mavx512bw -mavx512vl -mavx512vnni and reached only
 * through dispatch.c after cpuid said yes: the "avx512" table is the AVX2 table with
 * these entries replaced, among them loops of their own over the compute layouts
 * (cq_tiles.h). Same rules, same bits as the scalar table where the rule is
 * integer (tests/test_cache_kernels.c checks every table).
 *
 * Over the compute layouts (512-bit): dot_i4tq / acc_i4tq (FAST, vpdpbusd with no
 * transpose and no horizontal sum), dot_i4t / acc_i4t (EXACT, fp32 FMA on codes
 * widened by a shift pair), with a two-level software prefetch of the code stream.
 * Softmax and query: exp_sum (the AVX2 polynomial and sum order on 16 lanes), max_f32,
 * quant_q8, and the FAST weight prep of a tile (x_i4q_prep).
 *
 * Over the contract's token-major form (256-bit; key groups whose G, value pages whose
 * head_dim or page size the layouts do not fit): dot_i4q is the AVX2 loop of
 * dot_i4q_x86.inc with each vpmaddwd + vpaddd fused into one vpdpwssd; acc_i4q transposes four tokens' 16-byte chunks so that
 * dword j holds byte j of all four, one vpternlogd per nibble side makes u = code + 8,
 * and vpdpbusd multiplies the four tokens' 7-bit weights by their four u.
 */
#include <immintrin.h>
#include <string.h>

#include "cq_kernels.h"
#include "kernels_x86.h"

#define TERN_XOR_AND 0x28 /* vpternlogd: (a ^ b) & c */
/* Software prefetch of the tiled loops' code streams, two levels: into L1 PF_NEAR bytes
 * ahead and into L2 PF_FAR bytes ahead, a line or two per unit of work so that the
 * requests spread over the loop. Measured on the 2-vCPU Zen 4 VM (cq bench, FAST CQ-4,
 * 16K tokens): L1 only at 2-8 KiB gave 1.45-1.55 ms per layer on one thread, 2 KiB + 16
 * KiB into L2 1.31 ms; prefetches never fault, so they may point past a page. */
#define PF_NEAR 2048
#define PF_FAR 8192
/* The fp16 kernels' L2 prefetch (F16_PF_MIN_D, F16_PF_V_TOKENS, pf_l2): kernels_x86.h. */
static inline void pf_line(const uint8_t *p) {
    _mm_prefetch((const char *)(p + PF_NEAR), _MM_HINT_T0);
    /* GCC 12 drops the _mm_prefetch(.., _MM_HINT_T1) of these loops (seen in the object
     * code; a plain loop keeps it), so the L2 request is written out */
    __asm__ volatile("prefetcht1 %0" : : "m"(*(const char *)(p + PF_FAR)));
}

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

/* ------------------------------------------------ tiled layouts, 512-bit */

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

static void x_dot_i4t(const float *qp, uint32_t nh, const uint8_t *grp, uint32_t r0, uint32_t n,
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

static void x_acc_i4t(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
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
        pf_line(p); /* the stream from DRAM */
        pf_line(p + 64);
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

static void x_dot_i4tq(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t nh,
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

/* Four vectors of int32 codes in [-128, 127] (the saturating packs are exact there) to their
 * 64 bytes in order: a's 16, then b's, c's, d's. The packs leave dword 4L + k of each 128-bit
 * lane L holding lanes 4L..4L+3 of the k-th vector; one vpermd puts them in order. */
static ALWAYS_INLINE __m512i pack4_epi8(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i ord = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_epi32(
        ord, _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d)));
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
        pf_line(p); /* the stream from DRAM: the lines this chunk reads */
        if (TWO) pf_line(p + 64);
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
static void x_acc_i4tq(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
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

static float x_exp_sum(float *x, uint32_t n, float m) {
    const __m512 vm = _mm512_set1_ps(m);
    __m256 acc = _mm256_setzero_ps(); /* v_exp_sum's 8-lane sum, in its order: same bits */
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
        acc = _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
    }
    if (i < n) { /* the tail through the same polynomial, masked; missing lanes add 0 */
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_mask_loadu_ps(vm, k, x + i), vm)));
        _mm512_mask_storeu_ps(x + i, k, e);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
        if (n - i > 8) acc = _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
    }
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
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
    t->dot_i4t = x_dot_i4t;
    t->dot_i4tq = x_dot_i4tq;
    t->acc_i4t = x_acc_i4t;
    t->acc_i4tq = x_acc_i4tq;
    t->exp_sum = x_exp_sum;
    t->max_f32 = x_max_f32;
    t->dot_f16 = x_dot_f16;
    t->acc_f16 = x_acc_f16;
    t->quant_q8 = x_quant_q8;
    t->fold_quant_q8 = x_fold_quant_q8;
}
