/* SPDX-License-Identifier: MIT */
/*
 * test_cache_bandwidth.c - the plumbing of the bandwidth probe (include/cq_cache.h),
 * never its timings: every kernel returns a finite positive figure on a real buffer
 * and 0 on bad arguments; a reading fills every kernel; the summary takes each
 * reading's best kernel, the median (odd and even counts), the extremes and the spread,
 * and marks a probe unstable exactly when the spread exceeds CQ_BW_UNSTABLE_SPREAD; the
 * non-temporal read kernel gives the plain one's checksum in every table.
 * Not here: `cq bench`'s fields (tests/cli/bench_smoke.sh).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/kernels/cq_kernels.h"
#include "cq_cache.h"
#include "cq_pool.h"
#include "cq_test.h"

#define MIB (1u << 20)

static void test_kernels_run(cq_pool *pool, const uint8_t *buf, size_t bytes) {
    for (uint32_t thr = 1; thr <= 2; thr++)
        for (int k = 0; k < CQ_BW_N_KERNELS; k++) {
            double g = cq_read_bandwidth_kernel(pool, buf, bytes, thr, 2, (cq_bw_kernel)k);
            CHECK(isfinite(g) && g > 0.0, "kernel %d, %u threads: %g GB/s", k, thr, g);
        }
    double g = cq_read_bandwidth(NULL, buf, bytes, 1, 1);
    CHECK(isfinite(g) && g > 0.0, "cq_read_bandwidth on the default pool: %g", g);
    /* bad arguments read nothing */
    CHECK(cq_read_bandwidth_kernel(pool, NULL, bytes, 1, 1, CQ_BW_SUM) == 0.0, "NULL buffer");
    CHECK(cq_read_bandwidth_kernel(pool, buf + 1, bytes - 64, 1, 1, CQ_BW_NT) == 0.0, "unaligned");
    CHECK(cq_read_bandwidth_kernel(pool, buf, bytes, 0, 1, CQ_BW_PINNED) == 0.0, "0 threads");
    CHECK(cq_read_bandwidth_kernel(pool, buf, 64, 1, 1, CQ_BW_SUM) == 0.0, "under 128 bytes");
    CHECK(cq_read_bandwidth_kernel(pool, buf, bytes, 1, 1, (cq_bw_kernel)CQ_BW_N_KERNELS) == 0.0,
          "unknown kernel");
    CHECK(cq_read_bandwidth_kernel(pool, buf, bytes, CQ_POOL_MAX + 1, 1, CQ_BW_PINNED) == 0.0,
          "too many threads");
}

static void test_probe_read(cq_pool *pool, const uint8_t *buf, size_t bytes) {
    cq_bw_probe p = {0};
    for (int r = 0; r < 3; r++)
        CHECK(cq_bw_probe_read(&p, pool, buf, bytes, 2, 1) == CQ_OK, "reading %d", r);
    CHECK(p.n == 3, "3 readings: %u", p.n);
    int bad = 0;
    for (uint32_t r = 0; r < p.n; r++)
        for (int k = 0; k < CQ_BW_N_KERNELS; k++) bad += !(isfinite(p.gbs[r][k]) && p.gbs[r][k] > 0);
    CHECK(bad == 0, "%d figures not finite and positive", bad);
    CHECK(p.pinned <= 2, "pinned %u of 2 threads", p.pinned);
    cq_bw_summary s;
    cq_bw_probe_summarize(&p, &s);
    CHECK(s.n == 3 && s.median > 0 && s.min <= s.median && s.median <= s.max,
          "summary %u: %g <= %g <= %g", s.n, s.min, s.median, s.max);
    CHECK(s.unstable == (s.spread > CQ_BW_UNSTABLE_SPREAD), "unstable flag follows the spread");
    for (int k = 0; k < CQ_BW_N_KERNELS; k++)
        CHECK(s.kernel_median[k] > 0 && s.kernel_median[k] <= s.max, "kernel %d median %g", k,
              s.kernel_median[k]);
    /* a bad reading leaves the probe as it was */
    CHECK(cq_bw_probe_read(&p, pool, NULL, bytes, 2, 1) == CQ_ERR_ARG && p.n == 3, "NULL buffer");
    CHECK(cq_bw_probe_read(NULL, pool, buf, bytes, 2, 1) == CQ_ERR_NULL, "NULL probe");
    p.n = CQ_BW_MAX_READINGS;
    CHECK(cq_bw_probe_read(&p, pool, buf, bytes, 1, 1) == CQ_ERR_RANGE, "full probe");
}

/* a probe of given readings (kernels: sum, nt, pinned) */
static cq_bw_summary summarize(const double (*g)[CQ_BW_N_KERNELS], uint32_t n) {
    cq_bw_probe p = {0};
    p.n = n;
    memcpy(p.gbs, g, (size_t)n * sizeof *g);
    cq_bw_summary s;
    cq_bw_probe_summarize(&p, &s);
    return s;
}

static void test_summary_rule(void) {
    /* best kernels 12, 10, 11 (each from a different kernel): median 11, spread 2/11 */
    const double a[3][3] = {{9, 12, 8}, {10, 7, 6}, {5, 6, 11}};
    cq_bw_summary s = summarize(a, 3);
    CHECK(s.median == 11 && s.min == 10 && s.max == 12, "best per reading: %g %g %g", s.min,
          s.median, s.max);
    CHECK(fabs(s.spread - 2.0 / 11) < 1e-15 && !s.unstable, "spread %g stable", s.spread);
    CHECK(s.kernel_median[0] == 9 && s.kernel_median[1] == 7 && s.kernel_median[2] == 8,
          "kernel medians %g %g %g", s.kernel_median[0], s.kernel_median[1], s.kernel_median[2]);
    /* 10, 10, 12.5: spread 25% > 20%: unstable */
    const double b[3][3] = {{10, 1, 1}, {1, 10, 1}, {1, 1, 12.5}};
    s = summarize(b, 3);
    CHECK(s.median == 10 && fabs(s.spread - 0.25) < 1e-15 && s.unstable, "spread %g unstable",
          s.spread);
    /* exactly 20% is not wider than 20%; an even count takes the mean of the middle two */
    const double c[4][3] = {{10, 0, 0}, {12, 0, 0}, {10, 0, 0}, {10, 0, 0}};
    s = summarize(c, 4);
    CHECK(s.median == 10 && fabs(s.spread - 0.2) < 1e-15 && !s.unstable, "spread %g at the edge",
          s.spread);
    const double d[4][3] = {{10, 0, 0}, {13, 0, 0}, {11, 0, 0}, {12, 0, 0}};
    s = summarize(d, 4);
    CHECK(s.median == 11.5 && s.min == 10 && s.max == 13 && s.unstable, "even: %g, spread %g",
          s.median, s.spread);
    /* one reading: spread 0; none: unstable zeros */
    s = summarize(d, 1);
    CHECK(s.n == 1 && s.median == 10 && s.spread == 0 && !s.unstable, "one reading");
    s = summarize(d, 0);
    CHECK(s.n == 0 && s.median == 0 && s.unstable, "no reading is unstable");
    cq_bw_probe_summarize(NULL, &s);
    CHECK(s.unstable && s.median == 0, "NULL probe");
}

static void test_nt_checksum(const uint8_t *buf, size_t bytes) {
    const char *names[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        const cq_kernels *k = cq_kernels_by_name(names[i]);
        if (!k) continue;
        for (size_t n = 128; n <= bytes; n *= 8)
            CHECK(k->read_sum_nt(buf, n) == k->read_sum(buf, n), "%s: %zu bytes", names[i], n);
    }
}

int main(void) {
    const size_t bytes = 8 * MIB;
    uint8_t *buf = aligned_alloc(64, bytes);
    cq_pool *pool = NULL;
    cq_pool_opts po;
    cq_pool_opts_default(&po, 2);
    CHECK(buf && cq_pool_create(&po, &pool) == CQ_OK, "buffer and pool");
    if (!buf || !pool) return cq_test_done("test_cache_bandwidth");
    for (size_t i = 0; i < bytes; i++) buf[i] = (uint8_t)(i * 131 + (i >> 12));
    test_kernels_run(pool, buf, bytes);
    test_probe_read(pool, buf, bytes);
    test_summary_rule();
    test_nt_checksum(buf, bytes);
    cq_pool_free(pool);
    free(buf);
    return cq_test_done("test_cache_bandwidth");
}
