/* SPDX-License-Identifier: MIT */
/*
 * decode_loop.c - the ChannelQuant cache embedded the way an inference runtime
 * uses it: several layers, grouped-query attention, a prefill batch, then a
 * decode loop of one token at a time, a save and a restore mid-sequence.
 *
 * K/V come from the library's synthetic generator instead of a model; the
 * program checks every attention output against the cache's reference
 * (cq_cache_attend_ref, docs/CACHE.md "Tolerance") and that the restored cache
 * continues bit for bit like the original. Exit status 0 when all agree.
 *
 * Build against an installed library:
 *   cc decode_loop.c $(pkg-config --cflags --libs channelquant) -o decode_loop
 * Usage: decode_loop [SAVE_PATH]     (default: decode_loop.cqkv in the current directory)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <channelquant.h>

enum { LAYERS = 3, KV_HEADS = 2, Q_HEADS = 8, D = 64, PREFILL = 40, DECODE = 30 };

/* K/V of token t of one layer: [KV_HEADS][D] fp16, from the generator's [T][D] blocks. */
static void token_kv(const uint16_t *blk, uint32_t layer, uint32_t t, uint16_t *row) {
    for (uint32_t h = 0; h < KV_HEADS; h++)
        memcpy(row + h * D, blk + ((size_t)(layer * KV_HEADS + h) * (PREFILL + DECODE) + t) * D,
               D * sizeof(uint16_t));
}

static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mr = fmax(mr, fabs((double)b[i]));
    }
    return mr > 0 ? md / mr : md;
}

static int fail(const char *what, const cq_err *err) {
    fprintf(stderr, "decode_loop: %s: %s (%s)\n", what, err->msg, cq_status_name(err->code));
    return 1;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "decode_loop.cqkv";
    const uint32_t T = PREFILL + DECODE;
    cq_err err;
    cq_err_clear(&err);
    if (cq_version() / 10000 != CQ_VERSION_MAJOR) {
        fprintf(stderr, "decode_loop: built for %s, linked %s\n", CQ_VERSION_STRING,
                cq_version_string());
        return 1;
    }

    /* synthetic K/V: one [T][D] block per (layer, kv head) */
    size_t per = (size_t)T * D, n_blk = (size_t)LAYERS * KV_HEADS;
    uint16_t *K = (uint16_t *)malloc(n_blk * per * sizeof *K), *V = (uint16_t *)malloc(n_blk * per * sizeof *V);
    float *q = (float *)malloc((size_t)PREFILL * Q_HEADS * D * sizeof *q);
    float *out = (float *)malloc((size_t)PREFILL * Q_HEADS * D * sizeof *out);
    float *ref = (float *)malloc((size_t)PREFILL * Q_HEADS * D * sizeof *ref);
    uint16_t *kr = (uint16_t *)malloc((size_t)PREFILL * KV_HEADS * D * sizeof *kr);
    uint16_t *vr = (uint16_t *)malloc((size_t)PREFILL * KV_HEADS * D * sizeof *vr);
    if (!K || !V || !q || !out || !ref || !kr || !vr) return 1;
    for (size_t b = 0; b < n_blk; b++) {
        cq_synth_cfg sc;
        cq_synth_cfg_default(&sc, D, T, 100 + b);
        if (cq_synth_kv(&sc, K + b * per, V + b * per, NULL, &err)) return fail("synth", &err);
    }
    for (size_t i = 0; i < (size_t)PREFILL * Q_HEADS * D; i++) q[i] = (float)sin(0.37 * (double)i);

    /* the cache: CQ-4 keys (G = 32) and values, the first 4 tokens kept in fp16 */
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, LAYERS, KV_HEADS, D);
    cfg.group = 32;
    cfg.n_sinks = 4;
    cfg.page_tokens = 32; /* small pages: a short sequence holds little slack */
    cq_cache *c = NULL, *restored = NULL;
    if (cq_cache_create(&cfg, &c, &err)) return fail("create", &err);

    /* EXACT attention (fp32 arithmetic): its bound (docs/CACHE.md "Tolerance") is what the
     * 1e-4 checks below rely on. Zero options give the default, FAST (8-bit integer dot
     * products over the 4-bit codes), whose documented bound is looser. */
    cq_attn_opts opts;
    memset(&opts, 0, sizeof opts); /* zero = every option's default (docs/EMBEDDING.md, growth rule) */
    opts.n_threads = 2;
    opts.precision = CQ_ATTN_EXACT;

    int bad = 0;
    /* prefill: every layer gets PREFILL tokens, then causal attention for all of them */
    for (uint32_t L = 0; L < LAYERS; L++) {
        for (uint32_t t = 0; t < PREFILL; t++) {
            token_kv(K, L, t, kr + (size_t)t * KV_HEADS * D);
            token_kv(V, L, t, vr + (size_t)t * KV_HEADS * D);
        }
        if (cq_cache_append(c, L, kr, vr, PREFILL, &err)) return fail("prefill append", &err);
        if (cq_cache_attend_prefill(c, L, q, PREFILL, 0, Q_HEADS, out, &opts, &err))
            return fail("prefill attend", &err);
        if (cq_cache_attend_ref(c, L, q, PREFILL, 0, Q_HEADS, ref, 0.0f, &err))
            return fail("prefill reference", &err);
        if (rel_err(out, ref, (size_t)PREFILL * Q_HEADS * D) > 1e-4) bad++;
    }

    /* decode: one token per step through every layer; save + restore half-way */
    for (uint32_t t = PREFILL; t < T; t++) {
        for (uint32_t L = 0; L < LAYERS; L++) {
            token_kv(K, L, t, kr);
            token_kv(V, L, t, vr);
            if (cq_cache_append(c, L, kr, vr, 1, &err)) return fail("decode append", &err);
            if (restored && cq_cache_append(restored, L, kr, vr, 1, &err))
                return fail("decode append (restored)", &err);
            if (cq_cache_attend(c, L, q, Q_HEADS, out, &opts, &err)) return fail("attend", &err);
            if (cq_cache_attend_ref(c, L, q, 1, t, Q_HEADS, ref, 0.0f, &err))
                return fail("reference", &err);
            if (rel_err(out, ref, (size_t)Q_HEADS * D) > 1e-4) bad++;
            if (restored) { /* the restored cache must give the same bits */
                if (cq_cache_attend(restored, L, q, Q_HEADS, ref, &opts, &err))
                    return fail("attend (restored)", &err);
                if (memcmp(out, ref, (size_t)Q_HEADS * D * sizeof *out)) bad++;
            }
        }
        if (t == PREFILL + DECODE / 2) {
            if (cq_cache_save(c, path, &err)) return fail("save", &err);
            if (cq_cache_load(path, &restored, &err)) return fail("load", &err);
            if (cq_cache_compare(c, restored, &err)) return fail("compare", &err);
        }
    }
    if (cq_cache_compare(c, restored, &err)) return fail("final compare", &err);

    cq_cache_mem mem;
    if (cq_cache_memory(c, -1, &mem) != CQ_OK) return fail("memory", &err);
    printf("decode_loop: ChannelQuant %s, %d layers, %d/%d heads, D=%d, %u tokens: "
           "%.3f bits/value, %llu bytes, %s\n",
           cq_version_string(), LAYERS, Q_HEADS, KV_HEADS, D, cq_cache_tokens(c, 0),
           mem.bits_per_value, (unsigned long long)mem.total, bad ? "MISMATCH" : "ok");
    cq_cache_free(c);
    cq_cache_free(restored);
    remove(path);
    free(K), free(V), free(q), free(out), free(ref), free(kr), free(vr);
    return bad ? 1 : 0;
}
