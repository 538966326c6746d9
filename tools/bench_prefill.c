/* SPDX-License-Identifier: MIT */
/*
 * bench_prefill.c - `cq bench --prefill`: causal prefill attention through the public
 * API (cq_cache_attend_prefill, include/cq_cache.h) per head_dim, prompt length (or a
 * chunk of new tokens after a cached context), thread count, K/V format and attention
 * precision. A row times one layer: n_q query tokens at positions pos0 .. pos0 + n_q - 1
 * (kv-heads x gqa query heads each) over a one-layer cache of pos0 + n_q tokens.
 * Reported: ms per layer (median and best of the reps), the query x key pairs the causal
 * mask keeps per second, GFLOP/s (4 x D x pairs x query heads: QK^T and PV, a multiply
 * and an add each) and the speedup over fp16/fp16 of the same shape and threads. The
 * cases of one shape are timed round-robin (one pass of each in turn) so a drift of a
 * shared machine hits them alike. Verification: the first pass of every case against the
 * double-precision reference (cq_cache_attend_ref) on the first and last query rows,
 * within docs/CACHE.md "Tolerance" (EXACT bound from the read-back cache; FAST: the
 * decode bench's sanity limit), and every timed pass bit for bit against the first;
 * a failure exits 1. Timings are reported, never asserted.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_pool.h"
#include "cq_tool.h"

#define MAXF CQ_BENCH_NFMT
#define MAXC (2 * MAXF) /* format x precision cases of one shape */
#define NCHECK 8        /* query rows checked against the reference at each end */
#define FAST_LIMIT 5e-2 /* `cq bench`'s sanity limit under FAST (docs/CACHE.md) */


typedef struct popts {
    uint32_t dims[4], n_dims, ctx[8], n_ctx, thr[4], n_thr;
    int fmts[MAXF], n_fmts, prec[2], n_prec;
    uint32_t kv_heads, gqa, reps, chunk;
    double tol; /* < 0: the documented limits; else this limit for every case */
    int json, csv;
    cq_pool *pool;
} popts;

typedef struct prow {
    uint32_t D, T, n_q, pos0, thr;
    const char *fmt, *prec;
    double med_ms, best_ms, pairs, pairs_s, gflops, speedup, err, lim;
} prow;

typedef struct pcase {
    const cq_bench_fmt *f;
    const cq_cache *c;
    int prec;     /* CQ_ATTN_EXACT / CQ_ATTN_FAST */
    float *first; /* the first pass: every timed pass must equal it */
    double *t;    /* [reps] seconds */
    double err, lim;
    int ok;
} pcase;

static void usage(FILE *f) {
    fprintf(f,
            "usage: cq bench --prefill [--quick] [--dims 64,128] [--contexts 512,2048,4096]\n"
            "                [--chunk N] [-t|--threads 1,2] [--kv fp16/fp16,cq4/cq4]\n"
            "                [--precision exact,fast] [--kv-heads 8] [--gqa 4] [--reps 5]\n"
            "                [--tolerance X] [--json | --csv]\n\n"
            "Causal prefill attention through cq_cache_attend_prefill. A row times one layer:\n"
            "n_q query tokens (kv-heads x gqa query heads each, q ~ N(0, 1)) at positions\n"
            "pos0 .. pos0 + n_q - 1 attending, causally, over a one-layer cache of pos0 + n_q\n"
            "tokens (synthetic N(0, 1) K/V appended in 512-token chunks, G = 128, no sinks, one\n"
            "page per (head, role)). Without --chunk a row is a whole prompt (pos0 = 0, n_q =\n"
            "the context); --chunk N times a chunk of N new tokens after pos0 = context - N\n"
            "(chunked prefill). Per row: ms per layer (median and best of --reps), the\n"
            "query x key pairs the causal mask keeps, per second (pairs = n_q x pos0 +\n"
            "n_q (n_q + 1) / 2), GFLOP/s = 4 x D x pairs x query heads / time (QK^T and PV),\n"
            "both from the median, and the speedup over fp16/fp16 of the same shape and\n"
            "threads (fp16 median / row median). The cases of a shape are timed round-robin\n"
            "(one pass of each in turn). --kv takes fp16, cq8, cq4, cq4+ or their K/V spellings\n"
            "(cq4+: 2 random outlier channels per head, CQ-4 values); --precision applies\n"
            "where it changes the arithmetic (CQ-4 / CQ-4+ keys, INT4 values); fp16 and cq8\n"
            "rows say 'any'. Verification: the first pass of every case against the\n"
            "double-precision reference (cq_cache_attend_ref over the read-back cache) on the\n"
            "first and last %d query rows, max |out - ref| / max |ref| within docs/CACHE.md\n"
            "'Tolerance' (EXACT: 2e-5 + 8 x 2^-23 x Lmax with Lmax from the read-back keys;\n"
            "FAST: cq bench's sanity limit 5e-2; --tolerance X: X for every case), and every\n"
            "timed pass bit for bit against the first; a failure exits 1.\n"
            "--quick: D 64, contexts 200 and 300, fp16 and cq4, exact and fast, 1 and 2\n"
            "threads, 2 reps (a smoke run, not a measurement).\n",
            NCHECK);
}

/* A one-layer cache of T tokens of format f from K/V [T][H][D] fp16. */
static cq_cache *make_cache(const cq_bench_fmt *f, uint32_t H, uint32_t D, uint32_t T, const uint16_t *K,
                            const uint16_t *V, cq_rng *r, uint8_t **masks) {
    cq_cache_config cfg;
    cq_cache_config_default(&cfg, 1, H, D);
    cfg.key_codec = f->k;
    cfg.val_codec = f->v;
    cfg.page_tokens = T;
    *masks = NULL;
    if (f->k == CQ_CODEC_CQ4P) { /* 2 random outlier channels per head */
        *masks = calloc((size_t)H * D, 1);
        if (!*masks) return NULL;
        for (uint32_t h = 0; h < H; h++) {
            uint32_t a = cq_rng_below(r, D), b = (a + 1 + cq_rng_below(r, D - 1)) % D;
            (*masks)[(size_t)h * D + a] = (*masks)[(size_t)h * D + b] = 1;
        }
        cfg.outlier_masks = *masks;
    }
    cq_cache *c = NULL;
    cq_err e;
    if (cq_cache_create(&cfg, &c, &e)) {
        cq_report("bench --prefill", e.code, &e);
        return NULL;
    }
    for (uint32_t t = 0; t < T; t += 512) {
        uint32_t n = T - t < 512 ? T - t : 512;
        if (cq_cache_append(c, 0, K + (size_t)t * H * D, V + (size_t)t * H * D, n, &e)) {
            cq_report("bench --prefill", e.code, &e);
            cq_cache_free(c);
            return NULL;
        }
    }
    return c;
}

/* Lmax of docs/CACHE.md "Tolerance" over query rows [i0, i0 + n) of q (positions pos0 + i):
 * max over rows, query heads and visible tokens of scale * sum_c |q_c k_c|, keys read back. */
static int lmax_rows(const cq_cache *c, const float *q, uint32_t i0, uint32_t n, uint32_t pos0,
                     uint32_t NQ, uint32_t H, uint32_t D, float *Kb, float *Vb, double *lmax) {
    const uint32_t gqa = NQ / H, T = pos0 + i0 + n;
    const double scale = 1.0 / sqrt((double)D);
    for (uint32_t h = 0; h < H; h++) {
        if (cq_cache_read(c, 0, h, 0, T, Kb, Vb, NULL)) return -1;
        for (uint32_t i = i0; i < i0 + n; i++)
            for (uint32_t g = 0; g < gqa; g++) {
                const float *qr = q + ((size_t)i * NQ + h * gqa + g) * D;
                for (uint32_t t = 0; t <= pos0 + i; t++) {
                    double s = 0.0;
                    for (uint32_t d = 0; d < D; d++) s += fabs((double)qr[d] * Kb[(size_t)t * D + d]);
                    if (s * scale > *lmax) *lmax = s * scale;
                }
            }
    }
    return 0;
}

/* The first pass of case k against the reference on the first and last NCHECK query rows:
 * each block is one reference call, its error max |out - ref| / max |ref|. */
static void verify_case(pcase *k, const float *q, uint32_t n_q, uint32_t pos0, uint32_t NQ,
                        uint32_t H, uint32_t D, double tol, float *ref, float *Kb, float *Vb) {
    const uint32_t nc = n_q < NCHECK ? n_q : NCHECK;
    const uint32_t starts[2] = {0, n_q - nc};
    double lmax = 0.0;
    k->err = 0.0;
    for (int b = 0; b < 2 && k->ok; b++) {
        const uint32_t i0 = starts[b];
        const size_t off = (size_t)i0 * NQ * D, len = (size_t)nc * NQ * D;
        if (cq_cache_attend_ref(k->c, 0, q + off, nc, pos0 + i0, NQ, ref, 0.0f, NULL) ||
            lmax_rows(k->c, q, i0, nc, pos0, NQ, H, D, Kb, Vb, &lmax)) {
            k->ok = 0;
            break;
        }
        double err = 0.0, den = 1e-30;
        for (size_t i = 0; i < len; i++) {
            err = fmax(err, fabs((double)k->first[off + i] - ref[i]));
            den = fmax(den, fabs((double)ref[i]));
        }
        if (err / den > k->err || isnan(err)) k->err = isnan(err) ? INFINITY : err / den;
    }
    k->lim = tol >= 0 ? tol : k->prec == CQ_ATTN_FAST ? FAST_LIMIT
                                                      : 2e-5 + 8.0 * ldexp(1.0, -23) * lmax;
    k->ok &= k->err <= k->lim;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One shape (D, T): every format's cache, then per thread count the warm pass of every case
 * (checked), then the reps round-robin over the cases. Appends its rows to rows[*nrows...]. */
static int run_shape(const popts *o, uint32_t D, uint32_t T, prow *rows, int *nrows) {
    const uint32_t H = o->kv_heads, NQ = H * o->gqa;
    const uint32_t n_q = o->chunk ? o->chunk : T, pos0 = T - n_q;
    const size_t qn = (size_t)n_q * NQ * D;
    cq_rng r;
    cq_rng_seed(&r, 7000 + D + T);
    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
    float *q = malloc(qn * 4), *out = malloc(qn * 4), *ref = malloc((size_t)NCHECK * NQ * D * 4);
    float *Kb = malloc((size_t)T * D * 4), *Vb = malloc((size_t)T * D * 4);
    cq_cache *caches[MAXF] = {0};
    uint8_t *masks[MAXF] = {0};
    pcase cs[MAXC];
    int nc = 0, rc = 0;
    memset(cs, 0, sizeof cs);
    if (!K || !V || !q || !out || !ref || !Kb || !Vb) {
        fprintf(stderr, "cq bench --prefill: CQ_ERR_NOMEM: buffers of D=%u T=%u\n", D, T);
        rc = -1;
        goto done;
    }
    uint16_t tab[4096];
    for (int i = 0; i < 4096; i++) tab[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
    for (size_t i = 0, n = (size_t)T * H * D; i < n; i += 1024) {
        size_t m = n - i < 1024 ? n - i : 1024;
        memcpy(K + i, tab + cq_rng_below(&r, 3072), m * 2);
        memcpy(V + i, tab + cq_rng_below(&r, 3072), m * 2);
    }
    for (size_t i = 0; i < qn; i++) q[i] = (float)cq_rng_normal(&r);
    for (int fi = 0; fi < o->n_fmts && !rc; fi++) {
        const cq_bench_fmt *f = &cq_bench_fmts[o->fmts[fi]];
        fprintf(stderr, "cq bench --prefill: D=%u T=%u %s: building ...\n", D, T, f->name);
        caches[fi] = make_cache(f, H, D, T, K, V, &r, &masks[fi]);
        if (!caches[fi]) {
            rc = -1;
            break;
        }
        for (int pi = 0; pi < (f->int4 ? o->n_prec : 1); pi++) {
            pcase *k = &cs[nc++];
            k->f = f, k->c = caches[fi], k->prec = f->int4 ? o->prec[pi] : CQ_ATTN_EXACT;
            k->first = malloc(qn * 4);
            k->t = malloc(o->reps * sizeof *k->t);
            if (!k->first || !k->t) {
                fprintf(stderr, "cq bench --prefill: CQ_ERR_NOMEM: output of D=%u T=%u\n", D, T);
                rc = -1;
                break;
            }
        }
    }
    const double pairs = (double)n_q * pos0 + (double)n_q * (n_q + 1) / 2.0;
    for (uint32_t ti = 0; ti < o->n_thr && !rc; ti++) {
        const uint32_t thr = o->thr[ti];
        for (int ci = 0; ci < nc; ci++) { /* warm pass: the result every timed pass must match */
            pcase *k = &cs[ci];
            cq_attn_opts op = {thr, 0.0f, (uint32_t)k->prec, o->pool};
            cq_err e;
            k->ok = cq_cache_attend_prefill(k->c, 0, q, n_q, pos0, NQ, k->first, &op, &e) == CQ_OK;
            if (!k->ok) cq_report("bench --prefill", e.code, &e);
            verify_case(k, q, n_q, pos0, NQ, H, D, o->tol, ref, Kb, Vb);
        }
        for (uint32_t rep = 0; rep < o->reps; rep++)
            for (int ci = 0; ci < nc; ci++) {
                pcase *k = &cs[ci];
                cq_attn_opts op = {thr, 0.0f, (uint32_t)k->prec, o->pool};
                double t0 = cq_tool_now();
                cq_status st = cq_cache_attend_prefill(k->c, 0, q, n_q, pos0, NQ, out, &op, NULL);
                k->t[rep] = cq_tool_now() - t0;
                k->ok &= st == CQ_OK && memcmp(out, k->first, qn * 4) == 0;
            }
        double fp16_med = 0.0;
        for (int ci = 0; ci < nc; ci++) {
            pcase *k = &cs[ci];
            if (!k->ok) {
                fprintf(stderr, "cq bench --prefill: CQ_ERR_MISMATCH: prefill output failed "
                                "verification (D=%u T=%u n_q=%u %s %s, %u threads, rel err %.3g, "
                                "limit %.3g)\n", D, T, n_q, k->f->name,
                        k->prec == CQ_ATTN_FAST ? "fast" : "exact", thr, k->err, k->lim);
                rc = -1;
                break;
            }
            qsort(k->t, o->reps, sizeof *k->t, cmp_d);
            prow *w = &rows[(*nrows)++];
            w->D = D, w->T = T, w->n_q = n_q, w->pos0 = pos0, w->thr = thr;
            w->fmt = k->f->name;
            w->prec = k->f->int4 ? (k->prec == CQ_ATTN_FAST ? "fast" : "exact") : "any";
            const double med = o->reps & 1 ? k->t[o->reps / 2]
                                           : 0.5 * (k->t[o->reps / 2 - 1] + k->t[o->reps / 2]);
            w->med_ms = med * 1e3, w->best_ms = k->t[0] * 1e3;
            w->pairs = pairs;
            w->pairs_s = pairs / med;
            w->gflops = 4.0 * D * pairs * NQ / med * 1e-9;
            w->err = k->err, w->lim = k->lim;
            if (k->f->k == CQ_CODEC_FP16 && k->f->v == CQ_CODEC_FP16) fp16_med = med;
            fprintf(stderr, "  D=%u T=%u n_q=%u %-9s %-5s %u thr: %.2f ms (best %.2f), %.1f GFLOP/s\n",
                    D, T, n_q, w->fmt, w->prec, thr, w->med_ms, w->best_ms, w->gflops);
        }
        for (int i = *nrows - nc; i < *nrows && !rc; i++)
            rows[i].speedup = fp16_med > 0 ? fp16_med * 1e3 / rows[i].med_ms : 0.0;
    }
done:
    for (int ci = 0; ci < nc; ci++) free(cs[ci].first), free(cs[ci].t);
    for (int fi = 0; fi < MAXF; fi++) cq_cache_free(caches[fi]), free(masks[fi]);
    free(K), free(V), free(q), free(out), free(ref), free(Kb), free(Vb);
    return rc;
}

static void print_rows(const popts *o, const prow *rows, int n) {
    const uint32_t NQ = o->kv_heads * o->gqa;
    if (o->json) {
        printf("{\"mode\": \"prefill\", \"kernels\": \"%s\", \"kv_heads\": %u, \"gqa\": %u, "
               "\"query_heads\": %u, \"reps\": %u, \"pool_threads\": %u, "
               "\"gflop_formula\": \"4 * D * pairs * query_heads / median\", \"rows\": [\n",
               cq_cache_kernels(NULL), o->kv_heads, o->gqa, NQ, o->reps, cq_pool_threads(o->pool));
        for (int i = 0; i < n; i++) {
            const prow *w = &rows[i];
            printf("  {\"D\": %u, \"context\": %u, \"n_q\": %u, \"pos0\": %u, \"threads\": %u, "
                   "\"format\": \"%s\", \"precision\": \"%s\", \"median_ms\": %.3f, "
                   "\"best_ms\": %.3f, \"pairs\": %.0f, \"pairs_per_s\": %.4g, \"gflops\": %.3f, "
                   "\"speedup_vs_fp16\": %.3f, \"rel_err\": %.3g, \"limit\": %.3g}%s\n",
                   w->D, w->T, w->n_q, w->pos0, w->thr, w->fmt, w->prec, w->med_ms, w->best_ms,
                   w->pairs, w->pairs_s, w->gflops, w->speedup, w->err, w->lim,
                   i + 1 < n ? "," : "");
        }
        printf("]}\n");
        return;
    }
    if (o->csv) {
        printf("D,context,n_q,pos0,threads,format,precision,median_ms,best_ms,pairs,pairs_per_s,"
               "gflops,speedup_vs_fp16,rel_err,limit\n");
        for (int i = 0; i < n; i++) {
            const prow *w = &rows[i];
            printf("%u,%u,%u,%u,%u,%s,%s,%.3f,%.3f,%.0f,%.4g,%.3f,%.3f,%.3g,%.3g\n", w->D, w->T,
                   w->n_q, w->pos0, w->thr, w->fmt, w->prec, w->med_ms, w->best_ms, w->pairs,
                   w->pairs_s, w->gflops, w->speedup, w->err, w->lim);
        }
        return;
    }
    printf("kernels: %s; %u KV heads x GQA %u = %u query heads; median and best of %u passes; "
           "one pool of %u threads\n",
           cq_cache_kernels(NULL), o->kv_heads, o->gqa, NQ, o->reps, cq_pool_threads(o->pool));
    printf("GFLOP/s = 4 x D x pairs x query heads / median; pairs = query x key pairs the causal "
           "mask keeps\n\n");
    printf("| D | context | n_q | pos0 | thr | K/V | precision | ms/layer median | best | "
           "Mpairs/s | GFLOP/s | vs fp16 | rel err |\n");
    printf("|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const prow *w = &rows[i];
        printf("| %u | %u | %u | %u | %u | %s | %s | %.2f | %.2f | %.1f | %.2f | %.2fx | %.2g |\n",
               w->D, w->T, w->n_q, w->pos0, w->thr, w->fmt, w->prec, w->med_ms, w->best_ms,
               w->pairs_s * 1e-6, w->gflops, w->speedup, w->err);
    }
}

int cq_bench_prefill(int argc, char **argv) {
    popts o = {{64, 128}, 2, {512, 2048, 4096}, 3, {1, 2}, 2, {0, 2}, 2,
               {CQ_ATTN_EXACT, CQ_ATTN_FAST}, 2, 8, 4, 5, 0, -1.0, 0, 0, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, n;
        if (cq_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--prefill")) continue;
        else if (!strcmp(a, "--quick")) {
            o.n_dims = 1, o.dims[0] = 64;
            o.n_ctx = 2, o.ctx[0] = 200, o.ctx[1] = 300;
            o.n_fmts = 2, o.fmts[0] = 0, o.fmts[1] = 2;
            o.reps = 2;
        } else if (!strcmp(a, "--json")) o.json = 1;
        else if (!strcmp(a, "--csv")) o.csv = 1;
        else if (!v) bad = 1;
        else if (!strcmp(a, "--dims")) {
            n = cq_bench_u32_list(v, o.dims, 4, 2, 512, NULL, 0);
            bad = n < 0, o.n_dims = n < 0 ? 0 : (uint32_t)n, i++;
            for (uint32_t k = 0; k < o.n_dims; k++) bad |= (o.dims[k] & 1) != 0;
        } else if (!strcmp(a, "--contexts") || !strcmp(a, "--context")) {
            n = cq_bench_u32_list(v, o.ctx, 8, 1, 1u << 16, NULL, 0);
            bad = n < 0, o.n_ctx = n < 0 ? 0 : (uint32_t)n, i++;
        } else if (!strcmp(a, "--chunk")) bad = cq_arg_u32(v, 1, 1u << 16, &o.chunk), i++;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            n = cq_bench_u32_list(v, o.thr, 4, 1, 64, NULL, 0);
            bad = n < 0, o.n_thr = n < 0 ? 0 : (uint32_t)n, i++;
        } else if (!strcmp(a, "--kv") || !strcmp(a, "--formats")) {
            n = cq_bench_fmt_list(v, o.fmts, MAXF, 1);
            bad = n < 0, o.n_fmts = n < 0 ? 0 : n, i++;
        } else if (!strcmp(a, "--precision")) {
            n = cq_bench_prec_list(v, o.prec);
            bad = n < 0, o.n_prec = n < 0 ? 0 : n, i++;
        } else if (!strcmp(a, "--kv-heads")) bad = cq_arg_u32(v, 1, 64, &o.kv_heads), i++;
        else if (!strcmp(a, "--gqa")) bad = cq_arg_u32(v, 1, 16, &o.gqa), i++;
        else if (!strcmp(a, "--reps")) bad = cq_arg_u32(v, 1, 1000, &o.reps), i++;
        else if (!strcmp(a, "--tolerance")) bad = cq_arg_f64(v, &o.tol) || !(o.tol >= 0), i++;
        else bad = 1;
        if (bad) {
            fprintf(stderr, "cq bench --prefill: CQ_ERR_ARG: bad or unknown option '%s'%s%s\n", a,
                    v ? " " : "", v ? v : "");
            usage(stderr);
            return 2;
        }
    }
    if (o.json && o.csv) {
        fprintf(stderr, "cq bench --prefill: CQ_ERR_ARG: --json and --csv are exclusive\n");
        return 2;
    }
    for (uint32_t k = 0; k < o.n_ctx; k++)
        if (o.chunk > o.ctx[k]) {
            fprintf(stderr, "cq bench --prefill: CQ_ERR_ARG: --chunk %u exceeds context %u\n",
                    o.chunk, o.ctx[k]);
            return 2;
        }
    cq_pool_opts po;
    uint32_t maxthr = 1;
    for (uint32_t k = 0; k < o.n_thr; k++) maxthr = o.thr[k] > maxthr ? o.thr[k] : maxthr;
    cq_pool_opts_default(&po, maxthr);
    cq_status pst = cq_pool_create(&po, &o.pool);
    if (pst) {
        fprintf(stderr, "cq bench --prefill: %s: cannot start %u threads\n", cq_status_name(pst),
                maxthr);
        return 1;
    }
    prow *rows = calloc((size_t)o.n_dims * o.n_ctx * o.n_thr * MAXC + 1, sizeof *rows);
    int n = 0, rc = rows ? 0 : 1;
    for (uint32_t di = 0; di < o.n_dims && !rc; di++)
        for (uint32_t ci = 0; ci < o.n_ctx && !rc; ci++)
            if (run_shape(&o, o.dims[di], o.ctx[ci], rows, &n)) rc = 1;
    if (!rc) print_rows(&o, rows, n);
    cq_pool_free(o.pool);
    free(rows);
    return rc;
}
