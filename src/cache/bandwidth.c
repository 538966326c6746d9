/* SPDX-License-Identifier: MIT */
/*
 * bandwidth.c - the machine's streaming read bandwidth, measured the way the
 * attention reads the cache: the same thread pool, the same kernel table, a
 * buffer far larger than the last-level cache split evenly across threads.
 * Used by `cq bench` to express attention throughput as a fraction of it.
 */
#include <stdatomic.h>
#include <time.h>

#include "cache_internal.h"

typedef struct bw_job {
    const uint8_t *buf;
    size_t per; /* bytes per task, multiple of 128 */
    const cq_kernels *k;
    _Atomic uint64_t sink;
} bw_job;

static void bw_task(void *ctx, uint32_t task, uint32_t worker) {
    (void)worker;
    bw_job *j = ctx;
    atomic_fetch_xor(&j->sink, j->k->read_sum(j->buf + (size_t)task * j->per, j->per));
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cq_read_bandwidth(cq_pool *pool, const void *buf, size_t bytes, uint32_t n_threads,
                         uint32_t reps) {
    if (!pool) pool = cq_pool_default();
    if (!buf || ((uintptr_t)buf & 63) || n_threads == 0) return 0.0;
    bw_job j = {buf, bytes / n_threads / 128 * 128, cq_kernels_get(), 0};
    if (!j.per) return 0.0;
    double best = 0.0;
    for (uint32_t r = 0; r < (reps ? reps : 1); r++) {
        double t0 = now_s();
        cq_pool_run(pool, n_threads, n_threads, bw_task, &j);
        double dt = now_s() - t0, gbs = (double)j.per * n_threads / dt * 1e-9;
        if (gbs > best) best = gbs;
    }
    return best;
}
