/* SPDX-License-Identifier: MIT */
/*
 * fuzz_seq_file.c - libFuzzer target for the serving pool's files (cq_kvpool_load_seq,
 * cq_kvpool_load_cached; cache file format version 3, and versions 1 / 2 through
 * load_seq; docs/CACHE_FILE.md). The input is written to a scratch file and loaded into
 * every pool of wire_pools.h (each holding a published chain of blocks), as a sequence and
 * as cached blocks. Invariants: a refusal fills the error record, returns no sequence and
 * leaves the pool's counters and allocation as they were; a loaded sequence passes the
 * pool check, reads every (layer, kv head) and attends (finite output, or CQ_ERR_OVERFLOW),
 * saves without token ids and loads again to the same reads; after its free the pool
 * passes its check again.
 *
 * Run: `make fuzz FUZZ_TARGETS=fuzz_seq_file`; the corpus (tests/fuzz/corpus/
 * fuzz_seq_file/, written by make_seq_seeds.c) is replayed by `make test`.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "wire_pools.h"

/* Every (layer, head) of s read into one buffer (malloc'd; *n floats). */
static float *read_all(const cq_seq *s, const wp_spec *w, size_t *n) {
    const uint32_t T = cq_seq_tokens(s, 0);
    *n = (size_t)w->NL * w->H * T * w->D * 2;
    float *b = malloc(*n * sizeof *b + 4);
    if (!b) fuzz_fail("out of memory");
    for (uint32_t L = 0; L < w->NL; L++)
        for (uint32_t h = 0; h < w->H; h++) {
            float *k = b + ((size_t)L * w->H + h) * T * w->D * 2;
            if (cq_seq_read(s, L, h, 0, T, k, k + (size_t)T * w->D, NULL))
                fuzz_fail("read of a loaded sequence");
        }
    return b;
}

static void exercise(cq_kvpool *p, int pool, cq_seq *s) {
    const wp_spec *w = &WP_SPECS[pool];
    cq_err e;
    if (cq_kvpool_check(p, &e)) fuzz_fail("pool check after load: %s", e.msg);
    for (uint32_t L = 1; L < w->NL; L++)
        if (cq_seq_tokens(s, L) != cq_seq_tokens(s, 0)) fuzz_fail("layers of different lengths");
    size_t na = 0, nb = 0;
    float *a = read_all(s, w, &na);
    const uint32_t qw = 2 * w->H * w->D;
    float *q = calloc(qw, sizeof *q), *o = calloc(qw, sizeof *o);
    for (uint32_t i = 0; q && i < qw; i++) q[i] = (float)((i * 37u) % 11u) * 0.125f - 0.5f;
    for (uint32_t L = 0; q && o && L < w->NL && cq_seq_tokens(s, 0); L++) {
        cq_attn_opts ao = {.n_threads = 1, .precision = CQ_ATTN_EXACT};
        cq_status st = cq_seq_attend(s, L, q, 2 * w->H, o, &ao, NULL);
        if (st != CQ_OK && st != CQ_ERR_OVERFLOW) fuzz_fail("attend: %s", cq_status_name(st));
        for (uint32_t i = 0; !st && i < qw; i++)
            if (!isfinite(o[i])) fuzz_fail("attend CQ_OK with a non-finite output");
    }
    char path[256];
    snprintf(path, sizeof path, "%s/resaved", fuzz_scratch_dir());
    cq_seq *t = NULL;
    if (cq_kvpool_save_seq(s, NULL, 0, path, &e)) fuzz_fail("save of a loaded sequence: %s", e.msg);
    if (cq_kvpool_load_seq(p, path, &t, &e)) fuzz_fail("re-load of a saved sequence: %s", e.msg);
    float *b = read_all(t, w, &nb);
    if (na != nb || memcmp(a, b, na * sizeof *a)) fuzz_fail("a re-loaded sequence reads otherwise");
    cq_seq_free(t);
    free(a);
    free(b);
    free(q);
    free(o);
}

static void one_pool(int pool, const char *path) {
    cq_kvpool *p = wp_make(pool, NULL);
    if (!p) fuzz_fail("pool %d cannot be built", pool);
    for (int as_cached = 0; as_cached < 2; as_cached++) {
        cq_kvpool_mem m0, m1;
        cq_kvpool_memory(p, &m0);
        const uint64_t a0 = cq_kvpool_allocated_bytes(p);
        cq_err e;
        cq_seq *s = (cq_seq *)(uintptr_t)1;
        cq_status st = as_cached ? cq_kvpool_load_cached(p, path, &e)
                                 : cq_kvpool_load_seq(p, path, &s, &e);
        if (st) {
            if (e.code != st || !e.msg[0]) fuzz_fail("a refusal without its error record");
            if (!as_cached && s) fuzz_fail("a refused load returned a sequence");
            cq_kvpool_memory(p, &m1);
            if (m1.prefix.live_blocks != m0.prefix.live_blocks ||
                m1.prefix.commits != m0.prefix.commits || cq_kvpool_allocated_bytes(p) != a0)
                fuzz_fail("a refused load changed the pool (%s)", e.msg);
            continue;
        }
        if (as_cached) {
            if (cq_kvpool_check(p, &e)) fuzz_fail("pool check after a cached load: %s", e.msg);
            continue;
        }
        if (!s) fuzz_fail("a load returned no sequence");
        exercise(p, pool, s);
        cq_seq_free(s);
        if (cq_kvpool_check(p, &e)) fuzz_fail("pool check after the free: %s", e.msg);
    }
    cq_kvpool_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    const char *dir = fuzz_scratch_dir();
    if (fuzz_write(dir, "in.cqkv", data, size)) return 0;
    char path[256];
    snprintf(path, sizeof path, "%s/in.cqkv", dir);
    for (int i = 0; i < WP_POOLS; i++) one_pool(i, path);
    return 0;
}
