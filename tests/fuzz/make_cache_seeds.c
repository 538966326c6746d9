/* SPDX-License-Identifier: MIT */
/*
 * make_cache_seeds.c - writes the seed corpus of fuzz_cache_file.c: small
 * valid cache files covering every storage kind (fp16, INT8, INT4 values,
 * CQ-4 / CQ-4+ key groups, the generic codec path), sinks, in-flight and
 * flushed partial groups, mixed layers, an empty cache and row-layout stores
 * (format version 2). Not part of the
 * test suite; rebuild the corpus with (from the repo root, after `make`):
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude tests/fuzz/make_cache_seeds.c \
 *     build/libchannelquant.a -lm -pthread -o build/make_cache_seeds
 *   build/make_cache_seeds tests/fuzz/corpus/fuzz_cache_file
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channelquant.h"
#include "cq_cache.h"

static int seed(const char *dir, const char *name, uint32_t NL, uint32_t H, uint32_t D, uint32_t G,
                uint32_t S, uint32_t T, cq_codec_id key, cq_codec_id val, uint32_t generic,
                int flush, const cq_layer_codecs *lc) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, NL, H, D);
    cfg.key_codec = key;
    cfg.val_codec = val;
    cfg.group = G;
    cfg.n_sinks = S;
    cfg.page_tokens = 2 * G;
    cfg.force_generic = generic;
    cfg.layer_codecs = lc;
    uint8_t *masks = calloc((size_t)NL * H * D, 1);
    for (size_t i = 0; i < (size_t)NL * H; i++) masks[i * D + (i % D)] = 1;
    cfg.outlier_masks = masks;
    cq_cache *c = NULL;
    cq_err e;
    int rc = 1;
    if (cq_cache_create(&cfg, &c, &e)) goto out;
    cq_rng r;
    cq_rng_seed(&r, T * 31u + D);
    size_t n = (size_t)T * H * D;
    uint16_t *K = malloc(n * 2 + 2), *V = malloc(n * 2 + 2);
    for (size_t i = 0; i < n; i++) {
        K[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
        V[i] = cq_f32_to_f16((float)cq_rng_normal(&r) * 0.5f);
    }
    for (uint32_t L = 0; L < NL; L++)
        if (cq_cache_append(c, L, K, V, T, &e)) goto out2;
    if (flush && cq_cache_flush(c, &e)) goto out2;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    rc = cq_cache_save(c, path, &e) != CQ_OK;
out2:
    free(K);
    free(V);
out:
    if (rc) fprintf(stderr, "%s: %s\n", name, e.msg);
    cq_cache_free(c);
    free(masks);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_cache_seeds DIR\n");
        return 2;
    }
    const char *d = argv[1];
    const cq_layer_codecs mixed[3] = {{CQ_CODEC_FP16, CQ_CODEC_CQ8},
                                      {CQ_CODEC_CQ4P, CQ_CODEC_CQ4},
                                      {CQ_CODEC_CQ8, CQ_CODEC_CQ3ROT}};
    int rc = 0;
    rc |= seed(d, "seed_fp16", 1, 1, 8, 4, 0, 5, CQ_CODEC_FP16, CQ_CODEC_FP16, 0, 0, NULL);
    rc |= seed(d, "seed_cq8_sinks", 1, 2, 8, 4, 2, 7, CQ_CODEC_CQ8, CQ_CODEC_CQ8, 0, 0, NULL);
    rc |= seed(d, "seed_cq4_inflight", 1, 1, 16, 4, 1, 11, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 0, 0, NULL);
    rc |= seed(d, "seed_cq4p_flushed", 2, 1, 8, 4, 0, 6, CQ_CODEC_CQ4P, CQ_CODEC_CQ8, 0, 1, NULL);
    rc |= seed(d, "seed_generic", 1, 1, 8, 4, 0, 10, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 1, 0, NULL);
    rc |= seed(d, "seed_generic_flushed", 1, 1, 8, 4, 1, 7, CQ_CODEC_CQ4P, CQ_CODEC_CQ8, 1, 1, NULL);
    rc |= seed(d, "seed_mixed", 3, 1, 16, 4, 1, 9, CQ_CODEC_CQ4, CQ_CODEC_CQ4, 0, 0, mixed);
    rc |= seed(d, "seed_empty", 1, 1, 8, 4, 2, 0, CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 0, 0, NULL);
    /* format version 2: row-layout stores (q4_0 over 4 heads x 8; KIVI-4 values with a window) */
    rc |= seed(d, "seed_rows_q4_0", 1, 4, 8, 4, 1, 6, CQ_CODEC_Q4_0, CQ_CODEC_Q8_0, 0, 0, NULL);
    rc |= seed(d, "seed_rows_kivi4", 1, 2, 16, 4, 0, 9, CQ_CODEC_KIVI4, CQ_CODEC_KIVI4, 0, 0, NULL);
    return rc;
}
