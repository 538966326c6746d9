/* SPDX-License-Identifier: MIT */
/*
 * pool.c - cq_pool (include/cq_pool.h): persistent pthread workers running one job at a
 * time. A job is n tasks handed out through an atomic counter; the calling thread works
 * too (worker 0). Workers of a pool made by cq_pool_create start with it and are joined
 * by cq_pool_free; the default pool starts them on first need. A caller that finds the
 * pool busy runs its own tasks inline instead of waiting. An idle worker polls for the
 * next job for the pool's spin time before it sleeps on the condition variable.
 * Not here: what the tasks do (attend.c, bandwidth.c, the model's forward.c).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "cq_pool.h"

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

typedef struct worker_slot {
    struct cq_pool *p;
    uint32_t id;        /* 1.. (0 is the caller) */
    uint64_t start_gen; /* the generation when it was started: the job published right
                           after its start must not be skipped */
    pthread_t th;
} worker_slot;

struct cq_pool {
    pthread_mutex_t submit; /* held for the duration of a job */
    pthread_mutex_t m;
    pthread_cond_t wake, done;
    uint32_t cap;       /* most threads of a job, the caller included */
    int grow;           /* start workers on demand (the default pool) */
    int64_t spin_ns;
    uint32_t n_workers; /* started (written under m) */
    _Atomic int quit;
    _Atomic uint64_t gen; /* bumped (under m) for every job; read without m while spinning */
    cq_task_fn fn;
    void *ctx;
    uint32_t n_tasks, want, active;
    atomic_uint next;
    worker_slot slot[CQ_POOL_MAX];
};

static void run_tasks(cq_pool *p, cq_task_fn fn, void *ctx, uint32_t n_tasks, uint32_t worker) {
    for (;;) {
        uint32_t t = atomic_fetch_add(&p->next, 1u);
        if (t >= n_tasks) break;
        fn(ctx, t, worker);
    }
}

static void *worker_main(void *arg) {
    worker_slot *w = arg;
    cq_pool *p = w->p;
    pthread_mutex_lock(&p->m);
    uint64_t seen = w->start_gen;
    for (;;) {
        if (p->gen == seen && !p->quit && p->spin_ns > 0) { /* poll before sleeping */
            pthread_mutex_unlock(&p->m);
            const int64_t until = now_ns() + p->spin_ns;
            for (uint32_t i = 1; atomic_load_explicit(&p->gen, memory_order_relaxed) == seen &&
                                 !atomic_load_explicit(&p->quit, memory_order_relaxed);
                 i++) {
                cpu_relax();
                if (i % 64 == 0 && now_ns() > until) break;
            }
            pthread_mutex_lock(&p->m);
        }
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->wake, &p->m);
        if (p->quit) break;
        seen = p->gen;
        if (w->id >= p->want) continue;
        cq_task_fn fn = p->fn;
        void *ctx = p->ctx;
        uint32_t n = p->n_tasks;
        pthread_mutex_unlock(&p->m);
        run_tasks(p, fn, ctx, n, w->id);
        pthread_mutex_lock(&p->m);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->m);
    return NULL;
}

/* Start workers until n_threads - 1 run (under m); returns 0 if the system refused one. */
static int start_workers(cq_pool *p, uint32_t n_threads) {
    while (p->n_workers + 1 < n_threads) {
        worker_slot *w = &p->slot[p->n_workers + 1];
        w->p = p;
        w->id = p->n_workers + 1;
        w->start_gen = p->gen;
        if (pthread_create(&w->th, NULL, worker_main, w) != 0) return 0;
        p->n_workers++;
    }
    return 1;
}

void cq_pool_opts_default(cq_pool_opts *o, uint32_t n_threads) {
    if (!o) return;
    o->n_threads = n_threads;
    o->spin_us = CQ_POOL_SPIN_DEFAULT_US;
}

static cq_pool *pool_new(uint32_t cap, uint32_t spin_us, int grow) {
    cq_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->submit, NULL);
    pthread_mutex_init(&p->m, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->cap = cap;
    p->grow = grow;
    p->spin_ns = (int64_t)spin_us * 1000;
    atomic_init(&p->quit, 0);
    atomic_init(&p->gen, 0);
    atomic_init(&p->next, 0u);
    return p;
}

cq_status cq_pool_create(const cq_pool_opts *o, cq_pool **out) {
    if (!o || !out) return CQ_ERR_NULL;
    *out = NULL;
    if (o->n_threads > CQ_POOL_MAX) return CQ_ERR_ARG;
    cq_pool *p = pool_new(o->n_threads ? o->n_threads : 1, o->spin_us, 0);
    if (!p) return CQ_ERR_NOMEM;
    pthread_mutex_lock(&p->m);
    int ok = start_workers(p, p->cap);
    pthread_mutex_unlock(&p->m);
    if (!ok) {
        cq_pool_free(p);
        return CQ_ERR_NOMEM;
    }
    *out = p;
    return CQ_OK;
}

void cq_pool_free(cq_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->submit);
    pthread_mutex_lock(&p->m);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->wake);
    const uint32_t n = p->n_workers;
    pthread_mutex_unlock(&p->m);
    for (uint32_t i = 1; i <= n; i++) pthread_join(p->slot[i].th, NULL);
    pthread_mutex_unlock(&p->submit);
    pthread_mutex_destroy(&p->submit);
    pthread_mutex_destroy(&p->m);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

uint32_t cq_pool_threads(const cq_pool *p) {
    if (!p) return 1;
    pthread_mutex_lock((pthread_mutex_t *)&p->m);
    uint32_t n = p->n_workers + 1;
    pthread_mutex_unlock((pthread_mutex_t *)&p->m);
    return n;
}

static cq_pool *default_pool;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static void default_init(void) { default_pool = pool_new(CQ_POOL_MAX, CQ_POOL_SPIN_DEFAULT_US, 1); }

cq_pool *cq_pool_default(void) {
    pthread_once(&default_once, default_init);
    return default_pool; /* NULL only when out of memory: callers then run inline */
}

uint32_t cq_pool_run(cq_pool *p, uint32_t n_threads, uint32_t n_tasks, cq_task_fn fn, void *ctx) {
    if (n_tasks == 0) return 0;
    if (p && (n_threads == 0 || n_threads > p->cap)) n_threads = p->cap;
    if (n_threads > n_tasks) n_threads = n_tasks;
    if (!p || n_threads <= 1 || pthread_mutex_trylock(&p->submit) != 0) {
        for (uint32_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return 1;
    }
    pthread_mutex_lock(&p->m);
    if (p->grow) (void)start_workers(p, n_threads); /* on failure: the threads that exist */
    if (n_threads > p->n_workers + 1) n_threads = p->n_workers + 1;
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    p->want = n_threads; /* workers 1..n_threads-1 join the caller */
    p->active = n_threads - 1;
    atomic_store(&p->next, 0u);
    p->gen++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->m);
    run_tasks(p, fn, ctx, n_tasks, 0);
    pthread_mutex_lock(&p->m);
    while (p->active) pthread_cond_wait(&p->done, &p->m);
    pthread_mutex_unlock(&p->m);
    pthread_mutex_unlock(&p->submit);
    return n_threads;
}
