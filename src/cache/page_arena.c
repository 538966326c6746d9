/* SPDX-License-Identifier: MIT */
/*
 * page_arena.c - the cache's huge-page arena (page_arena.h). A region is CQ_ARENA_REGION
 * bytes of address space mapped PROT_NONE (no memory is committed for it), its start
 * rounded up to 2 MiB and advised MADV_HUGEPAGE once; pages are carved from its start and
 * the carved part is made readable and writable a 2 MiB step at a time, so every step is
 * one aligned huge page the kernel can back on first touch. A region that cannot hold the
 * next page is left with its tail unused and a new one is reserved.
 */
#include "page_arena.h"

#include <string.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__linux__) && defined(MADV_HUGEPAGE) && defined(MAP_NORESERVE)
#define ARENA_SUPPORTED 1
#else
#define ARENA_SUPPORTED 0
#endif

typedef struct free_page {
    struct free_page *next;
    size_t size; /* the carved (rounded) size */
} free_page;

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

void cq_arena_init(cq_page_arena *a) {
    memset(a, 0, sizeof *a);
    a->off = !ARENA_SUPPORTED;
}

#if ARENA_SUPPORTED
static int reserve(cq_page_arena *a) {
    if (a->n == CQ_ARENA_REGIONS) return 0;
    const size_t len = CQ_ARENA_REGION + CQ_ARENA_STEP;
    void *m = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return 0;
    uint8_t *b = (uint8_t *)(((uintptr_t)m + CQ_ARENA_STEP - 1) & ~(uintptr_t)(CQ_ARENA_STEP - 1));
    /* advice only: where the kernel has no transparent huge pages the pages stay 4 KiB */
    (void)madvise(b, CQ_ARENA_REGION, MADV_HUGEPAGE);
    a->map[a->n] = m;
    a->map_len[a->n] = len;
    a->base[a->n] = b;
    a->committed[a->n] = a->used[a->n] = 0;
    a->n++;
    return 1;
}
#endif

void *cq_arena_alloc(cq_page_arena *a, size_t n) {
#if ARENA_SUPPORTED
    if (a->off || n > CQ_ARENA_REGION) return NULL;
    const size_t r = round64(n);
    for (free_page **f = (free_page **)&a->free; *f; f = &(*f)->next)
        if ((*f)->size == r) { /* a freed page of the same size */
            free_page *p = *f;
            *f = p->next;
            a->live += n;
            return p;
        }
    if (!a->n || a->used[a->n - 1] + r > CQ_ARENA_REGION) {
        if (!reserve(a)) {
            a->off = 1; /* out of address space or regions: malloc from now on */
            return NULL;
        }
    }
    const uint32_t i = a->n - 1;
    while (a->used[i] + r > a->committed[i]) {
        if (mprotect(a->base[i] + a->committed[i], CQ_ARENA_STEP, PROT_READ | PROT_WRITE))
            return NULL; /* no memory to commit: the caller's malloc reports it */
        a->committed[i] += CQ_ARENA_STEP;
        a->mapped += CQ_ARENA_STEP;
    }
    void *p = a->base[i] + a->used[i];
    a->used[i] += r;
    a->live += n;
    return p;
#else
    (void)a, (void)n;
    return NULL;
#endif
}

int cq_arena_owns(const cq_page_arena *a, const void *p) {
    const uint8_t *q = p;
    for (uint32_t i = 0; i < a->n; i++)
        if (q >= a->base[i] && q < a->base[i] + a->used[i]) return 1;
    return 0;
}

void cq_arena_free(cq_page_arena *a, void *p, size_t n) {
    free_page *f = p;
    f->size = round64(n);
    f->next = a->free;
    a->free = f;
    a->live -= n;
}

void cq_arena_release(cq_page_arena *a) {
#if ARENA_SUPPORTED
    for (uint32_t i = 0; i < a->n; i++) munmap(a->map[i], a->map_len[i]);
#endif
    memset(a, 0, sizeof *a);
}
