/* SPDX-License-Identifier: MIT */
/*
 * cq_eval.h - the evaluation module (src/eval/, ../shared/docs/EVAL.md): K/V
 * formats and their two bit figures, warnings, the perplexity / KL-divergence
 * protocol with its base file, calibration and Q/K/V capture through the model
 * runtime, statistics (Wilson interval, McNemar, percentiles), multiple-choice
 * item sets and scoring, the attention-fidelity protocol, plots.
 *
 * Tier: TOOL-GRADE - exported for the cq tool, tests and research; may change in any
 * minor version (docs/EMBEDDING.md).
 */
#ifndef CQ_EVAL_H
#define CQ_EVAL_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>

#include "cq_error.h"
#include "cq_model.h"
#include "cq_registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- stats */

/* Wilson score interval for k successes of n at z (1.959964 for 95%). */
CQ_API void cq_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi);
/* McNemar test of paired outcomes: b = ref right / test wrong, c = ref wrong / test right.
 * Returns the exact two-sided binomial p-value (chi-square with continuity for n > 1000). */
CQ_API double cq_mcnemar_p(uint64_t b, uint64_t c);
/* q-quantile (0..1) of n values by linear interpolation; sorts a copy. NAN if n == 0. */
CQ_API double cq_quantile(const double *v, size_t n, double q);

typedef struct cq_calib cq_calib; /* outlier calibration, below */

/* ------------------------------------------------------------ K/V formats */

/* One K/V format of an evaluation: a key codec and a value codec of the registry. */
typedef struct cq_kv_format {
    char name[48];      /* as given, e.g. "cq4+/cq4" */
    int reference;      /* 1: the fp32 oracle path instead of a cache */
    cq_codec_id key, val;
    uint32_t precision; /* cq_attn_precision of the format's attention (0 = the default) */
} cq_kv_format;

/* Parse "KEY/VAL" by registry codec name ("fp16/fp16", "cq4+/cq4"; "cq4p" also
 * names CQ-4+), a single name for both, or "fp32" (the oracle path); a suffix "@exact" or
 * "@fast" names the attention precision ("cq4/cq4@exact"; not with fp32). */
CQ_API cq_status cq_kv_format_parse(const char *s, cq_kv_format *f, cq_err *err);

/* What a format is run with (shared by perplexity, multiple choice and the tools). */
typedef struct cq_kv_setup {
    uint32_t group;        /* G of CQ-4 keys (0 = 128) */
    uint32_t n_sinks;
    int fp16_first, fp16_last; /* keep the first / last layer in fp16 (both K and V) */
    const uint8_t *masks;  /* [n_layers][n_kv_heads][D] CQ-4+ outlier masks (NULL: none) */
    uint32_t page_tokens;  /* cache page size (0 = the context: a cache sized for it) */
} cq_kv_setup;

/* The cache configuration of format f for a model (layer_buf [n_layers] must outlive cc). */
CQ_API void cq_kv_format_cache_config(const cq_model_config *c, const cq_kv_format *f,
                               const cq_kv_setup *s, cq_layer_codecs *layer_buf,
                               cq_cache_config *cc);
/* Why format f cannot run in the streaming cache of model c (NULL: it can); the reason
 * is written to buf. */
CQ_API const char *cq_kv_format_na(const cq_model_config *c, const cq_kv_format *f, uint32_t group,
                            const uint8_t *masks, char *buf, size_t cap);

/* ------------------------------------------------------------- bit figures */

/* The two bit figures every evaluation reports (docs/EVAL.md, "Bits"):
 * codec bits per value: the payload, scales and sidecar of the committed tokens of each
 *   role over their values (8 * bytes / (tokens * D)), the mean of K's and V's figure:
 *   what the format costs at any length. A role with no committed token (context <= G) is taken from the
 *   registry's packed size of one full unit and CQ_WARN_CTX_LE_GROUP is raised.
 * cache bits per value: every byte the cache holds (cq_cache_memory: codes, scales,
 *   sidecar, fp16 in-flight groups and windows, sinks, page slack, headers) over the
 *   values it holds, at the context it holds (`tokens`). */
typedef struct cq_bits {
    double codec_bpv, cache_bpv;
    uint32_t context;      /* tokens per (layer, head) when measured */
    cq_cache_mem mem;
} cq_bits;
CQ_API cq_status cq_eval_bits(const cq_cache *c, cq_bits *out, uint32_t *warnings, cq_err *err);
/* The codec bits per value of a format from the registry alone (no cache): the mean over
 * K and V of 8 * packed_bytes(n) / (n * width) for n = one full unit of each codec (G
 * tokens for grouped keys), width = head_dim, or n_kv_heads * head_dim for a codec the
 * cache runs in the row layout. NAN when a codec cannot code that shape. */
CQ_API double cq_format_codec_bits(const cq_kv_format *f, uint32_t n_kv_heads, uint32_t head_dim,
                            uint32_t group, const uint8_t *mask);

/* ----------------------------------------------------------------- warnings */

/* Results that are not what they seem: raised by the protocols, printed by every command on
 * stderr and listed in its JSON. */
enum {
    CQ_WARN_CTX_LE_GROUP = 1u << 0,  /* context <= G: CQ-4 keys never leave fp16 */
    CQ_WARN_KIVI_WINDOW = 1u << 1,   /* a KIVI fp16 window >= the sequence: nothing quantized */
    CQ_WARN_CALIB_OVERLAP = 1u << 2, /* calibration text overlaps the scored text */
    CQ_WARN_CACHE_OVER_FP16 = 1u << 3, /* cache bits above 16 at this context (page slack,
                                          in-flight groups): see the codec bits */
};
#define CQ_WARN_COUNT 4
/* Short machine name ("ctx_le_group", ...) and sentence of warning bit i (0..CQ_WARN_COUNT-1). */
CQ_API const char *cq_warn_name(uint32_t bit);
CQ_API const char *cq_warn_text(uint32_t bit);
/* The warnings a format raises at a context (sequence length) before anything runs:
 * CQ_WARN_CTX_LE_GROUP for CQ-4/CQ-4+ keys, CQ_WARN_KIVI_WINDOW for KIVI codecs. */
CQ_API uint32_t cq_kv_format_warnings(const cq_kv_format *f, uint32_t context, uint32_t group);

/* --------------------------------------------------- perplexity and KLD */

typedef struct cq_ppl_opts {
    uint32_t n_ctx;        /* chunk length (0 = 512); larger than the model's: CQ_ERR_RANGE */
    uint32_t max_chunks;   /* 0 = all */
    uint32_t n_threads;
    cq_kv_setup kv;        /* group, sinks, fp16 layers, masks, pages of every format */
    int ref_oracle;        /* reference = the oracle path with K/V rounded to fp16 (no cache) */
    /* reference = this cache format (with the kv setup's masks, sinks and fp16 layers, and its
     * precision), e.g. cq4/cq4@exact to measure cq4/cq4@fast against it; NULL = fp16/fp16.
     * Not with ref_oracle or base_path (CQ_ERR_ARG). */
    const cq_kv_format *ref;
    /* the token range [calib_begin, calib_end) used to calibrate the masks (0, 0: none);
     * overlapping the scored chunks raises CQ_WARN_CALIB_OVERLAP */
    size_t calib_begin, calib_end;
    /* Base log-probabilities (llama-perplexity's --kl-divergence-base): NULL = compute the
     * fp16 reference; a path that exists = read it (validated against the tokens, the
     * model's shape and a recomputed first chunk) instead of running the reference; a path
     * that does not exist = compute the reference and write it there. */
    const char *base_path;
    int base_loaded;       /* out: 1 when base_path was read */
    /* after each chunk, with running figures of every format (ppl and kld_mean so far) */
    void (*progress)(void *user, uint32_t chunk, uint32_t n_chunks, const double *ppl,
                     const double *kld, uint32_t n_formats);
    void *progress_user;
} cq_ppl_opts;

/* What llama-perplexity --kl-divergence reports, for one format against the reference. */
#define CQ_KLD_NQ 8
extern const double cq_kld_quantiles[CQ_KLD_NQ]; /* 0.999 0.99 0.95 0.90 0.5 0.10 0.05 0.01 */
typedef struct cq_ppl_result {
    double ppl, ppl_se;       /* PPL(Q) = exp(mean NLL) and its standard error */
    double nll_mean;
    double ppl_base, ppl_base_se;
    double ln_ratio, ln_ratio_se;     /* mean ln(PPL(Q)/PPL(base)) */
    double ppl_ratio, ppl_ratio_se;   /* PPL(Q)/PPL(base) */
    double delta_ppl, delta_ppl_se;   /* PPL(Q) - PPL(base) */
    double nll_cor;                   /* correlation of the per-token NLL with the base's */
    double kld_mean, kld_se, kld_min, kld_max; /* KL(base || Q), nats per token */
    double kld_q[CQ_KLD_NQ];          /* at cq_kld_quantiles */
    double kld_median, kld_p99;       /* = kld_q[4], kld_q[1] */
    double same_top1, same_top1_se;   /* "same top p": argmax equal to the base's */
    double dp_mean, dp_mean_se;       /* delta p = p_Q(next) - p_base(next) */
    double dp_rms, dp_rms_se;
    double bits_per_value;    /* = bits.cache_bpv (32 for the fp32 path) */
    cq_bits bits;             /* after the last chunk */
    cq_cache_mem mem;         /* = bits.mem */
    uint32_t warnings;        /* CQ_WARN_* */
    uint64_t n_scored;
    uint32_t n_chunks, n_ctx;
} cq_ppl_result;

/* The chunked perplexity protocol (llama.cpp): tokens split into chunks of n_ctx,
 * each evaluated from an empty cache with its first token replaced by BOS (when
 * bos >= 0), scoring positions n_ctx/2 .. n_ctx-2 (predicting the next token).
 * The reference is an fp16/fp16 cache (or the base file); res[i] is formats[i]
 * against it, and ref (optional) the reference itself. */
CQ_API cq_status cq_eval_ppl(const cq_model *m, const int32_t *tokens, size_t n_tokens, int32_t bos,
                      cq_ppl_opts *o, const cq_kv_format *formats, uint32_t n_formats,
                      cq_ppl_result *res, cq_ppl_result *ref, cq_err *err);

/* ---------------------------------------------- runtime-driven protocols */

/* Outlier calibration (EVAL.md section 4) through the model runtime's key observer on
 * the LAST seqs*len tokens of the text, in file order, split into `batches` contiguous
 * batches (held out from the chunks that ppl and mc score from the start). */
typedef struct cq_calib_run_opts {
    uint32_t seqs, len, batches, threads;
    void (*progress)(void *user, uint32_t done, uint32_t total); /* or NULL */
    void *progress_user;
    /* filled in: */
    uint32_t used_seqs, used_len, used_batches;
    size_t start; /* first token used; the range is [start, n_tokens) */
} cq_calib_run_opts;
CQ_API cq_status cq_eval_calibrate(const cq_model *m, const int32_t *tokens, size_t n_tokens, int32_t bos,
                            cq_calib_run_opts *o, cq_calib **out, cq_err *err);
/* Top-k of all data as CQ-4+ masks [n_layers][n_kv_heads][D]. */
CQ_API cq_status cq_calib_masks(const cq_calib *cal, const cq_model_config *c, uint32_t k,
                         uint8_t *masks);
/* Run T tokens through an fp16/fp16 session; q [L][H][T][D], k, v [L][Hkv][T][D] fp32
 * (post-RoPE, what the cache is given). Caller frees. */
CQ_API cq_status cq_capture_qkv(const cq_model *m, const int32_t *tokens, uint32_t T, uint32_t threads,
                          float **q, float **k, float **v, cq_err *err);

/* --------------------------------------------------------- multiple choice */

#define CQ_MC_MAX_ENDINGS 8

typedef struct cq_mc_item {
    char *context;
    char *endings[CQ_MC_MAX_ENDINGS];
    uint32_t n_endings;
    uint32_t label; /* index of the right ending */
} cq_mc_item;

typedef struct cq_mc_set {
    cq_mc_item *items;
    size_t n;
} cq_mc_set;

/* HellaSwag jsonl: one object per line with ctx (or ctx_a + " " + ctx_b, ctx_b's first
 * letter capitalized), endings[4] and label (number or numeric string). At most max_items
 * (0 = all). Malformed lines are errors naming the line. */
CQ_API cq_status cq_mc_load_hellaswag(const char *path, size_t max_items, cq_mc_set *set, cq_err *err);
CQ_API cq_status cq_mc_parse_hellaswag(const char *text, size_t len, size_t max_items, cq_mc_set *set,
                                cq_err *err);
/* Cloze set from plain text (see docs/EVAL_IMPL.md): each paragraph with at least 4 sentences
 * gives an item: context = its first 3 sentences, endings = its 4th sentence and the 4th
 * sentences of 3 other paragraphs (chosen by seed), the true one at a seeded position.
 * A paragraph without 3 others whose 4th sentence differs in text gives no item. */
CQ_API cq_status cq_mc_build_cloze(const char *text, size_t len, size_t max_items, uint64_t seed,
                            cq_mc_set *set, cq_err *err);
CQ_API void cq_mc_free(cq_mc_set *set);

/* ------------------------------------------------ multiple-choice scoring */

/* One (item, ending) as the model sees it: in [n] = the context's tokens, then the
 * continuation from index cont (lm-eval-harness pair encoding: whole = tok(context +
 * ending), continuation = whole[len(tok(context)):]; when the joint tokenization does
 * not extend the context's, the cut is still at len(tok(context)) and retok is set).
 * At least one continuation token. Longer than max_len: the oldest context tokens after
 * the first (BOS) are dropped; CQ_ERR_RANGE if the ending alone does not fit. */
typedef struct cq_mc_seq {
    int32_t *in;
    uint32_t n, cont;
    int retok;
} cq_mc_seq;
CQ_API cq_status cq_mc_prepare(const cq_tokenizer *tok, const char *context, const char *ending,
                        uint32_t max_len, cq_mc_seq *q, cq_err *err);
CQ_API void cq_mc_seq_free(cq_mc_seq *q); /* accepts NULL and a zeroed seq */

/* log softmax(logits)[t] over V logits, in double. */
CQ_API double cq_mc_logprob(const float *logits, uint32_t V, int32_t t);

typedef struct cq_mc_opts {
    uint32_t threads;
    cq_kv_setup kv;                   /* group, sinks, fp16 layers, masks (page_tokens: the
                                         longest sequence when 0) */
    void (*progress)(void *user, size_t done, size_t total); /* after each item, or NULL */
    void *progress_user;
} cq_mc_opts;

typedef struct cq_mc_result {
    uint64_t n, correct, correct_norm;
    uint32_t *choice_norm; /* [n] acc_norm choices (for agreement); cq_mc_result_free */
    uint8_t *right_norm;   /* [n] 1 if the acc_norm choice is the label */
    double bits_per_value; /* measured cache bits, all bytes, mean over the sequences (32 for
                              the fp32 reference path, which has no cache) */
    double bits_no_slack;  /* the same without unused page space */
    double codec_bpv;      /* the format's codec bits per value (cq_format_codec_bits) */
    double mean_len;       /* mean scored sequence length (the context the cache bits are at) */
    uint32_t longest;      /* the longest sequence: the page size of the cache */
    uint64_t n_short;      /* sequences no longer than the key unit (G): their keys stayed fp16 */
    uint32_t warnings;     /* CQ_WARN_* */
    uint64_t retok;        /* items with an ending whose joint tokenization did not extend
                              the context's */
} cq_mc_result;

/* Score every item of set with K/V format f: per ending, the sum of the log-probabilities
 * of its continuation tokens given the context (one forward pass of the whole sequence
 * through a fresh cache of format f, pages sized to the set's longest sequence); acc =
 * argmax of the sum, acc_norm = argmax of the sum divided by the ending's length in bytes
 * (ties: the lower index). o may be NULL. On error *r holds nothing to free. */
CQ_API cq_status cq_mc_score(const cq_model *m, const cq_tokenizer *tok, const cq_mc_set *set,
                      const cq_kv_format *f, const cq_mc_opts *o, cq_mc_result *r, cq_err *err);
CQ_API void cq_mc_result_free(cq_mc_result *r);

/* ----------------------------------------------------- attention fidelity */

/* One kv head: K, V [L][D] fp16 bits for tokens 0..L-1 and n_q query vectors q [n_q][D]
 * (the GQA group of that head) at position L-1. K and V are quantized ONCE with the codecs
 * (whole block through the registry), each query is scored against them. */
typedef struct cq_attn_metrics {
    double score_cos;  /* cosine of K q/sqrt(D) vs K_hat q/sqrt(D) */
    double out_cos;    /* cosine of softmax(.)V vs softmax(.)V_hat */
    double top1;       /* 1 if the argmax of the scores agrees */
    double top5;       /* |top5 ref and top5 test| / min(5, L) */
    double k_nmse, v_nmse;
    uint64_t n;        /* number of (query) cases accumulated */
} cq_attn_metrics;

CQ_API void cq_attn_metrics_clear(cq_attn_metrics *m);
/* Add one kv-head case (n_q queries) into *acc (sums; divide with cq_attn_metrics_mean). */
CQ_API cq_status cq_attn_fidelity_case(const cq_codec_traits *kc, const cq_codec_traits *vc,
                                const cq_codec_cfg *cfg, const uint16_t *K, const uint16_t *V,
                                uint32_t L, const float *q, uint32_t n_q, cq_attn_metrics *acc,
                                cq_err *err);
CQ_API void cq_attn_metrics_mean(const cq_attn_metrics *sum, cq_attn_metrics *mean);

/* The protocol over a captured model: layers x query heads x positions of Q [NL][NQH][T][D],
 * K/V [NL][NKV][T][D] (fp16 bits), for one codec pair: mean metrics and the measured bits per
 * value (packed bytes over 2 L D values). masks: NULL (cfg->mask for every head) or per-head
 * CQ-4+ masks [NL][NKV][D]. */
#define CQ_MAX_SEL 64
typedef struct cq_sel {
    uint32_t v[CQ_MAX_SEL];
    int n;
} cq_sel;
/* n values int(linspace(lo, hi, n)), duplicates dropped. */
CQ_API void cq_linspace(uint32_t lo, uint32_t hi, int n, cq_sel *out);
typedef struct cq_qkv_set {
    const uint16_t *Q, *K, *V;
    uint32_t NL, NQH, NKV, T, D;
} cq_qkv_set;
CQ_API cq_status cq_attn_pair(const cq_codec_traits *kc, const cq_codec_traits *vc, const cq_codec_cfg *cfg,
                       const cq_qkv_set *x, const cq_sel *layers, const cq_sel *heads,
                       const cq_sel *pos, const uint8_t *masks, cq_attn_metrics *mean, double *bpv,
                       cq_err *err);

/* ---------------------------------------------------- outlier calibration */

/* EVAL.md section 4: max |K| per (layer, kv head, channel) over calibration tokens,
 * overall and per batch; top-k channels (ties to the lower index), ascending. */

CQ_API cq_status cq_calib_create(uint32_t n_layers, uint32_t n_kv_heads, uint32_t head_dim,
                          uint32_t n_batches, cq_calib **out, cq_err *err);
CQ_API void cq_calib_free(cq_calib *c);
/* Observe n tokens of one layer's keys, k [n][n_kv_heads][head_dim], from batch b. */
CQ_API cq_status cq_calib_observe(cq_calib *c, uint32_t batch, uint32_t layer, const float *k, uint32_t n);
/* Top-k channels of every (layer, head): chan [n_layers][n_kv_heads][k]; batch -1 = all data. */
CQ_API cq_status cq_calib_topk(const cq_calib *c, int32_t batch, uint32_t k, uint16_t *chan);
/* Largest channel max over the median channel max, per (layer, head): conc [L][H]. */
CQ_API cq_status cq_calib_concentration(const cq_calib *c, double *conc);
/* Overlap |top-k(batch) and top-k(all)| / k averaged over batches, per (layer, head)
 * (per_lh [L][H], may be NULL), the mean over all (layer, head), over layer 0, and over
 * the other layers. */
CQ_API cq_status cq_calib_stability(const cq_calib *c, uint32_t k, double *per_lh, double *mean_all,
                             double *mean_layer0, double *mean_rest);
/* The text mask format of ../shared/vectors/masks ("layer kv_head c0 .. c{k-1}"), atomically. */
CQ_API cq_status cq_calib_write_mask(const cq_calib *c, uint32_t k, const char *path, const char *title,
                              cq_err *err);
/* ROM image: one line per (layer, head) in order, the D-bit mask in hex, most significant
 * digit first, bit c = channel c (ceil(D/4) digits; $readmemh-loadable). */
CQ_API cq_status cq_calib_write_rom(const cq_calib *c, uint32_t k, const char *path, cq_err *err);
CQ_API uint64_t cq_calib_tokens(const cq_calib *c, int32_t batch);

/* ------------------------------------------------------------------ plots */

/* Scatter plots written as standalone SVG files (any browser opens them), meant for papers:
 * each point labelled with its full name (wrapped at '/', '_', '-', '+' or space when long)
 * and placed so that no two labels overlap each other, a point or the plot frame (nearby
 * first, then displaced with a leader line; a label that fits nowhere becomes a number
 * beside its point and a "number name" line in a key beside the plot; points drawn at the
 * same place share one label); optional vertical error bars; optional Pareto front; a caption
 * under the plot.
 *
 * A point. The fields after series are optional (zero = absent), so {x, y, label, series}
 * initializers keep their meaning. */
typedef struct cq_plot_point {
    double x, y;
    const char *label;  /* the point's name, drawn in full (may be NULL: no label) */
    uint32_t series;    /* colour index (and legend entry) */
    double y_err;       /* symmetric error: a bar from y - y_err to y + y_err; 0 = none */
    double y_lo, y_hi;  /* asymmetric bar from y_lo to y_hi (absolute y values); used instead
                           of y_err when y_lo < y_hi; needs y_lo <= y <= y_hi */
} cq_plot_point;

/* Which envelope is the Pareto front. x (bits) is always lower-is-better. */
typedef enum cq_plot_front {
    CQ_PLOT_FRONT_NONE = 0,
    CQ_PLOT_FRONT_LOWER = 1,  /* lower y is better: lower-left envelope (KLD vs bits) */
    CQ_PLOT_FRONT_HIGHER = 2, /* higher y is better: upper-left envelope (cosine vs bits) */
} cq_plot_front;

typedef struct cq_plot_opts {
    const char *title, *xlabel, *ylabel; /* may be NULL */
    const char *caption;   /* drawn under the plot, wrapped to its width: the sample size
                              (model, chunks x tokens, scored tokens), what the bars are; NULL = none */
    int log_y;             /* log10 y axis. Error bars reaching y <= 0 (or below the axis) end
                              at the axis bottom without a cap (an open end) */
    cq_plot_front front;   /* draw the Pareto front: a dashed step line through the
                              non-dominated points, each ringed */
    const char *const *series_names; /* legend entries [n_series]; NULL = no legend */
    uint32_t n_series;
    uint32_t label_wrap;   /* longest label line in characters; 0 = 24 */
    int debug_boxes;       /* outline every label's estimated bounding box (checking the estimate) */
} cq_plot_opts;

/* Write the plot of pts[n] to path (atomically). Points with a non-finite x or y, or y <= 0
 * on a log axis, are left out. Errors (nothing written): CQ_ERR_NULL (path, o, or pts with
 * n > 0), CQ_ERR_ARG (a negative or non-finite y_err, a non-finite y_lo or y_hi, y outside
 * [y_lo, y_hi], an unknown front), CQ_ERR_NOMEM, CQ_ERR_IO. The SVG marks its parts for checking: label texts carry class="label",
 * data-index (the point's index) and data-bbox="x y w h" (the box the layout reserved), key
 * lines class="key", error bars class="errbar" (data-open="lo"/"hi" for an open end), Pareto
 * rings class="front-mark" data-index, the caption class="caption". Label placement takes time
 * about quadratic in the number of points (1000 named points: about a second). */
CQ_API cq_status cq_plot_svg_write(const char *path, const cq_plot_point *pts, size_t n,
                            const cq_plot_opts *o, cq_err *err);

/* on_front[i] = 1 if point i is on the Pareto front (no other drawable point has x <= and y
 * at least as good, one of them strictly better), else 0; points cq_plot_svg_write leaves
 * out are 0. front NONE marks nothing. Returns the number on the front. */
CQ_API size_t cq_plot_pareto(const cq_plot_point *pts, size_t n, int log_y, cq_plot_front front,
                      uint8_t *on_front);

/* cq_plot_svg_write with only these options set (no caption, no front, default wrap). */
CQ_API cq_status cq_plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel,
                      int log_y, const cq_plot_point *pts, size_t n, const char *const *series_names,
                      uint32_t n_series, cq_err *err);

#ifdef __cplusplus
}
#endif
#endif
