/* SPDX-License-Identifier: MIT */
/*
 * cq_bits.h - private helpers of the baseline codecs: little-endian fp16
 * fields, LSB-first bit streams of b-bit codes, nearest-centroid lookup over
 * a sorted codebook, the "is this dim/role supported" boilerplate, and the
 * block rule and sign masks shared by the TurboQuant-style codecs (turbo*, tbq*).
 * Internal to src/codec/ (not installed); everything is static inline.
 */
#ifndef CQ_CODEC_BITS_H
#define CQ_CODEC_BITS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cq_codec.h"

/* TurboQuant-style block: 128 channels, 64 when D is not a multiple of 128, else none (0). */
static inline uint32_t cqb_turbo_block(uint32_t D) {
    return D % 128 == 0 ? 128 : D % 64 == 0 ? 64 : 0;
}
/* One block of B b-bit codes plus its fp16 norm. */
static inline size_t cqb_turbo_block_bytes(unsigned bits, uint32_t B) {
    return 2 + (size_t)B * bits / 8;
}
/* -1 when bit i of the 32-bit-word mask m is set, else +1 */
static inline float cqb_mask_sign(const uint32_t *m, uint32_t i) {
    return (m[i >> 5] >> (i & 31)) & 1u ? -1.0f : 1.0f;
}

static inline void cqb_put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline uint16_t cqb_get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* Code i of width b (1..8) at bit offset b*i, LSB first across bytes. The
 * buffer must be zeroed beforehand (codes are OR-ed in). */
static inline void cqb_put_bits(uint8_t *buf, size_t i, unsigned b, unsigned code) {
    size_t bit = (size_t)b * i;
    unsigned v = code & ((1u << b) - 1u);
    size_t byte = bit >> 3;
    unsigned sh = (unsigned)(bit & 7);
    buf[byte] |= (uint8_t)(v << sh);
    if (sh + b > 8) buf[byte + 1] |= (uint8_t)(v >> (8 - sh));
}
static inline unsigned cqb_get_bits(const uint8_t *buf, size_t i, unsigned b) {
    size_t bit = (size_t)b * i;
    size_t byte = bit >> 3;
    unsigned sh = (unsigned)(bit & 7);
    unsigned v = (unsigned)buf[byte] >> sh;
    if (sh + b > 8) v |= (unsigned)buf[byte + 1] << (8 - sh);
    return v & ((1u << b) - 1u);
}
/* Bytes of n codes of width b. */
static inline size_t cqb_stream_bytes(size_t n, unsigned b) { return (n * b + 7) / 8; }

/* Nearest of k ascending centroids c[] given the k-1 midpoints mid[i] =
 * (c[i] + c[i+1]) / 2: the first i with y < mid[i], else k-1. A value exactly
 * on a midpoint goes to the upper centroid (so y == 0 goes to the upper half
 * of a symmetric codebook). NaN never reaches here (inputs are checked). */
static inline unsigned cqb_nearest(float y, const float *mid, unsigned k) {
    unsigned lo = 0, hi = k - 1; /* binary search: answer in [lo, hi] */
    while (lo < hi) {
        unsigned m = (lo + hi) / 2;
        if (y < mid[m]) hi = m;
        else lo = m + 1;
    }
    return lo;
}
static inline void cqb_midpoints(const float *c, unsigned k, float *mid) {
    for (unsigned i = 0; i + 1 < k; i++) mid[i] = (c[i] + c[i + 1]) * 0.5f;
}

#endif
