/* SPDX-License-Identifier: MIT */
/*
 * cq_tiles.h - the cache's compute layouts of INT4 codes (docs/CACHE.md, "Compute
 * layouts"). Internal: the cache (src/cache) stores committed CQ-4 key groups and INT4
 * value tokens in these permutations of the contract's nibbles so that the attention
 * kernels multiply without transposing; export, read and persistence convert back to the
 * contract's token-major bytes, so nothing outside the cache sees them. A permutation
 * only: the same nibbles, the same byte count (no padding).
 *
 * Key tiles (a CQ-4 / CQ-4+ key group whose G is a multiple of CQ_KT_TOK). The group's
 * payload is cut into tiles of 32 tokens, 16 * kept bytes each, in token order. Within a
 * tile, the kept channels go in units: Q = kept / 4 quads of 4 channels (64 bytes each),
 * then, if kept % 4 >= 2, one pair (32 bytes), then, if kept is odd, one single channel
 * (16 bytes). Unit byte j * w + k (w = the unit's width in channels, k < w, j < 16)
 * holds channel (unit start + k) of token j in its low nibble and of token 16 + j in its
 * high nibble. So a quad read as 16 dwords is one 4-channel dot product per token lane
 * for the low and the high half of the tile.
 *
 * Value blocks (INT4 value pages, head_dim a multiple of 32, page tokens a multiple of
 * CQ_VB_TOK). A page's code area is cut into blocks of 4 tokens, 2 * D bytes each, in
 * token order; within a block, chunk q (channels 32q .. 32q + 31) is 64 bytes whose byte
 * 4m + i holds channel 32q + m of token i in its low nibble and channel 32q + 16 + m in
 * its high nibble (m < 16, i < 4). So a chunk read as 16 dwords is the 4 tokens of one
 * channel per lane, the operand of a 4-token dot product.
 */
#ifndef CQ_TILES_H
#define CQ_TILES_H

#include <stddef.h>
#include <stdint.h>

#define CQ_KT_TOK 32u /* tokens per key tile */
#define CQ_VB_TOK 4u  /* tokens per value block */

/* Byte offset and nibble (0 low, 4 high) of (token t, channel c) in a tiled key group. */
static inline size_t cq_kt_pos(uint32_t kept, uint32_t t, uint32_t c, unsigned *shift) {
    const uint32_t Q = kept / 4, r = kept % 4, j = t % 16;
    size_t o = (size_t)(t / CQ_KT_TOK) * 16 * kept;
    *shift = (t % CQ_KT_TOK) >= 16 ? 4u : 0u;
    if (c < 4 * Q) return o + 64 * (size_t)(c / 4) + 4 * j + c % 4;
    o += 64 * (size_t)Q;
    if (r >= 2 && c < 4 * Q + 2) return o + 2 * j + (c - 4 * Q);
    return o + (r >= 2 ? 32 : 0) + j;
}

/* The signed code of (t, c) in a tiled key group. */
static inline int cq_kt_get(const uint8_t *grp, uint32_t kept, uint32_t t, uint32_t c) {
    unsigned sh;
    size_t o = cq_kt_pos(kept, t, c, &sh);
    return (((grp[o] >> sh) & 0xF) ^ 8) - 8;
}

/* Byte offset of (token i of its block, channel c) in a value block, and its nibble. */
static inline size_t cq_vb_pos(uint32_t c, uint32_t i, unsigned *shift) {
    const uint32_t m = c % 32;
    *shift = m >= 16 ? 4u : 0u;
    return 64 * (size_t)(c / 32) + 4 * (m % 16) + i;
}

/* The signed code of (token i, channel c) of a value block. */
static inline int cq_vb_get(const uint8_t *blk, uint32_t c, uint32_t i) {
    unsigned sh;
    size_t o = cq_vb_pos(c, i, &sh);
    return (((blk[o] >> sh) & 0xF) ^ 8) - 8;
}

/* A key group's payload, canonical (token-major nibbles, cq_encode_key_group) for its first
 * g tokens, rewritten in place as tiles; the tokens of the last tile past g become code 0.
 * The group occupies ceil(g / 32) * 16 * kept bytes either way. */
void cq_kt_pack(uint8_t *grp, uint32_t kept, uint32_t g);
/* Tokens [t0, t1) of a tiled group to the canonical nibble stream (token t0 first, at
 * nibble 0; (t1 - t0) * kept nibbles, a trailing odd nibble's high half zero). */
void cq_kt_unpack(const uint8_t *grp, uint32_t kept, uint32_t t0, uint32_t t1, uint8_t *out);

/* Token i (< CQ_VB_TOK) of a value block to / from its canonical D / 2 code bytes
 * (channel 2j in the low nibble of byte j, 2j + 1 in the high). D % 32 == 0. */
void cq_vb_put(uint8_t *blk, uint32_t D, uint32_t i, const uint8_t *codes);
void cq_vb_get_token(const uint8_t *blk, uint32_t D, uint32_t i, uint8_t *codes);
/* n tokens starting at position o (< CQ_VB_TOK) of the block blk (the following blocks
 * contiguous) to canonical rows [n][D / 2]. */
void cq_vb_unpack(const uint8_t *blk, uint32_t D, uint32_t o, uint32_t n, uint8_t *rows);

#endif
