/* SPDX-License-Identifier: MIT */
/*
 * seq_file_v12.c - a cache file of format version 1 or 2 (one cq_cache, docs/CACHE_FILE.md)
 * loaded into a serving pool as one new, private sequence (cq_kvpool_load_seq). The file is
 * loaded and fully validated by the cache's own loader (src/cache/persist.c); when its
 * configuration is the pool's (shape, G, sinks, per-layer formats, masks; page size aside)
 * and it holds no flushed partial group, its image is loaded once more with pages of G
 * tokens (the page-size field of its configuration rewritten and that section's CRCs
 * recomputed), whose pages are laid out exactly as the pool's block slots: they are copied
 * into freshly allocated blocks, with the sinks and the fp16 in-flight groups. The budget
 * for all of it is checked before anything changes.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/cq_le.h"
#include "cq_util.h"
#include "seq_file.h"

#define FILE_HDR 40u
#define SEC_HDR 24u

/* CQ_OK when cache c holds what a sequence of pool p can (every layer at one length). */
static cq_status same_config(const cq_kvpool *p, const cq_cache *c, uint32_t *n, cq_err *err) {
    const cq_cache_config *x = &c->cfg;
    const cq_cache *q = p->proto;
    if (x->n_layers != p->NL || x->n_kv_heads != p->H || x->head_dim != p->D ||
        x->group != p->G || x->n_sinks != p->S || x->force_generic != q->cfg.force_generic)
        return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                          "the file's cache (%u layers, %u kv heads, head_dim %u, G %u, %u sinks) "
                          "is not this pool's (%u, %u, %u, %u, %u)",
                          x->n_layers, x->n_kv_heads, x->head_dim, x->group, x->n_sinks, p->NL,
                          p->H, p->D, p->G, p->S);
    for (uint32_t L = 0; L < p->NL; L++)
        if (c->layers[L].kid != q->layers[L].kid || c->layers[L].vid != q->layers[L].vid)
            return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                              "layer %u: the file's formats are not this pool's", L);
    const size_t mb = (size_t)p->NL * p->H * p->D;
    if (!c->masks != !q->masks || (c->masks && memcmp(c->masks, q->masks, mb)))
        return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1, "the file's outlier masks are not this pool's");
    *n = c->layers[0].tokens;
    for (uint32_t L = 0; L < p->NL; L++) {
        if (c->layers[L].tokens != *n)
            return cq_err_set(err, CQ_ERR_STATE, -1, -1,
                              "the file's layers hold %u and %u tokens: a sequence needs one length",
                              *n, c->layers[L].tokens);
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *s = cq_layer_store_c(&c->layers[L], p->H, j);
            if (s && s->tail_g)
                return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1,
                                  "the file's cache was flushed: a partial unit of %u tokens lies "
                                  "outside the pool's block grid", s->tail_g);
        }
    }
    return CQ_OK;
}

/* The image with the page size of its configuration set to G (CRCs recomputed). */
static uint8_t *with_pages_of(const uint8_t *b, size_t n, uint32_t G) {
    uint8_t *m = malloc(n);
    if (!m) return NULL;
    memcpy(m, b, n);
    uint8_t *h = m + FILE_HDR; /* section 0: the configuration */
    const uint64_t cl = cq_get_u64le(h + 8);
    cq_put_u32le(h + SEC_HDR + 20, G);
    cq_put_u32le(h + 16, cq_crc32c(0, h + SEC_HDR, (size_t)cl));
    cq_put_u32le(h + 20, cq_crc32c(0, h, 20));
    return m;
}

/* Copy cache c (pages of G tokens) into the empty sequence s, under the pool mutex. */
static cq_status copy_in(cq_kvpool *p, cq_seq *s, const cq_cache *c, uint32_t n, cq_err *err) {
    const uint32_t nt = kvp_blocks_for(p, n);
    int need_tail = 0;
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *d = cq_layer_store_c(&c->layers[L], p->H, j);
            need_tail |= d && d->n_resid;
        }
    uint64_t need = need_tail ? p->tail_bytes : 0;
    for (uint32_t i = 0; i < nt; i++) need += p->block_bytes + (i == 0 ? p->sink_bytes : 0);
    cq_prefix_stats ps;
    cq_prefix_stats_get(p->ix, &ps);
    if (need > ps.budget_bytes - ps.used_bytes + ps.lru_bytes)
        return cq_err_set(err, CQ_ERR_BUDGET, -1, -1,
                          "restoring the sequence needs %llu bytes (budget %llu, used %llu, "
                          "evictable %llu)", (unsigned long long)need,
                          (unsigned long long)ps.budget_bytes, (unsigned long long)ps.used_bytes,
                          (unsigned long long)ps.lru_bytes);
    uint32_t *ids = kvp_alloc(p, ((size_t)nt + 1) * sizeof *ids);
    if (!ids) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_status st = nt ? kvp_alloc_blocks(p, nt, 0, ids, err) : CQ_OK;
    if (!st && need_tail && (st = kvp_tail_attach(p, s, err)))
        (void)cq_prefix_release_chain(p->ix, ids, nt, NULL);
    if (st) {
        kvp_free(p, ids, ((size_t)nt + 1) * sizeof *ids);
        return st;
    }
    kvp_free(p, s->blk, (size_t)s->cap_blk * sizeof *s->blk);
    s->blk = ids;
    s->cap_blk = nt + 1;
    s->n_blk = nt;
    kvp_bind_sinks(p, s);
    const size_t hb = (size_t)p->S * p->D * 2;
    for (uint32_t L = 0; L < p->NL && nt && p->S; L++) /* sinks: the slot of block 0 */
        for (uint32_t h = 0; h < p->H; h++) {
            const cq_head *hd = &c->layers[L].heads[h];
            uint8_t *sl = p->sink_of[ids[0]] + ((size_t)L * p->H + h) * 2 * hb;
            memcpy(sl, hd->sink_k, hb);
            memcpy(sl + hb, hd->sink_v, hb);
        }
    for (uint32_t L = 0; L < p->NL && !st; L++) {
        cq_layer *l = &s->c->layers[L];
        l->tokens = n;
        for (uint32_t j = 0; j < p->NS && !st; j++) {
            const cq_store *x = cq_layer_store_c(&c->layers[L], p->H, j);
            cq_store *d = cq_layer_store(l, p->H, j);
            if (!x || !d) continue;
            for (uint32_t i = 0; i < x->n_pages && i < nt; i++)
                memcpy(kvp_slot(p, L * p->NS + j, ids[i]) + CQ_PAGE_HDR, x->pages[i] + CQ_PAGE_HDR,
                       d->page_bytes);
            d->n_done = x->n_done;
            d->n_resid = 0;
            d->tail_g = 0;
            if (cq_store_reserve(s->c, l, d, d->n_done)) {
                st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
                break;
            }
            if (x->n_resid) {
                memcpy(d->resid, x->resid, (size_t)x->n_resid * x->D * 2);
                d->n_resid = x->n_resid;
            }
        }
    }
    if (st) { /* an empty sequence again */
        kvp_clear_stores(p, s);
        kvp_tail_detach(p, s);
        (void)cq_prefix_release_chain(p->ix, s->blk, nt, NULL);
        s->n_blk = 0;
        kvp_bind_sinks(p, s);
    }
    return st;
}

cq_status seqf_load_v12(cq_kvpool *p, const uint8_t *b, size_t n, cq_seq **out, cq_err *err) {
    cq_cache_load_opts o = {.max_bytes = 0, .kernels = p->proto->kern->name};
    cq_cache *c = NULL;
    uint32_t len = 0;
    cq_status st = cq_cache_load_mem_ex(b, n, &o, &c, err);
    if (!st) st = same_config(p, c, &len, err);
    if (!st && c->page_tokens != p->G) { /* again, with pages of G tokens */
        uint8_t *m = with_pages_of(b, n, p->G);
        cq_cache_free(c);
        c = NULL;
        st = m ? cq_cache_load_mem_ex(m, n, &o, &c, err)
               : cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        free(m);
        if (!st && c->page_tokens != p->G)
            st = cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1,
                            "the file's cache cannot hold pages of G=%u tokens", p->G);
    }
    cq_seq *s = NULL;
    if (!st) st = cq_seq_create(p, &s, err);
    if (!st) {
        pthread_mutex_lock(&p->mu);
        st = copy_in(p, s, c, len, err);
        pthread_mutex_unlock(&p->mu);
        if (st) cq_seq_free(s);
        else *out = s;
    }
    cq_cache_free(c);
    return st;
}
