/* SPDX-License-Identifier: MIT */
/*
 * kvstore.c - the Redis tier of the serving pool (include/cq_kvstore.h): open / free,
 * publish (EXISTS, then SET NX of the blocks missing, in windows of window_blocks), adopt
 * (GET of the prompt's next blocks in windows, checked and inserted into the pool in
 * chain order up to the first miss, then cq_seq_adopt_prefix), counters.
 * A value that fails its checks is a miss; a damaged one (checksum, format, version, a
 * block filed under another chain hash) is also deleted, one of another configuration
 * is left for its own pools. Nothing here speaks hiredis: requests go through the
 * router (kv_router.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvstore_internal.h"

struct cq_kvstore {
    cq_kvstore_opts o;
    cq_kvstore_stats st;
    kv_router r;
};

void cq_kvstore_opts_default(cq_kvstore_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->connect_timeout_ms = 200;
    o->command_timeout_ms = 500;
    o->retry_min_ms = 100;
    o->retry_max_ms = 2000;
    o->max_redirects = 5;
    o->window_blocks = 16;
}

cq_status cq_kvstore_open(const char *url, const cq_kvstore_opts *o, cq_kvstore **out, cq_err *err) {
    cq_err_clear(err);
    if (!url || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "url or out is NULL");
    *out = NULL;
    cq_kvstore_opts d;
    cq_kvstore_opts_default(&d);
    if (o) {
        if (o->connect_timeout_ms) d.connect_timeout_ms = o->connect_timeout_ms;
        if (o->command_timeout_ms) d.command_timeout_ms = o->command_timeout_ms;
        if (o->retry_min_ms) d.retry_min_ms = o->retry_min_ms;
        if (o->retry_max_ms) d.retry_max_ms = o->retry_max_ms;
        if (o->max_redirects) d.max_redirects = o->max_redirects;
        if (o->window_blocks) d.window_blocks = o->window_blocks;
        d.ttl_s = o->ttl_s;
    }
    if (d.connect_timeout_ms > 600000 || d.command_timeout_ms > 600000 || d.retry_max_ms > 600000)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "a timeout above 600000 ms");
    if (d.retry_min_ms > d.retry_max_ms)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "retry_min_ms %u > retry_max_ms %u",
                          d.retry_min_ms, d.retry_max_ms);
    if (d.window_blocks > 4096 || d.max_redirects > 64)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "window_blocks > 4096 or max_redirects > 64");
    kv_addr seeds[KV_MAX_SEEDS];
    int cluster = 0, n = 0;
    char msg[200];
    if (kv_parse_url(url, &cluster, seeds, KV_MAX_SEEDS, &n, msg, sizeof msg) != 0)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "kv-store URL %s", msg);
    cq_kvstore *ks = calloc(1, sizeof *ks);
    if (!ks) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "kv-store: out of memory");
    ks->o = d;
    const kv_timeouts t = {d.connect_timeout_ms, d.command_timeout_ms, d.retry_min_ms, d.retry_max_ms};
    kv_router_init(&ks->r, cluster, seeds, n, &t, d.max_redirects, &ks->st);
    *out = ks;
    return CQ_OK;
}

void cq_kvstore_free(cq_kvstore *ks) {
    if (!ks) return;
    kv_router_close(&ks->r);
    free(ks);
}

cq_status cq_kvstore_stats_get(const cq_kvstore *ks, cq_kvstore_stats *out) {
    if (!ks || !out) return CQ_ERR_NULL;
    *out = ks->st;
    return CQ_OK;
}

cq_status cq_kvstore_used_memory(cq_kvstore *ks, uint64_t *bytes, cq_err *err) {
    cq_err_clear(err);
    if (!ks || !bytes) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "kv-store or bytes is NULL");
    if (kv_router_info_sum(&ks->r, "memory", "used_memory", bytes) != 0)
        return cq_err_set(err, CQ_ERR_IO, -1, -1, "kv-store: INFO memory failed on a node");
    return CQ_OK;
}

static void set_key(kv_req *q, uint64_t cfg, uint64_t chain) {
    cq_kvstore_key(cfg, chain, q->key, sizeof q->key);
    q->key_len = strlen(q->key);
}

/* The chain hashes of the full blocks of tokens[0, n): malloc'd, *nb of them. */
static cq_status hashes_of(const cq_kvpool *p, const uint32_t *tokens, uint32_t n, uint64_t **out,
                           uint32_t *nb, cq_err *err) {
    *out = NULL;
    *nb = 0;
    if (!n) return CQ_OK;
    uint64_t *h = malloc((size_t)n * sizeof *h);
    if (!h) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "kv-store: out of memory");
    const cq_status st = cq_kvpool_chain_hashes(p, tokens, n, h, n, nb, err);
    if (st != CQ_OK) {
        free(h);
        return st;
    }
    *out = h;
    return CQ_OK;
}

static int cached_locally(const cq_kvpool *p, uint64_t h) {
    size_t len = 0;
    return cq_kvpool_block_encode(p, h, NULL, 0, &len, NULL) == CQ_OK;
}

/* ------------------------------------------------------------ publish */

cq_status cq_kvstore_publish(cq_kvstore *ks, const cq_kvpool *p, const uint32_t *tokens, uint32_t n,
                             uint32_t *published, cq_err *err) {
    cq_err_clear(err);
    if (published) *published = 0;
    if (!ks || !p || (!tokens && n))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "kv-store, pool or tokens is NULL");
    const double t0 = kv_now();
    uint64_t *h = NULL;
    uint32_t nb = 0, done = 0;
    cq_status st = hashes_of(p, tokens, n, &h, &nb, err);
    const uint64_t cfg = cq_kvpool_config_hash(p);
    const size_t wsz = cq_kvpool_block_wire_size(p);
    const uint32_t W = ks->o.window_blocks;
    kv_req *q = calloc(W, sizeof *q);
    uint8_t *buf = malloc((size_t)W * wsz);
    if (st == CQ_OK && (!q || !buf)) st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "kv-store: out of memory");
    int stop = st != CQ_OK;
    for (uint32_t w = 0; w < nb && !stop; w += W) {
        const uint32_t m = nb - w < W ? nb - w : W;
        /* which of them Redis lacks */
        for (uint32_t i = 0; i < m; i++) {
            q[i].op = KV_EXISTS;
            set_key(&q[i], cfg, h[w + i]);
        }
        kv_exec(&ks->r, q, m);
        uint32_t k = 0;
        for (uint32_t i = 0; i < m && !stop; i++) {
            if (q[i].res != KV_R_INT) { /* the tier fails: nothing more to do now */
                stop = 1;
                break;
            }
            if (q[i].ival) {
                ks->st.blocks_present++;
                continue;
            }
            size_t len = 0;
            if (cq_kvpool_block_encode(p, h[w + i], buf + (size_t)k * wsz, wsz, &len, NULL) != CQ_OK) {
                stop = 1; /* the pool does not hold it (evicted, never published) */
                break;
            }
            q[i].op = KV_SETNX;
            q[i].val = buf + (size_t)k * wsz;
            q[i].val_len = len;
            q[i].ttl_s = ks->o.ttl_s;
            k++;
        }
        /* the SET NX requests, packed to the front */
        uint32_t j = 0;
        for (uint32_t i = 0; i < m; i++)
            if (q[i].op == KV_SETNX && q[i].res == KV_R_INT && !q[i].ival) q[j++] = q[i];
        kv_exec(&ks->r, q, j);
        for (uint32_t i = 0; i < j; i++) {
            if (q[i].res == KV_R_OK) {
                ks->st.blocks_published++;
                ks->st.bytes_published += q[i].val_len;
                done++;
            } else if (q[i].res == KV_R_NIL) {
                ks->st.blocks_present++; /* a concurrent publisher was first */
            } else {
                stop = 1;
            }
            kv_req_release(&q[i]);
        }
    }
    free(q);
    free(buf);
    free(h);
    if (published) *published = done;
    ks->st.seconds_publish += kv_now() - t0;
    return st;
}

/* ------------------------------------------------------------ adopt */

typedef enum verdict { V_TAKEN, V_MISS, V_BAD, V_STOP } verdict;

/* Insert one fetched value that should be the block with chain hash want (the pool
 * validates it: sizes, CRC, version, configuration, chain). Validated once: the insert's
 * status says what was wrong. A value that is valid but not the block its key names (its
 * parent is not ours: CQ_ERR_STATE, or another hash got cached) is damaged too. */
static verdict take_block(cq_kvstore *ks, cq_kvpool *p, uint64_t want, const kv_req *q) {
    if (q->res == KV_R_NIL) return V_MISS;
    if (q->res != KV_R_VALUE) return V_STOP; /* the tier failed: counted by the router */
    ks->st.bytes_fetched += q->len;
    int inserted = 0;
    const cq_status st = cq_kvpool_block_insert(p, q->data, q->len, &inserted, NULL);
    switch (st) {
    case CQ_OK:
        if (cached_locally(p, want)) return V_TAKEN;
        ks->st.corrupt++;
        return V_BAD;
    case CQ_ERR_MISMATCH: /* another configuration or model: theirs, not damaged */
        ks->st.other_config++;
        return V_MISS;
    case CQ_ERR_BUDGET:
    case CQ_ERR_NOMEM:
        ks->st.refused++;
        return V_STOP;
    default: /* CHECKSUM, VERSION, FORMAT, BUFFER, STATE, ... */
        ks->st.corrupt++;
        return V_BAD;
    }
}

cq_status cq_kvstore_adopt(cq_kvstore *ks, cq_kvpool *p, cq_seq *s, const uint32_t *tokens,
                           uint32_t n, uint32_t *adopted, cq_err *err) {
    cq_err_clear(err);
    if (adopted) *adopted = 0;
    if (!ks || !p || !s || !adopted || (!tokens && n))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "kv-store, pool, sequence, tokens or adopted is NULL");
    if (cq_seq_tokens(s, 0) != 0)
        return cq_err_set(err, CQ_ERR_STATE, -1, -1, "kv-store adopt: the sequence is not empty");
    const double t0 = kv_now();
    ks->st.lookups++;
    /* only blocks that leave a token to prefill: the full blocks of tokens[0, n - 1) */
    uint64_t *h = NULL;
    uint32_t nb = 0;
    cq_status st = n ? hashes_of(p, tokens, n - 1, &h, &nb, err) : CQ_OK;
    uint32_t k0 = 0;
    while (st == CQ_OK && k0 < nb && cached_locally(p, h[k0])) k0++;
    const uint64_t cfg = cq_kvpool_config_hash(p);
    const uint32_t W = ks->o.window_blocks;
    kv_req *q = k0 < nb ? calloc(W, sizeof *q) : NULL;
    kv_req del[1];
    if (st == CQ_OK && k0 < nb && !q) st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "kv-store: out of memory");
    int stop = st != CQ_OK;
    for (uint32_t w = k0; w < nb && !stop; w += W) {
        const uint32_t m = nb - w < W ? nb - w : W;
        for (uint32_t i = 0; i < m; i++) {
            q[i].op = KV_GET;
            set_key(&q[i], cfg, h[w + i]);
        }
        ks->st.blocks_wanted += m;
        kv_exec(&ks->r, q, m);
        for (uint32_t i = 0; i < m; i++) {
            if (!stop) {
                const verdict v = take_block(ks, p, h[w + i], &q[i]);
                if (v == V_TAKEN) {
                    ks->st.hits++;
                } else {
                    ks->st.misses++;
                    stop = 1;
                    if (v == V_BAD) { /* a damaged value: delete it, a publisher writes it anew */
                        memset(del, 0, sizeof del);
                        del[0].op = KV_DEL;
                        memcpy(del[0].key, q[i].key, sizeof del[0].key);
                        del[0].key_len = q[i].key_len;
                        kv_exec(&ks->r, del, 1);
                        kv_req_release(&del[0]);
                    }
                }
            }
            kv_req_release(&q[i]);
        }
    }
    free(q);
    free(h);
    if (st == CQ_OK) {
        st = cq_seq_adopt_prefix(s, tokens, n, adopted, err);
        if (st == CQ_OK) ks->st.tokens_adopted += *adopted;
    }
    ks->st.seconds_adopt += kv_now() - t0;
    return st;
}
