/* SPDX-License-Identifier: MIT */
/*
 * cq_exact.h - exact integer / long-double references of the contract's
 * arithmetic, for the unit tests only. Written independently of src/core:
 * values are integers of 2^-24 units, roundings are neighbour searches with
 * exact differences, never the library's bit tricks.
 */
#ifndef CQ_EXACT_H
#define CQ_EXACT_H

#include <stdint.h>

/* Value of a finite fp16 pattern in units of 2^-24 (|v| < 2^40). */
int64_t cq_ref_f16_units(uint16_t h);
/* round_half_to_even(n / d), d > 0, any sign of n. */
int64_t cq_ref_rne_div(int64_t n, int64_t d);
/* fp16_RNE(x) by nearest-neighbour search (x finite or +-Inf; NaN gives 0x7E00). */
uint16_t cq_ref_f16_from_ld(long double x);
/* fp32 bits of n * 2^-shift; *exact = 0 if not representable exactly (then returns 0). */
uint32_t cq_ref_f32_bits(int64_t n, int shift, int *exact);
/* scale = fp16_RNE(max(amax/qmax, 2^-14)), integer arithmetic only. */
uint16_t cq_ref_scale(uint16_t amax, int qmax);
/* clamp(round_half_even(x/scale), -qmax-1, qmax), integer arithmetic only. */
int cq_ref_quantize(uint16_t x, uint16_t scale, int qmax);

#endif
