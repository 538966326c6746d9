/* SPDX-License-Identifier: MIT */
/*
 * cq_tool.h - shared helpers of the `cq` command-line tool: the subcommand
 * table and small, strict argument parsers. Tools may exit; the library may not.
 */
#ifndef CQ_TOOL_H
#define CQ_TOOL_H

#include <stdint.h>
#include <stdio.h>

#include "channelquant.h"
#include "cq_eval.h"

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
int cq_cmd_batch(int argc, char **argv);
int cq_cmd_eval(int argc, char **argv);
int cq_cmd_bench(int argc, char **argv);
int cq_cmd_kvstore(int argc, char **argv); /* tools/cmd_kvstore.c: the Redis tier */
/* tools/bench_kernels.c: `cq bench --kernels`, the attention kernels alone per table, beside
 * the rates the bandwidth probe (over a buffer of bw_bytes) requires */
int cq_bench_kernels(uint32_t D, uint32_t reps, int json, int csv, size_t bw_bytes);
/* tools/bench_args.c: the K/V formats the `cq bench` modes time (int4: INT4 keys and values,
 * whose products FAST makes byte products) and their list parsers; each returns the count of
 * entries, or -1 for a bad, surplus or empty list (cq_bench_u32_list: values in [lo, hi], or
 * `word` (when not NULL) standing for word_value; cq_bench_fmt_list: names or aliases, with
 * unique a repeated one refused; cq_bench_prec_list: exact and/or fast, each once). */
typedef struct cq_bench_fmt {
    cq_codec_id k, v;
    const char *name;  /* the K/V spelling of every command (--kv) */
    const char *alias; /* the bench's short name (--formats) */
    int int4;
} cq_bench_fmt;
#define CQ_BENCH_NFMT 4
extern const cq_bench_fmt cq_bench_fmts[CQ_BENCH_NFMT];
int cq_bench_u32_list(const char *s, uint32_t *out, uint32_t max, uint32_t lo, uint32_t hi,
                      const char *word, uint32_t word_value);
int cq_bench_fmt_list(const char *s, int *out, int max, int unique);
int cq_bench_prec_list(const char *s, int prec[2]);
/* tools/bench_peaks.c: one core's arithmetic peaks (independent accumulators, no loads) of the
 * instructions the attention kernels multiply with; cq_peak_measure gives instructions per ns
 * (0 when not measured: not x86-64, or the CPU lacks the ISA) */
/* the last two are pairs: two instructions alternating over the accumulators, their combined
 * rate (products 0); a pair at the rate of either alone shares its pipes */
enum {
    CQ_PEAK_FMA_YMM,
    CQ_PEAK_FMA_ZMM,
    CQ_PEAK_MADDUBS_YMM,
    CQ_PEAK_VNNI_ZMM,
    CQ_PEAK_VNNI_FMA_ZMM,
    CQ_PEAK_FMA_CVT_ZMM,
    CQ_PEAK_N
};
const char *cq_peak_id(int i);
const char *cq_peak_insn(int i);
double cq_peak_products(int i); /* multiply-adds one instruction does */
double cq_peak_measure(int i, int have_avx2, int have_avx512);
/* The peak the products of kernel table `table` (its name) go through (integer: the FAST INT4
 * loops, else fp32 FMAs), -1 when the table has none (scalar); and the floor of a decode step
 * at it: ns per token of one KV head for its 2 x heads x D products (keys and values), 0 when
 * p is -1 or not measured. */
int cq_peak_of_table(const char *table, int integer);
double cq_peak_floor_ns(const double *peak, int p, uint32_t D, uint32_t heads);
/* tools/bench_serving.c: `cq bench --serving`, batched decode attention over a serving pool */
int cq_bench_serving(int argc, char **argv);
/* tools/bench_prefill.c: `cq bench --prefill`, causal prefill attention per shape */
int cq_bench_prefill(int argc, char **argv);
int cq_cmd_calibrate(int argc, char **argv); /* `cq calibrate` = `cq eval calibrate` */
int cq_cmd_sweep(int argc, char **argv);
int cq_eval_mc(int argc, char **argv);      /* `cq eval mc` */
int cq_eval_capture(int argc, char **argv); /* `cq eval capture` */

/* The Redis tier for a command's --kv-store URL (tools/kvstore_hook.c; docs/SERVING.md,
 * "The Redis tier"). open: 0, or prints why (a bad URL; a cq built without the tier) and
 * returns the exit code; o NULL: the defaults. handle: the tier itself (NULL without it). adopt: before prefilling tokens[0, n)
 * into the empty sequence s of pool p, the tokens it now holds (0 on any failure: the
 * caller prefills from there). publish: after cq_seq_publish of a prompt. report: the
 * counters as a line, or (json) as a "kv_store": {...} member. All accept t NULL (no tier). */
#include "cq_kvstore.h" /* declarations only: the library is linked only with the tier */
typedef struct cq_tool_kvstore cq_tool_kvstore;
int cq_tool_kvstore_open(const char *cmd, const char *url, const cq_kvstore_opts *o,
                         cq_tool_kvstore **out);
cq_kvstore *cq_tool_kvstore_handle(cq_tool_kvstore *t);
uint32_t cq_tool_kvstore_adopt(cq_tool_kvstore *t, cq_kvpool *p, cq_seq *s, const uint32_t *tokens,
                               uint32_t n);
void cq_tool_kvstore_publish(cq_tool_kvstore *t, const cq_kvpool *p, const uint32_t *tokens, uint32_t n);
void cq_tool_kvstore_report(FILE *f, const cq_tool_kvstore *t, int json);
void cq_tool_kvstore_free(cq_tool_kvstore *t);
/* The batch session's prefix-store hooks (cq_batch_opts.prefix_adopt / prefix_published),
 * user = the cq_tool_kvstore. */
cq_status cq_tool_kvstore_batch_adopt(void *t, cq_kvpool *p, cq_seq *s, const uint32_t *tokens,
                                      uint32_t n, uint32_t *adopted);
void cq_tool_kvstore_batch_published(void *t, const cq_kvpool *p, const uint32_t *tokens, uint32_t n);

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
/* model_path NULL: cq_tool_default_model(). A llama2.c
 * checkpoint takes tok_path, else tokenizer.bin or tok512.bin beside it.
 * Returns 0, or prints the error and returns the exit code. */
int cq_tool_model_load(const char *cmd, const char *model_path, const char *tok_path,
                       cq_tool_model *tm);
void cq_tool_model_free(cq_tool_model *tm);
/* What a report says of a known model ("...: self-trained ..."); "" for others. */
const char *cq_tool_model_label(const char *path);
/* Parse "first,last" / "first" / "last" / "none" for --fp16-layers. Returns 0 or -1. */
int cq_tool_fp16_layers(const char *s, int *first, int *last);



/* ---- the options every model command spells the same way (tools/opts.c) ----
 *   -m, --model FILE|DIR     default: $CQ_SHARED/models/tinyqwen-hd64/tinyqwen-hd64-kbias.gguf
 *   --tokenizer FILE         a llama2.c tokenizer (GGUF files carry their own)
 *   -f, --file FILE          the text (alias --text); default $CQ_SHARED/eval/tinystories_val.txt
 *   --kv K/V[,K/V...]        K/V formats by registry codec name (alias --formats)
 *   --mask FILE              CQ-4+ outlier mask (text format of ../shared/vectors/masks)
 *   -c, --ctx N              context (tokens); larger than the model's: an error
 *   -t, --threads N          worker threads (default 2)
 *   -g, --group G            CQ-4 key group (default 128)
 *   --sinks S, --fp16-layers first,last, --page-tokens P
 *   --json | --csv           machine-readable output on stdout (exclusive)
 */
typedef struct cq_tool_opts {
    const char *model, *tokenizer, *file, *kv, *mask;
    uint32_t ctx, threads, group, sinks, page_tokens;
    int fp16_first, fp16_last;
    int json, csv;
    unsigned seen; /* CQ_OPT_* bits given on the command line */
} cq_tool_opts;
enum { CQ_OPT_MODEL = 1, CQ_OPT_FILE = 2, CQ_OPT_KV = 4, CQ_OPT_MASK = 8, CQ_OPT_CTX = 16,
       CQ_OPT_THREADS = 32, CQ_OPT_GROUP = 64, CQ_OPT_SINKS = 128, CQ_OPT_FP16L = 256,
       CQ_OPT_PAGES = 512, CQ_OPT_OUT = 1024, CQ_OPT_TOK = 2048 };
/* The default model file (under $CQ_SHARED, default ../shared). */
const char *cq_tool_default_model(char *buf, size_t cap);
/* Defaults (threads 2; everything else 0 / NULL). */
void cq_tool_opts_init(cq_tool_opts *o);
/* Try argv[*i] as one of the shared options whose bit is in `accept`: 1 = taken (*i advanced
 * past its value), 0 = not a shared option, 2 = bad value (message printed). */
int cq_tool_opt(const char *cmd, cq_tool_opts *o, unsigned accept, int argc, char **argv, int *i);
/* After parsing: --json and --csv exclusive. 0 or exit code 2 (message printed). */
int cq_tool_opts_check(const char *cmd, const cq_tool_opts *o);
/* The usage lines of the shared options in `accept`, for --help. */
void cq_tool_opts_help(FILE *f, unsigned accept);
/* The setup of every format from the options (masks loaded by the caller). */
void cq_tool_kv_setup(const cq_tool_opts *o, const uint8_t *masks, cq_kv_setup *s);
/* Load --mask for model c into a new [n_layers][n_kv_heads][D] array (NULL without --mask).
 * 0 or exit code 1 (message printed). */
int cq_tool_load_mask(const char *cmd, const cq_tool_opts *o, const cq_model_config *c,
                      uint8_t **masks);

/* ---- warnings (CQ_WARN_*): a line each on stderr, and a JSON array ---- */
void cq_tool_warn(const char *cmd, const char *what, uint32_t warnings);
void cq_tool_json_warnings(FILE *f, uint32_t warnings);

/* ---- progress that a log can hold (tools/progress.c) ----
 * On a terminal: one line rewritten in place ("\r"); otherwise a plain line at most every
 * 10% of the work (and at the end). Each line: done/total, the caller's running figure,
 * elapsed time and ETA. */
typedef struct cq_progress {
    const char *label;
    uint64_t total;
    double t0, last;
    int tty, last_decile, open;
} cq_progress;
void cq_progress_start(cq_progress *p, const char *label, uint64_t total);
/* extra: a short running figure (may be NULL) */
void cq_progress_update(cq_progress *p, uint64_t done, const char *extra);
void cq_progress_end(cq_progress *p);

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
/* Multiple choice: progress of cq_mc_score on stderr ("cq eval mc: LABEL: item i/n");
 * user is the label (const char *). */
void cq_tool_mc_progress(void *user, size_t done, size_t total);

/* s[0, n) as a JSON string: quotes, the backslash escapes of '"' and '\\', \u00XX for
 * control characters; other bytes as they are (UTF-8 passes through). */
void cq_tool_json_str(FILE *f, const char *s, size_t n);

#endif
