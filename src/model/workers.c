/* SPDX-License-Identifier: MIT */
/*
 * workers.c - a small pthread pool for the model's matrix products and
 * attention: persistent workers, one job at a time, tasks handed out through
 * an atomic counter, the calling thread working alongside. Deliberately
 * minimal (no queue, no futures): the forward pass is a sequence of parallel
 * loops. Results never depend on which thread ran a task.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "model_internal.h"

struct cq_workers {
    uint32_t n_threads; /* including the caller */
    pthread_t *workers; /* [n_threads - 1] */
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    uint64_t generation; /* bumped for every job */
    int quit;
    /* the current job */
    cq_workers_fn fn;
    void *ctx;
    uint32_t n_tasks;
    atomic_uint next;
    uint32_t running; /* workers still inside the job */
};

typedef struct worker_arg {
    cq_workers *p;
    uint32_t index;
} worker_arg;

static void work(cq_workers *p, uint32_t thread) {
    for (;;) {
        uint32_t t = atomic_fetch_add(&p->next, 1u);
        if (t >= p->n_tasks) break;
        p->fn(p->ctx, t, thread);
    }
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    cq_workers *p = wa->p;
    uint32_t index = wa->index;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->cv_start, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        work(p, index);
        pthread_mutex_lock(&p->mu);
        if (--p->running == 0) pthread_cond_signal(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

cq_status cq_workers_create(uint32_t n_threads, cq_workers **out) {
    if (!out) return CQ_ERR_NULL;
    *out = NULL;
    if (n_threads == 0) n_threads = 1;
    if (n_threads > 256) n_threads = 256;
    cq_workers *p = calloc(1, sizeof *p);
    if (!p) return CQ_ERR_NOMEM;
    p->n_threads = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_start, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    atomic_init(&p->next, 0u);
    if (n_threads > 1) {
        p->workers = calloc(n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            cq_workers_free(p);
            return CQ_ERR_NOMEM;
        }
        for (uint32_t i = 0; i + 1 < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) break;
            wa->p = p;
            wa->index = i + 1;
            if (pthread_create(&p->workers[i], NULL, worker_main, wa) != 0) {
                free(wa);
                break; /* fewer threads is still correct */
            }
            p->n_threads++;
        }
    }
    *out = p;
    return CQ_OK;
}

uint32_t cq_workers_threads(const cq_workers *p) { return p ? p->n_threads : 1; }

void cq_workers_run(cq_workers *p, uint32_t n_tasks, cq_workers_fn fn, void *ctx) {
    if (n_tasks == 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (uint32_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0u);
    p->running = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    work(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->running) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void cq_workers_free(cq_workers *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);
    for (uint32_t i = 0; i + 1 < p->n_threads; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_start);
    pthread_cond_destroy(&p->cv_done);
    free(p);
}
