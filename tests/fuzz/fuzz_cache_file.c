/* SPDX-License-Identifier: MIT */
/*
 * fuzz_cache_file.c - libFuzzer target for the cache-file loader
 * (cq_cache_load_mem, docs/CACHE_FILE.md). Every input must either be
 * rejected cleanly (no leak, *out NULL) or load into a cache that reads,
 * attends, saves and re-loads to the identical cache; in an ordinary build
 * (CRCs checked) the re-saved image must also equal the input byte for byte.
 *
 * Build (from the repo root; FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION makes
 * the loader ignore CRC mismatches so mutations reach the parser behind them):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DCQ_NO_SIMD \
 *     -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -std=c11 -D_DEFAULT_SOURCE \
 *     -Iinclude tests/fuzz/fuzz_cache_file.c $(find src -name '*.c' ! -name '*_avx2.c') \
 *     -lm -pthread -o build/fuzz_cache_file
 *   build/fuzz_cache_file -max_len=65536 tests/fuzz/corpus/fuzz_cache_file
 * tests/cli/fuzz_corpus.sh replays the corpus through the standalone build in `make test`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Non-zero (and aborts under the fuzzer) when a loaded cache misbehaves. */
static int fuzz_fail(const char *what) {
    fprintf(stderr, "fuzz_cache_file: %s\n", what);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    abort();
#else
    return 1;
#endif
}

/* Exercise a loaded cache: read and attend everything, save, re-load, compare. */
static int exercise(const cq_cache *c, const uint8_t *data, size_t size) {
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
                    bad = fuzz_fail("read");
        if (T && T < 4096 && cq_cache_attend(c, L, q, H, o, NULL, NULL) != CQ_OK)
            bad = fuzz_fail("attend");
    }
    uint8_t *img = NULL, *img2 = NULL;
    size_t len = 0, len2 = 0;
    cq_cache *d = NULL;
    if (!bad && cq_cache_save_mem(c, &img, &len, NULL) != CQ_OK) bad = fuzz_fail("save");
    if (!bad && cq_cache_load_mem(img, len, &d, NULL) != CQ_OK) bad = fuzz_fail("re-load");
    if (!bad && cq_cache_compare(c, d, NULL) != CQ_OK) bad = fuzz_fail("re-loaded cache differs");
    if (!bad && (cq_cache_save_mem(d, &img2, &len2, NULL) != CQ_OK || len2 != len ||
                 memcmp(img, img2, len) != 0))
        bad = fuzz_fail("re-save differs");
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    if (!bad && (len != size || memcmp(img, data, size) != 0)) bad = fuzz_fail("not canonical");
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
    cq_cache_load_opts opts = {64u << 20, NULL};
    cq_status st = cq_cache_load_mem_ex(data, size, &opts, &c, &e);
    if (st != CQ_OK) {
        if (c != NULL || e.code != st || !e.msg[0]) return fuzz_fail("failed load left state");
        return 0;
    }
    int bad = exercise(c, data, size);
    cq_cache_free(c);
    return bad;
}
