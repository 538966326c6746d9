/* SPDX-License-Identifier: MIT */
/*
 * fused.h - the cache's table of fused formats (ggml's type_traits_cpu for the cache):
 * for each codec the cache stores in a layout of its own and attends without decoding
 * (fp16, CQ-8, CQ-4 / CQ-4+ keys, INT4 values), one cq_fused_ops row with the store's
 * layout, its encode, read-back, accounting, export and persistence, and its attention
 * kernels. The store code (store.c, cache.c), the attention drivers (attend.c) and the
 * cache file's loader (persist.c) only call through it. Any other streaming codec of the
 * registry goes through the generic path (its packed units, decoded for attention). Adding
 * a fused format: one file with its cq_fused_ops (persistence included) and one row of
 * FUSED[] in fused.c. Internal to src/cache.
 */
#ifndef CQ_FUSED_H
#define CQ_FUSED_H

#include "cache_internal.h"

#define BLK 128u /* tokens per attention run (attend.c) */
/* FAST precision: the largest error a run's 8-bit query blocks may put on a CQ-4 key score
 * (after the attention scale, so in nats of the softmax); a run whose bound exceeds it takes the
 * EXACT dot (fused_cq4k.c fast_keys_ok; docs/CACHE.md, "Tolerance"). */
#define CQ_FAST_KEY_DELTA 1.0f

/* Per-thread scratch of the attention drivers (attend.c), sized for the layer's stores. */
typedef struct run_scratch {
    float *qp;              /* [nh][D] */
    float *qo;              /* [nh][k]: the query at the CQ-4+ outlier channels */
    float *qg;              /* [nh][kept]: the query at the CQ-4+ kept channels */
    int8_t *q8;             /* [nh][D]: FAST precision, qp rounded to int8 per block */
    uint8_t *qsh;           /* [nh][D / CQ_Q8_BLOCK + 1]: block shifts */
    float *qsc;             /* [nh]: scales */
    int prec;               /* CQ_ATTN_EXACT or CQ_ATTN_FAST */
    float *s;               /* [nh][BLK] scores */
    float *es;              /* [nh]: a run's softmax sums (exp_sum) */
    float *ku, *vu;         /* decoded rows [unit or BLK][D] */
    int64_t ku_id, vu_id;   /* which generic unit ku / vu hold */
    float *rowbuf;          /* row layout: a decoded row-store unit [unit][H * D] */
    uint16_t *h16;          /* row layout: in-flight tokens of the head's slice [BLK][D] */
} run_scratch;

typedef struct cq_fused_ops {
    const char *name;
    int kind;       /* ST_*: also the store kind recorded in the cache file (CACHE_FILE.md) */
    int per_token;  /* 1: each token coded on arrival, a page is [P][tok_bytes] codes then (if
                       has_scales) [P] fp16 scales; 0: units of s->unit tokens in slots */
    int has_scales; /* per-token: one fp16 scale per token */
    /* The store's layout for D channels (s->D, s->role set; page_tokens P): tok_bytes, or
     * unit, slot_bytes and the slot's offsets; and s->tiled (from the shape only). */
    void (*layout)(cq_store *s, uint32_t P);
    /* Key parameters of the tier (NULL: the format needs none). */
    cq_status (*params_init)(cq_params *p, cq_codec_id id, uint32_t D, uint32_t G,
                             const uint8_t *mask, cq_err *err);
    /* per-token formats: code token row x [D] fp16 (finite) as committed token t */
    void (*put_token)(const cq_kernels *k, cq_store *s, uint32_t t, const uint16_t *x);
    /* unit formats: code g <= unit tokens x [g][D] into slot (a unit's first, a partial one
     * only when a flush closes it) */
    void (*put_unit)(const cq_kernels *k, cq_store *s, uint8_t *slot, const uint16_t *x,
                     uint32_t g);
    /* unit formats: add a committed unit of g tokens to m; returns its bytes */
    uint64_t (*account_unit)(const cq_store *s, uint32_t g, cq_cache_mem *m);
    /* committed tokens [t0, t1) to fp32 out [t1 - t0][D] */
    cq_status (*read)(const cq_store *s, const cq_kernels *k, uint32_t t0, uint32_t t1,
                      float *out);
    /* the committed tokens in the registry's packed form (cq_cache_export): its length, and
     * the bytes into dst (that long) */
    size_t (*export_len)(const cq_store *s);
    void (*export)(const cq_store *s, uint8_t *dst);
    /* persistence (persist.c, docs/CACHE_FILE.md) of that packed form: its exact length for
     * n_done committed tokens whose last unit has tail_g tokens (0 = whole); the check of
     * untrusted bytes d of that length against the invariants append maintains (where names
     * the store in the error); the copy of checked bytes d into the store (pages reserved,
     * n_done and tail_g set) */
    uint64_t (*data_len)(const cq_store *s, uint32_t n_done, uint32_t tail_g);
    cq_status (*check)(const cq_store *s, const uint8_t *d, uint32_t n_done, uint32_t tail_g,
                       const char *where, cq_err *err);
    void (*import)(cq_store *s, const uint8_t *d);
    /* attention: optional per-call query preparation of a (layer, kv head) (q [nh][D]);
     * rows of decode scratch (run_scratch.ku) a run may need; scores of committed tokens
     * [u, u + n) (one run: inside a page or unit) into sc->s; values: acc += w . v */
    void (*prep_query)(const cq_store *s, const float *q, uint32_t nh, run_scratch *sc);
    uint32_t (*scratch_rows)(const cq_store *s);
    void (*scores)(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n,
                   const float *q, uint32_t nh, run_scratch *sc);
    void (*acc)(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n, const float *w,
                uint32_t nh, float *acc, run_scratch *sc);
} cq_fused_ops;

/* The fused format of codec id in role, or NULL (the generic path). */
const cq_fused_ops *cq_fused_find(cq_codec_id id, cq_role role);
/* Nonzero when some fused format of codec id needs an outlier mask (CQ-4+ keys). */
int cq_fused_needs_mask(cq_codec_id id);

/* The formats (one file each). */
extern const cq_fused_ops cq_fused_fp16, cq_fused_int8, cq_fused_int4v, cq_fused_cq4k;

/* Shared by the per-token formats (store.c): their packed form, codes then (has_scales)
 * little-endian scales; swap16: the codes are native fp16 written little-endian. */
size_t cq_store_export_tokens_len(const cq_store *s);
void cq_store_export_tokens(const cq_store *s, uint8_t *dst, int swap16);

/* Shared by the per-token formats' persistence (fused.c): the packed form's length; for
 * the formats with scales, the check that every scale is a positive normal fp16 and the
 * import of codes and scales. */
uint64_t cq_fused_tokens_data_len(const cq_store *s, uint32_t n_done, uint32_t tail_g);
cq_status cq_fused_tokens_check_scales(const cq_store *s, const uint8_t *d, uint32_t n_done,
                                       uint32_t tail_g, const char *where, cq_err *err);
void cq_fused_tokens_import_scaled(cq_store *s, const uint8_t *d);

/* Checks of untrusted bytes (fused.c, persist.c): n little-endian fp16 at p all finite;
 * s what cq_scale_from_amax yields (positive, normal, finite). */
int cq_fused_all_finite(const uint8_t *p, size_t n);
int cq_fused_is_scale(uint16_t s);

#endif
