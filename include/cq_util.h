/* SPDX-License-Identifier: MIT */
/*
 * cq_util.h - small shared building blocks used across modules: a portable
 * reproducible RNG, orthonormal fast Walsh-Hadamard transforms, and the .npy
 * array format (NumPy 1.0/2.0/3.0, little-endian f2/f4/f8, C order).
 *
 * Tier: TOOL-GRADE - exported for the cq tool, tests and research; may change in any
 * minor version (docs/EMBEDDING.md).
 */
#ifndef CQ_UTIL_H
#define CQ_UTIL_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>

#include "cq_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------- rng */
/* splitmix64: identical sequences on every machine for a given seed. */
typedef struct cq_rng {
    uint64_t s;
} cq_rng;

static inline void cq_rng_seed(cq_rng *r, uint64_t seed) { r->s = seed; }
CQ_API uint64_t cq_rng_u64(cq_rng *r);
CQ_API double cq_rng_uniform(cq_rng *r);   /* [0, 1) with 53 bits */
CQ_API double cq_rng_normal(cq_rng *r);    /* N(0, 1), Box-Muller */
CQ_API uint32_t cq_rng_below(cq_rng *r, uint32_t n); /* uniform in [0, n), n > 0 */

/* -------------------------------------------------------------- hadamard */
/* In-place unnormalized FWHT (h = 1, 2, 4, ...: (a, b) -> (a+b, a-b)); n a power of two. */
CQ_API void cq_fwht_f32(float *x, uint32_t n);
/* Orthonormal: FWHT / sqrt(n) (its own inverse). */
CQ_API void cq_fwht_orthonormal_f32(float *x, uint32_t n);
static inline int cq_is_pow2(uint32_t n) { return n && (n & (n - 1)) == 0; }

/* ---------------------------------------------------------------- crc32c */
/* CRC-32C (Castagnoli, reflected 0x82F63B78), as in iSCSI/ext4: crc32c("123456789") = 0xE3069283.
 * Start with crc = 0; feed chunks by passing the previous result. */
CQ_API uint32_t cq_crc32c(uint32_t crc, const void *data, size_t n);

/* ------------------------------------------------------------------- npy */
typedef enum cq_npy_dtype { CQ_NPY_F16 = 0, CQ_NPY_F32 = 1, CQ_NPY_F64 = 2 } cq_npy_dtype;

#define CQ_NPY_MAX_DIMS 8

typedef struct cq_npy {
    cq_npy_dtype dtype;
    uint32_t ndim;
    uint64_t shape[CQ_NPY_MAX_DIMS];
    uint64_t count; /* product of shape */
    void *data;     /* count elements of dtype, native (little-endian) order */
} cq_npy;

/* Load (at most max_bytes of data; 0 = 4 GiB). Rejects big-endian, Fortran order,
 * other dtypes, inconsistent sizes, truncation. */
CQ_API cq_status cq_npy_load(const char *path, size_t max_bytes, cq_npy *out, cq_err *err);
/* Parse from memory (what the loader and the fuzzer use). Copies the data. */
CQ_API cq_status cq_npy_parse(const uint8_t *buf, size_t len, size_t max_bytes, cq_npy *out, cq_err *err);
/* Write atomically (format version 1.0). */
CQ_API cq_status cq_npy_save(const char *path, cq_npy_dtype dtype, const uint64_t *shape, uint32_t ndim,
                      const void *data, cq_err *err);
CQ_API void cq_npy_free(cq_npy *a); /* accepts NULL */
/* Convert all elements: to fp16 bits (RNE; exact for f16 input), to fp32. */
CQ_API void cq_npy_to_f16(const cq_npy *a, uint16_t *dst);
CQ_API void cq_npy_to_f32(const cq_npy *a, float *dst);

#ifdef __cplusplus
}
#endif
#endif
