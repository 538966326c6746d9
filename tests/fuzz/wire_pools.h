/* SPDX-License-Identifier: MIT */
/*
 * wire_pools.h - the serving pools that fuzz_block_wire.c feeds its inputs to and that
 * make_wire_seeds.c encodes its seed blocks from (header-only, shared by both so that the
 * seeds match the pools): small configurations covering CQ-4+ keys with masks and sinks,
 * fp16 / CQ-8 mixed layers, and the generic codec path; each pool holds a published chain
 * of WP_BLOCKS blocks of deterministic tokens, so that blocks at positions 1 .. WP_BLOCKS
 * find their parent.
 */
#ifndef CQ_WIRE_POOLS_H
#define CQ_WIRE_POOLS_H

#include <stdlib.h>
#include <string.h>

#include "channelquant.h"
#include "cq_serve.h"

#define WP_POOLS 3
#define WP_BLOCKS 3

typedef struct wp_spec {
    uint32_t NL, H, D, G, S;
    cq_codec_id k, v;
    int masks;
    const cq_layer_codecs *layers;
} wp_spec;

static const cq_layer_codecs wp_mixed[2] = {{CQ_CODEC_FP16, CQ_CODEC_CQ8},
                                            {CQ_CODEC_CQ8, CQ_CODEC_CQ4}};
static const wp_spec WP_SPECS[WP_POOLS] = {
    {2, 1, 16, 8, 2, CQ_CODEC_CQ4P, CQ_CODEC_CQ4, 1, NULL},
    {2, 2, 8, 4, 0, CQ_CODEC_FP16, CQ_CODEC_CQ8, 0, wp_mixed},
    {1, 1, 32, 4, 1, CQ_CODEC_Q4_0, CQ_CODEC_Q8_0, 0, NULL},
};

/* Token i of pool i's published prompt. */
static inline uint32_t wp_token(int pool, uint32_t i) { return 1000u * (uint32_t)pool + 7u * i + 3u; }
static inline uint32_t wp_prompt_len(int pool) {
    const wp_spec *s = &WP_SPECS[pool];
    return s->S + WP_BLOCKS * s->G + 1;
}

/* Pool `pool` (kernels NULL: automatic) with its prompt prefilled, published and its
 * sequence freed: WP_BLOCKS cached blocks. NULL on failure. */
static inline cq_kvpool *wp_make(int pool, const char *kernels) {
    const wp_spec *s = &WP_SPECS[pool];
    static uint8_t masks[64 * 16];
    cq_kvpool_config pc;
    memset(&pc, 0, sizeof pc);
    cq_cache_config_default(&pc.cache, s->NL, s->H, s->D);
    pc.cache.key_codec = s->k;
    pc.cache.val_codec = s->v;
    pc.cache.group = s->G;
    pc.cache.n_sinks = s->S;
    pc.cache.layer_codecs = s->layers;
    pc.cache.kernels = kernels;
    if (s->masks) {
        memset(masks, 0, sizeof masks);
        for (uint32_t i = 0; i < s->NL * s->H; i++) masks[i * s->D + (i % s->D)] = 1;
        pc.cache.outlier_masks = masks;
    }
    pc.budget_bytes = 1u << 22;
    pc.model_hash = 0x5eed0000u + (uint32_t)pool;
    cq_kvpool *p = NULL;
    if (cq_kvpool_create(&pc, &p, NULL)) return NULL;
    const uint32_t n = wp_prompt_len(pool), w = s->H * s->D;
    uint32_t *tok = malloc(n * sizeof *tok);
    uint16_t *k = malloc((size_t)n * w * 2), *v = malloc((size_t)n * w * 2);
    cq_seq *q = NULL;
    int bad = !tok || !k || !v || cq_seq_create(p, &q, NULL);
    for (uint32_t i = 0; !bad && i < n; i++) tok[i] = wp_token(pool, i);
    for (uint32_t L = 0; !bad && L < s->NL; L++) {
        cq_rng r;
        cq_rng_seed(&r, 31u * L + (uint32_t)pool);
        for (size_t i = 0; i < (size_t)n * w; i++) {
            k[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
            v[i] = cq_f32_to_f16((float)cq_rng_normal(&r) * 0.5f);
        }
        bad = cq_seq_append(q, L, k, v, n, NULL) != CQ_OK;
    }
    if (!bad) bad = cq_seq_publish(q, tok, n, NULL) != CQ_OK;
    cq_seq_free(q);
    free(tok);
    free(k);
    free(v);
    if (bad) {
        cq_kvpool_free(p);
        return NULL;
    }
    return p;
}

#endif
