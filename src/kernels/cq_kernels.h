/* SPDX-License-Identifier: MIT */
/*
 * cq_kernels.h - internal table of the cache's hot loops (one implementation
 * per ISA: kernels_scalar.c is the reference, kernels_avx2.c the fast path;
 * dispatch.c picks one at run time). Not a public header: the cache
 * (src/cache) and the differential tests use it.
 *
 * Conventions. q / qp: [nh][D] (or [nh][kept]) fp32 query rows, already
 * multiplied by the attention scale. s: scores [nh] rows of stride ss.
 * w: softmax weights [nh] rows of stride ws. acc: [nh][D] fp32, accumulated
 * (+=). n tokens are contiguous in storage. Encoders assume finite input
 * (the cache validates first) and must be bit-identical to cq_encode_token /
 * cq_encode_key_group.
 */
#ifndef CQ_KERNELS_H
#define CQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "cq_codec.h"
#include "cq_tiles.h"

#define CQ_Q8_SHIFT_MAX 11u /* 2^11 * 127 * 8 * CQ_MAX_DIM < 2^31 */
#define CQ_Q8_BLOCK 8u      /* channels per query block of dot_i4q (divides 64): two quads of a key tile */
#define CQ_V8_TILE 32u      /* tokens per weight tile of acc_i4q (multiple of 8) */
#define CQ_V8_MAX 127       /* largest weight code of acc_i4q (7 bits) */

/* acc_i4q's rounding offsets: (bitreverse5(i) + 0.5) / 32, a low-discrepancy set in (0, 1),
 * so k equal sub-step weights in a tile round up in proportion to their size. */
static const float cq_v8_dither[32] __attribute__((aligned(32))) = {
    0.015625f, 0.515625f, 0.265625f, 0.765625f, 0.140625f, 0.640625f, 0.390625f, 0.890625f,
    0.078125f, 0.578125f, 0.328125f, 0.828125f, 0.203125f, 0.703125f, 0.453125f, 0.953125f,
    0.046875f, 0.546875f, 0.296875f, 0.796875f, 0.171875f, 0.671875f, 0.421875f, 0.921875f,
    0.109375f, 0.609375f, 0.359375f, 0.859375f, 0.234375f, 0.734375f, 0.484375f, 0.984375f};

typedef struct cq_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */
    /* Every table runs every INT4 layout the cache can hold (the contract's token-major
     * rows and the compute layouts of cq_tiles.h): the store's layout follows from the
     * shape and configuration (src/cache/store.c), never from the table. */
    /* one token, per-token scale: codes D (bits 8) or D/2 (bits 4) bytes */
    void (*enc_token)(const uint16_t *x, uint32_t D, unsigned bits, uint8_t *codes,
                      uint16_t *scale);
    /* one key group of g tokens K [g][D] (CQ-4 / CQ-4+), canonical bytes */
    void (*enc_key_group)(const cq_params *p, const uint16_t *K, uint32_t g, uint8_t *payload,
                          uint16_t *scales, uint16_t *sidecar);
    /* scores s[h][t] = q[h] . k[t] */
    void (*dot_f16)(const float *q, uint32_t nh, const uint16_t *k, uint32_t n, uint32_t D,
                    float *s, uint32_t ss);
    void (*dot_f32)(const float *q, uint32_t nh, const float *k, uint32_t n, uint32_t D, float *s,
                    uint32_t ss);
    /* s[h][t] = ks[t] * (q[h] . code[t]), INT8 per token */
    void (*dot_i8)(const float *q, uint32_t nh, const int8_t *k, const uint16_t *ks, uint32_t n,
                   uint32_t D, float *s, uint32_t ss);
    /* s[h][t] = qp[h] . code[t] for INT4 codes of `kept` channels per token
     * (kept even: a token is kept/2 contiguous bytes); qp already holds q .* scales.
     * May read up to 7 bytes past the last token's codes (callers keep them readable). */
    void (*dot_i4)(const float *qp, uint32_t nh, const uint8_t *k, uint32_t n, uint32_t kept,
                   float *s, uint32_t ss);
    /* Quantized-query INT4 key scores (the FAST attention precision, docs/CACHE.md):
     * q8: [nh][kept] int8 in channel order (|q8| <= 127), in blocks of CQ_Q8_BLOCK kept
     * channels (the last may be partial); sh: [nh][ceil(kept / CQ_Q8_BLOCK)] shifts in
     * [0, CQ_Q8_SHIFT_MAX]; qs: [nh] scales. With I = sum_b 2^sh[b] * sum_{c in b}
     * q8[c] * code[t][c] (exact in int32 for kept <= CQ_MAX_DIM),
     * s[h][t] = (float)I * qs[h]: every table gives the same bits. Same layout and
     * over-read rule as dot_i4. */
    void (*dot_i4q)(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t nh,
                    const uint8_t *k, uint32_t n, uint32_t kept, float *s, uint32_t ss);
    /* dot_i4 over a tiled key group (cq_tiles.h): s[h][t] = qp[h] . code[r0 + t], t < n */
    void (*dot_i4t)(const float *qp, uint32_t nh, const uint8_t *grp, uint32_t r0, uint32_t n,
                    uint32_t kept, float *s, uint32_t ss);
    /* dot_i4q's rule over a tiled key group (cq_tiles.h): s[h][t] for the group's tokens
     * r0 + t, t < n; grp is the group's first tile (whole tiles stay readable). */
    void (*dot_i4tq)(const int8_t *q8, const uint8_t *sh, const float *qs, uint32_t nh,
                     const uint8_t *grp, uint32_t r0, uint32_t n, uint32_t kept, float *s,
                     uint32_t ss);
    /* FAST: the folded query x[kept] (finite) to q8 [kept], sh [ceil(kept / CQ_Q8_BLOCK)], *qs
     * for dot_i4q; the scalar table's comment states the rule, the others match it bit
     * for bit */
    void (*quant_q8)(const float *x, uint32_t kept, int8_t *q8, uint8_t *sh, float *qs);
    /* acc[h] += sum_t w[h][t] * v[t] */
    void (*acc_f16)(const float *w, uint32_t ws, uint32_t nh, const uint16_t *v, uint32_t n,
                    uint32_t D, float *acc);
    void (*acc_f32)(const float *w, uint32_t ws, uint32_t nh, const float *v, uint32_t n,
                    uint32_t D, float *acc);
    /* acc[h] += sum_t (w[h][t] * vs[t]) * code[t], INT8 / INT4 per token */
    void (*acc_i8)(const float *w, uint32_t ws, uint32_t nh, const int8_t *v, const uint16_t *vs,
                   uint32_t n, uint32_t D, float *acc);
    void (*acc_i4)(const float *w, uint32_t ws, uint32_t nh, const uint8_t *v, const uint16_t *vs,
                   uint32_t n, uint32_t D, float *acc);
    /* FAST INT4 value accumulation (docs/CACHE.md, "FAST precision"). Tokens go in tiles
     * of CQ_V8_TILE from t = 0. Per head h and tile: a_t = w[h][t] * vs_t (fp32), A = the
     * tile's max a_t; when A > 2^-100 (else the tile adds nothing), with M = CQ_V8_MAX,
     * a8_t = min(M, (int)(a_t * (M / A) + cq_v8_dither[t - t0])) (dithered rounding: a
     * run of weights below one step keeps its mass on average instead of all rounding
     * to 0), d = A / M and u = code + 8 in [0, 15]:
     *   acc[h][c] += (float)(sum_t a8_t * u_t[c] - 8 * sum_t a8_t) * d   (exact integers).
     * The softmax normalizer stays the exact sum of w. Bit-identical across tables.
     * w >= 0 finite, vs finite >= 0. Reads up to 7 bytes past the last token's codes. */
    void (*acc_i4q)(const float *w, uint32_t ws, uint32_t nh, const uint8_t *v,
                    const uint16_t *vs, uint32_t n, uint32_t D, float *acc);
    /* acc_i4 over value blocks (cq_tiles.h): n tokens from position o of block blk */
    void (*acc_i4t)(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
                    const uint16_t *vs, uint32_t n, uint32_t D, float *acc);
    /* acc_i4q's rule (tiles of CQ_V8_TILE from the first token) over value blocks
     * (cq_tiles.h): n tokens from position o < CQ_VB_TOK of block blk (the next blocks
     * follow it; the blocks holding them stay readable whole), vs their n scales;
     * D % 32 == 0. */
    void (*acc_i4tq)(const float *w, uint32_t ws, uint32_t nh, const uint8_t *blk, uint32_t o,
                     const uint16_t *vs, uint32_t n, uint32_t D, float *acc);
    /* nonzero when any of n fp16 values is Inf or NaN (the append's input check) */
    int (*any_nonfinite)(const uint16_t *x, size_t n);
    /* max of n >= 1 finite values (exact in any order) */
    float (*max_f32)(const float *x, uint32_t n);
    /* softmax step of nh rows of n >= 1 values (row h at x + h xs): x[i] = exp(x[i] - m[h]),
     * sum[h] = the row's sum. A row's bits depend on that row, n and m[h] only (not on nh,
     * its place or the other rows); the SIMD tables interleave the rows. */
    void (*exp_sum)(float *x, uint32_t xs, uint32_t nh, uint32_t n, const float *m, float *sum);
    /* a streaming read of n bytes (n a multiple of 128, p 64-byte aligned): a checksum
     * that keeps the loads alive; what the bandwidth measurement runs */
    uint64_t (*read_sum)(const uint8_t *p, size_t n);
    /* read_sum with non-temporal loads (vmovntdqa) where the table has them, else plain
     * loads; the same checksum as the table's read_sum */
    uint64_t (*read_sum_nt)(const uint8_t *p, size_t n);
    /* fold the key group's scales into the query: qp[h][j] = q[h][idx ? idx[j] : j] *
     * f16(sc[j]) for j < kept, h < nh (q rows of stride D); one fp32 product, so every
     * table gives the same bits */
    void (*fold_q)(const float *q, uint32_t nh, uint32_t D, const uint16_t *idx,
                   const uint16_t *sc, uint32_t kept, float *qp);
    /* FAST: fold_q (no channel map) then quant_q8 for each of nh heads, in one pass: q8 / sh /
     * qs as quant_q8 writes them per head ([nh][kept], [nh][ceil(kept / CQ_Q8_BLOCK)],
     * [nh]); the same bits as the two calls */
    void (*fold_quant_q8)(const float *q, uint32_t nh, uint32_t D, const uint16_t *sc,
                          uint32_t kept, int8_t *q8, uint8_t *sh, float *qs);
    /* CQ-4+ outlier lane: s[h][t] += qo[h][o] * f16(side[t][o]) for o = 0..k-1 in that
     * order (one product and one sum each: the same bits in every table); qo: [nh][k]
     * query values at the outlier channels, side: [n][k] fp16, k <= CQ_MAX_DIM */
    void (*side_dot)(const float *qo, uint32_t nh, const uint16_t *side, uint32_t n, uint32_t k,
                     float *s, uint32_t ss);
    /* fp16 -> fp32, n values */
    void (*f16_to_f32)(const uint16_t *x, float *y, size_t n);
} cq_kernels;

/* fold_quant_q8 by way of a table's fold_q and quant_q8 (what tables without a fused loop use). */
void cq_fold_quant_q8_split(const cq_kernels *k, const float *q, uint32_t nh, uint32_t D,
                            const uint16_t *sc, uint32_t kept, int8_t *q8, uint8_t *sh, float *qs);

/* The scalar reference (always available). */
const cq_kernels *cq_kernels_scalar(void);
/* The AVX2+FMA+F16C table, or NULL when not compiled in or the CPU lacks it. */
const cq_kernels *cq_kernels_avx2(void);
/* The AVX2 table with the loops AVX-512 VNNI speeds up replaced (256-bit AVX512VL
 * encodings), or NULL when not compiled in or the CPU lacks AVX512F/BW/VL/VNNI. */
const cq_kernels *cq_kernels_avx512(void);
/* The table in use: chosen once (CQ_KERNELS=scalar|avx2|avx512 overrides cpuid). */
const cq_kernels *cq_kernels_get(void);
/* Lookup by name ("scalar", "avx2", "avx512"); NULL if unknown or unavailable here. */
const cq_kernels *cq_kernels_by_name(const char *name);

#ifndef CQ_NO_SIMD
/* Defined in kernels_avx2.c (only reached through cq_kernels_avx2). */
extern const cq_kernels cq_kernels_avx2_table;
/* Defined in kernels_avx512.c: writes the avx512 table (only called after cpuid said yes). */
void cq_kernels_avx512_fill(cq_kernels *t);
#endif

#endif
