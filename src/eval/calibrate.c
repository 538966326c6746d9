/* SPDX-License-Identifier: MIT */
/*
 * calibrate.c - static key-outlier calibration (EVAL.md section 4): running
 * max |K| per (layer, kv head, channel), overall and per batch; top-k
 * selection, concentration, the batch-stability gate, and the two output
 * formats (text mask, ROM hex image). The model runtime feeds it keys.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"
#include "cq_vectors.h"

struct cq_calib {
    uint32_t L, H, D, B;
    float *mx;       /* [B+1][L][H][D]; slot B is all data */
    uint64_t *toks;  /* [B+1] tokens observed (per layer 0) */
};

cq_status cq_calib_create(uint32_t n_layers, uint32_t n_kv_heads, uint32_t head_dim,
                          uint32_t n_batches, cq_calib **out, cq_err *err) {
    cq_err_clear(err);
    if (!out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    *out = NULL;
    if (!n_layers || !n_kv_heads || !head_dim || !n_batches || n_layers > 4096 || n_kv_heads > 4096 ||
        head_dim > 4096 || n_batches > 4096)
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1, "calibration shape %u x %u x %u, %u batches is invalid",
                          n_layers, n_kv_heads, head_dim, n_batches);
    cq_calib *c = calloc(1, sizeof *c);
    size_t n = (size_t)(n_batches + 1) * n_layers * n_kv_heads * head_dim;
    if (c) {
        c->mx = calloc(n, sizeof *c->mx);
        c->toks = calloc(n_batches + 1, sizeof *c->toks);
    }
    if (!c || !c->mx || !c->toks) {
        cq_calib_free(c);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    c->L = n_layers;
    c->H = n_kv_heads;
    c->D = head_dim;
    c->B = n_batches;
    *out = c;
    return CQ_OK;
}

void cq_calib_free(cq_calib *c) {
    if (!c) return;
    free(c->mx);
    free(c->toks);
    free(c);
}

static float *slot(const cq_calib *c, uint32_t b, uint32_t l, uint32_t h) {
    return c->mx + (((size_t)b * c->L + l) * c->H + h) * c->D;
}

cq_status cq_calib_observe(cq_calib *c, uint32_t batch, uint32_t layer, const float *k, uint32_t n) {
    if (!c || (n && !k)) return CQ_ERR_NULL;
    if (batch >= c->B || layer >= c->L) return CQ_ERR_RANGE;
    size_t total = (size_t)n * c->H * c->D;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(k[i])) return CQ_ERR_NONFINITE; /* validate first: all or nothing */
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < c->H; h++) {
            const float *row = k + ((size_t)t * c->H + h) * c->D;
            float *mb = slot(c, batch, layer, h), *ma = slot(c, c->B, layer, h);
            for (uint32_t d = 0; d < c->D; d++) {
                float a = fabsf(row[d]);
                if (a > mb[d]) mb[d] = a;
                if (a > ma[d]) ma[d] = a;
            }
        }
    if (layer == 0) {
        c->toks[batch] += n;
        c->toks[c->B] += n;
    }
    return CQ_OK;
}

uint64_t cq_calib_tokens(const cq_calib *c, int32_t batch) {
    if (!c) return 0;
    return batch < 0 ? c->toks[c->B] : (uint32_t)batch < c->B ? c->toks[batch] : 0;
}

/* top-k of one channel-max row: largest first, ties to the lower index; then ascending */
static void topk_row(const float *m, uint32_t D, uint32_t k, uint16_t *out) {
    for (uint32_t j = 0; j < k; j++) {
        int32_t best = -1;
        for (uint32_t d = 0; d < D; d++) {
            int used = 0;
            for (uint32_t i = 0; i < j; i++) used |= out[i] == d;
            if (!used && (best < 0 || m[d] > m[best])) best = (int32_t)d;
        }
        out[j] = (uint16_t)best;
    }
    for (uint32_t i = 1; i < k; i++) /* insertion sort ascending */
        for (uint32_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
            uint16_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
}

cq_status cq_calib_topk(const cq_calib *c, int32_t batch, uint32_t k, uint16_t *chan) {
    if (!c || !chan) return CQ_ERR_NULL;
    if (k == 0 || k >= c->D) return CQ_ERR_OUTLIERS;
    if (batch >= (int32_t)c->B) return CQ_ERR_RANGE;
    uint32_t b = batch < 0 ? c->B : (uint32_t)batch;
    for (uint32_t l = 0; l < c->L; l++)
        for (uint32_t h = 0; h < c->H; h++)
            topk_row(slot(c, b, l, h), c->D, k, chan + ((size_t)l * c->H + h) * k);
    return CQ_OK;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

cq_status cq_calib_concentration(const cq_calib *c, double *conc) {
    if (!c || !conc) return CQ_ERR_NULL;
    float *tmp = malloc(c->D * sizeof *tmp);
    if (!tmp) return CQ_ERR_NOMEM;
    for (uint32_t l = 0; l < c->L; l++)
        for (uint32_t h = 0; h < c->H; h++) {
            memcpy(tmp, slot(c, c->B, l, h), c->D * sizeof *tmp);
            qsort(tmp, c->D, sizeof *tmp, cmp_float);
            double med = c->D % 2 ? tmp[c->D / 2] : 0.5 * ((double)tmp[c->D / 2 - 1] + tmp[c->D / 2]);
            conc[(size_t)l * c->H + h] = med > 0 ? tmp[c->D - 1] / med : (tmp[c->D - 1] > 0 ? INFINITY : 1.0);
        }
    free(tmp);
    return CQ_OK;
}

cq_status cq_calib_stability(const cq_calib *c, uint32_t k, double *per_lh, double *mean_all,
                             double *mean_layer0, double *mean_rest) {
    if (!c) return CQ_ERR_NULL;
    if (k == 0 || k >= c->D) return CQ_ERR_OUTLIERS;
    size_t nlh = (size_t)c->L * c->H;
    uint16_t *all = malloc(nlh * k * 2), *bt = malloc(nlh * k * 2);
    double *ov = calloc(nlh, sizeof *ov);
    if (!all || !bt || !ov) {
        free(all);
        free(bt);
        free(ov);
        return CQ_ERR_NOMEM;
    }
    cq_calib_topk(c, -1, k, all);
    uint32_t used_batches = 0;
    for (uint32_t b = 0; b < c->B; b++) {
        if (!c->toks[b]) continue; /* an empty batch has no opinion */
        used_batches++;
        cq_calib_topk(c, (int32_t)b, k, bt);
        for (size_t i = 0; i < nlh; i++) {
            uint32_t inter = 0;
            for (uint32_t x = 0; x < k; x++)
                for (uint32_t y = 0; y < k; y++) inter += bt[i * k + x] == all[i * k + y];
            ov[i] += (double)inter / k;
        }
    }
    double s_all = 0, s0 = 0, sr = 0;
    for (size_t i = 0; i < nlh; i++) {
        ov[i] = used_batches ? ov[i] / used_batches : NAN;
        if (per_lh) per_lh[i] = ov[i];
        s_all += ov[i];
        if (i < c->H) s0 += ov[i];
        else sr += ov[i];
    }
    if (mean_all) *mean_all = s_all / (double)nlh;
    if (mean_layer0) *mean_layer0 = s0 / c->H;
    if (mean_rest) *mean_rest = c->L > 1 ? sr / ((double)nlh - c->H) : NAN;
    free(all);
    free(bt);
    free(ov);
    return used_batches ? CQ_OK : CQ_ERR_STATE;
}

/* The top-k channels of every (layer, head), [L][H][k], in a new buffer (*out; free it). */
static cq_status all_topk(const cq_calib *c, uint32_t k, uint16_t **out, cq_err *err) {
    *out = malloc((size_t)c->L * c->H * k * 2 + 2);
    if (!*out) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_status st = cq_calib_topk(c, -1, k, *out);
    if (st) {
        free(*out);
        *out = NULL;
        return cq_err_set(err, st, -1, -1, "k=%u is invalid for head_dim %u", k, c->D);
    }
    return CQ_OK;
}

cq_status cq_calib_write_mask(const cq_calib *c, uint32_t k, const char *path, const char *title,
                              cq_err *err) {
    if (!c || !path) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    size_t nlh = (size_t)c->L * c->H;
    uint16_t *ch;
    cq_status st = all_topk(c, k, &ch, err);
    if (st) return st;
    size_t cap = 512 + nlh * (24 + 6 * (size_t)k);
    char *buf = malloc(cap);
    if (!buf) {
        free(ch);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "# static key outlier-channel mask (top-%u)%s%s\n", k,
                          title ? " for " : "", title ? title : "");
    o += (size_t)snprintf(buf + o, cap - o,
                          "# layers %u kv_heads %u head_dim %u k %u; calibrated on %llu tokens\n", c->L,
                          c->H, c->D, k, (unsigned long long)c->toks[c->B]);
    o += (size_t)snprintf(buf + o, cap - o,
                          "# columns: layer kv_head channel_0 .. channel_{k-1} (ascending)\n");
    for (uint32_t l = 0; l < c->L; l++)
        for (uint32_t h = 0; h < c->H; h++) {
            o += (size_t)snprintf(buf + o, cap - o, "%u %u", l, h);
            for (uint32_t j = 0; j < k; j++)
                o += (size_t)snprintf(buf + o, cap - o, " %u", ch[((size_t)l * c->H + h) * k + j]);
            o += (size_t)snprintf(buf + o, cap - o, "\n");
        }
    st = cq_write_file_atomic(path, buf, o, err);
    free(ch);
    free(buf);
    return st;
}

cq_status cq_calib_write_rom(const cq_calib *c, uint32_t k, const char *path, cq_err *err) {
    if (!c || !path) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    size_t nlh = (size_t)c->L * c->H, digits = (c->D + 3) / 4;
    uint16_t *ch;
    cq_status st = all_topk(c, k, &ch, err);
    if (st) return st;
    char *buf = malloc(nlh * (digits + 1) + 1);
    if (!buf) {
        free(ch);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    size_t o = 0;
    for (size_t i = 0; i < nlh; i++) {
        uint8_t nib[1024] = {0};
        for (uint32_t j = 0; j < k; j++) {
            uint32_t cch = ch[i * k + j];
            nib[cch / 4] |= (uint8_t)(1u << (cch % 4));
        }
        for (size_t d = digits; d-- > 0;) buf[o++] = "0123456789abcdef"[nib[d]];
        buf[o++] = '\n';
    }
    st = cq_write_file_atomic(path, buf, o, err);
    free(ch);
    free(buf);
    return st;
}
