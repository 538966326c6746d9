/* SPDX-License-Identifier: MIT */
/*
 * cq_exact.c - exact references of fp16 rounding, scale and quantization used
 * by the unit tests (see cq_exact.h). Deliberately slow and obvious.
 */
#include "cq_exact.h"

#include <math.h>

int64_t cq_ref_f16_units(uint16_t h) {
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    int64_t mag = e == 0 ? m : (int64_t)(1024 + m) << (e - 1);
    return (h & 0x8000) ? -mag : mag;
}

int64_t cq_ref_rne_div(int64_t n, int64_t d) {
    int64_t q = n / d, r = n % d;
    if (r < 0) { /* make it floor division: 0 <= r < d */
        q--;
        r += d;
    }
    if (2 * r > d || (2 * r == d && (q & 1))) q++;
    return q;
}

static long double f16_ld(uint16_t h) { return ldexpl((long double)cq_ref_f16_units(h), -24); }

uint16_t cq_ref_f16_from_ld(long double x) {
    if (isnan(x)) return 0x7E00;
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    long double a = fabsl(x);
    if (a >= 65520.0L) return sign | 0x7C00; /* 65504 + half an ulp, ties to the even 2^16 */
    /* largest positive finite pattern whose value is <= a (values are monotone in the bits) */
    unsigned lo = 0, hi = 0x7BFF;
    while (lo < hi) {
        unsigned mid = (lo + hi + 1) / 2;
        if (f16_ld((uint16_t)mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    long double vlo = f16_ld((uint16_t)lo);
    if (vlo == a) return (uint16_t)(sign | lo);
    long double vhi = lo == 0x7BFF ? 65536.0L : f16_ld((uint16_t)(lo + 1));
    /* both differences are exact (Sterbenz: the neighbours are within a factor 2 of a) */
    long double d1 = a - vlo, d2 = vhi - a;
    unsigned r = d1 < d2 ? lo : d1 > d2 ? lo + 1 : ((lo & 1) ? lo + 1 : lo);
    return (uint16_t)(sign | r);
}

uint32_t cq_ref_f32_bits(int64_t n, int shift, int *exact) {
    *exact = 1;
    if (n == 0) return 0;
    uint32_t sign = n < 0 ? 0x80000000u : 0;
    uint64_t a = n < 0 ? (uint64_t)(-n) : (uint64_t)n;
    int p = 63;
    while (!((a >> p) & 1)) p--;
    int e = p - shift; /* value in [2^e, 2^(e+1)) */
    if (e > 127) {
        *exact = 0;
        return 0;
    }
    int q = e >= -126 ? e - 23 : -149; /* exponent of the fp32 quantum at this magnitude */
    /* mantissa = a * 2^(-shift - q) must be an integer */
    int s = -shift - q;
    uint64_t m;
    if (s >= 0) m = a << s;
    else {
        if (a & ((1ull << -s) - 1)) {
            *exact = 0;
            return 0;
        }
        m = a >> -s;
    }
    if (e >= -126) return sign | ((uint32_t)(e + 127) << 23) | (uint32_t)(m & 0x7FFFFF);
    return sign | (uint32_t)m;
}

uint16_t cq_ref_scale(uint16_t amax, int qmax) {
    int64_t A = cq_ref_f16_units((uint16_t)(amax & 0x7FFF));
    if (A < (int64_t)qmax * 1024) return 0x0400; /* amax/qmax < 2^-14 = 1024 units */
    unsigned lo = 0x0400, hi = 0x7BFF;           /* largest s with qmax*s <= A */
    while (lo < hi) {
        unsigned mid = (lo + hi + 1) / 2;
        if ((int64_t)qmax * cq_ref_f16_units((uint16_t)mid) <= A) lo = mid;
        else hi = mid - 1;
    }
    int64_t d1 = A - qmax * cq_ref_f16_units((uint16_t)lo);
    if (d1 == 0) return (uint16_t)lo;
    int64_t d2 = qmax * cq_ref_f16_units((uint16_t)(lo + 1)) - A;
    if (d1 < d2) return (uint16_t)lo;
    if (d1 > d2) return (uint16_t)(lo + 1);
    return (uint16_t)((lo & 1) ? lo + 1 : lo);
}

int cq_ref_quantize(uint16_t x, uint16_t scale, int qmax) {
    int64_t q = cq_ref_rne_div(cq_ref_f16_units(x), cq_ref_f16_units(scale));
    if (q > qmax) q = qmax;
    if (q < -qmax - 1) q = -qmax - 1;
    return (int)q;
}
