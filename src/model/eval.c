/*
 * eval.c - model-quality evaluation of a compressed KV cache (EVAL.md
 * section 2): K/V format parsing, the cache configuration of a format, and
 * the chunked perplexity protocol with KL divergence against the fp16-cache
 * reference, all formats run chunk by chunk on the same tokens.
 * Not here: the command line (tools/cmd_eval.c), the forward pass (forward.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model_internal.h"

cq_status cq_kv_format_parse(const char *s, cq_kv_format *f, cq_err *err) {
    if (!s || !f) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "format is NULL");
    memset(f, 0, sizeof *f);
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof f->name)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "bad K/V format '%s'", s);
    memcpy(f->name, s, n + 1);
    if (!strcasecmp(s, "fp32") || !strcasecmp(s, "ref")) {
        f->reference = 1;
        f->key = f->val = CQ_CODEC_FP16;
        return CQ_OK;
    }
    char kname[48], vname[48];
    const char *slash = strchr(s, '/');
    if (slash) {
        memcpy(kname, s, (size_t)(slash - s));
        kname[slash - s] = '\0';
        strcpy(vname, slash + 1);
    } else {
        strcpy(kname, s);
        strcpy(vname, s);
    }
    const char *names[2] = {kname, vname};
    cq_codec_id *ids[2] = {&f->key, &f->val};
    for (int i = 0; i < 2; i++) {
        const cq_codec_traits *c = cq_codec_find(names[i]);
        if (!c && !strcasecmp(names[i], "cq4p")) c = cq_codec_get(CQ_CODEC_CQ4P);
        if (!c)
            return cq_err_set(err, CQ_ERR_TIER, -1, -1, "unknown codec '%s' in format '%s'",
                              names[i], s);
        if (!(c->flags & (i == 0 ? CQ_CODEC_F_KEYS : CQ_CODEC_F_VALUES)))
            return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "codec '%s' cannot code %s",
                              c->name, i == 0 ? "keys" : "values");
        *ids[i] = c->id;
    }
    return CQ_OK;
}

void cq_kv_format_cache_config(const cq_model_config *c, const cq_kv_format *f,
                                const cq_ppl_opts *o, cq_layer_codecs *layer_buf,
                                cq_cache_config *cc) {
    cq_cache_config_default(cc, c->n_layers, c->n_kv_heads, c->head_dim);
    cc->key_codec = f->key;
    cc->val_codec = f->val;
    cc->group = o->group;
    cc->n_sinks = o->n_sinks;
    cc->outlier_masks = o->masks;
    cc->page_tokens = o->page_tokens;
    if (o->fp16_first || o->fp16_last) {
        for (uint32_t l = 0; l < c->n_layers; l++) {
            int keep = (o->fp16_first && l == 0) || (o->fp16_last && l + 1 == c->n_layers);
            layer_buf[l].key = keep ? CQ_CODEC_FP16 : f->key;
            layer_buf[l].val = keep ? CQ_CODEC_FP16 : f->val;
        }
        cc->layer_codecs = layer_buf;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
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
    double nll, nll2;
    double *kld;   /* [n_scored_total] */
    uint64_t n, same;
    cq_cache_mem mem;
    double bpv;
} acc;

static void finish(acc *a, double ref_ppl, int has_kld, cq_ppl_result *r) {
    memset(r, 0, sizeof *r);
    r->n_scored = a->n;
    if (!a->n) return;
    double m = a->nll / a->n, m2 = a->nll2 / a->n;
    r->nll_mean = m;
    r->ppl = exp(m);
    r->ppl_se = a->n > 1 ? r->ppl * sqrt(fmax(m2 - m * m, 0) / (double)(a->n - 1)) : 0;
    r->delta_ppl = r->ppl - ref_ppl;
    r->mem = a->mem;
    r->bits_per_value = a->bpv;
    if (!has_kld) return;
    double s = 0;
    for (uint64_t i = 0; i < a->n; i++) s += a->kld[i];
    r->kld_mean = s / a->n;
    qsort(a->kld, a->n, sizeof(double), cmp_double);
    r->kld_median = a->n % 2 ? a->kld[a->n / 2] : 0.5 * (a->kld[a->n / 2 - 1] + a->kld[a->n / 2]);
    uint64_t p99 = (uint64_t)ceil(0.99 * a->n);
    r->kld_p99 = a->kld[p99 ? p99 - 1 : 0];
    r->kld_max = a->kld[a->n - 1];
    r->same_top1 = (double)a->same / a->n;
}

cq_status cq_eval_ppl(const cq_model *m, const int32_t *tokens, size_t n_tokens, int32_t bos,
                      const cq_ppl_opts *o, const cq_kv_format *formats, uint32_t n_formats,
                      cq_ppl_result *res, cq_ppl_result *ref, cq_err *err) {
    if (!m || !tokens || !o || (n_formats && (!formats || !res)))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cq_eval_ppl: NULL argument");
    const cq_model_config *c = &m->cfg;
    uint32_t n_ctx = o->n_ctx ? o->n_ctx : 512;
    if (n_ctx > c->max_seq_len) n_ctx = c->max_seq_len;
    if (n_ctx < 4) return cq_err_set(err, CQ_ERR_ARG, -1, -1, "n_ctx %u too small", n_ctx);
    size_t n_chunks = n_tokens / n_ctx;
    if (o->max_chunks && n_chunks > o->max_chunks) n_chunks = o->max_chunks;
    if (n_chunks == 0)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "%zu tokens: fewer than one chunk of %u",
                          n_tokens, n_ctx);
    const uint32_t V = c->vocab_size, first = n_ctx / 2, per = n_ctx - 1 - first;
    const uint64_t total = (uint64_t)n_chunks * per;
    cq_status st = CQ_OK;
    uint32_t nf = n_formats + 1; /* slot 0: the reference */
    cq_session **ss = calloc(nf, sizeof *ss);
    acc *ac = calloc(nf, sizeof *ac);
    cq_layer_codecs *lbuf = calloc((size_t)c->n_layers * nf, sizeof *lbuf);
    float *logits = malloc((size_t)n_ctx * V * sizeof(float));         /* [n_ctx][V] */
    double *ref_lp = malloc((size_t)per * V * sizeof(double));         /* [per][V] */
    double *lp = malloc((size_t)V * sizeof(double));                   /* [V] */
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    if (!ss || !ac || !lbuf || !logits || !ref_lp || !lp || !chunk) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto done;
    }
    for (uint32_t f = 0; f < nf; f++) {
        cq_kv_format rf;
        const cq_kv_format *fmt;
        if (f == 0) {
            memset(&rf, 0, sizeof rf);
            strcpy(rf.name, o->ref_oracle ? "fp32-oracle/fp16-rounded" : "fp16/fp16");
            rf.key = rf.val = CQ_CODEC_FP16;
            fmt = &rf;
        } else {
            fmt = &formats[f - 1];
        }
        cq_session_opts so;
        cq_session_opts_default(&so);
        so.n_threads = o->n_threads;
        so.max_tokens = n_ctx;
        so.batch = n_ctx;
        cq_cache_config cc;
        if (fmt->reference || (f == 0 && o->ref_oracle)) {
            so.mode = CQ_KV_REFERENCE;
            so.ref_kv_fp16 = f == 0;
        } else {
            so.mode = CQ_KV_CACHE;
            cq_ppl_opts plain = *o;
            if (!plain.page_tokens) plain.page_tokens = n_ctx;
            if (f == 0) plain.n_sinks = 0, plain.fp16_first = plain.fp16_last = 0, plain.masks = NULL;
            cq_kv_format_cache_config(c, fmt, &plain, lbuf + (size_t)f * c->n_layers, &cc);
            so.cache = &cc;
        }
        if ((st = cq_session_create(m, &so, &ss[f], err))) goto done;
        ac[f].kld = malloc((size_t)total * sizeof(double));
        if (!ac[f].kld) {
            st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
            goto done;
        }
        ac[f].bpv = so.mode == CQ_KV_REFERENCE ? 32.0 : 0.0;
    }
    for (size_t ch = 0; ch < n_chunks; ch++) {
        memcpy(chunk, tokens + ch * n_ctx, (size_t)n_ctx * sizeof *chunk);
        if (bos >= 0) chunk[0] = bos;
        for (uint32_t f = 0; f < nf; f++) {
            cq_session_reset(ss[f]);
            if ((st = cq_session_forward(ss[f], chunk, n_ctx, logits, 0, err))) goto done;
            acc *a = &ac[f];
            for (uint32_t j = first; j + 1 < n_ctx; j++) {
                double *dst = f == 0 ? ref_lp + (size_t)(j - first) * V : lp;
                log_softmax(logits + (size_t)j * V, V, dst);
                double nll = -dst[chunk[j + 1]];
                a->nll += nll;
                a->nll2 += nll * nll;
                if (f > 0) {
                    const double *rl = ref_lp + (size_t)(j - first) * V;
                    double kl = 0;
                    for (uint32_t t = 0; t < V; t++) kl += exp(rl[t]) * (rl[t] - dst[t]);
                    a->kld[a->n] = kl > 0 ? kl : 0; /* rounding can give -1e-17 */
                    a->same += argmax_d(rl, V) == argmax_d(dst, V);
                }
                a->n++;
            }
            cq_cache *cache = cq_session_cache(ss[f]);
            if (cache && ch + 1 == n_chunks) {
                if (cq_cache_memory(cache, -1, &a->mem) == CQ_OK) a->bpv = a->mem.bits_per_value;
            }
        }
        if (o->progress) o->progress(o->progress_user, (uint32_t)ch + 1, (uint32_t)n_chunks);
    }
    cq_ppl_result r0;
    finish(&ac[0], 0, 0, &r0);
    r0.n_chunks = (uint32_t)n_chunks;
    if (ref) *ref = r0;
    for (uint32_t f = 1; f < nf; f++) {
        finish(&ac[f], r0.ppl, 1, &res[f - 1]);
        res[f - 1].n_chunks = (uint32_t)n_chunks;
    }
done:
    if (ss)
        for (uint32_t f = 0; f < nf; f++) cq_session_free(ss[f]);
    if (ac)
        for (uint32_t f = 0; f < nf; f++) free(ac[f].kld);
    free(ss);
    free(ac);
    free(lbuf);
    free(logits);
    free(ref_lp);
    free(lp);
    free(chunk);
    return st;
}
