/* SPDX-License-Identifier: MIT */
/*
 * cmd_bench.c - `cq bench`: append throughput and decode-attention time of the
 * streaming cache, per key/value format, head_dim, context and thread count,
 * with the bytes each step streams expressed as a fraction of the machine's
 * read bandwidth probe of the same run (same threads; readings before, between
 * and after the timed steps; median and spread, a row marked unstable when the
 * spread exceeds 20%: include/cq_cache.h). The formats of one (D, T) point are timed round-robin, one step
 * of each in turn, so their ratios are measured under the same conditions.
 *
 * As in a real decode, one step walks every layer of a cache sized to at least
 * 4x the last-level cache, so the figure measures memory, not cache. Every
 * timed loop verifies its output: appends against the registry encoder (bit
 * for bit), attention against the double-precision reference (layer 0) and
 * each timed pass against the first pass (bit for bit; results are
 * deterministic). Timings are reported, never asserted. Every step and bandwidth read
 * runs on one thread pool the command owns; the header prints its size and the threads
 * the process ran.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

#define MAXL 32

typedef struct bench_opts {
    uint32_t dims[8], n_dims;
    uint32_t ctx[16], n_ctx;
    uint32_t thr[8], n_thr;
    int fmts[8], n_fmts;
    uint32_t kv_heads, gqa, llc_mib, reps, bw_mib;
    int json, csv, kernels, quick;
    uint32_t precision; /* cq_attn_precision: 0 = the library default */
    uint32_t page_tokens; /* cq_cache_config.page_tokens; 0 = the context (one page per store) */
    cq_pool *pool;        /* the one pool every timed step and bandwidth read runs on */
    int proc_threads;     /* threads of the process after the timed steps (-1: unknown) */
    double peak[CQ_PEAK_N]; /* one core's arithmetic peaks, instructions per ns (bench_peaks.c) */
} bench_opts;

typedef struct row {
    uint32_t D, T, threads, layers;
    const char *fmt;
    double cache_mib, bpv, app_dec, app_pre, app_dec_w, app_pre_w, us_layer, ms_step, mb_step, eff, bw, frac, err;
    /* the products' floor: ns per token of one KV head at the measured peak (0: no peak for
     * this table and format), the GB/s a step streaming at that floor on every thread would
     * reach, and that over the probe's median */
    double floor_ns, ceil_gbs, ceil_frac;
    cq_bw_summary probe; /* bw = probe.median */
    uint32_t pinned;     /* threads the probe's pinned kernel got CPUs for */
} row;

static void usage(FILE *f) {
    fprintf(f,
            "usage: cq bench [--quick] [--dims 64,128] [--contexts 1024,4096,16384,65536]\n"
            "                [-t|--threads 1,2] [--kv fp16/fp16,cq8/cq8,cq4/cq4,cq4+/cq4] [--kv-heads 8]\n"
            "                [--gqa 4] [--llc-mib 32] [--reps 5] [--precision exact|fast]\n"
            "                [--page-tokens context|N] [--json | --csv]\n"
            "       cq bench --kernels [--dims 128] [--quick] [--json | --csv]\n"
            "       cq bench --serving ... (batched attention over a serving pool; --serving --help)\n"
            "       cq bench --prefill ... (causal prefill attention per shape; --prefill --help)\n\n"
            "Append throughput (GB/s of fp16 K+V input, one thread: token by token as in\n"
            "decode, and 512-token chunks as in prefill; into new pages, whose first touch\n"
            "the OS pays for, and into the pages a cq_cache_reset kept) and decode-attention\n"
            "time per step of the streaming cache. A step attends one query token (kv-heads x\n"
            "gqa query heads) over every layer of a cache of at least 4 x --llc-mib, so the\n"
            "figures measure memory. Each row reports the bytes a step streams (codes, scales,\n"
            "sidecar, sinks and the fp16 in-flight group), the effective GB/s, and its\n"
            "fraction of the read bandwidth probe's median: with the same threads, before,\n"
            "between and after the timed steps, three read kernels (plain loads, non-temporal\n"
            "loads, threads pinned to different CPUs) each read a 512 MiB buffer twice; a\n"
            "reading is its best kernel; the row shows the median of the readings and their\n"
            "spread ((max - min) / median), marked unstable above 20%%.\n"
            "The products ceiling of a row: the GB/s its step would reach if every thread did\n"
            "nothing but the step's multiply-adds (2 x gqa x D per token of a KV head: fp32 FMAs,\n"
            "or with --precision fast over CQ-4 the byte products of vpdpbusd / vpmaddubsw) at\n"
            "one core's peak, measured at the start of the run (12 independent accumulators),\n"
            "and that over the probe's median: a row cannot reach a fraction above it ('-' on\n"
            "the scalar table).\n"
            "The formats of one (D, T) point are timed round-robin, one step of\n"
            "each in turn (best of --reps per format), so a drift in the speed of a shared\n"
            "machine hits them alike and their ratios stay fair. --kv takes K/V pairs in the\n"
            "spelling of every command (fp16/fp16, cq8/cq8, cq4/cq4, cq4+/cq4: CQ-4+ keys with 2\n"
            "random outlier channels per head and CQ-4 values; G = 128); --formats and the short\n"
            "names fp16, cq8, cq4, cq4+ are aliases. The cache bits per value of a row are every\n"
            "byte the cache holds at its context (docs/EVAL_IMPL.md, \"Bits\").\n"
            "Verification: appended bytes equal the registry encoder's, attention on layer 0\n"
            "matches the double-precision reference over the read-back cache, and every timed\n"
            "pass reproduces the first bit for bit; a failure exits 1.\n"
            "--quick: D 64 and 128, contexts 1024 and 4096, fp16 and cq4, 1 and 2 threads,\n"
            "a 2 MiB 'LLC' and 2 reps (a smoke run, not a measurement).\n"
            "--kernels: instead, the attention kernels alone (L1-resident, 128 tokens, 4 query\n"
            "heads, D = the largest --dims value, a multiple of 32) in ns per token and values\n"
            "per cycle (the core clock measured by a chain of dependent adds), for every kernel\n"
            "table this CPU runs, each checked against the scalar table first; beside them the\n"
            "values per cycle the bandwidth probe's per-core median requires (1 and 2 threads,\n"
            "readings before, between and after the trials) and, per decode step (keys, softmax,\n"
            "values), the ns per token the stream allows; then one core's arithmetic peaks,\n"
            "measured (vfmadd231ps, vpmaddubsw, vpdpbusd: 12 independent accumulators, no\n"
            "loads), and each step's floor (its products at the peak of the instruction that\n"
            "does them) beside the time the stream allows at 80%% of the probe's median.\n"
            "--precision: the attention arithmetic for CQ-4/CQ-4+ keys and INT4 values\n"
            "(cq_attn_opts.precision; default: the library's: fast, or what CQ_ATTN_PRECISION names).\n"
            "--page-tokens: tokens per storage page (cq_cache_config.page_tokens); 'context'\n"
            "(the default) sizes one page per (layer, head) to the context, as cq generate and\n"
            "cq eval do; a number sets it (the library's own default is 1024).\n");
}

/* verify the appended streams of (layer, head 0) against the registry encoder */
static int verify_append(const cq_cache *c, uint32_t layer, const uint16_t *K, const uint16_t *V,
                         uint32_t H, uint32_t D, const uint8_t *mask0) {
    int ok = 1;
    for (int role = 0; role < 2 && ok; role++) {
        const cq_cache_config *cfg = cq_cache_get_config(c);
        cq_codec_id id = role ? cfg->layer_codecs[layer].val : cfg->layer_codecs[layer].key;
        const cq_codec_traits *tr = cq_codec_get(id);
        uint32_t n = cq_cache_committed(c, layer, 0, (cq_role)role);
        cq_codec_cfg cc;
        cq_codec_cfg_default(&cc, D);
        cc.group = cfg->group;
        cc.mask = role == 0 && id == CQ_CODEC_CQ4P ? mask0 : NULL;
        uint16_t *blk = malloc((size_t)n * D * 2 + 2);
        for (uint32_t t = 0; t < n; t++)
            memcpy(blk + (size_t)t * D, (role ? V : K) + (size_t)t * H * D, (size_t)D * 2);
        size_t want = tr->packed_bytes(&cc, (cq_role)role, n), got;
        uint8_t *a = malloc(want + 1), *b = malloc(want + 1);
        ok = a && b && tr->encode(&cc, (cq_role)role, blk, n, a, want, NULL) == CQ_OK &&
             cq_cache_export(c, layer, 0, (cq_role)role, b, want, &got, NULL) == CQ_OK &&
             got == want && memcmp(a, b, want) == 0;
        free(blk);
        free(a);
        free(b);
    }
    return ok;
}

/* Threads of this process now (entries of /proc/self/task), or -1 where that is unknown. */
static int process_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* bytes one decode step over `layers` layers reads */
static double streamed_bytes(const cq_cache *c, uint32_t layers) {
    const cq_cache_config *cfg = cq_cache_get_config(c);
    double b = 0.0;
    for (uint32_t L = 0; L < layers; L++) {
        cq_cache_mem m;
        cq_cache_memory(c, (int32_t)L, &m);
        b += (double)(m.payload + m.scales + m.sidecar + m.sinks);
        uint32_t T = cq_cache_tokens(c, L);
        for (uint32_t h = 0; h < cfg->n_kv_heads; h++)
            for (int r = 0; r < 2; r++)
                b += 2.0 * cfg->head_dim * (T - cfg->n_sinks - cq_cache_committed(c, L, h, (cq_role)r));
    }
    return b;
}

/* One format of one (D, T) point: its cache (every layer filled), append timings, the
 * bytes a step streams, and the attention state of the timed passes. */
typedef struct bench_case {
    const cq_bench_fmt *fp;
    cq_cache *c;
    uint8_t *masks;
    uint32_t layers;
    double t_dec, t_pre, sb;
    double t_dec_w, t_pre_w; /* the same appends into pages a reset kept (no first touch) */
    cq_cache_mem all;
    float *first, *out; /* [layers][NQ][D] first pass, [NQ][D] scratch */
    double best, err;
    int ok;
} bench_case;

static void case_free(bench_case *b) {
    cq_cache_free(b->c);
    free(b->masks);
    free(b->first);
    free(b->out);
    memset(b, 0, sizeof *b);
}

/* Build one format's cache: size it to >= 4 x LLC from a one-layer probe, append layer 0
 * token by token (decode) and the rest in 512-token chunks (prefill), verify the bytes. */
static int build_case(const bench_opts *o, uint32_t D, uint32_t T, const cq_bench_fmt *fp,
                      const uint16_t *K, const uint16_t *V, cq_rng *r, bench_case *b) {
    const uint32_t H = o->kv_heads, NQ = H * o->gqa;
    memset(b, 0, sizeof *b);
    b->fp = fp;
    uint32_t layers = 2;
    cq_err e;
    for (int pass = 0; pass < 2; pass++) {
        cq_layer_codecs lc[MAXL * 64];
        uint32_t nl = pass ? layers : 1;
        if (nl > sizeof lc / sizeof lc[0]) nl = sizeof lc / sizeof lc[0];
        for (uint32_t L = 0; L < nl; L++) lc[L].key = fp->k, lc[L].val = fp->v;
        free(b->masks);
        b->masks = calloc((size_t)nl * H * D, 1);
        if (!b->masks) {
            fprintf(stderr, "cq bench: CQ_ERR_NOMEM: outlier masks\n");
            case_free(b);
            return -1;
        }
        for (uint32_t i = 0; i < nl * H; i++) {
            uint32_t a = cq_rng_below(r, D), c2 = (a + 1 + cq_rng_below(r, D - 1)) % D;
            b->masks[(size_t)i * D + a] = b->masks[(size_t)i * D + c2] = 1;
        }
        cq_cache_config cfg;
        cq_cache_config_default(&cfg, nl, H, D);
        cfg.page_tokens = o->page_tokens ? o->page_tokens : T;
        cfg.layer_codecs = lc;
        cfg.outlier_masks = b->masks;
        cq_cache_free(b->c);
        b->c = NULL;
        if (cq_cache_create(&cfg, &b->c, &e)) {
            cq_report("bench", e.code, &e);
            case_free(b);
            return -1;
        }
        if (pass == 0) { /* probe: one layer in chunks, for its size */
            cq_cache_append(b->c, 0, K, V, T, NULL);
            cq_cache_mem m;
            cq_cache_memory(b->c, 0, &m);
            /* warm appends: a reset keeps the pages, so these time the codec and the copy
             * alone, as a runtime reusing its cache sees them (checked like the cold ones) */
            cq_cache_reset(b->c);
            double tw = cq_tool_now();
            for (uint32_t t = 0; t < T; t++)
                cq_cache_append(b->c, 0, K + (size_t)t * H * D, V + (size_t)t * H * D, 1, NULL);
            b->t_dec_w = cq_tool_now() - tw;
            int wok = verify_append(b->c, 0, K, V, H, D, b->masks);
            cq_cache_reset(b->c);
            tw = cq_tool_now();
            for (uint32_t t = 0; t < T; t += 512)
                cq_cache_append(b->c, 0, K + (size_t)t * H * D, V + (size_t)t * H * D,
                                T - t < 512 ? T - t : 512, NULL);
            b->t_pre_w = cq_tool_now() - tw;
            if (!wok || cq_cache_tokens(b->c, 0) != T || !verify_append(b->c, 0, K, V, H, D, b->masks)) {
                fprintf(stderr, "cq bench: CQ_ERR_MISMATCH: appended bytes differ from the encoder "
                                "(D=%u T=%u %s, reused pages)\n", D, T, fp->name);
                case_free(b);
                return -1;
            }
            double need = 4.0 * o->llc_mib * 1048576.0;
            layers = (uint32_t)ceil(need / (double)m.total);
            if (layers < 2) layers = 2;
        }
        layers = nl > layers ? layers : (pass ? nl : layers);
    }
    b->layers = layers;
    double t0 = cq_tool_now();
    for (uint32_t t = 0; t < T; t++)
        if (cq_cache_append(b->c, 0, K + (size_t)t * H * D, V + (size_t)t * H * D, 1, &e)) break;
    b->t_dec = cq_tool_now() - t0;
    t0 = cq_tool_now();
    for (uint32_t L = 1; L < layers; L++)
        for (uint32_t t = 0; t < T; t += 512) {
            uint32_t n = T - t < 512 ? T - t : 512;
            if (cq_cache_append(b->c, L, K + (size_t)t * H * D, V + (size_t)t * H * D, n, &e)) break;
        }
    b->t_pre = cq_tool_now() - t0;
    int ok = 1;
    for (uint32_t L = 0; L < layers; L++) ok &= cq_cache_tokens(b->c, L) == T;
    ok = ok && verify_append(b->c, 0, K, V, H, D, b->masks) &&
         verify_append(b->c, layers - 1, K, V, H, D, b->masks + (size_t)(layers - 1) * H * D);
    b->first = malloc((size_t)layers * NQ * D * 4);
    b->out = malloc((size_t)NQ * D * 4);
    if (!ok || !b->first || !b->out) {
        fprintf(stderr, "cq bench: %s (D=%u T=%u %s)\n",
                ok ? "CQ_ERR_NOMEM: attention buffers"
                   : "CQ_ERR_MISMATCH: appended bytes differ from the encoder",
                D, T, fp->name);
        case_free(b);
        return -1;
    }
    cq_cache_memory(b->c, -1, &b->all);
    b->sb = streamed_bytes(b->c, layers);
    return 0;
}

/* One decode step: every layer, each output checked against the first pass bit for bit. */
static double time_step(bench_case *b, const float *q, uint32_t NQ, uint32_t D,
                        const cq_attn_opts *op) {
    double t0 = cq_tool_now();
    for (uint32_t L = 0; L < b->layers; L++) {
        cq_cache_attend(b->c, L, q, NQ, b->out, op, NULL);
        b->ok &= memcmp(b->out, b->first + (size_t)L * NQ * D, (size_t)NQ * D * 4) == 0;
    }
    return cq_tool_now() - t0;
}

/* One (D, T) point: every format's cache is built first, then per thread count the reps
 * run round-robin over the formats (one step of each in turn), so a drift of the shared
 * machine's speed hits every format alike and the ratios stay fair. The read bandwidth
 * is measured before and after the reps with the same threads; the row divides by the
 * larger reading. */
static int run_point(bench_opts *o, uint32_t D, uint32_t T, const uint8_t *bwbuf,
                     size_t bwbytes, row *rows, int *nrows) {
    const uint32_t H = o->kv_heads, NQ = H * o->gqa;
    cq_rng r;
    cq_rng_seed(&r, 1000 + D + T);
    /* one layer of input, reused for every layer (contents do not change the traffic) */
    size_t N = (size_t)T * H * D;
    uint16_t *K = malloc(N * 2), *V = malloc(N * 2);
    float *q = malloc((size_t)NQ * D * 4), *ref = malloc((size_t)NQ * D * 4);
    bench_case cs[8];
    int nc = 0, rc = 0;
    if (!K || !V || !q || !ref) {
        fprintf(stderr, "cq bench: CQ_ERR_NOMEM: input of %zu MiB\n", N * 4 >> 20);
        rc = -1;
        goto done;
    }
    uint16_t pool[4096];
    for (int i = 0; i < 4096; i++) pool[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
    for (size_t i = 0; i < N; i += 1024) {
        size_t n = N - i < 1024 ? N - i : 1024;
        memcpy(K + i, pool + cq_rng_below(&r, 3072), n * 2);
        memcpy(V + i, pool + cq_rng_below(&r, 3072), n * 2);
    }
    for (uint32_t i = 0; i < NQ * D; i++) q[i] = (float)cq_rng_normal(&r);
    for (int fi = 0; fi < o->n_fmts && !rc; fi++) {
        fprintf(stderr, "cq bench: D=%u T=%u %s: building ...\n", D, T, cq_bench_fmts[o->fmts[fi]].name);
        if (build_case(o, D, T, &cq_bench_fmts[o->fmts[fi]], K, V, &r, &cs[nc])) rc = -1;
        else nc++;
    }
    for (uint32_t ti = 0; ti < o->n_thr && !rc; ti++) {
        const uint32_t thr = o->thr[ti];
        cq_attn_opts op = {thr, 0.0f, o->precision, o->pool};
        const double lim = cq_attn_precision_resolve(o->precision) == CQ_ATTN_FAST ? 5e-2 : 1e-3;
        for (int ci = 0; ci < nc; ci++) { /* warm pass: the results every timed pass must match */
            bench_case *b = &cs[ci];
            b->ok = 1;
            for (uint32_t L = 0; L < b->layers; L++)
                b->ok &= cq_cache_attend(b->c, L, q, NQ, b->first + (size_t)L * NQ * D, &op, NULL) == CQ_OK;
            cq_cache_attend_ref(b->c, 0, q, 1, T - 1, NQ, ref, 0.0f, NULL);
            double err = 0.0, den = 1e-30;
            for (uint32_t i = 0; i < NQ * D; i++) {
                err = fmax(err, fabs((double)b->first[i] - ref[i]));
                den = fmax(den, fabs((double)ref[i]));
            }
            b->err = err / den;
            /* far above the tested bounds: a sanity check of the run */
            b->ok &= b->err <= lim;
            b->best = 1e30;
        }
        /* the probe: a reading before, between (half way) and after the timed steps */
        cq_bw_probe probe = {0};
        int pst = cq_bw_probe_read(&probe, o->pool, bwbuf, bwbytes, thr, 2);
        for (uint32_t rep = 0; rep < o->reps; rep++) {
            if (rep == o->reps / 2 && rep > 0 && !pst)
                pst = cq_bw_probe_read(&probe, o->pool, bwbuf, bwbytes, thr, 2);
            for (int ci = 0; ci < nc; ci++) {
                double dt = time_step(&cs[ci], q, NQ, D, &op);
                if (dt < cs[ci].best) cs[ci].best = dt;
            }
        }
        if (!pst) pst = cq_bw_probe_read(&probe, o->pool, bwbuf, bwbytes, thr, 2);
        if (pst) {
            fprintf(stderr, "cq bench: %s: the bandwidth probe failed (%u threads)\n",
                    cq_status_name((cq_status)pst), thr);
            rc = -1;
            break;
        }
        cq_bw_summary ps;
        cq_bw_probe_summarize(&probe, &ps);
        const double bw = ps.median;
        int pt = process_threads();
        if (pt > o->proc_threads) o->proc_threads = pt;
        for (int ci = 0; ci < nc; ci++) {
            bench_case *b = &cs[ci];
            if (!b->ok) {
                fprintf(stderr, "cq bench: CQ_ERR_MISMATCH: attention output failed verification "
                                "(D=%u T=%u %s, %u threads, rel err %.3g)\n", D, T, b->fp->name,
                        thr, b->err);
                rc = -1;
                break;
            }
            const double in_bytes = (double)T * H * D * 2 * 2;
            /* rows stay grouped by format, thread counts in order */
            row *w = &rows[*nrows + ci * (int)o->n_thr + (int)ti];
            w->D = D, w->T = T, w->threads = thr, w->layers = b->layers, w->fmt = b->fp->name;
            w->cache_mib = (double)b->all.total / 1048576.0;
            w->bpv = b->all.bits_per_value;
            w->app_dec = in_bytes / b->t_dec * 1e-9;
            w->app_pre = b->layers > 1 ? in_bytes * (b->layers - 1) / b->t_pre * 1e-9 : 0.0;
            w->app_dec_w = in_bytes / b->t_dec_w * 1e-9;
            w->app_pre_w = in_bytes / b->t_pre_w * 1e-9;
            w->us_layer = b->best / b->layers * 1e6;
            w->ms_step = b->best * 1e3;
            w->mb_step = b->sb / 1e6;
            w->eff = b->sb / b->best * 1e-9;
            w->bw = bw;
            w->probe = ps;
            w->pinned = probe.pinned;
            w->frac = bw > 0 ? w->eff / bw : 0.0;
            {
                const int integer = b->fp->int4 && cq_attn_precision_resolve(o->precision) == CQ_ATTN_FAST;
                w->floor_ns = cq_peak_floor_ns(o->peak, cq_peak_of_table(cq_cache_kernels(NULL), integer),
                                               D, o->gqa);
                const double floor_s = (double)b->layers * H * T * w->floor_ns * 1e-9 / thr;
                w->ceil_gbs = floor_s > 0 ? b->sb / floor_s * 1e-9 : 0.0;
                w->ceil_frac = bw > 0 ? w->ceil_gbs / bw : 0.0;
            }
            w->err = b->err;
            fprintf(stderr, "  D=%u T=%u %-5s %u thr: %u layers, %.1f us/layer, %.2f GB/s = %.0f%% of %.1f GB/s "
                            "(probe spread %.0f%%%s)\n",
                    D, T, b->fp->name, thr, b->layers, w->us_layer, w->eff, 100 * w->frac, bw,
                    100 * ps.spread, ps.unstable ? ", unstable" : "");
        }
    }
    if (!rc) *nrows += nc * (int)o->n_thr;
done:
    for (int ci = 0; ci < nc; ci++) case_free(&cs[ci]);
    free(K), free(V), free(q), free(ref);
    return rc;
}

/* "29.6 GB/s (92%)", or "-" for a row with no products peak (scalar table, CQ-8) */
static const char *ceil_txt(const row *w, char *buf, size_t n) {
    if (w->ceil_gbs > 0) snprintf(buf, n, "%.1f GB/s (%.0f%%)", w->ceil_gbs, 100 * w->ceil_frac);
    else snprintf(buf, n, "-");
    return buf;
}

static void print_rows(const bench_opts *o, const row *rows, int n) {
    char ct[48];
    if (o->json) {
        printf("{\"kernels\": \"%s\", \"precision\": \"%s\", \"kv_heads\": %u, \"gqa\": %u, "
               "\"llc_mib\": %u, \"page_tokens\": %u, \"pool_threads\": %u, "
               "\"process_threads\": %d, \"rows\": [\n",
               cq_cache_kernels(NULL),
               cq_attn_precision_resolve(o->precision) == CQ_ATTN_FAST ? "fast" : "exact",
               o->kv_heads, o->gqa, o->llc_mib, o->page_tokens, cq_pool_threads(o->pool),
               o->proc_threads);
        for (int i = 0; i < n; i++) {
            const row *w = &rows[i];
            printf("  {\"D\": %u, \"T\": %u, \"format\": \"%s\", \"threads\": %u, \"layers\": %u, "
                   "\"cache_mib\": %.2f, \"cache_bits_per_value\": %.4f, \"append_decode_gbs\": %.3f, "
                   "\"append_prefill_gbs\": %.3f, \"append_decode_warm_gbs\": %.3f, "
                   "\"append_prefill_warm_gbs\": %.3f, \"attn_us_per_layer\": %.2f, \"step_ms\": %.3f, "
                   "\"streamed_mb\": %.2f, \"effective_gbs\": %.3f, \"read_gbs\": %.3f, "
                   "\"read_min_gbs\": %.3f, \"read_max_gbs\": %.3f, \"read_spread\": %.4f, "
                   "\"read_unstable\": %s, \"read_readings\": %u, \"read_sum_gbs\": %.3f, "
                   "\"read_nt_gbs\": %.3f, \"read_pinned_gbs\": %.3f, \"read_pinned_threads\": %u, "
                   "\"fraction\": %.4f, \"products_floor_ns\": %.3f, \"products_ceiling_gbs\": %.3f, "
                   "\"products_ceiling_fraction\": %.4f, \"rel_err\": %.3g}%s\n",
                   w->D, w->T, w->fmt, w->threads, w->layers, w->cache_mib, w->bpv, w->app_dec,
                   w->app_pre, w->app_dec_w, w->app_pre_w, w->us_layer, w->ms_step, w->mb_step,
                   w->eff, w->bw, w->probe.min, w->probe.max, w->probe.spread,
                   w->probe.unstable ? "true" : "false", w->probe.n, w->probe.kernel_median[CQ_BW_SUM],
                   w->probe.kernel_median[CQ_BW_NT], w->probe.kernel_median[CQ_BW_PINNED], w->pinned,
                   w->frac, w->floor_ns, w->ceil_gbs, w->ceil_frac, w->err, i + 1 < n ? "," : "");
        }
        printf("]}\n");
        return;
    }
    if (o->csv) {
        printf("D,T,format,threads,layers,cache_mib,cache_bits_per_value,append_decode_gbs,"
               "append_prefill_gbs,append_decode_warm_gbs,append_prefill_warm_gbs,"
               "attn_us_per_layer,step_ms,streamed_mb,effective_gbs,read_gbs,read_min_gbs,"
               "read_max_gbs,read_spread,read_unstable,read_readings,read_sum_gbs,read_nt_gbs,"
               "read_pinned_gbs,read_pinned_threads,fraction,products_floor_ns,products_ceiling_gbs,"
               "products_ceiling_fraction,rel_err\n");
        for (int i = 0; i < n; i++) {
            const row *w = &rows[i];
            printf("%u,%u,%s,%u,%u,%.2f,%.4f,%.3f,%.3f,%.3f,%.3f,%.2f,%.3f,%.2f,%.3f,%.3f,%.3f,%.3f,"
                   "%.4f,%d,%u,%.3f,%.3f,%.3f,%u,%.4f,%.3f,%.3f,%.4f,%.3g\n",
                   w->D, w->T, w->fmt, w->threads, w->layers, w->cache_mib, w->bpv, w->app_dec,
                   w->app_pre, w->app_dec_w, w->app_pre_w, w->us_layer, w->ms_step, w->mb_step,
                   w->eff, w->bw, w->probe.min, w->probe.max, w->probe.spread, w->probe.unstable,
                   w->probe.n, w->probe.kernel_median[CQ_BW_SUM], w->probe.kernel_median[CQ_BW_NT],
                   w->probe.kernel_median[CQ_BW_PINNED], w->pinned, w->frac, w->floor_ns, w->ceil_gbs,
                   w->ceil_frac, w->err);
        }
        return;
    }
    char pages[32];
    if (o->page_tokens) snprintf(pages, sizeof pages, "%u tokens", o->page_tokens);
    else snprintf(pages, sizeof pages, "the context");
    printf("kernels: %s; attention precision %s; %u KV heads x GQA %u; cache >= 4 x %u MiB "
           "per step; pages of %s\n",
           cq_cache_kernels(NULL),
           cq_attn_precision_resolve(o->precision) == CQ_ATTN_FAST ? "fast" : "exact",
           o->kv_heads, o->gqa, o->llc_mib, pages);
    char pt[32];
    if (o->proc_threads >= 0) snprintf(pt, sizeof pt, "%d", o->proc_threads);
    else snprintf(pt, sizeof pt, "unknown");
    const uint32_t pth = cq_pool_threads(o->pool);
    printf("threads: one pool of %u (the caller and %u worker%s, spin %u us), each row using its "
           "'thr' of them; threads of the process after the timed steps: %s\n\n",
           pth, pth - 1, pth == 2 ? "" : "s", CQ_POOL_SPIN_DEFAULT_US, pt);
    printf("| D | T | K/V | thr | layers | cache MiB | cache bits/value | append GB/s 1 tok (new / reused "
           "pages) | append GB/s 512 (new / reused) | attn us/layer | step ms | MB/step | GB/s | "
           "read GB/s (median) | probe spread | of read | products ceiling (of read) |\n");
    printf("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const row *w = &rows[i];
        printf("| %u | %u | %s | %u | %u | %.1f | %.2f | %.2f / %.2f | %.2f / %.2f | %.1f | %.2f | "
               "%.1f | %.2f | %.2f | %.0f%%%s | %.0f%% | %s |\n",
               w->D, w->T, w->fmt, w->threads, w->layers, w->cache_mib, w->bpv, w->app_dec,
               w->app_dec_w, w->app_pre, w->app_pre_w, w->us_layer, w->ms_step, w->mb_step, w->eff,
               w->bw, 100 * w->probe.spread, w->probe.unstable ? " unstable" : "", 100 * w->frac,
               ceil_txt(w, ct, sizeof ct));
    }
    /* speedups against fp16 through the same code */
    int any = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(rows[i].fmt, cq_bench_fmts[0].name)) continue;
        for (int j = 0; j < n; j++)
            if (!strcmp(rows[j].fmt, cq_bench_fmts[0].name) && rows[j].D == rows[i].D && rows[j].T == rows[i].T &&
                rows[j].threads == rows[i].threads) {
                if (!any++)
                    printf("\n| D | T | K/V | thr | attention speedup vs fp16 |\n|---:|---:|---|---:|---:|\n");
                printf("| %u | %u | %s | %u | %.2fx |\n", rows[i].D, rows[i].T, rows[i].fmt,
                       rows[i].threads, rows[i].us_layer > 0 ? rows[j].us_layer / rows[i].us_layer : 0);
            }
    }
}

int cq_cmd_bench(int argc, char **argv) {
    bench_opts o = {{64, 128}, 2, {1024, 4096, 16384, 65536}, 4, {1, 2}, 2, {0, 1, 2, 3}, 4,
                    8, 4, 32, 5, 512, 0, 0, 0, 0, 0, 0, NULL, -1, {0}};
    for (int i = 1; i < argc; i++) /* a mode of its own (tools/bench_serving.c) */
        if (!strcmp(argv[i], "--serving")) return cq_bench_serving(argc, argv);
        else if (!strcmp(argv[i], "--prefill")) return cq_bench_prefill(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (cq_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            o.n_dims = 2, o.dims[0] = 64, o.dims[1] = 128;
            o.n_ctx = 2, o.ctx[0] = 1024, o.ctx[1] = 4096;
            o.n_fmts = 2, o.fmts[0] = 0, o.fmts[1] = 2;
            o.llc_mib = 2, o.reps = 2, o.bw_mib = 64, o.quick = 1;
        } else if (!strcmp(a, "--kernels")) o.kernels = 1;
        else if (!strcmp(a, "--json")) o.json = 1;
        else if (!strcmp(a, "--csv")) o.csv = 1;
        else if (!v) bad = 1;
        else if (!strcmp(a, "--dims")) {
            int n = cq_bench_u32_list(v, o.dims, 8, 2, 512, NULL, 0);
            bad = n < 0;
            o.n_dims = n < 0 ? 0 : (uint32_t)n;
            for (uint32_t k = 0; k < o.n_dims; k++) bad |= (o.dims[k] & 1) != 0;
            i++;
        } else if (!strcmp(a, "--contexts")) {
            int n = cq_bench_u32_list(v, o.ctx, 16, 1, 1u << 20, NULL, 0);
            bad = n < 0, o.n_ctx = n < 0 ? 0 : (uint32_t)n, i++;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            int n = cq_bench_u32_list(v, o.thr, 8, 1, 64, NULL, 0);
            bad = n < 0, o.n_thr = n < 0 ? 0 : (uint32_t)n, i++;
        } else if (!strcmp(a, "--kv") || !strcmp(a, "--formats")) {
            int n = cq_bench_fmt_list(v, o.fmts, 8, 0);
            bad = n < 0, o.n_fmts = n < 0 ? 0 : n, i++;
        } else if (!strcmp(a, "--kv-heads")) bad = cq_arg_u32(v, 1, 64, &o.kv_heads), i++;
        else if (!strcmp(a, "--gqa")) bad = cq_arg_u32(v, 1, 16, &o.gqa), i++;
        else if (!strcmp(a, "--llc-mib")) bad = cq_arg_u32(v, 1, 4096, &o.llc_mib), i++;
        else if (!strcmp(a, "--reps")) bad = cq_arg_u32(v, 1, 1000, &o.reps), i++;
        else if (!strcmp(a, "--page-tokens")) {
            if (!strcmp(v, "context")) o.page_tokens = 0;
            else bad = cq_arg_u32(v, 1, 1u << 24, &o.page_tokens);
            i++;
        }
        else if (!strcmp(a, "--precision")) {
            o.precision = !strcmp(v, "exact") ? CQ_ATTN_EXACT : !strcmp(v, "fast") ? CQ_ATTN_FAST : 0;
            bad = o.precision == 0, i++;
        }
        else bad = 1;
        if (bad) {
            fprintf(stderr, "cq bench: CQ_ERR_ARG: bad or unknown option '%s'%s%s\n", a,
                    v ? " " : "", v ? v : "");
            usage(stderr);
            return 2;
        }
    }
    if (o.json && o.csv) {
        fprintf(stderr, "cq bench: CQ_ERR_ARG: --json and --csv are exclusive\n");
        return 2;
    }
    if (o.kernels) {
        uint32_t kd = 0;
        for (uint32_t k = 0; k < o.n_dims; k++) kd = o.dims[k] > kd ? o.dims[k] : kd;
        size_t kbw = (size_t)(o.quick ? o.bw_mib : 16u * o.llc_mib) << 20;
        return cq_bench_kernels(kd ? kd : 128, o.quick ? 20 : 2000, o.json, o.csv, kbw);
    }
    /* the bandwidth buffer: 16 x the LLC (at least 64 MiB), touched once */
    size_t bwbytes = (size_t)(o.bw_mib > 16u * o.llc_mib ? o.bw_mib : 16u * o.llc_mib) << 20;
    uint8_t *bwbuf = aligned_alloc(64, bwbytes);
    if (!bwbuf) {
        fprintf(stderr, "cq bench: CQ_ERR_NOMEM: bandwidth buffer\n");
        return 1;
    }
    for (size_t i = 0; i < bwbytes; i++) bwbuf[i] = (uint8_t)(i * 131);
    /* one pool for the whole run, as many threads as the largest --threads value */
    cq_pool_opts po;
    uint32_t maxthr = 1;
    for (uint32_t k = 0; k < o.n_thr; k++) maxthr = o.thr[k] > maxthr ? o.thr[k] : maxthr;
    cq_pool_opts_default(&po, maxthr);
    cq_status pst = cq_pool_create(&po, &o.pool);
    if (pst) {
        fprintf(stderr, "cq bench: %s: cannot start %u threads\n", cq_status_name(pst), maxthr);
        free(bwbuf);
        return 1;
    }
    {
        const char *kt = cq_cache_kernels(NULL);
        const int a512 = !strcmp(kt, "avx512"), a2 = a512 || !strcmp(kt, "avx2");
        for (int p = 0; p < CQ_PEAK_N; p++) o.peak[p] = cq_peak_measure(p, a2, a512);
    }
    row *rows = calloc((size_t)o.n_dims * o.n_ctx * (size_t)o.n_fmts * o.n_thr + 1, sizeof *rows);
    int n = 0, rc = 0;
    for (uint32_t di = 0; di < o.n_dims && !rc; di++)
        for (uint32_t ci = 0; ci < o.n_ctx && !rc; ci++)
            if (run_point(&o, o.dims[di], o.ctx[ci], bwbuf, bwbytes, rows, &n)) rc = 1;
    print_rows(&o, rows, n);
    cq_pool_free(o.pool);
    free(rows);
    free(bwbuf);
    return rc;
}
