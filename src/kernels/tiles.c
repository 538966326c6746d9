/* SPDX-License-Identifier: MIT */
/*
 * tiles.c - conversions between the contract's token-major INT4 nibbles and the cache's
 * compute layouts (cq_tiles.h states both layouts). Plain C: they run once per committed
 * group or appended value token, and on read-back / export. Also fold_quant_q8 by way of
 * a table's fold_q and quant_q8.
 */
#include <string.h>

#include "cq_kernels.h" /* includes cq_tiles.h */

static inline unsigned nib(const uint8_t *b, size_t i) { return (b[i >> 1] >> (4 * (i & 1))) & 0xF; }

/* 4 nibbles of a 16-bit value to the low halves of 4 bytes, and back */
static inline uint32_t spread4(uint32_t x) {
    x = (x | (x << 8)) & 0x00FF00FFu;
    return (x | (x << 4)) & 0x0F0F0F0Fu;
}
static inline uint32_t gather4(uint32_t x) {
    x &= 0x0F0F0F0Fu;
    x = (x | (x >> 4)) & 0x00FF00FFu;
    return (x | (x >> 8)) & 0xFFFFu;
}
static inline uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

void cq_kt_pack(uint8_t *grp, uint32_t kept, uint32_t g) {
    uint8_t tmp[16 * 512 + 1];
    const size_t tb = (size_t)16 * kept;
    const uint32_t Q = kept / 4, c4 = 4 * Q;
    for (uint32_t t0 = 0; t0 < g; t0 += CQ_KT_TOK) {
        uint8_t *tile = grp + (size_t)(t0 / CQ_KT_TOK) * tb;
        const uint32_t m = g - t0 < CQ_KT_TOK ? g - t0 : CQ_KT_TOK;
        const size_t have = ((size_t)m * kept + 1) / 2;
        memcpy(tmp, tile, have);
        memset(tmp + have, 0, tb - have);
        if (((size_t)m * kept) & 1) tmp[have - 1] &= 0x0F; /* the next token's nibble */
        if (kept % 2 == 0) /* quads: a token's 4 channels are 2 canonical bytes */
            for (uint32_t u = 0; u < Q; u++)
                for (uint32_t j = 0; j < 16; j++) {
                    const uint32_t a = get16(tmp + (size_t)j * kept / 2 + 2 * u);
                    const uint32_t b = get16(tmp + (size_t)(16 + j) * kept / 2 + 2 * u);
                    const uint32_t w = spread4(a) | spread4(b) << 4; /* byte k: channel 4u + k */
                    uint8_t *d = tile + 64 * (size_t)u + 4 * j;
                    d[0] = (uint8_t)w, d[1] = (uint8_t)(w >> 8), d[2] = (uint8_t)(w >> 16), d[3] = (uint8_t)(w >> 24);
                }
        const uint32_t c0 = kept % 2 == 0 ? c4 : 0; /* the rest nibble by nibble */
        for (size_t o = (size_t)64 * (c0 / 4); o < tb; o++) tile[o] = 0;
        for (uint32_t t = 0; t < CQ_KT_TOK; t++)
            for (uint32_t c = c0; c < kept; c++) {
                unsigned sh;
                size_t o = cq_kt_pos(kept, t, c, &sh);
                tile[o] |= (uint8_t)(nib(tmp, (size_t)t * kept + c) << sh);
            }
    }
}

void cq_kt_unpack(const uint8_t *grp, uint32_t kept, uint32_t t0, uint32_t t1, uint8_t *out) {
    const size_t nn = (size_t)(t1 - t0) * kept;
    memset(out, 0, (nn + 1) / 2);
    const uint32_t Q = kept / 4;
    uint32_t c0 = 0;
    if (kept % 2 == 0) { /* quads: 2 output bytes per token and quad */
        c0 = 4 * Q;
        for (uint32_t t = t0; t < t1; t++) {
            const uint8_t *tile = grp + (size_t)(t / CQ_KT_TOK) * 16 * kept + 4 * (t % 16);
            const unsigned hs = (t % CQ_KT_TOK) >= 16 ? 4 : 0;
            uint8_t *dst = out + (size_t)(t - t0) * kept / 2;
            for (uint32_t u = 0; u < Q; u++) {
                const uint8_t *q = tile + 64 * (size_t)u;
                const uint32_t w = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                                   (uint32_t)q[3] << 24;
                const uint32_t v = gather4(w >> hs);
                dst[2 * u] = (uint8_t)v, dst[2 * u + 1] = (uint8_t)(v >> 8);
            }
        }
    }
    for (uint32_t t = t0; t < t1; t++)
        for (uint32_t c = c0; c < kept; c++) {
            size_t i = (size_t)(t - t0) * kept + c;
            unsigned sh;
            size_t o = cq_kt_pos(kept, t, c, &sh);
            out[i >> 1] |= (uint8_t)(((grp[o] >> sh) & 0xF) << (4 * (i & 1)));
        }
}

void cq_vb_put(uint8_t *blk, uint32_t D, uint32_t i, const uint8_t *codes) {
    for (uint32_t c0 = 0; c0 < D; c0 += 32) {
        uint8_t *ch = blk + 2 * (size_t)c0 + i; /* chunk c0 / 32 at 64 * (c0 / 32) */
        const uint8_t *src = codes + c0 / 2;   /* channels c0..c0+15: bytes 0-7; +16..31: 8-15 */
        for (uint32_t m = 0; m < 16; m += 4) {
            /* channels m..m+3 (2 bytes) spread to 4 low nibbles, channels 16+m.. to the high */
            const uint32_t w = spread4(get16(src + m / 2)) | spread4(get16(src + 8 + m / 2)) << 4;
            ch[4 * m] = (uint8_t)w, ch[4 * m + 4] = (uint8_t)(w >> 8);
            ch[4 * m + 8] = (uint8_t)(w >> 16), ch[4 * m + 12] = (uint8_t)(w >> 24);
        }
    }
}

void cq_vb_get_token(const uint8_t *blk, uint32_t D, uint32_t i, uint8_t *codes) {
    for (uint32_t c0 = 0; c0 < D; c0 += 32) {
        const uint8_t *ch = blk + 2 * (size_t)c0 + i;
        uint8_t *dst = codes + c0 / 2;
        for (uint32_t m = 0; m < 16; m += 4) {
            const uint32_t w = (uint32_t)ch[4 * m] | (uint32_t)ch[4 * m + 4] << 8 |
                               (uint32_t)ch[4 * m + 8] << 16 | (uint32_t)ch[4 * m + 12] << 24;
            const uint32_t lo = gather4(w), hi = gather4(w >> 4);
            dst[m / 2] = (uint8_t)lo, dst[m / 2 + 1] = (uint8_t)(lo >> 8);
            dst[8 + m / 2] = (uint8_t)hi, dst[8 + m / 2 + 1] = (uint8_t)(hi >> 8);
        }
    }
}

void cq_vb_unpack(const uint8_t *blk, uint32_t D, uint32_t o, uint32_t n, uint8_t *rows) {
    for (uint32_t t = 0; t < n; t++) {
        uint32_t p = o + t;
        cq_vb_get_token(blk + (size_t)(p / CQ_VB_TOK) * 2 * D, D, p % CQ_VB_TOK,
                        rows + (size_t)t * (D / 2));
    }
}

void cq_fold_quant_q8_split(const cq_kernels *k, const float *q, uint32_t nh, uint32_t D,
                            const uint16_t *sc, uint32_t kept, int8_t *q8, uint8_t *sh, float *qs) {
    float x[CQ_MAX_DIM];
    const uint32_t nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK;
    for (uint32_t h = 0; h < nh; h++) {
        k->fold_q(q + (size_t)h * D, 1, D, NULL, sc, kept, x);
        k->quant_q8(x, kept, q8 + (size_t)h * kept, sh + (size_t)h * nb, &qs[h]);
    }
}
