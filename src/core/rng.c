/* SPDX-License-Identifier: MIT */
/*
 * rng.c - splitmix64 and derived distributions: the one reproducible RNG of
 * the project (generators, benchmarks, random-rotation seeds).
 */
#include <math.h>

#include "cq_util.h"

uint64_t cq_rng_u64(cq_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double cq_rng_uniform(cq_rng *r) { return (double)(cq_rng_u64(r) >> 11) * 0x1.0p-53; }

double cq_rng_normal(cq_rng *r) {
    double u = ((double)(cq_rng_u64(r) >> 11) + 0.5) * 0x1.0p-53; /* (0, 1) */
    double v = cq_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586476925 * v);
}

uint32_t cq_rng_below(cq_rng *r, uint32_t n) {
    /* Lemire's multiply-shift with rejection: unbiased */
    uint64_t m = (uint64_t)(uint32_t)cq_rng_u64(r) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (lo < t) {
            m = (uint64_t)(uint32_t)cq_rng_u64(r) * n;
            lo = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}
