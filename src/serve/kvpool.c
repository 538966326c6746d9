/* SPDX-License-Identifier: MIT */
/*
 * kvpool.c - the serving pool object (include/cq_serve.h, docs/SERVING.md): the
 * configuration (a prototype cq_cache that never holds tokens), the arenas of block
 * slots, block allocation through the prefix index, the configuration hash, memory
 * accounting and the consistency check. The sequence operations are in seq.c.
 *
 * Arenas: one per (layer, data store) of the configuration; slot j of every arena is
 * block j's page of that store (CQ_PAGE_HDR + page_bytes, laid out as a cq_cache page
 * of G tokens). Arenas grow in chunks of C slots (about 256 KiB for the widest store)
 * that never move; the last chunks are freed when no live block id lies in them (ids
 * are handed out lowest free first, so the live ids stay dense at the bottom).
 */
#include <stdlib.h>
#include <string.h>

#include "kvpool_internal.h"

#define CHUNK_TARGET (256u << 10)

void *kvp_alloc(cq_kvpool *p, size_t n) {
    void *q = calloc(1, n ? n : 1);
    if (q) p->own_bytes += n;
    return q;
}

void kvp_free(cq_kvpool *p, void *q, size_t n) {
    if (!q) return;
    free(q);
    p->own_bytes -= n;
}

static uint8_t *pool_page(void *ctx, const cq_cache *c, const cq_layer *l, const cq_store *st,
                          uint32_t index) {
    const cq_seq *s = ctx;
    const cq_kvpool *p = s->pool;
    const uint32_t L = (uint32_t)(l - c->layers);
    if (index >= s->n_blk) return NULL;
    for (uint32_t j = 0; j < p->NS; j++)
        if (cq_layer_store_c(l, p->H, j) == st) return kvp_slot(p, L * p->NS + j, s->blk[index]);
    return NULL;
}

/* The state the pool holds instead of the cache (kvpool_internal.h): the cache's own
 * copies are freed at creation and the pointers lent back before its free: the CQ-4
 * parameters and masks (the prototype's, read-only), the sinks (block 0's sink slot),
 * the in-flight buffers (the tail). */
static void lend(cq_kvpool *p, cq_seq *s, int give) {
    cq_cache *c = s->c;
    if (c->masks) { /* the CQ-4+ masks: the prototype's */
        if (give) cq_cache_free_(c, NULL, c->masks, (size_t)p->NL * p->H * p->D);
        c->masks = give ? p->proto->masks : NULL;
        c->cfg.outlier_masks = c->masks;
    }
    for (uint32_t L = 0; L < p->NL; L++) {
        cq_layer *l = &c->layers[L];
        for (uint32_t h = 0; h < p->H; h++) {
            cq_head *hd = &l->heads[h];
            if (give) {
                cq_params *own = hd->kparams;
                hd->kparams = p->proto->layers[L].heads[h].kparams;
                if (own && hd->k.params == own) hd->k.params = hd->kparams;
                cq_cache_free_(c, l, own, sizeof *own);
                cq_cache_free_(c, l, hd->sink_k, (size_t)p->S * p->D * 2);
                cq_cache_free_(c, l, hd->sink_v, (size_t)p->S * p->D * 2);
            } else {
                hd->kparams = NULL;
            }
            hd->sink_k = hd->sink_v = NULL;
        }
        for (uint32_t j = 0; j < p->NS; j++) {
            cq_store *st = cq_layer_store(l, p->H, j);
            if (!st || !st->resid) continue;
            if (give) cq_cache_free_(c, l, st->resid, (size_t)st->resid_cap * st->D * 2);
            st->resid = NULL;
        }
    }
}

cq_status kvp_new_cache(cq_kvpool *p, cq_seq *s, cq_err *err) {
    cq_cache_config cc = *cq_cache_get_config(p->proto);
    cc.kernels = p->proto->kern->name;
    cq_status st = cq_cache_create(&cc, &s->c, err);
    if (st) return st;
    s->src.page = pool_page;
    s->src.ctx = s;
    s->c->pager = &s->src;
    lend(p, s, 1);
    return CQ_OK;
}

void kvp_free_cache(cq_kvpool *p, cq_seq *s) {
    if (!s->c) return;
    lend(p, s, 0);
    cq_cache_free(s->c);
    s->c = NULL;
}

void kvp_bind_sinks(cq_kvpool *p, cq_seq *s) {
    uint8_t *slot = s->n_blk && p->S ? p->sink_of[s->blk[0]] : NULL;
    const size_t hb = (size_t)p->S * p->D * 2;
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t h = 0; h < p->H; h++) {
            cq_head *hd = &s->c->layers[L].heads[h];
            hd->sink_k = slot ? (uint16_t *)(slot + ((size_t)L * p->H + h) * 2 * hb) : NULL;
            hd->sink_v = slot ? (uint16_t *)(slot + (((size_t)L * p->H + h) * 2 + 1) * hb) : NULL;
        }
}

/* Point every unit store's in-flight buffer into the tail (NULL: none). */
static void point_tail(cq_kvpool *p, cq_seq *s, uint16_t *t) {
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            cq_store *st = cq_layer_store(&s->c->layers[L], p->H, j);
            if (!st || cq_store_per_token(st)) continue;
            st->resid = t;
            if (t) t += (size_t)st->resid_cap * st->D;
        }
}

cq_status kvp_tail_attach(cq_kvpool *p, cq_seq *s, cq_err *err) {
    if (s->tail || !p->tail_bytes) return CQ_OK;
    cq_status st = cq_prefix_charge(p->ix, p->tail_bytes, err);
    if (st) return st;
    uint16_t *t = aligned_alloc(64, (p->tail_bytes + 63) / 64 * 64);
    if (!t) {
        cq_prefix_uncharge(p->ix, p->tail_bytes, NULL);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    p->tail_alloc += p->tail_bytes;
    s->tail = t;
    point_tail(p, s, t);
    return CQ_OK;
}

void kvp_tail_detach(cq_kvpool *p, cq_seq *s) {
    if (!s->tail) return;
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *st = cq_layer_store_c(&s->c->layers[L], p->H, j);
            if (st && st->n_resid) return; /* a group in flight */
        }
    point_tail(p, s, NULL);
    free(s->tail);
    s->tail = NULL;
    p->tail_alloc -= p->tail_bytes;
    cq_prefix_uncharge(p->ix, p->tail_bytes, NULL);
}

/* Free the last chunks of every arena while no live block lies in them. */
static void trim_chunks(cq_kvpool *p) {
    while (p->n_chunks && !p->chunk_live[p->n_chunks - 1]) {
        const uint32_t k = --p->n_chunks;
        for (uint32_t a = 0; a < p->NA; a++) {
            if (!p->chunk[(size_t)k * p->NA + a]) continue;
            free(p->chunk[(size_t)k * p->NA + a]);
            p->chunk[(size_t)k * p->NA + a] = NULL;
            p->arena_bytes -= (size_t)p->C * p->stride[a];
        }
    }
}

/* The index freed block id: its chunk holds one live block less, its sink slot goes. */
static void on_block_free(void *ctx, uint32_t id, uint64_t bytes) {
    cq_kvpool *p = ctx;
    (void)bytes;
    if (id / p->C < p->n_chunks) p->chunk_live[id / p->C]--;
    if (!p->in_alloc) trim_chunks(p);
    if (id < p->sink_cap && p->sink_of[id]) {
        free(p->sink_of[id]);
        p->sink_of[id] = NULL;
        p->sink_alloc -= p->sink_bytes;
    }
}

/* Arena room for block ids [0, n_ids): new chunks for every arena, all or none. */
static cq_status grow_arenas(cq_kvpool *p, uint64_t n_ids) {
    uint64_t need = (n_ids + p->C - 1) / p->C;
    if (need <= p->n_chunks) return CQ_OK;
    if (need > 0xFFFFFFFFull / p->C) return CQ_ERR_OVERFLOW;
    if (need > p->cap_chunks) {
        uint32_t cap = p->cap_chunks ? p->cap_chunks : 4;
        while (cap < need) cap *= 2;
        uint8_t **nc = kvp_alloc(p, (size_t)cap * p->NA * sizeof *nc);
        uint32_t *nl = kvp_alloc(p, (size_t)cap * sizeof *nl);
        if (!nc || !nl) {
            kvp_free(p, nc, (size_t)cap * p->NA * sizeof *nc);
            kvp_free(p, nl, (size_t)cap * sizeof *nl);
            return CQ_ERR_NOMEM;
        }
        if (p->n_chunks) {
            memcpy(nc, p->chunk, (size_t)p->n_chunks * p->NA * sizeof *nc);
            memcpy(nl, p->chunk_live, (size_t)p->n_chunks * sizeof *nl);
        }
        kvp_free(p, p->chunk, (size_t)p->cap_chunks * p->NA * sizeof *p->chunk);
        kvp_free(p, p->chunk_live, (size_t)p->cap_chunks * sizeof *p->chunk_live);
        p->chunk = nc;
        p->chunk_live = nl;
        p->cap_chunks = cap;
    }
    for (uint64_t k = p->n_chunks; k < need; k++)
        for (uint32_t a = 0; a < p->NA; a++) {
            if (!p->stride[a]) continue;
            size_t b = (size_t)p->C * p->stride[a];
            uint8_t *m = aligned_alloc(64, b);
            if (!m) { /* undo this call's chunks */
                for (uint64_t kk = p->n_chunks; kk <= k; kk++)
                    for (uint32_t aa = 0; aa < p->NA; aa++) {
                        uint8_t **q = &p->chunk[kk * p->NA + aa];
                        if (!*q) continue;
                        free(*q);
                        *q = NULL;
                        p->arena_bytes -= (size_t)p->C * p->stride[aa];
                    }
                return CQ_ERR_NOMEM;
            }
            memset(m, 0, b);
            p->chunk[k * p->NA + a] = m;
            p->arena_bytes += b;
        }
    p->n_chunks = (uint32_t)need;
    return CQ_OK;
}

/* The sink-slot table covers ids [0, n). */
static cq_status grow_sink_table(cq_kvpool *p, uint64_t n) {
    if (n <= p->sink_cap) return CQ_OK;
    if (n > 0xFFFFFFFFull) return CQ_ERR_OVERFLOW;
    uint32_t cap = p->sink_cap ? p->sink_cap : 16;
    while (cap < n) cap *= 2;
    uint8_t **t = kvp_alloc(p, (size_t)cap * sizeof *t);
    if (!t) return CQ_ERR_NOMEM;
    if (p->sink_cap) memcpy(t, p->sink_of, (size_t)p->sink_cap * sizeof *t);
    kvp_free(p, p->sink_of, (size_t)p->sink_cap * sizeof *p->sink_of);
    p->sink_of = t;
    p->sink_cap = cap;
    return CQ_OK;
}

cq_status kvp_alloc_blocks(cq_kvpool *p, uint32_t n, uint32_t pos0, uint32_t *ids, cq_err *err) {
    if (!n) return CQ_OK;
    const int sinks = p->S && pos0 == 0; /* block 0 carries the sink slot */
    uint64_t *bytes = malloc((size_t)n * sizeof *bytes);
    if (!bytes) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        bytes[i] = p->block_bytes + (sinks && i == 0 ? p->sink_bytes : 0);
        sum += bytes[i];
    }
    cq_prefix_stats ps;
    cq_prefix_stats_get(p->ix, &ps);
    cq_status st = CQ_OK;
    uint8_t *slot = NULL;
    /* ids are handed out lowest free first: all of them lie below live + n. Room for
     * them only when the budget admits them, so a refusal allocates nothing. */
    if (sum <= ps.budget_bytes - ps.used_bytes + ps.lru_bytes) {
        if (grow_arenas(p, (uint64_t)ps.live_blocks + n) ||
            (sinks && grow_sink_table(p, (uint64_t)ps.live_blocks + n)) ||
            (sinks && !(slot = aligned_alloc(64, (p->sink_bytes + 63) / 64 * 64))))
            st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory: the arenas cannot grow");
    }
    p->in_alloc = 1;
    if (!st) st = cq_prefix_alloc(p->ix, bytes, n, ids, err);
    p->in_alloc = 0;
    free(bytes);
    for (uint32_t i = 0; !st && i < n; i++) p->chunk_live[ids[i] / p->C]++;
    trim_chunks(p); /* chunks emptied by evictions, or grown for a refused allocation */
    if (st) {
        free(slot);
        return st;
    }
    if (slot) {
        memset(slot, 0, p->sink_bytes);
        p->sink_of[ids[0]] = slot;
        p->sink_alloc += p->sink_bytes;
    }
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t L = 0; L < p->NL; L++)
            for (uint32_t j = 0; j < p->NS; j++) {
                const cq_store *s = cq_layer_store_c(&p->proto->layers[L], p->H, j);
                if (!s) continue;
                cq_page_hdr *h = (cq_page_hdr *)kvp_slot(p, L * p->NS + j, ids[i]);
                memset(h, 0, sizeof *h);
                h->magic = 0x43515047u;
                h->index = pos0 + i;
                h->kind = (uint32_t)s->kind;
            }
    return CQ_OK;
}

void kvp_copy_block(cq_kvpool *p, uint32_t dst, uint32_t src) {
    for (uint32_t a = 0; a < p->NA; a++)
        if (p->stride[a])
            memcpy(kvp_slot(p, a, dst) + CQ_PAGE_HDR, kvp_slot(p, a, src) + CQ_PAGE_HDR,
                   p->stride[a] - CQ_PAGE_HDR);
    if (p->S && dst < p->sink_cap && src < p->sink_cap && p->sink_of[dst] && p->sink_of[src])
        memcpy(p->sink_of[dst], p->sink_of[src], p->sink_bytes);
}

/* ------------------------------------------------------------ lifecycle */

/* The configuration's identity: the serialized shape, G, sinks, formats, layouts and
 * masks, hashed with cq_prefix_hash_bytes. */
static cq_status config_hash(cq_kvpool *p, uint64_t model_hash, uint64_t *out) {
    const cq_cache *c = p->proto;
    const size_t words = 8 + 4 * (size_t)p->NL;
    const size_t mask_bytes = c->masks ? (size_t)p->NL * p->H * p->D : 0;
    uint8_t *b = malloc(words * 8 + mask_bytes);
    if (!b) return CQ_ERR_NOMEM;
    uint64_t w[8] = {0x4351504F4F4C3031ull /* "CQPOOL01" */, model_hash, p->NL, p->H, p->D,
                     p->G, p->S, c->cfg.force_generic};
    size_t o = 0;
    for (int i = 0; i < 8; i++, o += 8)
        for (int k = 0; k < 8; k++) b[o + k] = (uint8_t)(w[i] >> (8 * k));
    for (uint32_t L = 0; L < p->NL; L++) {
        const cq_layer *l = &c->layers[L];
        uint64_t v[4] = {(uint64_t)l->kid, (uint64_t)l->vid, l->row[0] != NULL, l->row[1] != NULL};
        for (int i = 0; i < 4; i++, o += 8)
            for (int k = 0; k < 8; k++) b[o + k] = (uint8_t)(v[i] >> (8 * k));
    }
    if (mask_bytes) memcpy(b + o, c->masks, mask_bytes);
    *out = cq_prefix_hash_bytes(b, o + mask_bytes);
    free(b);
    return CQ_OK;
}

cq_status cq_kvpool_create(const cq_kvpool_config *cfg, cq_kvpool **out, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cfg or out is NULL");
    *out = NULL;
    if (cfg->cache.page_tokens || cfg->cache.max_tokens)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1,
                          "page_tokens=%u, max_tokens=%u: a pool's pages are blocks of G tokens "
                          "and its bound is the budget (both must be 0)",
                          cfg->cache.page_tokens, cfg->cache.max_tokens);
    if (!cfg->budget_bytes) return cq_err_set(err, CQ_ERR_ARG, -1, -1, "budget_bytes is 0");
    cq_kvpool *p = calloc(1, sizeof *p);
    if (!p) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    p->own_bytes = sizeof *p;
    cq_cache_config cc = cfg->cache;
    const uint32_t G = cc.group ? cc.group : CQ_DEFAULT_GROUP;
    cc.page_tokens = G;
    cq_status st = cq_cache_create(&cc, &p->proto, err);
    if (st) {
        free(p);
        return st;
    }
    p->NL = cc.n_layers;
    p->H = cc.n_kv_heads;
    p->D = cc.head_dim;
    p->S = cc.n_sinks;
    p->G = G;
    p->NS = cq_layer_n_stores(p->H);
    p->NA = p->NL * p->NS;
    p->model_hash = cfg->model_hash;
    if (pthread_mutex_init(&p->mu, NULL)) {
        cq_cache_free(p->proto);
        free(p);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "pthread_mutex_init failed");
    }
    if (p->proto->page_tokens != G) {
        st = cq_err_set(err, CQ_ERR_GROUP, -1, -1,
                        "G=%u tokens of head_dim %u exceed the largest page (1 MiB of fp16)", G,
                        p->D);
        goto fail;
    }
    p->stride = kvp_alloc(p, (size_t)p->NA * sizeof *p->stride);
    if (!p->stride) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto fail;
    }
    size_t widest = 0;
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *s = cq_layer_store_c(&p->proto->layers[L], p->H, j);
            if (!s) continue;
            if (s->kind == ST_GEN && (s->window || G % s->unit)) {
                st = cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1,
                                "layer %u: codec %s (%s) keeps an fp16 window of %u tokens or "
                                "a unit of %u tokens that does not divide G=%u: a pool cannot "
                                "share its blocks (use a cq_cache)",
                                L, s->codec->name, s->role == CQ_ROLE_KEY ? "keys" : "values",
                                s->window, s->unit, G);
                goto fail;
            }
            p->stride[L * p->NS + j] = CQ_PAGE_HDR + s->page_bytes;
            p->block_bytes += CQ_PAGE_HDR + s->page_bytes;
            if (CQ_PAGE_HDR + s->page_bytes > widest) widest = CQ_PAGE_HDR + s->page_bytes;
            if (!cq_store_per_token(s)) p->tail_bytes += (uint64_t)s->resid_cap * s->D * 2;
        }
    p->sink_bytes = 4ull * p->NL * p->H * p->S * p->D; /* fp16 K and V */
    p->C = 1;
    while ((uint64_t)p->C * 2 * widest <= CHUNK_TARGET) p->C *= 2;
    if ((st = config_hash(p, cfg->model_hash, &p->config_hash))) {
        st = cq_err_set(err, st, -1, -1, "out of memory");
        goto fail;
    }
    cq_prefix_config pc = {.config_hash = p->config_hash, .block_tokens = G,
                           .first_block_tokens = p->S + G, .budget_bytes = cfg->budget_bytes,
                           .on_free = on_block_free, .ctx = p};
    if ((st = cq_prefix_create(&pc, &p->ix, err))) goto fail;
    *out = p;
    return CQ_OK;
fail:
    cq_kvpool_free(p);
    return st;
}

void cq_kvpool_free(cq_kvpool *p) {
    if (!p) return;
    while (p->seqs) cq_seq_free(p->seqs);
    for (size_t i = 0; p->chunk && i < (size_t)p->n_chunks * p->NA; i++) free(p->chunk[i]);
    free(p->chunk);
    free(p->chunk_live);
    free(p->stride);
    for (uint32_t i = 0; i < p->sink_cap; i++) free(p->sink_of[i]);
    free(p->sink_of);
    cq_prefix_free(p->ix);
    cq_cache_free(p->proto);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

uint64_t cq_kvpool_config_hash(const cq_kvpool *p) { return p ? p->config_hash : 0; }
uint64_t cq_kvpool_block_bytes(const cq_kvpool *p) { return p ? p->block_bytes : 0; }
uint64_t cq_kvpool_tail_bytes(const cq_kvpool *p) { return p ? p->tail_bytes : 0; }
uint64_t cq_kvpool_sink_bytes(const cq_kvpool *p) { return p ? p->sink_bytes : 0; }

/* ------------------------------------------------------------ accounting */

cq_status cq_kvpool_memory(const cq_kvpool *cp, cq_kvpool_mem *out) {
    if (!cp || !out) return CQ_ERR_NULL;
    cq_kvpool *p = (cq_kvpool *)cp;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&p->mu);
    cq_prefix_stats_get(p->ix, &out->prefix);
    out->referenced = out->prefix.referenced_bytes;
    out->cached = out->prefix.lru_bytes;
    out->tails = out->prefix.charged_bytes;
    /* from the structure: every slot of every chunk that no live block occupies */
    out->arena_slack = ((uint64_t)p->n_chunks * p->C - out->prefix.live_blocks) * p->block_bytes;
    for (const cq_seq *s = p->seqs; s; s = s->next) {
        out->sequences += cq_cache_allocated_bytes(s->c, -1);
        out->n_seqs++;
    }
    out->index = out->prefix.meta_bytes;
    out->arena_bytes = p->arena_bytes + p->sink_alloc;
    const uint32_t cap = cq_prefix_capacity(p->ix);
    for (uint32_t id = 0; id < cap; id++) {
        cq_prefix_block_info bi;
        if (cq_prefix_info(p->ix, id, &bi, NULL) == CQ_OK && bi.refs > 1)
            out->shared_saved += (uint64_t)(bi.refs - 1) * bi.bytes;
    }
    out->tables = p->own_bytes + cq_cache_allocated_bytes(p->proto, -1);
    out->total = out->referenced + out->cached + out->arena_slack + out->tails + out->sequences +
                 out->index + out->tables;
    pthread_mutex_unlock(&p->mu);
    return CQ_OK;
}

uint64_t cq_kvpool_allocated_bytes(const cq_kvpool *cp) {
    if (!cp) return 0;
    cq_kvpool *p = (cq_kvpool *)cp;
    pthread_mutex_lock(&p->mu);
    cq_prefix_stats ps;
    cq_prefix_stats_get(p->ix, &ps);
    uint64_t b = p->arena_bytes + p->sink_alloc + p->tail_alloc + p->own_bytes +
                 cq_cache_allocated_bytes(p->proto, -1) + ps.meta_bytes;
    for (const cq_seq *s = p->seqs; s; s = s->next) b += cq_cache_allocated_bytes(s->c, -1);
    pthread_mutex_unlock(&p->mu);
    return b;
}

cq_status cq_kvpool_check(const cq_kvpool *cp, cq_err *err) {
    cq_err_clear(err);
    if (!cp) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "pool is NULL");
    cq_kvpool *p = (cq_kvpool *)cp;
    pthread_mutex_lock(&p->mu);
    cq_status st = cq_prefix_check(p->ix, err);
    const uint32_t cap = cq_prefix_capacity(p->ix);
    uint32_t *refs = st ? NULL : calloc(cap + 1, sizeof *refs);
    if (!st && !refs) st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    for (const cq_seq *s = p->seqs; s && !st; s = s->next) {
        uint32_t top = 0; /* the longest layer */
        for (uint32_t L = 0; L < p->NL; L++)
            if (s->c->layers[L].tokens > top) top = s->c->layers[L].tokens;
        if (s->n_blk != kvp_blocks_for(p, top))
            st = cq_err_set(err, CQ_ERR_MISMATCH, -1, -1, "a sequence holds %u blocks for %u tokens",
                            s->n_blk, top);
        int in_flight = 0;
        for (uint32_t L = 0; L < p->NL; L++)
            for (uint32_t j = 0; j < p->NS; j++) {
                const cq_store *d = cq_layer_store_c(&s->c->layers[L], p->H, j);
                in_flight |= d && d->n_resid;
            }
        if (!st && in_flight != (s->tail != NULL))
            st = cq_err_set(err, CQ_ERR_MISMATCH, -1, -1, "a tail %s without a group in flight",
                            s->tail ? "held" : "missing");
        if (!st && p->S && s->n_blk &&
            (uint8_t *)s->c->layers[0].heads[0].sink_k != p->sink_of[s->blk[0]])
            st = cq_err_set(err, CQ_ERR_MISMATCH, -1, -1, "sinks not in the sink slot of block 0");
        const int named = !s->n_part ||
                          (s->src.part_page == s->part_b && s->src.part_used == s->part_k);
        if (!st && (s->src.n_part != s->n_part || !named))
            st = cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                            "the page source names %u partial blocks, the sequence %u",
                            s->src.n_part, s->n_part);
        for (uint32_t i = 0; i < s->n_part && !st; i++) { /* partial blocks: held whole */
            uint32_t lo = UINT32_MAX;
            for (uint32_t L = 0; L < p->NL; L++)
                if (s->c->layers[L].tokens < lo) lo = s->c->layers[L].tokens;
            if ((i && s->part_b[i] <= s->part_b[i - 1]) || !s->part_k[i] ||
                s->part_k[i] >= p->G || (uint64_t)(s->part_b[i] + 1) * p->G + p->S > lo)
                st = cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                                "partial block %u (block %u, %u positions used) is inconsistent",
                                i, s->part_b[i], s->part_k[i]);
        }
        for (uint32_t b = 0; b < s->n_blk && !st; b++) {
            if (s->blk[b] >= cap) {
                st = cq_err_set(err, CQ_ERR_MISMATCH, -1, -1, "block id %u beyond the index",
                                s->blk[b]);
                break;
            }
            refs[s->blk[b]]++;
        }
        for (uint32_t L = 0; L < p->NL && !st; L++)
            for (uint32_t j = 0; j < p->NS && !st; j++) {
                const cq_store *d = cq_layer_store_c(&s->c->layers[L], p->H, j);
                for (uint32_t i = 0; d && i < d->n_pages && !st; i++)
                    if (i >= s->n_blk || d->pages[i] != kvp_slot(p, L * p->NS + j, s->blk[i]))
                        st = cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                                        "layer %u store %u page %u is not its block's slot", L,
                                        j, i);
            }
    }
    for (uint32_t id = 0; id < cap && !st; id++) {
        cq_prefix_block_info bi;
        cq_prefix_info(p->ix, id, &bi, NULL);
        if (bi.refs != refs[id])
            st = cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                            "block %u: %u references in the index, %u in the sequences", id,
                            bi.refs, refs[id]);
        else if (bi.state == CQ_BLOCK_PRIVATE && !bi.refs)
            st = cq_err_set(err, CQ_ERR_MISMATCH, -1, -1, "block %u is live with no owner", id);
    }
    free(refs);
    pthread_mutex_unlock(&p->mu);
    return st;
}
