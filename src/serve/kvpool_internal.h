/* SPDX-License-Identifier: MIT */
/*
 * kvpool_internal.h - the private structure of the serving pool (include/cq_serve.h):
 * the arenas of block slots, the prefix index, the list of sequences; shared by
 * kvpool.c (pool, arenas, accounting, checks) and seq.c (sequence operations).
 *
 * A sequence is a cq_cache (src/cache) with page_tokens = G whose pages come from the
 * pool (cq_page_source): page i of store (layer L, store j) is the slot of block blk[i]
 * in arena (L, j). So the store code, attention and read-back are the single-sequence
 * cache's, unchanged.
 */
#ifndef CQ_KVPOOL_INTERNAL_H
#define CQ_KVPOOL_INTERNAL_H

#include <pthread.h>

#include "cq_serve.h"
#include "../cache/cache_internal.h"

struct cq_seq {
    cq_kvpool *pool;
    cq_cache *c;          /* the sequence's stores; pages from the pool */
    cq_page_source src;   /* ctx = this sequence */
    uint32_t *blk;        /* [cap_blk] block ids, one per G store positions */
    uint32_t n_blk, cap_blk;
    cq_seq *prev, *next;  /* the pool's list */
};

struct cq_kvpool {
    cq_cache *proto;      /* the configuration (never holds tokens) */
    cq_prefix_index *ix;
    pthread_mutex_t mu;
    uint32_t NL, H, D, S, G, NS, NA; /* NA = NL * NS arenas, (layer L, store j) at L * NS + j */
    size_t *stride;       /* [NA] slot bytes of arena a (0: no such store) */
    uint32_t C;           /* slots per chunk (a power of two) */
    uint8_t **chunk;      /* [cap_chunks][NA] chunk k of arena a at k * NA + a */
    uint32_t n_chunks, cap_chunks;
    uint64_t block_bytes; /* sum of the strides */
    uint64_t seq_bytes;   /* charged per sequence: tails + sinks */
    uint64_t config_hash;
    uint64_t arena_bytes; /* chunks, as allocated */
    uint64_t own_bytes;   /* pool struct, strides, chunk table, sequence structs and tables */
    cq_seq *seqs;
    uint32_t n_seqs;
};

/* kvpool.c */
/* Slot of block id in arena a. */
static inline uint8_t *kvp_slot(const cq_kvpool *p, uint32_t a, uint32_t id) {
    return p->chunk[(size_t)(id / p->C) * p->NA + a] + (size_t)(id % p->C) * p->stride[a];
}
/* Allocate n blocks (budget, all or nothing) with arena room; headers written for
 * sequence positions pos0 .. pos0 + n - 1. */
cq_status kvp_alloc_blocks(cq_kvpool *p, uint32_t n, uint32_t pos0, uint32_t *ids, cq_err *err);
void kvp_copy_block(cq_kvpool *p, uint32_t dst, uint32_t src);
/* A new sequence's cache (empty, pages from s). */
cq_status kvp_new_cache(cq_kvpool *p, cq_seq *s, cq_err *err);
void *kvp_alloc(cq_kvpool *p, size_t n);
void kvp_free(cq_kvpool *p, void *q, size_t n);

#endif
