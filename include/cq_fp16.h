/* SPDX-License-Identifier: MIT */
/*
 * cq_fp16.h - IEEE binary16 conversions used by the contract.
 *
 * All conversions into fp16 round to nearest, ties to even (numpy's
 * astype(float16)); overflow gives +-Inf, NaN stays NaN (quiet). Widening
 * fp16 -> fp32 is exact (subnormals and -0.0 included).
 *
 * Tier: STABLE CORE - what a runtime links; its ABI is kept within a major version
 * (docs/EMBEDDING.md).
 */
#ifndef CQ_FP16_H
#define CQ_FP16_H

#include "cq_api.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CQ_F16_MIN_NORMAL 0x0400u /* 2^-14 */
#define CQ_F16_MAX 0x7BFFu        /* 65504 */

CQ_API float cq_f16_to_f32(uint16_t h);
CQ_API uint16_t cq_f32_to_f16(float f);
CQ_API uint16_t cq_f64_to_f16(double d); /* single rounding from double (no double rounding) */

static inline int cq_f16_is_finite(uint16_t h) { return (h & 0x7C00u) != 0x7C00u; }
static inline uint16_t cq_f16_abs(uint16_t h) { return (uint16_t)(h & 0x7FFFu); }

static inline uint32_t cq_f32_bits(float f) {
    union { float f; uint32_t u; } v;
    v.f = f;
    return v.u;
}
static inline float cq_f32_from_bits(uint32_t u) {
    union { float f; uint32_t u; } v;
    v.u = u;
    return v.f;
}

/* Bulk helpers (scalar reference; the cache uses SIMD versions). */
CQ_API void cq_f16_to_f32_n(const uint16_t *src, float *dst, uint64_t n);
CQ_API void cq_f32_to_f16_n(const float *src, uint16_t *dst, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif /* CQ_FP16_H */
