/* SPDX-License-Identifier: MIT */
/*
 * quant.c - the contract's arithmetic primitives (CONTRACT.md section 3):
 * amax, scale, quantize, dequantize. Scalar reference, built with
 * -ffp-contract=off. The fp32 shortcuts used here (fp32 quotient for the
 * scale, rint of the fp32 quotient for the code) are the "checked facts" of
 * the contract; tests/test_quant.c proves them against exact integer
 * arithmetic over every finite fp16 amax and all rounding ties.
 */
#include <math.h>

#include "cq_codec.h"

uint16_t cq_amax_f16(const uint16_t *x, size_t n, size_t stride) {
    uint16_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t a = (uint16_t)(x[i * stride] & 0x7FFFu);
        if (a > m) m = a;
    }
    return m;
}

uint16_t cq_scale_from_amax(uint16_t amax, int qmax) {
    float q = cq_f16_to_f32((uint16_t)(amax & 0x7FFFu)) / (float)qmax;
    const float floor_min = 6.103515625e-05f; /* 2^-14 */
    if (!(q >= floor_min)) q = floor_min;
    return cq_f32_to_f16(q);
}

int cq_quantize(uint16_t x, uint16_t scale, int qmax) {
    float r = rintf(cq_f16_to_f32(x) / cq_f16_to_f32(scale));
    int code;
    if (r > (float)qmax) code = qmax;
    else if (r < (float)(-qmax - 1)) code = -qmax - 1;
    else code = (int)r; /* (int)-0.0f is 0: a zero code is the integer 0 */
    return code;
}

float cq_dequantize(int code, uint16_t scale) {
    return (float)code * cq_f16_to_f32(scale);
}

int cq_find_nonfinite(const uint16_t *x, uint32_t T, uint32_t D, uint32_t *t, uint32_t *c) {
    for (uint32_t i = 0; i < T; i++)
        for (uint32_t j = 0; j < D; j++)
            if (!cq_f16_is_finite(x[(size_t)i * D + j])) {
                if (t) *t = i;
                if (c) *c = j;
                return 1;
            }
    return 0;
}
