/* SPDX-License-Identifier: MIT */
/*
 * bench_args.c - what the `cq bench` modes (decode: cmd_bench.c, --serving:
 * bench_serving.c, --prefill: bench_prefill.c) share of their command lines: the K/V
 * formats they time and the parsers of their comma-separated lists.
 */
#include <string.h>

#include "cq_tool.h"

const cq_bench_fmt cq_bench_fmts[CQ_BENCH_NFMT] = {
    {CQ_CODEC_FP16, CQ_CODEC_FP16, "fp16/fp16", "fp16", 0},
    {CQ_CODEC_CQ8, CQ_CODEC_CQ8, "cq8/cq8", "cq8", 0},
    {CQ_CODEC_CQ4, CQ_CODEC_CQ4, "cq4/cq4", "cq4", 1},
    {CQ_CODEC_CQ4P, CQ_CODEC_CQ4, "cq4+/cq4", "cq4+", 1},
};

int cq_bench_u32_list(const char *s, uint32_t *out, uint32_t max, uint32_t lo, uint32_t hi,
                      const char *word, uint32_t word_value) {
    uint32_t n = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max) return -1;
        if (word && !strcmp(tok, word)) out[n] = word_value;
        else if (cq_arg_u32(tok, lo, hi, &out[n])) return -1;
        n++;
    }
    return n ? (int)n : -1;
}

int cq_bench_fmt_list(const char *s, int *out, int max, int unique) {
    char buf[128];
    int n = 0;
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        int f = -1;
        for (int k = 0; k < CQ_BENCH_NFMT; k++)
            if (!strcmp(t, cq_bench_fmts[k].name) || !strcmp(t, cq_bench_fmts[k].alias)) f = k;
        if (f < 0 || n == max) return -1;
        for (int k = 0; k < n && unique; k++)
            if (out[k] == f) return -1;
        out[n++] = f;
    }
    return n ? n : -1;
}

int cq_bench_prec_list(const char *s, int prec[2]) {
    char buf[64];
    int n = 0;
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        int p = !strcmp(t, "exact") ? CQ_ATTN_EXACT : !strcmp(t, "fast") ? CQ_ATTN_FAST : 0;
        if (!p || n == 2 || (n == 1 && prec[0] == p)) return -1;
        prec[n++] = p;
    }
    return n ? n : -1;
}
