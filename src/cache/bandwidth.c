/* SPDX-License-Identifier: MIT */
/*
 * bandwidth.c - the machine's streaming read bandwidth, measured the way the
 * attention reads the cache (the same thread pool, the same kernel table, a
 * buffer far larger than the last-level cache split evenly across threads),
 * and the probe built on it: several read kernels (plain loads, non-temporal
 * loads, threads pinned to different CPUs), taken repeatedly and summarized as
 * a median and a spread. Used by `cq bench` to express attention throughput as
 * a fraction of it. Not here: the attention itself (attend.c).
 */
#define _GNU_SOURCE /* pthread_setaffinity_np, CPU_SET (Linux); before any header */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "cache_internal.h"

typedef struct bw_job {
    const uint8_t *buf;
    size_t per; /* bytes per task, multiple of 128 */
    const cq_kernels *k;
    int nt;
    _Atomic uint64_t sink;
} bw_job;

static void bw_task(void *ctx, uint32_t task, uint32_t worker) {
    (void)worker;
    bw_job *j = ctx;
    const uint8_t *p = j->buf + (size_t)task * j->per;
    atomic_fetch_xor(&j->sink, j->nt ? j->k->read_sum_nt(p, j->per) : j->k->read_sum(p, j->per));
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------ pinned threads of the probe's own */

typedef struct pin_job {
    bw_job *bw;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 while threads are being created, 1 run, 2 abandon */
    pthread_barrier_t start, end; /* initialized before state becomes 1 */
    uint32_t reps;
    _Atomic uint32_t pinned;
    double *t; /* [n][2]: each thread's start and end of the current rep */
} pin_job;

typedef struct pin_arg {
    pin_job *pj;
    uint32_t task;
    int cpu; /* -1: leave the thread where the system puts it */
} pin_arg;

static void *pin_main(void *arg) {
    pin_arg *a = arg;
    pin_job *pj = a->pj;
#ifdef __linux__
    if (a->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(a->cpu, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0)
            atomic_fetch_add(&pj->pinned, 1);
    }
#endif
    pthread_mutex_lock(&pj->mu);
    while (pj->state == 0) pthread_cond_wait(&pj->cv, &pj->mu);
    int run = pj->state == 1;
    pthread_mutex_unlock(&pj->mu);
    for (uint32_t r = 0; run && r < pj->reps; r++) {
        pthread_barrier_wait(&pj->start);
        pj->t[2 * a->task] = now_s();
        bw_task(pj->bw, a->task, 0);
        pj->t[2 * a->task + 1] = now_s();
        pthread_barrier_wait(&pj->end);
    }
    return NULL;
}

/* The CPUs of the process's affinity set, n of them spread apart (every ncpu / n-th);
 * cpu[i] = -1 when there are fewer CPUs than threads or the set is unknown. */
static void pick_cpus(int *cpu, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) cpu[i] = -1;
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set)) return;
    int have[CPU_SETSIZE], m = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) have[m++] = c;
    if ((uint32_t)m < n) return;
    for (uint32_t i = 0; i < n; i++) cpu[i] = have[(size_t)i * (size_t)m / n];
#endif
}

/* Best-of-reps GB/s of n threads created for the purpose, each pinned to its own CPU
 * (joined before returning); *pinned = the threads that got their CPU. 0 when a thread or
 * a barrier cannot be made (the threads already started are released and joined). */
static double pinned_read(bw_job *j, uint32_t n, uint32_t reps, uint32_t *pinned) {
    pin_job pj = {.bw = j, .reps = reps};
    pin_arg *args = calloc(n, sizeof *args);
    pthread_t *th = calloc(n, sizeof *th);
    int *cpu = calloc(n, sizeof *cpu);
    double *t = calloc(2 * (size_t)n, sizeof *t), best = 0.0;
    uint32_t started = 0;
    *pinned = 0;
    pj.t = t;
    if (!args || !th || !cpu || !t || pthread_mutex_init(&pj.mu, NULL)) goto out;
    if (pthread_cond_init(&pj.cv, NULL)) {
        pthread_mutex_destroy(&pj.mu);
        goto out;
    }
    pick_cpus(cpu, n);
    for (; started < n; started++) {
        args[started] = (pin_arg){&pj, started, cpu[started]};
        if (pthread_create(&th[started], NULL, pin_main, &args[started])) break;
    }
    int bars = 0;
    if (started == n && !pthread_barrier_init(&pj.start, NULL, n + 1)) {
        bars = 1;
        if (!pthread_barrier_init(&pj.end, NULL, n + 1)) bars = 2;
    }
    pthread_mutex_lock(&pj.mu);
    pj.state = bars == 2 ? 1 : 2;
    pthread_cond_broadcast(&pj.cv);
    pthread_mutex_unlock(&pj.mu);
    /* the threads time themselves (first start to last end): this thread may be
     * descheduled between the barriers on a busy machine */
    for (uint32_t r = 0; bars == 2 && r < reps; r++) {
        pthread_barrier_wait(&pj.start);
        pthread_barrier_wait(&pj.end);
        double t0 = t[0], t1 = t[1];
        for (uint32_t i = 1; i < n; i++) {
            if (t[2 * i] < t0) t0 = t[2 * i];
            if (t[2 * i + 1] > t1) t1 = t[2 * i + 1];
        }
        double gbs = (double)j->per * n / (t1 - t0) * 1e-9;
        if (gbs > best) best = gbs;
    }
    for (uint32_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    *pinned = atomic_load(&pj.pinned);
    if (bars >= 1) pthread_barrier_destroy(&pj.start);
    if (bars == 2) pthread_barrier_destroy(&pj.end);
    pthread_cond_destroy(&pj.cv);
    pthread_mutex_destroy(&pj.mu);
out:
    free(args);
    free(th);
    free(cpu);
    free(t);
    return best;
}

/* One kernel, best of reps; *pinned = the threads the pinned kernel got CPUs for. */
static double read_kernel(cq_pool *pool, const void *buf, size_t bytes, uint32_t n_threads,
                          uint32_t reps, cq_bw_kernel kernel, uint32_t *pinned) {
    *pinned = 0;
    if (!buf || ((uintptr_t)buf & 63) || n_threads == 0 || n_threads > CQ_POOL_MAX ||
        (unsigned)kernel >= CQ_BW_N_KERNELS)
        return 0.0;
    bw_job j = {buf, bytes / n_threads / 128 * 128, cq_kernels_get(), kernel == CQ_BW_NT, 0};
    if (!j.per) return 0.0;
    if (!reps) reps = 1;
    if (kernel == CQ_BW_PINNED) return pinned_read(&j, n_threads, reps, pinned);
    if (!pool) pool = cq_pool_default();
    double best = 0.0;
    for (uint32_t r = 0; r < reps; r++) {
        double t0 = now_s();
        cq_pool_run(pool, n_threads, n_threads, bw_task, &j);
        double dt = now_s() - t0, gbs = (double)j.per * n_threads / dt * 1e-9;
        if (gbs > best) best = gbs;
    }
    return best;
}

double cq_read_bandwidth_kernel(cq_pool *pool, const void *buf, size_t bytes, uint32_t n_threads,
                                uint32_t reps, cq_bw_kernel kernel) {
    uint32_t pinned;
    return read_kernel(pool, buf, bytes, n_threads, reps, kernel, &pinned);
}

double cq_read_bandwidth(cq_pool *pool, const void *buf, size_t bytes, uint32_t n_threads,
                         uint32_t reps) {
    return cq_read_bandwidth_kernel(pool, buf, bytes, n_threads, reps, CQ_BW_SUM);
}

cq_status cq_bw_probe_read(cq_bw_probe *p, cq_pool *pool, const void *buf, size_t bytes,
                           uint32_t n_threads, uint32_t reps) {
    if (!p) return CQ_ERR_NULL;
    if (p->n >= CQ_BW_MAX_READINGS) return CQ_ERR_RANGE;
    double g[CQ_BW_N_KERNELS];
    uint32_t pinned = 0, pk;
    for (int k = 0; k < CQ_BW_N_KERNELS; k++) {
        g[k] = read_kernel(pool, buf, bytes, n_threads, reps, (cq_bw_kernel)k, &pk);
        if (k == CQ_BW_PINNED) pinned = pk;
        if (!(g[k] > 0.0) || !isfinite(g[k])) return CQ_ERR_ARG;
    }
    for (int k = 0; k < CQ_BW_N_KERNELS; k++) p->gbs[p->n][k] = g[k];
    p->pinned = pinned;
    p->n++;
    return CQ_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, uint32_t n) {
    qsort(x, n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

void cq_bw_probe_summarize(const cq_bw_probe *p, cq_bw_summary *s) {
    if (!s) return;
    *s = (cq_bw_summary){0};
    s->unstable = 1;
    if (!p || p->n == 0 || p->n > CQ_BW_MAX_READINGS) return;
    double best[CQ_BW_MAX_READINGS], col[CQ_BW_MAX_READINGS];
    for (uint32_t r = 0; r < p->n; r++) {
        best[r] = p->gbs[r][0];
        for (int k = 1; k < CQ_BW_N_KERNELS; k++)
            if (p->gbs[r][k] > best[r]) best[r] = p->gbs[r][k];
    }
    for (int k = 0; k < CQ_BW_N_KERNELS; k++) {
        for (uint32_t r = 0; r < p->n; r++) col[r] = p->gbs[r][k];
        s->kernel_median[k] = median(col, p->n);
    }
    s->n = p->n;
    s->median = median(best, p->n); /* sorts best */
    s->min = best[0];
    s->max = best[p->n - 1];
    s->spread = s->median > 0.0 ? (s->max - s->min) / s->median : 0.0;
    s->unstable = !(s->median > 0.0) || s->spread > CQ_BW_UNSTABLE_SPREAD;
}
