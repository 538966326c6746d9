/* SPDX-License-Identifier: MIT */
/*
 * test_cache_rows.c - the cache's row layout (docs/CACHE.md, "Row layout"): a
 * per-token block codec whose blocks do not fit one head (q4_0's 32 channels
 * at head_dim 8) codes each token's row of all KV heads instead. For every
 * registry codec that takes the row layout at a shape where it needs it
 * (H x D = 4 x 8, 2 x 16, 8 x 16), whatever the chunking of the appends:
 *   - the layout API says ROW exactly where the per-head layout cannot code;
 *   - the packed stream is, byte for byte, the codec's own encode of the whole
 *     [T][H * D] block of committed tokens (every head exports that stream);
 *   - every head reads back its slice of the codec's own decode, bit for bit
 *     (a sliding window, KIVI's values, as the codec's block keeps it);
 *   - decode and prefill attention agree with cq_cache_attend_ref;
 *   - accounting equals the allocations; a refused append leaves the cache
 *     unchanged; clone and save/load (format version 2) are bit-identical and
 *     continue identically; flush quantizes the window.
 * Not here: the per-head generic path (test_cache_window.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "channelquant.h"
#include "cq_test.h"

static int same_bits(const float *a, const float *b, size_t n, size_t *at) {
    for (size_t i = 0; i < n; i++)
        if (cq_f32_bits(a[i]) != cq_f32_bits(b[i])) {
            *at = i;
            return 0;
        }
    return 1;
}

static int cacheable(const cq_codec_traits *tr) {
    return (tr->flags & CQ_CODEC_F_STREAMING) && !(tr->flags & CQ_CODEC_F_OFFLINE);
}

/* Codec for a role of the test cache: the codec itself where the cache can hold it (either
 * layout), fp16 otherwise. */
static cq_codec_id role_codec(const cq_codec_traits *tr, cq_role role, uint32_t H, uint32_t D) {
    cq_codec_cfg cc;
    cq_codec_cfg_default(&cc, D);
    if (cq_cache_layout_for(tr->id, role, H, D, 0) == CQ_LAYOUT_ROW) return tr->id;
    return cq_codec_supports(tr, &cc, role) == CQ_OK ? tr->id : CQ_CODEC_FP16;
}

static double attn_diff(const cq_cache *c, uint32_t H, uint32_t D, uint32_t T, cq_rng *r) {
    const uint32_t nq = 2 * H, n_pre = T < 3 ? T : 3;
    float *q = malloc((size_t)n_pre * nq * D * sizeof *q);
    float *out = malloc((size_t)n_pre * nq * D * sizeof *out);
    float *ref = malloc((size_t)n_pre * nq * D * sizeof *ref);
    for (size_t i = 0; i < (size_t)n_pre * nq * D; i++) q[i] = (float)cq_rng_normal(r);
    cq_attn_opts o = {.n_threads = 2};
    double worst = 0;
    cq_err e;
    /* decode at the last position */
    cq_status st = cq_cache_attend(c, 0, q, nq, out, &o, &e);
    cq_status st2 = cq_cache_attend_ref(c, 0, q, 1, T - 1, nq, ref, 0, &e);
    if (st || st2) worst = INFINITY;
    double md = 0, mx = 0;
    for (uint32_t i = 0; i < nq * D && !st && !st2; i++) {
        md = fmax(md, fabs((double)out[i] - ref[i]));
        mx = fmax(mx, fabs((double)ref[i]));
    }
    worst = fmax(worst, md / (mx + 1e-30));
    /* prefill of the last n_pre positions (causal) */
    st = cq_cache_attend_prefill(c, 0, q, n_pre, T - n_pre, nq, out, &o, &e);
    st2 = cq_cache_attend_ref(c, 0, q, n_pre, T - n_pre, nq, ref, 0, &e);
    if (st || st2) worst = INFINITY;
    md = mx = 0;
    for (size_t i = 0; i < (size_t)n_pre * nq * D && !st && !st2; i++) {
        md = fmax(md, fabs((double)out[i] - ref[i]));
        mx = fmax(mx, fabs((double)ref[i]));
    }
    worst = fmax(worst, md / (mx + 1e-30));
    free(q);
    free(out);
    free(ref);
    return worst;
}

/* The codec's own answer for the first n rows of blk [n][W] at cfg: packed bytes (*pb, *nb)
 * and the decode (into dec [n][W]). */
static cq_status block_ref(const cq_codec_traits *tr, const cq_codec_cfg *cc, cq_role role,
                           const uint16_t *blk, uint32_t n, uint8_t **pb, size_t *nb, float *dec) {
    *nb = tr->packed_bytes(cc, role, n);
    *pb = malloc(*nb + 1);
    cq_status st = tr->encode(cc, role, blk, n, *pb, *nb, NULL);
    if (!st && n) st = tr->decode(cc, role, *pb, *nb, n, dec);
    return st;
}

/* Check every row-layout role of c against the codec's own block of the T - S stored tokens;
 * flushed: the whole block is coded without a window. */
static void check_rows(const cq_cache *c, const cq_codec_traits *tr, const uint16_t *KV[2],
                       uint32_t H, uint32_t D, uint32_t T, uint32_t S, int flushed,
                       const char *tag) {
    const uint32_t W = H * D, n = T - S;
    uint16_t *blk = malloc(((size_t)n * W + 1) * 2);
    float *dec = malloc(((size_t)n * W + 1) * sizeof *dec);
    float *got = malloc(((size_t)T * D + 1) * sizeof *got);
    for (int role = 0; role < 2; role++) {
        if (cq_cache_get_layout(c, 0, (cq_role)role) != CQ_LAYOUT_ROW) continue;
        const char *rn = role ? "values" : "keys";
        memcpy(blk, KV[role] + (size_t)S * W, (size_t)n * W * 2);
        cq_codec_cfg cc;
        cq_codec_cfg_default(&cc, W);
        const uint32_t win = cq_codec_window_tokens(tr, &cc, (cq_role)role);
        if (flushed || win == 0) cc.residual = 0; /* all coded: what a flush commits */
        uint8_t *pb;
        size_t nb;
        cq_status st = block_ref(tr, &cc, (cq_role)role, blk, n, &pb, &nb, dec);
        CHECK(st == CQ_OK, "%s %s: the codec's own block", tag, rn);
        /* read-back: each head's slice, bit for bit; sinks are the fp16 input */
        for (uint32_t h = 0; h < H && !st; h++) {
            cq_err e;
            st = cq_cache_read(c, 0, h, 0, T, role ? NULL : got, role ? got : NULL, &e);
            CHECK(st == CQ_OK, "%s: read: %s", tag, e.msg);
            int ok = 1;
            size_t at = 0;
            for (uint32_t t = 0; t < S && ok; t++)
                for (uint32_t d = 0; d < D; d++)
                    ok &= cq_f32_bits(got[(size_t)t * D + d]) ==
                          cq_f32_bits(cq_f16_to_f32(KV[role][(size_t)t * W + h * D + d]));
            CHECK(ok, "%s %s head %u: sinks read back exactly", tag, rn, h);
            float *ref = malloc(((size_t)n * D + 1) * sizeof *ref);
            for (uint32_t t = 0; t < n; t++)
                memcpy(ref + (size_t)t * D, dec + (size_t)t * W + (size_t)h * D, D * sizeof *ref);
            CHECK(same_bits(ref, got + (size_t)S * D, (size_t)n * D, &at),
                  "%s %s head %u: read-back differs from the codec's decode at token %zu channel "
                  "%zu (%g vs %g)", tag, rn, h, S + at / D, at % D, ref[at], got[S * D + at]);
            free(ref);
        }
        /* the packed stream: the codec's encode of the committed tokens, the same for every head */
        uint32_t committed = cq_cache_committed(c, 0, 0, (cq_role)role);
        CHECK(committed == (flushed ? n : (n > win ? n - win : 0)), "%s %s: %u committed", tag, rn,
              committed);
        cq_codec_cfg c0 = cc;
        c0.residual = 0;
        uint8_t *pc;
        size_t nc;
        st = block_ref(tr, &c0, (cq_role)role, blk, committed, &pc, &nc, dec);
        for (uint32_t h = 0; h < H && !st; h++) {
            size_t len = 0;
            uint8_t *x = malloc(nc + 1);
            CHECK(cq_cache_export(c, 0, h, (cq_role)role, NULL, 0, &len, NULL) == CQ_OK &&
                      len == nc && cq_cache_export(c, 0, h, (cq_role)role, x, nc, &len, NULL) == CQ_OK &&
                      memcmp(x, pc, nc) == 0,
                  "%s %s head %u: export (%zu bytes) is the codec's [%u][%u] block (%zu bytes)", tag,
                  rn, h, len, committed, W, nc);
            free(x);
        }
        free(pc);
        free(pb);
    }
    free(blk);
    free(dec);
    free(got);
}

static void run(const cq_codec_traits *tr, uint32_t H, uint32_t D, uint32_t T, uint32_t chunk,
                uint32_t S) {
    const uint32_t W = H * D;
    char tag[96];
    snprintf(tag, sizeof tag, "%s H=%u D=%u T=%u chunk=%u S=%u", tr->name, H, D, T, chunk, S);
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, H, D);
    cfg.key_codec = role_codec(tr, CQ_ROLE_KEY, H, D);
    cfg.val_codec = role_codec(tr, CQ_ROLE_VALUE, H, D);
    cfg.n_sinks = S;
    cfg.page_tokens = 64; /* several pages */
    cq_cache *c;
    cq_err e;
    cq_status st = cq_cache_create(&cfg, &c, &e);
    CHECK(st == CQ_OK, "%s: create: %s", tag, e.msg);
    if (st) return;
    for (int role = 0; role < 2; role++) {
        cq_codec_id id = role ? cfg.val_codec : cfg.key_codec;
        CHECK(cq_cache_get_layout(c, 0, (cq_role)role) ==
                  cq_cache_layout_for(id, (cq_role)role, H, D, 0),
              "%s: layout of the cache = the rule", tag);
    }
    const uint32_t extra = 5;
    uint16_t *K = malloc((size_t)(T + extra) * W * 2), *V = malloc((size_t)(T + extra) * W * 2);
    cq_rng r;
    cq_rng_seed(&r, T * 131 + chunk * 7 + H);
    for (size_t i = 0; i < (size_t)(T + extra) * W; i++) {
        K[i] = cq_f64_to_f16(cq_rng_normal(&r) * ((i % D) == 3 ? 6 : 1));
        V[i] = cq_f64_to_f16(cq_rng_normal(&r));
    }
    for (uint32_t t = 0; t < T && !st; t += chunk) {
        uint32_t n = T - t < chunk ? T - t : chunk;
        st = cq_cache_append(c, 0, K + (size_t)t * W, V + (size_t)t * W, n, &e);
    }
    CHECK(st == CQ_OK, "%s: append: %s", tag, e.msg);
    const uint16_t *KV[2] = {K, V};
    check_rows(c, tr, KV, H, D, T, S, 0, tag);
    /* accounting: exact, per layer and total */
    cq_cache_mem m;
    CHECK(cq_cache_memory(c, -1, &m) == CQ_OK && m.total == cq_cache_allocated_bytes(c, -1),
          "%s: accounting %llu == allocations %llu", tag, (unsigned long long)m.total,
          (unsigned long long)cq_cache_allocated_bytes(c, -1));
    CHECK(cq_cache_memory(c, 0, &m) == CQ_OK && m.total == cq_cache_allocated_bytes(c, 0),
          "%s: layer accounting %llu == allocations %llu", tag, (unsigned long long)m.total,
          (unsigned long long)cq_cache_allocated_bytes(c, 0));
    CHECK(m.tokens == (uint64_t)T * H, "%s: tokens x heads", tag);
    double ad = attn_diff(c, H, D, T, &r);
    CHECK(ad <= 1e-4, "%s: attention vs the reference: %g", tag, ad);
    /* a refused append (NaN in the last head's last channel of the last token) changes nothing */
    cq_cache *snap = NULL;
    CHECK(cq_cache_clone(c, &snap, &e) == CQ_OK && cq_cache_compare(c, snap, &e) == CQ_OK,
          "%s: clone: %s", tag, e.msg);
    uint16_t *bad = malloc((size_t)3 * W * 2);
    memcpy(bad, K + (size_t)T * W, (size_t)3 * W * 2);
    bad[3 * W - 1] = 0x7E00;
    st = cq_cache_append(c, 0, bad, V + (size_t)T * W, 3, &e);
    CHECK(st == CQ_ERR_NONFINITE && cq_cache_compare(c, snap, &e) == CQ_OK &&
              cq_cache_memory(c, -1, &m) == CQ_OK && m.total == cq_cache_allocated_bytes(c, -1),
          "%s: refused append leaves the cache unchanged (%s)", tag, e.msg);
    /* an input the encoder itself may refuse (fp16 extremes): if refused, nothing changed */
    for (size_t i = 0; i < (size_t)W; i++) bad[i] = i & 1 ? 0xFBFF : 0x7BFF;
    st = cq_cache_append(c, 0, bad, bad, 1, &e);
    if (st) CHECK(cq_cache_compare(c, snap, &e) == CQ_OK, "%s: refused extreme input: unchanged", tag);
    cq_cache_free(c);
    c = snap; /* continue from the snapshot (a clone) */
    /* save / load: version 2, bit-identical, continues identically */
    uint8_t *img = NULL;
    size_t len = 0;
    cq_cache *ld = NULL;
    st = cq_cache_save_mem(c, &img, &len, &e);
    CHECK(st == CQ_OK && len > 12 && img[8] == 2, "%s: saved as version 2", tag);
    if (!st) st = cq_cache_load_mem(img, len, &ld, &e);
    CHECK(st == CQ_OK && cq_cache_compare(c, ld, &e) == CQ_OK, "%s: load: %s", tag, e.msg);
    free(img);
    if (ld) {
        st = cq_cache_append(c, 0, K + (size_t)T * W, V + (size_t)T * W, extra, &e);
        cq_status st2 = cq_cache_append(ld, 0, K + (size_t)T * W, V + (size_t)T * W, extra, &e);
        CHECK(!st && !st2 && cq_cache_compare(c, ld, &e) == CQ_OK,
              "%s: the loaded cache continues identically: %s", tag, e.msg);
        check_rows(ld, tr, KV, H, D, T + extra, S, 0, tag);
        cq_cache_free(ld);
    } else {
        st = cq_cache_append(c, 0, K + (size_t)T * W, V + (size_t)T * W, extra, &e);
    }
    /* flush: everything coded, the window too */
    st = cq_cache_flush(c, &e);
    CHECK(st == CQ_OK, "%s: flush: %s", tag, e.msg);
    check_rows(c, tr, KV, H, D, T + extra, S, 1, tag);
    ad = attn_diff(c, H, D, T + extra, &r);
    CHECK(ad <= 1e-4, "%s: attention after flush vs the reference: %g", tag, ad);
    CHECK(cq_cache_memory(c, -1, &m) == CQ_OK && m.total == cq_cache_allocated_bytes(c, -1),
          "%s: accounting after flush", tag);
    free(bad);
    free(K);
    free(V);
    cq_cache_free(c);
}

/* Every codec that takes the row layout at H x D. Returns how many did. */
static int all_rows(uint32_t H, uint32_t D) {
    int n = 0;
    for (size_t i = 0; i < cq_codec_count(); i++) {
        const cq_codec_traits *tr = cq_codec_at(i);
        if (!cacheable(tr)) continue;
        int row = 0;
        for (int role = 0; role < 2; role++) {
            cq_cache_layout lay = cq_cache_layout_for(tr->id, (cq_role)role, H, D, 0);
            cq_codec_cfg head, wide;
            cq_codec_cfg_default(&head, D);
            cq_codec_cfg_default(&wide, H * D);
            /* the rule: per head whenever the head can be coded */
            if (cq_codec_supports(tr, &head, (cq_role)role) == CQ_OK)
                CHECK(lay == CQ_LAYOUT_HEAD, "%s %u x %u: per head when a head fits", tr->name, H, D);
            if (lay == CQ_LAYOUT_ROW)
                CHECK(cq_codec_supports(tr, &wide, (cq_role)role) == CQ_OK &&
                          cq_codec_unit_tokens(tr, &wide, (cq_role)role) == 1 &&
                          !(tr->flags & CQ_CODEC_F_OURS) && tr->id != CQ_CODEC_FP16,
                      "%s: row layout only for a per-token baseline codec of the row", tr->name);
            row |= lay == CQ_LAYOUT_ROW;
        }
        if (!row) continue;
        n++;
        run(tr, H, D, 150, 1, 0);
        run(tr, H, D, 150, 37, 3);
        run(tr, H, D, 150, 150, 0);
        run(tr, H, D, 9, 4, 2);
    }
    return n;
}

static void defaults_unchanged(void) {
    /* per head stays the default: a codec that fits the head, the fused tiers, one head */
    CHECK(cq_cache_layout_for(CQ_CODEC_Q4_0, CQ_ROLE_KEY, 4, 32, 0) == CQ_LAYOUT_HEAD, "q4_0 D=32");
    CHECK(cq_cache_layout_for(CQ_CODEC_INT4_TOKEN, CQ_ROLE_VALUE, 4, 8, 0) == CQ_LAYOUT_HEAD,
          "int4-token D=8");
    CHECK(cq_cache_layout_for(CQ_CODEC_CQ4, CQ_ROLE_KEY, 4, 8, 0) == CQ_LAYOUT_HEAD, "cq4");
    CHECK(cq_cache_layout_for(CQ_CODEC_FP16, CQ_ROLE_KEY, 4, 8, 0) == CQ_LAYOUT_HEAD, "fp16");
    CHECK(cq_cache_layout_for(CQ_CODEC_Q4_0, CQ_ROLE_KEY, 1, 8, 0) == CQ_LAYOUT_HEAD, "one head");
    CHECK(cq_cache_layout_for(CQ_CODEC_Q4_0, CQ_ROLE_KEY, 4, 8, 0) == CQ_LAYOUT_ROW, "q4_0 4 x 8");
    /* KIVI: keys per channel fit a head (per head), values per token need the row */
    CHECK(cq_cache_layout_for(CQ_CODEC_KIVI4, CQ_ROLE_KEY, 4, 8, 0) == CQ_LAYOUT_HEAD, "kivi keys");
    CHECK(cq_cache_layout_for(CQ_CODEC_KIVI4, CQ_ROLE_VALUE, 4, 8, 0) == CQ_LAYOUT_ROW,
          "kivi values");
    /* turbo: 64-channel blocks do not fit a 32-channel row either: no cache */
    CHECK(cq_cache_layout_for(CQ_CODEC_TURBO3, CQ_ROLE_KEY, 4, 8, 0) == CQ_LAYOUT_HEAD, "turbo3");
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 2, 4, 8);
    cfg.key_codec = CQ_CODEC_TURBO3;
    cfg.val_codec = CQ_CODEC_FP16;
    cq_cache *c = NULL;
    CHECK(cq_cache_create(&cfg, &c, NULL) != CQ_OK && !c, "turbo3 at 4 x 8 is refused");
    /* a cache without a row store still saves as version 1 */
    cfg.key_codec = CQ_CODEC_INT4_TOKEN;
    cfg.val_codec = CQ_CODEC_CQ8;
    uint8_t *img = NULL;
    size_t len = 0;
    CHECK(cq_cache_create(&cfg, &c, NULL) == CQ_OK && cq_cache_save_mem(c, &img, &len, NULL) == CQ_OK &&
              img[8] == 1,
          "no row store: version 1");
    cq_cache *ld = NULL;
    CHECK(img && cq_cache_load_mem(img, len, &ld, NULL) == CQ_OK && cq_cache_compare(c, ld, NULL) == CQ_OK,
          "version 1 loads");
    cq_cache_free(ld);
    free(img);
    cq_cache_free(c);
    /* a version 1 file cannot hold a row store: a crafted one is refused */
    cfg.key_codec = CQ_CODEC_Q4_0;
    c = NULL;
    img = NULL;
    ld = NULL;
    CHECK(cq_cache_create(&cfg, &c, NULL) == CQ_OK && cq_cache_save_mem(c, &img, &len, NULL) == CQ_OK,
          "q4_0 4 x 8 cache");
    if (img) {
        img[8] = 1;
        /* the header CRC covers bytes 0..35 */
        uint32_t crc = cq_crc32c(0, img, 36);
        for (int i = 0; i < 4; i++) img[36 + i] = (uint8_t)(crc >> (8 * i));
        cq_err e;
        CHECK(cq_cache_load_mem(img, len, &ld, &e) == CQ_ERR_FORMAT && !ld,
              "version 1 with a row store is refused");
    }
    free(img);
    cq_cache_free(c);
}

int main(void) {
    defaults_unchanged();
    int n48 = all_rows(4, 8), n216 = all_rows(2, 16), n816 = all_rows(8, 16);
    /* q4_0 (32-channel blocks) and KIVI's values at least take the row layout at 4 x 8 */
    CHECK(n48 >= 2 && n216 >= 2 && n816 >= 2, "codecs with rows: %d at 4x8, %d at 2x16, %d at 8x16",
          n48, n216, n816);
    printf("row-layout codecs: %d at 4x8, %d at 2x16, %d at 8x16\n", n48, n216, n816);
    return cq_test_done("test_cache_rows");
}
