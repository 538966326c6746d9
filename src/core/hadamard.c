/* SPDX-License-Identifier: MIT */
/*
 * hadamard.c - fast Walsh-Hadamard transforms in fp32 (scalar reference).
 * The fp16-rounded transform of CQ-3-rot lives in src/codec/cq3rot.c because
 * its rounding is part of that contract.
 */
#include <math.h>

#include "cq_util.h"

void cq_fwht_f32(float *x, uint32_t n) {
    for (uint32_t h = 1; h < n; h <<= 1)
        for (uint32_t i = 0; i < n; i += 2 * h)
            for (uint32_t j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}

void cq_fwht_orthonormal_f32(float *x, uint32_t n) {
    cq_fwht_f32(x, n);
    const float s = (float)(1.0 / sqrt((double)n));
    for (uint32_t i = 0; i < n; i++) x[i] *= s;
}
