/*
 * cq_tool.h - shared helpers of the `cq` command-line tool: the subcommand
 * table and small, strict argument parsers. Tools may exit; the library may not.
 */
#ifndef CQ_TOOL_H
#define CQ_TOOL_H

#include <stdint.h>
#include <stdio.h>

#include "channelquant.h"

typedef struct cq_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} cq_command;

/* Subcommands (one file each under tools/). */
int cq_cmd_vectors(int argc, char **argv);
int cq_cmd_codecs(int argc, char **argv);
int cq_cmd_run(int argc, char **argv);
int cq_eval_attn(int argc, char **argv); /* `cq eval attn` */
int cq_cmd_engine(int argc, char **argv);
int cq_cmd_generate(int argc, char **argv);
int cq_cmd_eval(int argc, char **argv);
int cq_cmd_bench(int argc, char **argv);
/* tools/bench_kernels.c: `cq bench --kernels`, the attention kernels alone per table */
int cq_bench_kernels(uint32_t D, uint32_t reps, int json, int csv);
int cq_cmd_calibrate(int argc, char **argv); /* `cq calibrate` = `cq eval calibrate` */
int cq_cmd_sweep(int argc, char **argv);
int cq_eval_mc(int argc, char **argv);      /* `cq eval mc` */
int cq_eval_capture(int argc, char **argv); /* `cq eval capture` */

/* Strict number parsing: whole string, range checked. Return 0 on success. */
int cq_arg_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);
int cq_arg_u64(const char *s, uint64_t *out);
int cq_arg_f64(const char *s, double *out);
/* Parse "a,b,c" into ascending-checked list; returns count or -1. */
int cq_arg_u16_list(const char *s, uint16_t *out, int max);

/* Report an error record (or a bare status) on stderr as "cq: <cmd>: NAME: msg". */
void cq_report(const char *cmd, cq_status st, const cq_err *e);
/* monotonic wall clock in seconds (timings of bench, codecs --measure) */
double cq_tool_now(void);

int cq_is_help(const char *s);

/* Model loading shared by generate and eval (tools/model_common.c). */
#include "cq_model.h"
typedef struct cq_tool_model {
    cq_model *model;
    cq_tokenizer *own_tok;  /* loaded beside a llama2.c checkpoint */
    const cq_tokenizer *tok; /* the one to use (embedded or own_tok) */
    char path[4096];
} cq_tool_model;
/* model_path NULL: $CQ_SHARED/models/stories260K (default ../shared). A llama2.c
 * checkpoint takes tok_path, else tokenizer.bin or tok512.bin beside it.
 * Returns 0, or prints the error and returns the exit code. */
int cq_tool_model_load(const char *cmd, const char *model_path, const char *tok_path,
                       cq_tool_model *tm);
void cq_tool_model_free(cq_tool_model *tm);
/* Parse "first,last" / "first" / "last" / "none" for --fp16-layers. Returns 0 or -1. */
int cq_tool_fp16_layers(const char *s, int *first, int *last);


/* ---- evaluation helpers (tools/eval_common.c) ---- */
#include "cq_eval.h"
/* Whole file, NUL-terminated (len excludes it); NULL when unreadable. */
char *cq_tool_read_file(const char *path, size_t *len);
/* $CQ_SHARED/eval/tinystories_val.txt (default ../shared). */
const char *cq_tool_default_text(char *buf, size_t cap);
/* Read and tokenize a text (with BOS when the tokenizer wants it). 0 or exit code. */
int cq_tool_tokenize_file(const char *cmd, const cq_tokenizer *tok, const char *path,
                          int32_t **tokens, size_t *n_tokens);
/* Comma-separated K/V formats (cq_kv_format_parse). 0 or exit code 2. */
int cq_tool_parse_formats(const char *cmd, const char *list, cq_kv_format *f, uint32_t max,
                          uint32_t *n);
/* Why format f cannot run in the streaming cache of model c (NULL: it can). */
const char *cq_tool_format_na(const cq_model_config *c, const cq_kv_format *f, uint32_t group,
                              const uint8_t *masks, char *buf, size_t cap);

/* Outlier calibration (EVAL.md section 4) on the LAST seqs*len tokens of the text,
 * in file order, split into `batches` contiguous batches. */
typedef struct cq_tool_calib_opts {
    uint32_t seqs, len, batches, threads;
    int quiet;
    /* filled in: */
    uint32_t used_seqs, used_len, used_batches;
    size_t start; /* first token used */
} cq_tool_calib_opts;
cq_status cq_tool_calibrate(const cq_model *m, const int32_t *tokens, size_t n_tokens, int32_t bos,
                            cq_tool_calib_opts *o, cq_calib **out, cq_err *err);
/* Top-k of all data as CQ-4+ masks [n_layers][n_kv_heads][D]. */
cq_status cq_tool_calib_masks(const cq_calib *cal, const cq_model_config *c, uint32_t k,
                              uint8_t *masks);
/* Run T tokens through an fp16/fp16 session; q [L][H][T][D], k, v [L][Hkv][T][D] fp32
 * (post-RoPE, what the cache is given). Caller frees. */
cq_status cq_tool_capture(const cq_model *m, const int32_t *tokens, uint32_t T, uint32_t threads,
                          float **q, float **k, float **v, cq_err *err);

#define CQ_TOOL_MAX_SEL 64
typedef struct cq_tool_sel {
    uint32_t v[CQ_TOOL_MAX_SEL];
    int n;
} cq_tool_sel;
/* n values int(linspace(lo, hi, n)), duplicates dropped. */
void cq_tool_linspace(uint32_t lo, uint32_t hi, int n, cq_tool_sel *out);
/* Q [NL][NQH][T][D], K/V [NL][NKV][T][D] as fp16 bits. */
typedef struct cq_tool_qkv {
    const uint16_t *Q, *K, *V;
    uint32_t NL, NQH, NKV, T, D;
} cq_tool_qkv;
/* The attention-fidelity protocol over layers x query heads x positions for one codec
 * pair: mean metrics and measured bits per value (packed bytes over 2 L D values).
 * masks: NULL (cfg->mask for every head) or per-head CQ-4+ masks [NL][NKV][D]. */
cq_status cq_tool_attn_pair(const cq_codec_traits *kc, const cq_codec_traits *vc,
                            const cq_codec_cfg *cfg, const cq_tool_qkv *x,
                            const cq_tool_sel *layers, const cq_tool_sel *heads,
                            const cq_tool_sel *pos, const uint8_t *masks, cq_attn_metrics *mean,
                            double *bpv, cq_err *err);

/* Multiple choice: progress of cq_mc_score on stderr ("cq eval mc: LABEL: item i/n");
 * user is the label (const char *). */
void cq_tool_mc_progress(void *user, size_t done, size_t total);

#endif
