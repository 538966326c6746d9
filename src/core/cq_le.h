/* SPDX-License-Identifier: MIT */
/*
 * cq_le.h - the one set of little-endian load/store helpers of the library:
 * every byte format (cache files, codec blocks, GGUF, llama2.c, .npy) reads
 * and writes its integers through these, so the byte order lives in one place.
 * Internal header (src/ only); not part of the public API.
 */
#ifndef CQ_LE_H
#define CQ_LE_H

#include <stddef.h>
#include <stdint.h>

static inline void cq_put_u16le(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline uint16_t cq_get_u16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline void cq_put_u32le(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t cq_get_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline void cq_put_u64le(uint8_t *p, uint64_t v) {
    cq_put_u32le(p, (uint32_t)v);
    cq_put_u32le(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t cq_get_u64le(const uint8_t *p) {
    return cq_get_u32le(p) | ((uint64_t)cq_get_u32le(p + 4) << 32);
}
/* n consecutive 16-bit words (fp16 arrays) */
static inline void cq_put_u16le_n(uint8_t *d, const uint16_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) cq_put_u16le(d + 2 * i, v[i]);
}
static inline void cq_get_u16le_n(uint16_t *d, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = cq_get_u16le(s + 2 * i);
}

#endif
