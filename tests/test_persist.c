/* SPDX-License-Identifier: MIT */
/*
 * test_persist.c - saving and restoring a whole cache (cq_cache_save / load,
 * docs/CACHE_FILE.md): round trips of every fused format, the generic path,
 * sinks, partial and flushed groups, mixed layers and the empty cache, each
 * compared byte for byte, in memory accounting, and by continuing to append
 * and attend on both copies (bit for bit); exhaustive single-bit flips and
 * every truncation of a small file and random ones of a large file (each must
 * fail cleanly; ASan checks for leaks); crafted files with valid CRCs that
 * break one invariant each; atomic replacement under SIGKILL of the writer.
 */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/core/cq_le.h"
#include "cq_test.h"
#include "util/cache_testutil.h"

typedef struct spec {
    const char *name;
    uint32_t NL, H, D, G, S, page, T;
    cq_codec_id key, val;
    uint32_t force_generic, flush, mixed;
} spec;

/* CQ-3-rot refuses values whose rotation overflows fp16: no +-65504 for those caches */
static int specials_ok(const cq_cache_config *cfg) {
    for (uint32_t L = 0; L < cfg->n_layers; L++)
        if (cfg->layer_codecs[L].val == CQ_CODEC_CQ3ROT) return 0;
    return 1;
}

/* Build a cache of spec s with T random tokens per layer in random chunks. */
static cq_cache *build(const spec *s, uint64_t seed) {
    cq_rng r;
    cq_rng_seed(&r, seed);
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, s->NL, s->H, s->D);
    cfg.key_codec = s->key;
    cfg.val_codec = s->val;
    cfg.group = s->G;
    cfg.n_sinks = s->S;
    cfg.page_tokens = s->page;
    cfg.force_generic = s->force_generic;
    uint8_t *masks = malloc((size_t)s->NL * s->H * s->D);
    ctu_random_masks(&r, masks, s->NL * s->H, s->D, s->D >= 8 ? 2 : 1);
    cfg.outlier_masks = masks;
    cq_layer_codecs lc[4] = {{CQ_CODEC_CQ4P, CQ_CODEC_CQ8}, {CQ_CODEC_FP16, CQ_CODEC_CQ4},
                             {CQ_CODEC_CQ8, CQ_CODEC_FP16}, {CQ_CODEC_CQ4, CQ_CODEC_CQ3ROT}};
    if (s->mixed) cfg.layer_codecs = lc;
    cq_cache *c = NULL;
    cq_err e;
    if (cq_cache_create(&cfg, &c, &e)) {
        fprintf(stderr, "%s: create: %s\n", s->name, e.msg);
        free(masks);
        return NULL;
    }
    free(masks);
    size_t n = (size_t)s->T * s->H * s->D;
    uint16_t *K = malloc(n * 2 + 2), *V = malloc(n * 2 + 2);
    const int sp = specials_ok(cq_cache_get_config(c));
    for (uint32_t L = 0; L < s->NL; L++) {
        ctu_fill_f16(&r, K, n, 1.0f, sp);
        ctu_fill_f16(&r, V, n, 1.0f, sp);
        for (uint32_t t = 0; t < s->T;) {
            uint32_t m = 1 + cq_rng_below(&r, 40);
            if (m > s->T - t) m = s->T - t;
            size_t o = (size_t)t * s->H * s->D;
            if (cq_cache_append(c, L, K + o, V + o, m, &e)) {
                fprintf(stderr, "%s: append: %s\n", s->name, e.msg);
                cq_cache_free(c);
                c = NULL;
                goto out;
            }
            t += m;
        }
    }
    if (s->flush && cq_cache_flush(c, &e)) {
        fprintf(stderr, "%s: flush: %s\n", s->name, e.msg);
        cq_cache_free(c);
        c = NULL;
    }
out:
    free(K);
    free(V);
    return c;
}

static int same_memory(const cq_cache *a, const cq_cache *b) {
    for (int32_t L = -1; L < (int32_t)cq_cache_get_config(a)->n_layers; L++) {
        cq_cache_mem ma, mb;
        if (cq_cache_memory(a, L, &ma) || cq_cache_memory(b, L, &mb)) return 0;
        if (memcmp(&ma, &mb, sizeof ma) != 0 ||
            cq_cache_allocated_bytes(a, L) != cq_cache_allocated_bytes(b, L))
            return 0;
    }
    return 1;
}

/* attention of every layer on both caches, compared bit for bit (n_threads 1 and 3) */
static int same_attention(const cq_cache *a, const cq_cache *b, cq_rng *r) {
    const cq_cache_config *cfg = cq_cache_get_config(a);
    const uint32_t nq = cfg->n_kv_heads * 2, D = cfg->head_dim;
    float *q = malloc((size_t)nq * D * 4), *oa = malloc((size_t)nq * D * 4),
          *ob = malloc((size_t)nq * D * 4);
    int ok = 1;
    for (uint32_t L = 0; L < cfg->n_layers && ok; L++) {
        for (size_t i = 0; i < (size_t)nq * D; i++) q[i] = (float)cq_rng_normal(r);
        for (uint32_t th = 1; th <= 3 && ok; th += 2) {
            cq_attn_opts o = {.n_threads = th};
            cq_status sa = cq_cache_attend(a, L, q, nq, oa, &o, NULL);
            cq_status sb = cq_cache_attend(b, L, q, nq, ob, &o, NULL);
            ok = sa == sb && (sa || ctu_first_diff(oa, ob, (size_t)nq * D) < 0);
        }
    }
    free(q);
    free(oa);
    free(ob);
    return ok;
}

/* Append the same n random tokens to every layer of both caches. */
static int append_both(cq_cache *a, cq_cache *b, uint32_t n, cq_rng *r) {
    const cq_cache_config *cfg = cq_cache_get_config(a);
    size_t m = (size_t)n * cfg->n_kv_heads * cfg->head_dim;
    uint16_t *K = malloc(m * 2), *V = malloc(m * 2);
    int ok = 1;
    for (uint32_t L = 0; L < cfg->n_layers && ok; L++) {
        ctu_fill_f16(r, K, m, 1.0f, specials_ok(cfg));
        ctu_fill_f16(r, V, m, 1.0f, specials_ok(cfg));
        cq_status sa = cq_cache_append(a, L, K, V, n, NULL);
        cq_status sb = cq_cache_append(b, L, K, V, n, NULL);
        ok = sa == sb;
    }
    free(K);
    free(V);
    return ok;
}

static void round_trip(const spec *s) {
    cq_cache *a = build(s, 1000 + s->T);
    CHECK(a != NULL, "%s: build", s->name);
    if (!a) return;
    uint8_t *img = NULL;
    size_t len = 0;
    cq_err e;
    cq_status st = cq_cache_save_mem(a, &img, &len, &e);
    CHECK(st == CQ_OK, "%s: save_mem: %s", s->name, e.msg);
    cq_cache *b = NULL;
    st = cq_cache_load_mem(img, len, &b, &e);
    CHECK(st == CQ_OK && b, "%s: load_mem: %s", s->name, e.msg);
    if (!b) {
        free(img);
        cq_cache_free(a);
        return;
    }
    st = cq_cache_compare(a, b, &e);
    CHECK(st == CQ_OK, "%s: restored differs: %s", s->name, e.msg);
    CHECK(same_memory(a, b), "%s: memory accounting differs", s->name);
    /* saving the restored cache gives the same file, byte for byte */
    uint8_t *img2 = NULL;
    size_t len2 = 0;
    CHECK(cq_cache_save_mem(b, &img2, &len2, NULL) == CQ_OK && len2 == len &&
              memcmp(img, img2, len) == 0,
          "%s: re-saved image differs", s->name);
    free(img2);
    cq_rng r;
    cq_rng_seed(&r, 77 + s->T);
    CHECK(same_attention(a, b, &r), "%s: attention differs after restore", s->name);
    /* continue both: same appends (refused alike when flushed), same bytes and attention */
    for (int round = 0; round < 3; round++) {
        CHECK(append_both(a, b, 1 + cq_rng_below(&r, 2 * s->G), &r), "%s: append status", s->name);
        st = cq_cache_compare(a, b, &e);
        CHECK(st == CQ_OK, "%s: after append %d: %s", s->name, round, e.msg);
        CHECK(same_attention(a, b, &r), "%s: attention differs after append %d", s->name, round);
    }
    CHECK(same_memory(a, b), "%s: memory accounting differs after appends", s->name);
    if (!s->flush) {
        CHECK(cq_cache_flush(a, NULL) == CQ_OK && cq_cache_flush(b, NULL) == CQ_OK &&
                  cq_cache_compare(a, b, NULL) == CQ_OK && same_attention(a, b, &r),
              "%s: flush after restore", s->name);
    }
    /* the image into a cache with another kernel table (the layout follows from the shape,
     * docs/CACHE.md, "Compute layouts"): the same packed bytes, the same accounting, and the
     * same bytes after more appends to both */
    const char *other = strcmp(cq_cache_kernels(a), "scalar") ? "scalar" : "avx512";
    cq_cache_load_opts lo = {.kernels = other};
    cq_cache *x = NULL;
    uint8_t *img3 = NULL;
    size_t len3 = 0;
    if (cq_cache_save_mem(b, &img3, &len3, NULL) == CQ_OK &&
        cq_cache_load_mem_ex(img3, len3, &lo, &x, NULL) == CQ_OK) {
        CHECK(cq_cache_compare(b, x, &e) == CQ_OK && same_memory(b, x),
              "%s: loaded with %s kernels differs: %s", s->name, other, e.msg);
        CHECK(append_both(b, x, 1 + cq_rng_below(&r, 2 * s->G), &r) &&
                  cq_cache_compare(b, x, &e) == CQ_OK,
              "%s: %s-kernel copy differs after an append: %s", s->name, other, e.msg);
        cq_cache_free(x);
    } else {
        CHECK(strcmp(other, "avx512") == 0, "%s: load with %s kernels failed", s->name, other);
    }
    free(img3);
    free(img);
    cq_cache_free(a);
    cq_cache_free(b);
}

/* After cq_cache_reset the original keeps its pages as capacity; the file holds only
 * tokens, so the restored cache is identical in content and holds no more memory. */
static void after_reset(void) {
    spec s = {"reset", 2, 2, 32, 8, 1, 16, 200, CQ_CODEC_CQ4, CQ_CODEC_CQ8, 0, 0, 0};
    cq_cache *a = build(&s, 21), *b = NULL;
    if (!a) return;
    cq_cache_reset(a);
    cq_rng r;
    cq_rng_seed(&r, 5);
    uint16_t K[2 * 2 * 32 * 10];
    ctu_fill_f16(&r, K, sizeof K / 2, 1.0f, 1);
    CHECK(cq_cache_append(a, 1, K, K, 20, NULL) == CQ_OK, "append after reset");
    uint8_t *img = NULL;
    size_t len = 0;
    cq_err e;
    CHECK(cq_cache_save_mem(a, &img, &len, &e) == CQ_OK && cq_cache_load_mem(img, len, &b, &e) == CQ_OK,
          "reset: %s", e.msg);
    CHECK(b && cq_cache_compare(a, b, &e) == CQ_OK, "reset: restored differs: %s", e.msg);
    CHECK(b && cq_cache_allocated_bytes(b, -1) < cq_cache_allocated_bytes(a, -1),
          "reset: spare pages are not restored");
    cq_rng_seed(&r, 6);
    CHECK(b && append_both(a, b, 30, &r) && cq_cache_compare(a, b, NULL) == CQ_OK &&
              same_attention(a, b, &r),
          "reset: continues identically");
    free(img);
    cq_cache_free(a);
    cq_cache_free(b);
}

/* ------------------------------------------------- corruption of a saved file */

static int load_fails(const uint8_t *buf, size_t len, cq_status *st_out) {
    cq_cache *c = (cq_cache *)(uintptr_t)1; /* must be reset to NULL */
    cq_err e;
    cq_status st = cq_cache_load_mem(buf, len, &c, &e);
    if (st_out) *st_out = st;
    if (st == CQ_OK) {
        cq_cache_free(c);
        return 0;
    }
    return c == NULL && e.code == st && e.msg[0] != 0;
}

static void corruption(const spec *s, int exhaustive, uint32_t n_random) {
    cq_cache *a = build(s, 5);
    uint8_t *img = NULL;
    size_t len = 0;
    CHECK(a && cq_cache_save_mem(a, &img, &len, NULL) == CQ_OK, "%s: save", s->name);
    if (!img) {
        cq_cache_free(a);
        return;
    }
    cq_cache *b = NULL;
    CHECK(cq_cache_load_mem(img, len, &b, NULL) == CQ_OK, "%s: pristine image loads", s->name);
    cq_cache_free(b);
    uint8_t *m = malloc(len);
    size_t bad_flip = 0, bad_cut = 0, n_flip = 0, n_cut = 0;
    cq_rng r;
    cq_rng_seed(&r, 99);
    size_t nf = exhaustive ? len * 8 : n_random;
    for (size_t i = 0; i < nf; i++) {
        size_t bit = exhaustive ? i : (size_t)(cq_rng_u64(&r) % (len * 8));
        memcpy(m, img, len);
        m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        n_flip++;
        if (!load_fails(m, len, NULL)) {
            if (bad_flip++ < 5) fprintf(stderr, "%s: flip of bit %zu not detected\n", s->name, bit);
        }
    }
    size_t nc = exhaustive ? len : n_random;
    for (size_t i = 0; i < nc; i++) {
        size_t cut = exhaustive ? i : (size_t)(cq_rng_u64(&r) % len);
        n_cut++;
        if (!load_fails(img, cut, NULL)) {
            if (bad_cut++ < 5) fprintf(stderr, "%s: cut at %zu not detected\n", s->name, cut);
        }
    }
    /* also extended by one byte */
    uint8_t *ext = malloc(len + 1);
    memcpy(ext, img, len);
    ext[len] = 0;
    CHECK(load_fails(ext, len + 1, NULL), "%s: one trailing byte not detected", s->name);
    free(ext);
    CHECK(bad_flip == 0, "%s: %zu of %zu bit flips loaded (file %zu bytes)", s->name, bad_flip,
          n_flip, len);
    CHECK(bad_cut == 0, "%s: %zu of %zu truncations loaded", s->name, bad_cut, n_cut);
    printf("%s: %zu-byte file: %zu bit flips, %zu truncations, all rejected\n", s->name, len,
           n_flip, n_cut);
    free(m);
    free(img);
    cq_cache_free(a);
}

/* ---------------------------------------- crafted files (valid CRCs, bad content) */

/* offset of layer L's section payload */
static size_t layer_off(const uint8_t *b, uint32_t L) {
    size_t o = 40;
    for (uint32_t i = 0; i <= L; i++) o += 24 + (size_t)cq_get_u64le(b + o + 8);
    return o + 24;
}

static void crafted(void) {
    /* 1 layer, 1 head, D = 8, G = 4, CQ-4 keys / CQ-8 values, 2 sinks, 11 tokens, in flight */
    spec s = {"crafted", 1, 1, 8, 4, 2, 0, 11, CQ_CODEC_CQ4, CQ_CODEC_CQ8, 0, 0, 0};
    cq_cache *a = build(&s, 3);
    uint8_t *img = NULL;
    size_t len = 0;
    CHECK(a && cq_cache_save_mem(a, &img, &len, NULL) == CQ_OK, "crafted: save");
    if (!img) {
        cq_cache_free(a);
        return;
    }
    uint8_t *m = malloc(len);
    cq_status st;
    const size_t conf = 40 + 24, lay = layer_off(img, 0);
    /* layout of the layer: layer, tokens, sinks K [2][8], V [2][8], key store hdr ... */
    const size_t khdr = lay + 8 + 2 * 2 * 8 * 2;
    struct {
        const char *what;
        size_t off;
        uint32_t val;
        cq_status want;
    } cases[] = {
        {"version 3 (newer than this library)", 8, 3, CQ_ERR_VERSION},
        {"version 0", 8, 0, CQ_ERR_VERSION},
        {"flags", 28, 1, CQ_ERR_FORMAT},
        {"n_sections", 24, 3, CQ_ERR_FORMAT},
        {"D odd", conf + 8, 7, CQ_ERR_DIM},
        {"D above limit", conf + 8, 1024, CQ_ERR_DIM},
        {"G = 0", conf + 12, 0, CQ_ERR_GROUP},
        {"n_layers 0", conf + 0, 0, CQ_ERR_SHAPE},
        {"sealed = 2", conf + 40, 2, CQ_ERR_FORMAT},
        {"unknown codec", conf + 48, 999, CQ_ERR_TIER},
        {"CQ-4+ keys without masks", conf + 48, CQ_CODEC_CQ4P, CQ_ERR_FORMAT},
        {"layer index", lay, 1, CQ_ERR_FORMAT},
        {"tokens + 1", lay + 4, 12, CQ_ERR_FORMAT},
        {"tokens huge", lay + 4, 0xFFFFFFFFu, CQ_ERR_RANGE},
        {"store kind", khdr, 4, CQ_ERR_FORMAT},
        {"committed + 4", khdr + 4, 8 + 4, CQ_ERR_FORMAT},
        {"in flight = unit", khdr + 8, 4, CQ_ERR_FORMAT},
        {"partial unit unsealed", khdr + 12, 1, CQ_ERR_FORMAT},
        {"data size", khdr + 16, 5, CQ_ERR_FORMAT},
        {"NaN sink", lay + 8, 0x7E00, CQ_ERR_FORMAT},
        {"zero key scale", khdr + 24 + 32, 0, CQ_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(m, img, len);
        cq_put_u32le(m + cases[i].off, cases[i].val);
        ctu_file_recrc(m, len);
        CHECK(load_fails(m, len, &st) && st == cases[i].want, "crafted '%s': got %s, want %s",
              cases[i].what, cq_status_name(st), cq_status_name(cases[i].want));
    }
    /* 4096 kv heads x 2^20 sinks: refused by the memory bound before anything is created */
    memcpy(m, img, len);
    cq_put_u32le(m + conf + 4, 4096);
    cq_put_u32le(m + conf + 16, 1u << 20);
    ctu_file_recrc(m, len);
    CHECK(load_fails(m, len, &st) && st == CQ_ERR_RANGE, "memory bound: %s", cq_status_name(st));
    /* magic */
    memcpy(m, img, len);
    m[0] ^= 0x20;
    CHECK(load_fails(m, len, &st) && st == CQ_ERR_FORMAT, "magic: %s", cq_status_name(st));
    /* a payload byte without CRC fix-up: checksum */
    memcpy(m, img, len);
    m[len - 1] ^= 1;
    CHECK(load_fails(m, len, &st) && st == CQ_ERR_CHECKSUM, "payload CRC: %s", cq_status_name(st));
    /* the error names the check */
    cq_err e;
    cq_cache *c = NULL;
    cq_cache_load_mem(m, len, &c, &e);
    CHECK(strstr(e.msg, "CRC") != NULL, "message names the CRC: %s", e.msg);
    /* a small explicit memory limit is honoured */
    cq_cache_load_opts o = {4096, NULL};
    CHECK(cq_cache_load_mem_ex(img, len, &o, &c, &e) == CQ_ERR_RANGE && c == NULL,
          "max_bytes limit: %s", e.msg);
    o.max_bytes = 0;
    o.kernels = "scalar";
    CHECK(cq_cache_load_mem_ex(img, len, &o, &c, &e) == CQ_OK && c &&
              strcmp(cq_cache_kernels(c), "scalar") == 0 && cq_cache_compare(a, c, NULL) == CQ_OK,
          "load with scalar kernels: %s", e.msg);
    cq_cache_free(c);
    free(m);
    free(img);
    cq_cache_free(a);
}

/* ---------------------------------------------------------------- files */

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

static void files(const char *dir) {
    spec s = {"file", 2, 2, 16, 8, 1, 16, 37, CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 0, 0, 0};
    char path[400], bad[400];
    snprintf(path, sizeof path, "%s/c.cqkv", dir);
    snprintf(bad, sizeof bad, "%s/no/such/dir/c.cqkv", dir);
    cq_cache *a = build(&s, 8), *b = NULL;
    cq_err e;
    CHECK(cq_cache_save(a, path, &e) == CQ_OK, "save: %s", e.msg);
    CHECK(count_files(dir) == 1, "no temporary file left behind");
    CHECK(cq_cache_load(path, &b, &e) == CQ_OK && cq_cache_compare(a, b, NULL) == CQ_OK &&
              same_memory(a, b),
          "load: %s", e.msg);
    /* the file carries the configuration: it differs from any default */
    const cq_cache_config *ca = cq_cache_get_config(a), *cb = b ? cq_cache_get_config(b) : NULL;
    CHECK(cb && cb->head_dim == 16 && cb->group == 8 && cb->n_sinks == 1 && cb->page_tokens == 16 &&
              cb->layer_codecs[1].key == CQ_CODEC_CQ4P &&
              memcmp(ca->outlier_masks, cb->outlier_masks, 2 * 2 * 16) == 0,
          "configuration restored");
    cq_cache_free(b);
    b = NULL;
    CHECK(cq_cache_save(a, bad, &e) == CQ_ERR_IO, "save into a missing directory: %s", e.msg);
    CHECK(cq_cache_load(bad, &b, &e) == CQ_ERR_IO && !b, "load of a missing file: %s", e.msg);
    CHECK(cq_cache_load(dir, &b, &e) == CQ_ERR_IO && !b, "load of a directory: %s", e.msg);
    CHECK(cq_cache_save(NULL, path, &e) == CQ_ERR_NULL, "save NULL cache");
    CHECK(cq_cache_load(NULL, &b, &e) == CQ_ERR_NULL, "load NULL path");
    cq_cache_free(a);
    unlink(path);
}

/* A child saves A, B, A, B ... onto one path; SIGKILL it at random times: the file
 * must always load as exactly A or B. */
static void kill_during_save(const char *dir, int iters) {
    spec s = {"kill", 2, 4, 64, 32, 0, 0, 600, CQ_CODEC_CQ4, CQ_CODEC_CQ8, 0, 0, 0};
    cq_cache *A = build(&s, 11), *B = build(&s, 12);
    char path[400];
    snprintf(path, sizeof path, "%s/k.cqkv", dir);
    CHECK(A && B && cq_cache_compare(A, B, NULL) == CQ_ERR_MISMATCH, "kill: two distinct caches");
    CHECK(cq_cache_save(A, path, NULL) == CQ_OK, "kill: initial save");
    cq_rng r;
    cq_rng_seed(&r, (uint64_t)time(NULL));
    int bad = 0, na = 0, nb = 0;
    for (int it = 0; it < iters; it++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            for (uint32_t k = 0;; k++) cq_cache_save(k & 1 ? A : B, path, NULL);
            _exit(0);
        }
        if (pid < 0) {
            CHECK(0, "fork failed");
            break;
        }
        struct timespec ts = {0, (long)cq_rng_below(&r, 15000) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cq_cache *c = NULL;
        cq_err e;
        if (cq_cache_load(path, &c, &e) != CQ_OK) {
            if (bad++ < 3) fprintf(stderr, "kill %d: %s\n", it, e.msg);
        } else if (cq_cache_compare(c, A, NULL) == CQ_OK) na++;
        else if (cq_cache_compare(c, B, NULL) == CQ_OK) nb++;
        else bad++;
        cq_cache_free(c);
    }
    CHECK(bad == 0, "kill: %d of %d files were neither state", bad, iters);
    printf("kill-during-save: %d kills, file was A %d times, B %d times\n", iters, na, nb);
    cq_cache_free(A);
    cq_cache_free(B);
    rm_dir(dir); /* also removes the killed writers' temporary files */
}

int main(void) {
    const spec specs[] = {
        /* name NL H D G S page T key val generic flush mixed */
        {"fp16/fp16", 2, 2, 16, 8, 0, 0, 45, CQ_CODEC_FP16, CQ_CODEC_FP16, 0, 0, 0},
        {"cq8/cq8", 2, 2, 32, 16, 0, 16, 70, CQ_CODEC_CQ8, CQ_CODEC_CQ8, 0, 0, 0},
        {"cq4/cq4 partial", 2, 3, 32, 16, 0, 32, 77, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 0, 0, 0},
        {"cq4+/cq4", 2, 2, 64, 32, 0, 64, 100, CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 0, 0, 0},
        {"cq4+/cq8 flushed", 1, 2, 64, 32, 0, 0, 90, CQ_CODEC_CQ4P, CQ_CODEC_CQ8, 0, 1, 0},
        {"cq4 sinks", 2, 2, 32, 8, 5, 16, 61, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 0, 0, 0},
        /* key tiles and value blocks, partial last group flushed, sinks */
        {"cq4/cq4 tiles flushed", 2, 2, 128, 64, 3, 128, 150, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 0, 1, 0},
        {"sinks only", 1, 2, 16, 8, 9, 0, 4, CQ_CODEC_CQ4, CQ_CODEC_CQ8, 0, 0, 0},
        {"generic cq4", 2, 2, 32, 16, 2, 32, 75, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 1, 0, 0},
        {"generic cq4+ flushed", 1, 2, 32, 16, 0, 0, 41, CQ_CODEC_CQ4P, CQ_CODEC_CQ8, 1, 1, 0},
        {"generic cq3rot values", 1, 2, 64, 16, 0, 0, 50, CQ_CODEC_CQ8, CQ_CODEC_CQ3ROT, 0, 0, 0},
        {"mixed layers", 4, 2, 32, 8, 3, 8, 53, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 0, 0, 1},
        {"kivi-4 (units of R, sliding value window)", 2, 2, 32, 8, 0, 64, 300, CQ_CODEC_KIVI4,
         CQ_CODEC_KIVI4, 0, 0, 0},
        {"kivi-2 flushed", 1, 2, 64, 8, 3, 0, 200, CQ_CODEC_KIVI2, CQ_CODEC_KIVI2, 0, 1, 0},
        {"q4_0/q8_0", 1, 2, 128, 8, 0, 0, 37, CQ_CODEC_Q4_0, CQ_CODEC_Q8_0, 0, 0, 0},
        /* row layout (format version 2): 32-channel blocks over 4 heads of 8 */
        {"q4_0/q8_0 rows", 2, 4, 8, 8, 2, 16, 40, CQ_CODEC_Q4_0, CQ_CODEC_Q8_0, 0, 0, 0},
        {"kivi-4 rows (value window across heads)", 1, 4, 8, 8, 0, 64, 200, CQ_CODEC_KIVI4,
         CQ_CODEC_KIVI4, 0, 0, 0},
        {"kivi-2 rows flushed", 1, 2, 16, 8, 1, 0, 150, CQ_CODEC_KIVI2, CQ_CODEC_KIVI2, 0, 1, 0},
        {"empty", 2, 2, 16, 8, 2, 0, 0, CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 0, 0, 0},
        {"empty flushed", 1, 1, 16, 8, 0, 0, 0, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) round_trip(&specs[i]);
    after_reset();

    /* exhaustive on a small file: 1 layer, 1 head, D = 8, sinks, a partial group */
    spec small = {"small", 1, 1, 8, 4, 1, 0, 7, CQ_CODEC_CQ4P, CQ_CODEC_CQ8, 0, 0, 0};
    corruption(&small, 1, 0);
    spec small2 = {"small generic flushed", 1, 1, 8, 4, 0, 0, 6, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 1, 1, 0};
    corruption(&small2, 1, 0);
    spec small3 = {"small rows", 1, 2, 16, 4, 1, 0, 5, CQ_CODEC_Q4_0, CQ_CODEC_CQ8, 0, 0, 0};
    corruption(&small3, 1, 0);
    /* random on a large one */
    spec large = {"large", 3, 4, 128, 64, 4, 0, 300, CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 0, 0, 0};
    corruption(&large, 0, 300);
    crafted();

    char dir[] = "/tmp/cq_persist_XXXXXX";
    if (mkdtemp(dir)) {
        files(dir);
        kill_during_save(dir, 40);
    } else {
        CHECK(0, "mkdtemp failed");
    }
    return cq_test_done("test_persist");
}
