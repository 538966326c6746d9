/* SPDX-License-Identifier: MIT */
/*
 * cache_testutil.h - helpers shared by the cache tests: random fp16 tensors
 * with awkward values, random outlier masks, comparison of read-backs, cache-file CRCs.
 */
#ifndef CACHE_TESTUTIL_H
#define CACHE_TESTUTIL_H

#include <stdint.h>

#include "channelquant.h"
#include "cq_cache.h"

/* n fp16 values ~ N(0, sigma) with planted specials when specials != 0
 * (zeros, -0.0, subnormals, +-65504, large channels). */
void ctu_fill_f16(cq_rng *r, uint16_t *x, size_t n, float sigma, int specials);
/* masks [n][D] with exactly k ones each (random channels). */
void ctu_random_masks(cq_rng *r, uint8_t *masks, uint32_t n, uint32_t D, uint32_t k);
/* max |a - b| / max(max |b|, tiny) over n values */
double ctu_rel_err(const float *a, const float *b, size_t n);
/* bitwise equality of n floats; returns the first differing index or -1 */
long ctu_first_diff(const float *a, const float *b, size_t n);
/* Recompute every CRC of a cache-file image of len bytes (docs/CACHE_FILE.md: the header's
 * at byte 36; per section its payload's at 16 and its header's at 20), so that crafted
 * content reaches the loader's checks past the checksums. */
void ctu_file_recrc(uint8_t *img, size_t len);

#endif
