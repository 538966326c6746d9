/* SPDX-License-Identifier: MIT */
/*
 * pool.c - a small persistent pthread pool shared by every cache in the
 * process. A job is n tasks handed out through an atomic counter; the calling
 * thread works too (worker 0). Workers are created on first need and reused.
 * One job at a time: a caller that finds the pool busy (another thread is
 * attending concurrently) runs its own tasks inline instead of waiting, so
 * concurrent read-only callers never block each other. An idle worker polls for the next
 * job for SPIN_NS before it sleeps, so jobs submitted back to back (a layer each) start on
 * every core at once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "cq_pool.h"

#define POOL_MAX CQ_POOL_MAX
/* How long an idle worker polls for the next job before it sleeps on the condition variable.
 * Decode submits one job per layer back to back; a sleeping worker costs a futex wake-up per
 * job, which in a VM can take tens of microseconds (measured: FAST CQ-4 decode at 16K, 2
 * threads, 5-8% slower without the poll). */
#ifndef SPIN_NS
#define SPIN_NS 100000
#endif
static inline void cpu_relax(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __asm__ volatile("pause");
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct {
    pthread_mutex_t submit; /* held for the duration of a job */
    pthread_mutex_t m;
    pthread_cond_t wake, done;
    uint32_t n_workers;
    _Atomic uint64_t gen; /* written under m; read without it while spinning */
    cq_task_fn fn;
    void *ctx;
    uint32_t n_tasks, want, active;
    atomic_uint next;
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
       PTHREAD_COND_INITIALIZER, 0, 0, NULL, NULL, 0, 0, 0, 0};

static uint64_t start_gen[POOL_MAX + 1];

static void run_tasks(cq_task_fn fn, void *ctx, uint32_t n_tasks, uint32_t worker) {
    for (;;) {
        uint32_t t = atomic_fetch_add(&P.next, 1u);
        if (t >= n_tasks) break;
        fn(ctx, t, worker);
    }
}

static void *worker_main(void *arg) {
    uint32_t id = (uint32_t)(uintptr_t)arg; /* 1.. */
    pthread_mutex_lock(&P.m);
    /* the generation current when this worker was created: the job being
     * published right after its creation must not be skipped */
    uint64_t seen = start_gen[id];
    for (;;) {
        if (P.gen == seen) { /* decode submits a job per layer back to back: spin a little
                                before sleeping, so the next one starts without a wake-up */
            pthread_mutex_unlock(&P.m);
            const int64_t until = now_ns() + SPIN_NS;
            for (uint32_t i = 1; atomic_load_explicit(&P.gen, memory_order_relaxed) == seen; i++) {
                cpu_relax();
                if (i % 64 == 0 && now_ns() > until) break;
            }
            pthread_mutex_lock(&P.m);
        }
        while (P.gen == seen) pthread_cond_wait(&P.wake, &P.m);
        seen = P.gen;
        if (id >= P.want) continue;
        cq_task_fn fn = P.fn;
        void *ctx = P.ctx;
        uint32_t n = P.n_tasks;
        pthread_mutex_unlock(&P.m);
        run_tasks(fn, ctx, n, id);
        pthread_mutex_lock(&P.m);
        if (--P.active == 0) pthread_cond_signal(&P.done);
    }
    return NULL;
}

uint32_t cq_pool_run(uint32_t n_threads, uint32_t n_tasks, cq_task_fn fn, void *ctx) {
    if (n_threads > POOL_MAX) n_threads = POOL_MAX;
    if (n_threads > n_tasks) n_threads = n_tasks;
    if (n_threads <= 1 || pthread_mutex_trylock(&P.submit) != 0) {
        for (uint32_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return 1;
    }
    pthread_mutex_lock(&P.m);
    while (P.n_workers + 1 < n_threads) { /* grow; on failure use what exists */
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        start_gen[P.n_workers + 1] = P.gen;
        int rc = pthread_create(&th, &at, worker_main, (void *)(uintptr_t)(P.n_workers + 1));
        pthread_attr_destroy(&at);
        if (rc) break;
        P.n_workers++;
    }
    if (n_threads > P.n_workers + 1) n_threads = P.n_workers + 1;
    P.fn = fn;
    P.ctx = ctx;
    P.n_tasks = n_tasks;
    P.want = n_threads; /* workers 1..n_threads-1 join the caller */
    P.active = n_threads - 1;
    atomic_store(&P.next, 0u);
    P.gen++;
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.m);
    run_tasks(fn, ctx, n_tasks, 0);
    pthread_mutex_lock(&P.m);
    while (P.active) pthread_cond_wait(&P.done, &P.m);
    pthread_mutex_unlock(&P.m);
    pthread_mutex_unlock(&P.submit);
    return n_threads;
}
