/* SPDX-License-Identifier: MIT */
/*
 * cache.c - the cq_cache object: configuration, lifecycle, all-or-nothing
 * append (decode and prefill), flush, read-back, export and the memory
 * accounting (include/cq_cache.h). Page mechanics live in store.c, attention
 * in attend.c, the outlier-mask file in mask.c.
 *
 * Append order, so that nothing is half-written: (1) validate every input
 * element and the state; (2) reserve every page the tokens will need (undone
 * on failure); (3) feed the generic-codec stores, whose encoders may fail,
 * with a snapshot to restore; (4) feed the fused stores and sinks, which
 * cannot fail after (1) and (2).
 */
#include <stdlib.h>
#include <string.h>

#include "fused.h"

#define DEFAULT_PAGE_TOKENS 1024u
#define PAGE_MAX_BYTES (1u << 20)

/* ---------------------------------------------------------- allocation */

void *cq_cache_alloc_(cq_cache *c, cq_layer *l, size_t n, int zero) {
    void *p = zero ? calloc(1, n ? n : 1) : malloc(n ? n : 1);
    if (p) {
        c->bytes += n;
        if (l) l->bytes += n;
    }
    return p;
}

static uint64_t arena_slack(const cq_cache *c) { return c->arena ? cq_arena_slack(c->arena) : 0; }

void *cq_cache_alloc_aligned_(cq_cache *c, cq_layer *l, size_t n) {
    void *p = NULL;
    if (!c->no_arena && n >= CQ_ARENA_MIN_PAGE && c->bytes >= CQ_ARENA_START) {
        if (!c->arena && (c->arena = cq_cache_alloc_(c, NULL, sizeof *c->arena, 0)))
            cq_arena_init(c->arena);
        if (c->arena) p = cq_arena_alloc(c->arena, n);
    }
    if (!p) p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (p) {
        c->bytes += n;
        if (l) l->bytes += n;
    }
    return p;
}

void cq_cache_free_(cq_cache *c, cq_layer *l, void *p, size_t n) {
    if (!p) return;
    if (c->arena && cq_arena_owns(c->arena, p)) cq_arena_free(c->arena, p, n);
    else free(p);
    c->bytes -= n;
    if (l) l->bytes -= n;
}

/* ------------------------------------------------------------ lifecycle */

void cq_cache_config_default(cq_cache_config *cfg, uint32_t n_layers, uint32_t n_kv_heads,
                             uint32_t head_dim) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->n_layers = n_layers;
    cfg->n_kv_heads = n_kv_heads;
    cfg->head_dim = head_dim;
    cfg->key_codec = CQ_CODEC_CQ4;
    cfg->val_codec = CQ_CODEC_CQ4;
    cfg->group = CQ_DEFAULT_GROUP;
}

static void destroy(cq_cache *c) {
    if (!c) return;
    const uint32_t H = c->cfg.n_kv_heads, D = c->cfg.head_dim, S = c->cfg.n_sinks;
    for (uint32_t L = 0; c->layers && L < c->cfg.n_layers; L++) {
        cq_layer *l = &c->layers[L];
        if (!l->heads) continue;
        for (uint32_t h = 0; h < H; h++) {
            cq_head *hd = &l->heads[h];
            cq_store_release(c, l, &hd->k);
            cq_store_release(c, l, &hd->v);
            cq_cache_free_(c, l, hd->sink_k, (size_t)S * D * 2);
            cq_cache_free_(c, l, hd->sink_v, (size_t)S * D * 2);
            cq_cache_free_(c, l, hd->kparams, sizeof *hd->kparams);
        }
        for (int r = 0; r < 2; r++)
            if (l->row[r]) {
                cq_store_release(c, l, l->row[r]);
                cq_cache_free_(c, l, l->row[r], sizeof *l->row[r]);
            }
        cq_cache_free_(c, l, l->heads, (size_t)H * sizeof *l->heads);
    }
    cq_cache_free_(c, NULL, c->layers, (size_t)c->cfg.n_layers * sizeof *c->layers);
    cq_cache_free_(c, NULL, c->codecs, (size_t)c->cfg.n_layers * sizeof *c->codecs);
    if (c->masks) cq_cache_free_(c, NULL, c->masks, (size_t)c->cfg.n_layers * H * D);
    if (c->arena) {
        cq_arena_release(c->arena);
        cq_cache_free_(c, NULL, c->arena, sizeof *c->arena);
    }
    free(c);
}

void cq_cache_free(cq_cache *c) { destroy(c); }

static int needs_masks(const cq_cache_config *cfg) {
    for (uint32_t L = 0; L < cfg->n_layers; L++) {
        cq_codec_id k = cfg->layer_codecs ? cfg->layer_codecs[L].key : cfg->key_codec;
        if (cq_fused_needs_mask(k)) return 1;
    }
    return 0;
}

cq_status cq_cache_create(const cq_cache_config *cfg, cq_cache **out, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cfg or out is NULL");
    *out = NULL;
    const uint32_t D = cfg->head_dim;
    if (cfg->n_layers == 0 || cfg->n_kv_heads == 0 || cfg->n_layers > 4096 ||
        cfg->n_kv_heads > 4096)
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1,
                          "n_layers=%u, n_kv_heads=%u: both must be in [1, 4096]", cfg->n_layers,
                          cfg->n_kv_heads);
    if (D < CQ_MIN_DIM || D > CQ_MAX_DIM || (D & 1))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "head_dim D=%u must be even, in [%d, %d]", D,
                          CQ_MIN_DIM, CQ_MAX_DIM);
    const uint32_t G = cfg->group ? cfg->group : CQ_DEFAULT_GROUP;
    if (G > 65536) return cq_err_set(err, CQ_ERR_GROUP, -1, -1, "group G=%u is too large", G);
    if (cfg->force_generic > 1) /* the file format stores it as a 0/1 flag */
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "force_generic=%u must be 0 or 1",
                          cfg->force_generic);
    if (cfg->n_sinks > (1u << 20))
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "n_sinks=%u is too large", cfg->n_sinks);
    const cq_kernels *kern = cq_kernels_get();
    if (cfg->kernels) {
        kern = cq_kernels_by_name(cfg->kernels);
        if (!kern)
            return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1,
                              "kernels '%s' are not available here (scalar, avx2, avx512)", cfg->kernels);
    }
    int with_masks = needs_masks(cfg);
    if (with_masks && !cfg->outlier_masks)
        return cq_err_set(err, CQ_ERR_OUTLIERS, -1, -1,
                          "CQ-4+ keys need outlier_masks [n_layers][n_kv_heads][head_dim]");

    cq_cache *c = calloc(1, sizeof *c);
    if (!c) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    c->bytes = sizeof *c;
    const char *hp = getenv("CQ_HUGE_PAGES");
    c->no_arena = hp && !strcmp(hp, "0");
    c->cfg = *cfg;
    c->cfg.group = G;
    c->kern = kern;
    uint32_t pt = cfg->page_tokens ? cfg->page_tokens : DEFAULT_PAGE_TOKENS;
    if (pt > (1u << 20)) pt = 1u << 20;
    /* a page of fp16 tokens (the widest per-head store) is at most PAGE_MAX_BYTES, so a
     * few tokens never pin a huge page and a saved cache loads under the default memory
     * limit (persist.c counts at most one partly filled page per store) */
    if (pt > PAGE_MAX_BYTES / (2 * D)) pt = PAGE_MAX_BYTES / (2 * D);
    c->page_tokens = (pt + G - 1) / G * G;
    const uint32_t NL = cfg->n_layers, H = cfg->n_kv_heads, S = cfg->n_sinks;
    cq_status st = CQ_OK;
    c->codecs = cq_cache_alloc_(c, NULL, (size_t)NL * sizeof *c->codecs, 1);
    c->layers = cq_cache_alloc_(c, NULL, (size_t)NL * sizeof *c->layers, 1);
    if (with_masks) c->masks = cq_cache_alloc_(c, NULL, (size_t)NL * H * D, 1);
    if (!c->codecs || !c->layers || (with_masks && !c->masks)) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto fail;
    }
    if (with_masks) memcpy(c->masks, cfg->outlier_masks, (size_t)NL * H * D);
    for (uint32_t L = 0; L < NL; L++) {
        c->codecs[L].key = cfg->layer_codecs ? cfg->layer_codecs[L].key : cfg->key_codec;
        c->codecs[L].val = cfg->layer_codecs ? cfg->layer_codecs[L].val : cfg->val_codec;
    }
    c->cfg.layer_codecs = c->codecs;
    c->cfg.outlier_masks = c->masks;
    c->cfg.kernels = NULL; /* the caller's string need not outlive the call; c->kern holds it */
    for (uint32_t L = 0; L < NL; L++) {
        cq_layer *l = &c->layers[L];
        l->kid = c->codecs[L].key;
        l->vid = c->codecs[L].val;
        l->heads = cq_cache_alloc_(c, l, (size_t)H * sizeof *l->heads, 1);
        if (!l->heads) {
            st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
            goto fail;
        }
        /* row layout: one store of the layer codes each token's row of all heads */
        for (int r = 0; r < 2; r++) {
            cq_codec_id id = r ? l->vid : l->kid;
            cq_role role = r ? CQ_ROLE_VALUE : CQ_ROLE_KEY;
            if (cq_layout_rule(id, role, H, D, G) != CQ_LAYOUT_ROW)
                continue;
            l->row[r] = cq_cache_alloc_(c, l, sizeof *l->row[r], 1);
            if (!l->row[r]) {
                st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
                goto fail;
            }
            if ((st = cq_store_init(c, l, l->row[r], role, id, H * D, NULL, NULL, 1, err))) {
                if (err) {
                    char m[sizeof err->msg];
                    memcpy(m, err->msg, sizeof m);
                    cq_err_set(err, st, -1, -1, "layer %u, row layout: %.190s", L, m);
                }
                goto fail;
            }
        }
        for (uint32_t h = 0; h < H; h++) {
            cq_head *hd = &l->heads[h];
            const uint8_t *mask = c->masks ? c->masks + ((size_t)L * H + h) * D : NULL;
            const cq_fused_ops *kf = cfg->force_generic ? NULL : cq_fused_find(l->kid, CQ_ROLE_KEY);
            if (kf && kf->params_init) { /* the key format's parameters (CQ-4 / CQ-4+) */
                hd->kparams = cq_cache_alloc_(c, l, sizeof *hd->kparams, 1);
                if (!hd->kparams) {
                    st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
                    goto fail;
                }
                st = kf->params_init(hd->kparams, l->kid, D, G, mask, err);
                if (st) {
                    if (err) {
                        char m[sizeof err->msg];
                        memcpy(m, err->msg, sizeof m);
                        cq_err_set(err, st, -1, err->channel, "layer %u, kv head %u: %.180s", L,
                                   h, m);
                    }
                    goto fail;
                }
            }
            if (l->row[0])
                cq_store_init_view(&hd->k, CQ_ROLE_KEY, D, l->row[0], h * D);
            else if ((st = cq_store_init(c, l, &hd->k, CQ_ROLE_KEY, l->kid, D, hd->kparams,
                                         cq_fused_needs_mask(l->kid) ? mask : NULL,
                                         (int)cfg->force_generic, err)))
                goto fail;
            if (l->row[1])
                cq_store_init_view(&hd->v, CQ_ROLE_VALUE, D, l->row[1], h * D);
            else if ((st = cq_store_init(c, l, &hd->v, CQ_ROLE_VALUE, l->vid, D, NULL, NULL,
                                         (int)cfg->force_generic, err)))
                goto fail;
            if (S) {
                hd->sink_k = cq_cache_alloc_(c, l, (size_t)S * D * 2, 1);
                hd->sink_v = cq_cache_alloc_(c, l, (size_t)S * D * 2, 1);
                if (!hd->sink_k || !hd->sink_v) {
                    st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
                    goto fail;
                }
            }
        }
    }
    *out = c;
    return CQ_OK;
fail:
    destroy(c);
    return st;
}

void cq_cache_reset(cq_cache *c) {
    if (!c) return;
    for (uint32_t L = 0; L < c->cfg.n_layers; L++) {
        cq_layer *l = &c->layers[L];
        l->tokens = 0;
        for (uint32_t i = 0; i < cq_layer_n_stores(c->cfg.n_kv_heads); i++) {
            cq_store *s = cq_layer_store(l, c->cfg.n_kv_heads, i);
            if (s) s->n_done = s->n_resid = s->tail_g = 0;
        }
    }
    c->sealed = 0;
}

static cq_status clone_store(cq_cache *nc, cq_layer *nl, cq_store *d, const cq_store *s) {
    cq_status st = cq_store_reserve(nc, nl, d, (uint64_t)s->n_pages * s->page_units * s->unit);
    if (st) return st;
    for (uint32_t i = 0; i < s->n_pages; i++)
        memcpy(d->pages[i] + CQ_PAGE_HDR, s->pages[i] + CQ_PAGE_HDR, s->page_bytes);
    d->n_done = s->n_done;
    d->n_resid = s->n_resid;
    d->tail_g = s->tail_g;
    if (s->resid) memcpy(d->resid, s->resid, (size_t)s->resid_cap * s->D * 2);
    return CQ_OK;
}

cq_status cq_cache_clone(const cq_cache *c, cq_cache **out, cq_err *err) {
    cq_err_clear(err);
    if (!c || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cache or out is NULL");
    cq_cache_config cfg = c->cfg;
    cfg.kernels = c->kern->name;
    cq_cache *nc;
    cq_status st = cq_cache_create(&cfg, &nc, err);
    if (st) return st;
    const uint32_t H = c->cfg.n_kv_heads, D = c->cfg.head_dim, S = c->cfg.n_sinks;
    for (uint32_t L = 0; L < c->cfg.n_layers; L++) {
        cq_layer *l = &c->layers[L], *nl = &nc->layers[L];
        nl->tokens = l->tokens;
        for (uint32_t i = 0; i < cq_layer_n_stores(H); i++) {
            const cq_store *s = cq_layer_store_c(l, H, i);
            if (s && (st = clone_store(nc, nl, cq_layer_store(nl, H, i), s))) {
                cq_cache_free(nc);
                return cq_err_set(err, st, -1, -1, "out of memory while cloning");
            }
        }
        for (uint32_t h = 0; h < H; h++) {
            if (S) {
                memcpy(nl->heads[h].sink_k, l->heads[h].sink_k, (size_t)S * D * 2);
                memcpy(nl->heads[h].sink_v, l->heads[h].sink_v, (size_t)S * D * 2);
            }
        }
    }
    nc->sealed = c->sealed;
    *out = nc;
    return CQ_OK;
}

uint32_t cq_cache_tokens(const cq_cache *c, uint32_t layer) {
    return c && layer < c->cfg.n_layers ? c->layers[layer].tokens : 0;
}

const cq_cache_config *cq_cache_get_config(const cq_cache *c) { return c ? &c->cfg : NULL; }

const char *cq_cache_kernels(const cq_cache *c) {
    return c ? c->kern->name : cq_kernels_get()->name;
}

/* The row layout only where the per-head layout cannot code the role (docs/CACHE.md). */
cq_cache_layout cq_layout_rule(cq_codec_id id, cq_role role, uint32_t H, uint32_t D,
                               uint32_t group) {
    const cq_codec_traits *tr = cq_codec_get(id);
    if (!tr || H < 2 || id == CQ_CODEC_FP16 || (tr->flags & CQ_CODEC_F_OURS) ||
        !(tr->flags & CQ_CODEC_F_STREAMING) || !tr->encode || !tr->decode || !tr->packed_bytes ||
        (uint64_t)H * D > CQ_MAX_DIM)
        return CQ_LAYOUT_HEAD;
    cq_codec_cfg head, row;
    cq_codec_cfg_default(&head, D);
    cq_codec_cfg_default(&row, H * D);
    head.group = row.group = group ? group : CQ_DEFAULT_GROUP;
    if (cq_codec_supports(tr, &head, role) == CQ_OK || cq_codec_supports(tr, &row, role) != CQ_OK)
        return CQ_LAYOUT_HEAD;
    /* one token per unit: a unit of several tokens would code a [U][H * D] block */
    return cq_codec_unit_tokens(tr, &row, role) == 1 ? CQ_LAYOUT_ROW : CQ_LAYOUT_HEAD;
}

cq_cache_layout cq_cache_layout_for(cq_codec_id id, cq_role role, uint32_t n_kv_heads,
                                    uint32_t head_dim, uint32_t group) {
    if (n_kv_heads == 0 || n_kv_heads > 4096 || head_dim < CQ_MIN_DIM || head_dim > CQ_MAX_DIM)
        return CQ_LAYOUT_HEAD;
    return cq_layout_rule(id, role, n_kv_heads, head_dim, group);
}

cq_cache_layout cq_cache_get_layout(const cq_cache *c, uint32_t layer, cq_role role) {
    if (!c || layer >= c->cfg.n_layers || (role != CQ_ROLE_KEY && role != CQ_ROLE_VALUE))
        return CQ_LAYOUT_HEAD;
    return c->layers[layer].row[role] ? CQ_LAYOUT_ROW : CQ_LAYOUT_HEAD;
}

/* --------------------------------------------------------------- append */

/* Tokens of an append of n at layer position `tokens` that go to the stores (past the sinks). */
static uint32_t store_share(uint32_t tokens, uint32_t n, uint32_t S) {
    uint64_t end = (uint64_t)tokens + n;
    if (end <= S) return 0;
    return (uint32_t)(end - (tokens > S ? tokens : S));
}

static uint64_t committed_after(const cq_store *s, uint32_t m) {
    if (cq_store_per_token(s)) return (uint64_t)s->n_done + m;
    /* a unit is committed each time the in-flight tokens reach unit + window */
    uint64_t x = (uint64_t)s->n_resid + m;
    return s->n_done + (x > s->window ? (x - s->window) / s->unit * s->unit : 0);
}

/* Feed m tokens x [m] rows of stride xs (fp16) into a store. Only generic encoders can fail. */
static cq_status feed(cq_cache *c, cq_store *s, const uint16_t *x, size_t xs, uint32_t m,
                      int64_t pos0, cq_err *err) {
    const uint32_t D = s->D;
    const cq_kernels *k = c->kern;
    for (uint32_t i = 0; i < m; i++) {
        const uint16_t *row = x + (size_t)i * xs;
        if (cq_store_per_token(s)) { /* a fused per-token format */
            s->fused->put_token(k, s, s->n_done, row);
            s->n_done++;
            continue;
        }
        memcpy(s->resid + (size_t)s->n_resid * D, row, (size_t)D * 2);
        if (++s->n_resid < s->resid_cap) continue;
        uint8_t *slot = cq_store_slot(s, s->n_done / s->unit);
        if (s->fused) {
            s->fused->put_unit(k, s, slot, s->resid, s->unit);
        } else {
            cq_status st = s->codec->encode(&s->ccfg, s->role, s->resid, s->unit, slot,
                                            s->slot_bytes, err);
            if (st) {
                s->n_resid--;
                if (err) err->token = pos0 + i;
                return st;
            }
        }
        s->n_done += s->unit;
        s->n_resid -= s->unit;
        if (s->n_resid) /* a sliding window: the newest tokens move to the front */
            memmove(s->resid, s->resid + (size_t)s->unit * D, (size_t)s->n_resid * D * 2);
    }
    return CQ_OK;
}

typedef struct gen_snap {
    uint32_t n_done, n_resid;
    uint16_t *resid; /* copy, or NULL when the append cannot touch it */
} gen_snap;

/* The kernel table's scan finds whether anything is wrong; the exact place only then. */
static cq_status check_finite(const cq_kernels *k, const uint16_t *X, uint32_t n, uint32_t H,
                              uint32_t D, uint32_t tokens, const char *what, cq_err *err) {
    size_t N = (size_t)n * H * D;
    if (!k->any_nonfinite(X, N)) return CQ_OK;
    for (size_t i = 0; i < N; i++)
        if (!cq_f16_is_finite(X[i])) {
            uint32_t t = (uint32_t)(i / ((size_t)H * D)), h = (uint32_t)(i / D % H),
                     ch = (uint32_t)(i % D);
            return cq_err_set(err, CQ_ERR_NONFINITE, (int64_t)tokens + t, (int32_t)ch,
                              "non-finite %s at token %u (kv head %u, channel %u, fp16 0x%04x): "
                              "append refused, cache unchanged",
                              what, tokens + t, h, ch, X[i]);
        }
    return CQ_OK;
}

cq_status cq_cache_append(cq_cache *c, uint32_t layer, const uint16_t *K, const uint16_t *V,
                          uint32_t n, cq_err *err) {
    cq_err_clear(err);
    if (!c) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cache is NULL");
    if (layer >= c->cfg.n_layers)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "layer %u out of range (n_layers=%u)", layer,
                          c->cfg.n_layers);
    if (n == 0) return CQ_OK;
    if (!K || !V) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "K or V is NULL");
    if (c->sealed)
        return cq_err_set(err, CQ_ERR_STATE, -1, -1,
                          "the cache was flushed (end of sequence); reset it to append again");
    cq_layer *l = &c->layers[layer];
    const uint32_t H = c->cfg.n_kv_heads, D = c->cfg.head_dim, S = c->cfg.n_sinks;
    uint64_t end = (uint64_t)l->tokens + n;
    if (end > 0xFFFFFFF0ull || (c->cfg.max_tokens && end > c->cfg.max_tokens))
        return cq_err_set(err, CQ_ERR_RANGE, l->tokens, -1,
                          "appending %u tokens to %u exceeds max_tokens=%u", n, l->tokens,
                          c->cfg.max_tokens);
    cq_status st;
    if ((st = check_finite(c->kern, K, n, H, D, l->tokens, "key", err)) ||
        (st = check_finite(c->kern, V, n, H, D, l->tokens, "value", err)))
        return st;
    const uint32_t m = store_share(l->tokens, n, S), skip = n - m, NS = cq_layer_n_stores(H);
    /* reserve pages for every store (per head, then the row stores); undo all of it on failure */
    uint32_t *saved = calloc(NS, sizeof *saved);
    gen_snap *snap = calloc(NS, sizeof *snap);
    if (!saved || !snap) {
        free(saved);
        free(snap);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    for (uint32_t i = 0; i < NS; i++) {
        cq_store *s = cq_layer_store(l, H, i);
        if (!s) continue;
        saved[i] = s->n_pages;
        if (!st && m) st = cq_store_reserve(c, l, s, committed_after(s, m));
        if (!st && s->kind == ST_GEN) {
            snap[i].n_done = s->n_done;
            snap[i].n_resid = s->n_resid;
            if (s->n_resid + m >= s->resid_cap) {
                snap[i].resid = malloc((size_t)s->resid_cap * s->D * 2);
                if (!snap[i].resid) st = CQ_ERR_NOMEM;
                else memcpy(snap[i].resid, s->resid, (size_t)s->resid_cap * s->D * 2);
            }
        }
    }
    if (st) {
        st = cq_err_set(err, st, -1, -1, "out of memory: append refused, cache unchanged");
        goto undo;
    }
    /* generic stores first: the only step that can fail after validation. A store's input
     * is its slice of each token's [H][D] row (the whole row for a row store), stride H * D. */
    for (uint32_t i = 0; i < NS && m; i++) {
        cq_store *s = cq_layer_store(l, H, i);
        if (!s || s->kind != ST_GEN) continue;
        const int val = i < 2 * H ? (int)(i & 1) : (int)(i - 2 * H);
        const uint16_t *X = (val ? V : K) + (size_t)skip * H * D + cq_layer_store_off(H, D, i);
        st = feed(c, s, X, (size_t)H * D, m, (int64_t)l->tokens + skip, err);
        if (st) goto undo;
    }
    for (uint32_t h = 0; h < H; h++) {
        cq_head *hd = &l->heads[h];
        for (uint32_t i = 0; i < skip; i++) {
            memcpy(hd->sink_k + (size_t)(l->tokens + i) * D, K + ((size_t)i * H + h) * D,
                   (size_t)D * 2);
            memcpy(hd->sink_v + (size_t)(l->tokens + i) * D, V + ((size_t)i * H + h) * D,
                   (size_t)D * 2);
        }
        if (!m) continue;
        if (hd->k.kind != ST_GEN && hd->k.kind != ST_ROW)
            (void)feed(c, &hd->k, K + ((size_t)skip * H + h) * D, (size_t)H * D, m, 0, NULL);
        if (hd->v.kind != ST_GEN && hd->v.kind != ST_ROW)
            (void)feed(c, &hd->v, V + ((size_t)skip * H + h) * D, (size_t)H * D, m, 0, NULL);
    }
    l->tokens += n;
    for (uint32_t i = 0; i < NS; i++) free(snap[i].resid);
    free(saved);
    free(snap);
    return CQ_OK;
undo:
    for (uint32_t i = 0; i < NS; i++) {
        cq_store *s = cq_layer_store(l, H, i);
        if (!s) continue;
        if (s->kind == ST_GEN) {
            s->n_done = snap[i].n_done;
            s->n_resid = snap[i].n_resid;
            if (snap[i].resid) memcpy(s->resid, snap[i].resid, (size_t)s->resid_cap * s->D * 2);
        }
        cq_store_trim(c, l, s, saved[i]);
        free(snap[i].resid);
    }
    free(saved);
    free(snap);
    return st;
}

cq_status cq_cache_append_f32(cq_cache *c, uint32_t layer, const float *K, const float *V,
                              uint32_t n, cq_err *err) {
    cq_err_clear(err);
    if (!c) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cache is NULL");
    if (n == 0) return cq_cache_append(c, layer, NULL, NULL, 0, err);
    if (!K || !V) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "K or V is NULL");
    size_t N = (size_t)n * c->cfg.n_kv_heads * c->cfg.head_dim;
    uint16_t *k16 = malloc(N * 2), *v16 = malloc(N * 2);
    if (!k16 || !v16) {
        free(k16);
        free(v16);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    cq_f32_to_f16_n(K, k16, N);
    cq_f32_to_f16_n(V, v16, N);
    cq_status st = cq_cache_append(c, layer, k16, v16, n, err);
    free(k16);
    free(v16);
    return st;
}

/* ---------------------------------------------------------------- flush */

cq_status cq_cache_flush(cq_cache *c, cq_err *err) {
    cq_err_clear(err);
    if (!c) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cache is NULL");
    const uint32_t H = c->cfg.n_kv_heads, NL = c->cfg.n_layers, NS = cq_layer_n_stores(H);
    /* (1) pages and sizes for every partial unit; (2) encode; (3) commit */
    cq_status st = CQ_OK;
    uint32_t *saved = calloc((size_t)NL * NS, sizeof *saved);
    if (!saved) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    for (uint32_t L = 0; L < NL; L++)
        for (uint32_t i = 0; i < NS; i++) {
            cq_layer *l = &c->layers[L];
            cq_store *s = cq_layer_store(l, H, i);
            if (!s) continue;
            saved[(size_t)L * NS + i] = s->n_pages;
            if (st || !s->n_resid) continue;
            if (s->kind == ST_GEN && s->n_resid % s->unit &&
                s->codec->packed_bytes(&s->ccfg_tail, s->role, s->n_resid % s->unit) > s->slot_bytes)
                st = cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1,
                                "codec %s: a partial unit packs larger than a full one",
                                s->codec->name);
            else if (cq_store_reserve(c, l, s, (uint64_t)s->n_done + s->n_resid))
                st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory: nothing flushed");
        }
    for (uint32_t L = 0; L < NL && !st; L++)
        for (uint32_t i = 0; i < NS && !st; i++) {
            cq_store *s = cq_layer_store(&c->layers[L], H, i);
            if (!s || !s->n_resid) continue;
            for (uint32_t off = 0; off < s->n_resid && !st; off += s->unit) {
                uint32_t g = s->n_resid - off < s->unit ? s->n_resid - off : s->unit;
                uint8_t *slot = cq_store_slot(s, (s->n_done + off) / s->unit);
                const uint16_t *x = s->resid + (size_t)off * s->D;
                if (s->fused)
                    s->fused->put_unit(c->kern, s, slot, x, g);
                else
                    st = s->codec->encode(g < s->unit ? &s->ccfg_tail : &s->ccfg, s->role, x, g,
                                          slot, s->slot_bytes, err);
            }
        }
    if (st) { /* nothing was committed: release the pages reserved above */
        for (uint32_t L = 0; L < NL; L++)
            for (uint32_t i = 0; i < NS; i++) {
                cq_layer *l = &c->layers[L];
                cq_store *s = cq_layer_store(l, H, i);
                if (s) cq_store_trim(c, l, s, saved[(size_t)L * NS + i]);
            }
        free(saved);
        return st;
    }
    for (uint32_t L = 0; L < NL; L++)
        for (uint32_t i = 0; i < NS; i++) {
            cq_store *s = cq_layer_store(&c->layers[L], H, i);
            if (!s || !s->n_resid) continue;
            s->tail_g = s->n_resid % s->unit; /* 0: the last unit is a full one */
            s->n_done += s->n_resid;
            s->n_resid = 0;
        }
    c->sealed = 1;
    free(saved);
    return CQ_OK;
}

/* ----------------------------------------------------------------- read */

cq_status cq_cache_read(const cq_cache *c, uint32_t layer, uint32_t head, uint32_t t0,
                        uint32_t t1, float *K, float *V, cq_err *err) {
    cq_err_clear(err);
    if (!c) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cache is NULL");
    if (layer >= c->cfg.n_layers || head >= c->cfg.n_kv_heads)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "layer %u / kv head %u out of range", layer,
                          head);
    const cq_layer *l = &c->layers[layer];
    if (t0 > t1 || t1 > l->tokens)
        return cq_err_set(err, CQ_ERR_RANGE, t1, -1, "token range [%u, %u) outside [0, %u)", t0,
                          t1, l->tokens);
    const cq_head *hd = &l->heads[head];
    const uint32_t D = c->cfg.head_dim, S = c->cfg.n_sinks;
    uint32_t t = t0;
    for (; t < t1 && t < S; t++) {
        if (K) c->kern->f16_to_f32(hd->sink_k + (size_t)t * D, K + (size_t)(t - t0) * D, D);
        if (V) c->kern->f16_to_f32(hd->sink_v + (size_t)t * D, V + (size_t)(t - t0) * D, D);
    }
    if (t < t1) {
        cq_status st = CQ_OK;
        if (K) st = cq_store_read(&hd->k, c->kern, t - S, t1 - S, K + (size_t)(t - t0) * D);
        if (!st && V) st = cq_store_read(&hd->v, c->kern, t - S, t1 - S, V + (size_t)(t - t0) * D);
        if (st) return cq_err_set(err, st, -1, -1, "decoding the stored tokens failed");
    }
    return CQ_OK;
}

uint32_t cq_cache_committed(const cq_cache *c, uint32_t layer, uint32_t head, cq_role role) {
    if (!c || layer >= c->cfg.n_layers || head >= c->cfg.n_kv_heads) return 0;
    const cq_head *hd = &c->layers[layer].heads[head];
    return cq_store_data(role == CQ_ROLE_KEY ? &hd->k : &hd->v)->n_done;
}

cq_status cq_cache_export(const cq_cache *c, uint32_t layer, uint32_t head, cq_role role,
                          uint8_t *dst, size_t cap, size_t *len, cq_err *err) {
    cq_err_clear(err);
    if (!c || !len) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cache or len is NULL");
    if (layer >= c->cfg.n_layers || head >= c->cfg.n_kv_heads)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "layer %u / kv head %u out of range", layer,
                          head);
    const cq_head *hd = &c->layers[layer].heads[head];
    return cq_store_export(role == CQ_ROLE_KEY ? &hd->k : &hd->v, dst, cap, len, err);
}

/* ------------------------------------------------------------ accounting */

static void account_layer(const cq_cache *c, const cq_layer *l, cq_cache_mem *m) {
    const uint32_t H = c->cfg.n_kv_heads, D = c->cfg.head_dim, S = c->cfg.n_sinks;
    m->headers += (uint64_t)H * sizeof(cq_head);
    for (uint32_t h = 0; h < H; h++) {
        const cq_head *hd = &l->heads[h];
        cq_store_account(&hd->k, m); /* a view holds nothing: adds 0 */
        cq_store_account(&hd->v, m);
        if (hd->kparams) m->headers += sizeof(cq_params);
        m->sinks += 2ull * S * D * 2;
    }
    for (int r = 0; r < 2; r++)
        if (l->row[r]) {
            cq_store_account(l->row[r], m);
            m->headers += sizeof *l->row[r]; /* the store's own bookkeeping */
        }
    m->tokens += (uint64_t)l->tokens * H;
}

cq_status cq_cache_memory(const cq_cache *c, int32_t layer, cq_cache_mem *out) {
    if (!c || !out) return CQ_ERR_NULL;
    if (layer < -1 || layer >= (int32_t)c->cfg.n_layers) return CQ_ERR_RANGE;
    memset(out, 0, sizeof *out);
    const uint32_t NL = c->cfg.n_layers, H = c->cfg.n_kv_heads, D = c->cfg.head_dim;
    if (layer >= 0) {
        account_layer(c, &c->layers[layer], out);
    } else {
        for (uint32_t L = 0; L < NL; L++) account_layer(c, &c->layers[L], out);
        out->headers += sizeof(cq_cache) + (uint64_t)NL * (sizeof(cq_layer) + sizeof(cq_layer_codecs));
        if (c->masks) out->headers += (uint64_t)NL * H * D;
        if (c->arena) { /* the arena's, no layer's */
            out->headers += sizeof *c->arena;
            out->slack += cq_arena_slack(c->arena);
        }
    }
    out->total = out->payload + out->scales + out->sidecar + out->residual + out->sinks +
                 out->slack + out->headers;
    out->bits_per_value = out->tokens ? 8.0 * (double)out->total / ((double)out->tokens * D * 2) : 0.0;
    return CQ_OK;
}

uint64_t cq_cache_allocated_bytes(const cq_cache *c, int32_t layer) {
    if (!c) return 0;
    if (layer < 0) return c->bytes + arena_slack(c);
    return layer < (int32_t)c->cfg.n_layers ? c->layers[layer].bytes : 0;
}
