/* SPDX-License-Identifier: MIT */
/*
 * ppl.c - the chunked perplexity protocol with KL divergence against the
 * fp16-cache reference (EVAL.md section 2; the statistics of llama-perplexity
 * --kl-divergence): every format runs chunk by chunk on the same tokens, and
 * per scored token the NLL, KL(base || Q), the probability change of the next
 * token and the argmax agreement are kept, then summarized with standard
 * errors. The reference's log-probabilities can be written once to a base
 * file and read back instead of being recomputed (kld_base.c).
 * Not here: the command line (tools/cmd_eval.c), the forward pass (src/model).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"
#include "eval_internal.h"

const double cq_kld_quantiles[CQ_KLD_NQ] = {0.999, 0.99, 0.95, 0.90, 0.5, 0.10, 0.05, 0.01};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* log-softmax of logits [V] into lp [V] (double accumulation). */
static void log_softmax(const float *logits, uint32_t V, double *lp) {
    double mx = -INFINITY, sum = 0;
    for (uint32_t i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    for (uint32_t i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    for (uint32_t i = 0; i < V; i++) lp[i] = (double)logits[i] - lse;
}

static uint32_t argmax_d(const double *x, uint32_t n) {
    uint32_t b = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

typedef struct acc {
    double *nll, *kld, *dp; /* per scored token [total] (kld, dp: formats only) */
    uint64_t n, same;
    double nll_sum, kld_sum; /* running figures for progress */
    cq_bits bits;
    uint32_t warnings;
    int has_cache;
} acc;

/* mean and population variance of x [n] */
static void moments(const double *x, uint64_t n, double *mean, double *var) {
    double s = 0, s2 = 0;
    for (uint64_t i = 0; i < n; i++) s += x[i];
    double m = n ? s / (double)n : 0;
    for (uint64_t i = 0; i < n; i++) s2 += (x[i] - m) * (x[i] - m);
    *mean = m;
    *var = n ? s2 / (double)n : 0;
}

static double se_of(double var, uint64_t n) { return n > 1 ? sqrt(var / (double)(n - 1)) : 0; }

static void finish_ref(const acc *b, cq_ppl_result *r) {
    memset(r, 0, sizeof *r);
    r->n_scored = b->n;
    double m, v;
    moments(b->nll, b->n, &m, &v);
    r->nll_mean = m;
    r->ppl = r->ppl_base = exp(m);
    r->ppl_se = r->ppl_base_se = r->ppl * se_of(v, b->n);
    r->ppl_ratio = 1.0;
    r->same_top1 = 1.0;
    r->nll_cor = 1.0;
    r->bits = b->bits;
    r->mem = b->bits.mem;
    r->bits_per_value = b->bits.cache_bpv;
    r->warnings = b->warnings;
}

/* The statistics of llama-perplexity --kl-divergence for one format against base b. */
static void finish(acc *a, const acc *b, cq_ppl_result *r) {
    memset(r, 0, sizeof *r);
    const uint64_t n = a->n;
    r->n_scored = n;
    r->bits = a->bits;
    r->mem = a->bits.mem;
    r->bits_per_value = a->bits.cache_bpv;
    r->warnings = a->warnings;
    if (!n) return;
    double mq, vq, mb, vb, cov = 0;
    moments(a->nll, n, &mq, &vq);
    moments(b->nll, n, &mb, &vb);
    for (uint64_t i = 0; i < n; i++) cov += (a->nll[i] - mq) * (b->nll[i] - mb);
    cov /= (double)n;
    r->nll_mean = mq;
    r->ppl = exp(mq);
    r->ppl_se = r->ppl * se_of(vq, n);
    r->ppl_base = exp(mb);
    r->ppl_base_se = r->ppl_base * se_of(vb, n);
    r->nll_cor = vq > 0 && vb > 0 ? cov / sqrt(vq * vb) : 1.0;
    /* ln ratio: the per-token difference of NLLs */
    double vd = vq + vb - 2 * cov;
    r->ln_ratio = mq - mb;
    r->ln_ratio_se = se_of(vd > 0 ? vd : 0, n);
    r->ppl_ratio = exp(r->ln_ratio);
    r->ppl_ratio_se = r->ppl_ratio * r->ln_ratio_se;
    r->delta_ppl = r->ppl - r->ppl_base;
    double vdp = r->ppl * r->ppl * vq + r->ppl_base * r->ppl_base * vb - 2 * r->ppl * r->ppl_base * cov;
    r->delta_ppl_se = se_of(vdp > 0 ? vdp : 0, n);
    /* KL divergence */
    double km, kv;
    moments(a->kld, n, &km, &kv);
    r->kld_mean = km;
    r->kld_se = se_of(kv, n);
    qsort(a->kld, n, sizeof(double), cmp_double);
    r->kld_min = a->kld[0];
    r->kld_max = a->kld[n - 1];
    for (int i = 0; i < CQ_KLD_NQ; i++) {
        double pos = cq_kld_quantiles[i] * (double)(n - 1);
        uint64_t j = (uint64_t)pos;
        double f = pos - (double)j;
        r->kld_q[i] = j + 1 < n ? a->kld[j] * (1 - f) + a->kld[j + 1] * f : a->kld[j];
    }
    r->kld_median = r->kld_q[4];
    r->kld_p99 = r->kld_q[1];
    /* token probabilities */
    double p = (double)a->same / (double)n;
    r->same_top1 = p;
    r->same_top1_se = se_of(p * (1 - p), n);
    double dm, dv, s2 = 0, s4 = 0;
    moments(a->dp, n, &dm, &dv);
    r->dp_mean = dm;
    r->dp_mean_se = se_of(dv, n);
    for (uint64_t i = 0; i < n; i++) s2 += a->dp[i] * a->dp[i];
    double m2 = s2 / (double)n;
    for (uint64_t i = 0; i < n; i++) s4 += (a->dp[i] * a->dp[i] - m2) * (a->dp[i] * a->dp[i] - m2);
    r->dp_rms = sqrt(m2);
    r->dp_rms_se = r->dp_rms > 0 ? se_of(s4 / (double)n, n) / (2 * r->dp_rms) : 0;
}

cq_status cq_eval_ppl(const cq_model *m, const int32_t *tokens, size_t n_tokens, int32_t bos,
                      cq_ppl_opts *o, const cq_kv_format *formats, uint32_t n_formats,
                      cq_ppl_result *res, cq_ppl_result *ref, cq_err *err) {
    if (!m || !tokens || !o || (n_formats && (!formats || !res)))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cq_eval_ppl: NULL argument");
    const cq_model_config *c = cq_model_get_config(m);
    uint32_t n_ctx = o->n_ctx ? o->n_ctx : 512;
    if (n_ctx > c->max_seq_len)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                          "context %u is larger than the model's context of %u tokens", n_ctx,
                          c->max_seq_len);
    if (n_ctx < 4) return cq_err_set(err, CQ_ERR_ARG, -1, -1, "context %u too small", n_ctx);
    if (o->ref && (o->ref_oracle || o->base_path))
        return cq_err_set(err, CQ_ERR_ARG, -1, -1,
                          "a reference format (%s) excludes the oracle reference and a base file",
                          o->ref->name);
    size_t n_chunks = n_tokens / n_ctx;
    if (o->max_chunks && n_chunks > o->max_chunks) n_chunks = o->max_chunks;
    if (n_chunks == 0)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "%zu tokens: fewer than one chunk of %u",
                          n_tokens, n_ctx);
    const uint32_t V = c->vocab_size, first = n_ctx / 2, per = n_ctx - 1 - first;
    const uint64_t total = (uint64_t)n_chunks * per;
    uint32_t overlap = 0;
    if (o->calib_end > o->calib_begin && o->calib_begin < (size_t)n_chunks * n_ctx)
        overlap = CQ_WARN_CALIB_OVERLAP;
    o->base_loaded = 0;
    cq_status st = CQ_OK;
    const uint32_t nf = n_formats + 1; /* slot 0: the reference */
    cq_session **ss = calloc(nf, sizeof *ss);
    acc *ac = calloc(nf, sizeof *ac);
    float *logits = malloc((size_t)n_ctx * V * sizeof(float)); /* [n_ctx][V] */
    double *ref_lp = malloc((size_t)per * V * sizeof(double)); /* [per][V] */
    double *lp = malloc((size_t)V * sizeof(double));
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    double *run_ppl = calloc(nf, sizeof(double)), *run_kld = calloc(nf, sizeof(double));
    cq_kld_base *base = NULL;
    if (!ss || !ac || !logits || !ref_lp || !lp || !chunk || !run_ppl || !run_kld) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto done;
    }
    if (o->base_path) {
        cq_kld_base_key key = {n_ctx, (uint32_t)n_chunks, V, bos, 0};
        key.tokens_crc = cq_kld_base_tokens_crc(tokens, n_chunks, n_ctx, bos);
        if ((st = cq_kld_base_open(o->base_path, c, &key, &base, err))) goto done;
        o->base_loaded = cq_kld_base_is_reading(base);
    }
    for (uint32_t f = 0; f < nf; f++) {
        cq_kv_format rf;
        const cq_kv_format *fmt = &rf;
        if (f == 0 && o->ref) {
            rf = *o->ref;
        } else if (f == 0) {
            memset(&rf, 0, sizeof rf);
            strcpy(rf.name, o->ref_oracle ? "fp32-oracle/fp16-rounded" : "fp16/fp16");
            rf.key = rf.val = CQ_CODEC_FP16;
        } else {
            fmt = &formats[f - 1];
        }
        cq_kv_format oracle = *fmt;
        cq_kv_setup plain;
        memset(&plain, 0, sizeof plain);
        plain.page_tokens = o->kv.page_tokens;
        if (f == 0 && o->ref_oracle) oracle.reference = 1; /* fp32 path, K/V rounded to fp16 */
        /* the fp16 reference runs without sinks, fp16 layers or masks; a --ref format with them */
        if ((st = cq_eval_session(m, &oracle, f == 0 && !o->ref ? &plain : &o->kv, o->n_threads, n_ctx, f == 0,
                                  &ss[f], err)))
            goto done;
        ac[f].nll = malloc((size_t)total * sizeof(double));
        ac[f].kld = f ? malloc((size_t)total * sizeof(double)) : NULL;
        ac[f].dp = malloc((size_t)total * sizeof(double)); /* base: p(next) */
        if (!ac[f].nll || !ac[f].dp || (f && !ac[f].kld)) {
            st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
            goto done;
        }
        ac[f].has_cache = cq_session_cache(ss[f]) != NULL;
        if (!ac[f].has_cache) ac[f].bits.codec_bpv = ac[f].bits.cache_bpv = 32.0;
        if (f) ac[f].warnings = cq_kv_format_warnings(fmt, n_ctx, o->kv.group) | overlap;
    }
    for (size_t ch = 0; ch < n_chunks; ch++) {
        memcpy(chunk, tokens + ch * n_ctx, (size_t)n_ctx * sizeof *chunk);
        if (bos >= 0) chunk[0] = bos;
        for (uint32_t f = 0; f < nf; f++) {
            acc *a = &ac[f];
            if (f == 0 && o->base_loaded && ch > 0) {
                /* the reference's log-probabilities from the base file */
                if ((st = cq_kld_base_read(base, (uint32_t)ch, per, ref_lp, err))) goto done;
            } else {
                cq_session_reset(ss[f]);
                if ((st = cq_session_forward(ss[f], chunk, n_ctx, logits, 0, err))) goto done;
            }
            for (uint32_t j = first; j + 1 < n_ctx; j++) {
                double *dst = f == 0 ? ref_lp + (size_t)(j - first) * V : lp;
                if (!(f == 0 && o->base_loaded && ch > 0)) log_softmax(logits + (size_t)j * V, V, dst);
                int32_t nx = chunk[j + 1];
                double nll = -dst[nx];
                a->nll[a->n] = nll;
                a->nll_sum += nll;
                if (f == 0) {
                    a->dp[a->n] = exp(dst[nx]);
                } else {
                    const double *rl = ref_lp + (size_t)(j - first) * V;
                    double kl = 0;
                    for (uint32_t t = 0; t < V; t++) kl += exp(rl[t]) * (rl[t] - dst[t]);
                    kl = kl > 0 ? kl : 0; /* rounding can give -1e-17 */
                    a->kld[a->n] = kl;
                    a->kld_sum += kl;
                    a->dp[a->n] = exp(dst[nx]) - ac[0].dp[a->n];
                    a->same += argmax_d(rl, V) == argmax_d(dst, V);
                }
                a->n++;
            }
            if (f == 0 && base) {
                /* chunk 0 read back: the file must match what this run computes */
                if (o->base_loaded && ch == 0) st = cq_kld_base_check(base, per, ref_lp, err);
                else if (!o->base_loaded) st = cq_kld_base_put(base, (uint32_t)ch, per, ref_lp, err);
                if (st) goto done;
            }
            cq_cache *cache = cq_session_cache(ss[f]);
            if (cache && ch + 1 == n_chunks && (st = cq_eval_bits(cache, &a->bits, &a->warnings, err)))
                goto done;
            run_ppl[f] = exp(a->nll_sum / (double)a->n);
            run_kld[f] = f ? a->kld_sum / (double)a->n : 0;
        }
        if (o->progress)
            o->progress(o->progress_user, (uint32_t)ch + 1, (uint32_t)n_chunks, run_ppl + 1,
                        run_kld + 1, n_formats);
    }
    if (base && !o->base_loaded && (st = cq_kld_base_commit(base, err))) goto done;
    cq_ppl_result r0;
    finish_ref(&ac[0], &r0);
    r0.n_chunks = (uint32_t)n_chunks;
    r0.n_ctx = n_ctx;
    r0.warnings |= overlap;
    if (ref) *ref = r0;
    for (uint32_t f = 1; f < nf; f++) {
        finish(&ac[f], &ac[0], &res[f - 1]);
        res[f - 1].n_chunks = (uint32_t)n_chunks;
        res[f - 1].n_ctx = n_ctx;
    }
done:
    cq_kld_base_close(base);
    if (ss)
        for (uint32_t f = 0; f < nf; f++) cq_session_free(ss[f]);
    if (ac)
        for (uint32_t f = 0; f < nf; f++) free(ac[f].nll), free(ac[f].kld), free(ac[f].dp);
    free(ss);
    free(ac);
    free(logits);
    free(ref_lp);
    free(lp);
    free(chunk);
    free(run_ppl);
    free(run_kld);
    return st;
}
