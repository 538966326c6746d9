/* SPDX-License-Identifier: MIT */
/*
 * cq_serve.h - the serving pool (docs/SERVING.md): one model's compressed KV memory
 * for many sequences. Memory is held in blocks of G token positions (K and V of every
 * (layer, kv head)), reference-counted and accounted through the prefix index
 * (include/cq_prefix.h) under a byte budget fixed at creation. Committed blocks are
 * immutable and shared by fork; each sequence's fp16 in-flight key groups (its tail)
 * and its sink tokens are private. Every operation is all-or-nothing: on an error
 * status nothing changed.
 *
 * The pool is named cq_kvpool because cq_pool is the thread pool (include/cq_pool.h).
 *
 * Equality with cq_cache: a sequence holds exactly what a cq_cache created with the
 * same configuration and page_tokens = G holds after the same appends: read, export and
 * attention (both precisions) are bit-identical to that cache's.
 *
 * Threading: every call that changes a sequence's structure or the pool (sequence
 * create / free / fork / truncate / publish / adopt, append) and the memory queries and
 * check take the pool's mutex. Reads, exports and attention take no lock: they may run
 * concurrently with each other and with calls on other sequences, not with a call that
 * changes the sequence they read. Appends do not run concurrently with each other (they
 * share the mutex).
 *
 * Tier: TOOL-GRADE (docs/EMBEDDING.md): may change in any minor version while the
 * slices of docs/SERVING.md land.
 */
#ifndef CQ_SERVE_H
#define CQ_SERVE_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>

#include "cq_cache.h"
#include "cq_error.h"
#include "cq_prefix.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cq_kvpool cq_kvpool;
typedef struct cq_seq cq_seq;

typedef struct cq_kvpool_config {
    cq_cache_config cache;  /* shape, formats, G, sinks, masks, kernels; page_tokens and
                               max_tokens must be 0 (the pool's pages are blocks of G) */
    uint64_t budget_bytes;  /* blocks + every sequence's tail and sinks; fixed, >= 1 */
    uint64_t model_hash;    /* identity of the weights (part of the configuration hash) */
} cq_kvpool_config;

/* CQ_ERR_UNSUPPORTED for a codec with an fp16 window (KIVI) or a unit that does not
 * divide G; the errors of cq_cache_create for a bad configuration. */
CQ_API cq_status cq_kvpool_create(const cq_kvpool_config *cfg, cq_kvpool **out, cq_err *err);
/* Frees the pool and every sequence it still holds (accepts NULL). */
CQ_API void cq_kvpool_free(cq_kvpool *p);
/* cq_prefix_hash_bytes of the serialized configuration (model hash, shape, G, sinks,
 * per-layer formats, masks). */
CQ_API uint64_t cq_kvpool_config_hash(const cq_kvpool *p);
/* Bytes charged to the budget: a block (every (layer, store) slot), the sink slot a block
 * at position 0 carries in addition (fp16 K and V of the S sinks of every (layer, head)),
 * and a sequence's tail while a group is in flight (the fp16 input of every unit-coded
 * store: CQ-4 / CQ-4+ keys, unit codecs). */
CQ_API uint64_t cq_kvpool_block_bytes(const cq_kvpool *p);
CQ_API uint64_t cq_kvpool_sink_bytes(const cq_kvpool *p);
CQ_API uint64_t cq_kvpool_tail_bytes(const cq_kvpool *p);

/* ------------------------------------------------------------ sequences */

/* An empty sequence (no block, no tail: nothing charged). */
CQ_API cq_status cq_seq_create(cq_kvpool *p, cq_seq **out, cq_err *err);
/* Releases the sequence's blocks (deepest first) and its charge (accepts NULL). */
CQ_API void cq_seq_free(cq_seq *s);
/* A new sequence sharing every committed block of src by reference; the open block (if
 * any) and the tail are copied. Every layer of src must have the same length
 * (CQ_ERR_STATE). CQ_ERR_BUDGET when the copy and the charge do not fit. */
CQ_API cq_status cq_seq_fork(const cq_seq *src, cq_seq **out, cq_err *err);
/* Keep the first n tokens (every layer the same length, else CQ_ERR_STATE; n <= length,
 * else CQ_ERR_RANGE). Cuts on a unit border of every store (per-token formats: any n;
 * CQ-4 / CQ-4+ keys and unit codecs: n - sinks a multiple of their unit, or a cut inside
 * the group still in flight) equal a fresh sequence fed the same first n tokens; a kept
 * block that later appends write again and that is shared is copied first (copy-on-write;
 * CQ_ERR_BUDGET if it does not fit). A cut inside a committed key group of G tokens (or a
 * committed unit), k tokens into its block, leaves a partial block (docs/SERVING.md,
 * "truncate"): the block stays referenced whole (shared or not, nothing copied, G - k
 * positions of slack), the k tokens keep the codes of their full group, and the next append
 * starts a new group in a new block at position n, so every later group border lies k
 * positions off a fresh sequence's grid. Such a sequence publishes no block from the partial
 * one on and cannot be saved (CQ_ERR_UNSUPPORTED). A cut inside a committed unit whose block
 * some unit store still holds in part in flight is refused with CQ_ERR_UNSUPPORTED. */
CQ_API cq_status cq_seq_truncate(cq_seq *s, uint32_t n_tokens, cq_err *err);
/* Position shifts (llama.cpp seq_add): always CQ_ERR_UNSUPPORTED; post-RoPE keys quantized
 * per channel over G tokens cannot be re-rotated without requantizing (docs/SERVING.md). */
CQ_API cq_status cq_seq_shift(cq_seq *s, uint32_t p0, uint32_t p1, int32_t delta, cq_err *err);

/* Prefix caching (docs/SERVING.md, "The prefix index"). publish: put the committed full
 * blocks that tokens[0, n) spells (block 0: the S sinks and G tokens, then G at a time;
 * n <= length) into the index under their chain hashes. A block whose equal (same
 * parent, same tokens) is cached already is replaced by that one and released (dedup).
 * Publish only blocks written by prefill (their bytes are what a full prefill of those
 * tokens writes). Blocks published before are checked against tokens (CQ_ERR_MISMATCH).
 * On an error the blocks before the failing one stay published (a retry completes it).
 * adopt_prefix: an empty sequence (CQ_ERR_STATE otherwise) takes the longest cached run
 * of full blocks spelling tokens[0, n), leaving at least one token to prefill;
 * *adopted = the tokens it now holds (0 or S + k G); the caller appends from there. */
CQ_API cq_status cq_seq_publish(cq_seq *s, const uint32_t *tokens, uint32_t n, cq_err *err);
CQ_API cq_status cq_seq_adopt_prefix(cq_seq *s, const uint32_t *tokens, uint32_t n,
                                     uint32_t *adopted, cq_err *err);

/* As cq_cache_append / _f32, per layer: K, V [n][n_kv_heads][head_dim]. New blocks are
 * allocated when the tokens reach them (CQ_ERR_BUDGET when they do not fit). */
CQ_API cq_status cq_seq_append(cq_seq *s, uint32_t layer, const uint16_t *K, const uint16_t *V,
                               uint32_t n, cq_err *err);
CQ_API cq_status cq_seq_append_f32(cq_seq *s, uint32_t layer, const float *K, const float *V,
                                   uint32_t n, cq_err *err);
/* The bytes the budget must admit for appending n tokens to every layer of s (layer by
 * layer, as a forward pass does): the blocks those tokens reach, the sink slot of a new
 * block 0, and the tail when s does not hold it and the tokens reach the stores (an append
 * charges it while it runs). Every layer at the same length, else CQ_ERR_STATE. A runtime
 * sums it over a step's sequences and compares it with budget - used + evictable
 * (cq_kvpool_memory's prefix statistics) before it appends anything. */
CQ_API cq_status cq_seq_append_need(const cq_seq *s, uint32_t n, uint64_t *bytes, cq_err *err);
CQ_API uint32_t cq_seq_tokens(const cq_seq *s, uint32_t layer);
/* As cq_cache_read / cq_cache_export / cq_cache_committed, over the sequence's tokens. With a
 * partial block (cq_seq_truncate) cq_seq_export returns the blocks' bytes as held: the partial
 * block's full group / all G positions, then the later tokens. */
CQ_API cq_status cq_seq_read(const cq_seq *s, uint32_t layer, uint32_t head, uint32_t t0,
                             uint32_t t1, float *K, float *V, cq_err *err);
CQ_API cq_status cq_seq_export(const cq_seq *s, uint32_t layer, uint32_t head, cq_role role,
                               uint8_t *dst, size_t cap, size_t *len, cq_err *err);
/* As cq_cache_attend / cq_cache_attend_prefill over the sequence. */
CQ_API cq_status cq_seq_attend(const cq_seq *s, uint32_t layer, const float *q,
                               uint32_t n_q_heads, float *out, const cq_attn_opts *opts,
                               cq_err *err);
CQ_API cq_status cq_seq_attend_prefill(const cq_seq *s, uint32_t layer, const float *q,
                                       uint32_t n_q, uint32_t pos0, uint32_t n_q_heads,
                                       float *out, const cq_attn_opts *opts, cq_err *err);

/* ------------------------------------------------------------ accounting */

typedef struct cq_seq_mem {
    uint64_t private_bytes; /* blocks only this sequence references + its tail */
    uint64_t shared_bytes;  /* blocks referenced by more than one sequence (in full) */
    uint64_t slack;         /* block bytes of positions past the last token and the unused
                               positions of partial blocks (pro rata) */
    uint64_t tokens;        /* tokens of layer 0 */
    uint32_t blocks, shared_blocks;
} cq_seq_mem;

typedef struct cq_kvpool_mem {
    uint64_t referenced;   /* live blocks with a reference, each counted once */
    uint64_t cached;       /* published blocks without a reference (evictable) */
    uint64_t arena_slack;  /* arena slots allocated and not live */
    uint64_t tails;        /* the sequences' fp16 tails (groups in flight) */
    uint64_t sequences;    /* the sequences' own bookkeeping (stores, page tables) */
    uint64_t index;        /* the prefix index's bookkeeping */
    uint64_t tables;       /* the pool's own (configuration, arena and sink tables) */
    uint64_t total;        /* the sum of the above */
    uint64_t shared_saved; /* sum over blocks of (refs - 1) x bytes */
    uint64_t arena_bytes;  /* the arena chunks and sink slots as the allocator counted them */
    uint32_t n_seqs;
    cq_prefix_stats prefix;
} cq_kvpool_mem;

CQ_API cq_status cq_seq_memory(const cq_seq *s, cq_seq_mem *out);
CQ_API cq_status cq_kvpool_memory(const cq_kvpool *p, cq_kvpool_mem *out);
/* The allocator's own count of every byte the pool holds (equals cq_kvpool_memory total). */
CQ_API uint64_t cq_kvpool_allocated_bytes(const cq_kvpool *p);
/* The prefix index's invariants (cq_prefix_check) and that every block a sequence holds
 * is live with as many references as sequences hold it; CQ_ERR_MISMATCH names the first
 * broken one. */
CQ_API cq_status cq_kvpool_check(const cq_kvpool *p, cq_err *err);

/* ------------------------------------------------------------ batched attention */

/* Decode attention for n_seqs sequences of one pool, one query token each: q and out
 * [n_seqs][n_q_heads][D]. Each sequence's result is bit-identical to cq_seq_attend on
 * it alone, for any thread count and any batch it is in (docs/SERVING.md, "Batched
 * decode attention"): the batch is one flat list of (sequence, kv head, chunk) tasks on
 * one thread pool, each (sequence, kv head) merging its chunks in chunk order as the
 * single call does. A sequence may appear once.
 * Checked before anything runs (nothing written on these errors): CQ_ERR_NULL (p, seqs,
 * a sequence, q or out), CQ_ERR_ARG (a sequence of another pool, a sequence twice, bad
 * precision or scale), CQ_ERR_RANGE (layer), CQ_ERR_SHAPE (n_q_heads not a positive
 * multiple of the kv heads), CQ_ERR_NONFINITE (a query element), CQ_ERR_STATE (a
 * sequence with no token in the layer, as cq_seq_attend); err->token is the index of the
 * sequence an error names. n_seqs = 0: CQ_OK, nothing done.
 * CQ_ERR_OVERFLOW: the outputs of every sequence whose scores overflow are zeroed (as
 * cq_seq_attend zeroes its out); every other sequence's output is valid and
 * bit-identical to its single call; err names the first overflowing sequence.
 * CQ_ERR_NOMEM: out untouched. No lock is taken: the same rules as cq_seq_attend (may
 * run concurrently with other attention, reads and calls on other sequences). */
CQ_API cq_status cq_kvpool_attend(cq_kvpool *p, uint32_t layer, cq_seq *const *seqs,
                                  uint32_t n_seqs, const float *q, uint32_t n_q_heads, float *out,
                                  const cq_attn_opts *opts, cq_err *err);
/* Prefill attention for several sequences' new tokens (already appended): sequence i's
 * queries are rows q_ofs[i] .. q_ofs[i+1]-1 of q [q_ofs[n]][n_q_heads][D] at positions
 * pos0[i] + j, causal; bit-identical per sequence to cq_seq_attend_prefill. q_ofs[0]
 * must be 0 and q_ofs non-decreasing (CQ_ERR_ARG); a sequence with no rows is skipped;
 * pos0[i] + rows of i beyond the sequence's tokens is CQ_ERR_RANGE. Errors as
 * cq_kvpool_attend; on CQ_ERR_NOMEM out is unspecified. */
CQ_API cq_status cq_kvpool_attend_prefill(cq_kvpool *p, uint32_t layer, cq_seq *const *seqs,
                                          uint32_t n_seqs, const uint32_t *q_ofs,
                                          const uint32_t *pos0, const float *q,
                                          uint32_t n_q_heads, float *out,
                                          const cq_attn_opts *opts, cq_err *err);

/* ------------------------------------------------------------ blocks on the wire
 * A cached block moved between pools of the same configuration (another process, a
 * shared store such as Redis): process A publishes, computes the chain hashes of its
 * prompt and encodes each block; process B computes its prompt's chain hashes, inserts
 * the fetched blocks in chain order (stopping at the first failure: a bad block is a
 * miss) and adopts them with cq_seq_adopt_prefix. Byte layout: docs/SERVING.md,
 * "Blocks on the wire". encode and insert take the pool mutex; chain_hashes, wire_size
 * and check read only the configuration. */

/* The chain hashes of the full blocks that tokens[0, n) spells in this pool (block 0:
 * the S sinks and G tokens, then G at a time; cq_prefix_chain_hash with the pool's
 * configuration hash); *n_blocks = how many (at most cap). */
CQ_API cq_status cq_kvpool_chain_hashes(const cq_kvpool *p, const uint32_t *tokens, uint32_t n,
                                        uint64_t *hashes, uint32_t cap, uint32_t *n_blocks,
                                        cq_err *err);
/* Bytes of the wire form of one block of this pool (an upper bound for every block). */
CQ_API size_t cq_kvpool_block_wire_size(const cq_kvpool *p);
/* Encode the cached (published) block with this chain hash: CQ_ERR_RANGE when the index
 * holds no such block. The wire form is self-describing and versioned: magic "CQBW",
 * wire version, the pool's configuration hash and model hash, the layout (layers, kv
 * heads, head_dim, G, S, per-(layer, store) slot bytes), chain position, parent chain
 * hash, chain hash, token count and token ids, the bytes of every (layer, store) slot
 * (and the sink slot for position 0) in the kernel-table-independent canonical form,
 * and a CRC-32C over everything before it. dst NULL (cap 0): *len = the bytes needed;
 * cap too small: CQ_ERR_BUFFER with *len = the bytes needed. */
CQ_API cq_status cq_kvpool_block_encode(const cq_kvpool *p, uint64_t chain_hash, uint8_t *dst,
                                        size_t cap, size_t *len, cq_err *err);
typedef struct cq_block_wire_info {
    uint64_t chain_hash, parent_hash;
    uint32_t pos;      /* chain position (0 = first block) */
    uint32_t n_tokens; /* S + G at position 0, else G */
} cq_block_wire_info;
/* Validate a wire block against this pool without changing anything: sizes checked before
 * they are trusted, CRC (CQ_ERR_CHECKSUM), version (CQ_ERR_VERSION), another configuration
 * or model (CQ_ERR_MISMATCH), malformed (CQ_ERR_FORMAT), the chain hash recomputed from
 * the parent hash and the token ids (CQ_ERR_MISMATCH). info may be NULL. */
CQ_API cq_status cq_kvpool_block_check(const cq_kvpool *p, const uint8_t *src, size_t len,
                                       cq_block_wire_info *info, cq_err *err);
/* Validate and insert as a cached (published, unreferenced, evictable) block of the prefix
 * index. Its parent (position > 0) must be cached already (CQ_ERR_STATE otherwise); a block
 * already cached under that hash is left as it is (CQ_OK, *inserted = 0). CQ_ERR_BUDGET when
 * it does not fit after evicting unreferenced blocks other than its ancestors (nothing
 * changed). A later cq_seq_adopt_prefix adopts it like a block published locally.
 * inserted may be NULL. */
CQ_API cq_status cq_kvpool_block_insert(cq_kvpool *p, const uint8_t *src, size_t len,
                                        int *inserted, cq_err *err);

/* ------------------------------------------------------------ save and restore
 * Cache file format version 3 (docs/CACHE_FILE.md, "Version 3"; docs/SERVING.md, "Save and
 * restore"): CONF (the pool's configuration hash, model hash, layout, formats), BLKS (every
 * full block in the wire form of "Blocks on the wire") and, for a sequence, TAIL (its open
 * block and fp16 in-flight groups); every section CRC-32C checked; written with the atomic
 * writer of include/cq_file.h. Loading validates the whole file before it takes the pool
 * mutex, then reserves the budget for all of it (CQ_ERR_BUDGET: nothing changed).
 * Another configuration or model: CQ_ERR_MISMATCH. cq_cache_load refuses version 3
 * (CQ_ERR_VERSION). */

/* Save sequence s (every layer at the same length, else CQ_ERR_STATE). tokens[0, n_tokens)
 * are its token ids (n_tokens <= its length), or NULL (n_tokens 0) when unknown: then its
 * blocks are restored private and unpublished. With tokens, its published blocks (checked
 * against them: CQ_ERR_MISMATCH) are re-published on load. A sequence holding a partial
 * block (cq_seq_truncate) is refused with CQ_ERR_UNSUPPORTED. */
CQ_API cq_status cq_kvpool_save_seq(const cq_seq *s, const uint32_t *tokens, uint32_t n_tokens,
                                    const char *path, cq_err *err);
/* A new sequence of p holding what the saved one held (reads, exports, attention and later
 * appends bit-identical). Published blocks whose equal is cached already are shared (dedup),
 * the others re-published after their chain is verified. */
CQ_API cq_status cq_kvpool_load_seq(cq_kvpool *p, const char *path, cq_seq **out, cq_err *err);
/* Every cached (published) block of the pool, parents before children: a warm start. */
CQ_API cq_status cq_kvpool_save_cached(const cq_kvpool *p, const char *path, cq_err *err);
/* Insert the file's blocks as cached, unreferenced blocks (blocks cached already are kept);
 * each block's parent must precede it in the file or be cached (CQ_ERR_FORMAT). */
CQ_API cq_status cq_kvpool_load_cached(cq_kvpool *p, const char *path, cq_err *err);

#ifdef __cplusplus
}
#endif
#endif /* CQ_SERVE_H */
