/* SPDX-License-Identifier: MIT */
/*
 * test_codec.c - the tiers as byte streams (src/codec/cq_tier.c, cq3rot.c,
 * codec_cq.c): nibble order, per-group byte padding, the -0.0 rules, the
 * clamp seen from the encoder and the decoders, refusal of NaN/Inf by every
 * encode entry point (token and channel named, destinations untouched),
 * canaries past the end of every destination, parameter validation, stream
 * sizes against the shipped golden vectors, and the registry adapters
 * against the golden vectors' canonical streams (and CQ-3-rot against the
 * real-model slices).
 */
#include <dirent.h>

#include "cq_codec.h"
#include "cq_registry.h"
#include "cq_test.h"
#include "cq_util.h"
#include "cq_vectors.h"
#include "util/cq_exact.h"

#define CANARY 0xA5
#define PAD 32 /* canary bytes after every destination */

/* A heap buffer of n bytes followed by PAD canary bytes, all set to CANARY. */
static uint8_t *canary_alloc(size_t n) {
    uint8_t *b = malloc(n + PAD);
    if (!b) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memset(b, CANARY, n + PAD);
    return b;
}
static int all_canary(const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (b[i] != CANARY) return 0;
    return 1;
}

static uint16_t rand_f16(cq_rng *r) {
    return cq_f64_to_f16(cq_rng_normal(r) * (cq_rng_below(r, 4) == 0 ? 20.0 : 1.0));
}

/* --------------------------------------------------------------- packing */

static void test_nibble_order(void) {
    /* scale 1.0 (amax 7): codes equal the inputs */
    uint16_t x[6] = {0x4700 /*7*/, 0xBC00 /*-1*/, 0x4000 /*2*/, 0xC200 /*-3*/, 0x0000, 0xC700 /*-7*/};
    uint8_t codes[3 + PAD];
    memset(codes, CANARY, sizeof codes);
    uint16_t s = 0;
    cq_err e;
    CHECK(cq_encode_token(x, 6, 4, codes, &s, 0, &e) == CQ_OK, "encode");
    CHECK(s == 0x3C00, "scale 1.0, got %04x", s);
    CHECK(codes[0] == 0xF7 && codes[1] == 0xD2 && codes[2] == 0x90,
          "element 2i in the low nibble: %02x %02x %02x", codes[0], codes[1], codes[2]);
    CHECK(all_canary(codes + 3, PAD), "INT4 token wrote past D/2 bytes");
    /* INT8: one two's-complement byte per element */
    uint16_t y[2] = {0x57F0 /*127*/, 0xD7F0 /*-127*/};
    uint8_t c8[2 + PAD];
    memset(c8, CANARY, sizeof c8);
    CHECK(cq_encode_token(y, 2, 8, c8, &s, 0, &e) == CQ_OK && s == 0x3C00, "INT8 scale 1.0");
    CHECK(c8[0] == 0x7F && c8[1] == 0x81, "INT8 bytes %02x %02x", c8[0], c8[1]);
    CHECK(all_canary(c8 + 2, PAD), "INT8 token wrote past D bytes");
    /* the inline helpers */
    uint8_t b[2] = {0, 0};
    cq_nibble_put(b, 0, -8);
    cq_nibble_put(b, 1, 7);
    cq_nibble_put(b, 2, -1);
    CHECK(b[0] == 0x78 && b[1] == 0x0F, "nibble_put: %02x %02x", b[0], b[1]);
    CHECK(cq_nibble_get(b, 0) == -8 && cq_nibble_get(b, 1) == 7 && cq_nibble_get(b, 2) == -1 &&
              cq_nibble_get(b, 3) == 0,
          "nibble_get sign-extends");
}

static void test_group_padding(void) {
    /* CQ-4+ D=4, k=1 (channel 2): 3 kept channels; G=3, T=4: groups of 3 and 1 tokens.
     * Group 0: 9 codes -> 5 bytes (last high nibble 0); group 1: 3 codes -> 2 bytes. */
    cq_params p;
    uint16_t outl[1] = {2};
    CHECK(cq_params_init(&p, CQ_TIER_CQ4P, 4, 3, outl, 1, NULL) == CQ_OK, "params");
    /* every kept channel has amax 7 in each group -> scale 1.0, codes = values */
    static const int vals[4][4] = {{7, -7, 99, 1}, {2, 3, 99, -4}, {-5, 6, 99, 7}, {7, 7, 99, -7}};
    uint16_t K[16];
    for (int t = 0; t < 4; t++)
        for (int c = 0; c < 4; c++)
            K[t * 4 + c] = c == 2 ? (uint16_t)(0x5000 + t) : cq_f64_to_f16(vals[t][c]);
    cq_stream_sizes sz;
    CHECK(cq_stream_sizes_of(&p, 4, &sz) == CQ_OK && sz.key_payload == 7 && sz.key_scales == 6 &&
              sz.sidecar == 4 && sz.key_groups == 2,
          "sizes: payload %zu scales %zu sidecar %zu groups %u", sz.key_payload, sz.key_scales,
          sz.sidecar, sz.key_groups);
    uint8_t *pay = canary_alloc(7);
    uint8_t *sc = canary_alloc(12), *side = canary_alloc(8);
    cq_key_stream ks = {pay, (uint16_t *)(void *)sc, (uint16_t *)(void *)side};
    CHECK(cq_encode_keys(&p, K, 4, &ks, NULL) == CQ_OK, "encode");
    /* group 0 codes in order: 7,-7,1, 2,3,-4, -5,6,7 ; group 1: 7,7,-7 */
    static const uint8_t want[7] = {0x97, 0x21, 0xC3, 0x6B, 0x07, 0x77, 0x09};
    CHECK(memcmp(pay, want, 7) == 0, "payload %02x %02x %02x %02x %02x | %02x %02x", pay[0], pay[1],
          pay[2], pay[3], pay[4], pay[5], pay[6]);
    CHECK(all_canary(pay + 7, PAD) && all_canary(sc + 12, PAD) && all_canary(side + 8, PAD),
          "key streams written past their sizes");
    const uint16_t *side16 = (const uint16_t *)(const void *)side;
    CHECK(side16[0] == 0x5000 && side16[3] == 0x5003, "sidecar holds the raw outlier fp16");
    /* one group alone, and partial row decode */
    uint8_t gp[5 + PAD];
    memset(gp, CANARY, sizeof gp);
    uint16_t gs[3], gside[3];
    CHECK(cq_key_group_bytes(&p, 3) == 5 && cq_key_group_bytes(&p, 1) == 2, "group bytes");
    CHECK(cq_encode_key_group(&p, K, 3, gp, gs, gside, 0, NULL) == CQ_OK && memcmp(gp, want, 5) == 0,
          "single group = first group of the block");
    CHECK(all_canary(gp + 5, PAD), "group payload overrun");
    float rows[2 * 4 + 1];
    rows[8] = 12345.0f;
    cq_decode_key_group_rows(&p, gp, gs, gside, 3, 1, 3, rows);
    CHECK(rows[0] == 2.0f && rows[1] == 3.0f && rows[3] == -4.0f && rows[4] == -5.0f &&
              rows[7] == 7.0f && rows[2] == cq_f16_to_f32(0x5001) && rows[8] == 12345.0f,
          "rows [1,3) of a group");
    free(pay);
    free(sc);
    free(side);
}

static void test_neg_zero(void) {
    /* kept channel -0.0 and tiny negatives -> code 0 -> +0.0; outlier -0.0 -> 0x80000000 */
    cq_params p;
    uint16_t outl[1] = {1};
    CHECK(cq_params_init(&p, CQ_TIER_CQ4P, 4, 8, outl, 1, NULL) == CQ_OK, "params");
    /* t0: -0.0, -0.0 (outlier), 7, -0.0;  t1: -2^-24, +0.0 (outlier), 0, -0.0 */
    uint16_t K[8] = {0x8000, 0x8000, 0x4700, 0x8000, /* */ 0x8001, 0x0000, 0x0000, 0x8000};
    uint8_t pay[8];
    uint16_t sc[8], side[4];
    cq_key_stream ks = {pay, sc, side};
    CHECK(cq_encode_keys(&p, K, 2, &ks, NULL) == CQ_OK, "encode");
    float out[8];
    CHECK(cq_decode_keys(&p, pay, sc, side, 2, out) == CQ_OK, "decode");
    CHECK(cq_f32_bits(out[0]) == 0, "kept -0.0 decodes to +0.0 (got %08x)", cq_f32_bits(out[0]));
    CHECK(cq_f32_bits(out[3]) == 0 && cq_f32_bits(out[7]) == 0 && cq_f32_bits(out[4]) == 0,
          "kept -tiny / -0.0 -> +0.0");
    CHECK(cq_f32_bits(out[1]) == 0x80000000u, "outlier -0.0 decodes to 0x80000000 (got %08x)",
          cq_f32_bits(out[1]));
    CHECK(cq_f32_bits(out[5]) == 0, "outlier +0.0 -> +0.0");
    CHECK(sc[0] == 0x0400 && sc[2] == 0x0400, "all-zero kept column gets the 2^-14 floor");
    /* values and CQ-8: -0.0 -> +0.0 */
    cq_params v;
    CHECK(cq_params_init(&v, CQ_TIER_CQ8, 4, 8, NULL, 0, NULL) == CQ_OK, "params cq8");
    uint8_t vp[8];
    uint16_t vs[2];
    cq_val_stream vst = {vp, vs};
    CHECK(cq_encode_values(&v, K, 2, &vst, NULL) == CQ_OK, "encode values");
    cq_decode_values(&v, vp, vs, 2, out);
    long negz = 0;
    for (int i = 0; i < 8; i++) negz += cq_f32_bits(out[i]) == 0x80000000u;
    CHECK(negz == 0, "no value decodes to -0.0");
}

static void test_clamp_and_decoders(void) {
    /* the encoder never emits -8 / -128, even when -amax is the extreme element */
    cq_rng r;
    cq_rng_seed(&r, 0xC1A3Bull);
    long minus8 = 0, minus128 = 0, tokens = 0;
    uint16_t x[64];
    uint8_t c4[32], c8[64];
    for (int it = 0; it < 20000; it++) {
        for (int c = 0; c < 64; c++) x[c] = rand_f16(&r);
        x[cq_rng_below(&r, 64)] |= 0x8000; /* a negative element, often the extreme one */
        if (it % 3 == 0) {                 /* -amax exactly at the top of the range */
            uint16_t a = cq_amax_f16(x, 64, 1);
            x[cq_rng_below(&r, 64)] = (uint16_t)(a | 0x8000);
        }
        uint16_t s;
        cq_encode_token(x, 64, 4, c4, &s, it, NULL);
        cq_encode_token(x, 64, 8, c8, &s, it, NULL);
        for (int c = 0; c < 64; c++) {
            minus8 += cq_nibble_get(c4, (size_t)c) == -8;
            minus128 += c8[c] == 0x80;
        }
        tokens++;
    }
    CHECK(minus8 == 0 && minus128 == 0, "encoder emitted -8 %ld times, -128 %ld times", minus8,
          minus128);
    /* decoders accept -8 and -128 */
    uint8_t b4[2] = {0x88, 0x78}, b8[2] = {0x80, 0x7F};
    float o[4];
    cq_decode_token(b4, 0x3C00, 4, 4, o);
    CHECK(o[0] == -8.0f && o[1] == -8.0f && o[2] == -8.0f && o[3] == 7.0f, "INT4 decode of -8");
    cq_decode_token(b8, 0x4000, 2, 8, o);
    CHECK(o[0] == -256.0f && o[1] == 254.0f, "INT8 decode of -128");
    cq_params p;
    CHECK(cq_params_init(&p, CQ_TIER_CQ4, 2, 4, NULL, 0, NULL) == CQ_OK, "params");
    uint16_t ks[2] = {0x3C00, 0x3800};
    uint8_t kp[1] = {0x88};
    CHECK(cq_decode_keys(&p, kp, ks, NULL, 1, o) == CQ_OK && o[0] == -8.0f && o[1] == -4.0f,
          "key decode of -8");
}

/* ------------------------------------------------------ non-finite input */

static const uint16_t nonfinite[] = {0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFFFF, 0x7DFF};

static int names_location(const cq_err *e, int64_t t, int32_t c) {
    char tok[48], ch[48];
    snprintf(tok, sizeof tok, "token %lld", (long long)t);
    snprintf(ch, sizeof ch, "channel %d", c);
    return e->code == CQ_ERR_NONFINITE && e->token == t && e->channel == c && strstr(e->msg, tok) &&
           strstr(e->msg, ch);
}

static void test_nonfinite(void) {
    const uint32_t D = 64, T = 40, G = 16;
    uint16_t outl[2] = {0, 63};
    cq_rng r;
    cq_rng_seed(&r, 0x1AFull);
    uint16_t *X = malloc((size_t)T * D * 2);
    for (size_t i = 0; i < (size_t)T * D; i++) X[i] = rand_f16(&r);
    /* positions: first, an outlier channel, the last group, the very last element */
    static const uint32_t pos[][2] = {{0, 0}, {0, 5}, {17, 63}, {33, 20}, {39, 63}, {39, 0}};
    long bad = 0, cases = 0;
    for (size_t pi = 0; pi < sizeof pos / sizeof pos[0]; pi++)
        for (size_t ni = 0; ni < sizeof nonfinite / sizeof nonfinite[0]; ni++) {
            uint32_t t = pos[pi][0], c = pos[pi][1];
            size_t at = (size_t)t * D + c;
            uint16_t keep = X[at];
            X[at] = nonfinite[ni];
            cq_err e;
            /* one token */
            {
                uint8_t *codes = canary_alloc(D);
                uint8_t *s = canary_alloc(2);
                for (unsigned bits = 4; bits <= 8; bits += 4) {
                    cq_status st = cq_encode_token(X + (size_t)t * D, D, bits, codes,
                                                   (uint16_t *)(void *)s, 1000 + t, &e);
                    bad += st != CQ_ERR_NONFINITE || !names_location(&e, 1000 + t, (int32_t)c) ||
                           !all_canary(codes, D + PAD) || !all_canary(s, 2 + PAD);
                    cases++;
                }
                free(codes);
                free(s);
            }
            for (int tier = 0; tier < CQ_TIER_COUNT_; tier++) {
                cq_params p;
                cq_params_init(&p, (cq_tier)tier, D, G, outl, tier == CQ_TIER_CQ4P ? 2 : 0, NULL);
                cq_stream_sizes sz;
                cq_stream_sizes_of(&p, T, &sz);
                uint8_t *kp = canary_alloc(sz.key_payload), *ksc = canary_alloc(2 * sz.key_scales);
                uint8_t *side = canary_alloc(2 * sz.sidecar + 2), *vp = canary_alloc(sz.val_payload);
                uint8_t *vsc = canary_alloc(2 * sz.val_scales);
                cq_key_stream ks = {kp, (uint16_t *)(void *)ksc, (uint16_t *)(void *)side};
                cq_val_stream vs = {vp, (uint16_t *)(void *)vsc};
                cq_status st = cq_encode_keys(&p, X, T, &ks, &e);
                bad += st != CQ_ERR_NONFINITE || !names_location(&e, t, (int32_t)c);
                st = cq_encode_values(&p, X, T, &vs, &e);
                bad += st != CQ_ERR_NONFINITE || !names_location(&e, t, (int32_t)c);
                if (tier != CQ_TIER_CQ8) { /* the group holding the bad token */
                    uint32_t t0 = t / G * G, g = T - t0 < G ? T - t0 : G;
                    st = cq_encode_key_group(&p, X + (size_t)t0 * D, g, kp, (uint16_t *)(void *)ksc,
                                             (uint16_t *)(void *)side, 500 + t0, &e);
                    bad += st != CQ_ERR_NONFINITE || !names_location(&e, 500 + t, (int32_t)c);
                }
                bad += !all_canary(kp, sz.key_payload + PAD) || !all_canary(ksc, 2 * sz.key_scales + PAD) ||
                       !all_canary(side, 2 * sz.sidecar + 2 + PAD) ||
                       !all_canary(vp, sz.val_payload + PAD) || !all_canary(vsc, 2 * sz.val_scales + PAD);
                cases += 3;
                free(kp);
                free(ksc);
                free(side);
                free(vp);
                free(vsc);
            }
            /* CQ-3-rot */
            {
                uint8_t *wp = canary_alloc(cq3rot_payload_bytes(D, T)), *ws = canary_alloc(2 * T);
                cq_status st = cq3rot_encode(X, T, D, wp, (uint16_t *)(void *)ws, &e);
                bad += st != CQ_ERR_NONFINITE || !names_location(&e, t, (int32_t)c) ||
                       !all_canary(wp, cq3rot_payload_bytes(D, T) + PAD) || !all_canary(ws, 2 * T + PAD);
                cases++;
                free(wp);
                free(ws);
            }
            /* every registry codec, both roles it supports */
            uint8_t mask[64] = {0};
            mask[0] = mask[63] = 1;
            for (size_t ci = 0; ci < cq_codec_count(); ci++) {
                const cq_codec_traits *cd = cq_codec_at(ci);
                cq_codec_cfg cfg;
                cq_codec_cfg_default(&cfg, D);
                cfg.group = G;
                cfg.mask = mask;
                for (int role = 0; role < 2; role++) {
                    if (cq_codec_supports(cd, &cfg, (cq_role)role) != CQ_OK) continue;
                    size_t n = cd->packed_bytes(&cfg, (cq_role)role, T);
                    uint8_t *dst = canary_alloc(n);
                    cq_status st = cd->encode(&cfg, (cq_role)role, X, T, dst, n, &e);
                    int ok = st == CQ_ERR_NONFINITE && names_location(&e, t, (int32_t)c) &&
                             all_canary(dst, n + PAD);
                    if (!ok)
                        fprintf(stderr, "  registry %s role %d: %s token %lld channel %d '%s'\n",
                                cd->name, role, cq_status_name(st), (long long)e.token, e.channel, e.msg);
                    bad += !ok;
                    cases++;
                    free(dst);
                }
            }
            X[at] = keep;
        }
    CHECK(cases > 200, "%ld refusal cases", cases);
    CHECK(bad == 0, "%ld of %ld non-finite refusals wrong (status, location, or a write)", bad, cases);
    free(X);
}

/* ------------------------------------------------------------ parameters */

static void test_params(void) {
    cq_params p;
    cq_err e;
    uint16_t ok2[2] = {3, 9}, unsorted[2] = {9, 3}, dup[2] = {4, 4}, oor[2] = {3, 64};
    struct {
        const char *what;
        cq_tier tier;
        uint32_t D, G, k;
        const uint16_t *o;
        cq_status want;
    } cases[] = {
        {"valid CQ-4+", CQ_TIER_CQ4P, 64, 128, 2, ok2, CQ_OK},
        {"valid D=2", CQ_TIER_CQ4, 2, 1, 0, NULL, CQ_OK},
        {"valid D=512", CQ_TIER_CQ8, 512, 1, 0, NULL, CQ_OK},
        {"outlier 3 for D=2", CQ_TIER_CQ4P, 2, 5, 1, ok2, CQ_ERR_OUTLIERS},
        {"odd D", CQ_TIER_CQ4, 63, 128, 0, NULL, CQ_ERR_DIM},
        {"D=0", CQ_TIER_CQ4, 0, 128, 0, NULL, CQ_ERR_DIM},
        {"D=1", CQ_TIER_CQ8, 1, 128, 0, NULL, CQ_ERR_DIM},
        {"D=514", CQ_TIER_CQ4, 514, 128, 0, NULL, CQ_ERR_DIM},
        {"D=1024", CQ_TIER_CQ8, 1024, 128, 0, NULL, CQ_ERR_DIM},
        {"G=0", CQ_TIER_CQ4, 64, 0, 0, NULL, CQ_ERR_GROUP},
        {"G=0 CQ-8", CQ_TIER_CQ8, 64, 0, 0, NULL, CQ_ERR_GROUP},
        {"k>=D", CQ_TIER_CQ4P, 2, 8, 2, ok2, CQ_ERR_OUTLIERS},
        {"unsorted", CQ_TIER_CQ4P, 64, 8, 2, unsorted, CQ_ERR_OUTLIERS},
        {"duplicate", CQ_TIER_CQ4P, 64, 8, 2, dup, CQ_ERR_OUTLIERS},
        {"out of range", CQ_TIER_CQ4P, 64, 8, 2, oor, CQ_ERR_OUTLIERS},
        {"k>0 for CQ-4", CQ_TIER_CQ4, 64, 8, 2, ok2, CQ_ERR_OUTLIERS},
        {"k>0 for CQ-8", CQ_TIER_CQ8, 64, 8, 1, ok2, CQ_ERR_OUTLIERS},
        {"NULL outliers", CQ_TIER_CQ4P, 64, 8, 2, NULL, CQ_ERR_NULL},
        {"bad tier", (cq_tier)7, 64, 8, 0, NULL, CQ_ERR_TIER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&e, 0, sizeof e);
        cq_status st = cq_params_init(&p, cases[i].tier, cases[i].D, cases[i].G, cases[i].o, cases[i].k, &e);
        CHECK(st == cases[i].want, "%s: got %s, want %s", cases[i].what, cq_status_name(st),
              cq_status_name(cases[i].want));
        CHECK(e.code == st && (st == CQ_OK || strlen(e.msg) > 10), "%s: error record '%s'",
              cases[i].what, e.msg);
    }
    /* k = D-1 and k = 1 are legal; derived fields */
    uint16_t all_but_one[63];
    for (int i = 0; i < 63; i++) all_but_one[i] = (uint16_t)(i + 1);
    CHECK(cq_params_init(&p, CQ_TIER_CQ4P, 64, 128, all_but_one, 63, NULL) == CQ_OK && p.kept == 1 &&
              p.kept_idx[0] == 0 && p.k == 63 && p.mask[0] == 0 && p.mask[63] == 1,
          "k = D-1");
    /* mask form */
    uint8_t mask[8] = {1, 0, 0, 0, 0, 0, 0, 1}, full[4] = {1, 1, 1, 1};
    CHECK(cq_params_init_mask(&p, CQ_TIER_CQ4P, 8, 4, mask, NULL) == CQ_OK && p.k == 2 &&
              p.outlier[0] == 0 && p.outlier[1] == 7 && p.kept == 6 && p.kept_idx[0] == 1,
          "mask form");
    CHECK(cq_params_init_mask(&p, CQ_TIER_CQ4, 8, 4, mask, &e) == CQ_ERR_OUTLIERS, "mask on CQ-4");
    CHECK(cq_params_init_mask(&p, CQ_TIER_CQ4P, 4, 4, full, &e) == CQ_ERR_OUTLIERS, "mask k == D");
    CHECK(cq_params_init_mask(&p, CQ_TIER_CQ4P, 4, 4, NULL, &e) == CQ_ERR_NULL, "NULL mask");
    CHECK(cq_params_init(NULL, CQ_TIER_CQ4, 64, 8, NULL, 0, &e) == CQ_ERR_NULL, "NULL params");
    /* unit-level parameter checks */
    uint16_t x[4] = {0};
    uint8_t c[4];
    uint16_t s;
    CHECK(cq_encode_token(x, 3, 4, c, &s, 0, &e) == CQ_ERR_DIM, "token odd D");
    CHECK(cq_encode_token(x, 4, 5, c, &s, 0, &e) == CQ_ERR_ARG, "token bits 5");
    CHECK(cq_encode_token(NULL, 4, 4, c, &s, 0, &e) == CQ_ERR_NULL, "token NULL");
    cq_params_init(&p, CQ_TIER_CQ4, 4, 2, NULL, 0, NULL);
    uint16_t sc[4];
    CHECK(cq_encode_key_group(&p, x, 0, c, sc, NULL, 0, &e) == CQ_ERR_SHAPE, "group of 0 tokens");
    CHECK(cq_encode_key_group(&p, x, 3, c, sc, NULL, 0, &e) == CQ_ERR_SHAPE, "group larger than G");
    cq_params_init(&p, CQ_TIER_CQ8, 4, 2, NULL, 0, NULL);
    CHECK(cq_encode_key_group(&p, x, 1, c, sc, NULL, 0, &e) == CQ_ERR_TIER, "CQ-8 has no key groups");
    uint8_t wp[16];
    uint16_t wsc[2];
    uint16_t v96[96] = {0};
    CHECK(cq3rot_encode(v96, 1, 96, wp, wsc, &e) == CQ_ERR_DIM, "CQ-3-rot D=96");
    float o96[96];
    CHECK(cq3rot_decode(wp, wsc, 1, 96, o96) == CQ_ERR_DIM, "CQ-3-rot decode D=96");
    CHECK(cq_tier_parse("cq-4+", &(cq_tier){0}) == CQ_OK && cq_tier_parse("CQ5", &(cq_tier){0}) == CQ_ERR_TIER,
          "tier names");
    /* registry configuration errors */
    const cq_codec_traits *rot = cq_codec_find("cq3rot"), *c4p = cq_codec_find("cq4+");
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 96);
    CHECK(rot && cq_codec_supports(rot, &cfg, CQ_ROLE_VALUE) == CQ_ERR_DIM, "cq3rot D=96");
    cfg.dim = 64;
    CHECK(cq_codec_supports(rot, &cfg, CQ_ROLE_KEY) == CQ_ERR_UNSUPPORTED, "cq3rot keys");
    CHECK(c4p && cq_codec_supports(c4p, &cfg, CQ_ROLE_KEY) == CQ_ERR_OUTLIERS, "cq4+ keys need a mask");
    cfg.dim = 63;
    CHECK(cq_codec_supports(cq_codec_find("cq4"), &cfg, CQ_ROLE_VALUE) == CQ_ERR_DIM, "cq4 odd D");
    /* registry encode of a bad configuration: the status and a message that says why */
    uint16_t xx[64 * 2] = {0};
    uint8_t dd[1024];
    memset(&e, 0, sizeof e);
    CHECK(cq_codec_find("cq4")->encode(&cfg, CQ_ROLE_VALUE, xx, 2, dd, sizeof dd, &e) == CQ_ERR_DIM &&
              e.code == CQ_ERR_DIM && strstr(e.msg, "D=63"),
          "registry cq4, D=63: '%s'", e.msg);
    cfg.dim = 64;
    memset(&e, 0, sizeof e);
    CHECK(c4p->encode(&cfg, CQ_ROLE_KEY, xx, 2, dd, sizeof dd, &e) == CQ_ERR_OUTLIERS &&
              strstr(e.msg, "mask"),
          "registry cq4+ keys without a mask: '%s'", e.msg);
    cfg.group = 0;
    memset(&e, 0, sizeof e);
    CHECK(c4p->encode(&cfg, CQ_ROLE_VALUE, xx, 2, dd, sizeof dd, &e) == CQ_ERR_GROUP && strstr(e.msg, "G=0"),
          "registry G=0: '%s'", e.msg);
    cfg.group = 128;
    cfg.dim = 96;
    memset(&e, 0, sizeof e);
    CHECK(rot->encode(&cfg, CQ_ROLE_VALUE, xx, 1, dd, sizeof dd, &e) == CQ_ERR_DIM && strstr(e.msg, "D=96"),
          "registry cq3rot D=96: '%s'", e.msg);
}

/* --------------------------------------------- canaries on every success */

static void test_canaries_success(void) {
    static const struct { cq_tier tier; uint32_t D, T, G, k; } shapes[] = {
        {CQ_TIER_CQ8, 2, 1, 1, 0},      {CQ_TIER_CQ4, 2, 3, 1, 0},    {CQ_TIER_CQ4P, 2, 5, 2, 1},
        {CQ_TIER_CQ4P, 96, 37, 8, 3},   {CQ_TIER_CQ4, 32, 1, 128, 0}, {CQ_TIER_CQ4P, 512, 3, 2, 2},
        {CQ_TIER_CQ4P, 64, 130, 128, 63}, {CQ_TIER_CQ8, 256, 7, 4, 0},
    };
    cq_rng r;
    cq_rng_seed(&r, 0xCA7A27ull);
    long bad = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        uint32_t D = shapes[si].D, T = shapes[si].T, k = shapes[si].k;
        uint16_t outl[CQ_MAX_DIM];
        for (uint32_t i = 0; i < k; i++) outl[i] = (uint16_t)(D - k + i); /* last k channels */
        cq_params p;
        if (cq_params_init(&p, shapes[si].tier, D, shapes[si].G, outl, k, NULL) != CQ_OK) {
            bad++;
            continue;
        }
        size_t td = (size_t)T * D;
        uint16_t *X = malloc(td * 2);
        for (size_t i = 0; i < td; i++) X[i] = rand_f16(&r);
        cq_stream_sizes sz;
        cq_stream_sizes_of(&p, T, &sz);
        /* independent size formula */
        size_t want_kp = 0;
        if (p.tier == CQ_TIER_CQ8) want_kp = td;
        else
            for (uint32_t t0 = 0; t0 < T; t0 += p.group) {
                size_t g = T - t0 < p.group ? T - t0 : p.group;
                want_kp += (g * (D - k) + 1) / 2;
            }
        bad += sz.key_payload != want_kp || sz.sidecar != (size_t)T * k ||
               sz.val_payload != (p.tier == CQ_TIER_CQ8 ? td : td / 2) || sz.val_scales != T;
        uint8_t *kp = canary_alloc(sz.key_payload), *ksc = canary_alloc(2 * sz.key_scales);
        uint8_t *side = canary_alloc(2 * sz.sidecar), *vp = canary_alloc(sz.val_payload);
        uint8_t *vsc = canary_alloc(2 * sz.val_scales);
        uint8_t *ko = canary_alloc(4 * td), *vo = canary_alloc(4 * td);
        cq_key_stream ks = {kp, (uint16_t *)(void *)ksc, k ? (uint16_t *)(void *)side : NULL};
        cq_val_stream vs = {vp, (uint16_t *)(void *)vsc};
        bad += cq_encode_keys(&p, X, T, &ks, NULL) != CQ_OK;
        bad += cq_encode_values(&p, X, T, &vs, NULL) != CQ_OK;
        bad += cq_decode_keys(&p, kp, ks.scales, ks.sidecar, T, (float *)(void *)ko) != CQ_OK;
        bad += cq_decode_values(&p, vp, vs.scales, T, (float *)(void *)vo) != CQ_OK;
        int c_ok = all_canary(kp + sz.key_payload, PAD) && all_canary(ksc + 2 * sz.key_scales, PAD) &&
                   all_canary(side + 2 * sz.sidecar, PAD) && all_canary(vp + sz.val_payload, PAD) &&
                   all_canary(vsc + 2 * sz.val_scales, PAD) && all_canary(ko + 4 * td, PAD) &&
                   all_canary(vo + 4 * td, PAD);
        CHECK(c_ok, "shape %zu: a destination was written past its size", si);
        /* CQ-3-rot and the registry codecs */
        if (cq_is_pow2(D)) {
            size_t wn = cq3rot_payload_bytes(D, T);
            uint8_t *wp = canary_alloc(wn), *ws = canary_alloc(2 * T);
            bad += cq3rot_encode(X, T, D, wp, (uint16_t *)(void *)ws, NULL) != CQ_OK;
            bad += cq3rot_decode(wp, (uint16_t *)(void *)ws, T, D, (float *)(void *)vo) != CQ_OK;
            CHECK(all_canary(wp + wn, PAD) && all_canary(ws + 2 * T, PAD) && all_canary(vo + 4 * td, PAD),
                  "CQ-3-rot shape %zu wrote past its buffers", si);
            free(wp);
            free(ws);
        }
        for (size_t ci = 0; ci < cq_codec_count(); ci++) {
            const cq_codec_traits *cd = cq_codec_at(ci);
            cq_codec_cfg cfg;
            cq_codec_cfg_default(&cfg, D);
            cfg.group = p.group;
            cfg.mask = p.mask;
            for (int role = 0; role < 2; role++) {
                if (cq_codec_supports(cd, &cfg, (cq_role)role) != CQ_OK) continue;
                size_t n = cd->packed_bytes(&cfg, (cq_role)role, T);
                uint8_t *dst = canary_alloc(n), *out = canary_alloc(4 * td);
                cq_status st = cd->encode(&cfg, (cq_role)role, X, T, dst, n, NULL);
                cq_status st2 = cd->decode(&cfg, (cq_role)role, dst, n, T, (float *)(void *)out);
                CHECK(st == CQ_OK && st2 == CQ_OK && all_canary(dst + n, PAD) && all_canary(out + 4 * td, PAD),
                      "registry %s role %d shape %zu: %s/%s or overrun", cd->name, role, si,
                      cq_status_name(st), cq_status_name(st2));
                /* a short destination is refused without writing */
                if (n > 0) {
                    uint8_t *small = canary_alloc(n - 1);
                    CHECK(cd->encode(&cfg, (cq_role)role, X, T, small, n - 1, NULL) == CQ_ERR_BUFFER &&
                              all_canary(small, n - 1 + PAD),
                          "registry %s: short dst", cd->name);
                    CHECK(cd->decode(&cfg, (cq_role)role, dst, n - 1, T, (float *)(void *)out) != CQ_OK,
                          "registry %s: short src accepted", cd->name);
                    free(small);
                }
                free(dst);
                free(out);
            }
        }
        free(kp);
        free(ksc);
        free(side);
        free(vp);
        free(vsc);
        free(ko);
        free(vo);
        free(X);
    }
    CHECK(bad == 0, "%ld size/status failures on valid shapes", bad);
}

/* ----------------------------------------------------------- CQ-3-rot bits */

static void test_cq3rot_packing(void) {
    /* V = one-hot at channel j: its WHT is row j of the Hadamard matrix, entries +-1,
     * so code i is 3 when popcount(i & j) is even and -3 otherwise, at bits 3i.. LSB first */
    const uint32_t D = 16;
    for (uint32_t j = 0; j < D; j++) {
        uint16_t v[16] = {0};
        v[j] = 0x3C00;
        uint8_t pay[6 + PAD];
        uint16_t sc[1 + 4];
        memset(pay, CANARY, sizeof pay);
        CHECK(cq3rot_encode(v, 1, D, pay, sc, NULL) == CQ_OK, "encode one-hot %u", j);
        CHECK(sc[0] == cq_ref_scale(0x3C00, 3), "scale of +-1 rows");
        uint64_t bits = 0;
        for (int b = 0; b < 6; b++) bits |= (uint64_t)pay[b] << (8 * b);
        uint64_t want = 0;
        for (uint32_t i = 0; i < D; i++) {
            int code = __builtin_popcount(i & j) % 2 ? -3 : 3;
            want |= (uint64_t)((unsigned)code & 7u) << (3 * i);
        }
        CHECK(bits == want, "one-hot %u: 3-bit stream %012llx, want %012llx", j,
              (unsigned long long)bits, (unsigned long long)want);
        CHECK(all_canary(pay + 6, PAD), "CQ-3-rot payload overrun");
    }
    /* an encode whose rotation overflows fp16 is refused before any write */
    uint16_t big[4] = {0x7BFF, 0x7BFF, 0, 0};
    uint8_t pay[2 + PAD];
    uint16_t sc[2];
    memset(pay, CANARY, sizeof pay);
    sc[0] = sc[1] = 0xA5A5;
    cq_err e;
    CHECK(cq3rot_encode(big, 1, 4, pay, sc, &e) == CQ_ERR_OVERFLOW && e.token == 0 &&
              all_canary(pay, sizeof pay) && sc[0] == 0xA5A5,
          "overflowing rotation refused, nothing written");
    /* a token whose rotation fits but whose decode cannot (one-hot 8192, D=8: the decoder's
     * rotation reaches 8 * 8192 = 65536) is refused too, before any write (found by fuzz_codec) */
    uint16_t hot[2 * 8] = {0x3C00, 0, 0, 0, 0, 0, 0, 0, /* */ 0x7000, 0, 0, 0, 0, 0, 0, 0};
    uint8_t hp[6 + PAD];
    uint16_t hs[2] = {0xA5A5, 0xA5A5};
    memset(hp, CANARY, sizeof hp);
    CHECK(cq3rot_encode(hot, 2, 8, hp, hs, &e) == CQ_ERR_OVERFLOW && e.token == 1 &&
              all_canary(hp, sizeof hp) && hs[0] == 0xA5A5,
          "undecodable token refused with its index, nothing written (token %lld)", (long long)e.token);
    /* a crafted stream whose decode overflows reports it and emits a defined row */
    uint8_t crafted[3] = {0xFF, 0xFF, 0xFF}; /* codes -1 everywhere (D=8) */
    uint16_t huge[1] = {0x7BFF};
    float out[8];
    CHECK(cq3rot_decode(crafted, huge, 1, 8, out) == CQ_ERR_OVERFLOW, "decode overflow reported");
}

/* ------------------------------------------- golden vectors via registry */

static void put_le(uint8_t *dst, const uint16_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = (uint8_t)v[i];
        dst[2 * i + 1] = (uint8_t)(v[i] >> 8);
    }
}

static void test_golden_registry(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/vectors/channelquant", cq_test_shared());
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot open %s (set CQ_SHARED)", dir);
    if (!d) return;
    int seen = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] != 'd' || !strstr(de->d_name, "__")) continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        cq_golden g;
        cq_err e;
        if (cq_golden_load(path, &g, &e) != CQ_OK) {
            CHECK(0, "%s: %s", path, e.msg);
            continue;
        }
        seen++;
        cq_params p;
        CHECK(cq_golden_params(&g, &p, &e) == CQ_OK, "%s params", de->d_name);
        cq_stream_sizes sz;
        CHECK(cq_stream_sizes_of(&p, g.T, &sz) == CQ_OK, "sizes");
        CHECK(sz.key_payload == g.key_payload_n && sz.key_scales == g.key_scales_n &&
                  sz.sidecar == g.sidecar_n && sz.val_payload == g.val_payload_n &&
                  sz.val_scales == g.val_scales_n,
              "%s: cq_stream_sizes_of disagrees with the vector's files", de->d_name);
        CHECK(sz.key_groups == (g.tier == CQ_TIER_CQ8 ? g.T : (g.T + g.G - 1) / g.G), "groups");
        const char *name = g.tier == CQ_TIER_CQ8 ? "cq8" : g.tier == CQ_TIER_CQ4 ? "cq4" : "cq4+";
        const cq_codec_traits *cd = cq_codec_find(name);
        cq_codec_cfg cfg;
        cq_codec_cfg_default(&cfg, g.D);
        cfg.group = g.G;
        cfg.mask = g.tier == CQ_TIER_CQ4P ? g.mask : NULL;
        /* expected blobs: payload | scales LE | sidecar LE (documented in codec_cq.c) */
        size_t kn = g.key_payload_n + 2 * (g.key_scales_n + g.sidecar_n);
        size_t vn = g.val_payload_n + 2 * g.val_scales_n;
        uint8_t *kw = malloc(kn + 1), *vw = malloc(vn + 1);
        memcpy(kw, g.key_payload, g.key_payload_n);
        put_le(kw + g.key_payload_n, g.key_scales, g.key_scales_n);
        put_le(kw + g.key_payload_n + 2 * g.key_scales_n, g.sidecar, g.sidecar_n);
        memcpy(vw, g.val_payload, g.val_payload_n);
        put_le(vw + g.val_payload_n, g.val_scales, g.val_scales_n);
        CHECK(cd->packed_bytes(&cfg, CQ_ROLE_KEY, g.T) == kn && cd->packed_bytes(&cfg, CQ_ROLE_VALUE, g.T) == vn,
              "%s: packed_bytes", de->d_name);
        uint8_t *kb = canary_alloc(kn), *vb = canary_alloc(vn);
        CHECK(cd->encode(&cfg, CQ_ROLE_KEY, g.input_k, g.T, kb, kn, &e) == CQ_OK && memcmp(kb, kw, kn) == 0,
              "%s: registry key bytes differ from the canonical streams", de->d_name);
        CHECK(cd->encode(&cfg, CQ_ROLE_VALUE, g.input_v, g.T, vb, vn, &e) == CQ_OK && memcmp(vb, vw, vn) == 0,
              "%s: registry value bytes differ from the canonical streams", de->d_name);
        CHECK(all_canary(kb + kn, PAD) && all_canary(vb + vn, PAD), "registry overrun");
        size_t td = (size_t)g.T * g.D;
        float *out = malloc(td * 4);
        long bk = 0, bv = 0;
        CHECK(cd->decode(&cfg, CQ_ROLE_KEY, kw, kn, g.T, out) == CQ_OK, "decode keys");
        for (size_t i = 0; i < td; i++) bk += cq_f32_bits(out[i]) != g.k_hat[i];
        CHECK(cd->decode(&cfg, CQ_ROLE_VALUE, vw, vn, g.T, out) == CQ_OK, "decode values");
        for (size_t i = 0; i < td; i++) bv += cq_f32_bits(out[i]) != g.v_hat[i];
        CHECK(bk == 0 && bv == 0, "%s: registry decode differs (%ld K, %ld V)", de->d_name, bk, bv);
        free(out);
        free(kw);
        free(vw);
        free(kb);
        free(vb);
        cq_golden_free(&g);
    }
    closedir(d);
    CHECK(seen == 9, "expected the 9 shipped golden vectors, found %d", seen);
    /* CQ-3-rot through the registry against the real-model slices */
    char sdir[4096];
    snprintf(sdir, sizeof sdir, "%s/vectors/qwen2-0.5b", cq_test_shared());
    cq_slice_manifest m;
    cq_err e;
    if (cq_slice_manifest_load(sdir, &m, &e) != CQ_OK) {
        CHECK(0, "%s", e.msg);
        return;
    }
    const cq_codec_traits *rot = cq_codec_find("cq3rot");
    long bad = 0;
    for (uint32_t i = 0; i < m.count; i++) {
        cq_slice s;
        if (cq_slice_load(sdir, &m, i, &s, &e) != CQ_OK) {
            bad++;
            continue;
        }
        cq_codec_cfg cfg;
        cq_codec_cfg_default(&cfg, s.D);
        size_t n = rot->packed_bytes(&cfg, CQ_ROLE_VALUE, s.T), td = (size_t)s.T * s.D;
        uint8_t *b = canary_alloc(n);
        float *out = malloc(td * 4);
        bad += rot->encode(&cfg, CQ_ROLE_VALUE, s.val, s.T, b, n, &e) != CQ_OK || !all_canary(b + n, PAD);
        bad += rot->decode(&cfg, CQ_ROLE_VALUE, b, n, s.T, out) != CQ_OK;
        for (size_t j = 0; j < td; j++) bad += cq_f32_bits(out[j]) != s.vhatwht[j];
        free(b);
        free(out);
        cq_slice_free(&s);
    }
    CHECK(m.count == 20 && bad == 0, "cq3rot registry vs slices: %ld mismatches over %u slices", bad, m.count);
    cq_slice_manifest_free(&m);
}

int main(void) {
    test_nibble_order();
    test_group_padding();
    test_neg_zero();
    test_clamp_and_decoders();
    test_nonfinite();
    test_params();
    test_canaries_success();
    test_cq3rot_packing();
    test_golden_registry();
    return cq_test_done("test_codec");
}
