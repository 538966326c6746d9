/* SPDX-License-Identifier: MIT */
/*
 * test_cache_window.c - codecs with a sliding fp16 window (KIVI's values) and
 * multi-token units (KIVI's keys) through the cache's generic path: whatever
 * the chunking of the appends, the cache reads back exactly what the registry
 * codec's own [T][D] block gives (the KIVI cache after T tokens), the newest R
 * value tokens stay fp16, flush quantizes the window, and the memory
 * accounting charges the window.
 */
#include <math.h>

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

static void run(cq_codec_id id, uint32_t D, uint32_t T, uint32_t chunk) {
    const uint32_t H = 2;
    const cq_codec_traits *tr = cq_codec_get(id);
    const int kivi = id == CQ_CODEC_KIVI4 || id == CQ_CODEC_KIVI2;
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, H, D);
    cfg.key_codec = id;
    cfg.val_codec = id;
    cfg.page_tokens = 256;
    cfg.force_generic = 1; /* the fused formats go through the generic path too */
    cq_cache *c;
    cq_err e;
    cq_status st = cq_cache_create(&cfg, &c, &e);
    CHECK(st == CQ_OK, "%s: create: %s", tr->name, e.msg);
    if (st) return;
    uint16_t *X = malloc((size_t)T * H * D * 2 * 2), *Y = X + (size_t)T * H * D;
    cq_rng r;
    cq_rng_seed(&r, T * 31 + chunk);
    for (size_t i = 0; i < (size_t)T * H * D; i++) {
        X[i] = cq_f64_to_f16(cq_rng_normal(&r) * ((i % D) == 3 ? 8 : 1));
        Y[i] = cq_f64_to_f16(cq_rng_normal(&r));
    }
    for (uint32_t t = 0; t < T && !st; t += chunk) {
        uint32_t n = T - t < chunk ? T - t : chunk;
        st = cq_cache_append(c, 0, X + (size_t)t * H * D, Y + (size_t)t * H * D, n, &e);
    }
    CHECK(st == CQ_OK, "%s: append: %s", tr->name, e.msg);
    /* the reference: the codec's own block of the first T tokens of each head */
    cq_codec_cfg ccfg;
    cq_codec_cfg_default(&ccfg, D);
    uint16_t *blk = malloc((size_t)T * D * 2);
    float *ref = malloc((size_t)T * D * 4), *got = malloc((size_t)T * D * 4);
    for (uint32_t h = 0; h < H; h++)
        for (int role = 0; role < 2; role++) {
            const uint16_t *src = role ? Y : X;
            for (uint32_t t = 0; t < T; t++) memcpy(blk + (size_t)t * D, src + ((size_t)t * H + h) * D, D * 2);
            size_t nb = tr->packed_bytes(&ccfg, (cq_role)role, T);
            uint8_t *buf = malloc(nb + 1);
            st = tr->encode(&ccfg, (cq_role)role, blk, T, buf, nb, &e);
            if (!st) st = tr->decode(&ccfg, (cq_role)role, buf, nb, T, ref);
            free(buf);
            CHECK(st == CQ_OK, "block codec: %s", e.msg);
            st = cq_cache_read(c, 0, h, 0, T, role ? NULL : got, role ? got : NULL, &e);
            CHECK(st == CQ_OK, "read: %s", e.msg);
            /* KIVI's block already leaves its residual in fp16; other unit codecs quantize a
             * partial last unit in a block, while the cache keeps it in flight as fp16 */
            uint32_t unit = cq_codec_unit_tokens(tr, &ccfg, (cq_role)role);
            uint32_t cmp = kivi ? T : T / unit * unit;
            for (uint32_t t = cmp; t < T; t++)
                for (uint32_t d = 0; d < D; d++) ref[(size_t)t * D + d] = cq_f16_to_f32(blk[(size_t)t * D + d]);
            size_t at = 0;
            CHECK(same_bits(ref, got, (size_t)T * D, &at),
                  "%s %s head %u T=%u chunk=%u: cache differs from the block codec at token %zu "
                  "channel %zu (%g vs %g)",
                  tr->name, role ? "values" : "keys", h, T, chunk, at / D, at % D, ref[at], got[at]);
            if (!kivi) continue;
            /* the window: the newest min(T, R) values (and T mod R keys) are exact fp16 */
            uint32_t R = ccfg.residual, exact = role ? (T < R ? T : R) : T % R;
            int ok = 1;
            for (uint32_t t = T - exact; t < T; t++)
                for (uint32_t d = 0; d < D; d++)
                    ok &= cq_f32_bits(got[(size_t)t * D + d]) ==
                          cq_f32_bits(cq_f16_to_f32(blk[(size_t)t * D + d]));
            CHECK(ok, "%s %s: the fp16 window reads back exactly", tr->name, role ? "values" : "keys");
        }
    /* accounting: the window is charged as residual, all of it allocated */
    cq_cache_mem m;
    CHECK(cq_cache_memory(c, -1, &m) == CQ_OK, "memory");
    if (kivi)
        CHECK(m.residual >= (uint64_t)H * (ccfg.residual + 1) * D * 2, "residual charged: %llu",
              (unsigned long long)m.residual);
    CHECK(m.total == cq_cache_allocated_bytes(c, -1), "accounting %llu == allocations %llu",
          (unsigned long long)m.total, (unsigned long long)cq_cache_allocated_bytes(c, -1));
    /* flush quantizes the whole window: no value token is fp16 any more (vs the fp16 input) */
    st = cq_cache_flush(c, &e);
    CHECK(st == CQ_OK, "flush: %s", e.msg);
    if (!st && T > 0) {
        st = cq_cache_read(c, 0, 0, 0, T, NULL, got, &e);
        uint32_t differ = 0;
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t d = 0; d < D; d++)
                differ += cq_f32_bits(got[(size_t)t * D + d]) != cq_f32_bits(cq_f16_to_f32(Y[((size_t)t * H) * D + d]));
        if (kivi)
            CHECK(st == CQ_OK && differ > 0, "after flush the window is quantized (%u values changed)",
                  differ);
        float q[2 * 2 * CQ_MAX_DIM], out[2 * 2 * CQ_MAX_DIM], ref_out[2 * 2 * CQ_MAX_DIM];
        for (uint32_t i = 0; i < 2 * H * D; i++) q[i] = (float)cq_rng_normal(&r);
        cq_attn_opts o = {.n_threads = 1};
        st = cq_cache_attend(c, 0, q, 2 * H, out, &o, &e);
        cq_status st2 = cq_cache_attend_ref(c, 0, q, 1, T - 1, 2 * H, ref_out, 0, &e);
        double md = 0, mx = 0;
        for (uint32_t i = 0; i < 2 * H * D; i++) {
            md = fmax(md, fabs((double)out[i] - ref_out[i]));
            mx = fmax(mx, fabs((double)ref_out[i]));
        }
        CHECK(st == CQ_OK && st2 == CQ_OK && md <= 1e-4 * (mx + 1e-30),
              "%s D=%u T=%u: attention over the flushed cache differs from the reference by %g (max %g)",
              tr->name, D, T, md, mx);
    }
    free(blk);
    free(ref);
    free(got);
    free(X);
    cq_cache_free(c);
}

/* Every streaming codec of the registry through the cache's generic path: the read-back
 * equals the codec's own block decode (units start at token 0; byte-packed, unaligned slots). */
static void all_streaming(uint32_t D, uint32_t T, uint32_t chunk) {
    for (size_t i = 0; i < cq_codec_count(); i++) {
        const cq_codec_traits *tr = cq_codec_at(i);
        cq_codec_cfg ccfg;
        cq_codec_cfg_default(&ccfg, D);
        if (!(tr->flags & CQ_CODEC_F_STREAMING) || tr->id == CQ_CODEC_CQ4P ||
            cq_codec_supports(tr, &ccfg, CQ_ROLE_KEY) || cq_codec_supports(tr, &ccfg, CQ_ROLE_VALUE))
            continue;
        run(tr->id, D, T, chunk);
    }
}

int main(void) {
    all_streaming(64, 300, 13);
    all_streaming(128, 129, 64);
    const uint32_t Ts[] = {1, 31, 127, 128, 129, 300, 517};
    const uint32_t chunks[] = {1, 7, 128, 1000};
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++)
        for (size_t j = 0; j < sizeof chunks / sizeof chunks[0]; j++) {
            run(CQ_CODEC_KIVI4, 32, Ts[i], chunks[j]);
            run(CQ_CODEC_KIVI2, 64, Ts[i], chunks[j]);
        }
    return cq_test_done("test_cache_window");
}
