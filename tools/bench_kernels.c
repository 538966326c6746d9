/* SPDX-License-Identifier: MIT */
/*
 * bench_kernels.c - `cq bench --kernels`: the attention kernels alone, L1-resident,
 * per kernel table this CPU runs (scalar, avx2, avx512). One call covers 128 tokens
 * of one KV head with 4 query heads at head_dim D, as a decode run does; the figure
 * is ns per token (all 4 heads), best of 7 trials taken round-robin over the
 * tables and kernels. Before timing, every table's
 * output is checked against the scalar table's: bit for bit for the integer
 * kernels, within 1e-5 of the sum of absolute terms for the fp32 ones.
 * Not here: the cache-level bench (cmd_bench.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/kernels/cq_kernels.h"
#include "cq_tool.h"

enum { KN = 128, KH = 4, NK = 13 };

typedef struct kb_data {
    uint32_t D;
    float w[KH * KN], q[KH * CQ_MAX_DIM], qp[KH * CQ_MAX_DIM], s[KH * KN];
    float acc[KH * CQ_MAX_DIM], e[KH * KN], es[KH];
    uint8_t v[KN * CQ_MAX_DIM / 2 + 64], sh[KH * (CQ_MAX_DIM / CQ_Q8_BLOCK + 1)];
    uint16_t h16[KN * CQ_MAX_DIM]; /* fp16 keys / values of the fp16 path */
    int8_t q8[KH * CQ_MAX_DIM];
    uint16_t vs[KN], ksc[CQ_MAX_DIM]; /* value scales; a key group's channel scales */
    float qs[KH];
} kb_data;

static const char *const KNAME[NK] = {"acc_i4 (exact values)", "acc_i4q (fast values)",
                                      "dot_i4 (exact keys)",   "dot_i4q (fast keys)",
                                      "exp_sum x4",            "quant_q8 x4",
                                      "acc_i4tq (fast values, blocks)",
                                      "dot_i4tq (fast keys, tiles)",
                                      "acc_i4t (exact values, blocks)",
                                      "dot_i4t (exact keys, tiles)",
                                      "dot_f16 (fp16 keys)",
                                      "acc_f16 (fp16 values)",
                                      "fold_quant_q8 x4"};
static const char *const KID[NK] = {"acc_i4",      "acc_i4q",     "dot_i4",   "dot_i4q",
                                    "exp_sum_x4",  "quant_q8_x4", "acc_i4tq", "dot_i4tq",
                                    "acc_i4t",     "dot_i4t",     "dot_f16",  "acc_f16",
                                    "fold_quant_q8_x4"};

static void run_kernel(const cq_kernels *k, int which, kb_data *d) {
    const uint32_t D = d->D;
    switch (which) {
    case 0: k->acc_i4(d->w, KN, KH, d->v, d->vs, KN, D, d->acc); break;
    case 1: k->acc_i4q(d->w, KN, KH, d->v, d->vs, KN, D, d->acc); break;
    case 2: k->dot_i4(d->qp, KH, d->v, KN, D, d->s, KN); break;
    case 3: k->dot_i4q(d->q8, d->sh, d->qs, KH, d->v, KN, D, d->s, KN); break;
    case 6: k->acc_i4tq(d->w, KN, KH, d->v, 0, d->vs, KN, D, d->acc); break;
    case 7: k->dot_i4tq(d->q8, d->sh, d->qs, KH, d->v, 0, KN, D, d->s, KN); break;
    case 8: k->acc_i4t(d->w, KN, KH, d->v, 0, d->vs, KN, D, d->acc); break;
    case 9: k->dot_i4t(d->qp, KH, d->v, 0, KN, D, d->s, KN); break;
    case 10: k->dot_f16(d->q, KH, d->h16, KN, D, d->s, KN); break;
    case 11: k->acc_f16(d->w, KN, KH, d->h16, KN, D, d->acc); break;
    case 12: k->fold_quant_q8(d->q, KH, D, d->ksc, D, d->q8, d->sh, d->qs); break;
    case 4: {
        float m[KH];
        for (uint32_t h = 0; h < KH; h++) m[h] = 1.0f;
        memcpy(d->e, d->w, sizeof d->e);
        k->exp_sum(d->e, KN, KH, KN, m, d->es);
        break;
    }
    case 5:
        for (uint32_t h = 0; h < KH; h++)
            k->quant_q8(d->qp + h * D, D, d->q8 + h * D, d->sh + h * (D / CQ_Q8_BLOCK),
                        d->qs + h);
    }
}

static void fill(kb_data *d, uint32_t D) {
    cq_rng r;
    cq_rng_seed(&r, 77);
    d->D = D;
    for (uint32_t i = 0; i < KH * KN; i++) d->w[i] = (float)exp(-fabs(cq_rng_normal(&r)) * 2.0);
    for (uint32_t i = 0; i < KH * D; i++) d->q[i] = d->qp[i] = (float)cq_rng_normal(&r);
    for (size_t i = 0; i < sizeof d->v; i++) d->v[i] = (uint8_t)cq_rng_below(&r, 256);
    for (size_t i = 0; i < (size_t)KN * D; i++) d->h16[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
    for (uint32_t t = 0; t < KN; t++) d->vs[t] = cq_f32_to_f16(0.05f + (float)cq_rng_uniform(&r));
    /* channel scales over two octaves, as a key group's spread */
    for (uint32_t c = 0; c < D; c++) d->ksc[c] = cq_f32_to_f16(0.02f * (float)exp2(2.0 * cq_rng_uniform(&r)));
    memset(d->acc, 0, sizeof d->acc);
    const cq_kernels *s = cq_kernels_scalar();
    for (uint32_t h = 0; h < KH; h++)
        s->quant_q8(d->qp + h * D, D, d->q8 + h * D, d->sh + h * (D / CQ_Q8_BLOCK), d->qs + h);
}

/* the table's output of kernel `which` against the scalar table's, on the same input */
static int check(const cq_kernels *k, int which, uint32_t D) {
    static kb_data a, b;
    fill(&a, D);
    fill(&b, D);
    run_kernel(cq_kernels_scalar(), which, &a);
    run_kernel(k, which, &b);
    if (which == 1 || which == 3 || (which >= 5 && which <= 7) || which == 12) /* integer rules: bit for bit */
        return which == 1 || which == 6   ? !memcmp(a.acc, b.acc, sizeof a.acc)
               : which == 3 || which == 7 ? !memcmp(a.s, b.s, sizeof a.s)
                                          : !memcmp(a.q8, b.q8, sizeof a.q8) &&
                                                !memcmp(a.sh, b.sh, sizeof a.sh) &&
                                                !memcmp(a.qs, b.qs, sizeof a.qs);
    const int sc = which == 2 || which == 9 || which == 10; /* scores, else accumulators */
    const float *x = sc ? a.s : which == 4 ? a.e : a.acc;
    const float *y = sc ? b.s : which == 4 ? b.e : b.acc;
    size_t n = sc ? KH * KN : which == 4 ? KN : KH * D;
    double mag = 0.0;
    for (size_t i = 0; i < n; i++) mag += fabs(x[i]);
    for (size_t i = 0; i < n; i++)
        if (fabs((double)x[i] - y[i]) > 1e-5 * mag + 1e-30) return 0;
    return 1;
}

/* The core clock, measured: a chain of dependent integer adds retires one add per cycle on
 * every x86-64 core (latency 1), so adds per ns is GHz. Best of 5 trials (time a shared
 * machine takes away only lowers a trial, as it only slows a kernel's); 0 elsewhere. */
static double clock_ghz(void) {
#if defined(__x86_64__)
    double best = 0.0;
    for (int trial = 0; trial < 5; trial++) {
        uint64_t x = 0;
        const uint32_t iters = 2000000; /* 20M adds: ~5 ms */
        double t0 = cq_tool_now();
        for (uint32_t i = 0; i < iters; i++)
            __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             "add $1, %0\n\tadd $1, %0"
                             : "+r"(x));
        double ghz = (double)iters * 10.0 / ((cq_tool_now() - t0) * 1e9);
        if (x == (uint64_t)iters * 10 && ghz > best) best = ghz;
    }
    return best;
#else
    return 0.0;
#endif
}

/* Bytes of the cache stream a kernel reads per token of one KV head at head_dim D (CQ-4 keys:
 * codes and the G = 128 group's per-channel fp16 scales; CQ-4 values: codes and the token's
 * fp16 scale; fp16: the row); 0 for the kernels that read no stream. */
static double stream_bytes(int which, uint32_t D) {
    switch (which) {
    case 2: case 3: case 7: case 9: return D / 2.0 + 2.0 * D / 128.0;
    case 0: case 1: case 6: case 8: return D / 2.0 + 2.0;
    case 10: case 11: return 2.0 * D;
    default: return 0.0;
    }
}

/* A decode step's kernels per token of one KV head (4 query heads): keys, softmax, values
 * (FAST adds its per-run query fold and rounding, fold_quant_q8, timed per token of a 128-token run). */
typedef struct kb_step {
    const char *id, *name;
    int k[4], nk;
    int integer; /* its products: 1 byte products (FAST INT4 loops), 0 fp32 FMAs */
} kb_step;
static const kb_step STEPS[] = {
    {"cq4_exact", "CQ-4 EXACT (dot_i4t + exp_sum + acc_i4t)", {9, 4, 8}, 3, 0},
    {"cq4_fast", "CQ-4 FAST (fold_quant_q8 + dot_i4tq + exp_sum + acc_i4tq)", {12, 7, 4, 6}, 4, 1},
    {"fp16", "fp16 (dot_f16 + exp_sum + acc_f16)", {10, 4, 11}, 3, 0},
};
enum { NS = 3 };
/* The fraction of the probe a decode step is held to (issue: >= 80% of the median). */
#define KB_TARGET 0.8

int cq_bench_kernels(uint32_t D, uint32_t reps, int json, int csv, size_t bw_bytes) {
    const cq_kernels *tabs[3] = {cq_kernels_scalar(), cq_kernels_avx2(), cq_kernels_avx512()};
    static kb_data d;
    double ns[3][NK], ghz = 0.0, peak[CQ_PEAK_N] = {0};
    int rc = 0;
    if (D % 32 || D > CQ_MAX_DIM) {
        fprintf(stderr, "cq bench: CQ_ERR_ARG: --kernels needs D a multiple of 32 up to %u\n",
                CQ_MAX_DIM);
        return 2;
    }
    /* the bandwidth probe (1 and 2 threads), a reading before, between and after the trials */
    uint8_t *bwbuf = aligned_alloc(64, bw_bytes);
    cq_pool *pool = NULL;
    cq_pool_opts po;
    cq_pool_opts_default(&po, 2);
    if (!bwbuf || cq_pool_create(&po, &pool)) {
        fprintf(stderr, "cq bench: CQ_ERR_NOMEM: bandwidth buffer or pool\n");
        free(bwbuf);
        return 1;
    }
    for (size_t i = 0; i < bw_bytes; i++) bwbuf[i] = (uint8_t)(i * 131);
    cq_bw_probe probe[2] = {{0}, {0}};
    int pst = 0;
#define PROBE()                                                                                    \
    for (uint32_t th = 1; th <= 2; th++)                                                           \
        pst |= (int)cq_bw_probe_read(&probe[th - 1], pool, bwbuf, bw_bytes, th, 2)
    PROBE();
    fill(&d, D);
    for (int ti = 0; ti < 3; ti++)
        for (int kk = 0; tabs[ti] && kk < NK; kk++) {
            ns[ti][kk] = 1e30;
            if (!check(tabs[ti], kk, D)) {
                fprintf(stderr, "cq bench: CQ_ERR_MISMATCH: %s %s differs from the scalar table\n",
                        tabs[ti]->name, KNAME[kk]);
                rc = 1;
            }
        }
    /* trials round-robin over tables and kernels: a slow moment of a shared machine costs
     * one trial of each, not every trial of one */
    for (int trial = 0; trial < 7; trial++) {
        for (int ti = 0; ti < 3; ti++)
            for (int kk = 0; tabs[ti] && kk < NK; kk++) {
                const uint32_t n = ti == 0 ? (reps + 19) / 20 : reps; /* scalar: 20x slower */
                double t0 = cq_tool_now();
                for (uint32_t r = 0; r < n; r++) run_kernel(tabs[ti], kk, &d);
                double dt = (cq_tool_now() - t0) / n / KN * 1e9;
                if (dt < ns[ti][kk]) ns[ti][kk] = dt;
            }
        double g = clock_ghz(); /* beside every trial: the best reading, like the kernels' */
        if (g > ghz) ghz = g;
        for (int p = 0; p < CQ_PEAK_N; p++) {
            double r = cq_peak_measure(p, tabs[1] != NULL, tabs[2] != NULL);
            if (r > peak[p]) peak[p] = r;
        }
        fprintf(stderr, "cq bench: kernels, trial %d of 7\n", trial + 1);
        if (trial == 3) PROBE();
    }
    PROBE();
#undef PROBE
    cq_pool_free(pool);
    free(bwbuf);
    if (pst) {
        fprintf(stderr, "cq bench: the bandwidth probe failed\n");
        return 1;
    }
    cq_bw_summary bs[2];
    cq_bw_probe_summarize(&probe[0], &bs[0]);
    cq_bw_probe_summarize(&probe[1], &bs[1]);
    /* per core, GB/s = bytes per ns: the 1-thread median, and half the 2-thread one */
    const double core_bw[2] = {bs[0].median, bs[1].median / 2.0};
    /* values (one KV head's channels of one token) per cycle; required: the stream at the
     * per-core bandwidth */
    double vpc[3][NK], need[2][NK], step_ns[3][NS], step_need[2][NS];
    for (int ti = 0; ti < 3; ti++)
        for (int kk = 0; tabs[ti] && kk < NK; kk++) vpc[ti][kk] = ghz > 0 ? D / (ns[ti][kk] * ghz) : 0;
    for (int c = 0; c < 2; c++)
        for (int kk = 0; kk < NK; kk++) {
            double b = stream_bytes(kk, D);
            need[c][kk] = b > 0 && ghz > 0 ? core_bw[c] / (b / D) / ghz : 0;
        }
    /* a step's floor: its products (keys and values: 2 x heads x D per token) at the measured
     * peak of the instruction that does them, nothing else counted */
    const double products = 2.0 * KH * D;
    double step_floor[3][NS];
    int step_peak[3][NS];
    for (int si = 0; si < NS; si++) {
        double bytes = 0;
        for (int i = 0; i < STEPS[si].nk; i++) bytes += stream_bytes(STEPS[si].k[i], D);
        for (int c = 0; c < 2; c++) step_need[c][si] = bytes / core_bw[c]; /* ns per token */
        for (int ti = 0; ti < 3; ti++) {
            step_ns[ti][si] = 0;
            for (int i = 0; tabs[ti] && i < STEPS[si].nk; i++) step_ns[ti][si] += ns[ti][STEPS[si].k[i]];
            const int p = tabs[ti] ? cq_peak_of_table(tabs[ti]->name, STEPS[si].integer) : -1;
            step_peak[ti][si] = p;
            step_floor[ti][si] = cq_peak_floor_ns(peak, p, D, KH);
        }
    }
    if (json) {
        printf("{\"D\": %u, \"tokens\": %u, \"query_heads\": %u, \"unit\": \"ns per token\", "
               "\"clock_ghz\": %.3f, \"peaks\": [", D, (unsigned)KN, (unsigned)KH, ghz);
        for (int p = 0, f = 1; p < CQ_PEAK_N; p++)
            if (peak[p] > 0) {
                printf("%s{\"id\": \"%s\", \"instruction\": \"%s\", \"per_ns\": %.4f, "
                       "\"per_cycle\": %.4f, ", f ? "" : ", ",
                       cq_peak_id(p), cq_peak_insn(p), peak[p], ghz > 0 ? peak[p] / ghz : 0);
                if (cq_peak_products(p) > 0)
                    printf("\"products_per_cycle\": %.2f}", ghz > 0 ? peak[p] * cq_peak_products(p) / ghz : 0);
                else /* a pair: the two instructions' combined rate */
                    printf("\"pair\": true}");
                f = 0;
            }
        printf("], \"target_fraction\": %.2f, \"probe\": [", KB_TARGET);
        for (int c = 0; c < 2; c++)
            printf("%s{\"threads\": %d, \"read_gbs\": %.3f, \"read_min_gbs\": %.3f, "
                   "\"read_max_gbs\": %.3f, \"read_spread\": %.4f, \"read_unstable\": %s, "
                   "\"read_readings\": %u, \"core_gbs\": %.3f}",
                   c ? ", " : "", c + 1, bs[c].median, bs[c].min, bs[c].max, bs[c].spread,
                   bs[c].unstable ? "true" : "false", bs[c].n, core_bw[c]);
        printf("], \"tables\": [\n");
        int first = 1;
        for (int ti = 0; ti < 3; ti++) {
            if (!tabs[ti]) continue;
            printf("%s  {\"table\": \"%s\"", first ? "" : ",\n", tabs[ti]->name);
            for (int kk = 0; kk < NK; kk++) printf(", \"%s\": %.3f", KID[kk], ns[ti][kk]);
            for (int kk = 0; kk < NK; kk++) printf(", \"%s_values_per_cycle\": %.3f", KID[kk], vpc[ti][kk]);
            for (int si = 0; si < NS; si++)
                printf(", \"step_%s\": %.3f", STEPS[si].id, step_ns[ti][si]);
            for (int si = 0; si < NS; si++)
                if (step_floor[ti][si] > 0)
                    printf(", \"floor_%s\": %.3f", STEPS[si].id, step_floor[ti][si]);
            printf("}");
            first = 0;
        }
        printf("\n], \"required\": [");
        for (int c = 0; c < 2; c++) {
            printf("%s{\"threads\": %d", c ? ", " : "", c + 1);
            for (int kk = 0; kk < NK; kk++)
                if (need[c][kk] > 0) printf(", \"%s_values_per_cycle\": %.3f", KID[kk], need[c][kk]);
            for (int si = 0; si < NS; si++)
                printf(", \"step_%s\": %.3f, \"step_%s_at_target\": %.3f", STEPS[si].id,
                       step_need[c][si], STEPS[si].id, step_need[c][si] / KB_TARGET);
            printf("}");
        }
        printf("]}\n");
    } else if (csv) {
        /* kernel rows, then per table one row per decode step (its floor and what the probe
         * allows at the target fraction; the peak is the instruction's, per cycle) */
        printf("table,kernel,D,ns_per_token,values_per_cycle,required_values_per_cycle_1t,"
               "required_values_per_cycle_2t,floor_ns_per_token,peak_instruction,peak_per_cycle,"
               "allowed_ns_at_target_1t,allowed_ns_at_target_2t\n");
        for (int ti = 0; ti < 3; ti++)
            for (int kk = 0; tabs[ti] && kk < NK; kk++)
                printf("%s,%s,%u,%.3f,%.3f,%.3f,%.3f,,,,,\n", tabs[ti]->name, KID[kk], D, ns[ti][kk],
                       vpc[ti][kk], need[0][kk], need[1][kk]);
        for (int ti = 0; ti < 3; ti++)
            for (int si = 0; tabs[ti] && si < NS; si++) {
                const int p = step_peak[ti][si];
                printf("%s,step_%s,%u,%.3f,,,,", tabs[ti]->name, STEPS[si].id, D, step_ns[ti][si]);
                if (step_floor[ti][si] > 0)
                    printf("%.3f,%s,%.4f,", step_floor[ti][si], cq_peak_insn(p),
                           ghz > 0 ? peak[p] / ghz : 0);
                else printf(",,,");
                printf("%.3f,%.3f\n", step_need[0][si] / KB_TARGET, step_need[1][si] / KB_TARGET);
            }
    } else {
        printf("attention kernels alone, L1-resident: ns per token (one KV head, %u query heads, "
               "D=%u, runs of %u tokens), best of 7; values per cycle = D / (ns x GHz), core clock "
               "%.2f GHz (measured: dependent adds)\n", (unsigned)KH, D, (unsigned)KN, ghz);
        for (int c = 0; c < 2; c++)
            printf("read bandwidth probe, %d thread%s: median %.2f GB/s (%u readings %.2f-%.2f, "
                   "spread %.0f%%%s): %.2f GB/s per core\n", c + 1, c ? "s" : "", bs[c].median,
                   bs[c].n, bs[c].min, bs[c].max, 100 * bs[c].spread,
                   bs[c].unstable ? ", unstable" : "", core_bw[c]);
        printf("\n| kernel | bytes/value |");
        for (int ti = 0; ti < 3; ti++)
            if (tabs[ti]) printf(" %s ns/token | %s values/cycle |", tabs[ti]->name, tabs[ti]->name);
        printf(" required values/cycle, 1 thr | 2 thr |\n|---|---:|");
        for (int ti = 0; ti < 3; ti++)
            if (tabs[ti]) printf("---:|---:|");
        printf("---:|---:|\n");
        for (int kk = 0; kk < NK; kk++) {
            double b = stream_bytes(kk, D);
            if (b > 0) printf("| %s | %.4f |", KNAME[kk], b / D);
            else printf("| %s | - |", KNAME[kk]);
            for (int ti = 0; ti < 3; ti++)
                if (tabs[ti]) printf(" %.2f | %.2f |", ns[ti][kk], vpc[ti][kk]);
            if (b > 0) printf(" %.2f | %.2f |\n", need[0][kk], need[1][kk]);
            else printf(" - | - |\n");
        }
        printf("\nA decode step's kernels per token of one KV head (sum of the above) against the "
               "time the stream allows at the probe's per-core bandwidth:\n\n| step |");
        for (int ti = 0; ti < 3; ti++)
            if (tabs[ti]) printf(" %s ns/token |", tabs[ti]->name);
        printf(" allowed ns/token, 1 thr | 2 thr |\n|---|");
        for (int ti = 0; ti < 3; ti++)
            if (tabs[ti]) printf("---:|");
        printf("---:|---:|\n");
        for (int si = 0; si < NS; si++) {
            printf("| %s |", STEPS[si].name);
            for (int ti = 0; ti < 3; ti++)
                if (tabs[ti]) printf(" %.2f |", step_ns[ti][si]);
            printf(" %.2f | %.2f |\n", step_need[0][si], step_need[1][si]);
        }
        printf("\nArithmetic peaks of one core, measured (12 independent accumulators, no loads; "
               "best of 5):");
        for (int p = 0; p < CQ_PEAK_N; p++)
            if (peak[p] > 0 && cq_peak_products(p) > 0)
                printf(" %s %.2f per cycle (%.0f products);", cq_peak_insn(p),
                       ghz > 0 ? peak[p] / ghz : 0, ghz > 0 ? peak[p] * cq_peak_products(p) / ghz : 0);
        for (int p = 0; p < CQ_PEAK_N; p++)
            if (peak[p] > 0 && !(cq_peak_products(p) > 0))
                printf(" %s alternating: %.2f per cycle together;", cq_peak_insn(p),
                       ghz > 0 ? peak[p] / ghz : 0);
        printf("\nA step's floor = its %.0f products per token (keys and values, %u heads x D=%u "
               "each) at the peak of the instruction that does them, nothing else counted; "
               "allowed = the time the stream may take at %.0f%% of the probe's median:\n\n"
               "| step | table | instruction | floor ns/token | kernels ns/token | allowed ns/token at "
               "%.0f%%, 1 thr | 2 thr |\n|---|---|---|---:|---:|---:|---:|\n",
               products, (unsigned)KH, D, 100 * KB_TARGET, 100 * KB_TARGET);
        for (int si = 0; si < NS; si++)
            for (int ti = 1; ti < 3; ti++)
                if (tabs[ti] && step_floor[ti][si] > 0)
                    printf("| %s | %s | %s | %.2f | %.2f | %.2f | %.2f |\n", STEPS[si].name,
                           tabs[ti]->name, cq_peak_insn(step_peak[ti][si]), step_floor[ti][si],
                           step_ns[ti][si], step_need[0][si] / KB_TARGET, step_need[1][si] / KB_TARGET);
    }
    return rc;
}
