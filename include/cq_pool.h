/* SPDX-License-Identifier: MIT */
/*
 * cq_pool.h - the library's one thread-pool type: a set of persistent worker threads
 * that run a job of n tasks (handed out through an atomic counter, the calling thread
 * working too). The cache's attention and read-bandwidth measurement and the model
 * runtime's matrix products all run on it, so a session that owns one pool of N threads
 * runs N threads, not one set per component.
 *
 * Ownership: whoever owns the work creates the pool (cq_pool_create) and chooses its
 * thread count, its spin policy and when it shuts down (cq_pool_free joins every worker).
 * A caller that passes no pool gets the process's default one (cq_pool_default): started
 * on first use, it grows to the largest thread count asked of it and lives until exit.
 *
 * Jobs: one at a time per pool. A call that finds the pool busy (another thread's job, or
 * a task of this pool calling it again) runs its tasks inline on the calling thread, so
 * concurrent callers never wait for each other and nothing deadlocks. Which thread runs
 * a task never changes a result the library computes.
 *
 * Tier: STABLE CORE (docs/EMBEDDING.md): what a runtime links beside the cache.
 */
#ifndef CQ_POOL_H
#define CQ_POOL_H

#include "cq_api.h"
#include <stdint.h>

#include "cq_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most threads a pool runs a job on, the caller included: worker indices stay below it. */
#define CQ_POOL_MAX 64u
/* The default spin: an idle worker polls this long for the next job before it sleeps, so
 * jobs submitted back to back (a decode step's layers) start on every core at once
 * without a futex wake-up each (measured: FAST CQ-4 decode at 16K tokens, 2 threads,
 * 5-8% slower without the poll in a VM). */
#define CQ_POOL_SPIN_DEFAULT_US 100u

typedef struct cq_pool cq_pool;

typedef struct cq_pool_opts {
    uint32_t n_threads; /* threads of a job, the caller included (0 = 1; at most CQ_POOL_MAX);
                           the n_threads - 1 workers start in cq_pool_create */
    uint32_t spin_us;   /* idle poll before a worker sleeps (0 = sleep at once) */
} cq_pool_opts;

/* n_threads as given, the default spin. */
CQ_API void cq_pool_opts_default(cq_pool_opts *o, uint32_t n_threads);
/* CQ_ERR_NULL, CQ_ERR_ARG (n_threads > CQ_POOL_MAX), or CQ_ERR_NOMEM (memory, or a thread
 * the system refuses: nothing is left running then). */
CQ_API cq_status cq_pool_create(const cq_pool_opts *o, cq_pool **out);
/* Stop and join every worker; accepts NULL. Not while a job of the pool is running. */
CQ_API void cq_pool_free(cq_pool *p);
/* Threads a job can use now, the caller included (1 for NULL). */
CQ_API uint32_t cq_pool_threads(const cq_pool *p);
/* The process's default pool (grows on demand, the default spin, never freed). */
CQ_API cq_pool *cq_pool_default(void);

/* task in [0, n_tasks); worker in [0, threads taking part) identifies per-thread scratch */
typedef void (*cq_task_fn)(void *ctx, uint32_t task, uint32_t worker);

/* Run n_tasks tasks on up to n_threads threads of p (0 = all of them; the caller
 * included); returns the number of threads that took part. p NULL runs inline. */
CQ_API uint32_t cq_pool_run(cq_pool *p, uint32_t n_threads, uint32_t n_tasks, cq_task_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif
