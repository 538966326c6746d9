/* SPDX-License-Identifier: MIT */
/*
 * kvstore_tool.h - what the parts of `cq kvstore` share (tools/cmd_kvstore.c,
 * tools/kvstore_bench.c): the synthetic pool (shape, formats, model id), the synthetic
 * prompts (SEED:COUNT segments) and the K/V a stand-in model computes for a token.
 * Only built with the Redis tier (CQ_HAVE_KVSTORE).
 */
#ifndef CQ_KVSTORE_TOOL_H
#define CQ_KVSTORE_TOOL_H

#include <stdint.h>

#include "cq_kvstore.h"
#include "cq_tool.h"

typedef struct kvt_opts {
    const char *url;
    cq_kvstore_opts ko;
    uint32_t layers, heads, dim, group, sinks;
    cq_kv_format fmt;
    uint64_t model_id, budget;
    uint32_t *tokens;
    uint32_t n_tokens;
    /* adopt */
    uint32_t rounds;
    const char *pause;
    int check, stats;
    /* encode */
    uint32_t block, truncate, flip;
    int has_flip, has_truncate;
    uint32_t wire_version;
    const char *out;
} kvt_opts;

/* A pool of the options' shape and formats. 0 or exit code (message printed). */
int kvt_pool(const char *cmd, const kvt_opts *o, cq_kvpool **p);
/* The single-sequence cache a full prefill of the options' shape fills (page_tokens = G). */
int kvt_ref_cache(const char *cmd, const kvt_opts *o, cq_cache **c);
/* The K and V [n][heads][dim] fp16 of tokens[t0, t0 + n) of layer L (the stand-in model). */
void kvt_rows(const kvt_opts *o, uint32_t L, uint32_t t0, uint32_t n, uint16_t *K, uint16_t *V);
/* Append tokens[t0, t1) to s and/or c (either may be NULL), every layer. */
cq_status kvt_prefill(const kvt_opts *o, cq_seq *s, cq_cache *c, uint32_t t0, uint32_t t1);
/* Compare a sequence with a cache: reads, exports, attention (both precisions). The
 * number of differences. */
uint32_t kvt_compare(const kvt_opts *o, const cq_seq *s, const cq_cache *c);
void kvt_print_stats(FILE *f, const cq_kvstore_stats *st);
int kvt_bench(kvt_opts *o);

#endif
