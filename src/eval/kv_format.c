/* SPDX-License-Identifier: MIT */
/*
 * kv_format.c - what every evaluation protocol says about a K/V format before
 * and after it runs: parsing "KEY/VAL", the cache configuration of a format on
 * a model, why a format cannot run in the streaming cache, the warnings a
 * context raises, and the two bit figures (codec bits and cache bits per
 * value). Declared in include/cq_eval.h; docs/EVAL.md, "Bits" and "Warnings".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cq_eval.h"
#include "eval_internal.h"

cq_status cq_kv_format_parse(const char *s, cq_kv_format *f, cq_err *err) {
    if (!s || !f) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "format is NULL");
    memset(f, 0, sizeof *f);
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof f->name)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "bad K/V format '%s'", s);
    memcpy(f->name, s, n + 1);
    /* "@exact" / "@fast": the attention precision; the codecs are what precedes it */
    char body[48];
    memcpy(body, s, n + 1);
    char *at = strchr(body, '@');
    if (at) {
        *at++ = '\0';
        f->precision = !strcasecmp(at, "exact") ? CQ_ATTN_EXACT : !strcasecmp(at, "fast") ? CQ_ATTN_FAST : 0;
        if (!f->precision)
            return cq_err_set(err, CQ_ERR_ARG, -1, -1,
                              "format '%s': precision '%s' is neither exact nor fast", s, at);
    }
    s = body;
    if (!strcasecmp(s, "fp32") || !strcasecmp(s, "ref")) {
        if (f->precision)
            return cq_err_set(err, CQ_ERR_ARG, -1, -1,
                              "format '%s': the fp32 path has no cache precision", f->name);
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
                              names[i], f->name);
        if (!(c->flags & (i == 0 ? CQ_CODEC_F_KEYS : CQ_CODEC_F_VALUES)))
            return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "codec '%s' cannot code %s",
                              c->name, i == 0 ? "keys" : "values");
        *ids[i] = c->id;
    }
    if (!slash) { /* one name for both roles: the canonical spelling is KEY/VAL[@precision] */
        char canon[sizeof f->name];
        int w = snprintf(canon, sizeof canon, "%s/%s%s", cq_codec_get(f->key)->name,
                         cq_codec_get(f->val)->name,
                         f->precision == CQ_ATTN_EXACT ? "@exact"
                         : f->precision == CQ_ATTN_FAST ? "@fast" : "");
        if (w > 0 && (size_t)w < sizeof canon) memcpy(f->name, canon, (size_t)w + 1);
    }
    return CQ_OK;
}

void cq_kv_format_cache_config(const cq_model_config *c, const cq_kv_format *f,
                               const cq_kv_setup *s, cq_layer_codecs *layer_buf,
                               cq_cache_config *cc) {
    cq_cache_config_default(cc, c->n_layers, c->n_kv_heads, c->head_dim);
    cc->key_codec = f->key;
    cc->val_codec = f->val;
    cc->group = s->group;
    cc->n_sinks = s->n_sinks;
    cc->outlier_masks = s->masks;
    cc->page_tokens = s->page_tokens;
    if (s->fp16_first || s->fp16_last) {
        for (uint32_t l = 0; l < c->n_layers; l++) {
            int keep = (s->fp16_first && l == 0) || (s->fp16_last && l + 1 == c->n_layers);
            layer_buf[l].key = keep ? CQ_CODEC_FP16 : f->key;
            layer_buf[l].val = keep ? CQ_CODEC_FP16 : f->val;
        }
        cc->layer_codecs = layer_buf;
    }
}

cq_status cq_eval_session(const cq_model *m, const cq_kv_format *f, const cq_kv_setup *kv,
                          uint32_t n_threads, uint32_t max_tokens, int ref_kv_fp16, cq_session **out,
                          cq_err *err) {
    const cq_model_config *c = cq_model_get_config(m);
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.n_threads = n_threads;
    so.max_tokens = max_tokens;
    so.batch = max_tokens;
    if (f->reference) {
        so.mode = CQ_KV_REFERENCE;
        so.ref_kv_fp16 = ref_kv_fp16;
        return cq_session_create(m, &so, out, err);
    }
    cq_layer_codecs *lbuf = calloc(c->n_layers, sizeof *lbuf);
    if (!lbuf) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_kv_setup k = *kv;
    if (!k.page_tokens) k.page_tokens = max_tokens;
    cq_cache_config cc;
    cq_kv_format_cache_config(c, f, &k, lbuf, &cc);
    so.mode = CQ_KV_CACHE;
    so.cache = &cc; /* copied by the session's cache at create */
    so.attn_precision = f->precision;
    cq_status st = cq_session_create(m, &so, out, err);
    free(lbuf);
    return st;
}

const char *cq_kv_format_na(const cq_model_config *c, const cq_kv_format *f, uint32_t group,
                            const uint8_t *masks, char *buf, size_t cap) {
    if (f->reference) return NULL;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, c->head_dim);
    if (group) cfg.group = group;
    cfg.mask = masks; /* layer 0 head 0's mask: enough for the shape checks */
    const cq_codec_id ids[2] = {f->key, f->val};
    for (int r = 0; r < 2; r++) {
        const cq_codec_traits *t = cq_codec_get(ids[r]);
        cq_role role = r ? CQ_ROLE_VALUE : CQ_ROLE_KEY;
        const char *rn = r ? "values" : "keys";
        if (!t) {
            snprintf(buf, cap, "unknown codec");
            return buf;
        }
        if (!(t->flags & CQ_CODEC_F_STREAMING) || (t->flags & CQ_CODEC_F_OFFLINE)) {
            snprintf(buf, cap, "%s is not a streaming codec (needs the whole sequence)", t->name);
            return buf;
        }
        if (t->id == CQ_CODEC_CQ4P && r == 0 && !masks) {
            snprintf(buf, cap, "cq4+ keys need an outlier mask");
            return buf;
        }
        /* the cache codes a per-token codec over each token's row of all kv heads when
         * a head is too narrow for its blocks (docs/CACHE.md, "Row layout") */
        if (cq_codec_supports(t, &cfg, role) != CQ_OK &&
            cq_cache_layout_for(t->id, role, c->n_kv_heads, c->head_dim, group) != CQ_LAYOUT_ROW) {
            if (c->n_kv_heads > 1)
                snprintf(buf, cap, "%s cannot code %s at head_dim %u, nor as a row of %u kv heads "
                         "x %u = %u channels", t->name, rn, c->head_dim, c->n_kv_heads,
                         c->head_dim, c->n_kv_heads * c->head_dim);
            else
                snprintf(buf, cap, "%s cannot code %s at head_dim %u", t->name, rn, c->head_dim);
            return buf;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- warnings */

static const char *const warn_names[CQ_WARN_COUNT] = {
    "ctx_le_group", "kivi_window_ge_seq", "calib_overlap", "cache_over_fp16"};
static const char *const warn_texts[CQ_WARN_COUNT] = {
    "the context is not longer than the key group (G): grouped keys stay in the fp16 in-flight "
    "group for every scored position, so this row measures fp16 keys, not the codec",
    "the KIVI fp16 window is at least the sequence length: nothing leaves the window, so this "
    "row measures fp16, not the codec",
    "the calibration text overlaps the scored text: the CQ-4+ mask has seen the tokens it is "
    "scored on",
    "the cache holds more bits per value than fp16 at this context (the fp16 in-flight group, "
    "windows, sinks and page slack dominate a short context); the codec bits give the format's "
    "cost"};

const char *cq_warn_name(uint32_t bit) { return bit < CQ_WARN_COUNT ? warn_names[bit] : "?"; }
const char *cq_warn_text(uint32_t bit) { return bit < CQ_WARN_COUNT ? warn_texts[bit] : "?"; }

uint32_t cq_kv_format_warnings(const cq_kv_format *f, uint32_t context, uint32_t group) {
    if (f->reference) return 0;
    uint32_t w = 0;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 64);
    if (group) cfg.group = group;
    const cq_codec_id ids[2] = {f->key, f->val};
    for (int r = 0; r < 2; r++) {
        const cq_codec_traits *t = cq_codec_get(ids[r]);
        if (!t) continue;
        cq_role role = r ? CQ_ROLE_VALUE : CQ_ROLE_KEY;
        uint32_t unit = cq_codec_unit_tokens(t, &cfg, role);
        uint32_t win = cq_codec_window_tokens(t, &cfg, role);
        if (unit > 1 && context <= unit) w |= CQ_WARN_CTX_LE_GROUP;
        if (win && win >= context) w |= CQ_WARN_KIVI_WINDOW;
    }
    return w;
}

/* ------------------------------------------------------------ bit figures */

/* 8 * packed bytes per value of one full unit of codec id in role (fp16 window off). */
static double unit_bits(cq_codec_id id, cq_role role, uint32_t D, uint32_t group,
                        const uint8_t *mask) {
    const cq_codec_traits *t = cq_codec_get(id);
    if (!t) return NAN;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    if (group) cfg.group = group;
    cfg.mask = mask;
    cfg.residual = 0;
    if (cq_codec_supports(t, &cfg, role) != CQ_OK) return NAN;
    uint32_t n = cq_codec_unit_tokens(t, &cfg, role);
    if (!n) n = 1;
    return 8.0 * (double)t->packed_bytes(&cfg, role, n) / ((double)n * D);
}

double cq_format_codec_bits(const cq_kv_format *f, uint32_t n_kv_heads, uint32_t head_dim,
                            uint32_t group, const uint8_t *mask) {
    if (f->reference) return 32.0;
    double b[2];
    const cq_codec_id ids[2] = {f->key, f->val};
    for (int r = 0; r < 2; r++) {
        cq_role role = r ? CQ_ROLE_VALUE : CQ_ROLE_KEY;
        /* a codec too wide for one head codes the row of all kv heads (the row layout) */
        uint32_t w = cq_cache_layout_for(ids[r], role, n_kv_heads, head_dim, group) == CQ_LAYOUT_ROW
                         ? n_kv_heads * head_dim : head_dim;
        b[r] = unit_bits(ids[r], role, w, group, w == head_dim ? mask : NULL);
    }
    return 0.5 * (b[0] + b[1]);
}

cq_status cq_eval_bits(const cq_cache *c, cq_bits *out, uint32_t *warnings, cq_err *err) {
    if (!c || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cq_eval_bits: NULL argument");
    memset(out, 0, sizeof *out);
    cq_status st = cq_cache_memory(c, -1, &out->mem);
    if (st) return cq_err_set(err, st, -1, -1, "cache memory: %s", cq_status_desc(st));
    const cq_cache_config *cc = cq_cache_get_config(c);
    const uint32_t D = cc->head_dim, H = cc->n_kv_heads;
    out->cache_bpv = out->mem.bits_per_value;
    out->context = cq_cache_tokens(c, 0);
    /* codec bits: export (payload | scales | sidecar) of the committed tokens of each role */
    double bits[2] = {0, 0}, vals[2] = {0, 0}; /* per role */
    for (uint32_t l = 0; l < cc->n_layers; l++)
        for (int r = 0; r < 2; r++) {
            cq_role role = r ? CQ_ROLE_VALUE : CQ_ROLE_KEY;
            cq_codec_id id = cc->layer_codecs ? (r ? cc->layer_codecs[l].val : cc->layer_codecs[l].key)
                                              : (r ? cc->val_codec : cc->key_codec);
            int row = cq_cache_get_layout(c, l, role) == CQ_LAYOUT_ROW;
            uint32_t nh = row ? 1 : H, width = row ? H * D : D;
            for (uint32_t h = 0; h < nh; h++) {
                uint32_t n = cq_cache_committed(c, l, h, role);
                if (n == 0) {
                    /* nothing committed yet (context <= G): the registry's size of a full unit */
                    const uint8_t *mask = cc->outlier_masks ? cc->outlier_masks + ((size_t)l * H + h) * D : NULL;
                    double b = unit_bits(id, role, width, cc->group, row ? NULL : mask);
                    if (isnan(b)) continue;
                    bits[r] += b * width;
                    vals[r] += width;
                    if (warnings && cq_cache_tokens(c, l) > 0) *warnings |= CQ_WARN_CTX_LE_GROUP;
                    continue;
                }
                size_t len = 0;
                st = cq_cache_export(c, l, h, role, NULL, 0, &len, err);
                if (st) return st;
                bits[r] += 8.0 * (double)len;
                vals[r] += (double)n * width;
            }
        }
    /* the mean of the two roles' figures: K and V hold as many values once committed */
    out->codec_bpv = vals[0] > 0 && vals[1] > 0 ? 0.5 * (bits[0] / vals[0] + bits[1] / vals[1]) : NAN;
    if (warnings && out->cache_bpv > 16.0 && out->codec_bpv < 16.0) *warnings |= CQ_WARN_CACHE_OVER_FP16;
    return CQ_OK;
}
