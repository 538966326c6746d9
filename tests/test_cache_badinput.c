/* SPDX-License-Identifier: MIT */
/*
 * test_cache_badinput.c - the bad-input matrix of the cache API: NaN, +-Inf,
 * values rounding to Inf, empty tensors, odd D, D above the limit, G = 0,
 * k >= D, duplicate / unsorted / out-of-range outlier channels, mismatched
 * shapes and ranges, a sealed cache, max_tokens, through cq_cache_create,
 * cq_cache_append, cq_cache_append_f32, cq_params_init, cq_mask_load,
 * cq_cache_read and cq_cache_attend. Each gives its documented cq_status and
 * leaves the cache exactly as it was (saved image, token counts and memory
 * accounting compared before and after every rejected call). -0.0,
 * subnormals and +-65504 are accepted and read back per the contract.
 * Also: force_generic outside 0/1, non-finite or non-positive attention scales,
 * queries whose scores overflow fp32 (every format, scalar and auto kernels), and
 * a huge page_tokens whose saved cache must load with the default options.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cq_test.h"
#include "util/cache_testutil.h"

enum { NL = 2, H = 2, D = 16, G = 8, S = 2 };

typedef struct snap {
    uint8_t *img;
    size_t len;
    cq_cache_mem mem;
    uint64_t bytes;
    uint32_t tokens[NL];
} snap;

static void take_snap(const cq_cache *c, snap *s) {
    memset(s, 0, sizeof *s);
    cq_cache_save_mem(c, &s->img, &s->len, NULL);
    cq_cache_memory(c, -1, &s->mem);
    s->bytes = cq_cache_allocated_bytes(c, -1);
    for (uint32_t L = 0; L < NL; L++) s->tokens[L] = cq_cache_tokens(c, L);
}

/* the cache must be exactly as in *before */
static int unchanged(const cq_cache *c, const snap *before) {
    snap now;
    take_snap(c, &now);
    int ok = now.img && before->img && now.len == before->len &&
             memcmp(now.img, before->img, now.len) == 0 &&
             memcmp(&now.mem, &before->mem, sizeof now.mem) == 0 && now.bytes == before->bytes &&
             memcmp(now.tokens, before->tokens, sizeof now.tokens) == 0;
    free(now.img);
    return ok;
}

static cq_cache *make_k(cq_codec_id key, cq_codec_id val, uint32_t max_tokens,
                        const char *kernels) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, NL, H, D);
    cfg.key_codec = key;
    cfg.val_codec = val;
    cfg.group = G;
    cfg.n_sinks = S;
    cfg.max_tokens = max_tokens;
    uint8_t masks[NL * H * D] = {0};
    for (uint32_t i = 0; i < NL * H; i++) masks[i * D + 3] = masks[i * D + 11] = 1;
    cfg.outlier_masks = masks;
    cfg.kernels = kernels;
    cq_cache *c = NULL;
    cq_err e;
    if (cq_cache_create(&cfg, &c, &e)) fprintf(stderr, "create: %s\n", e.msg);
    return c;
}

static cq_cache *make(cq_codec_id key, cq_codec_id val, uint32_t max_tokens) {
    return make_k(key, val, max_tokens, NULL);
}

/* ------------------------------------------------------------- append */

static void append_matrix(cq_codec_id key, cq_codec_id val) {
    cq_cache *c = make(key, val, 40);
    CHECK(c != NULL, "create %d/%d", (int)key, (int)val);
    if (!c) return;
    cq_rng r;
    cq_rng_seed(&r, 4);
    enum { n = 5 };
    uint16_t K[n * H * D], V[n * H * D];
    float Kf[n * H * D], Vf[n * H * D];
    const int sp = val != CQ_CODEC_CQ3ROT; /* its rotation overflows on +-65504 */
    /* some tokens first, so rejected calls meet sinks, committed groups and in-flight ones */
    for (int i = 0; i < 3; i++) {
        ctu_fill_f16(&r, K, n * H * D, 1.0f, sp);
        ctu_fill_f16(&r, V, n * H * D, 1.0f, sp);
        CHECK(cq_cache_append(c, 0, K, V, n, NULL) == CQ_OK, "prefix append");
    }
    snap s0;
    take_snap(c, &s0);
    cq_err e;
    cq_status st;
    /* non-finite fp16 anywhere in K or V: every special pattern, at a random place */
    const uint16_t bad16[] = {0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0xFFFF};
    for (size_t b = 0; b < sizeof bad16 / sizeof bad16[0]; b++)
        for (int which = 0; which < 2; which++) {
            ctu_fill_f16(&r, K, n * H * D, 1.0f, 1);
            ctu_fill_f16(&r, V, n * H * D, 1.0f, 1);
            uint32_t pos = cq_rng_below(&r, n * H * D);
            (which ? V : K)[pos] = bad16[b];
            st = cq_cache_append(c, 0, K, V, n, &e);
            CHECK(st == CQ_ERR_NONFINITE && e.token == 15 + (int64_t)(pos / (H * D)) &&
                      e.channel == (int32_t)(pos % D),
                  "fp16 0x%04x in %s at %u: %s (token %lld channel %d)", bad16[b],
                  which ? "V" : "K", pos, cq_status_name(st), (long long)e.token, e.channel);
            CHECK(unchanged(c, &s0), "cache changed by a rejected non-finite append");
        }
    /* fp32: NaN, +-Inf, and finite values that round to Inf in fp16 */
    const float badf[] = {NAN, -NAN, INFINITY, -INFINITY, 65520.0f, -65520.0f, 1e30f};
    for (size_t b = 0; b < sizeof badf / sizeof badf[0]; b++) {
        for (size_t i = 0; i < n * H * D; i++) Kf[i] = Vf[i] = (float)cq_rng_normal(&r);
        Kf[cq_rng_below(&r, n * H * D)] = badf[b];
        st = cq_cache_append_f32(c, 0, Kf, Vf, n, &e);
        CHECK(st == CQ_ERR_NONFINITE, "f32 %g: %s", (double)badf[b], cq_status_name(st));
        CHECK(unchanged(c, &s0), "cache changed by a rejected f32 append");
    }
    /* shapes and arguments */
    ctu_fill_f16(&r, K, n * H * D, 1.0f, 0);
    ctu_fill_f16(&r, V, n * H * D, 1.0f, 0);
    st = cq_cache_append(c, NL, K, V, n, &e);
    CHECK(st == CQ_ERR_RANGE, "layer out of range: %s", cq_status_name(st));
    st = cq_cache_append(c, 0, NULL, V, n, &e);
    CHECK(st == CQ_ERR_NULL, "K NULL: %s", cq_status_name(st));
    st = cq_cache_append(c, 0, K, NULL, n, &e);
    CHECK(st == CQ_ERR_NULL, "V NULL: %s", cq_status_name(st));
    st = cq_cache_append(NULL, 0, K, V, n, &e);
    CHECK(st == CQ_ERR_NULL, "cache NULL: %s", cq_status_name(st));
    st = cq_cache_append_f32(c, 0, NULL, Vf, n, &e);
    CHECK(st == CQ_ERR_NULL, "f32 K NULL: %s", cq_status_name(st));
    /* empty tensors are a no-op, with or without data pointers */
    CHECK(cq_cache_append(c, 0, NULL, NULL, 0, &e) == CQ_OK, "empty append");
    CHECK(cq_cache_append(c, 1, K, V, 0, &e) == CQ_OK, "empty append with data");
    CHECK(cq_cache_append_f32(c, 0, NULL, NULL, 0, &e) == CQ_OK, "empty f32 append");
    /* max_tokens = 40: 15 held, 26 more is one too many */
    uint16_t *K2 = calloc(26 * H * D, 2), *V2 = calloc(26 * H * D, 2);
    st = cq_cache_append(c, 0, K2, V2, 26, &e);
    CHECK(st == CQ_ERR_RANGE, "beyond max_tokens: %s", cq_status_name(st));
    CHECK(unchanged(c, &s0), "cache changed by rejected argument checks");
    CHECK(cq_cache_append(c, 0, K2, V2, 25, &e) == CQ_OK, "up to max_tokens: %s", e.msg);
    free(K2);
    free(V2);
    /* sealed: appends refused until reset */
    CHECK(cq_cache_flush(c, &e) == CQ_OK, "flush");
    snap s1;
    take_snap(c, &s1);
    st = cq_cache_append(c, 1, K, V, n, &e);
    CHECK(st == CQ_ERR_STATE, "append after flush: %s", cq_status_name(st));
    st = cq_cache_append_f32(c, 1, Kf, Vf, 1, &e);
    CHECK(st == CQ_ERR_STATE || st == CQ_ERR_NONFINITE, "f32 append after flush: %s",
          cq_status_name(st));
    CHECK(unchanged(c, &s1), "cache changed by appends to a sealed cache");
    free(s0.img);
    free(s1.img);
    cq_cache_free(c);
}

/* -0.0, subnormals, +-65504 are accepted and read back per the contract */
static void specials_accepted(void) {
    const uint16_t sp[] = {0x8000, 0x0000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x7BFF, 0xFBFF, 0x0400};
    const uint32_t ns = sizeof sp / sizeof sp[0];
    const uint32_t T = 3 * G + 3; /* sinks, committed groups, in-flight tokens */
    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
    cq_rng r;
    cq_rng_seed(&r, 9);
    for (size_t i = 0; i < (size_t)T * H * D; i++) {
        K[i] = sp[cq_rng_below(&r, ns)];
        V[i] = sp[cq_rng_below(&r, ns)];
    }
    float *k = malloc((size_t)T * D * 4), *v = malloc((size_t)T * D * 4);
    float *want = malloc((size_t)T * D * 4);
    uint16_t *blk = malloc((size_t)T * D * 2);
    /* fp16 cache: every bit pattern comes back exactly */
    cq_cache *c = make(CQ_CODEC_FP16, CQ_CODEC_FP16, 0);
    cq_err e;
    CHECK(c && cq_cache_append(c, 0, K, V, T, &e) == CQ_OK, "fp16 specials append: %s", e.msg);
    long bad = 0;
    for (uint32_t h = 0; c && h < H; h++) {
        CHECK(cq_cache_read(c, 0, h, 0, T, k, v, &e) == CQ_OK, "read: %s", e.msg);
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t d = 0; d < D; d++) {
                float a = cq_f16_to_f32(K[((size_t)t * H + h) * D + d]);
                float b = cq_f16_to_f32(V[((size_t)t * H + h) * D + d]);
                bad += memcmp(&a, &k[(size_t)t * D + d], 4) != 0;
                bad += memcmp(&b, &v[(size_t)t * D + d], 4) != 0;
            }
    }
    CHECK(bad == 0, "fp16 cache: %ld specials did not read back bit-exactly", bad);
    cq_cache_free(c);
    /* CQ-8 / CQ-4 cache: read-back equals the codec's reference encode + decode */
    cq_codec_id kv[2] = {CQ_CODEC_CQ8, CQ_CODEC_CQ4};
    for (int i = 0; i < 2; i++) {
        c = make(kv[i], kv[i], 0);
        CHECK(c && cq_cache_append(c, 1, K, V, T, &e) == CQ_OK, "specials append: %s", e.msg);
        if (!c) continue;
        cq_cache_flush(c, NULL);
        cq_params p;
        cq_params_init(&p, i ? CQ_TIER_CQ4 : CQ_TIER_CQ8, D, G, NULL, 0, NULL);
        bad = 0;
        for (uint32_t h = 0; h < H; h++) {
            cq_cache_read(c, 1, h, 0, T, k, v, NULL);
            /* values: per token */
            for (uint32_t t = 0; t < T; t++) {
                for (uint32_t d = 0; d < D; d++) blk[d] = V[((size_t)t * H + h) * D + d];
                uint8_t codes[D];
                uint16_t scale;
                if (t < S) {
                    for (uint32_t d = 0; d < D; d++) want[d] = cq_f16_to_f32(blk[d]);
                } else {
                    cq_encode_token(blk, D, i ? 4 : 8, codes, &scale, t, NULL);
                    cq_decode_token(codes, scale, D, i ? 4 : 8, want);
                }
                bad += memcmp(want, v + (size_t)t * D, D * 4) != 0;
            }
            /* keys: CQ-8 per token; CQ-4 in groups of G past the sinks (last one partial) */
            for (uint32_t t = 0; t < T; t++)
                for (uint32_t d = 0; d < D; d++) blk[(size_t)t * D + d] = K[((size_t)t * H + h) * D + d];
            for (uint32_t t = 0; t < S; t++)
                for (uint32_t d = 0; d < D; d++)
                    bad += memcmp(&(float){cq_f16_to_f32(blk[t * D + d])}, &k[t * D + d], 4) != 0;
            for (uint32_t t0 = S; t0 < T; t0 += i ? G : 1) {
                uint32_t g = i ? (T - t0 < G ? T - t0 : G) : 1;
                uint8_t pay[G * D];
                uint16_t sc[D], side[1];
                if (i) {
                    cq_encode_key_group(&p, blk + (size_t)t0 * D, g, pay, sc, side, t0, NULL);
                    cq_decode_key_group_rows(&p, pay, sc, side, g, 0, g, want);
                } else {
                    cq_encode_token(blk + (size_t)t0 * D, D, 8, pay, sc, t0, NULL);
                    cq_decode_token(pay, sc[0], D, 8, want);
                }
                bad += memcmp(want, k + (size_t)t0 * D, (size_t)g * D * 4) != 0;
            }
        }
        CHECK(bad == 0, "%s cache: %ld rows of specials differ from the reference",
              i ? "CQ-4" : "CQ-8", bad);
        cq_cache_free(c);
    }
    /* fp32 input: -0.0, fp32 subnormals (round to +-0), 65504 and 65519 (rounds to 65504) */
    c = make(CQ_CODEC_FP16, CQ_CODEC_FP16, 0);
    float f[H * D];
    const float fs[] = {-0.0f, 1e-40f, -1e-40f, 65504.0f, -65504.0f, 65519.0f, 6e-8f, -6e-8f};
    for (uint32_t i = 0; i < H * D; i++) f[i] = fs[i % 8];
    CHECK(c && cq_cache_append_f32(c, 0, f, f, 1, &e) == CQ_OK, "f32 specials: %s", e.msg);
    float back[D];
    if (c) cq_cache_read(c, 0, 0, 0, 1, back, NULL, NULL);
    bad = 0;
    for (uint32_t d = 0; d < D; d++) {
        float w = cq_f16_to_f32(cq_f32_to_f16(f[d]));
        bad += memcmp(&w, &back[d], 4) != 0;
    }
    CHECK(bad == 0, "f32 specials read back as their fp16 rounding");
    CHECK(signbit(back[0]) && back[0] == 0.0f && back[3] == 65504.0f && back[5] == 65504.0f,
          "-0.0 keeps its sign; 65519 rounds to 65504");
    cq_cache_free(c);
    free(K);
    free(V);
    free(k);
    free(v);
    free(want);
    free(blk);
}

/* ------------------------------------------------------------- create */

static void create_matrix(void) {
    struct {
        const char *what;
        uint32_t nl, h, d, g;
        cq_codec_id key;
        int masks; /* 0 none, 1 valid, 2 k = D, 3 k = D - 1 (valid) */
        const char *kernels;
        cq_status want;
    } cases[] = {
        {"odd D", 2, 2, 15, 8, CQ_CODEC_CQ4, 0, NULL, CQ_ERR_DIM},
        {"D above the limit", 2, 2, CQ_MAX_DIM + 2, 8, CQ_CODEC_CQ4, 0, NULL, CQ_ERR_DIM},
        {"D = 0", 2, 2, 0, 8, CQ_CODEC_CQ4, 0, NULL, CQ_ERR_DIM},
        {"D = 1", 2, 2, 1, 8, CQ_CODEC_CQ4, 0, NULL, CQ_ERR_DIM},
        {"no layers", 0, 2, 16, 8, CQ_CODEC_CQ4, 0, NULL, CQ_ERR_SHAPE},
        {"no kv heads", 2, 0, 16, 8, CQ_CODEC_CQ4, 0, NULL, CQ_ERR_SHAPE},
        {"G too large", 2, 2, 16, 70000, CQ_CODEC_CQ4, 0, NULL, CQ_ERR_GROUP},
        {"CQ-4+ without masks", 2, 2, 16, 8, CQ_CODEC_CQ4P, 0, NULL, CQ_ERR_OUTLIERS},
        {"CQ-4+ with k = D", 2, 2, 16, 8, CQ_CODEC_CQ4P, 2, NULL, CQ_ERR_OUTLIERS},
        {"unknown codec", 2, 2, 16, 8, (cq_codec_id)999, 0, NULL, CQ_ERR_TIER},
        {"unknown kernels", 2, 2, 16, 8, CQ_CODEC_CQ4, 0, "sse9", CQ_ERR_UNSUPPORTED},
        {"G = 0 means the default", 2, 2, 16, 0, CQ_CODEC_CQ4, 0, NULL, CQ_OK},
        {"CQ-4+ with k = D - 1", 2, 2, 16, 8, CQ_CODEC_CQ4P, 3, NULL, CQ_OK},
        {"D = 512", 1, 1, CQ_MAX_DIM, 8, CQ_CODEC_CQ4, 0, NULL, CQ_OK},
        {"D = 2", 1, 1, 2, 8, CQ_CODEC_CQ4, 0, NULL, CQ_OK},
    };
    uint8_t masks[4 * (CQ_MAX_DIM + 2)];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cq_cache_config cfg;
        cq_cache_config_default(&cfg, cases[i].nl, cases[i].h, cases[i].d);
        cfg.key_codec = cases[i].key;
        cfg.group = cases[i].g;
        cfg.kernels = cases[i].kernels;
        memset(masks, 0, sizeof masks);
        for (uint32_t j = 0; j < 4; j++)
            for (uint32_t d = 0; d < cases[i].d && d < CQ_MAX_DIM + 2; d++)
                masks[j * cases[i].d + d] =
                    cases[i].masks == 2 || (cases[i].masks == 3 && d > 0) ||
                    (cases[i].masks == 1 && d == 1);
        if (cases[i].masks) cfg.outlier_masks = masks;
        cq_cache *c = (cq_cache *)(uintptr_t)1;
        cq_err e;
        cq_status st = cq_cache_create(&cfg, &c, &e);
        CHECK(st == cases[i].want && (st ? c == NULL && e.code == st : c != NULL),
              "create '%s': got %s (%s), want %s", cases[i].what, cq_status_name(st), e.msg,
              cq_status_name(cases[i].want));
        if (!st && c) {
            if (cases[i].g == 0)
                CHECK(cq_cache_get_config(c)->group == CQ_DEFAULT_GROUP, "G = 0 -> %d",
                      CQ_DEFAULT_GROUP);
            cq_cache_free(c);
        }
    }
    cq_cache *c = NULL;
    CHECK(cq_cache_create(NULL, &c, NULL) == CQ_ERR_NULL, "create(NULL)");
}

/* ------------------------------------------------------------- params */

static void params_matrix(void) {
    const uint16_t ok2[] = {1, 5}, dup[] = {3, 3}, unsorted[] = {5, 1}, oob[] = {1, 16};
    uint16_t all[16];
    for (int i = 0; i < 16; i++) all[i] = (uint16_t)i;
    struct {
        const char *what;
        cq_tier tier;
        uint32_t d, g;
        const uint16_t *o;
        uint32_t k;
        cq_status want;
    } cases[] = {
        {"G = 0", CQ_TIER_CQ4, 16, 0, NULL, 0, CQ_ERR_GROUP},
        {"odd D", CQ_TIER_CQ4, 15, 8, NULL, 0, CQ_ERR_DIM},
        {"D above the limit", CQ_TIER_CQ4, 514, 8, NULL, 0, CQ_ERR_DIM},
        {"k = D", CQ_TIER_CQ4P, 16, 8, all, 16, CQ_ERR_OUTLIERS},
        {"k > D", CQ_TIER_CQ4P, 8, 8, all, 9, CQ_ERR_OUTLIERS},
        {"duplicate channels", CQ_TIER_CQ4P, 16, 8, dup, 2, CQ_ERR_OUTLIERS},
        {"unsorted channels", CQ_TIER_CQ4P, 16, 8, unsorted, 2, CQ_ERR_OUTLIERS},
        {"channel >= D", CQ_TIER_CQ4P, 16, 8, oob, 2, CQ_ERR_OUTLIERS},
        {"outliers on CQ-4", CQ_TIER_CQ4, 16, 8, ok2, 2, CQ_ERR_OUTLIERS},
        {"k > 0, list NULL", CQ_TIER_CQ4P, 16, 8, NULL, 2, CQ_ERR_NULL},
        {"unknown tier", (cq_tier)7, 16, 8, NULL, 0, CQ_ERR_TIER},
        {"valid CQ-4+", CQ_TIER_CQ4P, 16, 8, ok2, 2, CQ_OK},
        {"valid k = D - 1", CQ_TIER_CQ4P, 16, 8, all + 1, 15, CQ_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cq_params p, before;
        memset(&p, 0xA5, sizeof p);
        memcpy(&before, &p, sizeof p);
        cq_err e;
        cq_status st = cq_params_init(&p, cases[i].tier, cases[i].d, cases[i].g, cases[i].o,
                                      cases[i].k, &e);
        CHECK(st == cases[i].want, "params '%s': got %s, want %s", cases[i].what,
              cq_status_name(st), cq_status_name(cases[i].want));
        if (st) CHECK(memcmp(&p, &before, sizeof p) == 0, "params '%s': written on failure",
                      cases[i].what);
    }
}

/* ------------------------------------------------------------- mask file */

static void mask_matrix(void) {
    struct {
        const char *what, *text;
        cq_status want;
    } cases[] = {
        {"valid", "# c\n0 0 1 5\n0 1 2 3\n", CQ_OK},
        {"duplicate channel", "0 0 1 1\n0 1 2 3\n", CQ_ERR_OUTLIERS},
        {"unsorted channels", "0 0 5 1\n0 1 2 3\n", CQ_ERR_OUTLIERS},
        {"channel >= D", "0 0 1 16\n0 1 2 3\n", CQ_ERR_OUTLIERS},
        {"head listed twice", "0 0 1 5\n0 0 2 3\n", CQ_ERR_FORMAT},
        {"head missing", "0 0 1 5\n", CQ_ERR_FORMAT},
        {"head out of range", "0 0 1 5\n0 1 2 3\n0 2 1 2\n", CQ_ERR_RANGE},
        {"garbage", "0 0 x\n0 1 2 3\n", CQ_ERR_FORMAT},
        {"binary", "0 0 1\0 5\n", CQ_ERR_FORMAT},
    };
    char path[] = "/tmp/cq_mask_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "wb");
        size_t n = strlen(cases[i].text);
        if (strcmp(cases[i].what, "binary") == 0) n = 9;
        fwrite(cases[i].text, 1, n, f);
        fclose(f);
        uint8_t m[2 * D];
        cq_err e;
        cq_status st = cq_mask_load(path, 1, 2, D, m, &e);
        CHECK(st == cases[i].want, "mask file '%s': got %s (%s), want %s", cases[i].what,
              cq_status_name(st), e.msg, cq_status_name(cases[i].want));
    }
    unlink(path);
}

/* ------------------------------------------------------- read / attend */

static void read_attend_matrix(void) {
    cq_cache *c = make(CQ_CODEC_CQ4P, CQ_CODEC_CQ8, 0);
    if (!c) return;
    cq_rng r;
    cq_rng_seed(&r, 5);
    uint16_t K[20 * H * D], V[20 * H * D];
    ctu_fill_f16(&r, K, 20 * H * D, 1.0f, 1);
    ctu_fill_f16(&r, V, 20 * H * D, 1.0f, 1);
    CHECK(cq_cache_append(c, 0, K, V, 20, NULL) == CQ_OK, "append");
    snap s0;
    take_snap(c, &s0);
    float out[21 * D], q[4 * H * D];
    for (size_t i = 0; i < 4 * H * D; i++) q[i] = (float)cq_rng_normal(&r);
    cq_err e;
    CHECK(cq_cache_read(c, 0, 0, 5, 4, out, NULL, &e) == CQ_ERR_RANGE, "read t0 > t1");
    CHECK(cq_cache_read(c, 0, 0, 0, 21, out, NULL, &e) == CQ_ERR_RANGE, "read past the end");
    CHECK(cq_cache_read(c, 1, 0, 0, 1, out, NULL, &e) == CQ_ERR_RANGE, "read past layer tokens");
    CHECK(cq_cache_read(c, NL, 0, 0, 1, out, NULL, &e) == CQ_ERR_RANGE, "read layer out of range");
    CHECK(cq_cache_read(c, 0, H, 0, 1, out, NULL, &e) == CQ_ERR_RANGE, "read head out of range");
    CHECK(cq_cache_read(NULL, 0, 0, 0, 1, out, NULL, &e) == CQ_ERR_NULL, "read NULL cache");
    CHECK(cq_cache_read(c, 0, 0, 7, 7, out, out, &e) == CQ_OK, "empty read range");
    CHECK(cq_cache_read(c, 1, 0, 0, 0, NULL, NULL, &e) == CQ_OK, "empty read of an empty layer");
    CHECK(cq_cache_attend(c, 0, q, 3, out, NULL, &e) == CQ_ERR_SHAPE, "n_q_heads not a multiple");
    CHECK(cq_cache_attend(c, 0, q, 0, out, NULL, &e) == CQ_ERR_SHAPE, "n_q_heads = 0");
    CHECK(cq_cache_attend(c, NL, q, H, out, NULL, &e) == CQ_ERR_RANGE, "attend layer out of range");
    CHECK(cq_cache_attend(c, 1, q, H, out, NULL, &e) == CQ_ERR_STATE, "attend an empty layer");
    CHECK(cq_cache_attend(c, 0, NULL, H, out, NULL, &e) == CQ_ERR_NULL, "attend q NULL");
    q[3] = NAN;
    CHECK(cq_cache_attend(c, 0, q, H, out, NULL, &e) == CQ_ERR_NONFINITE, "attend NaN query");
    q[3] = 0.5f;
    CHECK(cq_cache_attend_prefill(c, 0, q, 2, 19, H, out, NULL, &e) == CQ_ERR_RANGE ||
              cq_cache_attend_prefill(c, 0, q, 2, 19, H, out, NULL, &e) == CQ_ERR_SHAPE,
          "prefill past the tokens: %s", e.msg);
    CHECK(unchanged(c, &s0), "read / attend changed the cache");
    free(s0.img);
    cq_cache_free(c);
}


/* ------------------------------------- hostile-pass defects (issue 15) */

/* force_generic is a 0/1 flag: any other value is refused at create, so every
 * cache that can be saved also loads (the loader refuses force_generic > 1). */
static void force_generic_flag(void) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, 1, D);
    cfg.force_generic = 7;
    cq_cache *c = NULL;
    cq_err e;
    CHECK(cq_cache_create(&cfg, &c, &e) == CQ_ERR_ARG && !c, "force_generic = 7: %s", e.msg);
    cq_cache_free(c);
    c = NULL;
    cfg.force_generic = 1;
    CHECK(cq_cache_create(&cfg, &c, &e) == CQ_OK, "force_generic = 1: %s", e.msg);
    if (!c) return;
    uint16_t K[3 * D], V[3 * D];
    cq_rng r;
    cq_rng_seed(&r, 15);
    ctu_fill_f16(&r, K, 3 * D, 1.0f, 0);
    ctu_fill_f16(&r, V, 3 * D, 1.0f, 0);
    CHECK(cq_cache_append(c, 0, K, V, 3, &e) == CQ_OK, "append: %s", e.msg);
    uint8_t *img = NULL;
    size_t len = 0;
    cq_cache *back = NULL;
    CHECK(cq_cache_save_mem(c, &img, &len, &e) == CQ_OK, "save: %s", e.msg);
    CHECK(cq_cache_load_mem(img, len, &back, &e) == CQ_OK, "a saved cache loads: %s", e.msg);
    CHECK(back && cq_cache_compare(c, back, &e) == CQ_OK, "loaded = saved: %s", e.msg);
    cq_cache_free(back);
    free(img);
    cq_cache_free(c);
}

/* A NaN, Inf, negative scale is refused by decode, prefill and the reference
 * (0 stays "1/sqrt(D)"); the cache is unchanged. */
static void scale_matrix(void) {
    cq_cache *c = make(CQ_CODEC_CQ4, CQ_CODEC_CQ4, 0);
    if (!c) return;
    cq_rng r;
    cq_rng_seed(&r, 16);
    uint16_t K[10 * H * D], V[10 * H * D];
    ctu_fill_f16(&r, K, 10 * H * D, 1.0f, 0);
    ctu_fill_f16(&r, V, 10 * H * D, 1.0f, 0);
    CHECK(cq_cache_append(c, 0, K, V, 10, NULL) == CQ_OK, "append");
    float q[2 * H * D], out[2 * H * D];
    for (size_t i = 0; i < 2 * H * D; i++) q[i] = (float)cq_rng_normal(&r);
    const float bad[] = {NAN, INFINITY, -INFINITY, -1.0f, -1e-30f};
    cq_err e;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cq_attn_opts o = {1, bad[i], 0, NULL};
        CHECK(cq_cache_attend(c, 0, q, H, out, &o, &e) == CQ_ERR_ARG, "decode scale %g",
              (double)bad[i]);
        CHECK(cq_cache_attend_prefill(c, 0, q, 2, 8, H, out, &o, &e) == CQ_ERR_ARG,
              "prefill scale %g", (double)bad[i]);
        CHECK(cq_cache_attend_ref(c, 0, q, 2, 8, H, out, bad[i], &e) == CQ_ERR_ARG,
              "reference scale %g", (double)bad[i]);
    }
    cq_attn_opts o = {1, 0.25f, 0, NULL};
    CHECK(cq_cache_attend(c, 0, q, H, out, &o, &e) == CQ_OK, "finite positive scale: %s", e.msg);
    cq_cache_free(c);
}

/* Finite but extreme queries against keys at 65504 overflow the fp32 scores: every
 * format and kernel table returns an error, never CQ_OK with NaN (the double
 * reference is finite there). */
static void extreme_query_matrix(void) {
    const cq_codec_id fmts[][2] = {{CQ_CODEC_FP16, CQ_CODEC_FP16}, {CQ_CODEC_CQ8, CQ_CODEC_CQ8},
                                   {CQ_CODEC_CQ4, CQ_CODEC_CQ4},   {CQ_CODEC_CQ4P, CQ_CODEC_CQ8},
                                   {CQ_CODEC_Q8_0, CQ_CODEC_Q4_0}};
    const char *kern[] = {"scalar", NULL};
    enum { T = 12 };
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++)
        for (int k = 0; k < 2; k++) {
            cq_cache *c = make_k(fmts[f][0], fmts[f][1], 0, kern[k]);
            CHECK(c != NULL, "create");
            if (!c) continue;
            uint16_t K[T * H * D], V[T * H * D];
            for (size_t i = 0; i < T * H * D; i++) {
                K[i] = (i & 1) ? 0x7BFFu : 0xFBFFu; /* +-65504 */
                V[i] = (uint16_t)(0x3C00u + i % 7);
            }
            cq_err e;
            CHECK(cq_cache_append(c, 0, K, V, T, &e) == CQ_OK, "append: %s", e.msg);
            /* every query row the same, so decode equals the reference's last row */
            float q[T * H * D], out[T * H * D], ref[T * H * D];
            for (size_t i = 0; i < T * H * D; i++) q[i] = (i & 1) ? 1e34f : -1e34f;
            CHECK(cq_cache_attend_ref(c, 0, q, T, 0, H, ref, 0.0f, &e) == CQ_OK, "reference");
            cq_status st = cq_cache_attend(c, 0, q, H, out, NULL, &e);
            if (st == CQ_OK) /* a result, then a right one */
                CHECK(ctu_rel_err(out, ref + (T - 1) * H * D, H * D) < 1e-2, "decode CQ_OK but "
                      "wrong: rel err %g", ctu_rel_err(out, ref + (T - 1) * H * D, H * D));
            int finite = 1;
            for (size_t i = 0; i < H * D; i++) finite &= isfinite(out[i]) != 0;
            CHECK(st != CQ_OK || finite, "%s/%s (%s): decode CQ_OK with non-finite output",
                  cq_codec_get(fmts[f][0])->name, cq_codec_get(fmts[f][1])->name,
                  kern[k] ? kern[k] : "auto");
            CHECK(st == CQ_OK || (st == CQ_ERR_OVERFLOW && finite),
                  "decode: %s, output zeroed", cq_status_name(st));
            st = cq_cache_attend_prefill(c, 0, q, T, 0, H, out, NULL, &e);
            finite = 1;
            for (size_t i = 0; i < T * H * D; i++) finite &= isfinite(out[i]) != 0;
            CHECK(st != CQ_OK || finite, "%s/%s (%s): prefill CQ_OK with non-finite output",
                  cq_codec_get(fmts[f][0])->name, cq_codec_get(fmts[f][1])->name,
                  kern[k] ? kern[k] : "auto");
            if (st == CQ_OK)
                CHECK(ctu_rel_err(out, ref, T * H * D) < 1e-2, "prefill CQ_OK but wrong: rel err %g",
                      ctu_rel_err(out, ref, T * H * D));
            finite = 1;
            for (size_t i = 0; i < T * H * D; i++) finite &= isfinite(ref[i]) != 0;
            CHECK(finite, "the double reference is finite");
            cq_cache_free(c);
        }
}

/* Some scores overflow fp32 and others do not: even tokens' keys are +-65504 aligned with
 * the +-1e34 query (score beyond fp32), odd tokens' keys are small (score near 0), and the
 * values tell them apart (1 and -1), so the double reference is V = 1. Every table and both
 * precisions must return the right result or CQ_ERR_OVERFLOW: a softmax exp that maps the
 * NaN of inf - inf to its floor gives every token the same weight, which is CQ_OK and wrong
 * (and, with FAST values, drops the committed values while the softmax sum keeps them). */
static void mixed_overflow_matrix(void) {
    const cq_codec_id fmts[][2] = {{CQ_CODEC_FP16, CQ_CODEC_FP16}, {CQ_CODEC_CQ8, CQ_CODEC_CQ8},
                                   {CQ_CODEC_CQ4, CQ_CODEC_CQ4},   {CQ_CODEC_CQ4P, CQ_CODEC_CQ4},
                                   {CQ_CODEC_Q8_0, CQ_CODEC_Q4_0}};
    const char *kern[] = {"scalar", "avx2", "avx512"};
    enum { T = 12 };
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++)
        for (int k = 0; k < 3; k++)
            for (uint32_t prec = CQ_ATTN_EXACT; prec <= CQ_ATTN_FAST; prec++) {
                cq_cache *c = make_k(fmts[f][0], fmts[f][1], 0, kern[k]);
                if (!c) { /* a SIMD=0 build or a CPU without the table */
                    CHECK(k > 0, "create");
                    continue;
                }
                uint16_t K[T * H * D], V[T * H * D];
                for (size_t i = 0; i < T * H * D; i++) {
                    const size_t t = i / (H * D);
                    if (t % 2 == 0) K[i] = (i & 1) ? 0x7BFFu : 0xFBFFu; /* +-65504 */
                    else K[i] = (i & 1) ? 0x3400u : 0xB400u;            /* +-0.25 */
                    V[i] = t % 2 == 0 ? 0x3C00u : 0xBC00u;              /* 1, -1 */
                }
                cq_err e;
                CHECK(cq_cache_append(c, 0, K, V, T, &e) == CQ_OK, "append: %s", e.msg);
                float q[T * H * D], out[T * H * D], ref[T * H * D];
                for (size_t i = 0; i < T * H * D; i++) q[i] = (i & 1) ? 1e34f : -1e34f;
                CHECK(cq_cache_attend_ref(c, 0, q, T, 0, H, ref, 0.0f, &e) == CQ_OK, "reference");
                const cq_attn_opts o = {1, 0.0f, prec, NULL};
                const char *fk = cq_codec_get(fmts[f][0])->name;
                const char *fv = cq_codec_get(fmts[f][1])->name;
                const char *pn = prec == CQ_ATTN_FAST ? "fast" : "exact";
                cq_status st = cq_cache_attend(c, 0, q, H, out, &o, &e);
                CHECK(st == CQ_OK || st == CQ_ERR_OVERFLOW, "decode: %s", cq_status_name(st));
                if (st == CQ_OK)
                    CHECK(ctu_rel_err(out, ref + (T - 1) * H * D, H * D) < 1e-2,
                          "%s/%s %s %s: decode CQ_OK but wrong: rel err %g", fk, fv, kern[k], pn,
                          ctu_rel_err(out, ref + (T - 1) * H * D, H * D));
                st = cq_cache_attend_prefill(c, 0, q, T, 0, H, out, &o, &e);
                CHECK(st == CQ_OK || st == CQ_ERR_OVERFLOW, "prefill: %s", cq_status_name(st));
                if (st == CQ_OK)
                    CHECK(ctu_rel_err(out, ref, T * H * D) < 1e-2,
                          "%s/%s %s %s: prefill CQ_OK but wrong: rel err %g", fk, fv, kern[k], pn,
                          ctu_rel_err(out, ref, T * H * D));
                cq_cache_free(c);
            }
}

/* page_tokens up to 2^20 is legal: a cache of 40 tokens saved from such a
 * configuration loads with the default options, and holds no huge page. */
static void page_tokens_roundtrip(void) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, 1, 128);
    cfg.key_codec = cfg.val_codec = CQ_CODEC_FP16;
    cfg.page_tokens = 1u << 20;
    cq_cache *c = NULL;
    cq_err e;
    CHECK(cq_cache_create(&cfg, &c, &e) == CQ_OK, "create: %s", e.msg);
    if (!c) return;
    static uint16_t K[40 * 128], V[40 * 128];
    cq_rng r;
    cq_rng_seed(&r, 17);
    ctu_fill_f16(&r, K, 40 * 128, 1.0f, 0);
    ctu_fill_f16(&r, V, 40 * 128, 1.0f, 0);
    CHECK(cq_cache_append(c, 0, K, V, 40, &e) == CQ_OK, "append: %s", e.msg);
    CHECK(cq_cache_allocated_bytes(c, -1) <= (8u << 20), "40 tokens hold %llu bytes",
          (unsigned long long)cq_cache_allocated_bytes(c, -1));
    char dir[] = "/tmp/cq_pagetok_XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/c.cqkv", dir);
    CHECK(cq_cache_save(c, path, &e) == CQ_OK, "save: %s", e.msg);
    cq_cache *back = NULL;
    CHECK(cq_cache_load(path, &back, &e) == CQ_OK, "the saved cache loads with the defaults: %s",
          e.msg);
    CHECK(back && cq_cache_compare(c, back, &e) == CQ_OK, "loaded = saved: %s", e.msg);
    unlink(path);
    rmdir(dir);
    cq_cache_free(back);
    cq_cache_free(c);
}

int main(void) {
    const cq_codec_id fused[][2] = {{CQ_CODEC_FP16, CQ_CODEC_FP16},
                                    {CQ_CODEC_CQ8, CQ_CODEC_CQ8},
                                    {CQ_CODEC_CQ4, CQ_CODEC_CQ4},
                                    {CQ_CODEC_CQ4P, CQ_CODEC_CQ8},
                                    {CQ_CODEC_CQ4, CQ_CODEC_CQ3ROT}};
    for (size_t i = 0; i < sizeof fused / sizeof fused[0]; i++) append_matrix(fused[i][0], fused[i][1]);
    specials_accepted();
    create_matrix();
    params_matrix();
    mask_matrix();
    read_attend_matrix();
    force_generic_flag();
    scale_matrix();
    extreme_query_matrix();
    mixed_overflow_matrix();
    page_tokens_roundtrip();
    return cq_test_done("test_cache_badinput");
}
