/* SPDX-License-Identifier: MIT */
/*
 * cache_testutil.c - see cache_testutil.h.
 */
#include <math.h>
#include <string.h>

#include "../../src/core/cq_le.h"
#include "cache_testutil.h"

void ctu_fill_f16(cq_rng *r, uint16_t *x, size_t n, float sigma, int specials) {
    for (size_t i = 0; i < n; i++) {
        float v = (float)cq_rng_normal(r) * sigma;
        x[i] = cq_f32_to_f16(v);
        if (!specials) continue;
        uint32_t k = cq_rng_below(r, 64);
        if (k == 0) x[i] = 0x0000;
        else if (k == 1) x[i] = 0x8000;
        else if (k == 2) x[i] = (uint16_t)(cq_rng_below(r, 0x3FF) + 1); /* subnormal */
        else if (k == 3) x[i] = 0x7BFF;
        else if (k == 4) x[i] = 0xFBFF;
        else if (k == 5) x[i] = cq_f32_to_f16(v * 300.0f);
    }
}

void ctu_random_masks(cq_rng *r, uint8_t *masks, uint32_t n, uint32_t D, uint32_t k) {
    memset(masks, 0, (size_t)n * D);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t placed = 0;
        while (placed < k) {
            uint32_t c = cq_rng_below(r, D);
            if (!masks[(size_t)i * D + c]) masks[(size_t)i * D + c] = 1, placed++;
        }
    }
}

double ctu_rel_err(const float *a, const float *b, size_t n) {
    double mx = 0.0, den = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= mx)) mx = d; /* NaN propagates as a failure */
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return mx / den;
}

long ctu_first_diff(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float)) != 0) return (long)i;
    return -1;
}

void ctu_file_recrc(uint8_t *b, size_t len) {
    cq_put_u32le(b + 36, cq_crc32c(0, b, 36));
    size_t o = 40;
    for (uint32_t i = 0, ns = cq_get_u32le(b + 24); i < ns && o + 24 <= len; i++) {
        const uint64_t l = cq_get_u64le(b + o + 8);
        if (o + 24 + l > len) break;
        cq_put_u32le(b + o + 16, cq_crc32c(0, b + o + 24, (size_t)l));
        cq_put_u32le(b + o + 20, cq_crc32c(0, b + o, 20));
        o += 24 + (size_t)l;
    }
}
