/* SPDX-License-Identifier: MIT */
/*
 * test_persist_gencheck.c - the cache-file loader's decode check of generic-codec bytes
 * (cq_store_gen_check in src/cache/store.c, called by src/cache/persist.c; the slot path of
 * the same check is tests/test_gen_check.c). A cache of KIVI-4 keys (units of 128 tokens, the
 * last one a partial unit a flush closed) and CQ-3-rot values (one-token units), saved with
 * cq_cache_save:
 *   - the untouched file loads, compares equal and attends to the same bits;
 *   - a value unit made undecodable (CRCs recomputed so the bytes reach the check) is
 *     CQ_ERR_FORMAT naming the store and the unit, and *out stays NULL: a full unit inside
 *     the record and the record's last unit, in either kv head; so is a key unit whose bytes
 *     decode to non-finite keys (an infinite scale in a full unit, a NaN min in the partial
 *     tail), naming the unit, token and channel;
 *   - the partial key tail: its check covers exactly its own tail_g tokens, coded without a
 *     window (a wrapped codec records each decode the check makes and refuses the tail on
 *     request); the file holds only the tail's own bytes (a tail stored at the size of a whole
 *     unit is refused by the exact-size check); and the codec's pad nibbles after the tail's
 *     last token, which docs/CACHE_FILE.md does not constrain for generic codecs and the
 *     decoder ignores, load and attend to the same bits while the code nibble beside them is
 *     read back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/cache/cache_internal.h"
#include "cq_file.h"
#include "../src/core/cq_le.h"
#include "cq_test.h"
#include "util/cache_testutil.h"

enum { NH = 2, D = 64, NS = 2, TAIL = 41 };
#define NT (NS + 2 * 128 + TAIL) /* sinks, two full key units, a partial one of 41 tokens */

static char g_path[64];
static int g_sentinel; /* a failed load must replace this *out with NULL */
#define SENTINEL ((cq_cache *)(void *)&g_sentinel)

static void release(cq_cache *c) {
    if (c != SENTINEL) cq_cache_free(c);
}

/* ------------------------------------------------------------ file bytes */

/* Offset of the section header of layer 0 (after the file header and CONF). */
static size_t layer0_sec(const uint8_t *b) { return 40 + 24 + (size_t)cq_get_u64le(b + 40 + 8); }

/* Offset of the store record (its 24-byte header) of kv head h, role r (0 keys, 1 values) of
 * layer 0, found by walking the records. */
static size_t record_off(const uint8_t *b, uint32_t h, int r) {
    size_t p = layer0_sec(b) + 24 + 8;
    for (uint32_t i = 0; i < NH; i++) {
        p += 2 * (size_t)NS * D * 2; /* sink keys, sink values */
        for (int k = 0; k < 2; k++) {
            if (i == h && k == r) return p;
            p += 24 + (size_t)cq_get_u64le(b + p + 16) + (size_t)cq_get_u32le(b + p + 8) * D * 2;
        }
    }
    return 0;
}

/* Write image b to the test file and load it; *out starts as a non-NULL sentinel so that a
 * failed load is seen to reset it. */
static cq_status load_image(const uint8_t *b, size_t n, cq_cache **out, cq_err *e) {
    *out = SENTINEL;
    cq_err_clear(e);
    if (cq_write_file_atomic(g_path, b, n, NULL)) {
        *out = NULL;
        return cq_err_set(e, CQ_ERR_IO, -1, -1, "cannot write %s", g_path);
    }
    return cq_cache_load(g_path, out, e);
}

/* ------------------------------------------------------------ caches */

static cq_cache *build(void) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, NH, D);
    cfg.key_codec = CQ_CODEC_KIVI4;
    cfg.val_codec = CQ_CODEC_CQ3ROT;
    cfg.n_sinks = NS;
    cfg.page_tokens = 128;
    cq_cache *c = NULL;
    cq_err e;
    if (cq_cache_create(&cfg, &c, &e)) {
        fprintf(stderr, "create: %s\n", e.msg);
        return NULL;
    }
    cq_rng r;
    cq_rng_seed(&r, 29);
    const size_t n = (size_t)NT * NH * D;
    uint16_t *K = malloc(n * 2), *V = malloc(n * 2);
    ctu_fill_f16(&r, K, n, 1.0f, 0);
    ctu_fill_f16(&r, V, n, 1.0f, 0);
    cq_status st = CQ_OK;
    for (uint32_t t = 0, m = 37; t < NT && !st; t += m) /* chunks across unit boundaries */
        st = cq_cache_append(c, 0, K + (size_t)t * NH * D, V + (size_t)t * NH * D,
                             NT - t < m ? NT - t : m, &e);
    if (!st) st = cq_cache_flush(c, &e);
    free(K);
    free(V);
    if (st) {
        fprintf(stderr, "append / flush: %s\n", e.msg);
        cq_cache_free(c);
        return NULL;
    }
    return c;
}

/* Attention of both caches, bit for bit, for a few queries (1 and 3 threads). */
static int same_attention(const cq_cache *a, const cq_cache *b) {
    const uint32_t nq = 2 * NH;
    float q[2 * NH * D], oa[2 * NH * D], ob[2 * NH * D];
    cq_rng r;
    cq_rng_seed(&r, 5);
    int ok = 1;
    for (int k = 0; k < 3 && ok; k++) {
        for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) q[i] = (float)cq_rng_normal(&r);
        for (uint32_t th = 1; th <= 3 && ok; th += 2) {
            cq_attn_opts o = {.n_threads = th};
            ok = cq_cache_attend(a, 0, q, nq, oa, &o, NULL) == CQ_OK &&
                 cq_cache_attend(b, 0, q, nq, ob, &o, NULL) == CQ_OK &&
                 ctu_first_diff(oa, ob, (size_t)nq * D) < 0;
        }
    }
    return ok;
}

/* Keys read back of every token of both caches, bit for bit; -1, or the first differing
 * token of kv head h. */
static long first_key_diff(const cq_cache *a, const cq_cache *b, uint32_t h) {
    float *ka = malloc((size_t)NT * D * 4), *kb = malloc((size_t)NT * D * 4);
    long d = -2;
    if (cq_cache_read(a, 0, h, 0, NT, ka, NULL, NULL) == CQ_OK &&
        cq_cache_read(b, 0, h, 0, NT, kb, NULL, NULL) == CQ_OK) {
        long i = ctu_first_diff(ka, kb, (size_t)NT * D);
        d = i < 0 ? -1 : i / D;
    }
    free(ka);
    free(kb);
    return d;
}

/* ------------------------------------------------------------ the cases */

static void untouched(const cq_cache *a, const uint8_t *img, size_t len) {
    const cq_store *k = &a->layers[0].heads[0].k, *v = &a->layers[0].heads[0].v;
    CHECK(k->kind == ST_GEN && k->unit == 128 && k->tail_g == TAIL && k->n_done == NT - NS &&
              k->n_resid == 0,
          "keys: a generic store whose last unit is a flushed partial one (kind %d, unit %u, "
          "tail %u, committed %u)", k->kind, k->unit, k->tail_g, k->n_done);
    CHECK(v->kind == ST_GEN && v->unit == 1 && v->n_done == NT - NS,
          "values: a generic store of one-token units (kind %d, unit %u)", v->kind, v->unit);
    const size_t kr = record_off(img, 0, 0);
    CHECK(cq_get_u32le(img + kr) == 4 && cq_get_u32le(img + kr + 12) == TAIL, "the key record: kind 4, tail_g %u",
          cq_get_u32le(img + kr + 12));
    cq_cache *b = NULL;
    cq_err e;
    cq_status st = load_image(img, len, &b, &e);
    CHECK(st == CQ_OK && b, "the untouched file loads: %s", e.msg);
    if (st || !b || b == SENTINEL) return;
    CHECK(cq_cache_compare(a, b, &e) == CQ_OK, "compares equal: %s", e.msg);
    CHECK(b->layers[0].heads[1].k.tail_g == TAIL, "the partial tail is restored");
    CHECK(same_attention(a, b), "attends to the same bits");
    CHECK(first_key_diff(a, b, 0) == -1 && first_key_diff(a, b, 1) == -1,
          "reads back the same keys");
    release(b);
}

/* CQ-3-rot value unit u of kv head h made undecodable: the largest finite scale and the
 * largest codes overflow fp16 in the inverse rotation (as test_gen_check.c does). */
static void bad_value_unit(const uint8_t *img, size_t len, uint32_t h, uint32_t u) {
    const size_t pay = (3 * (size_t)D + 7) / 8, ub = pay + 2;
    const size_t vr = record_off(img, h, 1);
    CHECK(cq_get_u64le(img + vr + 16) == (uint64_t)(NT - NS) * ub, "value record: %llu bytes",
          (unsigned long long)cq_get_u64le(img + vr + 16));
    uint8_t *m = malloc(len);
    memcpy(m, img, len);
    uint8_t *x = m + vr + 24 + (size_t)u * ub;
    memset(x, 0xFF, pay);
    x[pay] = 0xFF;
    x[pay + 1] = 0x7B;
    cq_cache *b = NULL;
    cq_err e;
    /* without the CRC fix-up the checksum catches it first */
    cq_status st = load_image(m, len, &b, &e);
    CHECK(st == CQ_ERR_CHECKSUM && b == NULL, "unfixed CRC: %s", e.msg);
    release(b);
    ctu_file_recrc(m, len);
    st = load_image(m, len, &b, &e);
    char want[96];
    snprintf(want, sizeof want,
             "layer 0, kv head %u, values: unit %u does not decode with codec cq3rot", h, u);
    CHECK(st == CQ_ERR_FORMAT && e.code == CQ_ERR_FORMAT, "head %u unit %u: %s (%s)", h, u,
          cq_status_name(st), e.msg);
    CHECK(strstr(e.msg, want) != NULL && e.token == (int64_t)u,
          "the message names the unit: '%s' (token %lld), want '%s'", e.msg, (long long)e.token,
          want);
    CHECK(b == NULL, "nothing is half-loaded: out is NULL");
    release(b);
    free(m);
}

/* A KIVI-4 key unit whose bytes decode to non-finite keys (a NaN min or an infinite scale,
 * which no encoder writes): unit u of kv head h, group grp of that unit (32 tokens each; the
 * tail's second group holds 9), channel ch, field 0 mins / 1 scales, fp16 value v. */
static void bad_key_unit(const cq_cache *a, const uint8_t *img, size_t len, uint32_t h,
                         uint32_t u, uint32_t grp, uint32_t ch, int field, uint16_t v) {
    const cq_store *s = &a->layers[0].heads[h].k;
    const size_t full = s->codec->packed_bytes(&s->ccfg, CQ_ROLE_KEY, 128);
    const size_t g32 = 4 * (size_t)D + (size_t)D * 16;
    const size_t at = record_off(img, h, 0) + 24 + (size_t)u * full + (size_t)grp * g32 +
                      (size_t)field * 2 * D + 2 * (size_t)ch;
    uint8_t *m = malloc(len);
    memcpy(m, img, len);
    m[at] = (uint8_t)v;
    m[at + 1] = (uint8_t)(v >> 8);
    ctu_file_recrc(m, len);
    cq_cache *b = NULL;
    cq_err e;
    cq_status st = load_image(m, len, &b, &e);
    char want[96];
    snprintf(want, sizeof want,
             "layer 0, kv head %u, keys: unit %u does not decode with codec kivi-4", h, u);
    const int64_t tok = (int64_t)u * 128 + (int64_t)grp * 32;
    CHECK(st == CQ_ERR_FORMAT && strstr(e.msg, want) != NULL && e.token == tok &&
              e.channel == (int32_t)ch,
          "keys unit %u (%s): %s: '%s' (token %lld channel %d), want '%s' at token %lld "
          "channel %u", u, u == 2 ? "the partial tail" : "full", cq_status_name(st), e.msg,
          (long long)e.token, (int)e.channel, want, (long long)tok, ch);
    CHECK(b == NULL, "keys unit %u: nothing is half-loaded", u);
    release(b);
    free(m);
}

/* The key tail of kv head 1: 41 tokens coded without a window: one group of 32 and one of 9
 * (kivi-4 key group: D fp16 mins | D fp16 scales | D channel streams of ceil(n / 2) bytes). */
static void tail_pad(const cq_cache *a, const uint8_t *img, size_t len) {
    const cq_store *s = &a->layers[0].heads[1].k;
    const size_t full = s->codec->packed_bytes(&s->ccfg, CQ_ROLE_KEY, 128);
    const size_t tb = s->codec->packed_bytes(&s->ccfg_tail, CQ_ROLE_KEY, TAIL);
    const size_t g32 = 4 * (size_t)D + (size_t)D * 16, g9 = 4 * (size_t)D + (size_t)D * 5;
    CHECK(tb == g32 + g9 && full == 4 * g32, "tail %zu bytes (want %zu), full unit %zu", tb,
          g32 + g9, full);
    const size_t kr = record_off(img, 1, 0);
    CHECK(cq_get_u64le(img + kr + 16) == 2 * full + tb, "key record: %llu bytes, want %zu",
          (unsigned long long)cq_get_u64le(img + kr + 16), 2 * full + tb);
    /* channel c's stream of the 9-token group: byte 4 holds token 8 (low nibble) and a pad */
    const size_t streams = kr + 24 + 2 * full + g32 + 4 * (size_t)D;
    uint8_t *m = malloc(len);
    memcpy(m, img, len);
    for (uint32_t c = 0; c < D; c++) m[streams + (size_t)c * 5 + 4] ^= 0xF0;
    ctu_file_recrc(m, len);
    cq_cache *b = NULL;
    cq_err e;
    cq_status st = load_image(m, len, &b, &e);
    CHECK(st == CQ_OK && b, "pad nibbles past the tail's last token are not checked: %s", e.msg);
    if (b && b != SENTINEL) {
        CHECK(same_attention(a, b), "pad nibbles: attends to the same bits");
        CHECK(first_key_diff(a, b, 1) == -1, "pad nibbles: the same keys read back");
        cq_err_clear(&e);
        CHECK(cq_cache_compare(a, b, &e) == CQ_ERR_MISMATCH &&
                  strstr(e.msg, "kv head 1, keys: packed byte") != NULL,
              "the loaded cache holds the file's bytes as they are: %s", e.msg);
        release(b);
    }
    /* the code nibble beside the pad (the tail's last token, channel 3) is the tail's own */
    memcpy(m, img, len);
    m[streams + 3 * 5 + 4] ^= 0x0F;
    ctu_file_recrc(m, len);
    st = load_image(m, len, &b, &e);
    CHECK(st == CQ_OK && b, "a changed code loads (kivi decodes any code): %s", e.msg);
    if (b && b != SENTINEL) {
        long t = first_key_diff(a, b, 1);
        CHECK(t == NT - 1, "the changed code is the last token's key (first difference %ld)", t);
        release(b);
    }
    /* the tail stored at the size of a whole unit: the file holds only the tail's bytes */
    const size_t extra = full - tb, at = kr + 24 + 2 * full + tb, sec = layer0_sec(img);
    uint8_t *w = malloc(len + extra);
    memcpy(w, img, at);
    memset(w + at, 0, extra);
    memcpy(w + at + extra, img + at, len - at);
    cq_put_u64le(w + kr + 16, cq_get_u64le(w + kr + 16) + extra);
    cq_put_u64le(w + sec + 8, cq_get_u64le(w + sec + 8) + extra);
    cq_put_u64le(w + 16, (uint64_t)(len + extra));
    ctu_file_recrc(w, len + extra);
    st = load_image(w, len + extra, &b, &e);
    CHECK(st == CQ_ERR_FORMAT && b == NULL &&
              strstr(e.msg, "layer 0, kv head 1, keys: packed size") != NULL,
          "a tail padded to a whole unit is refused: %s (%s)", cq_status_name(st), e.msg);
    release(b);
    free(w);
    free(m);
}

/* ---------------------------------- the check itself on a partial tail (wrapped codec) */

typedef struct dec_call {
    uint32_t T, residual;
    size_t off, len;
} dec_call;

static struct {
    const uint8_t *base;
    int n, refuse; /* refuse: the call index (0-based) the wrapper fails, or -1 */
    dec_call call[8];
} g_rec;

static cq_status rec_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                            uint32_t T, float *out) {
    const int i = g_rec.n++;
    if (i < 8) g_rec.call[i] = (dec_call){T, cfg->residual, (size_t)(src - g_rec.base), len};
    if (i == g_rec.refuse) return CQ_ERR_OVERFLOW;
    return cq_codec_get(CQ_CODEC_KIVI4)->decode(cfg, role, src, len, T, out);
}

static void tail_check_direct(const cq_cache *a) {
    const cq_store *s0 = &a->layers[0].heads[0].k;
    cq_codec_traits wrapped = *s0->codec;
    wrapped.decode = rec_decode;
    cq_store s = *s0; /* the same geometry and state, decoding through the wrapper */
    s.codec = &wrapped;
    size_t len = 0;
    cq_err e;
    CHECK(cq_cache_export(a, 0, 0, CQ_ROLE_KEY, NULL, 0, &len, &e) == CQ_OK, "export size");
    uint8_t *d = malloc(len);
    CHECK(cq_cache_export(a, 0, 0, CQ_ROLE_KEY, d, len, &len, &e) == CQ_OK, "export");
    const size_t full = s.codec->packed_bytes(&s.ccfg, CQ_ROLE_KEY, 128);
    memset(&g_rec, 0, sizeof g_rec);
    g_rec.base = d;
    g_rec.refuse = -1;
    cq_err_clear(&e);
    CHECK(cq_store_gen_check(&s, d, s.n_done, s.tail_g, "tail", &e) == CQ_OK, "passes: %s",
          e.msg);
    CHECK(g_rec.n == 3, "three units decoded (%d)", g_rec.n);
    for (int i = 0; i < 2 && g_rec.n == 3; i++)
        CHECK(g_rec.call[i].T == 128 && g_rec.call[i].residual == 128 &&
                  g_rec.call[i].off == i * full && g_rec.call[i].len == full,
              "full unit %d: T %u, residual %u, bytes [%zu, +%zu)", i, g_rec.call[i].T,
              g_rec.call[i].residual, g_rec.call[i].off, g_rec.call[i].len);
    if (g_rec.n == 3)
        CHECK(g_rec.call[2].T == TAIL && g_rec.call[2].residual == 0 &&
                  g_rec.call[2].off == 2 * full && g_rec.call[2].off + g_rec.call[2].len == len,
              "the tail: its %u tokens (want %u), no window (residual %u), bytes [%zu, %zu) of %zu",
              g_rec.call[2].T, TAIL, g_rec.call[2].residual, g_rec.call[2].off,
              g_rec.call[2].off + g_rec.call[2].len, len);
    /* a tail that does not decode is named as the slot path names a unit */
    memset(&g_rec, 0, sizeof g_rec);
    g_rec.base = d;
    g_rec.refuse = 2;
    cq_err_clear(&e);
    CHECK(cq_store_gen_check(&s, d, s.n_done, s.tail_g, "tail", &e) == CQ_ERR_FORMAT &&
              strstr(e.msg, "tail: unit 2 does not decode with codec kivi-4 (CQ_ERR_OVERFLOW)") &&
              e.token == 256,
          "a refused tail: %s (token %lld)", e.msg, (long long)e.token);
    free(d);
}

int main(void) {
    char dir[] = "/tmp/cq_pgc_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return cq_test_done("test_persist_gencheck");
    }
    snprintf(g_path, sizeof g_path, "%s/c.cqkv", dir);
    cq_cache *a = build();
    CHECK(a != NULL, "build");
    cq_err e;
    uint8_t *img = NULL;
    size_t len = 0;
    if (a) {
        CHECK(cq_cache_save(a, g_path, &e) == CQ_OK, "save: %s", e.msg);
        char *raw = NULL;
        img = cq_read_file(g_path, (size_t)1 << 30, &raw, &len, NULL) ? NULL : (uint8_t *)raw;
        CHECK(img != NULL && len > 40, "read the saved file");
    }
    if (img) {
        untouched(a, img, len);
        bad_value_unit(img, len, 0, 5);               /* a full unit inside the record */
        bad_value_unit(img, len, 1, NT - NS - 1);     /* the record's last unit */
        bad_key_unit(a, img, len, 0, 1, 0, 7, 1, 0x7C00); /* a full unit: infinite scale */
        bad_key_unit(a, img, len, 1, 2, 1, 3, 0, 0x7E00); /* the partial tail: NaN min */
        tail_pad(a, img, len);
        tail_check_direct(a);
    }
    free(img);
    cq_cache_free(a);
    unlink(g_path);
    rmdir(dir);
    return cq_test_done("test_persist_gencheck");
}
