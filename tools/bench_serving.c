/* SPDX-License-Identifier: MIT */
/*
 * bench_serving.c - `cq bench --serving`: batched decode attention over many sequences
 * of one serving pool (cq_kvpool_attend, include/cq_serve.h), per number of sequences,
 * context (or a mixed-length set), head_dim, thread count, K/V format and attention
 * precision: time per step (best and median of the reps), the bytes a step streams
 * (codes, scales, sidecar and the fp16 in-flight groups of every sequence), the
 * effective GB/s, its fraction of the read-bandwidth probe of the same run (readings
 * before, between and after the timed steps; median, spread, unstable above 20%: as
 * `cq bench`) and the speedup over fp16 through the same batched code in the same run.
 * A step is one layer (one query token per sequence); the pools hold one layer, filled
 * with synthetic K/V through cq_seq_append. The formats of one point are timed
 * round-robin (one step of each in turn) so a drift of a shared machine hits them alike.
 * Verification: the first step of every format equals each sequence's single call
 * (cq_seq_attend) bit for bit, and every timed step reproduces the first. Beside the
 * table: the cost of forking a 16K-token sequence against prefilling (appending) it
 * again, and the memory of 32 sequences sharing a 2048-token prefix over one sequence.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_pool.h"
#include "cq_serve.h"
#include "cq_tool.h"

#define MAXF CQ_BENCH_NFMT
#define MAXC (2 * MAXF) /* format x precision cases of one point */
#define MIXED 0u        /* the context value that names the mixed-length set */


typedef struct sopts {
    uint32_t seqs[8], n_seqs, ctx[8], n_ctx, dims[4], n_dims, thr[4], n_thr;
    int fmts[MAXF], n_fmts, prec[2], n_prec;
    uint32_t kv_heads, gqa, reps, bw_mib, llc_mib, G;
    double max_gib;
    int json, csv, extras;
    cq_pool *pool;
} sopts;

typedef struct srow {
    uint32_t seqs, ctx, D, thr;
    int mixed;
    const char *fmt, *prec;
    double best_ms, median_ms, mb, gbps, frac, speedup;
    cq_bw_summary probe;
    int resident; /* the streamed bytes are under 4 x --llc-mib: may be cache-resident */
} srow;

static void usage(FILE *f) {
    fprintf(f,
            "usage: cq bench --serving [--seqs 16,64] [--context 1024,4096,16384,mixed]\n"
            "                [--head-dim 64,128] [-t|--threads 1,2] [--kv fp16,cq8,cq4,cq4+]\n"
            "                [--precision exact,fast] [--kv-heads 8] [--gqa 4] [--reps 5]\n"
            "                [--max-gib 2] [--bw-mib 512] [--llc-mib 32] [--no-extras]\n"
            "                [--json | --csv]\n\n"
            "Batched decode attention over many sequences of one serving pool\n"
            "(cq_kvpool_attend): one step attends one query token per sequence (kv-heads x gqa\n"
            "query heads) over one layer; the pools hold one layer (one suffices for timing:\n"
            "every layer of a step streams the same bytes), filled with synthetic K/V through\n"
            "cq_seq_append, G = 128, no sinks. 'mixed' is a set of lengths from 1K to 16K\n"
            "(cycling 1024, 2048, 4096, 8192, 16384 plus an odd offset, so most sequences\n"
            "have a group in flight); its context column is the mean length.\n"
            "Per row: step time (best and median of --reps), the bytes a step streams (codes,\n"
            "scales, sidecar, the fp16 in-flight groups), effective GB/s, its fraction of the\n"
            "read-bandwidth probe (median of readings before, between and after the timed\n"
            "steps with the same threads; spread (max - min) / median, marked unstable above\n"
            "20%%) and the speedup over fp16/fp16 through the same batched code in the same\n"
            "run. The formats of a point are timed round-robin. --kv takes fp16, cq8, cq4,\n"
            "cq4+ (CQ-4+ keys with 2 random outlier channels per head, CQ-4 values) or their\n"
            "K/V spellings; --precision applies where it changes the arithmetic (CQ-4 / CQ-4+\n"
            "keys, INT4 values); fp16 and cq8 rows say 'any'. Rows whose fp16 pool would\n"
            "exceed --max-gib GiB are skipped (64 x 16K x D 128 fp16 is 4 GiB); a row whose\n"
            "step streams less than 4 x --llc-mib is marked as possibly cache-resident.\n"
            "Verification: the first step of every format equals each sequence's\n"
            "cq_seq_attend bit for bit and every timed step reproduces it; a failure exits 1.\n"
            "Beside the table (not with --no-extras; not in --csv): a fork of a 16K-token\n"
            "sequence (CQ-4, 8 kv heads, D 128, one layer, 16384 + 37 tokens so an open block\n"
            "and an fp16 tail are copied) against prefilling it again, and 32 sequences\n"
            "sharing a 2048-token prefix (2 layers, 8 kv heads, D 128, G 128; each adopts the\n"
            "prefix but its last block, prefills that block and publishes it) over one\n"
            "sequence, by the pool's accounting and by its allocator.\n");
}

/* Length of sequence i of a point (ctx MIXED: the mixed-length set). */
static uint32_t seq_len(uint32_t ctx, uint32_t i) {
    if (ctx != MIXED) return ctx;
    return (1024u << (i % 5)) + (37u * i) % 128u;
}

/* One layer of synthetic K/V, [T][H][D] fp16 (values from a small table of normals). */
static void synth_kv(uint16_t *x, size_t n, cq_rng *r) {
    uint16_t tab[4096];
    for (int i = 0; i < 4096; i++) tab[i] = cq_f32_to_f16((float)cq_rng_normal(r));
    for (size_t i = 0; i < n; i += 1024) {
        size_t m = n - i < 1024 ? n - i : 1024;
        memcpy(x + i, tab + cq_rng_below(r, 3072), m * 2);
    }
}

/* A pool of one format: n sequences of one layer; masks kept for its life. */
typedef struct spool {
    const cq_bench_fmt *f;
    cq_kvpool *p;
    cq_seq **s;
    uint32_t n;
    uint8_t *masks;
    double bytes; /* what one step streams */
} spool;

static void spool_free(spool *sp) {
    for (uint32_t i = 0; sp->s && i < sp->n; i++) cq_seq_free(sp->s[i]);
    free(sp->s);
    cq_kvpool_free(sp->p);
    free(sp->masks);
    memset(sp, 0, sizeof *sp);
}

static cq_status make_pool(const cq_bench_fmt *f, uint32_t NL, uint32_t H, uint32_t D, uint32_t G,
                           uint64_t budget, cq_rng *r, cq_kvpool **out, uint8_t **masks) {
    cq_kvpool_config pc;
    memset(&pc, 0, sizeof pc);
    cq_cache_config_default(&pc.cache, NL, H, D);
    pc.cache.key_codec = f->k;
    pc.cache.val_codec = f->v;
    pc.cache.group = G;
    pc.budget_bytes = budget;
    pc.model_hash = 1;
    *masks = NULL;
    if (f->k == CQ_CODEC_CQ4P) { /* 2 random outlier channels per (layer, head) */
        *masks = calloc((size_t)NL * H * D, 1);
        if (!*masks) return CQ_ERR_NOMEM;
        for (uint32_t i = 0; i < NL * H; i++) {
            uint32_t a = cq_rng_below(r, D), b = (a + 1 + cq_rng_below(r, D - 1)) % D;
            (*masks)[(size_t)i * D + a] = (*masks)[(size_t)i * D + b] = 1;
        }
        pc.cache.outlier_masks = *masks;
    }
    cq_err e;
    cq_status st = cq_kvpool_create(&pc, out, &e);
    if (st) cq_report("bench --serving", st, &e);
    return st;
}

/* Bytes one decode step of sequence s (layer 0) streams: the committed codes in their
 * packed form (cq_seq_export: payload, scales, sidecar) and the fp16 in-flight group. */
static double seq_bytes(const cq_seq *s, const cq_bench_fmt *f, uint32_t H, uint32_t D, uint32_t G) {
    const uint32_t T = cq_seq_tokens(s, 0);
    double b = 0.0;
    for (uint32_t h = 0; h < H; h++)
        for (int role = 0; role < 2; role++) {
            size_t len = 0;
            cq_seq_export(s, 0, h, (cq_role)role, NULL, 0, &len, NULL);
            b += (double)len;
            const int unit_keys = role == 0 && (f->k == CQ_CODEC_CQ4 || f->k == CQ_CODEC_CQ4P);
            if (unit_keys) b += 2.0 * D * (T % G);
        }
    return b;
}

static int build_pool(const sopts *o, const cq_bench_fmt *f, uint32_t n, uint32_t ctx, uint32_t D,
                      const uint16_t *K, const uint16_t *V, cq_rng *r, spool *sp) {
    const uint32_t H = o->kv_heads;
    memset(sp, 0, sizeof *sp);
    sp->f = f;
    double fp = 0.0;
    for (uint32_t i = 0; i < n; i++) fp += (double)seq_len(ctx, i) * H * D * 4;
    if (make_pool(f, 1, H, D, o->G, (uint64_t)(fp * 1.25) + (64u << 20), r, &sp->p, &sp->masks))
        return -1;
    sp->s = calloc(n, sizeof *sp->s);
    if (!sp->s) return -1;
    sp->n = n;
    cq_err e;
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t T = seq_len(ctx, i);
        if (cq_seq_create(sp->p, &sp->s[i], &e)) goto fail;
        for (uint32_t t = 0; t < T; t += 4096) { /* prefill-sized chunks */
            const uint32_t m = T - t < 4096 ? T - t : 4096;
            if (cq_seq_append(sp->s[i], 0, K + (size_t)t * H * D, V + (size_t)t * H * D, m, &e))
                goto fail;
        }
        sp->bytes += seq_bytes(sp->s[i], f, H, D, o->G);
    }
    return 0;
fail:
    cq_report("bench --serving", e.code, &e);
    return -1;
}

/* One timed case: a pool and a precision. */
typedef struct scase {
    spool *sp;
    uint32_t prec; /* cq_attn_precision */
    float *first, *out;
    double *t;     /* [reps] */
    int ok;
} scase;

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Verify the first step: batched == each sequence's single call, bit for bit. */
static int verify_first(scase *c, const float *q, uint32_t NQ, uint32_t D, const cq_attn_opts *op) {
    cq_err e;
    cq_status st = cq_kvpool_attend(c->sp->p, 0, c->sp->s, c->sp->n, q, NQ, c->first, op, &e);
    if (st) {
        cq_report("bench --serving", st, &e);
        return 0;
    }
    int ok = 1;
    for (uint32_t i = 0; i < c->sp->n && ok; i++) {
        ok = cq_seq_attend(c->sp->s[i], 0, q + (size_t)i * NQ * D, NQ, c->out, op, NULL) == CQ_OK &&
             memcmp(c->out, c->first + (size_t)i * NQ * D, (size_t)NQ * D * 4) == 0;
    }
    return ok;
}

/* One (sequences, context, D) point: every format's pool built, then per thread count the
 * cases (format x precision) timed round-robin with probe readings around them. */
static int run_point(const sopts *o, uint32_t n, uint32_t ctx, uint32_t D, const uint8_t *bwbuf,
                     size_t bwbytes, srow *rows, int *nrows, cq_progress *pg, uint64_t *done) {
    const uint32_t H = o->kv_heads, NQ = H * o->gqa;
    uint32_t maxT = 0;
    double mean = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t T = seq_len(ctx, i);
        maxT = T > maxT ? T : maxT;
        mean += T;
    }
    mean /= n;
    cq_rng r;
    cq_rng_seed(&r, 4000 + n + ctx + D);
    size_t N = (size_t)maxT * H * D;
    uint16_t *K = malloc(N * 2), *V = malloc(N * 2);
    float *q = malloc((size_t)n * NQ * D * 4);
    spool sp[MAXF];
    scase cs[MAXC];
    int np = 0, nc = 0, rc = 0;
    memset(sp, 0, sizeof sp);
    memset(cs, 0, sizeof cs);
    if (!K || !V || !q) {
        fprintf(stderr, "cq bench --serving: CQ_ERR_NOMEM: input\n");
        rc = -1;
        goto done;
    }
    synth_kv(K, N, &r);
    synth_kv(V, N, &r);
    for (size_t i = 0; i < (size_t)n * NQ * D; i++) q[i] = (float)cq_rng_normal(&r);
    /* fp16 first: every row's speedup is against it */
    int order[MAXF + 1], no = 0;
    order[no++] = 0;
    for (int fi = 0; fi < o->n_fmts; fi++)
        if (o->fmts[fi] != 0) order[no++] = o->fmts[fi];
    for (int k = 0; k < no && !rc; k++) {
        fprintf(stderr, "cq bench --serving: %u x %u%s D=%u %s: filling ...\n", n,
                ctx == MIXED ? (uint32_t)(mean + 0.5) : ctx, ctx == MIXED ? " (mixed)" : "", D,
                cq_bench_fmts[order[k]].name);
        if (build_pool(o, &cq_bench_fmts[order[k]], n, ctx, D, K, V, &r, &sp[np++])) rc = -1;
    }
    free(K), free(V);
    K = V = NULL;
    int want_fp16 = 0;
    for (int fi = 0; fi < o->n_fmts; fi++) want_fp16 |= o->fmts[fi] == 0;
    for (int k = 0; k < np && !rc; k++)
        for (int pi = 0; pi < (sp[k].f->int4 ? o->n_prec : 1); pi++) {
            scase *c = &cs[nc++];
            c->sp = &sp[k];
            c->prec = sp[k].f->int4 ? (uint32_t)o->prec[pi] : CQ_ATTN_EXACT;
            c->first = malloc((size_t)n * NQ * D * 4);
            c->out = malloc((size_t)n * NQ * D * 4);
            c->t = malloc(o->reps * sizeof *c->t);
            if (!c->first || !c->out || !c->t) rc = -1;
        }
    for (uint32_t ti = 0; ti < o->n_thr && !rc; ti++) {
        const uint32_t thr = o->thr[ti];
        for (int ci = 0; ci < nc && !rc; ci++) {
            cq_attn_opts op = {thr, 0.0f, cs[ci].prec, o->pool};
            cs[ci].ok = verify_first(&cs[ci], q, NQ, D, &op);
            if (!cs[ci].ok) {
                fprintf(stderr, "cq bench --serving: CQ_ERR_MISMATCH: batched attention differs "
                                "from the single calls (%u x %u, D=%u, %s, %u threads)\n",
                        n, ctx, D, cs[ci].sp->f->name, thr);
                rc = -1;
            }
        }
        cq_bw_probe probe = {0};
        int pst = rc ? 0 : cq_bw_probe_read(&probe, o->pool, bwbuf, bwbytes, thr, 2);
        for (uint32_t rep = 0; rep < o->reps && !rc; rep++) {
            if (rep == o->reps / 2 && rep > 0 && !pst)
                pst = cq_bw_probe_read(&probe, o->pool, bwbuf, bwbytes, thr, 2);
            for (int ci = 0; ci < nc; ci++) {
                scase *c = &cs[ci];
                cq_attn_opts op = {thr, 0.0f, c->prec, o->pool};
                double t0 = cq_tool_now();
                cq_status st = cq_kvpool_attend(c->sp->p, 0, c->sp->s, n, q, NQ, c->out, &op, NULL);
                c->t[rep] = cq_tool_now() - t0;
                c->ok &= st == CQ_OK && memcmp(c->out, c->first, (size_t)n * NQ * D * 4) == 0;
            }
        }
        if (rc) break;
        if (!pst) pst = cq_bw_probe_read(&probe, o->pool, bwbuf, bwbytes, thr, 2);
        if (pst) {
            fprintf(stderr, "cq bench --serving: %s: the bandwidth probe failed (%u threads)\n",
                    cq_status_name((cq_status)pst), thr);
            rc = -1;
            break;
        }
        cq_bw_summary ps;
        cq_bw_probe_summarize(&probe, &ps);
        double fp16_best = 0.0;
        for (int ci = 0; ci < nc; ci++) {
            scase *c = &cs[ci];
            if (!c->ok) {
                fprintf(stderr, "cq bench --serving: CQ_ERR_MISMATCH: a timed step differs from "
                                "the first (%s)\n", c->sp->f->name);
                rc = -1;
                break;
            }
            qsort(c->t, o->reps, sizeof *c->t, cmp_dbl);
            const double best = c->t[0];
            const double med = o->reps % 2 ? c->t[o->reps / 2]
                                           : 0.5 * (c->t[o->reps / 2 - 1] + c->t[o->reps / 2]);
            if (c->sp->f == &cq_bench_fmts[0]) fp16_best = best;
            if (c->sp->f == &cq_bench_fmts[0] && !want_fp16) continue;
            srow *w = &rows[(*nrows)++];
            w->seqs = n, w->ctx = ctx == MIXED ? (uint32_t)(mean + 0.5) : ctx, w->D = D;
            w->thr = thr, w->mixed = ctx == MIXED;
            w->fmt = c->sp->f->name;
            w->prec = !c->sp->f->int4 ? "any" : c->prec == CQ_ATTN_FAST ? "fast" : "exact";
            w->best_ms = best * 1e3, w->median_ms = med * 1e3;
            w->mb = c->sp->bytes / 1e6;
            w->gbps = c->sp->bytes / best * 1e-9;
            w->probe = ps;
            w->frac = ps.median > 0 ? w->gbps / ps.median : 0.0;
            w->speedup = best > 0 ? fp16_best / best : 0.0;
            w->resident = c->sp->bytes < 4.0 * o->llc_mib * 1048576.0;
            fprintf(stderr, "  %u x %u%s D=%u %s %s %u thr: %.3f ms (median %.3f), %.2f GB/s = "
                            "%.0f%% of %.1f GB/s (spread %.0f%%%s), %.2fx fp16\n",
                    n, w->ctx, w->mixed ? " (mixed)" : "", D, w->fmt, w->prec, thr, w->best_ms,
                    w->median_ms, w->gbps, 100 * w->frac, ps.median, 100 * ps.spread,
                    ps.unstable ? ", unstable" : "", w->speedup);
        }
        *done += (uint64_t)nc;
        char ex[64];
        snprintf(ex, sizeof ex, "%u x %u D=%u %u thr", n, ctx, D, thr);
        cq_progress_update(pg, *done, ex);
    }
done:
    for (int ci = 0; ci < nc; ci++) free(cs[ci].first), free(cs[ci].out), free(cs[ci].t);
    for (int k = 0; k < np; k++) spool_free(&sp[k]);
    free(K), free(V), free(q);
    return rc;
}

/* ---------------------------------------------------------------- extras */

typedef struct fork_fig {
    uint32_t tokens;
    double fork_s, prefill_s, ratio;
    int ok;
} fork_fig;

/* Fork of a 16K-token CQ-4 sequence (best of 5) against appending its tokens again. */
static void fork_figure(fork_fig *ff) {
    const uint32_t H = 8, D = 128, T = 16384 + 37;
    memset(ff, 0, sizeof *ff);
    ff->tokens = T;
    cq_rng r;
    cq_rng_seed(&r, 16);
    size_t N = (size_t)T * H * D;
    uint16_t *K = malloc(N * 2), *V = malloc(N * 2);
    cq_kvpool *p = NULL;
    uint8_t *masks = NULL;
    if (!K || !V || make_pool(&cq_bench_fmts[2], 1, H, D, 128, 1ull << 30, &r, &p, &masks)) goto done;
    synth_kv(K, N, &r);
    synth_kv(V, N, &r);
    cq_seq *a = NULL, *b = NULL;
    if (cq_seq_create(p, &a, NULL) || cq_seq_create(p, &b, NULL)) goto done;
    double t0 = cq_tool_now();
    int ok = cq_seq_append(a, 0, K, V, T, NULL) == CQ_OK;
    ff->prefill_s = cq_tool_now() - t0;
    /* a second prefill of the same tokens, into a second sequence: the better of two */
    t0 = cq_tool_now();
    ok &= cq_seq_append(b, 0, K, V, T, NULL) == CQ_OK;
    double t1 = cq_tool_now() - t0;
    if (t1 < ff->prefill_s) ff->prefill_s = t1;
    cq_seq_free(b);
    ff->fork_s = 1e30;
    for (int i = 0; i < 5 && ok; i++) {
        cq_seq *c = NULL;
        t0 = cq_tool_now();
        ok &= cq_seq_fork(a, &c, NULL) == CQ_OK;
        t1 = cq_tool_now() - t0;
        if (t1 < ff->fork_s) ff->fork_s = t1;
        ok &= cq_seq_tokens(c, 0) == T;
        cq_seq_free(c);
    }
    ff->ok = ok;
    ff->ratio = ok && ff->prefill_s > 0 ? ff->fork_s / ff->prefill_s : 0.0;
done:
    cq_kvpool_free(p);
    free(masks), free(K), free(V);
}

typedef struct share_fig {
    const char *fmt;
    double accounting, allocator;
    uint64_t one, all;
    int ok;
} share_fig;

/* K/V of token id `tok` at position `pos` of layer L: a function of the three. */
static void kv_of_token(uint32_t L, uint32_t pos, uint32_t tok, uint32_t H, uint32_t D,
                        uint16_t *k, uint16_t *v) {
    cq_rng r;
    cq_rng_seed(&r, ((uint64_t)L << 48) ^ ((uint64_t)pos << 24) ^ tok);
    for (uint32_t i = 0; i < H * D; i++) {
        k[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
        v[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
    }
}

static cq_status prefill_tokens(cq_seq *s, const uint32_t *tok, uint32_t t0, uint32_t t1,
                                uint32_t NL, uint32_t H, uint32_t D) {
    const uint32_t n = t1 - t0;
    if (!n) return CQ_OK;
    uint16_t *k = malloc((size_t)n * H * D * 2), *v = malloc((size_t)n * H * D * 2);
    cq_status st = k && v ? CQ_OK : CQ_ERR_NOMEM;
    for (uint32_t L = 0; L < NL && !st; L++) {
        for (uint32_t i = 0; i < n; i++)
            kv_of_token(L, t0 + i, tok[t0 + i], H, D, k + (size_t)i * H * D, v + (size_t)i * H * D);
        st = cq_seq_append(s, L, k, v, n, NULL);
    }
    free(k), free(v);
    return st;
}

/* 32 sequences sharing a 2048-token prompt, as tests/test_serve_prefix.c builds them. */
static void share_figure(const cq_bench_fmt *f, share_fig *sf) {
    const uint32_t NL = 2, H = 8, D = 128, G = 128, n = 2048, NSEQ = 32;
    memset(sf, 0, sizeof *sf);
    sf->fmt = f->name;
    cq_rng r;
    cq_rng_seed(&r, 32);
    cq_kvpool *p = NULL;
    uint8_t *masks = NULL;
    uint32_t P[2048];
    for (uint32_t i = 0; i < n; i++) P[i] = cq_rng_below(&r, 50000);
    if (make_pool(f, NL, H, D, G, 1ull << 30, &r, &p, &masks)) {
        free(masks);
        return;
    }
    cq_seq *s[32] = {0};
    cq_kvpool_mem e0, e1, e32;
    cq_kvpool_memory(p, &e0);
    const uint64_t a0 = cq_kvpool_allocated_bytes(p);
    uint64_t a1 = 0;
    int bad = 0;
    for (uint32_t i = 0; i < NSEQ; i++) {
        uint32_t got = 0;
        bad += cq_seq_create(p, &s[i], NULL) != CQ_OK;
        bad += cq_seq_adopt_prefix(s[i], P, n, &got, NULL) != CQ_OK;
        bad += got != (i ? n - G : 0);
        bad += prefill_tokens(s[i], P, got, n, NL, H, D) != CQ_OK;
        bad += cq_seq_publish(s[i], P, n, NULL) != CQ_OK;
        if (i == 0) {
            cq_kvpool_memory(p, &e1);
            a1 = cq_kvpool_allocated_bytes(p);
        }
    }
    cq_kvpool_memory(p, &e32);
    const uint64_t a32 = cq_kvpool_allocated_bytes(p);
    sf->one = e1.total - e0.total, sf->all = e32.total - e0.total;
    sf->accounting = (double)sf->all / (double)sf->one;
    sf->allocator = (double)(a32 - a0) / (double)(a1 - a0);
    sf->ok = bad == 0 && cq_kvpool_check(p, NULL) == CQ_OK;
    for (uint32_t i = 0; i < NSEQ; i++) cq_seq_free(s[i]);
    cq_kvpool_free(p);
    free(masks);
}

/* ---------------------------------------------------------------- output */

static void print_all(const sopts *o, const srow *rows, int n, const fork_fig *ff,
                      const share_fig *sf, int nsf, int proc_threads) {
    if (o->csv) {
        printf("format,precision,sequences,context,mixed,head_dim,threads,step_ms,step_median_ms,"
               "streamed_mb,gbps,read_gbps,read_min_gbps,read_max_gbps,read_spread,read_unstable,"
               "read_bw_fraction,speedup_vs_fp16,cache_resident\n");
        for (int i = 0; i < n; i++) {
            const srow *w = &rows[i];
            printf("%s,%s,%u,%u,%d,%u,%u,%.4f,%.4f,%.3f,%.3f,%.3f,%.3f,%.3f,%.4f,%d,%.4f,%.3f,%d\n",
                   w->fmt, w->prec, w->seqs, w->ctx, w->mixed, w->D, w->thr, w->best_ms,
                   w->median_ms, w->mb, w->gbps, w->probe.median, w->probe.min, w->probe.max,
                   w->probe.spread, w->probe.unstable, w->frac, w->speedup, w->resident);
        }
        return;
    }
    if (o->json) {
        printf("{\"mode\": \"serving\", \"kernels\": \"%s\", \"kv_heads\": %u, \"gqa\": %u, "
               "\"group\": %u, \"layers_timed\": 1, \"pool_threads\": %u, \"process_threads\": %d, "
               "\"rows\": [\n",
               cq_cache_kernels(NULL), o->kv_heads, o->gqa, o->G, cq_pool_threads(o->pool),
               proc_threads);
        for (int i = 0; i < n; i++) {
            const srow *w = &rows[i];
            printf("  {\"format\": \"%s\", \"precision\": \"%s\", \"sequences\": %u, \"context\": %u, "
                   "\"mixed\": %s, \"head_dim\": %u, \"threads\": %u, \"step_ms\": %.4f, "
                   "\"step_median_ms\": %.4f, \"streamed_mb\": %.3f, \"gbps\": %.3f, "
                   "\"read_gbps\": %.3f, \"read_min_gbps\": %.3f, \"read_max_gbps\": %.3f, "
                   "\"read_spread\": %.4f, \"read_unstable\": %s, \"read_bw_fraction\": %.4f, "
                   "\"speedup_vs_fp16\": %.3f, \"cache_resident\": %s}%s\n",
                   w->fmt, w->prec, w->seqs, w->ctx, w->mixed ? "true" : "false", w->D, w->thr,
                   w->best_ms, w->median_ms, w->mb, w->gbps, w->probe.median, w->probe.min,
                   w->probe.max, w->probe.spread, w->probe.unstable ? "true" : "false", w->frac,
                   w->speedup, w->resident ? "true" : "false", i + 1 < n ? "," : "");
        }
        printf("]");
        if (o->extras) {
            printf(",\n\"fork\": {\"format\": \"cq4/cq4\", \"tokens\": %u, \"fork_ms\": %.4f, "
                   "\"prefill_ms\": %.3f, \"ratio\": %.6f, \"ok\": %s},\n\"prefix_sharing\": [",
                   ff->tokens, ff->fork_s * 1e3, ff->prefill_s * 1e3, ff->ratio,
                   ff->ok ? "true" : "false");
            for (int i = 0; i < nsf; i++)
                printf("%s{\"format\": \"%s\", \"sequences\": 32, \"prefix_tokens\": 2048, "
                       "\"one_bytes\": %llu, \"all_bytes\": %llu, \"accounting_ratio\": %.4f, "
                       "\"allocator_ratio\": %.4f, \"ok\": %s}",
                       i ? ", " : "", sf[i].fmt, (unsigned long long)sf[i].one,
                       (unsigned long long)sf[i].all, sf[i].accounting, sf[i].allocator,
                       sf[i].ok ? "true" : "false");
            printf("]");
        }
        printf("}\n");
        return;
    }
    printf("kernels: %s; %u KV heads x GQA %u; G = %u; one layer per step (pools of one layer, "
           "synthetic K/V); one thread pool of %u; threads of the process: %d\n\n",
           cq_cache_kernels(NULL), o->kv_heads, o->gqa, o->G, cq_pool_threads(o->pool),
           proc_threads);
    printf("| seqs | context | D | thr | K/V | precision | step ms (best / median) | MB/step | GB/s "
           "| read GB/s (median) | probe spread | of read | vs fp16 |\n");
    printf("|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const srow *w = &rows[i];
        printf("| %u | %u%s | %u | %u | %s | %s | %.3f / %.3f | %.1f%s | %.2f | %.2f | %.0f%%%s | "
               "%.0f%% | %.2fx |\n",
               w->seqs, w->ctx, w->mixed ? " (mixed)" : "", w->D, w->thr, w->fmt, w->prec,
               w->best_ms, w->median_ms, w->mb, w->resident ? " (cache?)" : "", w->gbps,
               w->probe.median, 100 * w->probe.spread, w->probe.unstable ? " unstable" : "",
               100 * w->frac, w->speedup);
    }
    if (!o->extras) return;
    printf("\nfork of a %u-token cq4/cq4 sequence (8 kv heads, D 128, one layer): %.4f ms against "
           "%.1f ms to prefill it again: %.4f%% (target < 1%%)%s\n",
           ff->tokens, ff->fork_s * 1e3, ff->prefill_s * 1e3, 100 * ff->ratio,
           ff->ok ? "" : " FAILED");
    for (int i = 0; i < nsf; i++)
        printf("32 sequences sharing a 2048-token prefix, %s (2 layers, 8 kv heads, D 128): "
               "%.4fx one sequence by the accounting (%llu / %llu bytes), %.4fx by the "
               "allocator (target < 1.1x)%s\n",
               sf[i].fmt, sf[i].accounting, (unsigned long long)sf[i].all,
               (unsigned long long)sf[i].one, sf[i].allocator, sf[i].ok ? "" : " FAILED");
}

/* Threads of this process now, or -1. */
static int proc_threads_now(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8)) n = atoi(line + 8);
    fclose(f);
    return n;
}

int cq_bench_serving(int argc, char **argv) {
    sopts o = {{16, 64}, 2, {1024, 4096, 16384, MIXED}, 4, {64, 128}, 2, {1, 2}, 2,
               {0, 1, 2, 3}, 4, {CQ_ATTN_EXACT, CQ_ATTN_FAST}, 2,
               8, 4, 5, 512, 32, 128, 2.0, 0, 0, 1, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, n;
        if (cq_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--serving")) continue;
        else if (!strcmp(a, "--json")) o.json = 1;
        else if (!strcmp(a, "--csv")) o.csv = 1;
        else if (!strcmp(a, "--no-extras")) o.extras = 0;
        else if (!v) bad = 1;
        else if (!strcmp(a, "--seqs")) {
            n = cq_bench_u32_list(v, o.seqs, 8, 1, 4096, NULL, 0);
            bad = n < 0, o.n_seqs = n < 0 ? 0 : (uint32_t)n, i++;
        } else if (!strcmp(a, "--context") || !strcmp(a, "--contexts")) {
            n = cq_bench_u32_list(v, o.ctx, 8, 1, 1u << 20, "mixed", MIXED);
            bad = n < 0, o.n_ctx = n < 0 ? 0 : (uint32_t)n, i++;
        } else if (!strcmp(a, "--head-dim") || !strcmp(a, "--dims")) {
            n = cq_bench_u32_list(v, o.dims, 4, 2, 512, NULL, 0);
            bad = n < 0, o.n_dims = n < 0 ? 0 : (uint32_t)n, i++;
            for (uint32_t k = 0; k < o.n_dims; k++) bad |= (o.dims[k] & 1) != 0;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
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
        else if (!strcmp(a, "--bw-mib")) bad = cq_arg_u32(v, 16, 16384, &o.bw_mib), i++;
        else if (!strcmp(a, "--llc-mib")) bad = cq_arg_u32(v, 1, 4096, &o.llc_mib), i++;
        else if (!strcmp(a, "--max-gib")) bad = cq_arg_f64(v, &o.max_gib) || !(o.max_gib > 0), i++;
        else bad = 1;
        if (bad) {
            fprintf(stderr, "cq bench --serving: CQ_ERR_ARG: bad or unknown option '%s'%s%s\n", a,
                    v ? " " : "", v ? v : "");
            usage(stderr);
            return 2;
        }
    }
    if (o.json && o.csv) {
        fprintf(stderr, "cq bench --serving: CQ_ERR_ARG: --json and --csv are exclusive\n");
        return 2;
    }
    size_t bwbytes = (size_t)o.bw_mib << 20;
    uint8_t *bwbuf = aligned_alloc(64, bwbytes);
    if (!bwbuf) {
        fprintf(stderr, "cq bench --serving: CQ_ERR_NOMEM: bandwidth buffer\n");
        return 1;
    }
    for (size_t i = 0; i < bwbytes; i++) bwbuf[i] = (uint8_t)(i * 131);
    uint32_t maxthr = 1;
    for (uint32_t k = 0; k < o.n_thr; k++) maxthr = o.thr[k] > maxthr ? o.thr[k] : maxthr;
    cq_pool_opts po;
    cq_pool_opts_default(&po, maxthr);
    cq_status pst = cq_pool_create(&po, &o.pool);
    if (pst) {
        fprintf(stderr, "cq bench --serving: %s: cannot start %u threads\n", cq_status_name(pst),
                maxthr);
        free(bwbuf);
        return 1;
    }
    /* the points that fit --max-gib (by their fp16 pool), and the cases they time */
    uint64_t total = 0;
    int per_point = 1; /* fp16 */
    for (int fi = 0; fi < o.n_fmts; fi++)
        if (o.fmts[fi]) per_point += cq_bench_fmts[o.fmts[fi]].int4 ? o.n_prec : 1;
    for (uint32_t si = 0; si < o.n_seqs; si++)
        for (uint32_t ci = 0; ci < o.n_ctx; ci++)
            for (uint32_t di = 0; di < o.n_dims; di++) {
                double fp = 0.0;
                for (uint32_t i = 0; i < o.seqs[si]; i++)
                    fp += (double)seq_len(o.ctx[ci], i) * o.kv_heads * o.dims[di] * 4;
                if (fp <= o.max_gib * 1073741824.0) total += (uint64_t)per_point * o.n_thr;
                else
                    fprintf(stderr, "cq bench --serving: skipped %u x %s%u D=%u: its fp16 pool is "
                                    "%.1f GiB > --max-gib %.1f\n",
                            o.seqs[si], o.ctx[ci] == MIXED ? "mixed " : "", o.ctx[ci], o.dims[di],
                            fp / 1073741824.0, o.max_gib);
            }
    srow *rows = calloc(total + 1, sizeof *rows);
    int nrows = 0, rc = rows ? 0 : 1;
    cq_progress pg;
    cq_progress_start(&pg, "cq bench --serving", total);
    uint64_t done = 0;
    for (uint32_t si = 0; si < o.n_seqs && !rc; si++)
        for (uint32_t ci = 0; ci < o.n_ctx && !rc; ci++)
            for (uint32_t di = 0; di < o.n_dims && !rc; di++) {
                double fp = 0.0;
                for (uint32_t i = 0; i < o.seqs[si]; i++)
                    fp += (double)seq_len(o.ctx[ci], i) * o.kv_heads * o.dims[di] * 4;
                if (fp > o.max_gib * 1073741824.0) continue;
                if (run_point(&o, o.seqs[si], o.ctx[ci], o.dims[di], bwbuf, bwbytes, rows, &nrows,
                              &pg, &done))
                    rc = 1;
            }
    cq_progress_end(&pg);
    free(bwbuf);
    fork_fig ff;
    share_fig sf[MAXF];
    int nsf = 0;
    memset(&ff, 0, sizeof ff);
    if (!rc && o.extras) {
        fprintf(stderr, "cq bench --serving: fork and prefix-sharing figures ...\n");
        fork_figure(&ff);
        rc |= !ff.ok;
        for (int fi = 0; fi < o.n_fmts; fi++) {
            share_figure(&cq_bench_fmts[o.fmts[fi]], &sf[nsf]);
            rc |= !sf[nsf++].ok;
        }
    }
    print_all(&o, rows, nrows, &ff, sf, nsf, proc_threads_now());
    cq_pool_free(o.pool);
    free(rows);
    return rc;
}
