/* SPDX-License-Identifier: MIT */
/*
 * make_seq_seeds.c - writes the seed corpus of fuzz_seq_file.c: per pool of wire_pools.h
 * sequence files (published and saved with token ids, mid-group; without token ids; on a
 * block border; inside the sinks; empty), the pool's cached-blocks file, and a version 1/2
 * cache file of the same configuration. Not part of the test suite; rebuild the corpus with
 * (from the repo root, after `make`):
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude -Itests/fuzz tests/fuzz/make_seq_seeds.c \
 *     build/libchannelquant.a -lm -pthread -o build/make_seq_seeds
 *   build/make_seq_seeds tests/fuzz/corpus/fuzz_seq_file
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire_pools.h"

/* A sequence of pool i holding the first n tokens of its prompt (K/V as wp_make's). */
static int seq_seed(cq_kvpool *p, int i, uint32_t n, int tokens, int publish, const char *path) {
    const wp_spec *s = &WP_SPECS[i];
    const uint32_t w = s->H * s->D;
    uint32_t *tok = malloc(((size_t)n + 1) * sizeof *tok);
    uint16_t *k = malloc((size_t)n * w * 2 + 2), *v = malloc((size_t)n * w * 2 + 2);
    cq_seq *q = NULL;
    int bad = cq_seq_create(p, &q, NULL) != CQ_OK;
    for (uint32_t t = 0; t < n; t++) tok[t] = wp_token(i, t) + 1;
    for (uint32_t L = 0; !bad && L < s->NL && n; L++) {
        cq_rng r;
        cq_rng_seed(&r, 77u * L + n);
        for (size_t x = 0; x < (size_t)n * w; x++) {
            k[x] = cq_f32_to_f16((float)cq_rng_normal(&r));
            v[x] = cq_f32_to_f16((float)cq_rng_normal(&r));
        }
        bad = cq_seq_append(q, L, k, v, n, NULL) != CQ_OK;
    }
    if (!bad && publish) bad = cq_seq_publish(q, tok, n, NULL) != CQ_OK;
    cq_err e;
    if (!bad && cq_kvpool_save_seq(q, tokens ? tok : NULL, tokens ? n : 0, path, &e)) {
        fprintf(stderr, "%s: %s\n", path, e.msg);
        bad = 1;
    }
    cq_seq_free(q);
    free(tok);
    free(k);
    free(v);
    return bad;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seq_seeds DIR\n");
        return 2;
    }
    int rc = 0;
    char path[512];
    for (int i = 0; i < WP_POOLS; i++) {
        const wp_spec *s = &WP_SPECS[i];
        cq_kvpool *p = wp_make(i, "scalar");
        if (!p) return 1;
        const uint32_t mid = s->S + 2 * s->G + s->G / 2 + 1, border = s->S + 2 * s->G;
        snprintf(path, sizeof path, "%s/seed_p%d_published", argv[1], i);
        rc |= seq_seed(p, i, mid, 1, 1, path);
        snprintf(path, sizeof path, "%s/seed_p%d_private", argv[1], i);
        rc |= seq_seed(p, i, mid, 0, 0, path);
        snprintf(path, sizeof path, "%s/seed_p%d_border", argv[1], i);
        rc |= seq_seed(p, i, border, 1, 0, path);
        snprintf(path, sizeof path, "%s/seed_p%d_sinks", argv[1], i);
        rc |= seq_seed(p, i, s->S ? s->S - 1 : 1, 1, 0, path);
        snprintf(path, sizeof path, "%s/seed_p%d_empty", argv[1], i);
        rc |= seq_seed(p, i, 0, 1, 0, path);
        snprintf(path, sizeof path, "%s/seed_p%d_cached", argv[1], i);
        rc |= cq_kvpool_save_cached(p, path, NULL) != CQ_OK;
        /* a version 1 / 2 cache of the same configuration */
        cq_cache_config cc;
        cq_cache_config_default(&cc, s->NL, s->H, s->D);
        cc.key_codec = s->k;
        cc.val_codec = s->v;
        cc.group = s->G;
        cc.n_sinks = s->S;
        cc.layer_codecs = s->layers;
        uint8_t masks[64 * 16] = {0};
        if (s->masks) {
            for (uint32_t x = 0; x < s->NL * s->H; x++) masks[x * s->D + (x % s->D)] = 1;
            cc.outlier_masks = masks;
        }
        cq_cache *c = NULL;
        rc |= cq_cache_create(&cc, &c, NULL) != CQ_OK;
        const uint32_t n = mid, w = s->H * s->D;
        uint16_t *kv = calloc((size_t)n * w, 2);
        for (size_t x = 0; x < (size_t)n * w; x++) kv[x] = cq_f32_to_f16((float)(x % 13) * 0.1f - 0.6f);
        for (uint32_t L = 0; c && L < s->NL; L++) rc |= cq_cache_append(c, L, kv, kv, n, NULL) != CQ_OK;
        snprintf(path, sizeof path, "%s/seed_p%d_v12", argv[1], i);
        rc |= cq_cache_save(c, path, NULL) != CQ_OK;
        cq_cache_free(c);
        free(kv);
        cq_kvpool_free(p);
    }
    return rc;
}
