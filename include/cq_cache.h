/* SPDX-License-Identifier: MIT */
/*
 * cq_cache.h - the streaming KV cache of one sequence, with attention computed
 * straight over the compressed data.
 *
 * Shape: n_layers x n_kv_heads x head_dim. Each layer chooses its key codec and
 * value codec independently (fp16, CQ-8, CQ-4, CQ-4+ have fused fast paths;
 * any other streaming codec of the registry is stored through its packed
 * form and attended through a generic decode path). Keys of CQ-4/CQ-4+ enter
 * an fp16 residual group and are quantized as a block when G tokens have
 * arrived (bit-exact with cq_encode_key_group); values are quantized on
 * arrival. The first n_sinks tokens may be kept in fp16. Storage grows in
 * pages. Append is all-or-nothing.
 *
 * Threading: append/flush/reset mutate and need exclusive access; read,
 * memory and attention are read-only and may run concurrently on one cache.
 *
 * STATUS: this header is the interface contract between the cache (src/cache,
 * src/kernels) and its users (the model runtime, tools). See docs/CACHE.md.
 *
 * Tier: STABLE CORE - what a runtime links; its ABI is kept within a major version
 * (docs/EMBEDDING.md).
 */
#ifndef CQ_CACHE_H
#define CQ_CACHE_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>

#include "cq_error.h"
#include "cq_pool.h"
#include "cq_registry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cq_cache cq_cache;

/* Per-layer codec choice. */
typedef struct cq_layer_codecs {
    cq_codec_id key;
    cq_codec_id val;
} cq_layer_codecs;

typedef struct cq_cache_config {
    uint32_t n_layers;
    uint32_t n_kv_heads;
    uint32_t head_dim;        /* D */
    cq_codec_id key_codec;    /* default for every layer (CQ_CODEC_FP16, _CQ8, _CQ4, _CQ4P, ...) */
    cq_codec_id val_codec;
    const cq_layer_codecs *layer_codecs; /* optional [n_layers] override; NULL = defaults */
    uint32_t group;           /* G of CQ-4/CQ-4+ keys (0 = 128) */
    uint32_t n_sinks;         /* first S tokens of every (layer, head) kept in fp16 */
    uint32_t page_tokens;     /* tokens per storage page (0 = default 1024; at most 2^20 and at most
                                 1 MiB of fp16 tokens, 2^19 / head_dim; rounded up to a multiple of G) */
    uint32_t max_tokens;      /* 0 = unbounded; append beyond it fails with CQ_ERR_RANGE */
    /* CQ-4+ key outlier masks: [n_layers][n_kv_heads][head_dim] bytes, 1 = outlier.
     * Required when any layer uses CQ-4+ keys; copied at create. */
    const uint8_t *outlier_masks;
    /* Added by the cache implementation (zero = default, so older callers are unaffected): */
    uint32_t force_generic;   /* 1: store every codec through the generic registry path (tests);
                                 0 or 1, anything else is CQ_ERR_ARG */
    const char *kernels;      /* NULL: auto (cpuid, CQ_KERNELS env); "scalar", "avx2" or "avx512" to force */
} cq_cache_config;

CQ_API void cq_cache_config_default(cq_cache_config *cfg, uint32_t n_layers, uint32_t n_kv_heads,
                             uint32_t head_dim);

CQ_API cq_status cq_cache_create(const cq_cache_config *cfg, cq_cache **out, cq_err *err);
CQ_API void cq_cache_free(cq_cache *c); /* accepts NULL */
/* Forget all tokens (keeps configuration and, where possible, pages). */
CQ_API void cq_cache_reset(cq_cache *c);
/* A deep copy (same configuration and contents). */
CQ_API cq_status cq_cache_clone(const cq_cache *c, cq_cache **out, cq_err *err);

/* Load the text mask format of ../shared/vectors/masks ("layer kv_head c0 c1 ...",
 * '#' comments) into masks [n_layers][n_kv_heads][head_dim]; every (layer, head)
 * must be listed exactly once with sorted, unique channels < head_dim. */
CQ_API cq_status cq_mask_load(const char *path, uint32_t n_layers, uint32_t n_kv_heads,
                       uint32_t head_dim, uint8_t *masks, cq_err *err);

/* Append n tokens to one layer. K, V: [n][n_kv_heads][head_dim] fp16 bits
 * (token-major, then head). All-or-nothing: on any error the cache is unchanged. */
CQ_API cq_status cq_cache_append(cq_cache *c, uint32_t layer, const uint16_t *K, const uint16_t *V,
                          uint32_t n, cq_err *err);
/* Same from fp32 (rounded to fp16 RNE first; that rounding is the cache's input). */
CQ_API cq_status cq_cache_append_f32(cq_cache *c, uint32_t layer, const float *K, const float *V,
                              uint32_t n, cq_err *err);
/* Quantize every partial key group now (end of sequence). After a flush the
 * cache is sealed: further appends fail with CQ_ERR_STATE until cq_cache_reset. */
CQ_API cq_status cq_cache_flush(cq_cache *c, cq_err *err);

CQ_API uint32_t cq_cache_tokens(const cq_cache *c, uint32_t layer);
CQ_API const cq_cache_config *cq_cache_get_config(const cq_cache *c);

/* Storage layout of one role of one layer (docs/CACHE.md, "Row layout").
 * HEAD: each KV head has its own store, coded [T][head_dim] (the default).
 * ROW: the codec codes one token's row of all KV heads, [T][n_kv_heads * head_dim]
 * (llama.cpp's cache layout), in one store of the layer; each head reads its slice
 * [h * head_dim, (h + 1) * head_dim) of the decoded row. Chosen automatically and
 * only when the per-head layout cannot code the role: a streaming registry codec
 * (not fp16, not a ChannelQuant tier) of one token per unit (a sliding fp16 window,
 * as KIVI's values keep, is allowed) that cannot code head_dim channels but can
 * code n_kv_heads * head_dim (e.g. q4_0's 32-channel blocks at head_dim 8 with 4
 * KV heads). Sinks stay per head. */
typedef enum cq_cache_layout { CQ_LAYOUT_HEAD = 0, CQ_LAYOUT_ROW = 1 } cq_cache_layout;

/* The layout a cache of n_kv_heads x head_dim (key group `group`, 0 = 128) gives codec
 * id in role. HEAD also when the codec cannot be cached at all (create then fails). */
CQ_API cq_cache_layout cq_cache_layout_for(cq_codec_id id, cq_role role, uint32_t n_kv_heads,
                                    uint32_t head_dim, uint32_t group);
/* The layout of (layer, role) of a cache (HEAD for a bad layer). */
CQ_API cq_cache_layout cq_cache_get_layout(const cq_cache *c, uint32_t layer, cq_role role);

/* Decode tokens [t0, t1) of (layer, kv head) to fp32: K, V [t1-t0][D] (either may be NULL).
 * In-flight (unflushed) tokens come back exactly as their fp16. A row-layout role
 * decodes the token rows and returns the head's slice. */
CQ_API cq_status cq_cache_read(const cq_cache *c, uint32_t layer, uint32_t head, uint32_t t0,
                        uint32_t t1, float *K, float *V, cq_err *err);

/* Exact bytes held (all allocations of the cache), split by role. */
typedef struct cq_cache_mem {
    uint64_t payload;   /* packed codes */
    uint64_t scales;    /* scales, zero points, norms */
    uint64_t sidecar;   /* fp16 outlier channels */
    uint64_t residual;  /* fp16 in-flight key groups / residual windows (allocated capacity) */
    uint64_t sinks;     /* fp16 sink tokens */
    uint64_t slack;     /* allocated but unused page space */
    uint64_t headers;   /* page headers and per-(layer, head) bookkeeping */
    uint64_t total;     /* sum of the above */
    uint64_t tokens;    /* tokens x kv heads summed over the layers counted */
    double bits_per_value; /* 8 * total / (tokens * D * 2) (K and V) */
} cq_cache_mem;

/* layer = -1 for the whole cache. */
CQ_API cq_status cq_cache_memory(const cq_cache *c, int32_t layer, cq_cache_mem *out);
/* The allocator's own running count of bytes held (layer = -1: all); equals
 * cq_cache_memory().total, which is computed independently from the structure. */
CQ_API uint64_t cq_cache_allocated_bytes(const cq_cache *c, int32_t layer);

/* The committed (flushed or completed-unit) tokens of (layer, head, role) in the
 * registry's packed form of the store's codec: for the fused tiers exactly the
 * bytes traits->encode gives for the same tokens (payload | scales | sidecar);
 * for a generic codec the concatenation of its units' packed blobs. Sink tokens
 * are not included. A row-layout role (cq_cache_get_layout) has one packed stream
 * for all heads, coded [T][n_kv_heads * head_dim]: every head returns that same
 * stream. dst NULL: only *len. CQ_ERR_BUFFER if cap < *len. */
CQ_API cq_status cq_cache_export(const cq_cache *c, uint32_t layer, uint32_t head, cq_role role,
                          uint8_t *dst, size_t cap, size_t *len, cq_err *err);
/* Tokens of (layer, head, role) committed to pages (excludes sinks and the in-flight group;
 * a row-layout role: the row store's, the same for every head). */
CQ_API uint32_t cq_cache_committed(const cq_cache *c, uint32_t layer, uint32_t head, cq_role role);

/* Name of the kernel table a cache (or, with NULL, a new cache) uses: "scalar", "avx2" or "avx512". */
CQ_API const char *cq_cache_kernels(const cq_cache *c);

/* ------------------------------------------------------------- attention */

/* Arithmetic of attention over CQ-4 / CQ-4+ keys and INT4 values (docs/CACHE.md,
 * "Tolerance"). EXACT: fp32 dot of the codes with q .* scales and fp32 value sums (the
 * tight bound). FAST: q .* scales rounded once per (key group run, query head) to int8 in
 * blocks of 8 channels with power-of-two block steps, exact integer dot products, one fp32
 * multiply per score (a score error of up to half a step per channel times the code), and
 * 7-bit dithered softmax weights for INT4 values; a run whose blocks could move a score by
 * more than 1 (in logit units) takes the EXACT dot instead, so FAST's key error is at most
 * 1 per score. Every other format and the softmax are the same in both.
 * DEFAULT: FAST, or what CQ_ATTN_PRECISION=exact|fast in the environment names. */
typedef enum cq_attn_precision {
    CQ_ATTN_DEFAULT = 0,
    CQ_ATTN_EXACT = 1,
    CQ_ATTN_FAST = 2
} cq_attn_precision;

typedef struct cq_attn_opts {
    uint32_t n_threads; /* 0 = all of `pool`'s threads, or 1 without a pool; at most the pool's */
    float scale;        /* 0 = 1/sqrt(head_dim); else finite and > 0 (CQ_ERR_ARG otherwise) */
    uint32_t precision; /* cq_attn_precision; 0 = default (added field: zero keeps old callers valid) */
    struct cq_pool *pool; /* the threads to run on (include/cq_pool.h); NULL = the process's
                             default pool (added field: zero keeps old callers valid) */
} cq_attn_opts;

/* The precision a call with opts->precision = p would use (resolves DEFAULT). */
CQ_API cq_attn_precision cq_attn_precision_resolve(uint32_t p);

/* Decode attention: one query token attending to all tokens of the layer.
 * Scores beyond the fp32 range (finite but extreme queries against large keys)
 * are CQ_ERR_OVERFLOW with out zeroed, never CQ_OK with NaN (also prefill).
 * q, out: [n_q_heads][D] fp32; n_q_heads a multiple of n_kv_heads (GQA: query
 * head h uses kv head h / (n_q_heads / n_kv_heads)). */
CQ_API cq_status cq_cache_attend(const cq_cache *c, uint32_t layer, const float *q, uint32_t n_q_heads,
                          float *out, const cq_attn_opts *opts, cq_err *err);

/* Prefill attention with the causal mask: query i (i < n_q) sits at absolute
 * position pos0 + i and attends to tokens [0, pos0 + i]. q, out:
 * [n_q][n_q_heads][D]. Requires pos0 + n_q <= tokens of the layer. */
CQ_API cq_status cq_cache_attend_prefill(const cq_cache *c, uint32_t layer, const float *q, uint32_t n_q,
                                  uint32_t pos0, uint32_t n_q_heads, float *out,
                                  const cq_attn_opts *opts, cq_err *err);

/* Reference: read back (cq_cache_read), then exact attention in double. Same shapes. */
CQ_API cq_status cq_cache_attend_ref(const cq_cache *c, uint32_t layer, const float *q, uint32_t n_q,
                              uint32_t pos0, uint32_t n_q_heads, float *out, float scale,
                              cq_err *err);

/* ------------------------------------------------------------ measurement */

/* Best-of-reps streaming read bandwidth in GB/s (1e9 bytes/s) over buf (64-byte
 * aligned, bytes far larger than the last-level cache), split across n_threads
 * threads of pool (NULL: the process's default pool), as attention reads the cache.
 * 0 on bad arguments. */
CQ_API double cq_read_bandwidth(struct cq_pool *pool, const void *buf, size_t bytes, uint32_t n_threads,
                                uint32_t reps);

/* The bandwidth probe (docs/CACHE.md, "The bandwidth probe"): several read kernels, each
 * timed as a best-of-reps streaming read of the same buffer with the same thread count,
 * taken repeatedly (cq bench: before, between and after its timed steps), then summarized
 * as a median and a spread so a reader can tell a steady figure from a drifting one. */
typedef enum cq_bw_kernel {
    CQ_BW_SUM = 0,   /* the kernel table's read_sum (plain loads) on the pool's threads */
    CQ_BW_NT = 1,    /* read_sum_nt (non-temporal loads where the table has them) on the pool */
    CQ_BW_PINNED = 2 /* read_sum on n_threads threads of the probe's own, each pinned to a
                        different CPU of the process's affinity set, spread apart (unpinned
                        where the system refuses or there are fewer CPUs than threads) */
} cq_bw_kernel;
#define CQ_BW_N_KERNELS 3
#define CQ_BW_MAX_READINGS 16
/* a probe whose readings spread wider than this fraction of their median is unstable */
#define CQ_BW_UNSTABLE_SPREAD 0.20

typedef struct cq_bw_probe {
    uint32_t n;                                       /* readings taken */
    double gbs[CQ_BW_MAX_READINGS][CQ_BW_N_KERNELS];  /* GB/s per reading and kernel */
    uint32_t pinned;                                  /* CPUs the pinned kernel got (last reading) */
} cq_bw_probe;

typedef struct cq_bw_summary {
    uint32_t n;        /* readings */
    double median;     /* median over readings of each reading's best kernel, GB/s */
    double min, max;   /* the least and largest of those */
    double spread;     /* (max - min) / median */
    int unstable;      /* spread > CQ_BW_UNSTABLE_SPREAD, or no reading */
    double kernel_median[CQ_BW_N_KERNELS]; /* median over readings per kernel */
} cq_bw_summary;

/* One kernel of the probe: best-of-reps GB/s, arguments as cq_read_bandwidth's (which is
 * CQ_BW_SUM); 0 on bad arguments or an unknown kernel. */
CQ_API double cq_read_bandwidth_kernel(struct cq_pool *pool, const void *buf, size_t bytes,
                                       uint32_t n_threads, uint32_t reps, cq_bw_kernel kernel);
/* Take one reading (every kernel, best of reps each) into p->gbs[p->n++]. CQ_ERR_NULL,
 * CQ_ERR_RANGE when p already holds CQ_BW_MAX_READINGS, CQ_ERR_ARG when a kernel reads 0
 * (bad buffer or thread count; p unchanged). */
CQ_API cq_status cq_bw_probe_read(cq_bw_probe *p, struct cq_pool *pool, const void *buf,
                                  size_t bytes, uint32_t n_threads, uint32_t reps);
/* The probe's median, extremes, spread and stability (all zero and unstable with no
 * reading); medians of an even count are the mean of the middle two. */
CQ_API void cq_bw_probe_summarize(const cq_bw_probe *p, cq_bw_summary *s);

/* ======================================================================
 * Persistence (issue 7): save / restore a whole cache, compare two caches.
 * File format: docs/CACHE_FILE.md (magic "CQKVCACH", format version 2 when a
 * layer has a row-layout store, else version 1; both load; little-endian, a
 * CRC-32C per section). Implemented in src/cache/persist.c.
 * ====================================================================== */

/* Save the whole cache (configuration, every committed token in its packed
 * form, in-flight key groups, sinks, flushed state) atomically with
 * cq_write_file_atomic (include/cq_file.h): a temporary file in the same
 * directory, fsync, rename, fsync of the directory; an existing file keeps its
 * mode, a new one gets 0666 minus the umask; a symlink is written through; a
 * non-regular path is refused (CQ_ERR_IO). A crash mid-write leaves the
 * previous file intact. The cache is not modified
 * (read-only: may run concurrently with attention, not with append). */
CQ_API cq_status cq_cache_save(const cq_cache *c, const char *path, cq_err *err);
/* The same image in memory: *buf (free() it) of *len bytes. */
CQ_API cq_status cq_cache_save_mem(const cq_cache *c, uint8_t **buf, size_t *len, cq_err *err);

typedef struct cq_cache_load_opts {
    /* Refuse a file whose restored cache would hold more than this many bytes
     * (checked before anything is allocated; a file larger than it is refused
     * before it is read). 0 = 256 MiB + 16 x file size, plus the unfilled part of
     * each store's last page (docs/CACHE_FILE.md): every saved cache loads. */
    uint64_t max_bytes;
    const char *kernels; /* as cq_cache_config.kernels (NULL: auto) */
} cq_cache_load_opts;

/* Restore a cache saved by cq_cache_save. The file carries the configuration.
 * Everything is validated before it is trusted; on any error *out is NULL and
 * err names the failed check: CQ_ERR_FORMAT (magic, size/truncation, section
 * layout, shape, counts, invariants), CQ_ERR_CHECKSUM (header or section CRC),
 * CQ_ERR_VERSION, CQ_ERR_RANGE (memory limit, max_tokens), CQ_ERR_IO, or the
 * cq_cache_create status of an invalid configuration. The restored cache is
 * bit-identical (cq_cache_compare) and continues exactly as the original. */
CQ_API cq_status cq_cache_load(const char *path, cq_cache **out, cq_err *err);
CQ_API cq_status cq_cache_load_ex(const char *path, const cq_cache_load_opts *opts, cq_cache **out,
                           cq_err *err);
/* From memory (tests, fuzzers); buf is not retained. */
CQ_API cq_status cq_cache_load_mem(const void *buf, size_t len, cq_cache **out, cq_err *err);
CQ_API cq_status cq_cache_load_mem_ex(const void *buf, size_t len, const cq_cache_load_opts *opts,
                               cq_cache **out, cq_err *err);

/* CQ_OK when a and b hold the same configuration, flushed state, token counts,
 * packed bytes of every store, in-flight tokens and sinks (page capacity and
 * the kernel table are not compared); else CQ_ERR_MISMATCH naming the first
 * difference. */
CQ_API cq_status cq_cache_compare(const cq_cache *a, const cq_cache *b, cq_err *err);

#ifdef __cplusplus
}
#endif
#endif /* CQ_CACHE_H */
