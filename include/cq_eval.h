/*
 * cq_eval.h - evaluation building blocks (../shared/docs/EVAL.md): statistics
 * (Wilson interval, McNemar, percentiles), multiple-choice item sets
 * (HellaSwag jsonl, a cloze set built from plain text) and the
 * attention-fidelity protocol over any pair of registry codecs; multiple-choice
 * scoring of a K/V format through the model runtime.
 * The model runtime (include/cq_model.h) drives these for the eval commands.
 */
#ifndef CQ_EVAL_H
#define CQ_EVAL_H

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
void cq_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi);
/* McNemar test of paired outcomes: b = ref right / test wrong, c = ref wrong / test right.
 * Returns the exact two-sided binomial p-value (chi-square with continuity for n > 1000). */
double cq_mcnemar_p(uint64_t b, uint64_t c);
/* q-quantile (0..1) of n values by linear interpolation; sorts a copy. NAN if n == 0. */
double cq_quantile(const double *v, size_t n, double q);

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
cq_status cq_mc_load_hellaswag(const char *path, size_t max_items, cq_mc_set *set, cq_err *err);
cq_status cq_mc_parse_hellaswag(const char *text, size_t len, size_t max_items, cq_mc_set *set,
                                cq_err *err);
/* Cloze set from plain text (see docs/EVAL_IMPL.md): each paragraph with at least 4 sentences
 * gives an item: context = its first 3 sentences, endings = its 4th sentence and the 4th
 * sentences of 3 other paragraphs (chosen by seed), the true one at a seeded position.
 * A paragraph without 3 others whose 4th sentence differs in text gives no item. */
cq_status cq_mc_build_cloze(const char *text, size_t len, size_t max_items, uint64_t seed,
                            cq_mc_set *set, cq_err *err);
void cq_mc_free(cq_mc_set *set);

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
cq_status cq_mc_prepare(const cq_tokenizer *tok, const char *context, const char *ending,
                        uint32_t max_len, cq_mc_seq *q, cq_err *err);
void cq_mc_seq_free(cq_mc_seq *q); /* accepts NULL and a zeroed seq */

/* log softmax(logits)[t] over V logits, in double. */
double cq_mc_logprob(const float *logits, uint32_t V, int32_t t);

typedef struct cq_mc_opts {
    uint32_t threads, group, n_sinks; /* as cq_ppl_opts (0 = defaults) */
    int fp16_first, fp16_last;
    const uint8_t *masks;             /* CQ-4+ masks [n_layers][n_kv_heads][head_dim] */
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
    uint64_t retok;        /* items with an ending whose joint tokenization did not extend
                              the context's */
} cq_mc_result;

/* Score every item of set with K/V format f: per ending, the sum of the log-probabilities
 * of its continuation tokens given the context (one forward pass of the whole sequence
 * through a fresh cache of format f, pages sized to the set's longest sequence); acc =
 * argmax of the sum, acc_norm = argmax of the sum divided by the ending's length in bytes
 * (ties: the lower index). o may be NULL. On error *r holds nothing to free. */
cq_status cq_mc_score(const cq_model *m, const cq_tokenizer *tok, const cq_mc_set *set,
                      const cq_kv_format *f, const cq_mc_opts *o, cq_mc_result *r, cq_err *err);
void cq_mc_result_free(cq_mc_result *r);

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

void cq_attn_metrics_clear(cq_attn_metrics *m);
/* Add one kv-head case (n_q queries) into *acc (sums; divide with cq_attn_metrics_mean). */
cq_status cq_attn_fidelity_case(const cq_codec_traits *kc, const cq_codec_traits *vc,
                                const cq_codec_cfg *cfg, const uint16_t *K, const uint16_t *V,
                                uint32_t L, const float *q, uint32_t n_q, cq_attn_metrics *acc,
                                cq_err *err);
void cq_attn_metrics_mean(const cq_attn_metrics *sum, cq_attn_metrics *mean);

/* ---------------------------------------------------- outlier calibration */

/* EVAL.md section 4: max |K| per (layer, kv head, channel) over calibration tokens,
 * overall and per batch; top-k channels (ties to the lower index), ascending. */
typedef struct cq_calib cq_calib;

cq_status cq_calib_create(uint32_t n_layers, uint32_t n_kv_heads, uint32_t head_dim,
                          uint32_t n_batches, cq_calib **out, cq_err *err);
void cq_calib_free(cq_calib *c);
/* Observe n tokens of one layer's keys, k [n][n_kv_heads][head_dim], from batch b. */
cq_status cq_calib_observe(cq_calib *c, uint32_t batch, uint32_t layer, const float *k, uint32_t n);
/* Top-k channels of every (layer, head): chan [n_layers][n_kv_heads][k]; batch -1 = all data. */
cq_status cq_calib_topk(const cq_calib *c, int32_t batch, uint32_t k, uint16_t *chan);
/* Largest channel max over the median channel max, per (layer, head): conc [L][H]. */
cq_status cq_calib_concentration(const cq_calib *c, double *conc);
/* Overlap |top-k(batch) and top-k(all)| / k averaged over batches, per (layer, head)
 * (per_lh [L][H], may be NULL), the mean over all (layer, head), over layer 0, and over
 * the other layers. */
cq_status cq_calib_stability(const cq_calib *c, uint32_t k, double *per_lh, double *mean_all,
                             double *mean_layer0, double *mean_rest);
/* The text mask format of ../shared/vectors/masks ("layer kv_head c0 .. c{k-1}"), atomically. */
cq_status cq_calib_write_mask(const cq_calib *c, uint32_t k, const char *path, const char *title,
                              cq_err *err);
/* ROM image: one line per (layer, head) in order, the D-bit mask in hex, most significant
 * digit first, bit c = channel c (ceil(D/4) digits; $readmemh-loadable). */
cq_status cq_calib_write_rom(const cq_calib *c, uint32_t k, const char *path, cq_err *err);
uint64_t cq_calib_tokens(const cq_calib *c, int32_t batch);

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
cq_status cq_plot_svg_write(const char *path, const cq_plot_point *pts, size_t n,
                            const cq_plot_opts *o, cq_err *err);

/* on_front[i] = 1 if point i is on the Pareto front (no other drawable point has x <= and y
 * at least as good, one of them strictly better), else 0; points cq_plot_svg_write leaves
 * out are 0. front NONE marks nothing. Returns the number on the front. */
size_t cq_plot_pareto(const cq_plot_point *pts, size_t n, int log_y, cq_plot_front front,
                      uint8_t *on_front);

/* cq_plot_svg_write with only these options set (no caption, no front, default wrap). */
cq_status cq_plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel,
                      int log_y, const cq_plot_point *pts, size_t n, const char *const *series_names,
                      uint32_t n_series, cq_err *err);

#ifdef __cplusplus
}
#endif
#endif
