/* SPDX-License-Identifier: MIT */
/*
 * kvstore_bench.c - `cq kvstore bench`: what the Redis tier moves and saves, per format
 * (CQ-4 and fp16 blocks): process A's pool prefills a prompt and publishes it, a fresh
 * pool B adopts it from Redis and prefills the rest; printed: wire bytes per token
 * (beside the fp16 K/V bytes of a token), tokens adopted (prefill saved), Redis's
 * used_memory growth, and the time of the adopt beside the time of appending the same
 * tokens locally (the K/V precomputed: the append alone, a lower bound of a prefill,
 * which also runs the model). Every run verifies: B after the adopt and the rest of the
 * prefill equals a full local prefill bit for bit (reads, exports, attention), else
 * exit 1. Figures are reported, never asserted.
 */
#include "cq_tool.h"

#ifdef CQ_HAVE_KVSTORE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvstore_tool.h"

static const char *const FORMATS[] = {"cq4/cq4", "fp16/fp16"};

static int bench_one(kvt_opts *o, cq_kvstore *ks) {
    cq_kvpool *pa = NULL, *pb = NULL;
    cq_seq *sa = NULL, *sb = NULL, *sl = NULL;
    cq_cache *ref = NULL;
    cq_err e;
    int rc = kvt_pool("kvstore bench", o, &pa);
    if (!rc) rc = kvt_pool("kvstore bench", o, &pb);
    if (!rc) rc = kvt_ref_cache("kvstore bench", o, &ref);
    cq_status st = rc ? CQ_OK : cq_seq_create(pa, &sa, &e);
    /* A: prefill, publish locally and to Redis */
    if (!rc && !st) st = kvt_prefill(o, sa, ref, 0, o->n_tokens);
    if (!rc && !st) st = cq_seq_publish(sa, o->tokens, o->n_tokens, &e);
    uint64_t mem0 = 0, mem1 = 0;
    int have_mem = !rc && !st && cq_kvstore_used_memory(ks, &mem0, NULL) == CQ_OK;
    cq_kvstore_stats s1, s2;
    if (!rc && !st) st = cq_kvstore_publish(ks, pa, o->tokens, o->n_tokens, NULL, &e);
    cq_kvstore_stats_get(ks, &s1);
    have_mem = have_mem && cq_kvstore_used_memory(ks, &mem1, NULL) == CQ_OK;
    /* B: adopt from Redis, prefill the rest, compare */
    uint32_t adopted = 0;
    if (!rc && !st) st = cq_seq_create(pb, &sb, &e);
    const double t0 = cq_tool_now();
    if (!rc && !st) st = cq_kvstore_adopt(ks, pb, sb, o->tokens, o->n_tokens, &adopted, &e);
    const double t_adopt = cq_tool_now() - t0;
    cq_kvstore_stats_get(ks, &s2);
    if (!rc && !st) st = kvt_prefill(o, sb, NULL, adopted, o->n_tokens);
    const uint32_t bad = !rc && !st ? kvt_compare(o, sb, ref) : 1;
    /* the same tokens appended locally into a fresh sequence of B's pool, K/V precomputed */
    double t_local = 0;
    if (!rc && !st && adopted) {
        const size_t row = (size_t)o->heads * o->dim, per = (size_t)adopted * row;
        uint16_t *K = malloc(o->layers * per * 2), *V = malloc(o->layers * per * 2);
        st = K && V ? cq_seq_create(pb, &sl, &e) : CQ_ERR_NOMEM;
        for (uint32_t L = 0; L < o->layers && !st; L++)
            kvt_rows(o, L, 0, adopted, K + L * per, V + L * per);
        const double a0 = cq_tool_now();
        for (uint32_t L = 0; L < o->layers && !st; L++)
            st = cq_seq_append(sl, L, K + L * per, V + L * per, adopted, &e);
        t_local = cq_tool_now() - a0;
        free(K);
        free(V);
    }
    if (!rc && st) {
        cq_report("kvstore bench", st, &e);
        rc = 1;
    }
    if (!rc) {
        const uint64_t fetched = s2.bytes_fetched - s1.bytes_fetched;
        const double fp16_tok = 4.0 * o->layers * o->heads * o->dim;
        const double per_tok = adopted ? (double)fetched / adopted : 0;
        printf("%-10s %7u %7u %9.1f %9.1f %6.2f %10.0f %9.2f %9.2f %s\n", o->fmt.name, o->n_tokens, adopted,
               per_tok, fp16_tok, per_tok > 0 ? fp16_tok / per_tok : 0,
               have_mem ? (double)(mem1 - mem0) / 1024.0 : -1.0, 1e3 * t_adopt, 1e3 * t_local,
               bad ? "DIFFERENT" : "equal");
        if (bad) rc = 1;
    }
    cq_seq_free(sl);
    cq_seq_free(sa);
    cq_seq_free(sb);
    cq_cache_free(ref);
    cq_kvpool_free(pa);
    cq_kvpool_free(pb);
    return rc;
}

int kvt_bench(kvt_opts *o) {
    if (!o->tokens) {
        o->n_tokens = 4096;
        o->tokens = malloc(4096 * sizeof *o->tokens);
        if (!o->tokens) return 1;
        /* a prompt no earlier run published: its seed from the clock */
        const uint64_t seed = (uint64_t)(cq_tool_now() * 1e6);
        for (uint32_t i = 0; i < 4096; i++) o->tokens[i] = (uint32_t)((seed * 2654435761u + i * 40503u) % 50000u);
    }
    cq_kvstore *ks = NULL;
    cq_err e;
    if (cq_kvstore_open(o->url, &o->ko, &ks, &e) != CQ_OK) {
        cq_report("kvstore bench", e.code, &e);
        return 2;
    }
    printf("cq kvstore bench: %u layers, %u kv heads, head_dim %u, G %u, sinks %u; %s\n", o->layers,
           o->heads, o->dim, o->group, o->sinks, o->url);
    printf("%-10s %7s %7s %9s %9s %6s %10s %9s %9s %s\n", "format", "tokens", "adopted", "wire_B/tok",
           "fp16_B/tok", "ratio", "redis_KiB", "adopt_ms", "append_ms", "check");
    int rc = 0;
    for (size_t f = 0; f < sizeof FORMATS / sizeof FORMATS[0] && !rc; f++) {
        cq_kv_format_parse(FORMATS[f], &o->fmt, NULL);
        rc = bench_one(o, ks);
    }
    cq_kvstore_stats ss;
    cq_kvstore_stats_get(ks, &ss);
    printf("tier: lookups %llu, hits %llu, misses %llu, published %llu blocks (%llu bytes), fetched %llu bytes, "
           "errors %llu\n",
           (unsigned long long)ss.lookups, (unsigned long long)ss.hits, (unsigned long long)ss.misses,
           (unsigned long long)ss.blocks_published, (unsigned long long)ss.bytes_published,
           (unsigned long long)ss.bytes_fetched,
           (unsigned long long)(ss.err_down + ss.err_timeout + ss.err_io + ss.err_reply + ss.err_cluster));
    cq_kvstore_free(ks);
    return rc;
}

#else
typedef int kvt_bench_unused; /* the tier is not built: nothing here */
#endif
