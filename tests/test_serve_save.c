/* SPDX-License-Identifier: MIT */
/*
 * test_serve_save.c - saving and restoring the serving pool (include/cq_serve.h, "Save and
 * restore"; cache file format version 3): sequences saved and loaded into a second pool
 * (and into the same one) read, export and attend bit for bit like the original and like
 * a full prefill (a cq_cache fed every token), per format (fp16, CQ-8, CQ-4, CQ-4+ with
 * masks, generic registry codecs, mixed layers), G 32 and 128, with and without sinks, at
 * lengths mid-group, on a block border, inside the sinks, empty; appending more tokens
 * afterwards equals the original continued; restored sequences of one prompt share their
 * published blocks again (pool accounting and allocator); the cached-blocks file is a warm
 * start that adoption uses; corrupt files (bit flips, truncations, another version,
 * another configuration or model), a budget too small, FIFOs and directories are refused
 * with the pool unchanged; cq_cache_load refuses version 3 by name; a file saved on the
 * scalar kernel table loads on the automatic one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cq_serve.h"
#include "cq_test.h"
#include "cq_util.h"
#include "util/cache_testutil.h"

#include "serve_fixture.h"

/* ------------------------------------------------------------ files */

static char g_dir[64];

static const char *path_of(const char *name) {
    static char buf[4][160];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)l + 1);
    *n = fread(b, 1, (size_t)l, f);
    fclose(f);
    return b;
}

/* Write a new file (never over an existing one: ext4 flushes a truncated and rewritten
 * file on close, which would make the corruption loops wait for the disk). */
static void spit(const char *path, const uint8_t *b, size_t n) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static uint32_t *prompt(uint32_t n, uint32_t seed) {
    uint32_t *t = malloc(((size_t)n + 1) * sizeof *t);
    cq_rng r;
    cq_rng_seed(&r, seed);
    for (uint32_t i = 0; i < n; i++) t[i] = 1 + cq_rng_below(&r, 30000);
    return t;
}

/* ------------------------------------------------------------ round trips */

/* A sequence of n tokens (published when pub) saved with or without its tokens, loaded into
 * a fresh pool and into its own pool: equal to the original and a full prefill, also after
 * more tokens. */
static void round_trip(const fmt *f, uint32_t G, uint32_t S, uint32_t n, int with_tokens,
                       int pub) {
    cq_rng r;
    cq_rng_seed(&r, n + G);
    const uint32_t more = G + 5;
    uint32_t *P = prompt(n + more, 1000 + n);
    cq_kvpool *pa = make_pool(f, G, S, 1ull << 30), *pb = make_pool(f, G, S, 1ull << 30);
    cq_seq *a = NULL, *b = NULL, *c = NULL;
    cq_seq_create(pa, &a, NULL);
    CHECK(prefill(a, NULL, P, 0, n) == CQ_OK, "prefill");
    if (pub) CHECK(cq_seq_publish(a, P, n, NULL) == CQ_OK, "publish");
    cq_err e;
    const char *path = path_of("seq.cqkv");
    CHECK(cq_kvpool_save_seq(a, with_tokens ? P : NULL, with_tokens ? n : 0, path, &e) == CQ_OK,
          "%s: save: %s", f->name, e.msg);
    cq_cache *full = make_ref(f, G, S);
    prefill(NULL, full, P, 0, n);
    CHECK(cq_kvpool_load_seq(pb, path, &b, &e) == CQ_OK && b, "%s G=%u S=%u n=%u: load: %s",
          f->name, G, S, n, e.msg);
    if (!b) goto out;
    CHECK(compare(b, full, &r) == 0, "%s G=%u S=%u n=%u tokens=%d pub=%d: restored sequence "
          "differs from a full prefill", f->name, G, S, n, with_tokens, pub);
    cq_kvpool_mem m;
    cq_kvpool_memory(pb, &m);
    const uint32_t F = S + G, nfull = n < F ? 0 : (n - S) / G;
    CHECK(m.prefix.cached_blocks == (with_tokens && pub ? nfull : 0),
          "%s n=%u: %u blocks re-published", f->name, n, m.prefix.cached_blocks);
    CHECK(pool_ok(pb), "%s: accounting after load", f->name);
    /* into its own pool: published blocks are shared with the original */
    CHECK(cq_kvpool_load_seq(pa, path, &c, &e) == CQ_OK && c, "load into the same pool: %s",
          e.msg);
    cq_seq_mem sm;
    cq_seq_memory(c, &sm);
    CHECK(sm.shared_blocks == (with_tokens && pub ? nfull : 0),
          "%s n=%u: the second copy shares %u blocks", f->name, n, sm.shared_blocks);
    CHECK(compare(c, full, &r) == 0, "%s: restored copy in the same pool", f->name);
    /* continued: more tokens to the restored sequences, the original and the reference */
    CHECK(prefill(b, NULL, P, n, n + more) == CQ_OK && prefill(c, NULL, P, n, n + more) == CQ_OK &&
              prefill(a, full, P, n, n + more) == CQ_OK,
          "append after load");
    CHECK(compare(b, full, &r) == 0 && compare(c, full, &r) == 0 && compare(a, full, &r) == 0,
          "%s G=%u S=%u n=%u: appending after a restore differs from the original continued",
          f->name, G, S, n);
    CHECK(pool_ok(pa) && pool_ok(pb), "%s: accounting after appends", f->name);
out:
    cq_seq_free(a);
    cq_seq_free(b);
    cq_seq_free(c);
    cq_cache_free(full);
    free(P);
    cq_kvpool_free(pa);
    cq_kvpool_free(pb);
}

/* Restored sequences of one prompt share their blocks again. */
static void test_share(const fmt *f) {
    const uint32_t G = 32, S = 2, n = S + 4 * G + 9, NSEQ = 4;
    uint32_t *P = prompt(n, 5);
    cq_kvpool *pa = make_pool(f, G, S, 1ull << 30), *pb = make_pool(f, G, S, 1ull << 30);
    cq_seq *a[4] = {0}, *b[4] = {0};
    cq_err e;
    for (uint32_t i = 0; i < NSEQ; i++) { /* each adopts, prefills its last part, publishes */
        uint32_t got = 0;
        cq_seq_create(pa, &a[i], NULL);
        cq_seq_adopt_prefix(a[i], P, n, &got, NULL);
        prefill(a[i], NULL, P, got, n);
        cq_seq_publish(a[i], P, n, NULL);
        char name[32];
        snprintf(name, sizeof name, "share%u.cqkv", i);
        CHECK(cq_kvpool_save_seq(a[i], P, n, path_of(name), &e) == CQ_OK, "save: %s", e.msg);
    }
    cq_kvpool_mem ma, mb;
    cq_kvpool_memory(pa, &ma);
    for (uint32_t i = 0; i < NSEQ; i++) {
        char name[32];
        snprintf(name, sizeof name, "share%u.cqkv", i);
        CHECK(cq_kvpool_load_seq(pb, path_of(name), &b[i], &e) == CQ_OK, "load: %s", e.msg);
    }
    cq_kvpool_memory(pb, &mb);
    CHECK(mb.prefix.live_blocks == ma.prefix.live_blocks && mb.referenced == ma.referenced &&
              mb.shared_saved == ma.shared_saved,
          "%s: restored: %u live blocks, %llu referenced, %llu saved (original %u, %llu, %llu)",
          f->name, mb.prefix.live_blocks, (unsigned long long)mb.referenced,
          (unsigned long long)mb.shared_saved, ma.prefix.live_blocks,
          (unsigned long long)ma.referenced, (unsigned long long)ma.shared_saved);
    cq_seq_mem sm;
    cq_seq_memory(b[NSEQ - 1], &sm);
    CHECK(sm.shared_blocks == 4 && sm.blocks == 5, "%s: %u of %u blocks shared", f->name,
          sm.shared_blocks, sm.blocks);
    cq_rng r;
    cq_rng_seed(&r, 1);
    cq_cache *full = make_ref(f, G, S);
    prefill(NULL, full, P, 0, n);
    for (uint32_t i = 0; i < NSEQ; i++)
        CHECK(compare(b[i], full, &r) == 0, "%s: restored sharer %u", f->name, i);
    CHECK(pool_ok(pb), "%s: accounting", f->name);
    for (uint32_t i = 0; i < NSEQ; i++) cq_seq_free(a[i]), cq_seq_free(b[i]);
    cq_cache_free(full);
    free(P);
    cq_kvpool_free(pa);
    cq_kvpool_free(pb);
}

/* The cached-blocks file: a warm start. */
static void test_cached(const fmt *f, uint32_t G, uint32_t S) {
    const uint32_t n = S + 3 * G + 4;
    uint32_t *P = prompt(n, 8), *Q = prompt(n, 8);
    for (uint32_t i = S + G + 1; i < n; i++) Q[i] ^= 0x100; /* a branch after block 0 */
    cq_kvpool *pa = make_pool(f, G, S, 1ull << 30), *pb = make_pool(f, G, S, 1ull << 30);
    cq_seq *a = NULL;
    cq_err e;
    for (int k = 0; k < 2; k++) {
        const uint32_t *T = k ? Q : P;
        uint32_t got = 0;
        cq_seq_create(pa, &a, NULL);
        cq_seq_adopt_prefix(a, T, n, &got, NULL);
        prefill(a, NULL, T, got, n);
        cq_seq_publish(a, T, n, NULL);
        cq_seq_free(a);
    }
    const char *path = path_of("cached.cqkv");
    CHECK(cq_kvpool_save_cached(pa, path, &e) == CQ_OK, "save cached: %s", e.msg);
    CHECK(cq_kvpool_load_cached(pb, path, &e) == CQ_OK, "%s: load cached: %s", f->name, e.msg);
    cq_kvpool_mem ma, mb, mb2;
    cq_kvpool_memory(pa, &ma);
    cq_kvpool_memory(pb, &mb);
    CHECK(mb.prefix.cached_blocks == 5 && ma.prefix.cached_blocks == 5 && mb.referenced == 0 &&
              mb.cached == ma.cached,
          "%s: %u cached blocks after the load", f->name, mb.prefix.cached_blocks);
    CHECK(cq_kvpool_load_cached(pb, path, &e) == CQ_OK, "load again: %s", e.msg);
    cq_kvpool_memory(pb, &mb2);
    CHECK(mb2.prefix.cached_blocks == 5 && mb2.prefix.commits == mb.prefix.commits &&
              cq_kvpool_allocated_bytes(pb) == mb.total,
          "%s: loading the same blocks again changes nothing", f->name);
    cq_rng r;
    cq_rng_seed(&r, 2);
    for (int k = 0; k < 2; k++) {
        const uint32_t *T = k ? Q : P;
        uint32_t got = 0;
        cq_seq *b = NULL;
        cq_seq_create(pb, &b, NULL);
        CHECK(cq_seq_adopt_prefix(b, T, n, &got, NULL) == CQ_OK && got == S + 3 * G,
              "%s: warm start adopted %u tokens", f->name, got);
        prefill(b, NULL, T, got, n);
        cq_cache *full = make_ref(f, G, S);
        prefill(NULL, full, T, 0, n);
        CHECK(compare(b, full, &r) == 0, "%s: warm-started sequence %d", f->name, k);
        cq_seq_free(b);
        cq_cache_free(full);
    }
    CHECK(pool_ok(pb), "%s: accounting", f->name);
    /* refusals of a cached-blocks file: a budget too small, bit flips, truncations */
    cq_kvpool *small = make_pool(f, G, S, 2 * cq_kvpool_block_bytes(pa) + cq_kvpool_sink_bytes(pa));
    snap s0, s1;
    snap_take(small, &s0);
    CHECK(cq_kvpool_load_cached(small, path, &e) == CQ_ERR_BUDGET, "%s: small pool: %s", f->name,
          e.msg);
    snap_take(small, &s1);
    CHECK(snap_equal(&s0, &s1), "%s: a refused cached load changed the pool", f->name);
    cq_kvpool_free(small);
    size_t len = 0;
    uint8_t *img = slurp(path, &len), *m = malloc(len);
    const char *bad_path = path_of("bad_cached.cqkv");
    int bad = 0;
    snap_take(pb, &s0);
    for (size_t bit = 0; bit < len * 8; bit += 1 + len * 8 / 300 - bit % 3) {
        memcpy(m, img, len);
        m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        spit(bad_path, m, len);
        bad += cq_kvpool_load_cached(pb, bad_path, NULL) == CQ_OK;
    }
    for (size_t t = 0; t < len; t += 1 + len / 50) {
        spit(bad_path, img, t);
        bad += cq_kvpool_load_cached(pb, bad_path, NULL) == CQ_OK;
    }
    snap_take(pb, &s1);
    CHECK(bad == 0 && snap_equal(&s0, &s1), "%s: %d corrupt cached-blocks files loaded", f->name,
          bad);
    free(img);
    free(m);
    free(P);
    free(Q);
    cq_kvpool_free(pa);
    cq_kvpool_free(pb);
}

/* ------------------------------------------------------------ refusals */

static void expect_refused(cq_kvpool *p, const char *path, cq_status want, const char *what,
                           int *bad) {
    snap s0, s1;
    snap_take(p, &s0);
    cq_seq *s = (cq_seq *)(uintptr_t)1;
    cq_err e;
    cq_status st = cq_kvpool_load_seq(p, path, &s, &e);
    snap_take(p, &s1);
    if (st == CQ_OK || s != NULL || (want != CQ_OK && st != want) || !snap_equal(&s0, &s1) ||
        e.code != st || !e.msg[0]) {
        if (*bad < 5)
            fprintf(stderr, "%s: %s (%s)\n", what, cq_status_name(st), st ? e.msg : "loaded");
        (*bad)++;
        if (st == CQ_OK) cq_seq_free(s);
    }
}

static void test_corrupt(const fmt *f, uint32_t G, uint32_t S) {
    const uint32_t n = S + 2 * G + G / 2 + 1;
    uint32_t *P = prompt(n, 77);
    cq_kvpool *pa = make_pool(f, G, S, 1ull << 30), *pb = make_pool(f, G, S, 1ull << 30);
    cq_seq *a = NULL, *keep = NULL;
    cq_seq_create(pa, &a, NULL);
    prefill(a, NULL, P, 0, n);
    cq_seq_publish(a, P, S + G, NULL);
    const char *path = path_of("good.cqkv"), *bad_path = path_of("bad.cqkv");
    cq_err e;
    CHECK(cq_kvpool_save_seq(a, P, n, path, &e) == CQ_OK, "save: %s", e.msg);
    /* the receiving pool holds something already */
    CHECK(cq_kvpool_load_seq(pb, path, &keep, &e) == CQ_OK, "first load: %s", e.msg);
    size_t len = 0;
    uint8_t *img = slurp(path, &len), *m = malloc(len);
    int bad = 0;
    /* every bit of the file header and the first section header, ~400 more spread over the
     * rest (each flip is one file written and loaded) */
    const size_t stride = len * 8 / 400 + 1;
    for (size_t bit = 0; bit < len * 8; bit += (bit < 8 * 64 ? 1 : stride - bit % 3)) {
        memcpy(m, img, len);
        m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        spit(bad_path, m, len);
        expect_refused(pb, bad_path, CQ_OK, "bit flip", &bad);
    }
    for (size_t t = 0; t < len; t += (t < 100 ? 1 : len / 100 + t % 7)) {
        spit(bad_path, img, t);
        expect_refused(pb, bad_path, CQ_OK, "truncation", &bad);
    }
    CHECK(bad == 0, "%s G=%u S=%u: %d corrupt files loaded or changed the pool", f->name, G, S,
          bad);
    /* versions: 4 (unknown), 3 read by cq_cache_load */
    memcpy(m, img, len);
    m[8] = 4;
    uint32_t crc = cq_crc32c(0, m, 36);
    for (int j = 0; j < 4; j++) m[36 + j] = (uint8_t)(crc >> (8 * j));
    spit(bad_path, m, len);
    bad = 0;
    expect_refused(pb, bad_path, CQ_ERR_VERSION, "version 4", &bad);
    CHECK(bad == 0, "version 4 refused");
    cq_cache *cc = NULL;
    CHECK(cq_cache_load(path, &cc, &e) == CQ_ERR_VERSION && !cc &&
              strstr(e.msg, "cq_kvpool_load_seq"),
          "cq_cache_load of version 3: %s", e.msg);
    /* another configuration, another model, a budget too small */
    cq_kvpool *others[3] = {make_pool(f, G, S + 1, 1ull << 30), make_pool_k(f, G, S, 1ull << 30, 99, NULL),
                            make_pool(&FMTS[f == &FMTS[0] ? 2 : 0], G, S, 1ull << 30)};
    for (int i = 0; i < 3; i++) {
        bad = 0;
        expect_refused(others[i], path, CQ_ERR_MISMATCH, "another configuration", &bad);
        CHECK(bad == 0, "%s: pool %d: another configuration refused", f->name, i);
        cq_kvpool_free(others[i]);
    }
    cq_kvpool *small = make_pool(f, G, S, cq_kvpool_block_bytes(pa) * 2);
    bad = 0;
    expect_refused(small, path, CQ_ERR_BUDGET, "budget", &bad);
    CHECK(bad == 0, "%s: a budget too small refused", f->name);
    cq_kvpool_free(small);
    /* a FIFO and a directory */
    const char *fifo = path_of("fifo");
    unlink(fifo);
    if (mkfifo(fifo, 0600) == 0) {
        bad = 0;
        expect_refused(pb, fifo, CQ_ERR_IO, "fifo", &bad);
        CHECK(bad == 0, "a FIFO refused");
        unlink(fifo);
    }
    bad = 0;
    expect_refused(pb, g_dir, CQ_ERR_IO, "directory", &bad);
    CHECK(bad == 0, "a directory refused");
    CHECK(cq_kvpool_save_seq(a, P, n, g_dir, &e) == CQ_ERR_IO, "saving over a directory: %s",
          e.msg);
    CHECK(cq_kvpool_save_seq(a, P, n + 1, path, &e) == CQ_ERR_RANGE, "more tokens than held");
    P[1] ^= 1;
    CHECK(cq_kvpool_save_seq(a, P, n, path, &e) == CQ_ERR_MISMATCH,
          "%s: tokens other than the published ones: %s", f->name, e.msg);
    P[1] ^= 1;
    /* a cached-blocks file is not a sequence and vice versa */
    CHECK(cq_kvpool_save_cached(pa, bad_path, &e) == CQ_OK, "save cached");
    bad = 0;
    expect_refused(pb, bad_path, CQ_ERR_FORMAT, "cached file as a sequence", &bad);
    CHECK(bad == 0, "a cached-blocks file is not a sequence");
    CHECK(cq_kvpool_load_cached(pb, path, &e) == CQ_ERR_FORMAT, "a sequence is not cached blocks");
    CHECK(pool_ok(pb), "%s: accounting", f->name);
    free(img);
    free(m);
    cq_seq_free(a);
    cq_seq_free(keep);
    free(P);
    cq_kvpool_free(pa);
    cq_kvpool_free(pb);
}

/* Saved on the scalar table, loaded on the automatic one: the same sequence. */
static void test_kernels(const fmt *f) {
    const uint32_t G = 128, S = 2, n = S + G + 40;
    uint32_t *P = prompt(n, 3);
    cq_kvpool *ps = make_pool_k(f, G, S, 1ull << 30, 7, "scalar");
    cq_kvpool *pv = make_pool_k(f, G, S, 1ull << 30, 7, NULL);
    cq_seq *a = NULL, *b = NULL;
    cq_seq_create(ps, &a, NULL);
    prefill(a, NULL, P, 0, n);
    cq_err e;
    CHECK(cq_kvpool_save_seq(a, P, n, path_of("k.cqkv"), &e) == CQ_OK, "save: %s", e.msg);
    CHECK(cq_kvpool_load_seq(pv, path_of("k.cqkv"), &b, &e) == CQ_OK, "load: %s", e.msg);
    cq_cache *full = make_ref(f, G, S);
    prefill(NULL, full, P, 0, n);
    cq_rng r;
    cq_rng_seed(&r, 4);
    CHECK(b && compare(b, full, &r) == 0, "%s: scalar-table file on the automatic table", f->name);
    CHECK(cq_kvpool_save_seq(b, P, n, path_of("k2.cqkv"), &e) == CQ_OK, "re-save");
    size_t l1 = 0, l2 = 0;
    uint8_t *x = slurp(path_of("k.cqkv"), &l1), *y = slurp(path_of("k2.cqkv"), &l2);
    CHECK(x && y && l1 == l2 && !memcmp(x, y, l1), "%s: the re-saved file differs", f->name);
    free(x);
    free(y);
    cq_seq_free(a);
    cq_seq_free(b);
    cq_cache_free(full);
    free(P);
    cq_kvpool_free(ps);
    cq_kvpool_free(pv);
}

/* A version 1 / 2 cache file (one cq_cache, any page size) loads as one private sequence. */
static void test_v12(const fmt *f, uint32_t G, uint32_t S, uint32_t page) {
    const uint32_t n = S + 2 * G + G / 3 + 1, more = G + 3;
    uint32_t *P = prompt(n + more, 31);
    cq_cache_config cfg = make_cfg(f, G, S, page);
    cq_cache *c = NULL;
    CHECK(cq_cache_create(&cfg, &c, NULL) == CQ_OK, "cache");
    prefill(NULL, c, P, 0, n);
    cq_err e;
    const char *path = path_of("v12.cqkv");
    CHECK(cq_cache_save(c, path, &e) == CQ_OK, "cq_cache_save: %s", e.msg);
    cq_kvpool *p = make_pool(f, G, S, 1ull << 30);
    cq_seq *s = NULL;
    CHECK(cq_kvpool_load_seq(p, path, &s, &e) == CQ_OK && s, "%s G=%u page=%u: version 1/2 file: %s",
          f->name, G, page, e.msg);
    cq_cache *full = make_ref(f, G, S);
    prefill(NULL, full, P, 0, n);
    cq_rng r;
    cq_rng_seed(&r, 6);
    if (s) {
        CHECK(compare(s, full, &r) == 0, "%s G=%u page=%u: a version 1/2 file as a sequence",
              f->name, G, page);
        prefill(s, full, P, n, n + more);
        CHECK(compare(s, full, &r) == 0, "%s: appending after a version 1/2 load", f->name);
    }
    CHECK(pool_ok(p), "%s: accounting", f->name);
    cq_seq_free(s);
    /* another configuration; a flushed cache with a partial group */
    int bad = 0;
    cq_kvpool *q = make_pool(f, G, S + 1, 1ull << 30);
    expect_refused(q, path, CQ_ERR_MISMATCH, "version 1/2 file, other sinks", &bad);
    cq_kvpool_free(q);
    CHECK(cq_cache_flush(c, NULL) == CQ_OK && cq_cache_save(c, path, NULL) == CQ_OK, "flush");
    const int partial = f->k == CQ_CODEC_CQ4 || f->k == CQ_CODEC_CQ4P;
    if (partial) expect_refused(p, path, CQ_ERR_UNSUPPORTED, "flushed partial group", &bad);
    CHECK(bad == 0, "%s: version 1/2 refusals", f->name);
    cq_cache_free(c);
    cq_cache_free(full);
    free(P);
    cq_kvpool_free(p);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/cq_serve_save_XXXXXX");
    if (!mkdtemp(g_dir)) {
        CHECK(0, "mkdtemp failed");
        return cq_test_done("test_serve_save");
    }
    for (size_t i = 0; i < NFMTS; i++) {
        const fmt *f = &FMTS[i];
        const uint32_t S = i % 2 ? 3 : 0;
        round_trip(f, 32, S, S + 2 * 32 + 13, 1, 1); /* mid-group, published */
        round_trip(f, 32, S, S + 3 * 32, 1, 1);      /* on a block border */
        round_trip(f, 32, S, S + 2 * 32 + 13, 0, 1); /* tokens unknown: private */
        round_trip(f, 32, S, S + 32 + 1, 1, 0);      /* not published */
        round_trip(f, 128, 3, 2, 1, 1);              /* inside the sinks */
        round_trip(f, 128, 3, 3 + 128 + 77, 1, 1);
        round_trip(f, 32, S, 0, 1, 1);               /* empty */
        test_share(f);
        test_cached(f, 32, S);
        test_kernels(f);
        test_v12(f, 32, S, 0);
        test_v12(f, 32, S, 64);
        test_v12(f, 128, S, 128);
    }
    test_corrupt(&FMTS[3], 32, 3);
    test_corrupt(&FMTS[4], 32, 0);
    test_corrupt(&FMTS[5], 32, 2);
    rmdir(g_dir);
    return cq_test_done("test_serve_save");
}
