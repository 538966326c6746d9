/* SPDX-License-Identifier: MIT */
/*
 * test_cache_arena.c - the cache's huge-page arena (src/cache/page_arena.c) and its use by
 * a cache (src/cache/cache.c):
 *   - the arena alone: 64-byte aligned pages carved in order, a freed page handed out again
 *     for a page of the same size and not for another, ownership, the slack arithmetic
 *     (committed 2 MiB steps against the live pages), a second region once the first
 *     cannot hold the next page;
 *   - a cache that grows past CQ_ARENA_START: its later pages come from the arena, the
 *     accounting still equals the allocator's count (per layer and whole cache, the
 *     arena's slack in the whole cache's), the tokens read back bit for bit, and the same
 *     appends into a cache with CQ_HUGE_PAGES=0 give the same exported bytes, the same
 *     attention bits, and a save / load / clone that reproduce them.
 * On a system without the arena (not Linux) the arena checks are skipped and the cache
 * checks still run.
 */
#include <stdlib.h>
#include <string.h>

#include "../src/cache/cache_internal.h"
#include "cq_fp16.h"
#include "cq_test.h"
#include "util/cache_testutil.h"

static void test_arena_alone(void) {
    cq_page_arena a;
    cq_arena_init(&a);
    if (a.off) { /* no arena here: it gives nothing */
        CHECK(cq_arena_alloc(&a, 1 << 20) == NULL && a.n == 0, "an arena that is off gives no page");
        return;
    }
    const size_t n1 = 300000, n2 = 100000; /* not multiples of 64 */
    uint8_t *p1 = cq_arena_alloc(&a, n1), *p2 = cq_arena_alloc(&a, n2);
    CHECK(p1 && p2 && a.n == 1, "two pages from one region");
    if (!p1 || !p2) return;
    CHECK(((uintptr_t)p1 & 63) == 0 && ((uintptr_t)p2 & 63) == 0, "64-byte aligned pages");
    CHECK(((uintptr_t)p1 & (CQ_ARENA_STEP - 1)) == 0, "the first page starts a 2 MiB huge page");
    CHECK(p2 == p1 + (n1 + 63) / 64 * 64, "pages carved in order");
    CHECK(a.mapped == CQ_ARENA_STEP && a.live == n1 + n2, "committed %zu live %llu", (size_t)a.mapped,
          (unsigned long long)a.live);
    CHECK(cq_arena_slack(&a) == CQ_ARENA_STEP - n1 - n2, "slack = committed - live");
    memset(p1, 0xA5, n1); /* writable */
    memset(p2, 0x5A, n2);
    CHECK(cq_arena_owns(&a, p1) && cq_arena_owns(&a, p2 + n2 - 1) && !cq_arena_owns(&a, &a),
          "ownership");
    cq_arena_free(&a, p1, n1);
    CHECK(a.live == n2 && cq_arena_slack(&a) == CQ_ARENA_STEP - n2, "a freed page is slack");
    uint8_t *p3 = cq_arena_alloc(&a, n2); /* another size: carved anew */
    CHECK(p3 && p3 != p1 && p3 == p2 + (n2 + 63) / 64 * 64, "a freed page of another size stays free");
    uint8_t *p4 = cq_arena_alloc(&a, n1); /* the same size: the freed page */
    CHECK(p4 == p1 && a.live == n1 + 2 * n2, "a freed page of the same size is handed out again");
    /* a page larger than what is committed: steps committed as needed */
    const size_t big = 3 * CQ_ARENA_STEP + 5;
    uint8_t *p5 = cq_arena_alloc(&a, big);
    CHECK(p5 && a.mapped >= (size_t)(p5 - a.base[0]) + big && a.mapped % CQ_ARENA_STEP == 0,
          "commits whole 2 MiB steps up to the page's end");
    if (p5) p5[big - 1] = 1;
    /* fill the region's address space (committed but never touched: no memory used) until a
     * page no longer fits: the next one comes from a second region */
    size_t guard = 0;
    while (a.n == 1 && guard++ < 2048) {
        if (!cq_arena_alloc(&a, 1 << 20)) break;
    }
    CHECK(a.n == 2 && a.used[1] > 0 && a.used[0] <= CQ_ARENA_REGION, "a second region (%u)", a.n);
    CHECK(cq_arena_slack(&a) == a.mapped - a.live, "slack after the rollover");
    cq_arena_release(&a);
    CHECK(a.n == 0 && a.mapped == 0 && a.live == 0 && !a.off, "released");

}

/* 2 layers, 4 kv heads, D = 128, 1024-token pages (fp16 pages of 256 KiB, CQ-4 key and
 * value pages of about 67 KiB): CQ_ARENA_START is passed at about 4K tokens (fp16) and 16K
 * (CQ-4). */
static cq_cache *make(cq_codec_id kc, cq_codec_id vc, int huge, cq_err *e) {
    if (!huge) setenv("CQ_HUGE_PAGES", "0", 1);
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 2, 4, 128);
    cfg.key_codec = kc;
    cfg.val_codec = vc;
    cfg.page_tokens = 1024;
    cfg.n_sinks = 4;
    cq_cache *c = NULL;
    if (cq_cache_create(&cfg, &c, e) != CQ_OK) c = NULL;
    unsetenv("CQ_HUGE_PAGES");
    return c;
}

static int accounting_ok(const cq_cache *c) {
    cq_cache_mem m;
    int ok = 1;
    for (int32_t L = -1; L < (int32_t)c->cfg.n_layers; L++) {
        if (cq_cache_memory(c, L, &m) != CQ_OK) return 0;
        ok &= m.total == cq_cache_allocated_bytes(c, L);
    }
    return ok;
}

/* every exported stream and every attention output of the two caches, bit for bit */
static int same_cache(const cq_cache *a, const cq_cache *b, const float *q, uint32_t nq) {
    const uint32_t NL = a->cfg.n_layers, H = a->cfg.n_kv_heads, D = a->cfg.head_dim;
    int same = 1;
    for (uint32_t L = 0; L < NL; L++) {
        for (uint32_t h = 0; h < H; h++)
            for (int r = 0; r < 2; r++) {
                size_t la = 0, lb = 0;
                cq_cache_export(a, L, h, (cq_role)r, NULL, 0, &la, NULL);
                cq_cache_export(b, L, h, (cq_role)r, NULL, 0, &lb, NULL);
                uint8_t *xa = malloc(la + 1), *xb = malloc(lb + 1);
                same &= la == lb && cq_cache_export(a, L, h, (cq_role)r, xa, la, &la, NULL) == CQ_OK &&
                        cq_cache_export(b, L, h, (cq_role)r, xb, lb, &lb, NULL) == CQ_OK &&
                        !memcmp(xa, xb, la);
                free(xa), free(xb);
            }
        float *oa = malloc((size_t)nq * D * sizeof *oa), *ob = malloc((size_t)nq * D * sizeof *ob);
        for (uint32_t prec = CQ_ATTN_EXACT; prec <= CQ_ATTN_FAST; prec++) {
            cq_attn_opts o;
            memset(&o, 0, sizeof o);
            o.precision = prec;
            same &= cq_cache_attend(a, L, q, nq, oa, &o, NULL) == CQ_OK &&
                    cq_cache_attend(b, L, q, nq, ob, &o, NULL) == CQ_OK &&
                    !memcmp(oa, ob, (size_t)nq * D * sizeof *oa);
        }
        free(oa), free(ob);
    }
    return same;
}

static void test_cache_pages(cq_codec_id kc, cq_codec_id vc, uint32_t T, const char *name) {
    const uint32_t H = 4, D = 128, NQ = 16;
    cq_err e;
    cq_cache *c = make(kc, vc, 1, &e), *r = make(kc, vc, 0, &e);
    CHECK(c && r, "%s: create", name);
    if (!c || !r) goto out;
    cq_rng g;
    cq_rng_seed(&g, 5);
    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
    float *q = malloc((size_t)NQ * D * sizeof *q), *rk = malloc((size_t)T * D * 4),
          *rv = malloc((size_t)T * D * 4);
    ctu_fill_f16(&g, K, (size_t)T * H * D, 1.0f, 0);
    ctu_fill_f16(&g, V, (size_t)T * H * D, 1.0f, 0);
    for (uint32_t i = 0; i < NQ * D; i++) q[i] = (float)cq_rng_normal(&g) * 0.1f;
    int ok = 1;
    for (uint32_t L = 0; L < 2; L++)
        for (uint32_t t = 0; t < T; t += 1500) { /* pages fill across calls */
            const uint32_t n = T - t < 1500 ? T - t : 1500;
            ok &= cq_cache_append(c, L, K + (size_t)t * H * D, V + (size_t)t * H * D, n, &e) == CQ_OK;
            ok &= cq_cache_append(r, L, K + (size_t)t * H * D, V + (size_t)t * H * D, n, &e) == CQ_OK;
        }
    CHECK(ok, "%s: appends", name);
    cq_page_arena probe;
    cq_arena_init(&probe);
    const int have = !probe.off; /* this system has the arena */
    if (have) {
        uint32_t in = 0, out_ = 0;
        for (uint32_t L = 0; L < 2; L++)
            for (uint32_t h = 0; h < H; h++) {
                const cq_store *s = &c->layers[L].heads[h].v;
                for (uint32_t p = 0; p < s->n_pages; p++)
                    if (c->arena && cq_arena_owns(c->arena, s->pages[p])) in++;
                    else out_++;
            }
        CHECK(c->arena && in > 0 && out_ > 0, "%s: the later pages from the arena (%u of %u)", name, in,
              in + out_);
        CHECK(r->no_arena && !r->arena, "%s: CQ_HUGE_PAGES=0 at create: no arena", name);
        CHECK(c->arena && cq_cache_allocated_bytes(c, -1) > cq_cache_allocated_bytes(r, -1),
              "%s: the arena's slack is in the whole cache's bytes", name);
    }
    CHECK(accounting_ok(c) && accounting_ok(r), "%s: accounting equals the allocator's count", name);
    for (uint32_t L = 0; L < 2; L++) { /* layer figures do not depend on the arena */
        CHECK(cq_cache_allocated_bytes(c, L) == cq_cache_allocated_bytes(r, L), "%s: layer %u bytes",
              name, L);
    }
    /* fp16 reads back exactly; every format reads back what the cache without arena reads */
    int rb = 1;
    float *sk = malloc((size_t)T * D * 4), *sv = malloc((size_t)T * D * 4);
    for (uint32_t h = 0; h < H; h++) {
        rb &= cq_cache_read(c, 1, h, 0, T, rk, rv, NULL) == CQ_OK &&
              cq_cache_read(r, 1, h, 0, T, sk, sv, NULL) == CQ_OK &&
              !memcmp(rk, sk, (size_t)T * D * 4) && !memcmp(rv, sv, (size_t)T * D * 4);
        if (kc == CQ_CODEC_FP16)
            for (uint32_t t = 0; t < T && rb; t += 97)
                rb &= rk[(size_t)t * D + 3] == cq_f16_to_f32(K[((size_t)t * H + h) * D + 3]);
    }
    free(sk), free(sv);
    CHECK(rb, "%s: read-back", name);
    CHECK(same_cache(c, r, q, NQ), "%s: exported bytes and attention bits with and without the arena",
          name);
    uint8_t *buf = NULL;
    size_t len = 0;
    cq_cache *ld = NULL, *cl = NULL;
    CHECK(cq_cache_save_mem(c, &buf, &len, &e) == CQ_OK && cq_cache_load_mem(buf, len, &ld, &e) == CQ_OK &&
              cq_cache_clone(c, &cl, &e) == CQ_OK,
          "%s: save, load, clone: %s", name, e.msg);
    if (ld && cl) {
        CHECK(same_cache(c, ld, q, NQ) && same_cache(c, cl, q, NQ), "%s: loaded and cloned caches", name);
        CHECK(accounting_ok(ld) && accounting_ok(cl), "%s: their accounting", name);
    }
    cq_cache_reset(c); /* keeps the pages: append again into them */
    ok = 1;
    for (uint32_t L = 0; L < 2; L++)
        ok &= cq_cache_append(c, L, K, V, T, &e) == CQ_OK;
    CHECK(ok && accounting_ok(c) && same_cache(c, r, q, NQ), "%s: reset and append again", name);
    free(buf);
    cq_cache_free(ld);
    cq_cache_free(cl);
    free(K), free(V), free(q), free(rk), free(rv);
out:
    cq_cache_free(c);
    cq_cache_free(r);
}

int main(void) {
    test_arena_alone();
    test_cache_pages(CQ_CODEC_FP16, CQ_CODEC_FP16, 6144, "fp16/fp16");
    test_cache_pages(CQ_CODEC_CQ4, CQ_CODEC_CQ4, 20480, "cq4/cq4");
    return cq_test_done("test_cache_arena");
}
