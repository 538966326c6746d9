/* SPDX-License-Identifier: MIT */
/*
 * page_arena.h - where a large cache's larger pages come from (docs/CACHE.md, "Page
 * layout"): address space reserved a region at a time, made readable and writable
 * CQ_ARENA_STEP (2 MiB) at a time and advised for transparent huge pages, so the page
 * streams that attention reads cross a 2 MiB TLB entry instead of a 4 KiB one. Pages are
 * carved one after another (64-byte aligned); a freed page goes to a free list and is
 * handed out again for a page of the same size. Nothing is returned to the system before
 * the cache is freed.
 *
 * One arena per cache (none when CQ_HUGE_PAGES is "0" at cq_cache_create), used under the
 * cache's exclusive-access rule for append / flush / reset (include/cq_cache.h): no lock.
 * Linux only (mmap, mprotect, MADV_HUGEPAGE); on other systems cq_arena_alloc always
 * returns NULL and the cache uses malloc. Internal to src/cache.
 */
#ifndef CQ_PAGE_ARENA_H
#define CQ_PAGE_ARENA_H

#include <stddef.h>
#include <stdint.h>

#define CQ_ARENA_REGIONS 32                    /* at most 32 GiB of pages from the arena */
#define CQ_ARENA_REGION ((size_t)1 << 30)      /* address space reserved at a time */
#define CQ_ARENA_STEP ((size_t)2 << 20)        /* committed at a time: one huge page */
#define CQ_ARENA_MIN_PAGE ((size_t)64 << 10)   /* smaller pages always come from malloc */
#define CQ_ARENA_START ((uint64_t)16 << 20)    /* bytes a cache holds before the arena is used */

typedef struct cq_page_arena {
    uint8_t *base[CQ_ARENA_REGIONS]; /* 2 MiB-aligned start of each region */
    void *map[CQ_ARENA_REGIONS];     /* the mapping (base rounded down) and its length */
    size_t map_len[CQ_ARENA_REGIONS];
    size_t committed[CQ_ARENA_REGIONS]; /* readable and writable from base */
    size_t used[CQ_ARENA_REGIONS];      /* carved from base */
    uint32_t n;       /* regions reserved; pages are carved from the last */
    int off;          /* 1: gives no page (no support here, or a reservation failed) */
    void *free;       /* freed pages: a list threaded through their first bytes */
    uint64_t mapped;  /* bytes committed in every region */
    uint64_t live;    /* requested bytes of the pages handed out and not freed */
} cq_page_arena;

/* Set up an empty arena. Reserves nothing. */
void cq_arena_init(cq_page_arena *a);
/* A page of n bytes (64-byte aligned), or NULL when the arena cannot give one (then the
 * caller allocates it elsewhere). */
void *cq_arena_alloc(cq_page_arena *a, size_t n);
/* 1 when p is a page of the arena. */
int cq_arena_owns(const cq_page_arena *a, const void *p);
/* Page p of n bytes (cq_arena_owns(a, p)) back to the arena's free list. */
void cq_arena_free(cq_page_arena *a, void *p, size_t n);
/* Unmap every region (the pages are gone) and leave the arena empty. */
void cq_arena_release(cq_page_arena *a);
/* Committed bytes that hold no live page: the tail of the regions, freed pages and each
 * page's rounding to 64 bytes. */
static inline uint64_t cq_arena_slack(const cq_page_arena *a) { return a->mapped - a->live; }

#endif
