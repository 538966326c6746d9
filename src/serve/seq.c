/* SPDX-License-Identifier: MIT */
/*
 * seq.c - the sequences of the serving pool (include/cq_serve.h, docs/SERVING.md):
 * create, free, fork, truncate, append, read, export, attention and per-sequence
 * accounting. A sequence's stores are a cq_cache whose pages are the slots of its
 * blocks (kvpool_internal.h), so append, read, export and attention are the cache's
 * own code. Structural changes run under the pool mutex and compute everything they
 * need (budget, memory) before they change anything.
 */
#include <stdlib.h>
#include <string.h>

#include "kvpool_internal.h"
#include "../cache/attend_items.h"

/* Store positions (tokens past the sinks) of a layer. */
static uint32_t store_tokens(const cq_kvpool *p, uint32_t tokens) {
    return tokens > p->S ? tokens - p->S : 0;
}

/* The common length of every layer, or CQ_ERR_STATE. */
static cq_status common_length(const cq_seq *s, uint32_t *n, const char *what, cq_err *err) {
    const uint32_t t = s->c->layers[0].tokens;
    for (uint32_t L = 1; L < s->pool->NL; L++)
        if (s->c->layers[L].tokens != t)
            return cq_err_set(err, CQ_ERR_STATE, -1, -1,
                              "%s needs every layer at the same length (layer 0: %u, layer %u: "
                              "%u tokens)",
                              what, t, L, s->c->layers[L].tokens);
    *n = t;
    return CQ_OK;
}

static cq_status blk_reserve(cq_seq *s, uint32_t n) {
    if (n <= s->cap_blk) return CQ_OK;
    uint32_t cap = s->cap_blk ? s->cap_blk : 8;
    while (cap < n) cap *= 2;
    uint32_t *nb = kvp_alloc(s->pool, (size_t)cap * sizeof *nb);
    if (!nb) return CQ_ERR_NOMEM;
    if (s->n_blk) memcpy(nb, s->blk, (size_t)s->n_blk * sizeof *nb);
    kvp_free(s->pool, s->blk, (size_t)s->cap_blk * sizeof *s->blk);
    s->blk = nb;
    s->cap_blk = cap;
    return CQ_OK;
}

/* ------------------------------------------------------------ partial blocks */

uint32_t kvp_phys(const cq_seq *s, uint32_t u) {
    const uint32_t G = s->pool->G;
    for (uint32_t i = 0; i < s->n_part && u >= s->part_b[i] * G + s->part_k[i]; i++)
        u += G - s->part_k[i];
    return u;
}

uint32_t kvp_holes(const cq_seq *s) {
    uint32_t h = 0;
    for (uint32_t i = 0; i < s->n_part; i++) h += s->pool->G - s->part_k[i];
    return h;
}

/* The cache's token position of the sequence's token t (sinks included). */
static uint32_t tok_phys(const cq_seq *s, uint32_t t) {
    const uint32_t S = s->pool->S;
    return t < S ? t : S + kvp_phys(s, t - S);
}

/* Tokens from the sequence's token t on that lie contiguous in the cache (up to the end of
 * the used positions of the next partial block; UINT32_MAX past the last one). */
static uint32_t tok_run(const cq_seq *s, uint32_t t) {
    const uint32_t S = s->pool->S, G = s->pool->G, ph = tok_phys(s, t);
    for (uint32_t i = 0; i < s->n_part; i++) {
        const uint32_t end = S + s->part_b[i] * G + s->part_k[i];
        if (ph < end) return end - ph;
    }
    return UINT32_MAX;
}

/* The sequence's tokens of layer L (the cache's minus the unused positions). */
static uint32_t seq_len(const cq_seq *s, uint32_t L) {
    const uint32_t t = s->c->layers[L].tokens;
    return s->n_part ? t - kvp_holes(s) : t;
}

static void part_bind(cq_seq *s) {
    s->src.part_page = s->part_b;
    s->src.part_used = s->part_k;
    s->src.n_part = s->n_part;
}

static cq_status part_reserve(cq_seq *s, uint32_t n) {
    if (n <= s->cap_part) return CQ_OK;
    uint32_t cap = s->cap_part ? s->cap_part * 2 : 4;
    while (cap < n) cap *= 2;
    uint32_t *nb = kvp_alloc(s->pool, (size_t)cap * sizeof *nb);
    uint32_t *nk = kvp_alloc(s->pool, (size_t)cap * sizeof *nk);
    if (!nb || !nk) {
        kvp_free(s->pool, nb, (size_t)cap * sizeof *nb);
        kvp_free(s->pool, nk, (size_t)cap * sizeof *nk);
        return CQ_ERR_NOMEM;
    }
    if (s->n_part) {
        memcpy(nb, s->part_b, (size_t)s->n_part * sizeof *nb);
        memcpy(nk, s->part_k, (size_t)s->n_part * sizeof *nk);
    }
    kvp_free(s->pool, s->part_b, (size_t)s->cap_part * sizeof *nb);
    kvp_free(s->pool, s->part_k, (size_t)s->cap_part * sizeof *nk);
    s->part_b = nb;
    s->part_k = nk;
    s->cap_part = cap;
    part_bind(s);
    return CQ_OK;
}

/* A sequence object with its cache, not yet in the pool's list. */
static cq_status seq_new(cq_kvpool *p, cq_seq **out, cq_err *err) {
    cq_seq *s = kvp_alloc(p, sizeof *s);
    if (!s) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    s->pool = p;
    cq_status st = kvp_new_cache(p, s, err);
    if (st) {
        kvp_free(p, s, sizeof *s);
        return st;
    }
    *out = s;
    return CQ_OK;
}

static void seq_link(cq_kvpool *p, cq_seq *s) {
    s->next = p->seqs;
    if (p->seqs) p->seqs->prev = s;
    p->seqs = s;
    p->n_seqs++;
}

/* Frees a sequence's memory and its tail (its blocks must be released already). */
static void seq_destroy(cq_kvpool *p, cq_seq *s) {
    for (uint32_t L = 0; s->tail && L < p->NL; L++) /* nothing in flight any more */
        for (uint32_t j = 0; j < p->NS; j++) {
            cq_store *d = cq_layer_store(&s->c->layers[L], p->H, j);
            if (d) d->n_resid = 0;
        }
    kvp_tail_detach(p, s);
    kvp_free_cache(p, s);
    kvp_free(p, s->blk, (size_t)s->cap_blk * sizeof *s->blk);
    kvp_free(p, s->part_b, (size_t)s->cap_part * sizeof *s->part_b);
    kvp_free(p, s->part_k, (size_t)s->cap_part * sizeof *s->part_k);
    kvp_free(p, s, sizeof *s);
}

cq_status cq_seq_create(cq_kvpool *p, cq_seq **out, cq_err *err) {
    cq_err_clear(err);
    if (!p || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "pool or out is NULL");
    *out = NULL;
    pthread_mutex_lock(&p->mu);
    cq_seq *s;
    cq_status st = seq_new(p, &s, err);
    if (!st) {
        seq_link(p, s);
        *out = s;
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

void cq_seq_free(cq_seq *s) {
    if (!s) return;
    cq_kvpool *p = s->pool;
    pthread_mutex_lock(&p->mu);
    (void)cq_prefix_release_chain(p->ix, s->blk, s->n_blk, NULL);
    s->n_blk = 0;
    if (s->prev) s->prev->next = s->next;
    else p->seqs = s->next;
    if (s->next) s->next->prev = s->prev;
    p->n_seqs--;
    seq_destroy(p, s);
    pthread_mutex_unlock(&p->mu);
}

/* Block b is committed when every layer has written all of its positions. */
static int committed(const cq_seq *s, uint32_t b) {
    const cq_kvpool *p = s->pool;
    for (uint32_t L = 0; L < p->NL; L++)
        if (store_tokens(p, s->c->layers[L].tokens) < (uint64_t)(b + 1) * p->G) return 0;
    return 1;
}

/* Point every store of d at the same state as the one of src (pages from d's table). */
static cq_status copy_stores(cq_seq *d, const cq_seq *src) {
    const cq_kvpool *p = d->pool;
    for (uint32_t L = 0; L < p->NL; L++) {
        cq_layer *dl = &d->c->layers[L];
        const cq_layer *sl = &src->c->layers[L];
        dl->tokens = sl->tokens;
        for (uint32_t j = 0; j < p->NS; j++) {
            cq_store *ds = cq_layer_store(dl, p->H, j);
            const cq_store *ss = cq_layer_store_c(sl, p->H, j);
            if (!ss) continue;
            cq_status st = cq_store_reserve(d->c, dl, ds,
                                            (uint64_t)ss->n_pages * ss->page_units * ss->unit);
            if (st) return st;
            ds->n_done = ss->n_done;
            ds->n_resid = ss->n_resid;
            ds->tail_g = ss->tail_g;
            if (ss->resid) memcpy(ds->resid, ss->resid, (size_t)ss->resid_cap * ss->D * 2);
        }
    }
    return CQ_OK;
}

cq_status cq_seq_fork(const cq_seq *src, cq_seq **out, cq_err *err) {
    cq_err_clear(err);
    if (!src || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence or out is NULL");
    *out = NULL;
    cq_kvpool *p = src->pool;
    pthread_mutex_lock(&p->mu);
    uint32_t len;
    cq_seq *s = NULL;
    cq_status st = common_length(src, &len, "fork", err);
    const int open = src->n_blk && !committed(src, src->n_blk - 1);
    uint32_t open_id = CQ_BLOCK_NONE;
    if (!st) st = seq_new(p, &s, err);
    if (!st && (blk_reserve(s, src->n_blk) || part_reserve(s, src->n_part)))
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    if (!st && open) st = kvp_alloc_blocks(p, 1, src->n_blk - 1, &open_id, err);
    if (!st && src->tail) st = kvp_tail_attach(p, s, err);
    if (!st) {
        if (src->n_blk) memcpy(s->blk, src->blk, (size_t)src->n_blk * sizeof *s->blk);
        s->n_blk = src->n_blk;
        if (src->n_part) { /* partial blocks are committed: shared like the others */
            memcpy(s->part_b, src->part_b, (size_t)src->n_part * sizeof *s->part_b);
            memcpy(s->part_k, src->part_k, (size_t)src->n_part * sizeof *s->part_k);
        }
        s->n_part = src->n_part;
        part_bind(s);
        if (open) {
            s->blk[s->n_blk - 1] = open_id;
            kvp_copy_block(p, open_id, src->blk[src->n_blk - 1]);
        }
        kvp_bind_sinks(p, s);
        if (copy_stores(s, src)) st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    if (st) {
        if (open_id != CQ_BLOCK_NONE) (void)cq_prefix_release(p->ix, open_id, NULL);
        if (s) seq_destroy(p, s); /* gives the tail back */
        pthread_mutex_unlock(&p->mu);
        return st;
    }
    for (uint32_t b = 0; b + open < s->n_blk; b++) (void)cq_prefix_ref(p->ix, s->blk[b], NULL);
    seq_link(p, s);
    *out = s;
    pthread_mutex_unlock(&p->mu);
    return CQ_OK;
}

/* ------------------------------------------------------------ truncate */

typedef struct cut {
    uint32_t n_done, n_resid, n_pages;
} cut;

/* The state a store has after keeping T store positions, or CQ_ERR_UNSUPPORTED when T
 * cuts a committed unit (its fp16 input is gone). */
static cq_status store_cut(const cq_store *s, uint32_t T, cut *o) {
    if (T >= s->n_done) {
        o->n_done = s->n_done;
        o->n_resid = T - s->n_done;
    } else if (T % s->unit == 0) {
        o->n_done = T;
        o->n_resid = 0;
    } else {
        return CQ_ERR_UNSUPPORTED;
    }
    const uint32_t units = (o->n_done + s->unit - 1) / s->unit;
    o->n_pages = (units + s->page_units - 1) / s->page_units;
    if (o->n_pages > s->n_pages) o->n_pages = s->n_pages;
    return CQ_OK;
}

/* Every store's state after keeping T store positions (cuts[L * NS + j]); 0, or 1 when T cuts
 * a committed unit (its fp16 input is gone), with *L0 / *d0 naming the first such store. */
static int cut_all(const cq_seq *s, uint32_t T, cut *cuts, uint32_t *L0, const cq_store **d0) {
    const cq_kvpool *p = s->pool;
    int refused = 0;
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *d = cq_layer_store_c(&s->c->layers[L], p->H, j);
            if (d && store_cut(d, T, &cuts[L * p->NS + j]) && !refused++) *L0 = L, *d0 = d;
        }
    return refused != 0;
}

cq_status cq_seq_truncate(cq_seq *s, uint32_t n, cq_err *err) {
    cq_err_clear(err);
    if (!s) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence is NULL");
    cq_kvpool *p = s->pool;
    pthread_mutex_lock(&p->mu);
    uint32_t plen;
    cq_status st = common_length(s, &plen, "truncate", err);
    const uint32_t len = st ? 0 : plen - kvp_holes(s);
    if (!st && n > len)
        st = cq_err_set(err, CQ_ERR_RANGE, n, -1, "truncate to %u tokens of %u", n, len);
    if (st || n == len) {
        pthread_mutex_unlock(&p->mu);
        return st;
    }
    const uint32_t G = p->G, NS = p->NS, Tl = store_tokens(p, n);
    /* the cut in the cache's positions; the partial blocks before it stay */
    const uint32_t PT = Tl ? kvp_phys(s, Tl - 1) + 1 : 0;
    uint32_t np = 0;
    while (np < s->n_part && s->part_b[np] * G + s->part_k[np] < PT) np++;
    cut *cuts = calloc((size_t)p->NL * NS, sizeof *cuts);
    if (!cuts) {
        pthread_mutex_unlock(&p->mu);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    /* (1) every store's new state. A cut inside a committed unit keeps the whole block and
     * uses its first PT % G positions (a partial block): the stores are cut at the block's
     * end, which every store must have committed (a unit store holding part of the block in
     * flight cannot keep it). */
    uint32_t PC = PT, L0 = 0;
    const cq_store *d0 = NULL;
    int part = cut_all(s, PT, cuts, &L0, &d0);
    if (part) {
        PC = (PT / G + 1) * G;
        for (uint32_t L = 0; L < p->NL && part; L++)
            for (uint32_t j = 0; j < NS; j++) {
                const cq_store *d = cq_layer_store_c(&s->c->layers[L], p->H, j);
                if (d && !cq_store_per_token(d) && d->n_done < PC) part = 0;
            }
        if (!part || cut_all(s, PC, cuts, &L0, &d0))
            st = cq_err_set(err, CQ_ERR_UNSUPPORTED, n, -1,
                            "truncating to %u tokens cuts a unit of %u tokens (layer %u, %s) "
                            "whose block is not committed: its fp16 input is gone; cut on a unit "
                            "border (docs/SERVING.md, \"truncate\")",
                            n, d0->unit, L0, d0->role == CQ_ROLE_KEY ? "keys" : "values");
    }
    const uint32_t nphys = Tl ? p->S + PC : n, keep = kvp_blocks_for(p, nphys);
    /* the last kept block keeps a part of its positions (or only sinks): appends will
     * write it again (a partial block is never written again) */
    const int reopen = nphys && (PC % G || PC == 0);
    if (!st && part && part_reserve(s, np + 1))
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    /* (2) a reopened block that another sequence sees is copied (copy-on-write) */
    uint32_t cow = CQ_BLOCK_NONE;
    if (!st && reopen) {
        cq_prefix_block_info bi;
        cq_prefix_info(p->ix, s->blk[keep - 1], &bi, NULL);
        if (bi.refs > 1 || bi.state == CQ_BLOCK_CACHED)
            st = kvp_alloc_blocks(p, 1, keep - 1, &cow, err);
    }
    if (st) {
        free(cuts);
        pthread_mutex_unlock(&p->mu);
        return st;
    }
    /* (3) apply: nothing below can fail */
    if (cow != CQ_BLOCK_NONE) {
        kvp_copy_block(p, cow, s->blk[keep - 1]);
        (void)cq_prefix_release(p->ix, s->blk[keep - 1], NULL);
        s->blk[keep - 1] = cow;
    }
    (void)cq_prefix_release_chain(p->ix, s->blk + keep, s->n_blk - keep, NULL);
    s->n_blk = keep;
    for (uint32_t L = 0; L < p->NL; L++) {
        cq_layer *l = &s->c->layers[L];
        l->tokens = nphys;
        for (uint32_t j = 0; j < NS; j++) {
            cq_store *d = cq_layer_store(l, p->H, j);
            if (!d) continue;
            const cut *c = &cuts[L * NS + j];
            cq_store_trim(s->c, l, d, c->n_pages);
            d->n_done = c->n_done;
            d->n_resid = c->n_resid;
            if (cow != CQ_BLOCK_NONE && d->n_pages >= keep)
                d->pages[keep - 1] = kvp_slot(p, L * NS + j, cow);
        }
    }
    s->n_part = np;
    if (part) {
        s->part_b[np] = PT / G;
        s->part_k[np] = PT % G;
        s->n_part++;
    }
    part_bind(s);
    kvp_bind_sinks(p, s);
    kvp_tail_detach(p, s);
    free(cuts);
    pthread_mutex_unlock(&p->mu);
    return CQ_OK;
}

cq_status cq_seq_shift(cq_seq *s, uint32_t p0, uint32_t p1, int32_t delta, cq_err *err) {
    cq_err_clear(err);
    if (!s) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence is NULL");
    return cq_err_set(err, CQ_ERR_UNSUPPORTED, p0, -1,
                      "shifting positions [%u, %u) by %d: post-RoPE keys quantized per channel "
                      "over G tokens cannot be re-rotated without requantizing; truncate and "
                      "prefill again (docs/SERVING.md)",
                      p0, p1, (int)delta);
}

/* ------------------------------------------------------------ append */

cq_status cq_seq_append(cq_seq *s, uint32_t layer, const uint16_t *K, const uint16_t *V,
                        uint32_t n, cq_err *err) {
    cq_err_clear(err);
    if (!s) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence is NULL");
    cq_kvpool *p = s->pool;
    if (layer >= p->NL || n == 0 || !K || !V) /* the cache's own answer, nothing to allocate */
        return cq_cache_append(s->c, layer, K, V, n, err);
    pthread_mutex_lock(&p->mu);
    const uint64_t end = (uint64_t)s->c->layers[layer].tokens + n;
    const uint32_t had = s->n_blk;
    const int had_tail = s->tail != NULL;
    cq_status st = CQ_OK;
    if (end > 0xFFFFFFF0ull)
        st = cq_err_set(err, CQ_ERR_RANGE, -1, -1, "appending %u tokens to %u overflows", n,
                        s->c->layers[layer].tokens);
    const uint32_t need = st ? 0 : kvp_blocks_for(p, (uint32_t)end);
    /* (1) the tail when tokens reach the stores, (2) the blocks they reach */
    if (!st && end > p->S) st = kvp_tail_attach(p, s, err);
    if (!st && need > had) { /* the table grows only for blocks the budget admitted */
        uint32_t *ids = malloc((size_t)(need - had) * sizeof *ids);
        if (!ids) st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        if (!st && !(st = kvp_alloc_blocks(p, need - had, had, ids, err))) {
            if (blk_reserve(s, need)) {
                (void)cq_prefix_release_chain(p->ix, ids, need - had, NULL);
                st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
            } else {
                memcpy(s->blk + had, ids, (size_t)(need - had) * sizeof *ids);
                s->n_blk = need;
                if (!had) kvp_bind_sinks(p, s);
            }
        }
        free(ids);
    }
    /* (3) the cache's own append (all or nothing) */
    if (!st) st = cq_cache_append(s->c, layer, K, V, n, err);
    if (st && s->n_blk > had) {
        (void)cq_prefix_release_chain(p->ix, s->blk + had, s->n_blk - had, NULL);
        s->n_blk = had;
        kvp_bind_sinks(p, s);
    }
    if (!st || !had_tail) kvp_tail_detach(p, s); /* only when no group is in flight */
    pthread_mutex_unlock(&p->mu);
    return st;
}

cq_status cq_seq_append_f32(cq_seq *s, uint32_t layer, const float *K, const float *V,
                            uint32_t n, cq_err *err) {
    cq_err_clear(err);
    if (!s) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence is NULL");
    if (n == 0 || !K || !V || layer >= s->pool->NL)
        return cq_cache_append_f32(s->c, layer, K, V, n, err);
    size_t N = (size_t)n * s->pool->H * s->pool->D;
    uint16_t *k16 = malloc(N * 2), *v16 = malloc(N * 2);
    cq_status st;
    if (!k16 || !v16) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    } else {
        cq_f32_to_f16_n(K, k16, N);
        cq_f32_to_f16_n(V, v16, N);
        st = cq_seq_append(s, layer, k16, v16, n, err);
    }
    free(k16);
    free(v16);
    return st;
}

cq_status cq_seq_append_need(const cq_seq *s, uint32_t n, uint64_t *bytes, cq_err *err) {
    cq_err_clear(err);
    if (!s || !bytes) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence or bytes is NULL");
    *bytes = 0;
    cq_kvpool *p = s->pool;
    pthread_mutex_lock(&p->mu);
    uint32_t len;
    cq_status st = common_length(s, &len, "append_need", err);
    const uint64_t end = (uint64_t)len + n;
    if (!st && end > 0xFFFFFFF0ull)
        st = cq_err_set(err, CQ_ERR_RANGE, -1, -1, "appending %u tokens to %u overflows", n, len);
    if (!st && n) {
        const uint32_t need = kvp_blocks_for(p, (uint32_t)end);
        uint64_t b = 0;
        if (need > s->n_blk) {
            b += (uint64_t)(need - s->n_blk) * p->block_bytes;
            if (!s->n_blk && p->S) b += p->sink_bytes;
        }
        if (!s->tail && end > p->S) b += p->tail_bytes;
        *bytes = b;
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

/* ------------------------------------------------------------ reading */

uint32_t cq_seq_tokens(const cq_seq *s, uint32_t layer) {
    return s && layer < s->pool->NL ? seq_len(s, layer) : 0;
}

cq_status cq_seq_read(const cq_seq *s, uint32_t layer, uint32_t head, uint32_t t0, uint32_t t1,
                      float *K, float *V, cq_err *err) {
    cq_err_clear(err);
    if (!s) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence is NULL");
    if (!s->n_part || layer >= s->pool->NL || head >= s->pool->H)
        return cq_cache_read(s->c, layer, head, t0, t1, K, V, err);
    const uint32_t len = seq_len(s, layer), D = s->pool->D;
    if (t0 > t1 || t1 > len)
        return cq_err_set(err, CQ_ERR_RANGE, t1, -1, "token range [%u, %u) outside [0, %u)", t0,
                          t1, len);
    for (uint32_t t = t0; t < t1;) { /* pieces contiguous in the cache */
        const uint32_t run = tok_run(s, t), e = t1 - t < run ? t1 : t + run, ph = tok_phys(s, t);
        const size_t o = (size_t)(t - t0) * D;
        cq_status st = cq_cache_read(s->c, layer, head, ph, ph + (e - t), K ? K + o : NULL,
                                     V ? V + o : NULL, err);
        if (st) return st;
        t = e;
    }
    return CQ_OK;
}

cq_status cq_seq_export(const cq_seq *s, uint32_t layer, uint32_t head, cq_role role,
                        uint8_t *dst, size_t cap, size_t *len, cq_err *err) {
    cq_err_clear(err);
    if (!s) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence is NULL");
    return cq_cache_export(s->c, layer, head, role, dst, cap, len, err);
}

cq_status cq_seq_attend(const cq_seq *s, uint32_t layer, const float *q, uint32_t n_q_heads,
                        float *out, const cq_attn_opts *opts, cq_err *err) {
    cq_err_clear(err);
    if (!s) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence is NULL");
    return cq_cache_attend(s->c, layer, q, n_q_heads, out, opts, err);
}

cq_status cq_seq_attend_prefill(const cq_seq *s, uint32_t layer, const float *q, uint32_t n_q,
                                uint32_t pos0, uint32_t n_q_heads, float *out,
                                const cq_attn_opts *opts, cq_err *err) {
    cq_err_clear(err);
    if (!s) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence is NULL");
    if (!s->n_part)
        return cq_cache_attend_prefill(s->c, layer, q, n_q, pos0, n_q_heads, out, opts, err);
    cq_attn_item *it = malloc(((size_t)s->n_part + 1) * sizeof *it);
    if (!it) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    uint32_t n_it = 0;
    cq_status st = kvp_prefill_items(s, layer, q, out, n_q, pos0, (size_t)n_q_heads * s->pool->D,
                                     it, &n_it, err);
    if (!st) st = cq_attend_prefill_items(it, n_it, layer, n_q_heads, opts, NULL, err);
    free(it);
    return st;
}

cq_status kvp_prefill_items(const cq_seq *s, uint32_t layer, const float *q, float *out,
                            uint32_t n_q, uint32_t pos0, size_t row, cq_attn_item *it,
                            uint32_t *n_it, cq_err *err) {
    *n_it = 1;
    it[0] = (cq_attn_item){s->c, q, out, n_q, pos0};
    if (!s->n_part || layer >= s->pool->NL || !n_q || !q || !out)
        return CQ_OK; /* the drivers' own checks and answers */
    const uint32_t len = seq_len(s, layer);
    if ((uint64_t)pos0 + n_q > len)
        return cq_err_set(err, CQ_ERR_RANGE, pos0, -1,
                          "queries at [%u, %llu) need that many tokens; layer %u holds %u", pos0,
                          (unsigned long long)pos0 + n_q, layer, len);
    uint32_t k = 0;
    for (uint32_t t = pos0; t < pos0 + n_q; k++) { /* the causal position of each query */
        const uint32_t run = tok_run(s, t), e = pos0 + n_q - t < run ? pos0 + n_q : t + run;
        it[k] = (cq_attn_item){s->c, q + (t - pos0) * row, out + (t - pos0) * row, e - t,
                               tok_phys(s, t)};
        t = e;
    }
    *n_it = k;
    return CQ_OK;
}

cq_status cq_seq_memory(const cq_seq *s, cq_seq_mem *out) {
    if (!s || !out) return CQ_ERR_NULL;
    memset(out, 0, sizeof *out);
    cq_kvpool *p = s->pool;
    pthread_mutex_lock(&p->mu); /* reference counts change under other sequences' calls */
    out->private_bytes = s->tail ? p->tail_bytes : 0;
    for (uint32_t b = 0; b < s->n_blk; b++) {
        cq_prefix_block_info bi;
        cq_prefix_info(p->ix, s->blk[b], &bi, NULL);
        if (bi.refs > 1) {
            out->shared_bytes += bi.bytes;
            out->shared_blocks++;
        } else {
            out->private_bytes += bi.bytes;
        }
    }
    out->blocks = s->n_blk;
    out->tokens = seq_len(s, 0);
    const uint64_t T = store_tokens(p, out->tokens); /* a partial block's unused positions: slack */
    out->slack = ((uint64_t)s->n_blk * p->G - T) * p->block_bytes / p->G;
    pthread_mutex_unlock(&p->mu);
    return CQ_OK;
}

/* ------------------------------------------------------------ prefix caching */

/* Point page b of every store of s at block id (after a swap of blk[b]). */
static void repoint(cq_kvpool *p, cq_seq *s, uint32_t b) {
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            cq_store *d = cq_layer_store(&s->c->layers[L], p->H, j);
            if (d && d->n_pages > b) d->pages[b] = kvp_slot(p, L * p->NS + j, s->blk[b]);
        }
    if (b == 0) kvp_bind_sinks(p, s);
}

cq_status cq_seq_publish(cq_seq *s, const uint32_t *tokens, uint32_t n, cq_err *err) {
    cq_err_clear(err);
    if (!s || (!tokens && n)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence or tokens is NULL");
    cq_kvpool *p = s->pool;
    pthread_mutex_lock(&p->mu);
    uint32_t len;
    cq_status st = common_length(s, &len, "publish", err);
    if (!st) len -= kvp_holes(s);
    if (!st && n > len)
        st = cq_err_set(err, CQ_ERR_RANGE, n, -1, "publishing %u tokens of a sequence of %u", n,
                        len);
    /* the full blocks tokens[0, n) spells; all of them are committed (n <= length) */
    uint32_t nb = st || n < p->S + p->G ? 0 : (n - p->S) / p->G;
    /* a partial block is not published, nor any block after it: their chain does not lie on
     * the G-token grid of a fresh prompt (before it, the positions are the prompt's) */
    if (s->n_part && nb > s->part_b[0]) nb = s->part_b[0];
    uint32_t parent = CQ_BLOCK_NONE;
    for (uint32_t b = 0; b < nb && !st; b++) {
        const uint32_t t0 = b ? p->S + b * p->G : 0, cnt = b ? p->G : p->S + p->G;
        cq_prefix_block_info bi;
        cq_prefix_info(p->ix, s->blk[b], &bi, NULL);
        if (bi.state == CQ_BLOCK_CACHED) { /* adopted or published before: the same tokens */
            if (bi.parent != parent || bi.n_tokens != cnt ||
                memcmp(bi.tokens, tokens + t0, (size_t)cnt * sizeof *tokens))
                st = cq_err_set(err, CQ_ERR_MISMATCH, t0, -1,
                                "block %u was published with other tokens", b);
            parent = s->blk[b];
            continue;
        }
        uint32_t canon;
        st = cq_prefix_commit(p->ix, s->blk[b], parent, tokens + t0, cnt, &canon, err);
        if (st) break;
        if (canon != s->blk[b]) { /* the same block is cached: use it, drop ours (dedup) */
            const uint32_t own = s->blk[b];
            (void)cq_prefix_ref(p->ix, canon, NULL);
            s->blk[b] = canon;
            repoint(p, s, b);
            (void)cq_prefix_release(p->ix, own, NULL);
        }
        parent = canon;
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

void kvp_clear_stores(cq_kvpool *p, cq_seq *s) {
    for (uint32_t L = 0; L < p->NL; L++) {
        cq_layer *l = &s->c->layers[L];
        l->tokens = 0;
        for (uint32_t j = 0; j < p->NS; j++) {
            cq_store *d = cq_layer_store(l, p->H, j);
            if (!d) continue;
            cq_store_trim(s->c, l, d, 0);
            d->n_done = d->n_resid = d->tail_g = 0;
        }
    }
}

cq_status cq_seq_adopt_prefix(cq_seq *s, const uint32_t *tokens, uint32_t n, uint32_t *adopted,
                              cq_err *err) {
    cq_err_clear(err);
    if (!s || !adopted || (!tokens && n))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence, tokens or adopted is NULL");
    *adopted = 0;
    cq_kvpool *p = s->pool;
    pthread_mutex_lock(&p->mu);
    uint32_t len;
    cq_status st = common_length(s, &len, "adopt", err);
    if (!st && (len || s->n_blk))
        st = cq_err_set(err, CQ_ERR_STATE, -1, -1, "adopt needs an empty sequence (%u tokens)",
                        len);
    /* full blocks only, and at least one prompt token left to prefill */
    const uint32_t maxb = st || n <= p->S + p->G ? 0 : (n - 1 - p->S) / p->G;
    if (!st && maxb && blk_reserve(s, maxb))
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    uint32_t nb = 0;
    if (!st && maxb) st = cq_prefix_adopt(p->ix, tokens, n, maxb, s->blk, maxb, &nb, err);
    if (!st && nb) {
        if (nb > maxb) nb = maxb;
        s->n_blk = nb;
        kvp_bind_sinks(p, s);
        const uint32_t T = nb * p->G;
        for (uint32_t L = 0; L < p->NL && !st; L++) {
            cq_layer *l = &s->c->layers[L];
            l->tokens = p->S + T;
            for (uint32_t j = 0; j < p->NS && !st; j++) {
                cq_store *d = cq_layer_store(l, p->H, j);
                if (!d) continue;
                d->n_done = T;
                if (cq_store_reserve(s->c, l, d, T))
                    st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
            }
        }
        if (st) { /* undo: an empty sequence again */
            kvp_clear_stores(p, s);
            (void)cq_prefix_release_chain(p->ix, s->blk, nb, NULL);
            s->n_blk = 0;
            kvp_bind_sinks(p, s);
        } else {
            *adopted = p->S + T;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}
