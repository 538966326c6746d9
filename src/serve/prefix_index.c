/* SPDX-License-Identifier: MIT */
/*
 * prefix_index.c - block accounting and the prefix index of the serving pool
 * (include/cq_prefix.h, docs/SERVING.md "The prefix index"): the CQH64 chain
 * hash, block ids from a min-heap of free ids, reference counts, the byte
 * budget, the hash table of published blocks (chained through the blocks),
 * their parent / child links, the LRU list of unreferenced published blocks,
 * counters and the invariant check. Not here: block contents (the pool).
 */
#include <stdlib.h>
#include <string.h>

#include "cq_prefix.h"
#include "cq_util.h"

/* ------------------------------------------------------------------ CQH64 */

/* mix(z) is one step of the project's splitmix64 generator from state z (cq_rng_u64: add the
 * golden gamma, two xor-shift-multiplies, a final xor-shift), a bijection with full avalanche. */
static uint64_t absorb(uint64_t s, uint64_t w) {
    cq_rng r = {s ^ w};
    return cq_rng_u64(&r);
}

uint64_t cq_prefix_chain_hash(uint64_t config_hash, uint64_t parent_hash, const uint32_t *tokens,
                              uint32_t n) {
    uint64_t s = 0x4351484132303031ull; /* "CQHA2001" */
    s = absorb(s, config_hash);
    s = absorb(s, parent_hash);
    s = absorb(s, n);
    for (uint32_t i = 0; i < n && tokens; i++) s = absorb(s, tokens[i]);
    return s;
}

uint64_t cq_prefix_hash_bytes(const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t s = absorb(0x4351484231303031ull /* "CQHB1001" */, (uint64_t)n);
    for (size_t i = 0; i < n && p; i += 8) {
        uint64_t w = 0;
        for (size_t j = 0; j < 8 && i + j < n; j++) w |= (uint64_t)p[i + j] << (8 * j);
        s = absorb(s, w);
    }
    return s;
}

/* ------------------------------------------------------------------ structure */

#define NONE CQ_BLOCK_NONE

typedef struct blk {
    uint64_t bytes;          /* live: its size; free: 0 */
    uint64_t hash;           /* cached: full chain hash */
    uint32_t *tok;           /* cached: token copy [n_tok] */
    uint32_t n_tok;
    uint32_t refs;
    uint32_t state;          /* cq_block_state */
    uint32_t parent, pos;    /* cached */
    uint32_t hnext;          /* cached: next block of its hash bucket */
    uint32_t lprev, lnext;   /* in the LRU: neighbours (prev = older) */
    uint32_t child;          /* cached: first cached child */
    uint32_t sprev, snext;   /* cached: siblings under the same parent */
    uint32_t in_lru;
} blk;

struct cq_prefix_index {
    cq_prefix_config cfg;
    uint64_t key_mask;       /* the bits of the hash the buckets compare */
    blk *b;
    uint32_t cap;
    uint32_t *heap, n_heap;  /* free ids, min-heap */
    uint32_t *bucket, n_bucket; /* power of two, or 0 */
    uint32_t lru_old, lru_new;
    cq_prefix_stats st;
};

/* A free slot: no size, no references, no links. */
static void blk_clear(blk *x) {
    memset(x, 0, sizeof *x);
    x->parent = x->hnext = x->lprev = x->lnext = x->child = x->sprev = x->snext = NONE;
}

static uint64_t meta_of(uint32_t cap, uint32_t n_bucket) {
    return sizeof(cq_prefix_index) + (uint64_t)cap * (sizeof(blk) + sizeof(uint32_t)) +
           (uint64_t)n_bucket * sizeof(uint32_t);
}

/* free-id min-heap */
static void heap_push(cq_prefix_index *ix, uint32_t id) {
    uint32_t i = ix->n_heap++;
    while (i) {
        uint32_t p = (i - 1) / 2;
        if (ix->heap[p] <= id) break;
        ix->heap[i] = ix->heap[p];
        i = p;
    }
    ix->heap[i] = id;
}
static uint32_t heap_pop(cq_prefix_index *ix) {
    uint32_t top = ix->heap[0], last = ix->heap[--ix->n_heap], i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= ix->n_heap) break;
        if (c + 1 < ix->n_heap && ix->heap[c + 1] < ix->heap[c]) c++;
        if (ix->heap[c] >= last) break;
        ix->heap[i] = ix->heap[c];
        i = c;
    }
    if (ix->n_heap) ix->heap[i] = last;
    return top;
}

/* LRU list: lru_old is evicted first; entries are cached blocks with refs == 0 */
static void lru_push_new(cq_prefix_index *ix, uint32_t id) {
    blk *x = &ix->b[id];
    x->in_lru = 1;
    x->lnext = NONE;
    x->lprev = ix->lru_new;
    if (ix->lru_new != NONE) ix->b[ix->lru_new].lnext = id;
    else ix->lru_old = id;
    ix->lru_new = id;
    ix->st.lru_blocks++;
    ix->st.lru_bytes += x->bytes;
}
static void lru_unlink(cq_prefix_index *ix, uint32_t id) {
    blk *x = &ix->b[id];
    if (x->lprev != NONE) ix->b[x->lprev].lnext = x->lnext;
    else ix->lru_old = x->lnext;
    if (x->lnext != NONE) ix->b[x->lnext].lprev = x->lprev;
    else ix->lru_new = x->lprev;
    x->in_lru = 0;
    x->lprev = x->lnext = NONE;
    ix->st.lru_blocks--;
    ix->st.lru_bytes -= x->bytes;
}

static uint32_t bucket_of(const cq_prefix_index *ix, uint64_t hash) {
    return (uint32_t)((hash & ix->key_mask) & (ix->n_bucket - 1));
}

/* An equal published entry: same (masked) hash, parent, tokens. */
static uint32_t find(const cq_prefix_index *ix, uint64_t hash, uint32_t parent,
                     const uint32_t *tokens, uint32_t n) {
    if (!ix->n_bucket) return NONE;
    for (uint32_t e = ix->bucket[bucket_of(ix, hash)]; e != NONE; e = ix->b[e].hnext) {
        const blk *x = &ix->b[e];
        if ((x->hash & ix->key_mask) == (hash & ix->key_mask) && x->parent == parent &&
            x->n_tok == n && !memcmp(x->tok, tokens, (size_t)n * sizeof *tokens))
            return e;
    }
    return NONE;
}

static void bucket_remove(cq_prefix_index *ix, uint32_t id) {
    uint32_t *pp = &ix->bucket[bucket_of(ix, ix->b[id].hash)];
    while (*pp != id) pp = &ix->b[*pp].hnext;
    *pp = ix->b[id].hnext;
    ix->b[id].hnext = NONE;
}

/* Make id a free block (it holds no reference and is in no list). */
static void make_free(cq_prefix_index *ix, uint32_t id) {
    blk *x = &ix->b[id];
    uint64_t bytes = x->bytes;
    ix->st.used_bytes -= bytes;
    ix->st.live_blocks--;
    blk_clear(x);
    heap_push(ix, id);
    if (ix->cfg.on_free) ix->cfg.on_free(ix->cfg.ctx, id, bytes);
}

/* Take a cached block out of the index (not out of its parent's child list: the caller
 * does that for the root of a removal, the rest go with their subtree). */
static void uncache(cq_prefix_index *ix, uint32_t id) {
    blk *x = &ix->b[id];
    bucket_remove(ix, id);
    ix->st.meta_bytes -= (uint64_t)x->n_tok * sizeof *x->tok;
    free(x->tok);
    x->tok = NULL;
    x->n_tok = 0;
    x->hash = 0;
    x->parent = x->child = x->sprev = x->snext = NONE;
    x->pos = 0;
    x->state = CQ_BLOCK_PRIVATE;
    ix->st.cached_blocks--;
    ix->st.cached_bytes -= x->bytes;
}

static void child_unlink(cq_prefix_index *ix, uint32_t id) {
    blk *x = &ix->b[id];
    if (x->sprev != NONE) ix->b[x->sprev].snext = x->snext;
    else if (x->parent != NONE) ix->b[x->parent].child = x->snext;
    if (x->snext != NONE) ix->b[x->snext].sprev = x->sprev;
    x->sprev = x->snext = NONE;
}

/* Evict root (an LRU entry) and every cached descendant, children before parents, with no
 * allocation: each step detaches the first remaining child and descends, and climbs back
 * through the parent link once a block has no children left. Returns the bytes freed. */
static uint64_t evict_subtree(cq_prefix_index *ix, uint32_t root) {
    uint64_t freed = 0;
    child_unlink(ix, root);
    uint32_t cur = root;
    for (;;) {
        blk *x = &ix->b[cur];
        if (x->child != NONE) {
            uint32_t c = x->child;
            x->child = ix->b[c].snext;
            if (x->child != NONE) ix->b[x->child].sprev = NONE;
            ix->b[c].sprev = ix->b[c].snext = NONE;
            cur = c;
            continue;
        }
        uint32_t up = x->parent;
        int done = cur == root;
        uint64_t bytes = x->bytes;
        uncache(ix, cur);
        if (ix->b[cur].in_lru) {
            lru_unlink(ix, cur);
            make_free(ix, cur);
            ix->st.blocks_evicted++;
            ix->st.bytes_evicted += bytes;
            freed += bytes;
        } else {
            ix->st.blocks_orphaned++; /* referenced: stays live as a private block */
        }
        if (done) break;
        cur = up;
    }
    return freed;
}

/* ------------------------------------------------------------------ lifecycle */

cq_status cq_prefix_create(const cq_prefix_config *cfg, cq_prefix_index **out, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cfg or out is NULL");
    *out = NULL;
    if (!cfg->block_tokens)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "block_tokens must be at least 1");
    if (!cfg->budget_bytes) return cq_err_set(err, CQ_ERR_ARG, -1, -1, "budget_bytes is 0");
    if (cfg->hash_bits > 64)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "hash_bits %u > 64", cfg->hash_bits);
    cq_prefix_index *ix = calloc(1, sizeof *ix);
    if (!ix) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    ix->cfg = *cfg;
    if (!ix->cfg.first_block_tokens) ix->cfg.first_block_tokens = cfg->block_tokens;
    uint32_t hb = cfg->hash_bits ? cfg->hash_bits : 64;
    ix->key_mask = hb == 64 ? ~0ull : (1ull << hb) - 1;
    ix->lru_old = ix->lru_new = NONE;
    ix->st.budget_bytes = cfg->budget_bytes;
    ix->st.meta_bytes = meta_of(0, 0);
    *out = ix;
    return CQ_OK;
}

void cq_prefix_free(cq_prefix_index *ix) {
    if (!ix) return;
    for (uint32_t i = 0; i < ix->cap; i++) free(ix->b[i].tok);
    free(ix->b);
    free(ix->heap);
    free(ix->bucket);
    free(ix);
}

/* Room for at least `need` free ids; nothing changes on failure. */
static cq_status grow_ids(cq_prefix_index *ix, uint32_t need) {
    if (ix->n_heap >= need) return CQ_OK;
    uint64_t want = (uint64_t)ix->cap + (need - ix->n_heap);
    uint64_t cap = ix->cap ? (uint64_t)ix->cap * 2 : 16;
    if (cap < want) cap = want;
    if (cap >= NONE) cap = NONE - 1;
    if (cap < want) return CQ_ERR_OVERFLOW;
    blk *nb = malloc((size_t)cap * sizeof *nb);
    uint32_t *nh = malloc((size_t)cap * sizeof *nh);
    if (!nb || !nh) {
        free(nb);
        free(nh);
        return CQ_ERR_NOMEM;
    }
    if (ix->cap) memcpy(nb, ix->b, (size_t)ix->cap * sizeof *nb);
    if (ix->n_heap) memcpy(nh, ix->heap, (size_t)ix->n_heap * sizeof *nh);
    free(ix->b);
    free(ix->heap);
    ix->b = nb;
    ix->heap = nh;
    uint32_t old = ix->cap;
    ix->cap = (uint32_t)cap;
    ix->st.meta_bytes += meta_of(ix->cap, 0) - meta_of(old, 0);
    for (uint32_t i = old; i < ix->cap; i++) {
        blk_clear(&ix->b[i]);
        heap_push(ix, i);
    }
    return CQ_OK;
}

/* Buckets for one more cached block (load <= 3/4); nothing changes on failure. */
static cq_status grow_buckets(cq_prefix_index *ix) {
    uint64_t want = (uint64_t)ix->st.cached_blocks + 1;
    if (ix->n_bucket && want * 4 <= (uint64_t)ix->n_bucket * 3) return CQ_OK;
    uint32_t nb = ix->n_bucket ? ix->n_bucket * 2 : 64;
    if (!nb) return CQ_ERR_OVERFLOW;
    uint32_t *t = malloc((size_t)nb * sizeof *t);
    if (!t) return CQ_ERR_NOMEM;
    for (uint32_t i = 0; i < nb; i++) t[i] = NONE;
    uint32_t old_n = ix->n_bucket;
    uint32_t *old = ix->bucket;
    ix->bucket = t;
    ix->n_bucket = nb;
    for (uint32_t i = 0; i < old_n; i++) {
        for (uint32_t e = old[i]; e != NONE;) {
            uint32_t next = ix->b[e].hnext;
            uint32_t k = bucket_of(ix, ix->b[e].hash);
            ix->b[e].hnext = t[k];
            t[k] = e;
            e = next;
        }
    }
    free(old);
    ix->st.meta_bytes += (uint64_t)(nb - old_n) * sizeof *t;
    return CQ_OK;
}

/* ------------------------------------------------------------------ blocks */

static cq_status check_live(const cq_prefix_index *ix, uint32_t id, cq_err *err) {
    if (id >= ix->cap)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "block id %u out of range (capacity %u)", id,
                          ix->cap);
    if (ix->b[id].state == CQ_BLOCK_FREE)
        return cq_err_set(err, CQ_ERR_STATE, -1, -1, "block %u is free", id);
    return CQ_OK;
}

/* Room for need more bytes: CQ_ERR_BUDGET (nothing changed but the refusal counter) or
 * CQ_OK once enough LRU blocks are evicted. `what` names the request in the message. */
static int fits(const cq_prefix_index *ix, uint64_t need) {
    const uint64_t free_now = ix->cfg.budget_bytes - ix->st.used_bytes;
    return need <= free_now || need - free_now <= ix->st.lru_bytes;
}
static cq_status refuse(cq_prefix_index *ix, uint64_t need, const char *what, cq_err *err) {
    ix->st.budget_refusals++;
    return cq_err_set(err, CQ_ERR_BUDGET, -1, -1,
                      "%s of %llu bytes does not fit the budget: %llu of %llu bytes in use, %llu "
                      "evictable; nothing changed",
                      what, (unsigned long long)need, (unsigned long long)ix->st.used_bytes,
                      (unsigned long long)ix->cfg.budget_bytes,
                      (unsigned long long)ix->st.lru_bytes);
}
static void make_room(cq_prefix_index *ix, uint64_t need) {
    while (ix->cfg.budget_bytes - ix->st.used_bytes < need) evict_subtree(ix, ix->lru_old);
}

cq_status cq_prefix_alloc(cq_prefix_index *ix, const uint64_t *bytes, uint32_t n, uint32_t *ids,
                          cq_err *err) {
    cq_err_clear(err);
    if (!ix || !bytes || !ids) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (!n) return cq_err_set(err, CQ_ERR_ARG, -1, -1, "allocation of 0 blocks");
    uint64_t need = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!bytes[i]) return cq_err_set(err, CQ_ERR_ARG, -1, -1, "block %u of 0 bytes", i);
        if (need + bytes[i] < need)
            return cq_err_set(err, CQ_ERR_OVERFLOW, -1, -1, "allocation size overflows");
        need += bytes[i];
    }
    if (!fits(ix, need)) return refuse(ix, need, n == 1 ? "a block" : "an allocation", err);
    cq_status st = grow_ids(ix, n);
    if (st) return cq_err_set(err, st, -1, -1, "cannot grow the block table; nothing changed");
    make_room(ix, need);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = heap_pop(ix);
        blk *x = &ix->b[id];
        x->state = CQ_BLOCK_PRIVATE;
        x->refs = 1;
        x->bytes = bytes[i];
        ix->st.used_bytes += bytes[i];
        ix->st.referenced_bytes += bytes[i];
        ix->st.live_blocks++;
        ix->st.referenced_blocks++;
        ids[i] = id;
    }
    ix->st.allocs++;
    ix->st.blocks_allocated += n;
    return CQ_OK;
}

cq_status cq_prefix_charge(cq_prefix_index *ix, uint64_t bytes, cq_err *err) {
    cq_err_clear(err);
    if (!ix) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "index is NULL");
    if (!fits(ix, bytes)) return refuse(ix, bytes, "a charge", err);
    make_room(ix, bytes);
    ix->st.used_bytes += bytes;
    ix->st.charged_bytes += bytes;
    return CQ_OK;
}

cq_status cq_prefix_uncharge(cq_prefix_index *ix, uint64_t bytes, cq_err *err) {
    cq_err_clear(err);
    if (!ix) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "index is NULL");
    if (bytes > ix->st.charged_bytes)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                          "uncharge of %llu bytes, only %llu are charged; nothing changed",
                          (unsigned long long)bytes, (unsigned long long)ix->st.charged_bytes);
    ix->st.used_bytes -= bytes;
    ix->st.charged_bytes -= bytes;
    return CQ_OK;
}

static void take_ref(cq_prefix_index *ix, uint32_t id) {
    blk *x = &ix->b[id];
    if (x->refs++ == 0) {
        lru_unlink(ix, id);
        ix->st.referenced_blocks++;
        ix->st.referenced_bytes += x->bytes;
    }
}

cq_status cq_prefix_ref(cq_prefix_index *ix, uint32_t id, cq_err *err) {
    cq_err_clear(err);
    if (!ix) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "index is NULL");
    cq_status st = check_live(ix, id, err);
    if (st) return st;
    if (ix->b[id].refs == UINT32_MAX)
        return cq_err_set(err, CQ_ERR_OVERFLOW, -1, -1, "block %u: reference count overflows", id);
    take_ref(ix, id);
    return CQ_OK;
}

/* The reference has already been dropped to 0: retire the block. */
static void retire(cq_prefix_index *ix, uint32_t id) {
    blk *x = &ix->b[id];
    ix->st.referenced_blocks--;
    ix->st.referenced_bytes -= x->bytes;
    if (x->state == CQ_BLOCK_CACHED) lru_push_new(ix, id);
    else make_free(ix, id);
}

cq_status cq_prefix_release(cq_prefix_index *ix, uint32_t id, cq_err *err) {
    return cq_prefix_release_chain(ix, &id, 1, err);
}

cq_status cq_prefix_release_chain(cq_prefix_index *ix, const uint32_t *ids, uint32_t n,
                                  cq_err *err) {
    cq_err_clear(err);
    if (!ix || (!ids && n)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    /* drop the counts first, undo on a bad entry (a repeated id needs as many references) */
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t id = ids[i];
        const char *why = id >= ix->cap                       ? "is out of range"
                          : ix->b[id].state == CQ_BLOCK_FREE ? "is free"
                          : ix->b[id].refs == 0              ? "has no reference left"
                                                             : NULL;
        if (why) {
            const cq_status st = id >= ix->cap ? CQ_ERR_RANGE : CQ_ERR_STATE;
            const uint32_t entry = i;
            while (i--) ix->b[ids[i]].refs++;
            return cq_err_set(err, st, -1, -1,
                              "release of block %u (entry %u of %u) refused: it %s; nothing "
                              "released", id, entry, n, why);
        }
        ix->b[id].refs--;
    }
    /* deepest first; a repeated id retires once (at its last occurrence in the list) */
    for (uint32_t i = n; i--;) {
        blk *x = &ix->b[ids[i]];
        if (x->state != CQ_BLOCK_FREE && x->refs == 0 && !x->in_lru) retire(ix, ids[i]);
    }
    return CQ_OK;
}

/* ------------------------------------------------------------------ the index */

cq_status cq_prefix_commit(cq_prefix_index *ix, uint32_t id, uint32_t parent,
                           const uint32_t *tokens, uint32_t n, uint32_t *canonical, cq_err *err) {
    cq_err_clear(err);
    if (!ix || !tokens || !canonical) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    cq_status st = check_live(ix, id, err);
    if (st) return st;
    if (ix->b[id].state != CQ_BLOCK_PRIVATE)
        return cq_err_set(err, CQ_ERR_STATE, -1, -1, "block %u is already published", id);
    uint64_t ph = 0;
    if (parent != NONE) {
        if (parent >= ix->cap || ix->b[parent].state != CQ_BLOCK_CACHED)
            return cq_err_set(err, CQ_ERR_STATE, -1, -1,
                              "parent %u of block %u is not a published block", parent, id);
        ph = ix->b[parent].hash;
    }
    const uint32_t want = parent == NONE ? ix->cfg.first_block_tokens : ix->cfg.block_tokens;
    if (n != want)
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1,
                          "block %u at %s has %u tokens, a full block there has %u", id,
                          parent == NONE ? "position 0" : "a later position", n, want);
    const uint64_t h = cq_prefix_chain_hash(ix->cfg.config_hash, ph, tokens, n);
    uint32_t e = find(ix, h, parent, tokens, n);
    if (e != NONE) {
        ix->st.duplicates++;
        *canonical = e;
        return CQ_OK;
    }
    uint32_t *tok = malloc((size_t)n * sizeof *tok);
    if (!tok || (st = grow_buckets(ix))) {
        free(tok);
        return cq_err_set(err, tok ? st : CQ_ERR_NOMEM, -1, -1,
                          "cannot grow the index; block %u not published", id);
    }
    memcpy(tok, tokens, (size_t)n * sizeof *tok);
    blk *x = &ix->b[id];
    x->state = CQ_BLOCK_CACHED;
    x->hash = h;
    x->tok = tok;
    x->n_tok = n;
    x->parent = parent;
    x->pos = parent == NONE ? 0 : ix->b[parent].pos + 1;
    uint32_t k = bucket_of(ix, h);
    x->hnext = ix->bucket[k];
    ix->bucket[k] = id;
    x->child = NONE;
    x->sprev = NONE;
    x->snext = NONE;
    if (parent != NONE) {
        x->snext = ix->b[parent].child;
        if (x->snext != NONE) ix->b[x->snext].sprev = id;
        ix->b[parent].child = id;
    }
    ix->st.cached_blocks++;
    ix->st.cached_bytes += x->bytes;
    ix->st.meta_bytes += (uint64_t)n * sizeof *tok;
    ix->st.commits++;
    *canonical = id;
    return CQ_OK;
}

/* The walk shared by match and adopt: blocks found, tokens they cover. */
static uint32_t walk(const cq_prefix_index *ix, const uint32_t *tokens, uint32_t n,
                     uint32_t max_blocks, uint32_t *ids, uint32_t cap, uint64_t *covered) {
    uint32_t k = 0, parent = NONE;
    uint64_t off = 0, ph = 0;
    while (k < max_blocks) {
        uint32_t len = k ? ix->cfg.block_tokens : ix->cfg.first_block_tokens;
        if (n - off < len) break;
        uint64_t h = cq_prefix_chain_hash(ix->cfg.config_hash, ph, tokens + off, len);
        uint32_t e = find(ix, h, parent, tokens + off, len);
        if (e == NONE) break;
        if (ids && k < cap) ids[k] = e;
        k++;
        off += len;
        parent = e;
        ph = ix->b[e].hash;
    }
    *covered = off;
    return k;
}

cq_status cq_prefix_match(const cq_prefix_index *ix, const uint32_t *tokens, uint32_t n,
                          uint32_t max_blocks, uint32_t *ids, uint32_t cap, uint32_t *n_blocks,
                          cq_err *err) {
    cq_err_clear(err);
    if (!ix || !n_blocks || (!tokens && n)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    uint64_t covered;
    *n_blocks = walk(ix, tokens, n, max_blocks, ids, cap, &covered);
    return CQ_OK;
}

cq_status cq_prefix_adopt(cq_prefix_index *ix, const uint32_t *tokens, uint32_t n,
                          uint32_t max_blocks, uint32_t *ids, uint32_t cap, uint32_t *n_blocks,
                          cq_err *err) {
    cq_err_clear(err);
    if (!ix || !n_blocks || !ids || (!tokens && n))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    uint32_t lim = max_blocks < cap ? max_blocks : cap;
    uint64_t covered;
    uint32_t k = walk(ix, tokens, n, lim, ids, cap, &covered);
    for (uint32_t i = 0; i < k; i++)
        if (ix->b[ids[i]].refs == UINT32_MAX)
            return cq_err_set(err, CQ_ERR_OVERFLOW, -1, -1,
                              "block %u: reference count overflows; nothing adopted", ids[i]);
    for (uint32_t i = 0; i < k; i++) take_ref(ix, ids[i]);
    ix->st.lookups++;
    ix->st.hits += k > 0;
    ix->st.blocks_reused += k;
    ix->st.tokens_reused += covered;
    *n_blocks = k;
    return CQ_OK;
}

cq_status cq_prefix_evict(cq_prefix_index *ix, uint64_t bytes, uint64_t *freed, cq_err *err) {
    cq_err_clear(err);
    if (!ix) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "index is NULL");
    uint64_t f = 0;
    while (f < bytes && ix->lru_old != NONE) f += evict_subtree(ix, ix->lru_old);
    if (freed) *freed = f;
    return CQ_OK;
}

/* ------------------------------------------------------------------ inspection */

uint32_t cq_prefix_capacity(const cq_prefix_index *ix) { return ix ? ix->cap : 0; }

cq_status cq_prefix_info(const cq_prefix_index *ix, uint32_t id, cq_prefix_block_info *out,
                         cq_err *err) {
    cq_err_clear(err);
    if (!ix || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (id >= ix->cap)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "block id %u out of range (capacity %u)", id,
                          ix->cap);
    const blk *x = &ix->b[id];
    memset(out, 0, sizeof *out);
    out->state = x->state;
    out->refs = x->refs;
    out->bytes = x->bytes;
    out->in_lru = x->in_lru;
    out->parent = x->state == CQ_BLOCK_CACHED ? x->parent : NONE;
    if (x->state == CQ_BLOCK_CACHED) {
        out->pos = x->pos;
        out->n_tokens = x->n_tok;
        out->hash = x->hash;
        out->tokens = x->tok;
    }
    return CQ_OK;
}

uint32_t cq_prefix_find(const cq_prefix_index *ix, uint64_t hash, uint32_t pos) {
    uint32_t best = NONE;
    if (!ix || !ix->n_bucket) return NONE;
    for (uint32_t e = ix->bucket[bucket_of(ix, hash)]; e != NONE; e = ix->b[e].hnext) {
        const blk *x = &ix->b[e];
        if (x->hash == hash && x->pos == pos && (best == NONE || e < best)) best = e;
    }
    return best;
}

cq_status cq_prefix_lru(const cq_prefix_index *ix, uint32_t *ids, uint32_t cap, uint32_t *n,
                        cq_err *err) {
    cq_err_clear(err);
    if (!ix || !n || (!ids && cap)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    uint32_t k = 0;
    for (uint32_t e = ix->lru_old; e != NONE; e = ix->b[e].lnext, k++)
        if (k < cap) ids[k] = e;
    *n = k;
    return CQ_OK;
}

void cq_prefix_stats_get(const cq_prefix_index *ix, cq_prefix_stats *out) {
    if (!out) return;
    if (!ix) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = ix->st;
}

#define FAIL(...) return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1, __VA_ARGS__)

cq_status cq_prefix_check(const cq_prefix_index *ix, cq_err *err) {
    cq_err_clear(err);
    if (!ix) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "index is NULL");
    cq_prefix_stats s;
    memset(&s, 0, sizeof s);
    uint64_t tok_bytes = 0;
    uint32_t n_free = 0;
    for (uint32_t i = 0; i < ix->cap; i++) {
        const blk *x = &ix->b[i];
        if (x->state > CQ_BLOCK_CACHED) FAIL("block %u: state %u", i, x->state);
        if (x->state == CQ_BLOCK_FREE) {
            if (x->bytes || x->refs || x->in_lru || x->tok) FAIL("free block %u holds state", i);
            n_free++;
            continue;
        }
        if (!x->bytes) FAIL("live block %u of 0 bytes", i);
        s.live_blocks++;
        s.used_bytes += x->bytes;
        if (x->refs) s.referenced_blocks++, s.referenced_bytes += x->bytes;
        if (x->state == CQ_BLOCK_PRIVATE) {
            if (!x->refs) FAIL("private block %u without a reference", i);
            if (x->in_lru || x->tok || x->parent != NONE || x->child != NONE)
                FAIL("private block %u has index links", i);
            continue;
        }
        s.cached_blocks++;
        s.cached_bytes += x->bytes;
        tok_bytes += (uint64_t)x->n_tok * sizeof *x->tok;
        if ((x->refs == 0) != (x->in_lru != 0)) FAIL("block %u: refs %u, in_lru %u", i, x->refs, x->in_lru);
        if (x->in_lru) s.lru_blocks++, s.lru_bytes += x->bytes;
        uint64_t ph = 0;
        uint32_t want = ix->cfg.first_block_tokens, pos = 0;
        if (x->parent != NONE) {
            if (x->parent >= ix->cap || ix->b[x->parent].state != CQ_BLOCK_CACHED)
                FAIL("block %u: parent %u is not cached", i, x->parent);
            ph = ix->b[x->parent].hash;
            want = ix->cfg.block_tokens;
            pos = ix->b[x->parent].pos + 1;
            uint32_t c = ix->b[x->parent].child, steps = 0;
            while (c != NONE && c != i && steps++ <= ix->cap) c = ix->b[c].snext;
            if (c != i) FAIL("block %u missing from the child list of %u", i, x->parent);
        }
        if (x->n_tok != want || !x->tok) FAIL("block %u: %u tokens, want %u", i, x->n_tok, want);
        if (x->pos != pos) FAIL("block %u: position %u, want %u", i, x->pos, pos);
        if (x->hash != cq_prefix_chain_hash(ix->cfg.config_hash, ph, x->tok, x->n_tok))
            FAIL("block %u: stored chain hash is not the hash of its tokens and parent", i);
        for (uint32_t c = x->child, prev = NONE, steps = 0; c != NONE; prev = c, c = ix->b[c].snext) {
            if (++steps > ix->cap || c >= ix->cap) FAIL("block %u: child list loops", i);
            if (ix->b[c].state != CQ_BLOCK_CACHED || ix->b[c].parent != i || ix->b[c].sprev != prev)
                FAIL("block %u: bad child %u", i, c);
        }
        /* in its bucket exactly once */
        uint32_t seen = 0, steps = 0;
        for (uint32_t e = ix->bucket[bucket_of(ix, x->hash)]; e != NONE; e = ix->b[e].hnext) {
            if (++steps > ix->cap) FAIL("hash bucket of block %u loops", i);
            seen += e == i;
        }
        if (seen != 1) FAIL("block %u found %u times in its hash bucket", i, seen);
    }
    uint32_t in_buckets = 0;
    for (uint32_t k = 0; k < ix->n_bucket; k++)
        for (uint32_t e = ix->bucket[k]; e != NONE; e = ix->b[e].hnext) {
            if (e >= ix->cap || ix->b[e].state != CQ_BLOCK_CACHED || bucket_of(ix, ix->b[e].hash) != k)
                FAIL("bucket %u holds block %u wrongly", k, e);
            if (++in_buckets > s.cached_blocks) FAIL("buckets hold more blocks than are cached");
        }
    if (in_buckets != s.cached_blocks) FAIL("buckets hold %u of %u cached blocks", in_buckets, s.cached_blocks);
    /* the LRU list */
    uint32_t k = 0, prev = NONE;
    for (uint32_t e = ix->lru_old; e != NONE; prev = e, e = ix->b[e].lnext) {
        if (e >= ix->cap || !ix->b[e].in_lru || ix->b[e].lprev != prev || ++k > s.lru_blocks)
            FAIL("LRU list broken at block %u", e);
    }
    if (k != s.lru_blocks || ix->lru_new != prev) FAIL("LRU list holds %u of %u entries", k, s.lru_blocks);
    /* the free-id heap: exactly the free ids, heap-ordered */
    if (ix->n_heap != n_free) FAIL("free-id heap holds %u ids, %u blocks are free", ix->n_heap, n_free);
    for (uint32_t i = 0; i < ix->n_heap; i++) {
        if (ix->heap[i] >= ix->cap || ix->b[ix->heap[i]].state != CQ_BLOCK_FREE)
            FAIL("free-id heap holds live id %u", ix->heap[i]);
        if (i && ix->heap[(i - 1) / 2] >= ix->heap[i]) FAIL("free-id heap order broken at %u", i);
    }
    /* the running figures */
    const cq_prefix_stats *r = &ix->st;
    s.used_bytes += r->charged_bytes;
    if (r->used_bytes != s.used_bytes || r->referenced_bytes != s.referenced_bytes ||
        r->cached_bytes != s.cached_bytes || r->lru_bytes != s.lru_bytes ||
        r->live_blocks != s.live_blocks || r->referenced_blocks != s.referenced_blocks ||
        r->cached_blocks != s.cached_blocks || r->lru_blocks != s.lru_blocks)
        FAIL("running totals differ from the structure (used %llu vs %llu, live %u vs %u)",
             (unsigned long long)r->used_bytes, (unsigned long long)s.used_bytes, r->live_blocks,
             s.live_blocks);
    if (s.used_bytes > ix->cfg.budget_bytes) FAIL("%llu bytes in use exceed the budget",
                                                  (unsigned long long)s.used_bytes);
    if (r->meta_bytes != meta_of(ix->cap, ix->n_bucket) + tok_bytes)
        FAIL("bookkeeping bytes %llu, structure holds %llu", (unsigned long long)r->meta_bytes,
             (unsigned long long)(meta_of(ix->cap, ix->n_bucket) + tok_bytes));
    return CQ_OK;
}
