/* SPDX-License-Identifier: MIT */
/*
 * test_cache.c - the streaming cache as storage: streaming append in any
 * chunking gives the bytes of encoding the whole block at once (registry
 * encode of the same tokens), in-flight tokens read back exactly, sinks,
 * all-or-nothing append, flush/reset/clone, the generic codec path against the
 * fused one, memory accounting against the allocator and a hand formula, and
 * the outlier-mask file format. Attention is in test_cache_attn.c, kernels in
 * test_cache_kernels.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_test.h"
#include "util/cache_testutil.h"

static const cq_codec_id FUSED[] = {CQ_CODEC_FP16, CQ_CODEC_CQ8, CQ_CODEC_CQ4, CQ_CODEC_CQ4P};

/* Append T tokens of K, V [T][H][D] in random chunks (chunk 0 = random 1..max). */
static cq_status append_chunked(cq_cache *c, uint32_t layer, const uint16_t *K, const uint16_t *V,
                                uint32_t T, uint32_t H, uint32_t D, cq_rng *r, uint32_t maxc) {
    uint32_t t = 0;
    while (t < T) {
        uint32_t n = 1 + cq_rng_below(r, maxc);
        if (n > T - t) n = T - t;
        cq_err e;
        cq_status st = cq_cache_append(c, layer, K + (size_t)t * H * D, V + (size_t)t * H * D, n, &e);
        if (st) {
            fprintf(stderr, "append: %s\n", e.msg);
            return st;
        }
        t += n;
    }
    return CQ_OK;
}

/* gather head h of X [T][H][D] tokens [t0, t1) into out [t1-t0][D] */
static void gather(const uint16_t *X, uint32_t H, uint32_t D, uint32_t h, uint32_t t0, uint32_t t1,
                   uint16_t *out) {
    for (uint32_t t = t0; t < t1; t++)
        memcpy(out + (size_t)(t - t0) * D, X + ((size_t)t * H + h) * D, (size_t)D * 2);
}

/* export of (layer 0, head h, role) must equal the registry encode of the store's tokens */
static int export_matches(const cq_cache *c, uint32_t h, cq_role role, cq_codec_id id,
                          const uint16_t *X, uint32_t H, uint32_t D, uint32_t G, uint32_t S,
                          const uint8_t *mask) {
    uint32_t n = cq_cache_committed(c, 0, h, role);
    const cq_codec_traits *tr = cq_codec_get(id);
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cfg.group = G;
    cfg.mask = role == CQ_ROLE_KEY && id == CQ_CODEC_CQ4P ? mask : NULL;
    uint16_t *blk = malloc((size_t)(n + 1) * D * 2);
    gather(X, H, D, h, S, S + n, blk);
    size_t want = tr->packed_bytes(&cfg, role, n), got = 0;
    uint8_t *a = malloc(want + 1), *b = malloc(want + 1);
    int ok = tr->encode(&cfg, role, blk, n, a, want, NULL) == CQ_OK &&
             cq_cache_export(c, 0, h, role, NULL, 0, &got, NULL) == CQ_OK && got == want &&
             cq_cache_export(c, 0, h, role, b, want, &got, NULL) == CQ_OK &&
             memcmp(a, b, want) == 0;
    free(blk);
    free(a);
    free(b);
    return ok;
}

static void test_streaming_bytes(void) {
    cq_rng r;
    cq_rng_seed(&r, 11);
    static const uint32_t dims[] = {2, 6, 40, 64, 128};
    static const uint32_t groups[] = {1, 3, 32, 128};
    int n_cfg = 0, bad = 0, bad_read = 0;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++)
            for (int ki = 0; ki < 4; ki++) {
                const uint32_t D = dims[di], G = groups[gi], H = 2;
                const uint32_t T = 150 + cq_rng_below(&r, 200), S = cq_rng_below(&r, 3) ? 0 : 5;
                const uint32_t k = D > 4 ? cq_rng_below(&r, 4) : 1; /* odd k: odd kept */
                cq_codec_id kid = FUSED[ki], vid = FUSED[(ki + 1 + gi) % 4];
                uint8_t *masks = malloc((size_t)H * D);
                ctu_random_masks(&r, masks, H, D, k);
                uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
                ctu_fill_f16(&r, K, (size_t)T * H * D, 1.0f, 1);
                ctu_fill_f16(&r, V, (size_t)T * H * D, 0.5f, 1);
                cq_cache_config cfg;
                cq_cache_config_default(&cfg, 1, H, D);
                cfg.key_codec = kid;
                cfg.val_codec = vid;
                cfg.group = G;
                cfg.n_sinks = S;
                cfg.page_tokens = 64 + cq_rng_below(&r, 300);
                cfg.outlier_masks = masks;
                cq_cache *c;
                cq_err e;
                cq_status st = cq_cache_create(&cfg, &c, &e);
                CHECK(st == CQ_OK, "create D=%u G=%u: %s", D, G, e.msg);
                if (st) continue;
                n_cfg++;
                if (append_chunked(c, 0, K, V, T, H, D, &r, 1 + cq_rng_below(&r, 2 * G + 3)))
                    bad++;
                /* before flush: in-flight tokens read back as their fp16, committed as decoded */
                float *Kr = malloc((size_t)T * D * 4), *Vr = malloc((size_t)T * D * 4);
                uint16_t *blk = malloc((size_t)T * D * 2);
                for (uint32_t h = 0; h < H; h++) {
                    uint32_t nk = cq_cache_committed(c, 0, h, CQ_ROLE_KEY);
                    CHECK(cq_cache_read(c, 0, h, 0, T, Kr, Vr, NULL) == CQ_OK, "read");
                    gather(K, H, D, h, 0, T, blk);
                    for (uint32_t t = S + nk; t < T; t++)
                        for (uint32_t d = 0; d < D; d++)
                            if (cq_f32_bits(Kr[(size_t)t * D + d]) !=
                                cq_f32_bits(cq_f16_to_f32(blk[(size_t)t * D + d])))
                                bad_read++;
                    for (uint32_t t = 0; t < S; t++) /* sinks are fp16 */
                        for (uint32_t d = 0; d < D; d++)
                            if (cq_f32_bits(Kr[(size_t)t * D + d]) !=
                                cq_f32_bits(cq_f16_to_f32(blk[(size_t)t * D + d])))
                                bad_read++;
                    if (!export_matches(c, h, CQ_ROLE_KEY, kid, K, H, D, G, S, masks + h * D) ||
                        !export_matches(c, h, CQ_ROLE_VALUE, vid, V, H, D, G, S, NULL))
                        bad++;
                }
                CHECK(cq_cache_flush(c, &e) == CQ_OK, "flush: %s", e.msg);
                for (uint32_t h = 0; h < H; h++) {
                    CHECK(cq_cache_committed(c, 0, h, CQ_ROLE_KEY) == T - S, "all committed");
                    if (!export_matches(c, h, CQ_ROLE_KEY, kid, K, H, D, G, S, masks + h * D) ||
                        !export_matches(c, h, CQ_ROLE_VALUE, vid, V, H, D, G, S, NULL)) {
                        bad++;
                        fprintf(stderr, "bytes differ: D=%u G=%u k=%u K=%d V=%d S=%u\n", D, G, k,
                                (int)kid, (int)vid, S);
                    }
                    /* read-back of everything = registry decode of the whole block */
                    const cq_codec_traits *tr = cq_codec_get(kid);
                    cq_codec_cfg cc;
                    cq_codec_cfg_default(&cc, D);
                    cc.group = G;
                    cc.mask = kid == CQ_CODEC_CQ4P ? masks + h * D : NULL;
                    size_t nb = tr->packed_bytes(&cc, CQ_ROLE_KEY, T - S);
                    uint8_t *pk = malloc(nb + 1);
                    float *ref = malloc((size_t)T * D * 4 + 4);
                    gather(K, H, D, h, S, T, blk);
                    CHECK(tr->encode(&cc, CQ_ROLE_KEY, blk, T - S, pk, nb, NULL) == CQ_OK, "enc");
                    CHECK(tr->decode(&cc, CQ_ROLE_KEY, pk, nb, T - S, ref) == CQ_OK, "dec");
                    CHECK(cq_cache_read(c, 0, h, 0, T, Kr, NULL, NULL) == CQ_OK, "read");
                    if (ctu_first_diff(Kr + (size_t)S * D, ref, (size_t)(T - S) * D) >= 0) bad_read++;
                    free(pk);
                    free(ref);
                }
                /* sealed */
                CHECK(cq_cache_append(c, 0, K, V, 1, &e) == CQ_ERR_STATE, "append after flush");
                free(Kr);
                free(Vr);
                free(blk);
                free(K);
                free(V);
                free(masks);
                cq_cache_free(c);
            }
    CHECK(bad == 0, "%d configurations gave different bytes than the whole-block encode", bad);
    CHECK(bad_read == 0, "%d read-back mismatches", bad_read);
    CHECK(n_cfg == 80, "ran %d configurations", n_cfg);
}

/* chunkings 1-by-1, all-at-once and random give the same exports */
static void test_chunking_invariance(void) {
    const uint32_t D = 64, H = 3, T = 517;
    cq_rng r;
    cq_rng_seed(&r, 5);
    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
    ctu_fill_f16(&r, K, (size_t)T * H * D, 2.0f, 1);
    ctu_fill_f16(&r, V, (size_t)T * H * D, 2.0f, 1);
    uint8_t masks[3 * 64];
    ctu_random_masks(&r, masks, H, D, 2);
    uint8_t *ref[2 * 3] = {0};
    size_t rlen[2 * 3] = {0};
    for (int mode = 0; mode < 3; mode++) {
        cq_cache_config cfg;
        cq_cache_config_default(&cfg, 2, H, D);
        cfg.key_codec = CQ_CODEC_CQ4P;
        cfg.outlier_masks = NULL;
        uint8_t m2[2 * 3 * 64];
        memcpy(m2, masks, sizeof masks);
        memcpy(m2 + sizeof masks, masks, sizeof masks);
        cfg.outlier_masks = m2;
        cq_cache *c;
        CHECK(cq_cache_create(&cfg, &c, NULL) == CQ_OK, "create");
        if (mode == 0)
            for (uint32_t t = 0; t < T; t++)
                cq_cache_append(c, 1, K + (size_t)t * H * D, V + (size_t)t * H * D, 1, NULL);
        else if (mode == 1)
            cq_cache_append(c, 1, K, V, T, NULL);
        else
            append_chunked(c, 1, K, V, T, H, D, &r, 300);
        CHECK(cq_cache_tokens(c, 1) == T && cq_cache_tokens(c, 0) == 0, "tokens");
        cq_cache_flush(c, NULL);
        for (uint32_t i = 0; i < 2 * H; i++) {
            size_t len;
            cq_cache_export(c, 1, i / 2, i & 1 ? CQ_ROLE_VALUE : CQ_ROLE_KEY, NULL, 0, &len, NULL);
            uint8_t *b = malloc(len);
            cq_cache_export(c, 1, i / 2, i & 1 ? CQ_ROLE_VALUE : CQ_ROLE_KEY, b, len, &len, NULL);
            if (mode == 0) {
                ref[i] = b;
                rlen[i] = len;
            } else {
                CHECK(len == rlen[i] && memcmp(b, ref[i], len) == 0, "mode %d stream %u differs",
                      mode, i);
                free(b);
            }
        }
        cq_cache_free(c);
    }
    for (int i = 0; i < 6; i++) free(ref[i]);
    free(K);
    free(V);
}

/* Serialize everything observable about a cache (exports, reads, tokens, memory). */
static uint8_t *snapshot(const cq_cache *c, size_t *len) {
    const cq_cache_config *cfg = cq_cache_get_config(c);
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
#define PUT(p, sz)                                                                                 \
    do {                                                                                           \
        while (n + (sz) > cap) buf = realloc(buf, cap *= 2);                                       \
        memcpy(buf + n, (p), (sz));                                                                \
        n += (sz);                                                                                 \
    } while (0)
    for (uint32_t L = 0; L < cfg->n_layers; L++) {
        uint32_t T = cq_cache_tokens(c, L);
        PUT(&T, 4);
        for (uint32_t h = 0; h < cfg->n_kv_heads; h++) {
            for (int role = 0; role < 2; role++) {
                size_t el;
                cq_cache_export(c, L, h, (cq_role)role, NULL, 0, &el, NULL);
                uint8_t *e = malloc(el + 1);
                cq_cache_export(c, L, h, (cq_role)role, e, el, &el, NULL);
                PUT(e, el);
                free(e);
            }
            float *kv = malloc((size_t)(T + 1) * cfg->head_dim * 8);
            cq_cache_read(c, L, h, 0, T, kv, kv + (size_t)T * cfg->head_dim, NULL);
            PUT(kv, (size_t)T * cfg->head_dim * 8);
            free(kv);
        }
    }
    cq_cache_mem m;
    cq_cache_memory(c, -1, &m);
    PUT(&m, sizeof m);
#undef PUT
    *len = n;
    return buf;
}

static void test_all_or_nothing(void) {
    const uint32_t D = 32, H = 2, G = 16;
    cq_rng r;
    cq_rng_seed(&r, 7);
    for (int variant = 0; variant < 3; variant++) {
        cq_cache_config cfg;
        cq_cache_config_default(&cfg, 2, H, D);
        cfg.group = G;
        cfg.page_tokens = 32;
        cfg.max_tokens = 200;
        cfg.n_sinks = 3;
        cfg.force_generic = variant == 2;
        if (variant == 1) cfg.key_codec = CQ_CODEC_CQ8, cfg.val_codec = CQ_CODEC_FP16;
        cq_cache *c;
        CHECK(cq_cache_create(&cfg, &c, NULL) == CQ_OK, "create");
        uint16_t K[60 * 2 * 32], V[60 * 2 * 32];
        ctu_fill_f16(&r, K, sizeof K / 2, 1.0f, 0);
        ctu_fill_f16(&r, V, sizeof V / 2, 1.0f, 0);
        CHECK(cq_cache_append(c, 0, K, V, 21, NULL) == CQ_OK, "append");
        size_t l0, l1;
        uint8_t *s0 = snapshot(c, &l0);
        cq_err e;
        /* a NaN in the last head of the last token of a batch that crosses a group and a page */
        uint16_t saved = V[(size_t)(40 * H + 1) * D + 7];
        V[(size_t)(40 * H + 1) * D + 7] = 0x7E00;
        cq_status st = cq_cache_append(c, 0, K, V, 41, &e);
        CHECK(st == CQ_ERR_NONFINITE && e.token == 21 + 40 && e.channel == 7,
              "NaN refused with its place: %s (token %lld channel %d)", e.msg, (long long)e.token,
              e.channel);
        V[(size_t)(40 * H + 1) * D + 7] = saved;
        saved = K[5];
        K[5] = 0xFC00; /* -Inf key */
        CHECK(cq_cache_append(c, 0, K, V, 3, &e) == CQ_ERR_NONFINITE && e.token == 21, "-Inf");
        K[5] = saved;
        CHECK(cq_cache_append(c, 0, K, V, 180, &e) == CQ_ERR_RANGE, "max_tokens");
        CHECK(cq_cache_append(c, 2, K, V, 1, &e) == CQ_ERR_RANGE, "layer");
        CHECK(cq_cache_append(c, 0, NULL, V, 1, &e) == CQ_ERR_NULL, "NULL");
        uint8_t *s1 = snapshot(c, &l1);
        CHECK(l0 == l1 && memcmp(s0, s1, l0) == 0, "variant %d: a refused append changed the cache",
              variant);
        free(s0);
        free(s1);
        /* clone is a deep copy; reset forgets */
        cq_cache *d;
        CHECK(cq_cache_clone(c, &d, NULL) == CQ_OK, "clone");
        s0 = snapshot(c, &l0);
        size_t l2;
        uint8_t *s2 = snapshot(d, &l2);
        /* memory of the clone may differ in page-table capacity: compare everything before it */
        CHECK(l0 == l2 && memcmp(s0, s2, l0 - sizeof(cq_cache_mem)) == 0, "clone contents");
        CHECK(cq_cache_append(d, 0, K, V, 5, NULL) == CQ_OK, "append to clone");
        CHECK(cq_cache_tokens(c, 0) == 21 && cq_cache_tokens(d, 0) == 26, "clone is independent");
        cq_cache_reset(d);
        CHECK(cq_cache_tokens(d, 0) == 0, "reset");
        CHECK(cq_cache_append(d, 0, K, V, 21, NULL) == CQ_OK, "append after reset");
        free(s2);
        s2 = snapshot(d, &l2);
        CHECK(l0 == l2 && memcmp(s0, s2, l0 - sizeof(cq_cache_mem)) == 0, "reset + same input");
        free(s0);
        free(s2);
        cq_cache_free(d);
        cq_cache_free(c);
    }
}

/* the generic registry path gives the same read-back as the fused path */
static void test_generic_vs_fused(void) {
    cq_rng r;
    cq_rng_seed(&r, 3);
    const uint32_t D = 64, H = 2, T = 333;
    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
    ctu_fill_f16(&r, K, (size_t)T * H * D, 1.0f, 1);
    ctu_fill_f16(&r, V, (size_t)T * H * D, 1.0f, 1);
    uint8_t masks[2 * 64];
    ctu_random_masks(&r, masks, H, D, 2);
    int checked = 0;
    for (int ki = 0; ki < 4; ki++)
        for (int vi = 0; vi < 4; vi++)
            for (int fl = 0; fl < 2; fl++) {
                cq_cache *c[2];
                for (int g = 0; g < 2; g++) {
                    cq_cache_config cfg;
                    cq_cache_config_default(&cfg, 1, H, D);
                    cfg.key_codec = FUSED[ki];
                    cfg.val_codec = FUSED[vi];
                    cfg.group = 32;
                    cfg.page_tokens = 96;
                    cfg.outlier_masks = masks;
                    cfg.force_generic = (uint32_t)g;
                    CHECK(cq_cache_create(&cfg, &c[g], NULL) == CQ_OK, "create");
                    cq_rng rr;
                    cq_rng_seed(&rr, 99);
                    append_chunked(c[g], 0, K, V, T, H, D, &rr, 40);
                    if (fl) cq_cache_flush(c[g], NULL);
                }
                float *a = malloc((size_t)T * D * 8), *b = malloc((size_t)T * D * 8);
                for (uint32_t h = 0; h < H; h++) {
                    CHECK(cq_cache_read(c[0], 0, h, 0, T, a, a + (size_t)T * D, NULL) == CQ_OK, "r");
                    CHECK(cq_cache_read(c[1], 0, h, 0, T, b, b + (size_t)T * D, NULL) == CQ_OK, "r");
                    long d = ctu_first_diff(a, b, (size_t)T * D * 2);
                    CHECK(d < 0, "generic vs fused K=%d V=%d flush=%d head %u differ at %ld", ki,
                          vi, fl, h, d);
                    /* odd ranges */
                    CHECK(cq_cache_read(c[1], 0, h, 31, 97, b, NULL, NULL) == CQ_OK, "r");
                    CHECK(ctu_first_diff(a + 31 * D, b, 66 * D) < 0, "sub-range");
                    checked++;
                }
                cq_cache_mem m0, m1;
                cq_cache_memory(c[0], -1, &m0);
                cq_cache_memory(c[1], -1, &m1);
                /* same payload+scales+sidecar bytes (the generic blob holds scales too) */
                CHECK(m0.payload + m0.scales + m0.sidecar == m1.payload + m1.scales + m1.sidecar,
                      "K=%d V=%d fused %llu vs generic %llu bytes", ki, vi,
                      (unsigned long long)(m0.payload + m0.scales + m0.sidecar),
                      (unsigned long long)(m1.payload + m1.scales + m1.sidecar));
                CHECK(m1.total == cq_cache_allocated_bytes(c[1], -1), "generic accounting");
                free(a);
                free(b);
                cq_cache_free(c[0]);
                cq_cache_free(c[1]);
            }
    CHECK(checked == 64, "checked %d", checked);
    /* a registry codec with no fused kernel: CQ-3-rot values (per-token unit) */
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, H, D);
    cfg.val_codec = CQ_CODEC_CQ3ROT;
    cq_cache *c;
    CHECK(cq_cache_create(&cfg, &c, NULL) == CQ_OK, "cq3rot values");
    /* +-65504 overflows the fp16 Hadamard butterflies: the codec refuses, the cache stays empty */
    cq_err e;
    cq_status st = cq_cache_append(c, 0, K, V, T, &e);
    CHECK(st == CQ_ERR_OVERFLOW && cq_cache_tokens(c, 0) == 0 &&
              cq_cache_committed(c, 0, 0, CQ_ROLE_VALUE) == 0,
          "codec refusal is all-or-nothing: %s", cq_status_name(st));
    ctu_fill_f16(&r, V, (size_t)T * H * D, 1.0f, 0);
    CHECK(cq_cache_append(c, 0, K, V, T, NULL) == CQ_OK, "append");
    const cq_codec_traits *tr = cq_codec_get(CQ_CODEC_CQ3ROT);
    cq_codec_cfg cc;
    cq_codec_cfg_default(&cc, D);
    size_t nb = tr->packed_bytes(&cc, CQ_ROLE_VALUE, T);
    uint8_t *pk = malloc(nb);
    uint16_t *blk = malloc((size_t)T * D * 2);
    float *ref = malloc((size_t)T * D * 4), *got = malloc((size_t)T * D * 4);
    gather(V, H, D, 1, 0, T, blk);
    tr->encode(&cc, CQ_ROLE_VALUE, blk, T, pk, nb, NULL);
    tr->decode(&cc, CQ_ROLE_VALUE, pk, nb, T, ref);
    CHECK(cq_cache_read(c, 0, 1, 0, T, NULL, got, NULL) == CQ_OK, "read");
    CHECK(ctu_first_diff(got, ref, (size_t)T * D) < 0, "cq3rot read-back = codec decode");
    cq_cache_mem m;
    cq_cache_memory(c, -1, &m);
    CHECK(m.total == cq_cache_allocated_bytes(c, -1), "accounting");
    cq_cache_free(c);
    /* keys refused for a values-only codec, with a message */
    cfg.val_codec = CQ_CODEC_CQ4;
    cfg.key_codec = CQ_CODEC_CQ3ROT;
    CHECK(cq_cache_create(&cfg, &c, &e) != CQ_OK && e.msg[0], "cq3rot keys refused");
    free(pk);
    free(blk);
    free(ref);
    free(got);
    free(K);
    free(V);
}

static void test_memory(void) {
    /* hand formula: 1 layer, 2 heads, D=128, G=128, pages of 1024, CQ-4 K and V, 1000 tokens */
    const uint32_t D = 128, H = 2, T = 1000;
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, H, D);
    cq_cache *c;
    CHECK(cq_cache_create(&cfg, &c, NULL) == CQ_OK, "create");
    uint16_t *K = calloc((size_t)T * H * D, 2), *V = calloc((size_t)T * H * D, 2);
    cq_rng r;
    cq_rng_seed(&r, 1);
    ctu_fill_f16(&r, K, (size_t)T * H * D, 1.0f, 0);
    ctu_fill_f16(&r, V, (size_t)T * H * D, 1.0f, 0);
    CHECK(cq_cache_append(c, 0, K, V, T, NULL) == CQ_OK, "append");
    cq_cache_mem m;
    CHECK(cq_cache_memory(c, 0, &m) == CQ_OK, "memory");
    /* keys: 7 full groups of 128 committed (896 tokens), 104 in flight */
    uint64_t kp = 7ull * 128 * 128 / 2, ks = 7ull * 128 * 2;
    uint64_t vp = 1000ull * 64, vs = 1000ull * 2;
    uint64_t kslot = 8192 + 256 + 32 /* read padding, rounded to 32 */, kpage = 8 * kslot, vpage = 1024ull * 64 + 1024 * 2;
    CHECK(m.payload == H * (kp + vp), "payload %llu", (unsigned long long)m.payload);
    CHECK(m.scales == H * (ks + vs), "scales %llu", (unsigned long long)m.scales);
    CHECK(m.sidecar == 0 && m.sinks == 0, "sidecar/sinks");
    CHECK(m.residual == H * 128ull * 128 * 2, "residual %llu", (unsigned long long)m.residual);
    CHECK(m.slack == H * (kpage - kp - ks + vpage - vp - vs), "slack %llu",
          (unsigned long long)m.slack);
    CHECK(m.tokens == (uint64_t)T * H, "tokens");
    CHECK(m.total == cq_cache_allocated_bytes(c, 0), "layer total %llu vs allocated %llu",
          (unsigned long long)m.total, (unsigned long long)cq_cache_allocated_bytes(c, 0));
    cq_cache_mem all;
    cq_cache_memory(c, -1, &all);
    CHECK(all.total == cq_cache_allocated_bytes(c, -1), "total %llu vs allocated %llu",
          (unsigned long long)all.total, (unsigned long long)cq_cache_allocated_bytes(c, -1));
    CHECK(fabs(all.bits_per_value - 8.0 * all.total / (T * H * D * 2.0)) < 1e-12, "bpv");
    cq_cache_free(c);
    /* every format, sinks, masks, odd sizes, several layers: the walk equals the allocator */
    cq_rng_seed(&r, 2);
    int bad = 0;
    for (int i = 0; i < 24; i++) {
        uint32_t D2 = 2 * (1 + cq_rng_below(&r, 80)), NL = 1 + cq_rng_below(&r, 3);
        cq_layer_codecs lc[3];
        for (uint32_t L = 0; L < NL; L++) lc[L].key = FUSED[cq_rng_below(&r, 4)], lc[L].val = FUSED[cq_rng_below(&r, 4)];
        uint8_t *masks = malloc((size_t)NL * 2 * D2);
        ctu_random_masks(&r, masks, NL * 2, D2, D2 > 2 ? 1 : 0);
        cq_cache_config_default(&cfg, NL, 2, D2);
        cfg.layer_codecs = lc;
        cfg.outlier_masks = masks;
        cfg.group = 1 + cq_rng_below(&r, 70);
        cfg.n_sinks = cq_rng_below(&r, 4);
        cfg.page_tokens = cq_rng_below(&r, 200);
        cfg.force_generic = cq_rng_below(&r, 4) == 0;
        if (cq_cache_create(&cfg, &c, NULL)) {
            bad++;
            free(masks);
            continue;
        }
        uint32_t n = cq_rng_below(&r, 300);
        uint16_t *x = malloc((size_t)(n + 1) * 2 * D2 * 2);
        ctu_fill_f16(&r, x, (size_t)n * 2 * D2, 1.0f, 0);
        for (uint32_t L = 0; L < NL; L++) cq_cache_append(c, L, x, x, n, NULL);
        if (i & 1) cq_cache_flush(c, NULL);
        uint64_t sum = 0;
        for (uint32_t L = 0; L < NL; L++) {
            cq_cache_memory(c, (int32_t)L, &m);
            if (m.total != cq_cache_allocated_bytes(c, (int32_t)L)) bad++;
            sum += m.total;
        }
        cq_cache_memory(c, -1, &m);
        if (m.total != cq_cache_allocated_bytes(c, -1) || m.total <= sum) bad++;
        free(x);
        free(masks);
        cq_cache_free(c);
    }
    CHECK(bad == 0, "%d accounting mismatches", bad);
    free(K);
    free(V);
}

static void test_masks(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/vectors/masks/q05_k2.txt", cq_test_shared());
    uint8_t *m = malloc(24 * 2 * 64);
    cq_err e;
    cq_status st = cq_mask_load(path, 24, 2, 64, m, &e);
    CHECK(st == CQ_OK, "load %s: %s", path, e.msg);
    if (!st) {
        int ok = 1;
        for (int i = 0; i < 48; i++) {
            int k = 0;
            for (int c = 0; c < 64; c++) k += m[i * 64 + c];
            ok &= k == 2;
        }
        CHECK(ok, "two channels per (layer, head)");
        CHECK(m[62] && m[63] && m[64 + 31] && m[64 + 63], "layer 0 lines");
        /* a cache accepts them for CQ-4+ keys */
        cq_cache_config cfg;
        cq_cache_config_default(&cfg, 24, 2, 64);
        cfg.key_codec = CQ_CODEC_CQ4P;
        cfg.outlier_masks = m;
        cq_cache *c;
        CHECK(cq_cache_create(&cfg, &c, &e) == CQ_OK, "cache with q05 masks: %s", e.msg);
        cq_cache_free(c);
    }
    CHECK(cq_mask_load(path, 24, 2, 32, m, &e) == CQ_ERR_OUTLIERS, "channel >= D: %s", e.msg);
    CHECK(cq_mask_load(path, 23, 2, 64, m, &e) == CQ_ERR_RANGE, "layer out of range");
    CHECK(cq_mask_load(path, 25, 2, 64, m, &e) == CQ_ERR_FORMAT, "missing layer");
    static const char *bad[] = {"0 0 3 1\n0 1 2\n", "0 0 1 1\n0 1 2\n", "0 0 1\n0 0 2\n",
                                "0 0 x\n0 1 2\n", "0 0 1\n", "0 0 1 # c\n0 1\n# only\n\n"};
    static const cq_status want[] = {CQ_ERR_OUTLIERS, CQ_ERR_OUTLIERS, CQ_ERR_FORMAT,
                                     CQ_ERR_FORMAT, CQ_ERR_FORMAT, CQ_OK};
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "build-test-mask-%d.txt", i);
        FILE *f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        st = cq_mask_load(path, 1, 2, 8, m, &e);
        CHECK(st == want[i], "mask text %d: got %s (%s)", i, cq_status_name(st), e.msg);
        remove(path);
    }
    CHECK(cq_mask_load("/nonexistent/mask.txt", 1, 1, 8, m, &e) == CQ_ERR_IO, "missing file");
    free(m);
    /* CQ-4+ without masks is refused */
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, 1, 8);
    cfg.key_codec = CQ_CODEC_CQ4P;
    cq_cache *c;
    CHECK(cq_cache_create(&cfg, &c, &e) == CQ_ERR_OUTLIERS, "CQ-4+ needs masks");
}

static void test_bad_config(void) {
    cq_cache_config cfg;
    cq_cache *c;
    cq_err e;
    cq_cache_config_default(&cfg, 1, 1, 7);
    CHECK(cq_cache_create(&cfg, &c, &e) == CQ_ERR_DIM, "odd D");
    cq_cache_config_default(&cfg, 0, 1, 8);
    CHECK(cq_cache_create(&cfg, &c, &e) == CQ_ERR_SHAPE, "no layers");
    cq_cache_config_default(&cfg, 1, 1, 8);
    cfg.key_codec = (cq_codec_id)999;
    CHECK(cq_cache_create(&cfg, &c, &e) == CQ_ERR_TIER, "unknown codec");
    cq_cache_config_default(&cfg, 1, 1, 8);
    cfg.kernels = "neon";
    CHECK(cq_cache_create(&cfg, &c, &e) == CQ_ERR_UNSUPPORTED, "unknown kernels");
    cq_cache_config_default(&cfg, 1, 1, 8);
    CHECK(cq_cache_create(&cfg, &c, &e) == CQ_OK, "ok");
    float K[8] = {0}, V[8] = {0};
    K[3] = 1e6f; /* overflows fp16: refused as non-finite */
    CHECK(cq_cache_append_f32(c, 0, K, V, 1, &e) == CQ_ERR_NONFINITE, "fp32 overflow");
    K[3] = 1.0f;
    CHECK(cq_cache_append_f32(c, 0, K, V, 1, &e) == CQ_OK, "fp32 append");
    float out[8];
    CHECK(cq_cache_read(c, 0, 0, 0, 2, out, NULL, &e) == CQ_ERR_RANGE, "read beyond");
    CHECK(cq_cache_read(c, 0, 1, 0, 1, out, NULL, &e) == CQ_ERR_RANGE, "bad head");
    CHECK(cq_cache_read(c, 0, 0, 0, 1, out, NULL, &e) == CQ_OK && out[3] == 1.0f, "in flight");
    cq_cache_free(c);
    cq_cache_free(NULL);
}

int main(void) {
    test_streaming_bytes();
    test_chunking_invariance();
    test_all_or_nothing();
    test_generic_vs_fused();
    test_memory();
    test_masks();
    test_bad_config();
    return cq_test_done("test_cache");
}
