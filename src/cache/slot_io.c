/* SPDX-License-Identifier: MIT */
/*
 * slot_io.c - one full page of a store in the canonical form (slot_io.h). A page of a
 * cache with page_tokens = G is a serving pool's block slot. Each call works on a view
 * of the store: a copy of its descriptor whose one page is the given slot and which
 * holds exactly that page's committed tokens, so the per-format persistence ops of the
 * fused-format table (fused.h) and the generic path's packed units apply unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "fused.h"
#include "slot_io.h"

/* A view of s holding one full page (pg; may be NULL when only lengths are asked). */
static cq_store view_of(const cq_store *s, uint8_t **pg) {
    cq_store v = *s;
    v.pages = pg;
    v.n_pages = v.cap_pages = 1;
    v.n_done = s->page_units * s->unit;
    v.n_resid = 0;
    v.tail_g = 0;
    v.resid = NULL;
    return v;
}

uint64_t cq_slot_canon_len(const cq_store *s) {
    cq_store v = view_of(s, NULL);
    if (s->fused) return s->fused->data_len(&v, v.n_done, 0);
    return (uint64_t)s->page_units * s->codec->packed_bytes(&s->ccfg, s->role, s->unit);
}

void cq_slot_export(const cq_store *s, const uint8_t *page, uint8_t *dst) {
    uint8_t *pg = (uint8_t *)page;
    cq_store v = view_of(s, &pg);
    if (s->fused) {
        s->fused->export(&v, dst);
        return;
    }
    const size_t b = s->codec->packed_bytes(&s->ccfg, s->role, s->unit);
    for (uint32_t u = 0; u < s->page_units; u++)
        memcpy(dst + (size_t)u * b, page + CQ_PAGE_HDR + (size_t)u * s->slot_bytes, b);
}

cq_status cq_slot_check(const cq_store *s, const uint8_t *d, const char *where, cq_err *err) {
    cq_store v = view_of(s, NULL);
    if (s->fused) return s->fused->check(&v, d, v.n_done, 0, where, err);
    /* opaque blobs: decode each unit once so that an inserted block never fails later in
     * read or attention (as the cache file's loader does) */
    const size_t b = s->codec->packed_bytes(&s->ccfg, s->role, s->unit);
    float *tmp = malloc((size_t)s->unit * s->D * sizeof *tmp);
    if (!tmp) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_status st = CQ_OK;
    for (uint32_t u = 0; u < s->page_units && !st; u++)
        if (s->codec->decode(&s->ccfg, s->role, d + (size_t)u * b, b, s->unit, tmp))
            st = cq_err_set(err, CQ_ERR_FORMAT, (int64_t)u * s->unit, -1,
                            "%s: unit %u does not decode with codec %s", where, u,
                            s->codec->name);
    free(tmp);
    return st;
}

void cq_slot_import(const cq_store *s, uint8_t *page, const uint8_t *d) {
    cq_store v = view_of(s, &page);
    if (s->fused) {
        s->fused->import(&v, d);
        return;
    }
    const size_t b = s->codec->packed_bytes(&s->ccfg, s->role, s->unit);
    for (uint32_t u = 0; u < s->page_units; u++)
        memcpy(page + CQ_PAGE_HDR + (size_t)u * s->slot_bytes, d + (size_t)u * b, b);
}
