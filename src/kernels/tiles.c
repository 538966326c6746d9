/*
 * tiles.c - conversions between the contract's token-major INT4 nibbles and the cache's
 * compute layouts (cq_tiles.h states both layouts). Plain C: they run once per committed
 * group or appended value token, and on read-back / export.
 */
#include <string.h>

#include "cq_tiles.h"

static inline unsigned nib(const uint8_t *b, size_t i) { return (b[i >> 1] >> (4 * (i & 1))) & 0xF; }

void cq_kt_pack(uint8_t *grp, uint32_t kept, uint32_t g) {
    uint8_t tmp[16 * 512 + 1];
    const size_t tb = (size_t)16 * kept;
    for (uint32_t t0 = 0; t0 < g; t0 += CQ_KT_TOK) {
        uint8_t *tile = grp + (size_t)(t0 / CQ_KT_TOK) * tb;
        const uint32_t m = g - t0 < CQ_KT_TOK ? g - t0 : CQ_KT_TOK;
        const size_t have = ((size_t)m * kept + 1) / 2;
        memcpy(tmp, tile, have);
        memset(tmp + have, 0, tb - have);
        if (((size_t)m * kept) & 1) tmp[have - 1] &= 0x0F; /* the next token's nibble */
        memset(tile, 0, tb);
        for (uint32_t t = 0; t < CQ_KT_TOK; t++)
            for (uint32_t c = 0; c < kept; c++) {
                unsigned sh;
                size_t o = cq_kt_pos(kept, t, c, &sh);
                tile[o] |= (uint8_t)(nib(tmp, (size_t)t * kept + c) << sh);
            }
    }
}

void cq_kt_unpack(const uint8_t *grp, uint32_t kept, uint32_t t0, uint32_t t1, uint8_t *out) {
    const size_t nn = (size_t)(t1 - t0) * kept;
    memset(out, 0, (nn + 1) / 2);
    size_t i = 0;
    for (uint32_t t = t0; t < t1; t++)
        for (uint32_t c = 0; c < kept; c++, i++) {
            unsigned sh;
            size_t o = cq_kt_pos(kept, t, c, &sh);
            out[i >> 1] |= (uint8_t)(((grp[o] >> sh) & 0xF) << (4 * (i & 1)));
        }
}

void cq_vb_put(uint8_t *blk, uint32_t D, uint32_t i, const uint8_t *codes) {
    for (uint32_t c0 = 0; c0 < D; c0 += 32) {
        uint8_t *ch = blk + 2 * (size_t)c0 + i; /* chunk c0 / 32 at 64 * (c0 / 32) */
        const uint8_t *src = codes + c0 / 2;
        for (uint32_t m = 0; m < 16; m++) {
            /* channel c0 + m: byte (c0 + m) / 2 of the token; c0 + 16 + m: byte 8 + m / 2 */
            unsigned lo = (src[m >> 1] >> (4 * (m & 1))) & 0xF;
            unsigned hi = (src[8 + (m >> 1)] >> (4 * (m & 1))) & 0xF;
            ch[4 * m] = (uint8_t)(lo | hi << 4);
        }
    }
}

void cq_vb_get_token(const uint8_t *blk, uint32_t D, uint32_t i, uint8_t *codes) {
    for (uint32_t c0 = 0; c0 < D; c0 += 32) {
        const uint8_t *ch = blk + 2 * (size_t)c0 + i;
        uint8_t *dst = codes + c0 / 2;
        for (uint32_t m = 0; m < 16; m += 2) {
            uint8_t a = ch[4 * m], b = ch[4 * (m + 1)];
            dst[m >> 1] = (uint8_t)((a & 0x0F) | (b << 4));        /* channels m, m + 1 */
            dst[8 + (m >> 1)] = (uint8_t)((a >> 4) | (b & 0xF0)); /* 16 + m, 16 + m + 1 */
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

/* ------------------------------------------- tiled kernels by way of rows */

#include "cq_kernels.h"

void cq_dot_i4tq_rows(const cq_kernels *k, const int8_t *q8, const uint8_t *sh, const float *qs,
                      uint32_t nh, const uint8_t *grp, uint32_t r0, uint32_t n, uint32_t kept,
                      float *s, uint32_t ss) {
    if (kept & 1) { /* token rows would start mid-byte: the spec itself */
        cq_kernels_scalar()->dot_i4tq(q8, sh, qs, nh, grp, r0, n, kept, s, ss);
        return;
    }
    uint8_t rows[CQ_KT_TOK * CQ_MAX_DIM / 2 + 8] = {0}; /* + 8: dot_i4q's over-read */
    for (uint32_t t = 0; t < n; t += CQ_KT_TOK) {
        const uint32_t m = n - t < CQ_KT_TOK ? n - t : CQ_KT_TOK;
        cq_kt_unpack(grp, kept, r0 + t, r0 + t + m, rows);
        k->dot_i4q(q8, sh, qs, nh, rows, m, kept, s + t, ss);
    }
}

void cq_acc_i4tq_rows(const cq_kernels *k, const float *w, uint32_t ws, uint32_t nh,
                      const uint8_t *blk, uint32_t o, const uint16_t *vs, uint32_t n, uint32_t D,
                      float *acc) {
    uint8_t rows[CQ_V8_TILE * CQ_MAX_DIM / 2 + 8] = {0};
    /* the tiles of acc_i4q's rule start at the first token: whole tiles per call keep them */
    for (uint32_t t = 0; t < n; t += CQ_V8_TILE) {
        const uint32_t m = n - t < CQ_V8_TILE ? n - t : CQ_V8_TILE;
        cq_vb_unpack(blk, D, o + t, m, rows);
        k->acc_i4q(w + t, ws, nh, rows, vs + t, m, D, acc);
    }
}

void cq_dot_i4t_rows(const cq_kernels *k, const float *qp, uint32_t nh, const uint8_t *grp,
                     uint32_t r0, uint32_t n, uint32_t kept, float *s, uint32_t ss) {
    if (kept & 1) {
        cq_kernels_scalar()->dot_i4t(qp, nh, grp, r0, n, kept, s, ss);
        return;
    }
    uint8_t rows[CQ_KT_TOK * CQ_MAX_DIM / 2 + 8] = {0};
    for (uint32_t t = 0; t < n; t += CQ_KT_TOK) {
        const uint32_t m = n - t < CQ_KT_TOK ? n - t : CQ_KT_TOK;
        cq_kt_unpack(grp, kept, r0 + t, r0 + t + m, rows);
        k->dot_i4(qp, nh, rows, m, kept, s + t, ss);
    }
}

void cq_acc_i4t_rows(const cq_kernels *k, const float *w, uint32_t ws, uint32_t nh,
                     const uint8_t *blk, uint32_t o, const uint16_t *vs, uint32_t n, uint32_t D,
                     float *acc) {
    uint8_t rows[CQ_V8_TILE * CQ_MAX_DIM / 2 + 8] = {0};
    for (uint32_t t = 0; t < n; t += CQ_V8_TILE) {
        const uint32_t m = n - t < CQ_V8_TILE ? n - t : CQ_V8_TILE;
        cq_vb_unpack(blk, D, o + t, m, rows);
        k->acc_i4(w + t, ws, nh, rows, vs + t, m, D, acc);
    }
}
