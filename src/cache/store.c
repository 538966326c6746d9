/* SPDX-License-Identifier: MIT */
/*
 * store.c - one role (keys or values) of one (layer, KV head): page layout,
 * page growth, decode of token ranges, the packed export and the byte
 * accounting of a store; the head views of a row-layout store. What differs between the
 * fused formats goes through their cq_fused_ops (fused.h); the generic codec path is here.
 * Pages are allocated one at a time and never moved; only the small table of
 * page pointers grows (doubling). Not here: the append state machine
 * (cache.c) and attention (attend.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cq_le.h"
#include "fused.h"

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

cq_status cq_store_init(cq_cache *c, cq_layer *l, cq_store *s, cq_role role, cq_codec_id id,
                        uint32_t D, const cq_params *kp, const uint8_t *mask, int force_generic,
                        cq_err *err) {
    const uint32_t P = c->page_tokens;
    memset(s, 0, sizeof *s);
    s->role = role;
    s->D = D;
    s->unit = 1;
    const cq_codec_traits *tr = cq_codec_get(id);
    if (!tr)
        return cq_err_set(err, CQ_ERR_TIER, -1, -1, "unknown codec id %d for %s", (int)id,
                          role == CQ_ROLE_KEY ? "keys" : "values");
    const cq_fused_ops *f = force_generic ? NULL : cq_fused_find(id, role);
    if (f) { /* a fused format: its own layout (fused.h) */
        s->fused = f;
        s->kind = f->kind;
        s->per_token = f->per_token;
        s->params = kp;
        f->layout(s, P);
    } else {
        s->kind = ST_GEN;
        if (!(tr->flags & CQ_CODEC_F_STREAMING) || !tr->encode || !tr->decode ||
            !tr->packed_bytes)
            return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1,
                              "codec %s is not a streaming codec: a cache cannot hold it",
                              tr->name);
        cq_codec_cfg_default(&s->ccfg, D);
        s->ccfg.group = c->cfg.group;
        s->ccfg.mask = mask;
        cq_status st = cq_codec_supports(tr, &s->ccfg, role);
        if (st)
            return cq_err_set(err, st, -1, -1, "codec %s cannot code %s at head_dim %u", tr->name,
                              role == CQ_ROLE_KEY ? "keys" : "values", D);
        s->codec = tr;
        s->unit = cq_codec_unit_tokens(tr, &s->ccfg, role);
        s->window = cq_codec_window_tokens(tr, &s->ccfg, role);
        if (s->window > (1u << 16))
            return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "codec %s: window of %u tokens",
                              tr->name, s->window);
        /* the cache holds the window itself: units leaving it are coded without one */
        if (s->window) s->ccfg.residual = 0;
        s->ccfg_tail = s->ccfg;
        s->ccfg_tail.residual = 0;
        if (s->unit > (1u << 16))
            return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "codec %s: unit of %u tokens",
                              tr->name, s->unit);
        size_t b = tr->packed_bytes(&s->ccfg, role, s->unit);
        if (b == 0)
            return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "codec %s: zero packed size",
                              tr->name);
        s->slot_bytes = b; /* byte-packed: registry decoders take any alignment */
    }
    if (!cq_store_per_token(s)) {
        s->page_units = P / s->unit ? P / s->unit : 1;
        s->page_bytes = s->page_units * s->slot_bytes;
        s->resid_cap = s->unit + s->window;
        s->resid = cq_cache_alloc_(c, l, (size_t)s->resid_cap * D * 2, 1);
        if (!s->resid) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    } else {
        s->page_units = P;
        s->off_tscales = round_up((size_t)P * s->tok_bytes, 64); /* scales 2-byte aligned */
        s->page_bytes = s->off_tscales + (f->has_scales ? 2 * (size_t)P : 0);
    }
    s->page_bytes = round_up(s->page_bytes, 64);
    return CQ_OK;
}

void cq_store_init_view(cq_store *s, cq_role role, uint32_t D, const cq_store *row, uint32_t off) {
    memset(s, 0, sizeof *s);
    s->kind = ST_ROW;
    s->role = role;
    s->D = D;
    s->unit = row->unit;
    s->row = row;
    s->row_off = off;
}

void cq_store_release(cq_cache *c, cq_layer *l, cq_store *s) {
    for (uint32_t i = 0; i < s->n_pages && !c->pager; i++)
        cq_cache_free_(c, l, s->pages[i], CQ_PAGE_HDR + s->page_bytes);
    cq_cache_free_(c, l, s->pages, (size_t)s->cap_pages * sizeof *s->pages);
    if (s->resid) cq_cache_free_(c, l, s->resid, (size_t)s->resid_cap * s->D * 2);
    s->pages = NULL;
    s->resid = NULL;
    s->n_pages = s->cap_pages = 0;
}

uint32_t cq_store_tokens(const cq_store *s) { return s->n_done + s->n_resid; }

cq_status cq_store_reserve(cq_cache *c, cq_layer *l, cq_store *s, uint64_t tokens) {
    uint64_t units = (tokens + s->unit - 1) / s->unit;
    uint64_t need = (units + s->page_units - 1) / s->page_units;
    if (need <= s->n_pages) return CQ_OK;
    if (need > 0xFFFFFFFFull) return CQ_ERR_OVERFLOW;
    if (need > s->cap_pages) {
        uint32_t cap = s->cap_pages ? s->cap_pages : 4;
        while (cap < need) cap *= 2;
        uint8_t **np = cq_cache_alloc_(c, l, (size_t)cap * sizeof *np, 1);
        if (!np) return CQ_ERR_NOMEM;
        if (s->n_pages) memcpy(np, s->pages, s->n_pages * sizeof *np);
        cq_cache_free_(c, l, s->pages, (size_t)s->cap_pages * sizeof *s->pages);
        s->pages = np;
        s->cap_pages = cap;
    }
    while (c->pager && s->n_pages < need) { /* pages of the serving pool */
        uint8_t *pg = c->pager->page(c->pager->ctx, c, l, s, s->n_pages);
        if (!pg) return CQ_ERR_NOMEM;
        s->pages[s->n_pages++] = pg;
    }
    while (s->n_pages < need) {
        uint8_t *pg = cq_cache_alloc_aligned_(c, l, CQ_PAGE_HDR + s->page_bytes);
        if (!pg) return CQ_ERR_NOMEM; /* pages already added stay: they are empty capacity */
        cq_page_hdr *h = (cq_page_hdr *)pg;
        memset(h, 0, sizeof *h);
        h->magic = 0x43515047u;
        h->index = s->n_pages;
        h->kind = (uint32_t)s->kind;
        s->pages[s->n_pages++] = pg;
    }
    return CQ_OK;
}

void cq_store_account(const cq_store *s, cq_cache_mem *m) {
    uint64_t used = 0;
    if (cq_store_per_token(s)) {
        uint64_t codes = (uint64_t)s->n_done * s->tok_bytes;
        uint64_t sc = s->fused->has_scales ? 2ull * s->n_done : 0;
        m->payload += codes;
        m->scales += sc;
        used = codes + sc;
    } else {
        uint32_t nu = (s->n_done + s->unit - 1) / s->unit;
        for (uint32_t u = 0; u < nu; u++) {
            if (s->fused) {
                used += s->fused->account_unit(s, cq_store_unit_len(s, u), m);
            } else {
                uint64_t b = cq_store_gen_bytes(s, u);
                m->payload += b; /* a generic codec's blob holds all its metadata */
                used += b;
            }
        }
    }
    m->slack += (uint64_t)s->n_pages * s->page_bytes - used;
    m->headers += (uint64_t)s->n_pages * CQ_PAGE_HDR + (uint64_t)s->cap_pages * sizeof(uint8_t *);
    if (s->resid) m->residual += (uint64_t)s->resid_cap * s->D * 2;
}

cq_status cq_store_gen_check(const cq_store *s, const uint8_t *d, uint32_t n_done,
                             uint32_t tail_g, const char *where, cq_err *err) {
    const uint32_t nu = (n_done + s->unit - 1) / s->unit;
    float *tmp = nu ? malloc((size_t)s->unit * s->D * sizeof *tmp) : NULL;
    if (nu && !tmp) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    size_t o = 0;
    cq_status st = CQ_OK;
    for (uint32_t u = 0; u < nu && !st; u++) {
        const uint32_t g = (tail_g && u + 1 == nu) ? tail_g : s->unit;
        /* the unit a flush closed early was coded without a window (cq_store_ccfg) */
        const cq_codec_cfg *cc = (tail_g && u + 1 == nu) ? &s->ccfg_tail : &s->ccfg;
        const size_t b = s->codec->packed_bytes(cc, s->role, g);
        cq_status ds = s->codec->decode(cc, s->role, d + o, b, g, tmp);
        if (ds)
            st = cq_err_set(err, CQ_ERR_FORMAT, (int64_t)u * s->unit, -1,
                            "%s: unit %u does not decode with codec %s (%s)", where, u,
                            s->codec->name, cq_status_name(ds));
        /* encoders refuse non-finite input, so a unit they wrote decodes to finite values;
         * a NaN or infinite min / scale (KIVI, say) would reach read and attention */
        for (size_t i = 0; !st && i < (size_t)g * s->D; i++)
            if (!isfinite(tmp[i]))
                st = cq_err_set(err, CQ_ERR_FORMAT, (int64_t)u * s->unit + (int64_t)(i / s->D),
                                (int32_t)(i % s->D),
                                "%s: unit %u does not decode with codec %s (token %zu of the "
                                "unit, channel %zu: non-finite)", where, u, s->codec->name,
                                i / s->D, i % s->D);
        o += b;
    }
    free(tmp);
    return st;
}

/* A view: decode the row store's rows in pieces, keep the head's slice. */
static cq_status read_view(const cq_store *s, const cq_kernels *kern, uint32_t r0, uint32_t r1,
                           float *out) {
    const cq_store *rs = s->row;
    const uint32_t D = s->D, W = rs->D, step = 256;
    float *tmp = malloc((size_t)step * W * sizeof *tmp);
    if (!tmp) return CQ_ERR_NOMEM;
    cq_status st = CQ_OK;
    for (uint32_t a = r0; a < r1 && !st; a += step) {
        uint32_t b = r1 - a < step ? r1 : a + step;
        st = cq_store_read(rs, kern, a, b, tmp);
        for (uint32_t t = a; t < b && !st; t++)
            memcpy(out + (size_t)(t - r0) * D, tmp + (size_t)(t - a) * W + s->row_off,
                   (size_t)D * sizeof *tmp);
    }
    free(tmp);
    return st;
}

cq_status cq_store_read(const cq_store *s, const cq_kernels *kern, uint32_t r0, uint32_t r1,
                        float *out) {
    if (s->kind == ST_ROW) return read_view(s, kern, r0, r1, out);
    const uint32_t D = s->D;
    uint32_t t = r0;
    if (s->fused && t < s->n_done) { /* committed tokens of a fused format */
        const uint32_t e = r1 < s->n_done ? r1 : s->n_done;
        cq_status st = s->fused->read(s, kern, t, e, out);
        if (st) return st;
        t = e;
    }
    while (t < r1 && t < s->n_done) { /* committed units of a generic codec */
        uint32_t u = t / s->unit, g = cq_store_unit_len(s, u), a = t - u * s->unit;
        uint32_t b = r1 - u * s->unit < g ? r1 - u * s->unit : g;
        float *tmp = malloc((size_t)g * D * sizeof *tmp);
        if (!tmp) return CQ_ERR_NOMEM;
        cq_status st = s->codec->decode(cq_store_ccfg(s, u), s->role, cq_store_slot(s, u),
                                        cq_store_gen_bytes(s, u), g, tmp);
        if (!st)
            memcpy(out + (size_t)(t - r0) * D, tmp + (size_t)a * D,
                   (size_t)(b - a) * D * sizeof *tmp);
        free(tmp);
        if (st) return st;
        t = u * s->unit + b;
    }
    /* in flight: exactly the fp16 that was appended */
    if (t < r1) kern->f16_to_f32(s->resid + (size_t)(t - s->n_done) * D, out + (size_t)(t - r0) * D,
                                 (size_t)(r1 - t) * D);
    return CQ_OK;
}

void cq_store_trim(cq_cache *c, cq_layer *l, cq_store *s, uint32_t keep) {
    while (s->n_pages > keep) {
        s->n_pages--;
        if (!c->pager) cq_cache_free_(c, l, s->pages[s->n_pages], CQ_PAGE_HDR + s->page_bytes);
        s->pages[s->n_pages] = NULL;
    }
}

size_t cq_store_export_tokens_len(const cq_store *s) {
    return (size_t)s->n_done * (s->tok_bytes + (s->fused->has_scales ? 2 : 0));
}

void cq_store_export_tokens(const cq_store *s, uint8_t *dst, int swap16) {
    const size_t pay = (size_t)s->n_done * s->tok_bytes;
    for (uint32_t t = 0; t < s->n_done; t++) {
        uint8_t *d = dst + (size_t)t * s->tok_bytes;
        cq_store_get_codes(s, t, d);
        if (s->fused->has_scales) cq_put_u16le_n(dst + pay + 2 * (size_t)t, cq_store_scale(s, t), 1);
        for (size_t i = 0; swap16 && i < s->tok_bytes / 2; i++) { /* stored native */
            uint16_t v;
            memcpy(&v, d + 2 * i, 2);
            cq_put_u16le_n(d + 2 * i, &v, 1);
        }
    }
}

cq_status cq_store_export(const cq_store *s, uint8_t *dst, size_t cap, size_t *len, cq_err *err) {
    s = cq_store_data(s);
    const uint32_t nu = (s->n_done + s->unit - 1) / s->unit;
    size_t total = 0;
    if (s->fused) total = s->fused->export_len(s);
    else
        for (uint32_t u = 0; u < nu; u++) total += cq_store_gen_bytes(s, u);
    *len = total;
    if (!dst) return CQ_OK;
    if (cap < total)
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "export needs %zu bytes, got %zu", total, cap);
    if (s->fused) {
        s->fused->export(s, dst);
        return CQ_OK;
    }
    size_t o = 0;
    for (uint32_t u = 0; u < nu; u++) {
        size_t b = cq_store_gen_bytes(s, u);
        memcpy(dst + o, cq_store_slot(s, u), b);
        o += b;
    }
    return CQ_OK;
}

void cq_store_put_codes(const cq_store *s, uint32_t t, const uint8_t *codes) {
    if (s->tiled) cq_vb_put(cq_store_vblock(s, t), s->D, t % CQ_VB_TOK, codes);
    else memcpy(cq_store_codes(s, t), codes, s->tok_bytes);
}

void cq_store_get_codes(const cq_store *s, uint32_t t, uint8_t *codes) {
    if (s->tiled) cq_vb_get_token(cq_store_vblock(s, t), s->D, t % CQ_VB_TOK, codes);
    else memcpy(codes, cq_store_codes(s, t), s->tok_bytes);
}
