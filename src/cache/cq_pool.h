/* SPDX-License-Identifier: MIT */
/*
 * cq_pool.h - the cache's persistent thread pool (pool.c), internal.
 */
#ifndef CQ_POOL_H
#define CQ_POOL_H

#include <stdint.h>

/* Most threads a job uses (the caller included): worker indices stay below it. */
#define CQ_POOL_MAX 64u

/* task in [0, n_tasks); worker in [0, threads used) identifies per-thread scratch */
typedef void (*cq_task_fn)(void *ctx, uint32_t task, uint32_t worker);

/* Run n_tasks tasks on up to n_threads threads (the caller included); returns
 * the number of threads that took part. Tasks must not call cq_pool_run. */
uint32_t cq_pool_run(uint32_t n_threads, uint32_t n_tasks, cq_task_fn fn, void *ctx);

#endif
