/* SPDX-License-Identifier: MIT */
/*
 * test_gen_check.c - the decode check of a generic codec's bytes (cq_store_gen_check in
 * src/cache/store.c), which the cache file loader and the serving pool's slots share: bytes a
 * store wrote pass; a unit whose bytes are well-formed but do not decode (a CQ-3-rot token
 * whose scale and codes overflow fp16 in the rotation) is CQ_ERR_FORMAT naming that unit, and
 * so is it through the slot check of the pool's block wire form; and a unit that decodes to
 * non-finite values (a q4_0 block whose fp16 scale is NaN or infinite) is CQ_ERR_FORMAT
 * naming its token and channel.
 */
#include <stdlib.h>
#include <string.h>

#include "../src/cache/cache_internal.h"
#include "../src/cache/slot_io.h"
#include "cq_test.h"
#include "util/cache_testutil.h"

/* A one-layer, one-head cache of T random tokens at D = 64, fp16 keys and values coded by vc,
 * 128-token pages; NULL (after a failed CHECK) when it cannot be made. */
static cq_cache *gen_cache(cq_codec_id vc, uint32_t T, uint64_t seed) {
    const uint32_t D = 64;
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, 1, D);
    cfg.key_codec = CQ_CODEC_FP16;
    cfg.val_codec = vc;
    cfg.page_tokens = 128;
    cq_cache *c = NULL;
    cq_err e;
    CHECK(cq_cache_create(&cfg, &c, &e) == CQ_OK, "create: %s", e.msg);
    if (!c) return NULL;
    cq_rng r;
    cq_rng_seed(&r, seed);
    uint16_t *K = malloc((size_t)T * D * 2), *V = malloc((size_t)T * D * 2);
    ctu_fill_f16(&r, K, (size_t)T * D, 1.0f, 0);
    ctu_fill_f16(&r, V, (size_t)T * D, 1.0f, 0);
    const cq_status st = cq_cache_append(c, 0, K, V, T, &e);
    CHECK(st == CQ_OK, "append: %s", e.msg);
    free(K);
    free(V);
    if (st) {
        cq_cache_free(c);
        return NULL;
    }
    return c;
}

static void test_cq3rot_slot(void) {
    const uint32_t D = 64, T = 300;
    cq_cache *c = gen_cache(CQ_CODEC_CQ3ROT, T, 11);
    if (!c) return;
    cq_err e;
    const cq_store *s = &c->layers[0].heads[0].v;
    const uint32_t pt = cq_slot_tokens(s);
    CHECK(s->kind == ST_GEN && s->unit == 1 && s->n_pages >= 2 && pt >= 8 && pt <= T,
          "a generic store of one-token units and full pages (kind %u, unit %u, page tokens %u)",
          s->kind, s->unit, pt);
    if (s->kind != ST_GEN || s->unit != 1 || pt < 8 || pt > T) goto out;
    const size_t len = (size_t)cq_slot_canon_len(s), b = len / pt;
    const size_t pay = (3 * (size_t)D + 7) / 8; /* a token: 3-bit codes, then its fp16 scale */
    CHECK(b == pay + 2, "unit bytes %zu", b);
    uint8_t *d = malloc(len), *m = malloc(len);
    cq_slot_export(s, s->pages[0], d);
    cq_err_clear(&e);
    CHECK(cq_slot_check(s, d, "slot", &e) == CQ_OK, "the store's own bytes pass: %s", e.msg);
    /* token 5: the largest finite scale and the largest codes; the dequantized row is beyond
     * fp16, so the inverse rotation overflows and the codec refuses the unit */
    memcpy(m, d, len);
    memset(m + 5 * b, 0xFF, pay);
    m[5 * b + pay] = 0xFF;
    m[5 * b + pay + 1] = 0x7B;
    cq_err_clear(&e);
    CHECK(cq_slot_check(s, m, "slot", &e) == CQ_ERR_FORMAT && e.token == 5 &&
              strstr(e.msg, "unit 5 does not decode with codec cq3rot") != NULL,
          "an undecodable unit is refused by name: %s (token %lld)", e.msg, (long long)e.token);
    /* a partial block checks only its first n tokens */
    cq_err_clear(&e);
    CHECK(cq_slot_check_n(s, m, 5, "slot", &e) == CQ_OK, "tokens 0-4 pass: %s", e.msg);
    CHECK(cq_slot_check_n(s, m, 8, "slot", &e) == CQ_ERR_FORMAT, "tokens 0-7 hold the bad unit");
    free(d);
    free(m);
out:
    cq_cache_free(c);
}

/* q4_0 values (D = 64: two 18-byte blocks a token, {fp16 d; 16 bytes of codes}): a block
 * scale made NaN or infinite decodes to non-finite values, which the check refuses with the
 * token and a channel of that block; the tokens before it still pass. */
static void test_nonfinite_slot(void) {
    cq_cache *c = gen_cache(CQ_CODEC_Q4_0, 200, 12);
    if (!c) return;
    cq_err e;
    const cq_store *s = &c->layers[0].heads[0].v;
    const uint32_t pt = cq_slot_tokens(s);
    CHECK(s->kind == ST_GEN && s->unit == 1 && pt >= 16, "a generic store of one-token units");
    if (s->kind != ST_GEN || s->unit != 1 || pt < 16) goto out;
    const size_t len = (size_t)cq_slot_canon_len(s), b = len / pt;
    CHECK(b == 36, "a token is two 18-byte blocks (%zu)", b);
    if (b != 36) goto out;
    uint8_t *d = malloc(len), *m = malloc(len);
    cq_slot_export(s, s->pages[0], d);
    cq_err_clear(&e);
    CHECK(cq_slot_check(s, d, "slot", &e) == CQ_OK, "the store's own bytes pass: %s", e.msg);
    static const uint16_t bad[2] = {0x7E00, 0x7C00}; /* NaN, +inf */
    for (int k = 0; k < 2; k++) {
        memcpy(m, d, len);
        m[11 * b + 18] = (uint8_t)(bad[k] & 0xFF); /* token 11, second block's d */
        m[11 * b + 19] = (uint8_t)(bad[k] >> 8);
        cq_err_clear(&e);
        CHECK(cq_slot_check(s, m, "slot", &e) == CQ_ERR_FORMAT && e.token == 11 &&
                  e.channel >= 32 && e.channel < 64 && strstr(e.msg, "non-finite") != NULL,
              "a %s block scale is refused by token and channel: %s (token %lld, channel %d)",
              k ? "+inf" : "NaN", e.msg, (long long)e.token, (int)e.channel);
        cq_err_clear(&e);
        CHECK(cq_slot_check_n(s, m, 11, "slot", &e) == CQ_OK, "tokens 0-10 pass: %s", e.msg);
    }
    free(d);
    free(m);
out:
    cq_cache_free(c);
}

int main(void) {
    test_cq3rot_slot();
    test_nonfinite_slot();
    return cq_test_done("test_gen_check");
}
