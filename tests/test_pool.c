/* SPDX-License-Identifier: MIT */
/*
 * test_pool.c - the one thread-pool type (include/cq_pool.h) and who runs threads:
 * a pool runs exactly the threads it was made with and joins them when freed; every
 * task runs once; a nested call runs inline; bad arguments are refused. A model
 * session asked for 2 threads runs 2 threads in all during its decode steps (matrix
 * products and the cache's attention share the session's pool), counted as the
 * process's threads (/proc/self/task) from inside the forward pass, and its logits equal
 * a 1-thread session's bit for bit. Attention with no pool uses the default one.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_model.h"
#include "cq_pool.h"
#include "cq_test.h"

/* Threads of the process other than the ones the library starts: the main thread, and a
 * sanitizer's helper thread (ThreadSanitizer starts one with the first thread), measured
 * in main() after a thread was started and joined once. */
static int base = -1;

static int process_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ------------------------------------------------------------ the pool itself */

#define NT 200u
typedef struct job {
    atomic_uint ran[NT];
    atomic_uint bad_worker;
    pthread_t who[CQ_POOL_MAX];
    atomic_uint seen[CQ_POOL_MAX];
    cq_pool *p;
    atomic_uint nested_used, nested_ran;
} job;

static void nested_task(void *ctx, uint32_t task, uint32_t worker) {
    (void)task;
    (void)worker;
    atomic_fetch_add((atomic_uint *)ctx, 1u);
}

static void task(void *ctx, uint32_t t, uint32_t worker) {
    job *j = ctx;
    atomic_fetch_add(&j->ran[t], 1u);
    if (worker >= CQ_POOL_MAX) {
        atomic_fetch_add(&j->bad_worker, 1u);
        return;
    }
    if (atomic_exchange(&j->seen[worker], 1u) == 0) j->who[worker] = pthread_self();
    if (t == 7) { /* a task calling its own pool during a job: runs inline, on this thread */
        atomic_uint cnt = 0;
        atomic_store(&j->nested_used, cq_pool_run(j->p, 0, 5, nested_task, &cnt));
        atomic_store(&j->nested_ran, atomic_load(&cnt));
    }
}

static void test_pool(void) {
    cq_pool *p = NULL;
    cq_pool_opts o;
    CHECK(cq_pool_create(NULL, &p) == CQ_ERR_NULL && !p, "NULL opts");
    cq_pool_opts_default(&o, CQ_POOL_MAX + 1);
    CHECK(cq_pool_create(&o, &p) == CQ_ERR_ARG && !p, "too many threads");
    CHECK(cq_pool_threads(NULL) == 1, "a NULL pool is the caller");
    cq_pool_free(NULL);
    for (uint32_t spin = 0; spin <= CQ_POOL_SPIN_DEFAULT_US; spin += CQ_POOL_SPIN_DEFAULT_US) {
        cq_pool_opts_default(&o, 3);
        o.spin_us = spin;
        CHECK(cq_pool_create(&o, &p) == CQ_OK && p, "create 3 threads");
        if (!p) continue;
        CHECK(cq_pool_threads(p) == 3, "pool threads %u", cq_pool_threads(p));
        CHECK(process_threads() == base + 2, "a 3-thread pool: %d threads", process_threads());
        for (uint32_t want = 0; want <= 4; want++) { /* 0 = all of them; 4 caps at 3 */
            job *j = calloc(1, sizeof *j);
            j->p = p;
            uint32_t used = cq_pool_run(p, want, NT, task, j);
            uint32_t once = 0, distinct = 0;
            for (uint32_t t = 0; t < NT; t++) once += atomic_load(&j->ran[t]) == 1;
            for (uint32_t w = 0; w < CQ_POOL_MAX; w++) {
                if (!atomic_load(&j->seen[w])) continue;
                distinct++;
                CHECK(w < used, "worker index %u of a job on %u threads", w, used);
                for (uint32_t v = 0; v < w; v++)
                    if (atomic_load(&j->seen[v]))
                        CHECK(!pthread_equal(j->who[v], j->who[w]), "workers %u and %u share a thread", v, w);
            }
            const uint32_t expect = want == 0 || want > 3 ? 3 : want;
            CHECK(used == expect, "spin %u, %u asked: %u threads took part", spin, want, used);
            CHECK(once == NT && atomic_load(&j->bad_worker) == 0, "every task once: %u of %u", once, NT);
            CHECK(distinct >= 1 && distinct <= used, "%u distinct workers of %u", distinct, used);
            /* (a job run inline leaves the pool free: a nested call may then use it) */
            CHECK(atomic_load(&j->nested_ran) == 5 && (used == 1 || atomic_load(&j->nested_used) == 1),
                  "a nested call during a job of %u threads: %u threads, %u of 5 tasks", used,
                  atomic_load(&j->nested_used), atomic_load(&j->nested_ran));
            free(j);
        }
        CHECK(cq_pool_run(p, 3, 0, task, NULL) == 0, "no tasks: no threads");
        cq_pool_free(p);
        CHECK(process_threads() == base, "freed: %d threads, %d before", process_threads(), base);
    }
    job *j = calloc(1, sizeof *j);
    CHECK(cq_pool_run(NULL, 4, NT, task, j) == 1, "no pool: inline");
    free(j);
}

/* ------------------------------------------------------- a 2-thread session */

typedef struct watch {
    int max_threads, calls;
} watch;

static void observer(void *user, uint32_t layer, uint32_t pos0, uint32_t n, const float *q,
                     const float *k, const float *v) {
    (void)layer, (void)pos0, (void)n, (void)q, (void)k, (void)v;
    watch *w = user;
    int t = process_threads();
    if (t > w->max_threads) w->max_threads = t;
    w->calls++;
}

/* prompt then `steps` decode steps; logits of the last step into out [vocab] */
static int run_session(const cq_model *m, uint32_t threads, watch *w, float *out, int *after) {
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.mode = CQ_KV_CACHE;
    so.n_threads = threads;
    so.observer = observer;
    so.observer_user = w;
    so.max_tokens = 64;
    cq_session *s = NULL;
    cq_err e;
    if (cq_session_create(m, &so, &s, &e)) {
        fprintf(stderr, "session: %s\n", e.msg);
        return -1;
    }
    int32_t prompt[5] = {1, 403, 407, 261, 378}, tok = 300;
    cq_status st = cq_session_forward(s, prompt, 5, out, 1, &e);
    for (int i = 0; i < 4 && !st; i++, tok += 7) st = cq_session_forward(s, &tok, 1, out, 1, &e);
    *after = process_threads();
    cq_session_free(s);
    return st ? -1 : 0;
}

static void test_session_threads(void) {
    char mpath[1024];
    snprintf(mpath, sizeof mpath, "%s/models/stories260K/stories260K.bin", cq_test_shared());
    cq_model *m = NULL;
    cq_err e;
    CHECK(cq_model_load(mpath, &m, &e) == CQ_OK, "load %s: %s", mpath, e.msg);
    if (!m) return;
    const uint32_t V = cq_model_get_config(m)->vocab_size;
    float *l1 = malloc(V * 4), *l2 = malloc(V * 4);
    watch w1 = {0, 0}, w2 = {0, 0};
    int after1 = 0, after2 = 0;
    CHECK(run_session(m, 1, &w1, l1, &after1) == 0, "1-thread session");
    CHECK(w1.max_threads == base && after1 == base,
          "1 thread requested: %d threads seen, %d after (%d besides the library's)",
          w1.max_threads, after1, base);
    CHECK(run_session(m, 2, &w2, l2, &after2) == 0, "2-thread session");
    CHECK(w2.calls > 5 && w2.max_threads == base + 1 && after2 == base + 1,
          "2 threads requested: %d threads seen during %d layer passes, %d after the decode "
          "steps (%d besides the library's)", w2.max_threads, w2.calls, after2, base);
    CHECK(process_threads() == base, "session freed: %d threads", process_threads());
    CHECK(memcmp(l1, l2, V * 4) == 0, "logits depend on the thread count");
    free(l1);
    free(l2);
    cq_model_free(m);
}

/* Attention with no pool runs on the default one, grown to what was asked. */
static void test_default_pool(void) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, 2, 64);
    cq_cache *c = NULL;
    CHECK(cq_cache_create(&cfg, &c, NULL) == CQ_OK, "cache");
    if (!c) return;
    const uint32_t T = 9000; /* several attention chunks per kv head */
    uint16_t *kv = calloc((size_t)T * 2 * 64, 2);
    for (size_t i = 0; i < (size_t)T * 2 * 64; i++) kv[i] = (uint16_t)(0x3000 + i % 977);
    CHECK(cq_cache_append(c, 0, kv, kv, T, NULL) == CQ_OK, "append");
    float q[4 * 64], o1[4 * 64], o2[4 * 64];
    for (int i = 0; i < 4 * 64; i++) q[i] = (float)(i % 13) * 0.1f;
    cq_attn_opts a1 = {.n_threads = 1}, a2 = {.n_threads = 2};
    CHECK(cq_cache_attend(c, 0, q, 4, o1, &a1, NULL) == CQ_OK, "attend, 1 thread");
    CHECK(process_threads() == base, "1 thread, no pool: %d threads", process_threads());
    CHECK(cq_cache_attend(c, 0, q, 4, o2, &a2, NULL) == CQ_OK, "attend, 2 threads");
    CHECK(process_threads() == base + 1, "2 threads, the default pool: %d threads", process_threads());
    CHECK(cq_pool_threads(cq_pool_default()) == 2, "default pool %u", cq_pool_threads(cq_pool_default()));
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "attention depends on the thread count");
    free(kv);
    cq_cache_free(c);
}

static void *idle(void *arg) { return arg; }

int main(void) {
    pthread_t th;
    CHECK(pthread_create(&th, NULL, idle, NULL) == 0 && pthread_join(th, NULL) == 0, "a thread");
    base = process_threads();
    CHECK(base >= 1, "/proc/self/task: %d threads", base);
    test_pool();
    test_session_threads();
    test_default_pool();
    return cq_test_done("test_pool");
}
