/* SPDX-License-Identifier: MIT */
/*
 * cq_prefix.h - the serving pool's block accounting and prefix index
 * (docs/SERVING.md, "The prefix index"): block ids with reference counts, a
 * byte budget with all-or-nothing allocation, the chain-hash index of published
 * blocks, the LRU of unreferenced published blocks, counters and a leak check.
 *
 * It knows block ids, sizes, token ids and parents, never block contents: the
 * pool maps ids to its memory and learns of freed ids through on_free. It does
 * not depend on the cache (src/cache).
 *
 * Threading: no lock inside. Mutating calls (create / free, alloc, ref, release,
 * commit, adopt, evict) need exclusive access (the pool holds its mutex around
 * them); read-only calls (match, info, lru, stats, check, the hash functions)
 * may run concurrently with each other.
 *
 * Tier: TOOL-GRADE until the serving pool that uses it lands (docs/SERVING.md);
 * may change in any minor version (docs/EMBEDDING.md).
 */
#ifndef CQ_PREFIX_H
#define CQ_PREFIX_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>

#include "cq_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CQ_BLOCK_NONE 0xFFFFFFFFu

/* ------------------------------------------------------------ the hash (CQH64)
 * Defined on integers, the same on every CPU (docs/SERVING.md gives the text):
 * mix(z) = one splitmix64 step from state z (cq_rng_u64), absorb(s, w) = mix(s ^ w).
 * chain: s = 0x4351484132303031; absorb config_hash, parent_hash, n, then each token.
 * bytes: s = 0x4351484231303031; absorb n, then each 8-byte little-endian chunk
 *        (the last one zero-padded). */
CQ_API uint64_t cq_prefix_chain_hash(uint64_t config_hash, uint64_t parent_hash, const uint32_t *tokens,
                              uint32_t n);
CQ_API uint64_t cq_prefix_hash_bytes(const void *data, size_t n);

typedef struct cq_prefix_index cq_prefix_index;

/* Called for every block id that becomes free (a release to 0 of a private block, an
 * eviction). Must not call back into the index. */
typedef void (*cq_prefix_free_fn)(void *ctx, uint32_t id, uint64_t bytes);

typedef struct cq_prefix_config {
    uint64_t config_hash;        /* identity of the pool configuration (cq_prefix_hash_bytes) */
    uint32_t block_tokens;       /* G: tokens of every block after the first (>= 1) */
    uint32_t first_block_tokens; /* tokens of the block at chain position 0 (S + G); 0 = G */
    uint64_t budget_bytes;       /* the byte budget of all live blocks (>= 1) */
    cq_prefix_free_fn on_free;   /* optional */
    void *ctx;                   /* passed to on_free */
    /* Testing: compare only the low hash_bits bits of chain hashes in the index (0 = 64),
     * which forces collisions; lookups stay exact because they compare parents and tokens. */
    uint32_t hash_bits;
} cq_prefix_config;

/* CQ_ERR_ARG for G = 0, budget 0, hash_bits > 64. */
CQ_API cq_status cq_prefix_create(const cq_prefix_config *cfg, cq_prefix_index **out, cq_err *err);
/* Frees the index (accepts NULL). Does not call on_free. */
CQ_API void cq_prefix_free(cq_prefix_index *ix);

/* ------------------------------------------------------------ blocks
 * A block is FREE, PRIVATE (live, not in the index) or CACHED (published in the
 * index). Ids are dense and handed out lowest free id first. */
typedef enum cq_block_state {
    CQ_BLOCK_FREE = 0,
    CQ_BLOCK_PRIVATE = 1,
    CQ_BLOCK_CACHED = 2
} cq_block_state;

/* Allocate n blocks of bytes[i] bytes each, reference count 1, into ids[n]. All or
 * nothing: CQ_ERR_BUDGET when sum(bytes) > budget - used + (bytes of unreferenced cached
 * blocks), CQ_ERR_NOMEM when the id table cannot grow, and then nothing changed (no
 * eviction either; only the budget_refusals counter counts the refusal). Otherwise the
 * least recently used unreferenced cached blocks are evicted until the new ones fit. */
CQ_API cq_status cq_prefix_alloc(cq_prefix_index *ix, const uint64_t *bytes, uint32_t n, uint32_t *ids,
                          cq_err *err);
/* Charge bytes that are not blocks (a sequence's fp16 tail) to the budget, all or
 * nothing as cq_prefix_alloc (may evict; CQ_ERR_BUDGET changes nothing). uncharge gives
 * them back (CQ_ERR_RANGE for more than is charged). */
CQ_API cq_status cq_prefix_charge(cq_prefix_index *ix, uint64_t bytes, cq_err *err);
CQ_API cq_status cq_prefix_uncharge(cq_prefix_index *ix, uint64_t bytes, cq_err *err);
/* One more reference to a live block (a cached block with none leaves the LRU). */
CQ_API cq_status cq_prefix_ref(cq_prefix_index *ix, uint32_t id, cq_err *err);
/* Drop one reference. At 0 a private block is freed (on_free), a cached one becomes the
 * most recently used entry of the LRU. */
CQ_API cq_status cq_prefix_release(cq_prefix_index *ix, uint32_t id, cq_err *err);
/* Release ids[n-1], ..., ids[0] (a sequence's chain, deepest first, so its deeper blocks
 * are evicted first). All or nothing: every reference is checked first. */
CQ_API cq_status cq_prefix_release_chain(cq_prefix_index *ix, const uint32_t *ids, uint32_t n,
                                  cq_err *err);

/* ------------------------------------------------------------ the index */

/* Publish the live private block id: its chain hash covers the configuration hash, the
 * parent's chain hash (0 for position 0) and its n token ids. parent is CQ_BLOCK_NONE
 * (then n = first_block_tokens) or a cached block (n = block_tokens); else CQ_ERR_STATE /
 * CQ_ERR_SHAPE. If an equal entry (same parent, same tokens) is already there, nothing
 * changes but the duplicates counter, and *canonical names it; else *canonical = id. */
CQ_API cq_status cq_prefix_commit(cq_prefix_index *ix, uint32_t id, uint32_t parent,
                           const uint32_t *tokens, uint32_t n, uint32_t *canonical, cq_err *err);

/* The longest run of cached blocks that spells tokens[0, n) from position 0, full blocks
 * only, at most max_blocks: *n_blocks and (ids non-NULL) ids[0 .. min(*n_blocks, cap)).
 * match is read-only; adopt also takes a reference on each block it returns (at most
 * min(max_blocks, cap) of them) and counts the lookup. */
CQ_API cq_status cq_prefix_match(const cq_prefix_index *ix, const uint32_t *tokens, uint32_t n,
                          uint32_t max_blocks, uint32_t *ids, uint32_t cap, uint32_t *n_blocks,
                          cq_err *err);
CQ_API cq_status cq_prefix_adopt(cq_prefix_index *ix, const uint32_t *tokens, uint32_t n,
                          uint32_t max_blocks, uint32_t *ids, uint32_t cap, uint32_t *n_blocks,
                          cq_err *err);

/* Evict least recently used unreferenced cached blocks until at least `bytes` are freed
 * or none is left; *freed (may be NULL) = the bytes freed. UINT64_MAX drops the cache.
 * Evicting a block removes its cached descendants from the index too (they can no longer
 * be reached): unreferenced ones are freed, referenced ones become private. */
CQ_API cq_status cq_prefix_evict(cq_prefix_index *ix, uint64_t bytes, uint64_t *freed, cq_err *err);

/* ------------------------------------------------------------ inspection */

typedef struct cq_prefix_block_info {
    uint32_t state;          /* cq_block_state */
    uint32_t refs;
    uint64_t bytes;          /* 0 when free */
    uint32_t in_lru;         /* cached with no reference */
    uint32_t parent;         /* cached: the parent block or CQ_BLOCK_NONE; else CQ_BLOCK_NONE */
    uint32_t pos;            /* cached: chain position (0 = first block); else 0 */
    uint32_t n_tokens;       /* cached: tokens of the block; else 0 */
    uint64_t hash;           /* cached: the full 64-bit chain hash; else 0 */
    const uint32_t *tokens;  /* cached: its token ids (valid until the next mutating call) */
} cq_prefix_block_info;

/* Ids run over [0, cq_prefix_capacity); CQ_ERR_RANGE beyond. */
CQ_API uint32_t cq_prefix_capacity(const cq_prefix_index *ix);
CQ_API cq_status cq_prefix_info(const cq_prefix_index *ix, uint32_t id, cq_prefix_block_info *out,
                         cq_err *err);
/* The published block with this full 64-bit chain hash at chain position pos (the lowest id
 * when several match), found through the hash buckets in time independent of the capacity;
 * CQ_BLOCK_NONE when there is none (also for a NULL index). */
CQ_API uint32_t cq_prefix_find(const cq_prefix_index *ix, uint64_t hash, uint32_t pos);
/* The LRU list, least recently used first: *n entries, the first min(*n, cap) into ids. */
CQ_API cq_status cq_prefix_lru(const cq_prefix_index *ix, uint32_t *ids, uint32_t cap, uint32_t *n,
                        cq_err *err);

typedef struct cq_prefix_stats {
    /* state: every live block counted once */
    uint64_t budget_bytes;
    uint64_t used_bytes;        /* live blocks (private + cached) + charged bytes */
    uint64_t charged_bytes;     /* cq_prefix_charge minus cq_prefix_uncharge */
    uint64_t referenced_bytes;  /* live blocks with a reference */
    uint64_t cached_bytes;      /* blocks in the index */
    uint64_t lru_bytes;         /* cached blocks without a reference (evictable) */
    uint32_t live_blocks, referenced_blocks, cached_blocks, lru_blocks;
    uint64_t meta_bytes;        /* the index's own allocations (tables, token copies) */
    /* counters since create */
    uint64_t allocs, blocks_allocated, budget_refusals;
    uint64_t commits, duplicates;
    uint64_t lookups, hits, blocks_reused, tokens_reused; /* adopt calls */
    uint64_t blocks_evicted, bytes_evicted;
    uint64_t blocks_orphaned;   /* referenced descendants of an evicted block made private */
} cq_prefix_stats;

CQ_API void cq_prefix_stats_get(const cq_prefix_index *ix, cq_prefix_stats *out);

/* Recompute everything from the structure (sums, counts, the free-id heap, the LRU list,
 * hash buckets, chain hashes, parent / child links, the bookkeeping bytes) and compare;
 * CQ_ERR_MISMATCH names the first broken invariant. */
CQ_API cq_status cq_prefix_check(const cq_prefix_index *ix, cq_err *err);

#ifdef __cplusplus
}
#endif
#endif /* CQ_PREFIX_H */
