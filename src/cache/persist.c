/* SPDX-License-Identifier: MIT */
/*
 * persist.c - save and restore a whole cq_cache (include/cq_cache.h, the
 * "persistence" section) in the versioned, checksummed file format of
 * docs/CACHE_FILE.md, and compare two caches byte for byte.
 *
 * Saving builds the whole image in memory (the stores' committed tokens in the
 * registry's packed form, as cq_cache_export gives them; in-flight tokens and
 * sinks as fp16) and writes it with the file layer's atomic writer
 * (src/core/fileio.c): a crash at any point leaves the old file or the new one.
 * Loading a file reads and checks its 40-byte header before the rest.
 *
 * Loading treats the bytes as hostile. Order: (1) file header, every section
 * header and every section CRC, before anything is parsed; (2) the
 * configuration, and a bound on the memory the empty cache would take, before
 * it is created (creation re-validates shapes, codecs and masks); (3) every
 * layer section is validated against the created cache's store geometry
 * (counts, lengths, the invariants append maintains: finite fp16, normal
 * positive scales, zero pad nibbles) with no allocation; (4) only then pages
 * are allocated and filled. Any failure frees everything: nothing partial is
 * ever returned, and the error names the check that failed.
 *
 * Row layout (version 2): a layer's row stores follow its heads as ordinary
 * store records; each head's record of a row-layout role is an empty view
 * record. A cache without row stores is written as version 1, byte for byte
 * what earlier versions of the library wrote; both versions load.
 *
 * Not here: the cache's own mechanics (cache.c, store.c), attention (attend.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/cq_le.h"
#include "cache_internal.h"
#include "fused.h"
#include "cq_file.h"
#include "cq_util.h"

#define FILE_MAGIC "CQKVCACH"
#define FILE_VERSION 2u  /* the newest version this library reads and writes */
#define FILE_VERSION_MIN 1u
#define FILE_HDR 40u
#define SEC_HDR 24u
#define CONF_FIXED 48u /* 12 u32 */
#define TAG_CONF 0x464E4F43u /* "CONF" little-endian */
#define TAG_LAYR 0x5259414Cu /* "LAYR" */
#define STORE_HDR 24u        /* kind, n_done, n_resid, tail_g, u64 data bytes */
#define DEFAULT_LIMIT_BASE (256ull << 20)
#define DEFAULT_LIMIT_MULT 16ull

/* Fuzzing builds ignore CRC mismatches so that mutated inputs reach the parser
 * behind the checksums (never defined in the library's own builds). */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CRC_BAD(stored, computed) ((void)(stored), (void)(computed), 0)
#else
#define CRC_BAD(stored, computed) ((stored) != (computed))
#endif

/* a + b and a * b on uint64 with overflow flagged (sticky) */
static uint64_t add_ov(uint64_t a, uint64_t b, int *ov) {
    if (a > UINT64_MAX - b) *ov = 1;
    return a + b;
}
static uint64_t mul_ov(uint64_t a, uint64_t b, int *ov) {
    if (a && b > UINT64_MAX / a) *ov = 1;
    return a * b;
}

/* ------------------------------------------------------------------ save */

static const cq_store *store_of(const cq_cache *c, uint32_t L, uint32_t h, int r) {
    return r ? &c->layers[L].heads[h].v : &c->layers[L].heads[h].k;
}

static int any_row(const cq_cache *c) {
    for (uint32_t L = 0; L < c->cfg.n_layers; L++)
        if (c->layers[L].row[0] || c->layers[L].row[1]) return 1;
    return 0;
}

/* Bytes of one store record (a row-layout view's record is empty: kind 5, all counts 0). */
static cq_status record_bytes(const cq_store *s, uint64_t *out, cq_err *err) {
    size_t len = 0;
    if (s->kind != ST_ROW) {
        cq_status st = cq_store_export(s, NULL, 0, &len, err);
        if (st) return st;
    }
    *out = STORE_HDR + (uint64_t)len + (s->kind == ST_ROW ? 0 : (uint64_t)s->n_resid * s->D * 2);
    return CQ_OK;
}

static cq_status write_record(const cq_store *s, uint8_t **pp, cq_err *err) {
    uint8_t *p = *pp;
    size_t len = 0;
    int view = s->kind == ST_ROW;
    cq_status st = view ? CQ_OK : cq_store_export(s, NULL, 0, &len, err);
    if (st) return st;
    cq_put_u32le(p, (uint32_t)s->kind);
    cq_put_u32le(p + 4, view ? 0 : s->n_done);
    cq_put_u32le(p + 8, view ? 0 : s->n_resid);
    cq_put_u32le(p + 12, view ? 0 : s->tail_g);
    cq_put_u64le(p + 16, len);
    p += STORE_HDR;
    if (!view) {
        if ((st = cq_store_export(s, p, len, &len, err))) return st;
        p += len;
        cq_put_u16le_n(p, s->resid, (size_t)s->n_resid * s->D);
        p += (size_t)s->n_resid * s->D * 2;
    }
    *pp = p;
    return CQ_OK;
}

static uint32_t sink_count(const cq_cache *c, uint32_t tokens) {
    return tokens < c->cfg.n_sinks ? tokens : c->cfg.n_sinks;
}

/* Payload bytes of layer L's section. */
static cq_status layer_bytes(const cq_cache *c, uint32_t L, uint64_t *out, cq_err *err) {
    const uint32_t H = c->cfg.n_kv_heads, D = c->cfg.head_dim;
    const cq_layer *l = &c->layers[L];
    const uint32_t ns = sink_count(c, l->tokens);
    uint64_t b = 8, rb;
    for (uint32_t h = 0; h < H; h++) {
        b += 2ull * ns * D * 2;
        for (int r = 0; r < 2; r++) {
            cq_status st = record_bytes(store_of(c, L, h, r), &rb, err);
            if (st) return st;
            b += rb;
        }
    }
    for (int r = 0; r < 2; r++) {
        if (!l->row[r]) continue;
        cq_status st = record_bytes(l->row[r], &rb, err);
        if (st) return st;
        b += rb;
    }
    *out = b;
    return CQ_OK;
}

static void sec_header(uint8_t *p, uint32_t tag, uint32_t index, uint64_t len) {
    cq_put_u32le(p, tag);
    cq_put_u32le(p + 4, index);
    cq_put_u64le(p + 8, len);
    cq_put_u32le(p + 16, cq_crc32c(0, p + SEC_HDR, (size_t)len));
    cq_put_u32le(p + 20, cq_crc32c(0, p, 20));
}

static size_t conf_bytes(const cq_cache *c) {
    const uint32_t NL = c->cfg.n_layers;
    return CONF_FIXED + (size_t)NL * 8 +
           (c->masks ? (size_t)NL * c->cfg.n_kv_heads * c->cfg.head_dim : 0);
}

static void write_conf(const cq_cache *c, uint8_t *p) {
    const cq_cache_config *g = &c->cfg;
    const uint32_t v[12] = {g->n_layers,  g->n_kv_heads,          g->head_dim,
                            g->group,     g->n_sinks,             g->page_tokens,
                            g->max_tokens, (uint32_t)g->key_codec, (uint32_t)g->val_codec,
                            g->force_generic, (uint32_t)c->sealed, c->masks ? 1u : 0u};
    for (int i = 0; i < 12; i++) cq_put_u32le(p + 4 * i, v[i]);
    p += CONF_FIXED;
    for (uint32_t L = 0; L < g->n_layers; L++, p += 8) {
        cq_put_u32le(p, (uint32_t)c->codecs[L].key);
        cq_put_u32le(p + 4, (uint32_t)c->codecs[L].val);
    }
    if (c->masks) memcpy(p, c->masks, (size_t)g->n_layers * g->n_kv_heads * g->head_dim);
}

static cq_status write_layer(const cq_cache *c, uint32_t L, uint8_t *p, cq_err *err) {
    const uint32_t H = c->cfg.n_kv_heads, D = c->cfg.head_dim;
    const cq_layer *l = &c->layers[L];
    const uint32_t ns = sink_count(c, l->tokens);
    cq_put_u32le(p, L);
    cq_put_u32le(p + 4, l->tokens);
    p += 8;
    cq_status st;
    for (uint32_t h = 0; h < H; h++) {
        cq_put_u16le_n(p, l->heads[h].sink_k, (size_t)ns * D);
        p += (size_t)ns * D * 2;
        cq_put_u16le_n(p, l->heads[h].sink_v, (size_t)ns * D);
        p += (size_t)ns * D * 2;
        for (int r = 0; r < 2; r++)
            if ((st = write_record(store_of(c, L, h, r), &p, err))) return st;
    }
    for (int r = 0; r < 2; r++)
        if (l->row[r] && (st = write_record(l->row[r], &p, err))) return st;
    return CQ_OK;
}

cq_status cq_cache_save_mem(const cq_cache *c, uint8_t **buf, size_t *len, cq_err *err) {
    cq_err_clear(err);
    if (!c || !buf || !len) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cache, buf or len is NULL");
    *buf = NULL;
    *len = 0;
    const uint32_t NL = c->cfg.n_layers;
    uint64_t *lb = malloc((size_t)NL * sizeof *lb);
    if (!lb) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    int ov = 0;
    uint64_t total = FILE_HDR + SEC_HDR + conf_bytes(c);
    for (uint32_t L = 0; L < NL; L++) {
        cq_status st = layer_bytes(c, L, &lb[L], err);
        if (st) {
            free(lb);
            return st;
        }
        total = add_ov(total, add_ov(SEC_HDR, lb[L], &ov), &ov);
    }
    if (ov || total > SIZE_MAX) {
        free(lb);
        return cq_err_set(err, CQ_ERR_OVERFLOW, -1, -1, "the cache image does not fit in memory");
    }
    uint8_t *img = malloc((size_t)total);
    if (!img) {
        free(lb);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory (%llu-byte cache image)",
                          (unsigned long long)total);
    }
    memset(img, 0, FILE_HDR);
    memcpy(img, FILE_MAGIC, 8);
    cq_put_u32le(img + 8, any_row(c) ? 2u : 1u); /* version 1 readers keep reading row-free caches */
    cq_put_u32le(img + 12, FILE_HDR);
    cq_put_u64le(img + 16, total);
    cq_put_u32le(img + 24, 1 + NL);
    cq_put_u32le(img + 36, cq_crc32c(0, img, 36));
    uint8_t *p = img + FILE_HDR;
    write_conf(c, p + SEC_HDR);
    sec_header(p, TAG_CONF, 0, conf_bytes(c));
    p += SEC_HDR + conf_bytes(c);
    for (uint32_t L = 0; L < NL; L++) {
        cq_status st = write_layer(c, L, p + SEC_HDR, err);
        if (st) {
            free(img);
            free(lb);
            return st;
        }
        sec_header(p, TAG_LAYR, L, lb[L]);
        p += SEC_HDR + lb[L];
    }
    free(lb);
    *buf = img;
    *len = (size_t)total;
    return CQ_OK;
}

cq_status cq_cache_save(const cq_cache *c, const char *path, cq_err *err) {
    cq_err_clear(err);
    if (!c || !path) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cache or path is NULL");
    uint8_t *img;
    size_t len;
    cq_status st = cq_cache_save_mem(c, &img, &len, err);
    if (st) return st;
    st = cq_write_file_atomic(path, img, len, err);
    free(img);
    return st;
}

/* ------------------------------------------------------------------ load */

typedef struct rd {
    const uint8_t *p;
    uint64_t n;
} rd;

static const uint8_t *take(rd *r, uint64_t n) {
    if (n > r->n) return NULL;
    const uint8_t *q = r->p;
    r->p += n;
    r->n -= n;
    return q;
}

/* The configuration section, decoded (not yet trusted beyond its own checks). */
typedef struct conf {
    cq_cache_config cfg;
    uint32_t version; /* file format version (1: no row-layout stores) */
    uint32_t sealed, has_masks;
    cq_layer_codecs *codecs; /* points into a malloc'd copy */
    const uint8_t *masks;    /* points into the file image */
} conf;

static const char *role_name(int r) { return r ? "values" : "keys"; }

/* Exact bytes of the packed committed tokens of a store holding n_done tokens whose last unit
 * has tail_g tokens (0 = whole). 0 on overflow or an impossible partial unit (*bad set). */
static uint64_t store_data_len(const cq_store *s, uint32_t n_done, uint32_t tail_g, int *bad) {
    if (s->fused) return s->fused->data_len(s, n_done, tail_g);
    int ov = 0;
    uint64_t nu = ((uint64_t)n_done + s->unit - 1) / s->unit, full = nu - (tail_g ? 1 : 0), b;
    b = mul_ov(full, s->codec->packed_bytes(&s->ccfg, s->role, s->unit), &ov);
    if (tail_g) {
        size_t tb = s->codec->packed_bytes(&s->ccfg_tail, s->role, tail_g);
        if (tb > s->slot_bytes) *bad = 1; /* could not have been flushed into a slot */
        b = add_ov(b, tb, &ov);
    }
    if (ov) *bad = 1;
    return b;
}

/* Check the packed tokens of a store against the invariants append maintains. */
static cq_status check_data(const cq_store *s, const uint8_t *d, uint32_t n_done, uint32_t tail_g,
                            const char *where, cq_err *err) {
    if (s->fused) return s->fused->check(s, d, n_done, tail_g, where, err);
    return s->kind == ST_GEN ? cq_store_gen_check(s, d, n_done, tail_g, where, err) : CQ_OK;
}

/* Copy packed tokens (the cq_cache_export form) into the store's slots. Pages exist. */
static void import_data(cq_store *s, const uint8_t *d) {
    if (s->fused) {
        s->fused->import(s, d);
        return;
    }
    const uint32_t T = s->n_done, nu = (T + s->unit - 1) / s->unit;
    size_t o = 0;
    for (uint32_t u = 0; u < nu; u++) {
        size_t b = cq_store_gen_bytes(s, u);
        memcpy(cq_store_slot(s, u), d + o, b);
        o += b;
    }
}

/* Bytes the pages of a store holding n_done committed tokens take: need[0] += all of
 * them, need[1] += the unfilled part of the last page (the page granularity the
 * configuration chose, which the default memory limit allows on top of the file size). */
static void store_page_bytes(const cq_store *s, uint32_t n_done, uint64_t need[2]) {
    uint64_t units = ((uint64_t)n_done + s->unit - 1) / s->unit;
    uint64_t pages = (units + s->page_units - 1) / s->page_units, cap = pages ? 4 : 0;
    while (cap < pages) cap *= 2;
    need[0] += pages * (CQ_PAGE_HDR + s->page_bytes) + cap * sizeof(uint8_t *);
    need[1] += (pages * s->page_units - units) * s->page_bytes / s->page_units;
}

/* One store record of a layer section: validate (fill = 0: no allocation, *need += page
 * bytes) or fill (fill = 1) store s, which holds st_tokens tokens past the sinks. A view of a
 * row-layout store has an empty record: kind 5 and every count 0. */
static cq_status do_record(cq_cache *c, const conf *cf, cq_layer *l, cq_store *s, rd *r,
                           uint32_t st_tokens, int fill, uint64_t *need, const char *where,
                           cq_err *err) {
    const uint8_t *q = take(r, STORE_HDR);
    if (!q) return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: section too short", where);
    uint32_t kind = cq_get_u32le(q), n_done = cq_get_u32le(q + 4), n_resid = cq_get_u32le(q + 8),
             tail_g = cq_get_u32le(q + 12);
    uint64_t dlen = cq_get_u64le(q + 16);
    if (kind != (uint32_t)s->kind)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "%s: storage kind %u, but the configuration implies %d", where, kind,
                          s->kind);
    if (s->kind == ST_ROW) {
        if (n_done || n_resid || tail_g || dlen)
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                              "%s: a row-layout view holds no tokens (record says %u committed, "
                              "%u in flight, %u partial, %llu bytes)", where, n_done, n_resid,
                              tail_g, (unsigned long long)dlen);
        return CQ_OK;
    }
    const uint32_t D = s->D;
    if ((uint64_t)n_done + n_resid != st_tokens)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "%s: %u committed + %u in-flight tokens, but the layer holds "
                          "%u past the sinks", where, n_done, n_resid, st_tokens);
    int bad = 0;
    if (cq_store_per_token(s)) bad = n_resid || tail_g;
    else if (n_resid >= s->resid_cap || tail_g >= s->unit) bad = 1;
    else if (tail_g) bad = n_done % s->unit != tail_g || n_resid || !cf->sealed;
    else bad = n_done % s->unit != 0;
    if (cf->sealed && n_resid) bad = 1;
    if (bad)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "%s: inconsistent unit state (committed %u, in flight %u, "
                          "partial unit %u, unit %u, sealed %u)", where, n_done, n_resid,
                          tail_g, s->unit, cf->sealed);
    uint64_t want = store_data_len(s, n_done, tail_g, &bad);
    if (bad || dlen != want)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "%s: packed size %llu, expected %llu for %u tokens", where,
                          (unsigned long long)dlen, (unsigned long long)want, n_done);
    const uint8_t *d = take(r, dlen);
    const uint8_t *rs = d ? take(r, (uint64_t)n_resid * D * 2) : NULL;
    if (!d || !rs) return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: section too short", where);
    if (!fill) {
        cq_status st = check_data(s, d, n_done, tail_g, where, err);
        if (st) return st;
        if (!cq_fused_all_finite(rs, (size_t)n_resid * D))
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: non-finite fp16 in-flight token",
                              where);
        store_page_bytes(s, n_done, need);
        return CQ_OK;
    }
    if (cq_store_reserve(c, l, s, n_done))
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "%s: out of memory", where);
    s->n_done = n_done;
    s->tail_g = tail_g;
    s->n_resid = n_resid;
    import_data(s, d);
    if (n_resid) cq_get_u16le_n(s->resid, rs, (size_t)n_resid * D);
    return CQ_OK;
}

/* Validate (fill = 0: no allocation, *need += page bytes) or fill (fill = 1) layer L. */
static cq_status do_layer(cq_cache *c, const conf *cf, uint32_t L, const uint8_t *pay, uint64_t len,
                          int fill, uint64_t *need, cq_err *err) {
    const uint32_t H = c->cfg.n_kv_heads, D = c->cfg.head_dim, S = c->cfg.n_sinks;
    cq_layer *l = &c->layers[L];
    if (cf->version < 2 && (l->row[0] || l->row[1]))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "layer %u: the configuration needs the row layout, which a version %u "
                          "file cannot hold (version 2)", L, cf->version);
    rd r = {pay, len};
    const uint8_t *q = take(&r, 8);
    if (!q) return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "layer %u: section too short", L);
    uint32_t idx = cq_get_u32le(q), tokens = cq_get_u32le(q + 4);
    if (idx != L)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "layer %u: section says layer %u", L, idx);
    if (tokens > 0xFFFFFFF0u || (c->cfg.max_tokens && tokens > c->cfg.max_tokens))
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "layer %u: %u tokens exceed max_tokens=%u", L,
                          tokens, c->cfg.max_tokens);
    const uint32_t ns = tokens < S ? tokens : S, st_tokens = tokens - ns;
    char where[96];
    cq_status st;
    for (uint32_t h = 0; h < H; h++) {
        for (int r2 = 0; r2 < 2; r2++) {
            const uint8_t *sk = take(&r, (uint64_t)ns * D * 2);
            if (!sk)
                return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "layer %u, kv head %u: sinks: section too short", L, h);
            if (!fill && !cq_fused_all_finite(sk, (size_t)ns * D))
                return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                                  "layer %u, kv head %u: non-finite fp16 sink %s", L, h,
                                  role_name(r2));
            if (fill) cq_get_u16le_n(r2 ? l->heads[h].sink_v : l->heads[h].sink_k, sk, (size_t)ns * D);
        }
        for (int r2 = 0; r2 < 2; r2++) {
            snprintf(where, sizeof where, "layer %u, kv head %u, %s", L, h, role_name(r2));
            st = do_record(c, cf, l, r2 ? &l->heads[h].v : &l->heads[h].k, &r, st_tokens, fill,
                           need, where, err);
            if (st) return st;
        }
    }
    for (int r2 = 0; r2 < 2; r2++) { /* version 2: the row-layout stores after the heads */
        if (!l->row[r2]) continue;
        snprintf(where, sizeof where, "layer %u, row store, %s", L, role_name(r2));
        st = do_record(c, cf, l, l->row[r2], &r, st_tokens, fill, need, where, err);
        if (st) return st;
    }
    if (r.n)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "layer %u: %llu trailing bytes in section",
                          L, (unsigned long long)r.n);
    if (fill) l->tokens = tokens;
    return CQ_OK;
}

static cq_status parse_conf(const uint8_t *p, uint64_t len, uint32_t n_sections, conf *cf,
                            cq_err *err) {
    memset(cf, 0, sizeof *cf);
    if (len < CONF_FIXED)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "configuration: %llu bytes, need %u",
                          (unsigned long long)len, CONF_FIXED);
    uint32_t v[12];
    for (int i = 0; i < 12; i++) v[i] = cq_get_u32le(p + 4 * i);
    cq_cache_config_default(&cf->cfg, v[0], v[1], v[2]);
    cf->cfg.group = v[3];
    cf->cfg.n_sinks = v[4];
    cf->cfg.page_tokens = v[5];
    cf->cfg.max_tokens = v[6];
    cf->cfg.key_codec = (cq_codec_id)v[7];
    cf->cfg.val_codec = (cq_codec_id)v[8];
    cf->cfg.force_generic = v[9];
    cf->sealed = v[10];
    cf->has_masks = v[11];
    const uint32_t NL = v[0], H = v[1], D = v[2];
    if (cf->cfg.force_generic > 1 || cf->sealed > 1 || cf->has_masks > 1)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "configuration: flags force_generic=%u sealed=%u has_masks=%u must be 0 "
                          "or 1", v[9], v[10], v[11]);
    if (NL == 0 || H == 0 || NL > 4096 || H > 4096)
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1,
                          "configuration: %u layers x %u kv heads: both must be in [1, 4096]", NL,
                          H);
    if (D < CQ_MIN_DIM || D > CQ_MAX_DIM || (D & 1))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1,
                          "configuration: head_dim D=%u must be even, in [%d, %d]", D, CQ_MIN_DIM,
                          CQ_MAX_DIM);
    if (v[3] == 0)
        return cq_err_set(err, CQ_ERR_GROUP, -1, -1, "configuration: group G is 0");
    if ((uint64_t)n_sections != 1ull + NL)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "configuration: %u layers, but the file has %u sections", NL, n_sections);
    uint64_t want = CONF_FIXED + 8ull * NL + (cf->has_masks ? (uint64_t)NL * H * D : 0);
    if (len != want)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "configuration: %llu bytes, expected %llu", (unsigned long long)len,
                          (unsigned long long)want);
    cf->codecs = malloc((size_t)NL * sizeof *cf->codecs);
    if (!cf->codecs) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    int any4p = 0;
    for (uint32_t L = 0; L < NL; L++) {
        cf->codecs[L].key = (cq_codec_id)cq_get_u32le(p + CONF_FIXED + 8 * (size_t)L);
        cf->codecs[L].val = (cq_codec_id)cq_get_u32le(p + CONF_FIXED + 8 * (size_t)L + 4);
        if (!cq_codec_get(cf->codecs[L].key) || !cq_codec_get(cf->codecs[L].val))
            return cq_err_set(err, CQ_ERR_TIER, -1, -1,
                              "configuration: layer %u: unknown codec id (key %u, value %u)", L,
                              (uint32_t)cf->codecs[L].key, (uint32_t)cf->codecs[L].val);
        any4p |= cq_fused_needs_mask(cf->codecs[L].key) != 0;
    }
    if (any4p != (int)cf->has_masks)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "configuration: outlier masks %s, but %s layer has CQ-4+ keys",
                          cf->has_masks ? "present" : "absent", any4p ? "a" : "no");
    cf->cfg.layer_codecs = cf->codecs;
    if (cf->has_masks) {
        cf->masks = p + CONF_FIXED + 8ull * NL;
        for (size_t i = 0; i < (size_t)NL * H * D; i++)
            if (cf->masks[i] > 1)
                return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                                  "configuration: outlier mask byte %zu is %u (must be 0 or 1)", i,
                                  cf->masks[i]);
        cf->cfg.outlier_masks = cf->masks;
    }
    return CQ_OK;
}

/* Upper bound of what cq_cache_create allocates for this configuration. */
static uint64_t empty_cache_bytes(const conf *cf) {
    const cq_cache_config *g = &cf->cfg;
    const uint64_t H = g->n_kv_heads, D = g->head_dim;
    uint64_t b = sizeof(cq_cache) + (uint64_t)g->n_layers * (sizeof(cq_layer) + 8 + H * D);
    for (uint32_t L = 0; L < g->n_layers; L++) {
        uint64_t units = 0;
        for (int r = 0; r < 2; r++) {
            cq_codec_id id = r ? cf->codecs[L].val : cf->codecs[L].key;
            const cq_codec_traits *tr = cq_codec_get(id);
            const cq_role role = r ? CQ_ROLE_VALUE : CQ_ROLE_KEY;
            /* a fused unit format holds one in-flight unit of G tokens; per-token ones none */
            const cq_fused_ops *fo = g->force_generic ? NULL : cq_fused_find(id, role);
            if (fo) units += fo->per_token ? 0 : g->group;
            else if (tr) {
                cq_codec_cfg cc;
                /* a row store of H * D channels holds per token what H head stores would */
                int row = cq_layout_rule(id, role, g->n_kv_heads, g->head_dim, g->group) ==
                          CQ_LAYOUT_ROW;
                cq_codec_cfg_default(&cc, row ? g->n_kv_heads * g->head_dim : g->head_dim);
                if (row) b += sizeof(cq_store);
                cc.group = g->group;
                uint32_t u = cq_codec_unit_tokens(tr, &cc, role), w = cq_codec_window_tokens(tr, &cc, role);
                units += (u < (1u << 16) ? u : (1u << 16)) + (w < (1u << 16) ? w : (1u << 16));
            }
        }
        b += H * (sizeof(cq_head) + sizeof(cq_params) + 4ull * D * g->n_sinks + 2ull * D * units);
    }
    return b;
}

/* The file header: the first n bytes of a file of file_len bytes (n = min(file_len, 40)). */
static cq_status check_header(const uint8_t *b, size_t n, uint64_t file_len, uint32_t *n_sec,
                              cq_err *err) {
    if (n < FILE_HDR || file_len < FILE_HDR)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "size: %llu bytes, shorter than the %u-byte file header (truncated?)",
                          (unsigned long long)file_len,
                          FILE_HDR);
    if (memcmp(b, FILE_MAGIC, 8) != 0)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "magic: not a ChannelQuant cache file");
    uint32_t crc = cq_crc32c(0, b, 36);
    if (CRC_BAD(cq_get_u32le(b + 36), crc))
        return cq_err_set(err, CQ_ERR_CHECKSUM, -1, -1,
                          "header CRC: stored 0x%08x, computed 0x%08x", cq_get_u32le(b + 36), crc);
    if (cq_get_u32le(b + 8) == 3)
        return cq_err_set(err, CQ_ERR_VERSION, -1, -1,
                          "version: file format version 3 holds a serving pool's sequence or "
                          "cached blocks: load it with cq_kvpool_load_seq or "
                          "cq_kvpool_load_cached (include/cq_serve.h)");
    if (cq_get_u32le(b + 8) < FILE_VERSION_MIN || cq_get_u32le(b + 8) > FILE_VERSION)
        return cq_err_set(err, CQ_ERR_VERSION, -1, -1,
                          "version: file format version %u, this library reads versions %u..%u",
                          cq_get_u32le(b + 8), FILE_VERSION_MIN, FILE_VERSION);
    if (cq_get_u32le(b + 12) != FILE_HDR || cq_get_u32le(b + 28) != 0 || cq_get_u32le(b + 32) != 0)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "header: header size %u, flags 0x%x, reserved 0x%x (expected %u, 0, 0)",
                          cq_get_u32le(b + 12), cq_get_u32le(b + 28), cq_get_u32le(b + 32), FILE_HDR);
    uint64_t fsz = cq_get_u64le(b + 16);
    if (fsz != file_len)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "size: file is %llu bytes, its header says %llu (truncated or extended)",
                          (unsigned long long)file_len, (unsigned long long)fsz);
    *n_sec = cq_get_u32le(b + 24);
    if (*n_sec < 2 || *n_sec > 4097)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "header: %u sections (expected 2..4097)",
                          *n_sec);
    return CQ_OK;
}

static cq_status check_sections(const uint8_t *b, size_t n, uint32_t *n_sec, cq_err *err) {
    cq_status st = check_header(b, n < FILE_HDR ? n : FILE_HDR, n, n_sec, err);
    if (st) return st;
    uint32_t crc;
    rd r = {b + FILE_HDR, n - FILE_HDR};
    for (uint32_t i = 0; i < *n_sec; i++) {
        const uint8_t *h = take(&r, SEC_HDR);
        if (!h)
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "section %u: header missing (truncated)", i);
        crc = cq_crc32c(0, h, 20);
        if (CRC_BAD(cq_get_u32le(h + 20), crc))
            return cq_err_set(err, CQ_ERR_CHECKSUM, -1, -1,
                              "section %u: header CRC: stored 0x%08x, computed 0x%08x", i,
                              cq_get_u32le(h + 20), crc);
        uint32_t tag = cq_get_u32le(h), idx = cq_get_u32le(h + 4);
        uint32_t want_tag = i ? TAG_LAYR : TAG_CONF, want_idx = i ? i - 1 : 0;
        if (tag != want_tag || idx != want_idx)
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                              "section %u: tag 0x%08x index %u, expected 0x%08x index %u", i, tag,
                              idx, want_tag, want_idx);
        uint64_t len = cq_get_u64le(h + 8);
        const uint8_t *pay = take(&r, len);
        if (!pay)
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                              "section %u: %llu payload bytes run past the end of the file", i,
                              (unsigned long long)len);
        crc = cq_crc32c(0, pay, (size_t)len);
        if (CRC_BAD(cq_get_u32le(h + 16), crc))
            return cq_err_set(err, CQ_ERR_CHECKSUM, -1, -1,
                              "section %u (%s): payload CRC: stored 0x%08x, computed 0x%08x", i,
                              i ? "layer" : "configuration", cq_get_u32le(h + 16), crc);
    }
    if (r.n)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "size: %llu bytes after the last section",
                          (unsigned long long)r.n);
    return CQ_OK;
}

cq_status cq_cache_load_mem_ex(const void *buf, size_t len, const cq_cache_load_opts *opts,
                               cq_cache **out, cq_err *err) {
    cq_err_clear(err);
    if (!out || (!buf && len)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "buf or out is NULL");
    *out = NULL;
    const uint8_t *b = buf;
    uint32_t n_sec = 0;
    cq_status st = check_sections(b, len, &n_sec, err);
    if (st) return st;
    uint64_t limit = opts && opts->max_bytes ? opts->max_bytes
                                             : DEFAULT_LIMIT_BASE + DEFAULT_LIMIT_MULT * (uint64_t)len;
    /* sections are contiguous and verified: walk them again without checks */
    const uint8_t *p = b + FILE_HDR;
    uint64_t conf_len = cq_get_u64le(p + 8);
    conf cf;
    st = parse_conf(p + SEC_HDR, conf_len, n_sec, &cf, err);
    if (st) {
        free(cf.codecs);
        return st;
    }
    cf.version = cq_get_u32le(b + 8);
    uint64_t fixed = empty_cache_bytes(&cf);
    if (fixed > limit) {
        free(cf.codecs);
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                          "memory limit: the configuration alone needs %llu bytes, limit %llu",
                          (unsigned long long)fixed, (unsigned long long)limit);
    }
    cf.cfg.kernels = opts ? opts->kernels : NULL;
    cq_cache *c = NULL;
    st = cq_cache_create(&cf.cfg, &c, err);
    free(cf.codecs);
    if (st) {
        if (err) {
            char m[sizeof err->msg];
            memcpy(m, err->msg, sizeof m);
            cq_err_set(err, st, err->token, err->channel, "configuration: %.190s", m);
        }
        return st;
    }
    c->sealed = (int)cf.sealed;
    /* pass 1: validate every layer, sum the page memory; pass 2: allocate and fill */
    const uint32_t NL = c->cfg.n_layers;
    uint64_t need[2] = {cq_cache_allocated_bytes(c, -1), 0}; /* bytes, page slack */
    for (int fill = 0; fill < 2 && !st; fill++) {
        const uint8_t *q = p + SEC_HDR + conf_len;
        for (uint32_t L = 0; L < NL && !st; L++) {
            uint64_t ll = cq_get_u64le(q + 8);
            st = do_layer(c, &cf, L, q + SEC_HDR, ll, fill, need, err);
            q += SEC_HDR + ll;
        }
        if (!st && !fill && !(opts && opts->max_bytes)) limit += need[1];
        if (!st && !fill && need[0] > limit)
            st = cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                            "memory limit: the restored cache would hold %llu bytes, limit %llu",
                            (unsigned long long)need[0], (unsigned long long)limit);
    }
    if (st) {
        cq_cache_free(c);
        return st;
    }
    *out = c;
    return CQ_OK;
}

cq_status cq_cache_load_mem(const void *buf, size_t len, cq_cache **out, cq_err *err) {
    return cq_cache_load_mem_ex(buf, len, NULL, out, err);
}

/* Prefix err's message with the (shortened) path. */
static cq_status with_path(cq_status st, const char *path, cq_err *err) {
    if (st && err) {
        char m[sizeof err->msg], bp[72];
        memcpy(m, err->msg, sizeof m);
        cq_err_set(err, st, err->token, err->channel, "%s: %.150s",
                   cq_path_brief(path, bp, sizeof bp), m);
    }
    return st;
}

cq_status cq_cache_load_ex(const char *path, const cq_cache_load_opts *opts, cq_cache **out,
                           cq_err *err) {
    cq_err_clear(err);
    if (!path || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "path or out is NULL");
    *out = NULL;
    int fd;
    uint64_t size;
    cq_status st = cq_file_open(path, &fd, &size, err);
    if (st) return st;
    /* header first: a file that is not a cache, or whose size disagrees with its
     * header, is refused after reading 40 bytes, whatever its length */
    uint8_t hdr[FILE_HDR];
    uint32_t n_sec;
    size_t nh = size < FILE_HDR ? (size_t)size : FILE_HDR;
    st = cq_file_read_at(fd, path, 0, hdr, nh, err);
    if (!st) st = with_path(check_header(hdr, nh, size, &n_sec, err), path, err);
    if (!st && (size > SIZE_MAX / 2 || (opts && opts->max_bytes && size > opts->max_bytes)))
        st = with_path(cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                                  "memory limit: the file alone is %llu bytes, limit %llu",
                                  (unsigned long long)size,
                                  (unsigned long long)(opts && opts->max_bytes ? opts->max_bytes
                                                                               : SIZE_MAX / 2)),
                       path, err);
    uint8_t *buf = NULL;
    if (!st && !(buf = malloc((size_t)size)))
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory (%llu bytes)",
                        (unsigned long long)size);
    if (!st) st = cq_file_read_at(fd, path, 0, buf, (size_t)size, err);
    close(fd);
    if (!st) st = with_path(cq_cache_load_mem_ex(buf, (size_t)size, opts, out, err), path, err);
    free(buf);
    return st;
}

cq_status cq_cache_load(const char *path, cq_cache **out, cq_err *err) {
    return cq_cache_load_ex(path, NULL, out, err);
}

/* --------------------------------------------------------------- compare */

#define DIFF(...) cq_err_set(err, CQ_ERR_MISMATCH, -1, -1, __VA_ARGS__)

/* x, y: the same store of caches a and b; what names it in a difference. */
static cq_status compare_store(const cq_store *x, const cq_store *y, const char *what,
                               cq_err *err) {
    if (x->kind != y->kind || x->n_done != y->n_done || x->n_resid != y->n_resid ||
        x->tail_g != y->tail_g)
        return DIFF("%s: state differs (kind %d/%d, committed %u/%u, in flight %u/%u, partial "
                    "%u/%u)", what, x->kind, y->kind, x->n_done, y->n_done, x->n_resid,
                    y->n_resid, x->tail_g, y->tail_g);
    if (x->kind == ST_ROW) return CQ_OK; /* a view: its row store is compared */
    if (x->n_resid && memcmp(x->resid, y->resid, (size_t)x->n_resid * x->D * 2))
        return DIFF("%s: in-flight tokens differ", what);
    size_t la = 0, lb = 0;
    cq_status st;
    if ((st = cq_store_export(x, NULL, 0, &la, err)) || (st = cq_store_export(y, NULL, 0, &lb, err)))
        return st;
    if (la != lb) return DIFF("%s: %zu vs %zu packed bytes", what, la, lb);
    uint8_t *ba = malloc(la + 1), *bb = malloc(la + 1);
    if (!ba || !bb) {
        free(ba);
        free(bb);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    st = cq_store_export(x, ba, la, &la, err);
    if (!st) st = cq_store_export(y, bb, lb, &lb, err);
    if (!st) {
        for (size_t i = 0; i < la; i++)
            if (ba[i] != bb[i]) {
                st = DIFF("%s: packed byte %zu differs (0x%02x vs 0x%02x)", what, i, ba[i], bb[i]);
                break;
            }
    }
    free(ba);
    free(bb);
    return st;
}

cq_status cq_cache_compare(const cq_cache *a, const cq_cache *b, cq_err *err) {
    cq_err_clear(err);
    if (!a || !b) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cache is NULL");
    const cq_cache_config *x = &a->cfg, *y = &b->cfg;
    if (x->n_layers != y->n_layers || x->n_kv_heads != y->n_kv_heads ||
        x->head_dim != y->head_dim || x->group != y->group || x->n_sinks != y->n_sinks ||
        x->page_tokens != y->page_tokens || a->page_tokens != b->page_tokens ||
        x->max_tokens != y->max_tokens || x->force_generic != y->force_generic ||
        x->key_codec != y->key_codec || x->val_codec != y->val_codec)
        return DIFF("configurations differ");
    const uint32_t NL = x->n_layers, H = x->n_kv_heads, D = x->head_dim;
    if (memcmp(a->codecs, b->codecs, (size_t)NL * sizeof *a->codecs))
        return DIFF("per-layer codecs differ");
    if (!a->masks != !b->masks || (a->masks && memcmp(a->masks, b->masks, (size_t)NL * H * D)))
        return DIFF("outlier masks differ");
    if (a->sealed != b->sealed) return DIFF("sealed (flushed) state differs");
    for (uint32_t L = 0; L < NL; L++) {
        const cq_layer *la = &a->layers[L], *lb = &b->layers[L];
        if (la->tokens != lb->tokens)
            return DIFF("layer %u: %u vs %u tokens", L, la->tokens, lb->tokens);
        const uint32_t ns = sink_count(a, la->tokens);
        for (uint32_t h = 0; h < H; h++) {
            if (ns && (memcmp(la->heads[h].sink_k, lb->heads[h].sink_k, (size_t)ns * D * 2) ||
                       memcmp(la->heads[h].sink_v, lb->heads[h].sink_v, (size_t)ns * D * 2)))
                return DIFF("layer %u, kv head %u: sink tokens differ", L, h);
            for (int r = 0; r < 2; r++) {
                char what[64];
                snprintf(what, sizeof what, "layer %u, kv head %u, %s", L, h, role_name(r));
                cq_status st = compare_store(store_of(a, L, h, r), store_of(b, L, h, r), what, err);
                if (st) return st;
            }
        }
        for (int r = 0; r < 2; r++) {
            if (!la->row[r] != !lb->row[r])
                return DIFF("layer %u, %s: layouts differ", L, role_name(r));
            if (!la->row[r]) continue;
            char what[64];
            snprintf(what, sizeof what, "layer %u, row store, %s", L, role_name(r));
            cq_status st = compare_store(la->row[r], lb->row[r], what, err);
            if (st) return st;
        }
    }
    return CQ_OK;
}
