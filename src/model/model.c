/* SPDX-License-Identifier: MIT */
/*
 * model.c - the model object: loading entry points (file by mmap, or a
 * memory buffer), weight tensor access and dequantization, shape validation,
 * and the llama2.c checkpoint parser. GGUF parsing lives in gguf.c, the
 * forward pass in forward.c, tokenizers in tokenizer.c.
 */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/cq_le.h"
#include "cq_file.h"
#include "cq_fp16.h"
#include "model_internal.h"

/* ------------------------------------------------------------ weight types */

size_t cq_wtype_row_bytes(cq_wtype t, uint32_t cols) {
    switch (t) {
    case CQ_WTYPE_F32: return (size_t)cols * 4;
    case CQ_WTYPE_F16:
    case CQ_WTYPE_BF16: return (size_t)cols * 2;
    case CQ_WTYPE_Q8_0: return cols % 32 ? 0 : (size_t)(cols / 32) * 34;
    }
    return 0;
}

static float bf16_to_f32(uint16_t h) { return cq_f32_from_bits((uint32_t)h << 16); }

void cq_wtensor_row_f32(const cq_wtensor *w, uint32_t r, float *out) {
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * cq_wtype_row_bytes(w->type, w->cols);
    switch (w->type) {
    case CQ_WTYPE_F32: memcpy(out, row, (size_t)w->cols * 4); break;
    case CQ_WTYPE_F16:
        for (uint32_t i = 0; i < w->cols; i++) out[i] = cq_f16_to_f32(cq_get_u16le(row + 2 * i));
        break;
    case CQ_WTYPE_BF16:
        for (uint32_t i = 0; i < w->cols; i++) out[i] = bf16_to_f32(cq_get_u16le(row + 2 * i));
        break;
    case CQ_WTYPE_Q8_0:
        for (uint32_t b = 0; b < w->cols / 32; b++) {
            const uint8_t *blk = row + (size_t)b * 34;
            float d = cq_f16_to_f32(cq_get_u16le(blk));
            for (uint32_t i = 0; i < 32; i++) out[b * 32 + i] = d * (float)(int8_t)blk[2 + i];
        }
        break;
    }
}

/* ------------------------------------------------------------- validation */

static cq_status check_t(const cq_wtensor *t, uint32_t rows, uint32_t cols, const char *name,
                         int layer, cq_err *err) {
    if (!t->data)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "missing tensor %s (layer %d)", name, layer);
    if (t->rows != rows || t->cols != cols)
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1,
                          "tensor %s (layer %d) is [%u][%u], expected [%u][%u]", name, layer,
                          t->rows, t->cols, rows, cols);
    return CQ_OK;
}

cq_status cq_model_validate(const cq_model *m, cq_err *err) {
    const cq_model_config *c = &m->cfg;
    if (!c->dim || !c->hidden_dim || !c->n_layers || !c->n_heads || !c->n_kv_heads ||
        !c->vocab_size || !c->head_dim || !c->max_seq_len)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "a model dimension is zero");
    if (c->n_heads % c->n_kv_heads)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "n_heads %u not a multiple of n_kv_heads %u",
                          c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 || c->head_dim > 512)
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "head_dim %u must be even and <= 512",
                          c->head_dim);
    if (c->dim > (1u << 20) || c->hidden_dim > (1u << 22) || c->n_layers > 4096 ||
        c->n_heads > 4096 || c->vocab_size > (1u << 24) || c->max_seq_len > (1u << 24))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "implausible model dimensions");
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta) || !(c->rms_eps >= 0) ||
        !isfinite(c->rms_eps))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "bad rope theta or rms eps");
    uint32_t qd = c->n_heads * c->head_dim, kd = c->n_kv_heads * c->head_dim;
    cq_status st;
    if ((st = check_t(&m->tok_embd, c->vocab_size, c->dim, "token_embd", -1, err))) return st;
    if ((st = check_t(&m->out_norm, 1, c->dim, "output_norm", -1, err))) return st;
    if ((st = check_t(&m->output, c->vocab_size, c->dim, "output", -1, err))) return st;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        const cq_layer_w *w = &m->layers[l];
        int L = (int)l;
        if ((st = check_t(&w->attn_norm, 1, c->dim, "attn_norm", L, err)) ||
            (st = check_t(&w->wq, qd, c->dim, "attn_q", L, err)) ||
            (st = check_t(&w->wk, kd, c->dim, "attn_k", L, err)) ||
            (st = check_t(&w->wv, kd, c->dim, "attn_v", L, err)) ||
            (st = check_t(&w->wo, c->dim, qd, "attn_output", L, err)) ||
            (st = check_t(&w->ffn_norm, 1, c->dim, "ffn_norm", L, err)) ||
            (st = check_t(&w->w_gate, c->hidden_dim, c->dim, "ffn_gate", L, err)) ||
            (st = check_t(&w->w_up, c->hidden_dim, c->dim, "ffn_up", L, err)) ||
            (st = check_t(&w->w_down, c->dim, c->hidden_dim, "ffn_down", L, err)))
            return st;
        if (c->qkv_bias) {
            if ((st = check_t(&w->bq, 1, qd, "attn_q.bias", L, err)) ||
                (st = check_t(&w->bk, 1, kd, "attn_k.bias", L, err)) ||
                (st = check_t(&w->bv, 1, kd, "attn_v.bias", L, err)))
                return st;
        }
        /* norms and biases are read as plain vectors */
        const cq_wtensor *vecs[5] = {&w->attn_norm, &w->ffn_norm, &w->bq, &w->bk, &w->bv};
        for (int i = 0; i < 5; i++)
            if (vecs[i]->data && vecs[i]->type == CQ_WTYPE_Q8_0 && vecs[i]->cols % 32)
                return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "bad vector tensor in layer %u", l);
    }
    return CQ_OK;
}

/* --------------------------------------------------------------- loading */

void cq_model_blob_release(void *blob, size_t len, int mapped) {
    if (!blob) return;
    if (mapped) munmap(blob, len);
    else free(blob);
}

void cq_model_free(cq_model *m) {
    if (!m) return;
    free(m->layers);
    cq_tokenizer_free(m->tok);
    cq_model_blob_release(m->blob, m->blob_len, m->blob_mapped);
    free(m);
}

const cq_model_config *cq_model_get_config(const cq_model *m) { return m ? &m->cfg : NULL; }
const cq_tokenizer *cq_model_tokenizer(const cq_model *m) { return m ? m->tok : NULL; }
uint64_t cq_model_weight_bytes(const cq_model *m) { return m ? m->weight_bytes : 0; }

static cq_status copy_blob(const void *buf, size_t len, void **out, cq_err *err) {
    *out = NULL;
    if (!buf) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "model buffer is NULL");
    void *b = malloc(len ? len : 1);
    if (!b) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "cannot allocate %zu bytes", len);
    if (len) memcpy(b, buf, len);
    *out = b;
    return CQ_OK;
}

cq_status cq_model_load_llama2c_mem(const void *buf, size_t len, cq_model **out, cq_err *err) {
    if (!out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "out is NULL");
    *out = NULL;
    void *b;
    cq_status st = copy_blob(buf, len, &b, err);
    if (st) return st;
    return cq_model_parse_llama2c(b, len, 0, out, err);
}

cq_status cq_model_load_gguf_mem(const void *buf, size_t len, cq_model **out, cq_err *err) {
    if (!out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "out is NULL");
    *out = NULL;
    void *b;
    cq_status st = copy_blob(buf, len, &b, err);
    if (st) return st;
    return cq_model_parse_gguf(b, len, 0, out, err);
}

cq_status cq_model_load(const char *path, cq_model **out, cq_err *err) {
    if (!path || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "path or out is NULL");
    *out = NULL;
    int fd;
    uint64_t size;
    cq_status st = cq_file_open(path, &fd, &size, err);
    if (st) return st;
    if (size < 8) {
        close(fd);
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: too short to be a model", path);
    }
    if (size > (uint64_t)SIZE_MAX) {
        close(fd);
        return cq_err_set(err, CQ_ERR_OVERFLOW, -1, -1, "%s: too large", path);
    }
    size_t len = (size_t)size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return cq_err_set(err, CQ_ERR_IO, -1, -1, "cannot mmap %s", path);
    if (memcmp(map, "GGUF", 4) == 0) return cq_model_parse_gguf(map, len, 1, out, err);
    return cq_model_parse_llama2c(map, len, 1, out, err);
}

/* ------------------------------------------------------ llama2.c format */

/*
 * llama2.c checkpoint (run.c, version 0): seven int32 (dim, hidden_dim,
 * n_layers, n_heads, n_kv_heads, vocab_size, seq_len; vocab_size < 0 means an
 * untied classifier follows), then fp32 arrays in this order:
 *   token_embedding [vocab][dim], rms_att [L][dim], wq [L][n_heads*hd][dim],
 *   wk [L][n_kv*hd][dim], wv [L][n_kv*hd][dim], wo [L][dim][n_heads*hd],
 *   rms_ffn [L][dim], w1 [L][hidden][dim], w2 [L][dim][hidden], w3 [L][hidden][dim],
 *   rms_final [dim], freq_cis_real and _imag [seq_len][hd/2] each (unused),
 *   wcls [vocab][dim] when untied.
 * head_dim = dim / n_heads, RoPE interleaved with theta 10000, eps 1e-5.
 */
cq_status cq_model_parse_llama2c(void *blob, size_t len, int mapped, cq_model **out,
                                 cq_err *err) {
    *out = NULL;
    cq_status st = CQ_OK;
    cq_model *m = calloc(1, sizeof *m);
    if (!m) {
        cq_model_blob_release(blob, len, mapped);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    m->blob = blob;
    m->blob_len = len;
    m->blob_mapped = mapped;
    if (len < 28) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "llama2.c checkpoint: %zu bytes, header needs 28",
                        len);
        goto fail;
    }
    int32_t h[7];
    memcpy(h, blob, sizeof h);
    for (int i = 0; i < 7; i++)
        if (i != 5 && h[i] <= 0) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                            "llama2.c checkpoint: header field %d is %d (not a llama2.c file?)", i,
                            h[i]);
            goto fail;
        }
    if (h[5] == 0 || h[5] == INT32_MIN) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "llama2.c checkpoint: vocab_size %d", h[5]);
        goto fail;
    }
    cq_model_config *c = &m->cfg;
    strcpy(c->arch, "llama");
    c->dim = (uint32_t)h[0];
    c->hidden_dim = (uint32_t)h[1];
    c->n_layers = (uint32_t)h[2];
    c->n_heads = (uint32_t)h[3];
    c->n_kv_heads = (uint32_t)h[4];
    c->tied_output = h[5] > 0;
    c->vocab_size = (uint32_t)(h[5] > 0 ? h[5] : -h[5]);
    c->max_seq_len = (uint32_t)h[6];
    c->rope_theta = 10000.0f;
    c->rms_eps = 1e-5f;
    c->rope = CQ_ROPE_INTERLEAVED;
    if (c->dim % c->n_heads || c->n_kv_heads > c->n_heads) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                        "llama2.c checkpoint: dim %u, n_heads %u, n_kv_heads %u inconsistent",
                        c->dim, c->n_heads, c->n_kv_heads);
        goto fail;
    }
    c->head_dim = c->dim / c->n_heads;
    if (c->dim > (1u << 20) || c->hidden_dim > (1u << 22) || c->n_layers > 4096 ||
        c->vocab_size > (1u << 24) || c->max_seq_len > (1u << 24)) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "llama2.c checkpoint: implausible dimensions");
        goto fail;
    }
    /* all counts below fit in uint64 comfortably given the caps above */
    uint64_t D = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    uint64_t qd = (uint64_t)c->n_heads * c->head_dim, kd = (uint64_t)c->n_kv_heads * c->head_dim;
    uint64_t per_layer = D + qd * D + 2 * kd * D + D * qd + D + 3 * H * D;
    uint64_t floats = V * D + L * per_layer + D + (uint64_t)c->max_seq_len * c->head_dim +
                      (c->tied_output ? 0 : V * D);
    uint64_t need = 28 + 4 * floats;
    if (need != (uint64_t)len) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                        "llama2.c checkpoint: header implies %llu bytes, file has %zu%s",
                        (unsigned long long)need, len, need > len ? " (truncated)" : "");
        goto fail;
    }
    m->layers = calloc(c->n_layers, sizeof *m->layers);
    if (!m->layers) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto fail;
    }
    const float *p = (const float *)((const uint8_t *)blob + 28);
#define TAKE(t, r, cl)                                                                             \
    do {                                                                                           \
        (t).type = CQ_WTYPE_F32;                                                                   \
        (t).rows = (uint32_t)(r);                                                                  \
        (t).cols = (uint32_t)(cl);                                                                 \
        (t).data = p;                                                                              \
        p += (uint64_t)(r) * (cl);                                                                 \
    } while (0)
    TAKE(m->tok_embd, V, D);
    for (uint32_t l = 0; l < L; l++) TAKE(m->layers[l].attn_norm, 1, D);
    for (uint32_t l = 0; l < L; l++) TAKE(m->layers[l].wq, qd, D);
    for (uint32_t l = 0; l < L; l++) TAKE(m->layers[l].wk, kd, D);
    for (uint32_t l = 0; l < L; l++) TAKE(m->layers[l].wv, kd, D);
    for (uint32_t l = 0; l < L; l++) TAKE(m->layers[l].wo, D, qd);
    for (uint32_t l = 0; l < L; l++) TAKE(m->layers[l].ffn_norm, 1, D);
    for (uint32_t l = 0; l < L; l++) TAKE(m->layers[l].w_gate, H, D);
    for (uint32_t l = 0; l < L; l++) TAKE(m->layers[l].w_down, D, H);
    for (uint32_t l = 0; l < L; l++) TAKE(m->layers[l].w_up, H, D);
    TAKE(m->out_norm, 1, D);
    p += (uint64_t)c->max_seq_len * c->head_dim; /* freq_cis_real + freq_cis_imag */
    if (c->tied_output) m->output = m->tok_embd;
    else TAKE(m->output, V, D);
#undef TAKE
    m->weight_bytes = 4 * floats;
    /* non-finite weights would poison every later comparison: refuse them */
    for (uint64_t i = 0; i < floats; i++) {
        float v;
        memcpy(&v, (const uint8_t *)blob + 28 + 4 * i, 4);
        if (!isfinite(v)) {
            st = cq_err_set(err, CQ_ERR_NONFINITE, -1, -1,
                            "llama2.c checkpoint: non-finite weight at float %llu",
                            (unsigned long long)i);
            goto fail;
        }
    }
    if ((st = cq_model_validate(m, err))) goto fail;
    *out = m;
    return CQ_OK;
fail:
    cq_model_free(m);
    return st;
}
