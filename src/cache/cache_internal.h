/* SPDX-License-Identifier: MIT */
/*
 * cache_internal.h - the private structure of cq_cache (include/cq_cache.h):
 * per (layer, KV head) a key store and a value store, each a list of pages,
 * plus the fp16 sink tokens. Shared by cache.c (lifecycle, append, read,
 * accounting), store.c (pages and units), attend.c (attention drivers) and the fused
 * formats (fused.h).
 *
 * Store kinds. The fused formats (fused.h: one cq_fused_ops each, the store's `fused`)
 * and the generic codec path. Per-token formats (fp16, INT8, INT4 values) keep a page as
 * [P][token bytes] codes then [P] fp16 scales. Unit formats (CQ-4/CQ-4+ key
 * groups of G tokens; generic registry codecs in units of U tokens) keep a page
 * as P/U fixed slots; a CQ-4 slot is payload | scales | sidecar in the
 * canonical byte form of cq_encode_key_group. Every page starts with a
 * 64-byte header so its data is cache-line aligned.
 *
 * Row layout (docs/CACHE.md, "Row layout"): a role whose per-token block codec
 * cannot code one head but can code the token's row of all KV heads
 * (n_kv_heads * head_dim channels, llama.cpp's layout) is held in one generic
 * store of the layer (cq_layer.row[role], D = H * head_dim); each head's store
 * of that role is then a view (ST_ROW: no pages, no tokens of its own) that
 * names the row store and the head's channel offset in the row.
 */
#ifndef CQ_CACHE_INTERNAL_H
#define CQ_CACHE_INTERNAL_H

#include <stdatomic.h>

#include "cq_cache.h"
#include "cq_codec.h"
#include "page_arena.h"
#include "../kernels/cq_kernels.h"

enum { ST_F16 = 0, ST_I8 = 1, ST_I4V = 2, ST_I4K = 3, ST_GEN = 4, ST_ROW = 5 };

#define CQ_PAGE_HDR 64u

typedef struct cq_page_hdr {
    uint32_t magic;   /* 0x43515047 "CQPG" */
    uint32_t index;   /* page number within its store */
    uint32_t kind;    /* ST_* */
    uint32_t pad[13];
} cq_page_hdr;

typedef struct cq_store {
    int kind;                        /* ST_* (the number the cache file records) */
    const struct cq_fused_ops *fused; /* the fused format (fused.h), or NULL: generic / view */
    int per_token;                   /* a fused format coding each token on its own */
    cq_role role;
    uint32_t D;
    uint32_t unit;        /* tokens per coded unit (1 for per-token kinds) */
    uint32_t tok_bytes;   /* per-token kinds: code bytes of a token */
    size_t slot_bytes;    /* unit kinds: bytes of one slot */
    size_t off_scales;    /* ST_I4K: offset of the scales in a slot */
    size_t off_sidecar;   /* ST_I4K: offset of the sidecar in a slot */
    size_t off_tscales;   /* per-token kinds: offset of the scale array in a page (aligned) */
    uint32_t page_units;  /* units per page (tokens for per-token kinds) */
    size_t page_bytes;    /* data bytes of a page, header excluded */
    uint8_t **pages;
    uint32_t n_pages, cap_pages;
    uint32_t n_done;      /* tokens committed to pages */
    uint16_t *resid;      /* [resid_cap][D] fp16 in-flight tokens (unit kinds) */
    uint32_t n_resid;
    uint32_t window;      /* ST_GEN: newest tokens kept fp16 (sliding window), else 0 */
    uint32_t resid_cap;   /* unit + window: a unit is encoded when resid holds this many */
    uint32_t tail_g;      /* tokens of the last unit when it is a flushed partial one, else 0 */
    int tiled;                     /* ST_I4K: groups held as key tiles; ST_I4V: pages held
                                      as value blocks (cq_tiles.h, docs/CACHE.md) */
    const cq_params *params;       /* ST_I4K */
    const cq_codec_traits *codec;  /* ST_GEN */
    cq_codec_cfg ccfg;             /* ST_GEN: full units */
    cq_codec_cfg ccfg_tail;        /* ST_GEN: the unit a flush closes early (no fp16 window:
                                      cfg.residual = 0, so a flush really quantizes it) */
    const struct cq_store *row;    /* ST_ROW: the layer's row store of this role */
    uint32_t row_off;              /* ST_ROW: first channel of this head in the row */
} cq_store;

typedef struct cq_head {
    cq_store k, v;
    uint16_t *sink_k, *sink_v; /* [n_sinks][D] fp16 each */
    cq_params *kparams;        /* CQ-4 / CQ-4+ keys */
} cq_head;

typedef struct cq_layer {
    cq_codec_id kid, vid;
    uint32_t tokens;
    cq_head *heads; /* [n_kv_heads] */
    /* Row layout: row[role] is a generic store of D = n_kv_heads * head_dim (allocated
     * and charged to the layer), or NULL for a per-head role. */
    cq_store *row[2];
    _Atomic uint64_t bytes; /* allocations charged to this layer */
} cq_layer;

/* Where a store's pages come from when the cache does not own them (the serving pool,
 * src/serve/kvpool.c, docs/SERVING.md): page(ctx, c, l, s, index) returns page `index` of
 * store s of layer l, 64-byte aligned, CQ_PAGE_HDR + s->page_bytes long, header written,
 * or NULL. Such pages belong to the source: trim and release only drop the pointers. */
typedef struct cq_page_source {
    uint8_t *(*page)(void *ctx, const struct cq_cache *c, const cq_layer *l, const cq_store *s,
                     uint32_t index);
    void *ctx;
    /* Partial pages (a pool sequence truncated inside a committed key group, docs/SERVING.md):
     * page part_page[i] (ascending) holds tokens at its first part_used[i] positions only; its
     * other positions are held but are no tokens of the sequence, and attention skips them.
     * n_part = 0: every page is whole (always so for a cq_cache's own pages). */
    const uint32_t *part_page, *part_used;
    uint32_t n_part;
} cq_page_source;

struct cq_cache {
    cq_cache_config cfg;       /* copy; pointers point at the copies below */
    cq_layer_codecs *codecs;   /* [n_layers] */
    uint8_t *masks;            /* [n_layers][n_kv_heads][D] or NULL */
    cq_layer *layers;
    uint32_t page_tokens;
    int sealed;                /* flushed: appends refused until reset */
    _Atomic uint64_t bytes;    /* every allocation, counted by the allocator wrappers */
    const cq_kernels *kern;
    const cq_page_source *pager; /* NULL: the cache allocates its own pages */
    cq_page_arena *arena;      /* huge-page arena of the larger pages (page_arena.h); made when
                                  the first page would come from it, NULL before */
    int no_arena;              /* CQ_HUGE_PAGES was "0" at create: pages from malloc only */
};

/* Allocation wrappers: charge the cache (and the layer, if any). cq_cache_alloc_aligned_ is
 * the pages' (64-byte aligned): from the cache's arena when the page is at least
 * CQ_ARENA_MIN_PAGE and the cache already holds CQ_ARENA_START bytes, else malloc. A page is
 * charged its n bytes either way; the arena's committed bytes beyond its live pages are the
 * whole cache's slack (cq_cache_memory, cq_cache_allocated_bytes). */
void *cq_cache_alloc_(cq_cache *c, cq_layer *l, size_t n, int zero);
void *cq_cache_alloc_aligned_(cq_cache *c, cq_layer *l, size_t n);
void cq_cache_free_(cq_cache *c, cq_layer *l, void *p, size_t n);

/* Every store of a layer that holds data, for i in [0, cq_layer_n_stores(H)): the per-head
 * stores (i = 2h keys, 2h + 1 values), then the two row stores (i = 2H + role). NULL for a
 * view (ST_ROW) or an unused row store. cq_layer_store_off: the channel offset of store i's
 * slice in a token's [n_kv_heads][head_dim] input row. */
static inline uint32_t cq_layer_n_stores(uint32_t H) { return 2 * H + 2; }
static inline cq_store *cq_layer_store(cq_layer *l, uint32_t H, uint32_t i) {
    if (i >= 2 * H) return l->row[i - 2 * H];
    cq_store *s = i & 1 ? &l->heads[i / 2].v : &l->heads[i / 2].k;
    return s->kind == ST_ROW ? NULL : s;
}
static inline const cq_store *cq_layer_store_c(const cq_layer *l, uint32_t H, uint32_t i) {
    return cq_layer_store((cq_layer *)l, H, i);
}
static inline size_t cq_layer_store_off(uint32_t H, uint32_t D, uint32_t i) {
    return i < 2 * H ? (size_t)(i / 2) * D : 0;
}
/* The store that holds the tokens of a per-head store (itself, or a view's row store). */
static inline const cq_store *cq_store_data(const cq_store *s) {
    return s->kind == ST_ROW ? s->row : s;
}

/* The layout rule (cq_cache_layout_for) for a cache's configuration. */
cq_cache_layout cq_layout_rule(cq_codec_id id, cq_role role, uint32_t H, uint32_t D,
                               uint32_t group);

/* store.c */
/* A store of dim D channels per token (head_dim, or n_kv_heads * head_dim for a row store). */
cq_status cq_store_init(cq_cache *c, cq_layer *l, cq_store *s, cq_role role, cq_codec_id id,
                        uint32_t D, const cq_params *kp, const uint8_t *mask, int force_generic,
                        cq_err *err);
/* Make s a view of head slice [off, off + head_dim) of the row store `row`. */
void cq_store_init_view(cq_store *s, cq_role role, uint32_t D, const cq_store *row, uint32_t off);
/* The committed tokens of a store in the registry's packed form (cq_cache_export). */
cq_status cq_store_export(const cq_store *s, uint8_t *dst, size_t cap, size_t *len, cq_err *err);
void cq_store_release(cq_cache *c, cq_layer *l, cq_store *s);
/* Make sure pages exist for committed tokens up to `tokens` (+ one partial unit if partial). */
cq_status cq_store_reserve(cq_cache *c, cq_layer *l, cq_store *s, uint64_t tokens);
uint32_t cq_store_tokens(const cq_store *s);
/* Free pages beyond the first `keep` (undo of a failed reserve). */
void cq_store_trim(cq_cache *c, cq_layer *l, cq_store *s, uint32_t keep);
/* Bytes of a committed unit/token span, for accounting. */
void cq_store_account(const cq_store *s, cq_cache_mem *m);
/* fp16, INT8 and INT4-value stores code each token on its own; the others are unit stores. */
static inline int cq_store_per_token(const cq_store *s) { return s->per_token; }
/* Pointer to slot u (unit kinds) or to token t's codes / scale (per-token kinds). */
static inline uint8_t *cq_store_slot(const cq_store *s, uint32_t u) {
    return s->pages[u / s->page_units] + CQ_PAGE_HDR + (size_t)(u % s->page_units) * s->slot_bytes;
}
static inline uint8_t *cq_store_codes(const cq_store *s, uint32_t t) {
    return s->pages[t / s->page_units] + CQ_PAGE_HDR + (size_t)(t % s->page_units) * s->tok_bytes;
}
/* ST_I4V with tiled: the value block holding token t (t % CQ_VB_TOK is its position). */
static inline uint8_t *cq_store_vblock(const cq_store *s, uint32_t t) {
    return s->pages[t / s->page_units] + CQ_PAGE_HDR +
           (size_t)(t % s->page_units / CQ_VB_TOK) * CQ_VB_TOK * s->tok_bytes;
}
/* Token t's codes of a per-token store in the contract's byte form (tok_bytes) to / from
 * the page (a copy, or the value-block permutation). */
void cq_store_put_codes(const cq_store *s, uint32_t t, const uint8_t *codes);
void cq_store_get_codes(const cq_store *s, uint32_t t, uint8_t *codes);
/* A CQ-4 key group's canonical payload, just written to its slot, into the store's layout. */
static inline void cq_store_key_committed(const cq_store *s, uint8_t *slot, uint32_t g) {
    if (s->tiled) cq_kt_pack(slot, s->params->kept, g);
}
static inline uint16_t *cq_store_scale(const cq_store *s, uint32_t t) {
    uint8_t *pg = s->pages[t / s->page_units] + CQ_PAGE_HDR;
    return (uint16_t *)(pg + s->off_tscales) + t % s->page_units;
}
/* Tokens in committed unit u. */
static inline uint32_t cq_store_unit_len(const cq_store *s, uint32_t u) {
    uint32_t nu = (s->n_done + s->unit - 1) / s->unit;
    return (s->tail_g && u + 1 == nu) ? s->tail_g : s->unit;
}
/* The codec configuration unit u was coded with (the flushed tail has no window). */
static inline const cq_codec_cfg *cq_store_ccfg(const cq_store *s, uint32_t u) {
    uint32_t nu = (s->n_done + s->unit - 1) / s->unit;
    return (s->tail_g && u + 1 == nu) ? &s->ccfg_tail : &s->ccfg;
}
/* Packed bytes of committed unit u (ST_GEN). */
static inline size_t cq_store_gen_bytes(const cq_store *s, uint32_t u) {
    return s->codec->packed_bytes(cq_store_ccfg(s, u), s->role, cq_store_unit_len(s, u));
}
/* A generic-codec store's packed committed bytes d (the cq_cache_export form of n_done
 * tokens; the last unit tail_g tokens when tail_g, coded with ccfg_tail) decoded unit by unit
 * once: decoders are memory-safe on any bytes but may refuse some (a rotation that overflows
 * fp16, say) or decode them to non-finite values (a NaN KIVI min, say), which no encoder
 * writes; both are refused, so bytes that pass never fail later in read or attention.
 * CQ_ERR_FORMAT names the unit (where: the caller's context); CQ_ERR_NOMEM. */
cq_status cq_store_gen_check(const cq_store *s, const uint8_t *d, uint32_t n_done,
                             uint32_t tail_g, const char *where, cq_err *err);
/* Decode rows [r0, r1) of the store (committed or in flight) to fp32 out [r1-r0][D]; a view
 * decodes the row store's rows and returns its head's slice. */
cq_status cq_store_read(const cq_store *s, const cq_kernels *kern, uint32_t r0, uint32_t r1,
                        float *out);

#endif
