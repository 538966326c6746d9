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

/* A view of s holding the first n tokens of one page (pg; may be NULL when only lengths
 * are asked). */
static cq_store view_of(const cq_store *s, uint8_t **pg, uint32_t n) {
    cq_store v = *s;
    v.pages = pg;
    v.n_pages = v.cap_pages = 1;
    v.n_done = n;
    v.n_resid = 0;
    v.tail_g = 0;
    v.resid = NULL;
    return v;
}

uint32_t cq_slot_tokens(const cq_store *s) { return s->page_units * s->unit; }

uint64_t cq_slot_canon_len_n(const cq_store *s, uint32_t n) {
    cq_store v = view_of(s, NULL, n);
    if (s->fused) return s->fused->data_len(&v, n, 0);
    return (uint64_t)(n / s->unit) * s->codec->packed_bytes(&s->ccfg, s->role, s->unit);
}

uint64_t cq_slot_canon_len(const cq_store *s) { return cq_slot_canon_len_n(s, cq_slot_tokens(s)); }

void cq_slot_export(const cq_store *s, const uint8_t *page, uint8_t *dst) {
    cq_slot_export_n(s, page, cq_slot_tokens(s), dst);
}

void cq_slot_export_n(const cq_store *s, const uint8_t *page, uint32_t n, uint8_t *dst) {
    uint8_t *pg = (uint8_t *)page;
    cq_store v = view_of(s, &pg, n);
    if (s->fused) {
        s->fused->export(&v, dst);
        return;
    }
    const size_t b = s->codec->packed_bytes(&s->ccfg, s->role, s->unit);
    for (uint32_t u = 0; u < n / s->unit; u++)
        memcpy(dst + (size_t)u * b, page + CQ_PAGE_HDR + (size_t)u * s->slot_bytes, b);
}

cq_status cq_slot_check(const cq_store *s, const uint8_t *d, const char *where, cq_err *err) {
    return cq_slot_check_n(s, d, cq_slot_tokens(s), where, err);
}

cq_status cq_slot_check_n(const cq_store *s, const uint8_t *d, uint32_t n, const char *where,
                          cq_err *err) {
    cq_store v = view_of(s, NULL, n);
    if (s->fused) return s->fused->check(&v, d, n, 0, where, err);
    /* opaque blobs: the whole units decode (as the cache file's loader checks them), so that
     * an inserted block never fails later in read or attention */
    return cq_store_gen_check(s, d, n / s->unit * s->unit, 0, where, err);
}

void cq_slot_import(const cq_store *s, uint8_t *page, const uint8_t *d) {
    cq_slot_import_n(s, page, cq_slot_tokens(s), d);
}

void cq_slot_import_n(const cq_store *s, uint8_t *page, uint32_t n, const uint8_t *d) {
    cq_store v = view_of(s, &page, n);
    if (s->fused) {
        s->fused->import(&v, d);
        return;
    }
    const size_t b = s->codec->packed_bytes(&s->ccfg, s->role, s->unit);
    for (uint32_t u = 0; u < n / s->unit; u++)
        memcpy(page + CQ_PAGE_HDR + (size_t)u * s->slot_bytes, d + (size_t)u * b, b);
}
