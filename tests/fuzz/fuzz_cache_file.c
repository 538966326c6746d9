/* SPDX-License-Identifier: MIT */
/*
 * fuzz_cache_file.c - libFuzzer target for the cache-file loader
 * (cq_cache_load_mem, docs/CACHE_FILE.md). Every input must either be
 * rejected cleanly (no leak, *out NULL) or load into a cache that reads,
 * attends, saves and re-loads to the identical cache; in an ordinary build
 * (CRCs checked) the re-saved image must also equal the input byte for byte.
 * The input also picks (fuzz_selector) the kernel table the cache is loaded
 * on, hence its compute layouts, and the attention threads and precision; a
 * load on a SIMD table must save the same image as a load on the scalar
 * table, and an attention that returns CQ_OK must return finite values.
 *
 * Run: `make fuzz FUZZ_TARGETS=fuzz_cache_file` (the library is built with
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which makes the loader ignore CRC
 * mismatches so that mutations reach the parser behind them).
 * tests/cli/fuzz_corpus.sh replays the corpus through the standalone build in `make test`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "cq_cache.h"
#include "fuzz.h"

/* Non-zero (and aborts under the fuzzer) when a loaded cache misbehaves. */
static int cache_fail(const char *what) {
    fprintf(stderr, "fuzz_cache_file: %s\n", what);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    abort();
#else
    return 1;
#endif
}

/* Exercise a loaded cache: read and attend everything, save, re-load, compare. */
static int exercise(const cq_cache *c, const uint8_t *data, size_t size, uint32_t sel) {
    const cq_cache_config *cfg = cq_cache_get_config(c);
    const uint32_t D = cfg->head_dim, H = cfg->n_kv_heads;
    float *q = calloc((size_t)H * D, sizeof *q), *o = calloc((size_t)H * D, sizeof *o);
    float *row = malloc((size_t)2 * D * sizeof *row);
    int bad = !q || !o || !row;
    for (uint32_t i = 0; !bad && i < H * D; i++) q[i] = (float)((i * 37u) % 11u) * 0.125f - 0.5f;
    for (uint32_t L = 0; !bad && L < cfg->n_layers && L < 8; L++) {
        uint32_t T = cq_cache_tokens(c, L);
        for (uint32_t h = 0; h < H && h < 4; h++)
            for (uint32_t t = 0; t < T && t < 64; t++)
                if (cq_cache_read(c, L, h, t, t + 1, row, row + D, NULL) != CQ_OK)
                    bad = cache_fail("read");
        cq_attn_opts ao = {.n_threads = 1 + (sel >> 4) % 2, .precision = 1 + (sel >> 5) % 2};
        if (T && T < 4096) {
            cq_status st = cq_cache_attend(c, L, q, H, o, &ao, NULL);
            /* CQ_ERR_OVERFLOW: scores past fp32 (extreme fp16 keys); anything else is a bug */
            if (st != CQ_OK && st != CQ_ERR_OVERFLOW) bad = cache_fail("attend");
            for (uint32_t i = 0; !st && i < H * D; i++)
                if (!isfinite(o[i])) bad = cache_fail("attend CQ_OK with a non-finite output");
        }
    }
    uint8_t *img = NULL, *img2 = NULL;
    size_t len = 0, len2 = 0;
    cq_cache *d = NULL;
    if (!bad && cq_cache_save_mem(c, &img, &len, NULL) != CQ_OK) bad = cache_fail("save");
    if (!bad && cq_cache_load_mem(img, len, &d, NULL) != CQ_OK) bad = cache_fail("re-load");
    if (!bad && cq_cache_compare(c, d, NULL) != CQ_OK) bad = cache_fail("re-loaded cache differs");
    if (!bad && (cq_cache_save_mem(d, &img2, &len2, NULL) != CQ_OK || len2 != len ||
                 memcmp(img, img2, len) != 0))
        bad = cache_fail("re-save differs");
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    if (!bad && (len != size || memcmp(img, data, size) != 0)) bad = cache_fail("not canonical");
#else
    (void)data;
    (void)size;
#endif
    cq_cache_free(d);
    free(img);
    free(img2);
    free(q);
    free(o);
    free(row);
    return bad;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cq_cache *c = (cq_cache *)(uintptr_t)1;
    cq_err e;
    /* a modest bound keeps the fuzzer within its RSS limit */
    const uint32_t sel = fuzz_selector(data, size);
    cq_cache_load_opts opts = {64u << 20, fuzz_pick_kernels(sel)};
    cq_status st = cq_cache_load_mem_ex(data, size, &opts, &c, &e);
    if (st != CQ_OK) {
        if (c != NULL || e.code != st || !e.msg[0]) return cache_fail("failed load left state");
        return 0;
    }
    int bad = exercise(c, data, size, sel);
    if (!bad && strcmp(opts.kernels, "scalar") != 0) { /* the same image on the scalar table */
        cq_cache_load_opts so = {64u << 20, "scalar"};
        cq_cache *s = NULL;
        uint8_t *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (cq_cache_load_mem_ex(data, size, &so, &s, NULL) != CQ_OK)
            bad = cache_fail("loads on a SIMD table, not on the scalar one");
        else if (cq_cache_save_mem(c, &a, &la, NULL) || cq_cache_save_mem(s, &b, &lb, NULL) ||
                 la != lb || memcmp(a, b, la) != 0)
            bad = cache_fail("the SIMD-table and scalar-table caches save different images");
        free(a);
        free(b);
        cq_cache_free(s);
    }
    cq_cache_free(c);
    return bad;
}
