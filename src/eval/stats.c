/* SPDX-License-Identifier: MIT */
/*
 * stats.c - the statistics the evaluation reports: Wilson score interval,
 * McNemar's paired test, quantiles.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"

void cq_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi) {
    if (n == 0) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double p = (double)k / (double)n, nn = (double)n, z2 = z * z;
    double den = 1.0 + z2 / nn;
    double mid = (p + z2 / (2.0 * nn)) / den;
    double half = z * sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn)) / den;
    *lo = mid - half < 0.0 ? 0.0 : mid - half;
    *hi = mid + half > 1.0 ? 1.0 : mid + half;
}

/* log of the binomial coefficient via lgamma */
static double log_choose(uint64_t n, uint64_t k) {
    return lgamma((double)n + 1.0) - lgamma((double)k + 1.0) - lgamma((double)(n - k) + 1.0);
}

double cq_mcnemar_p(uint64_t b, uint64_t c) {
    uint64_t n = b + c;
    if (n == 0) return 1.0;
    if (n > 1000) {
        /* chi-square with continuity correction, 1 dof: p = erfc(sqrt(x/2)) */
        double d = fabs((double)b - (double)c) - 1.0;
        if (d < 0) d = 0;
        double x = d * d / (double)n;
        return erfc(sqrt(x / 2.0));
    }
    uint64_t m = b < c ? b : c;
    double p = 0.0;
    for (uint64_t i = 0; i <= m; i++) p += exp(log_choose(n, i) - (double)n * log(2.0));
    p *= 2.0;
    return p > 1.0 ? 1.0 : p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cq_quantile(const double *v, size_t n, double q) {
    if (n == 0) return NAN;
    double *s = malloc(n * sizeof *s);
    if (!s) return NAN;
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    if (q <= 0) q = 0;
    if (q >= 1) q = 1;
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    double f = pos - (double)i;
    double r = i + 1 < n ? s[i] * (1.0 - f) + s[i + 1] * f : s[i];
    free(s);
    return r;
}
