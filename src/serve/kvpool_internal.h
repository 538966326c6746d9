/* SPDX-License-Identifier: MIT */
/*
 * kvpool_internal.h - the private structure of the serving pool (include/cq_serve.h):
 * the arenas of block slots, the prefix index, the list of sequences; shared by
 * kvpool.c (pool, arenas, accounting, checks) and seq.c (sequence operations).
 *
 * A sequence is a cq_cache (src/cache) with page_tokens = G whose pages come from the
 * pool (cq_page_source): page i of store (layer L, store j) is the slot of block blk[i]
 * in arena (L, j). So the store code, attention and read-back are the single-sequence
 * cache's, unchanged. The rest of that cache's state that the pool holds instead: the
 * CQ-4 key parameters (the prototype's, read-only), the sink tokens (the sink slot of
 * the sequence's block 0) and the fp16 in-flight groups (the tail: one allocation,
 * attached and charged while a group is in flight).
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
    uint16_t *tail;       /* the fp16 in-flight groups of every unit store, or NULL */
    /* Partial blocks (truncate inside a committed key group, docs/SERVING.md): block
     * part_b[i] (ascending) is held whole but the sequence uses its first part_k[i] store
     * positions (0 < k < G). The cache's stores hold every position of the blocks (their
     * "physical" positions: block b at [b * G, (b + 1) * G)); the sequence's tokens skip
     * the unused ones. src.part_page / part_used / n_part point here. */
    uint32_t *part_b, *part_k;
    uint32_t n_part, cap_part;
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
    uint32_t *chunk_live; /* [cap_chunks] live blocks whose id lies in chunk k */
    int in_alloc;         /* inside cq_prefix_alloc: frees (evictions) do not trim */
    uint64_t block_bytes; /* sum of the strides */
    uint64_t tail_bytes;  /* a sequence's tail: the fp16 input of every unit store */
    uint64_t sink_bytes;  /* the sink slot of a block at position 0 (K and V, fp16) */
    uint8_t **sink_of;    /* [sink_cap] the sink slot of block id, or NULL */
    uint32_t sink_cap;
    uint64_t sink_alloc;  /* sink slots, as allocated */
    uint64_t tail_alloc;  /* tails, as allocated */
    uint64_t config_hash;
    uint64_t model_hash;  /* cq_kvpool_config.model_hash */
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
/* A new sequence's cache (empty, pages from s, parameters from the prototype); its free. */
cq_status kvp_new_cache(cq_kvpool *p, cq_seq *s, cq_err *err);
void kvp_free_cache(cq_kvpool *p, cq_seq *s);
/* Point the cache's sinks at block 0's sink slot (none without blocks). */
void kvp_bind_sinks(cq_kvpool *p, cq_seq *s);
/* The tail: attach (charge + allocate; CQ_ERR_BUDGET / CQ_ERR_NOMEM change nothing),
 * detach when no group is in flight. */
cq_status kvp_tail_attach(cq_kvpool *p, cq_seq *s, cq_err *err);
void kvp_tail_detach(cq_kvpool *p, cq_seq *s);
/* Blocks a sequence of `tokens` tokens (its longest layer) holds. */
static inline uint32_t kvp_blocks_for(const cq_kvpool *p, uint32_t tokens) {
    if (!tokens) return 0;
    const uint32_t T = tokens > p->S ? tokens - p->S : 0;
    return T ? (T + p->G - 1) / p->G : 1;
}
void *kvp_alloc(cq_kvpool *p, size_t n);

/* seq.c: positions of a sequence with partial blocks. Physical store position of logical
 * store position u (past the sinks). */
uint32_t kvp_phys(const cq_seq *s, uint32_t u);
/* Store positions the partial blocks leave unused. */
uint32_t kvp_holes(const cq_seq *s);
/* Every store of the sequence without tokens, pages or state in flight (the undo of a
 * failed build; blocks, tail and sinks are the caller's). */
void kvp_clear_stores(cq_kvpool *p, cq_seq *s);
/* The prefill items of a sequence's queries at logical positions [pos0, pos0 + n_q): one per
 * physically contiguous piece, written to it (room for s->n_part + 1), their count in *n_it.
 * CQ_ERR_RANGE when the positions lie beyond layer's tokens. row: floats per query token. */
struct cq_attn_item;
cq_status kvp_prefill_items(const cq_seq *s, uint32_t layer, const float *q, float *out,
                            uint32_t n_q, uint32_t pos0, size_t row, struct cq_attn_item *it,
                            uint32_t *n_it, cq_err *err);
void kvp_free(cq_kvpool *p, void *q, size_t n);

/* The wire form and the files: a (layer, store) slot the configuration does not have. */
#define KIND_NONE 0xFFFFFFFFu
/* Fuzzing builds ignore CRC mismatches so that mutated inputs reach the checks behind
 * them (never defined in the library's own builds). */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CRC_BAD(stored, computed) ((void)(stored), (void)(computed), 0)
#else
#define CRC_BAD(stored, computed) ((stored) != (computed))
#endif
/* The data store (layer L, store j) of the configuration, or NULL. */
static inline const cq_store *store_at(const cq_kvpool *p, uint32_t L, uint32_t j) {
    return cq_layer_store_c(&p->proto->layers[L], p->H, j);
}

/* block_wire.c: the wire form of one block (docs/SERVING.md, "Blocks on the wire"), also the
 * unit of the pool's files (seq_file.c). */
/* Bytes of the wire form of a block at chain position pos (pos 0: S + G tokens, sinks). */
uint64_t kvp_wire_len(const cq_kvpool *p, uint32_t pos);
/* Write block id at chain position pos with these token ids and hashes into dst
 * (kvp_wire_len bytes). */
void kvp_wire_write(const cq_kvpool *p, uint32_t id, uint32_t pos, const uint32_t *tokens,
                    uint64_t parent_hash, uint64_t chain_hash, uint8_t *dst);
/* A validated wire block: its fields and where its parts lie in the input. */
typedef struct kvp_wire {
    cq_block_wire_info info;
    uint32_t *tokens;      /* [n_tokens], malloc'd: free() it */
    const uint8_t *slots;  /* the (layer, store) slots in order */
    const uint8_t *sinks;  /* pos 0 with sinks, else NULL */
} kvp_wire;
/* Every check of cq_kvpool_block_check; on success w->tokens must be freed. Reads only the
 * configuration (no lock needed). */
cq_status kvp_wire_parse(const cq_kvpool *p, const uint8_t *b, size_t len, kvp_wire *w,
                         cq_err *err);
/* The checked slot and sink bytes of w into block id's slots. */
void kvp_wire_import(cq_kvpool *p, uint32_t id, const kvp_wire *w);
/* The cached block with chain hash `hash` at chain position pos, or CQ_BLOCK_NONE (the
 * index's hash buckets, cq_prefix_find; bi receives its info). */
uint32_t kvp_find_cached(const cq_kvpool *p, uint64_t hash, uint32_t pos,
                         cq_prefix_block_info *bi);

#endif
