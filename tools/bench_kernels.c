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

enum { KN = 128, KH = 4, NK = 10 };

typedef struct kb_data {
    uint32_t D;
    float w[KH * KN], q[KH * CQ_MAX_DIM], qp[KH * CQ_MAX_DIM], s[KH * KN];
    float acc[KH * CQ_MAX_DIM], e[KN];
    uint8_t v[KN * CQ_MAX_DIM / 2 + 64], sh[KH * (CQ_MAX_DIM / CQ_Q8_BLOCK + 1)];
    int8_t q8[KH * CQ_MAX_DIM];
    uint16_t vs[KN];
    float qs[KH];
} kb_data;

static const char *const KNAME[NK] = {"acc_i4 (exact values)", "acc_i4q (fast values)",
                                      "dot_i4 (exact keys)",   "dot_i4q (fast keys)",
                                      "exp_sum x4",            "quant_q8 x4",
                                      "acc_i4tq (fast values, blocks)",
                                      "dot_i4tq (fast keys, tiles)",
                                      "acc_i4t (exact values, blocks)",
                                      "dot_i4t (exact keys, tiles)"};
static const char *const KID[NK] = {"acc_i4",      "acc_i4q",     "dot_i4",   "dot_i4q",
                                    "exp_sum_x4",  "quant_q8_x4", "acc_i4tq", "dot_i4tq",
                                    "acc_i4t",     "dot_i4t"};

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
    case 4:
        for (uint32_t h = 0; h < KH; h++) {
            memcpy(d->e, d->w + h * KN, sizeof d->e);
            (void)k->exp_sum(d->e, KN, 1.0f);
        }
        break;
    case 5:
        for (uint32_t h = 0; h < KH; h++)
            k->quant_q8(d->qp + h * D, D, d->q8 + h * D, d->sh + h * (D / CQ_Q8_BLOCK + 1),
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
    for (uint32_t t = 0; t < KN; t++) d->vs[t] = cq_f32_to_f16(0.05f + (float)cq_rng_uniform(&r));
    memset(d->acc, 0, sizeof d->acc);
    const cq_kernels *s = cq_kernels_scalar();
    for (uint32_t h = 0; h < KH; h++)
        s->quant_q8(d->qp + h * D, D, d->q8 + h * D, d->sh + h * (D / CQ_Q8_BLOCK + 1), d->qs + h);
}

/* the table's output of kernel `which` against the scalar table's, on the same input */
static int check(const cq_kernels *k, int which, uint32_t D) {
    static kb_data a, b;
    fill(&a, D);
    fill(&b, D);
    run_kernel(cq_kernels_scalar(), which, &a);
    run_kernel(k, which, &b);
    if (which == 1 || which == 3 || (which >= 5 && which <= 7)) /* integer rules: bit for bit */
        return which == 1 || which == 6   ? !memcmp(a.acc, b.acc, sizeof a.acc)
               : which == 3 || which == 7 ? !memcmp(a.s, b.s, sizeof a.s)
                            : !memcmp(a.q8, b.q8, sizeof a.q8) && !memcmp(a.qs, b.qs, sizeof a.qs);
    const int sc = which == 2 || which == 9; /* scores, else accumulators */
    const float *x = sc ? a.s : which == 4 ? a.e : a.acc;
    const float *y = sc ? b.s : which == 4 ? b.e : b.acc;
    size_t n = sc ? KH * KN : which == 4 ? KN : KH * D;
    double mag = 0.0;
    for (size_t i = 0; i < n; i++) mag += fabs(x[i]);
    for (size_t i = 0; i < n; i++)
        if (fabs((double)x[i] - y[i]) > 1e-5 * mag + 1e-30) return 0;
    return 1;
}

int cq_bench_kernels(uint32_t D, uint32_t reps, int json, int csv) {
    const cq_kernels *tabs[3] = {cq_kernels_scalar(), cq_kernels_avx2(), cq_kernels_avx512()};
    static kb_data d;
    double ns[3][NK];
    int rc = 0;
    if (D % 32 || D > CQ_MAX_DIM) {
        fprintf(stderr, "cq bench: CQ_ERR_ARG: --kernels needs D a multiple of 32 up to %u\n",
                CQ_MAX_DIM);
        return 2;
    }
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
        fprintf(stderr, "cq bench: kernels, trial %d of 7\n", trial + 1);
    }
    if (json) {
        printf("{\"D\": %u, \"tokens\": %u, \"query_heads\": %u, \"unit\": \"ns per token\", "
               "\"tables\": [\n", D, (unsigned)KN, (unsigned)KH);
        int first = 1;
        for (int ti = 0; ti < 3; ti++) {
            if (!tabs[ti]) continue;
            printf("%s  {\"table\": \"%s\"", first ? "" : ",\n", tabs[ti]->name);
            for (int kk = 0; kk < NK; kk++) printf(", \"%s\": %.3f", KID[kk], ns[ti][kk]);
            printf("}");
            first = 0;
        }
        printf("\n]}\n");
    } else if (csv) {
        printf("table,kernel,D,ns_per_token\n");
        for (int ti = 0; ti < 3; ti++)
            for (int kk = 0; tabs[ti] && kk < NK; kk++)
                printf("%s,%s,%u,%.3f\n", tabs[ti]->name, KID[kk], D, ns[ti][kk]);
    } else {
        printf("attention kernels alone, L1-resident: ns per token (one KV head, %u query heads, "
               "D=%u, runs of %u tokens), best of 7\n\n| kernel |", (unsigned)KH, D, (unsigned)KN);
        for (int ti = 0; ti < 3; ti++)
            if (tabs[ti]) printf(" %s |", tabs[ti]->name);
        printf("\n|---|");
        for (int ti = 0; ti < 3; ti++)
            if (tabs[ti]) printf("---:|");
        printf("\n");
        for (int kk = 0; kk < NK; kk++) {
            printf("| %s |", KNAME[kk]);
            for (int ti = 0; ti < 3; ti++)
                if (tabs[ti]) printf(" %.2f |", ns[ti][kk]);
            printf("\n");
        }
    }
    return rc;
}
