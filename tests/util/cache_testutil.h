/* SPDX-License-Identifier: MIT */
/*
 * cache_testutil.h - helpers shared by the cache tests: random fp16 tensors
 * with awkward values, random outlier masks, comparison of read-backs.
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

#endif
