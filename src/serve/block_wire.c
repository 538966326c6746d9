/* SPDX-License-Identifier: MIT */
/*
 * block_wire.c - blocks of the serving pool on the wire (include/cq_serve.h, "Blocks on
 * the wire"; the byte layout is docs/SERVING.md, "Blocks on the wire"): the chain hashes
 * a prompt spells, the self-describing, versioned, CRC-32C-checked wire form of one
 * cached block (its token ids, every (layer, store) slot in the canonical form of
 * src/cache/slot_io.h, the sinks of a first block), its validation against a pool, and
 * its insertion into a pool's prefix index as a cached block that adoption then uses
 * like one published locally. Other ways blocks move (sequence files) reuse this form.
 *
 * Untrusted input: every size is checked against the pool's own layout before it is
 * used, the CRC before any field past the version is trusted, the chain hash recomputed
 * from the parent hash and the token ids, and every slot checked with its format's own
 * check (the invariants an append maintains) before anything changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/fused.h"
#include "../cache/slot_io.h"
#include "../core/cq_le.h"
#include "cq_util.h"
#include "kvpool_internal.h"

#define WIRE_MAGIC "CQBW"
#define WIRE_VERSION 1u
#define WIRE_HDR 80u   /* the fixed header */
#define WIRE_ENTRY 16u /* per (layer, store): u32 kind, u32 0, u64 canonical bytes */

uint64_t kvp_wire_len(const cq_kvpool *p, uint32_t pos) {
    const uint64_t first = pos == 0;
    uint64_t b = WIRE_HDR + (uint64_t)p->NA * WIRE_ENTRY + 4ull * (p->G + (first ? p->S : 0));
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *s = store_at(p, L, j);
            if (s) b += cq_slot_canon_len(s);
        }
    if (first) b += p->sink_bytes;
    return b + 4;
}

size_t cq_kvpool_block_wire_size(const cq_kvpool *p) {
    if (!p) return 0;
    const uint64_t b = kvp_wire_len(p, 0), b1 = kvp_wire_len(p, 1);
    return (size_t)(b > b1 ? b : b1);
}

cq_status cq_kvpool_chain_hashes(const cq_kvpool *p, const uint32_t *tokens, uint32_t n,
                                 uint64_t *hashes, uint32_t cap, uint32_t *n_blocks,
                                 cq_err *err) {
    cq_err_clear(err);
    if (!p || !n_blocks || (!tokens && n) || (!hashes && cap))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "pool, tokens, hashes or n_blocks is NULL");
    *n_blocks = 0;
    const uint32_t F = p->S + p->G;
    const uint32_t full = n < F ? 0 : 1 + (n - F) / p->G;
    uint64_t h = 0;
    uint32_t k = 0;
    for (; k < full && k < cap; k++) {
        const uint32_t t0 = k ? F + (k - 1) * p->G : 0, cnt = k ? p->G : F;
        h = cq_prefix_chain_hash(p->config_hash, h, tokens + t0, cnt);
        hashes[k] = h;
    }
    *n_blocks = k;
    return CQ_OK;
}

uint32_t kvp_find_cached(const cq_kvpool *p, uint64_t hash, uint32_t pos,
                            cq_prefix_block_info *bi) {
    const uint32_t id = cq_prefix_find(p->ix, hash, pos);
    return id != CQ_BLOCK_NONE && cq_prefix_info(p->ix, id, bi, NULL) == CQ_OK ? id : CQ_BLOCK_NONE;
}

/* ------------------------------------------------------------ encode */

void kvp_wire_write(const cq_kvpool *p, uint32_t id, uint32_t pos, const uint32_t *tokens,
                    uint64_t parent_hash, uint64_t chain_hash, uint8_t *dst) {
    const uint32_t n_tokens = pos ? p->G : p->S + p->G;
    const uint64_t need = kvp_wire_len(p, pos);
    uint8_t *q = dst;
    memcpy(q, WIRE_MAGIC, 4);
    cq_put_u32le(q + 4, WIRE_VERSION);
    cq_put_u64le(q + 8, p->config_hash);
    cq_put_u64le(q + 16, p->model_hash);
    const uint32_t v[8] = {p->NL, p->H, p->D, p->G, p->S, p->NS, pos, n_tokens};
    for (int i = 0; i < 8; i++) cq_put_u32le(q + 24 + 4 * i, v[i]);
    cq_put_u64le(q + 56, parent_hash);
    cq_put_u64le(q + 64, chain_hash);
    cq_put_u64le(q + 72, need);
    q += WIRE_HDR;
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++, q += WIRE_ENTRY) {
            const cq_store *s = store_at(p, L, j);
            cq_put_u32le(q, s ? (uint32_t)s->kind : KIND_NONE);
            cq_put_u32le(q + 4, 0);
            cq_put_u64le(q + 8, s ? cq_slot_canon_len(s) : 0);
        }
    for (uint32_t t = 0; t < n_tokens; t++, q += 4) cq_put_u32le(q, tokens[t]);
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *s = store_at(p, L, j);
            if (!s) continue;
            cq_slot_export(s, kvp_slot(p, L * p->NS + j, id), q);
            q += cq_slot_canon_len(s);
        }
    if (pos == 0 && p->S) {
        cq_put_u16le_n(q, (const uint16_t *)p->sink_of[id], p->sink_bytes / 2);
        q += p->sink_bytes;
    }
    cq_put_u32le(q, cq_crc32c(0, dst, (size_t)(q - dst)));
}


cq_status cq_kvpool_block_encode(const cq_kvpool *cp, uint64_t chain_hash, uint8_t *dst,
                                 size_t cap, size_t *len, cq_err *err) {
    cq_err_clear(err);
    if (!cp || !len || (!dst && cap))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "pool, dst or len is NULL");
    *len = 0;
    cq_kvpool *p = (cq_kvpool *)cp;
    pthread_mutex_lock(&p->mu);
    cq_status st = CQ_OK;
    cq_prefix_block_info bi, pi;
    uint32_t id = CQ_BLOCK_NONE;
    const uint32_t capn = cq_prefix_capacity(p->ix);
    for (uint32_t i = 0; i < capn && id == CQ_BLOCK_NONE; i++)
        if (cq_prefix_info(p->ix, i, &bi, NULL) == CQ_OK && bi.state == CQ_BLOCK_CACHED &&
            bi.hash == chain_hash)
            id = i;
    if (id == CQ_BLOCK_NONE) {
        st = cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                        "no cached block has chain hash 0x%016llx in this pool",
                        (unsigned long long)chain_hash);
        goto out;
    }
    uint64_t parent_hash = 0;
    if (bi.parent != CQ_BLOCK_NONE) {
        cq_prefix_info(p->ix, bi.parent, &pi, NULL);
        parent_hash = pi.hash;
    }
    const uint64_t need = kvp_wire_len(p, bi.pos);
    *len = (size_t)need;
    if (!dst) goto out;
    if (cap < need) {
        st = cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "a wire block needs %llu bytes, got %zu",
                        (unsigned long long)need, cap);
        goto out;
    }
    kvp_wire_write(p, id, bi.pos, bi.tokens, parent_hash, chain_hash, dst);
out:
    pthread_mutex_unlock(&p->mu);
    return st;
}

/* ------------------------------------------------------------ check */

cq_status kvp_wire_parse(const cq_kvpool *p, const uint8_t *b, size_t len, kvp_wire *w,
                         cq_err *err) {
    memset(w, 0, sizeof *w);
    if (len < WIRE_HDR + 4)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "wire block: %zu bytes, shorter than its %u-byte header (truncated?)",
                          len, WIRE_HDR + 4);
    if (memcmp(b, WIRE_MAGIC, 4))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "wire block: magic: not a ChannelQuant block");
    if (cq_get_u32le(b + 4) != WIRE_VERSION)
        return cq_err_set(err, CQ_ERR_VERSION, -1, -1,
                          "wire block: version %u, this library reads version %u",
                          cq_get_u32le(b + 4), WIRE_VERSION);
    const uint64_t total = cq_get_u64le(b + 72);
    if (total != len)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "wire block: %zu bytes, its header says %llu (truncated or extended)",
                          len, (unsigned long long)total);
    const uint32_t crc = cq_crc32c(0, b, len - 4);
    if (CRC_BAD(cq_get_u32le(b + len - 4), crc))
        return cq_err_set(err, CQ_ERR_CHECKSUM, -1, -1,
                          "wire block: CRC: stored 0x%08x, computed 0x%08x",
                          cq_get_u32le(b + len - 4), crc);
    if (cq_get_u64le(b + 16) != p->model_hash)
        return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                          "wire block: model hash 0x%016llx, this pool's is 0x%016llx",
                          (unsigned long long)cq_get_u64le(b + 16),
                          (unsigned long long)p->model_hash);
    if (cq_get_u64le(b + 8) != p->config_hash)
        return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                          "wire block: configuration hash 0x%016llx, this pool's is 0x%016llx",
                          (unsigned long long)cq_get_u64le(b + 8),
                          (unsigned long long)p->config_hash);
    uint32_t v[8];
    for (int i = 0; i < 8; i++) v[i] = cq_get_u32le(b + 24 + 4 * i);
    const uint32_t want[6] = {p->NL, p->H, p->D, p->G, p->S, p->NS};
    static const char *const names[6] = {"layers", "kv heads", "head_dim", "G", "sinks",
                                         "stores per layer"};
    for (int i = 0; i < 6; i++)
        if (v[i] != want[i])
            return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                              "wire block: %u %s, this pool has %u", v[i], names[i], want[i]);
    const uint32_t pos = v[6], n_tok = v[7];
    const uint64_t parent = cq_get_u64le(b + 56), hash = cq_get_u64le(b + 64);
    if (n_tok != (pos ? p->G : p->S + p->G) || (pos == 0) != (parent == 0))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "wire block: position %u with %u tokens and parent 0x%016llx "
                          "(expected %u tokens, a parent hash %s 0)",
                          pos, n_tok, (unsigned long long)parent, pos ? p->G : p->S + p->G,
                          pos ? "other than" : "of");
    if (total != kvp_wire_len(p, pos))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "wire block: %llu bytes, a block at position %u of this pool has %llu",
                          (unsigned long long)total, pos,
                          (unsigned long long)kvp_wire_len(p, pos));
    const uint8_t *q = b + WIRE_HDR;
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++, q += WIRE_ENTRY) {
            const cq_store *s = store_at(p, L, j);
            const uint32_t kind = s ? (uint32_t)s->kind : KIND_NONE;
            const uint64_t bytes = s ? cq_slot_canon_len(s) : 0;
            if (cq_get_u32le(q) != kind || cq_get_u32le(q + 4) || cq_get_u64le(q + 8) != bytes)
                return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                                  "wire block: layer %u store %u: kind %u, %llu bytes "
                                  "(expected kind %u, %llu bytes)",
                                  L, j, cq_get_u32le(q), (unsigned long long)cq_get_u64le(q + 8),
                                  kind, (unsigned long long)bytes);
        }
    w->tokens = malloc((size_t)n_tok * sizeof *w->tokens);
    if (!w->tokens) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    for (uint32_t t = 0; t < n_tok; t++, q += 4) w->tokens[t] = cq_get_u32le(q);
    const uint64_t h = cq_prefix_chain_hash(p->config_hash, parent, w->tokens, n_tok);
    if (h != hash) {
        free(w->tokens);
        w->tokens = NULL;
        return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                          "wire block: chain hash 0x%016llx, its parent hash and tokens give "
                          "0x%016llx",
                          (unsigned long long)hash, (unsigned long long)h);
    }
    w->slots = q;
    cq_status st = CQ_OK;
    char where[64];
    for (uint32_t L = 0; L < p->NL && !st; L++)
        for (uint32_t j = 0; j < p->NS && !st; j++) {
            const cq_store *s = store_at(p, L, j);
            if (!s) continue;
            snprintf(where, sizeof where, "wire block: layer %u store %u", L, j);
            st = cq_slot_check(s, q, where, err);
            q += cq_slot_canon_len(s);
        }
    if (!st && pos == 0 && p->S) {
        w->sinks = q;
        if (!cq_fused_all_finite(q, p->sink_bytes / 2))
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "wire block: a non-finite fp16 sink");
    }
    if (st) {
        free(w->tokens);
        w->tokens = NULL;
        return st;
    }
    w->info = (cq_block_wire_info){.chain_hash = hash, .parent_hash = parent, .pos = pos,
                                   .n_tokens = n_tok};
    return CQ_OK;
}

cq_status cq_kvpool_block_check(const cq_kvpool *p, const uint8_t *src, size_t len,
                                cq_block_wire_info *info, cq_err *err) {
    cq_err_clear(err);
    if (!p || (!src && len)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "pool or src is NULL");
    kvp_wire w;
    cq_status st = kvp_wire_parse(p, src, len, &w, err);
    if (st) return st;
    free(w.tokens);
    if (info) *info = w.info;
    return CQ_OK;
}

void kvp_wire_import(cq_kvpool *p, uint32_t id, const kvp_wire *w) {
    const uint8_t *q = w->slots;
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *s = store_at(p, L, j);
            if (!s) continue;
            cq_slot_import(s, kvp_slot(p, L * p->NS + j, id), q);
            q += cq_slot_canon_len(s);
        }
    if (w->sinks) cq_get_u16le_n((uint16_t *)p->sink_of[id], w->sinks, p->sink_bytes / 2);
}

/* ------------------------------------------------------------ insert */

cq_status cq_kvpool_block_insert(cq_kvpool *p, const uint8_t *src, size_t len, int *inserted,
                                 cq_err *err) {
    cq_err_clear(err);
    if (!p || (!src && len)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "pool or src is NULL");
    if (inserted) *inserted = 0;
    kvp_wire w;
    cq_status st = kvp_wire_parse(p, src, len, &w, err); /* the configuration only: no lock */
    if (st) return st;
    const cq_block_wire_info *in = &w.info;
    pthread_mutex_lock(&p->mu);
    uint32_t *chain = NULL, id = CQ_BLOCK_NONE, parent = CQ_BLOCK_NONE;
    cq_prefix_block_info bi;
    /* (1) cached already (the same parent hash and tokens): nothing to do */
    const uint32_t have = kvp_find_cached(p, in->chain_hash, in->pos, &bi);
    if (have != CQ_BLOCK_NONE && bi.n_tokens == in->n_tokens &&
        !memcmp(bi.tokens, w.tokens, (size_t)in->n_tokens * sizeof *w.tokens))
        goto out;
    /* (2) the parent and its ancestors: referenced while the block is allocated, so that
     * the evictions the allocation makes cannot take them */
    if (in->pos) {
        parent = kvp_find_cached(p, in->parent_hash, in->pos - 1, &bi);
        if (parent == CQ_BLOCK_NONE) {
            st = cq_err_set(err, CQ_ERR_STATE, in->pos, -1,
                            "wire block at position %u: its parent (chain hash 0x%016llx) is "
                            "not cached in this pool; insert blocks in chain order",
                            in->pos, (unsigned long long)in->parent_hash);
            goto out;
        }
    }
    chain = malloc(((size_t)in->pos + 1) * sizeof *chain);
    if (!chain) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto out;
    }
    uint64_t pinned = 0; /* chain bytes that the LRU holds now and would not once pinned */
    for (uint32_t k = in->pos, a = parent; k-- > 0;) {
        cq_prefix_info(p->ix, a, &bi, NULL);
        chain[k] = a;
        if (bi.in_lru) pinned += bi.bytes;
        a = bi.parent;
    }
    /* (3) the budget, with the chain pinned: refused before anything changes */
    const uint64_t bytes = p->block_bytes + (in->pos == 0 ? p->sink_bytes : 0);
    cq_prefix_stats ps;
    cq_prefix_stats_get(p->ix, &ps);
    if (bytes + pinned > ps.budget_bytes - ps.used_bytes + ps.lru_bytes) {
        st = cq_err_set(err, CQ_ERR_BUDGET, -1, -1,
                        "wire block: %llu bytes do not fit (budget %llu, used %llu, evictable "
                        "%llu besides its %u ancestors)",
                        (unsigned long long)bytes, (unsigned long long)ps.budget_bytes,
                        (unsigned long long)ps.used_bytes,
                        (unsigned long long)(ps.lru_bytes - pinned), in->pos);
        goto out;
    }
    for (uint32_t k = 0; k < in->pos; k++) (void)cq_prefix_ref(p->ix, chain[k], NULL);
    st = kvp_alloc_blocks(p, 1, in->pos, &id, err);
    if (!st) {
        /* (4) the bytes into the slots, then publish under the parent */
        kvp_wire_import(p, id, &w);
        uint32_t canon = id;
        st = cq_prefix_commit(p->ix, id, parent, w.tokens, in->n_tokens, &canon, err);
        chain[in->pos] = id; /* released with the chain: cached, or freed if not */
        if (!st && canon == id && inserted) *inserted = 1;
    }
    (void)cq_prefix_release_chain(p->ix, chain, in->pos + (id != CQ_BLOCK_NONE), NULL);
out:
    pthread_mutex_unlock(&p->mu);
    free(chain);
    free(w.tokens);
    return st;
}
