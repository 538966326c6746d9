/* SPDX-License-Identifier: MIT */
/*
 * slot_io.h - one page of a store (a serving pool's block slot: G tokens, or G / unit
 * units) in the kernel-table-independent canonical form: the registry's packed form of
 * those G committed tokens, exactly what cq_cache_export gives for a store holding only
 * them. The fused formats go through their persistence ops (fused.h: data_len, export,
 * check, import), the generic codec path through its packed units. Used by the pool's
 * block wire form (src/serve/block_wire.c). Internal to src/.
 */
#ifndef CQ_SLOT_IO_H
#define CQ_SLOT_IO_H

#include "cache_internal.h"

/* Bytes of the canonical form of one full page of s (its page_units units). */
uint64_t cq_slot_canon_len(const cq_store *s);
/* The canonical form of the full page `page` of s into dst (cq_slot_canon_len bytes). */
void cq_slot_export(const cq_store *s, const uint8_t *page, uint8_t *dst);
/* Check untrusted canonical bytes d (cq_slot_canon_len long) against the invariants an
 * append maintains (where names the slot in the error); CQ_ERR_FORMAT / CQ_ERR_NOMEM. */
cq_status cq_slot_check(const cq_store *s, const uint8_t *d, const char *where, cq_err *err);
/* Write checked canonical bytes d into page (CQ_PAGE_HDR + s->page_bytes long). */
void cq_slot_import(const cq_store *s, uint8_t *page, const uint8_t *d);

#endif
