/* SPDX-License-Identifier: MIT */
/*
 * gguf.c - the GGUF v3 reader (little-endian): header, metadata key/values,
 * tensor infos, aligned data section; builds a llama or qwen2 model over the
 * tensors in place (F32, F16, BF16, Q8_0) and its tokenizer (SentencePiece
 * "llama" or byte-level BPE "gpt2" vocabularies).
 *
 * Every length and offset is checked against the bytes that remain before it
 * is used, and every product against overflow: a truncated or inconsistent
 * file is CQ_ERR_FORMAT with a message, never a crash. Nothing here writes GGUF
 * (the tests carry their own writer).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cq_le.h"
#include "model_internal.h"

enum {
    GV_U8 = 0, GV_I8 = 1, GV_U16 = 2, GV_I16 = 3, GV_U32 = 4, GV_I32 = 5, GV_F32 = 6,
    GV_BOOL = 7, GV_STR = 8, GV_ARR = 9, GV_U64 = 10, GV_I64 = 11, GV_F64 = 12,
};
enum { GT_F32 = 0, GT_F16 = 1, GT_Q8_0 = 8, GT_BF16 = 30 };

#define MAX_KV 100000u
#define MAX_TENSORS 1000000u

typedef struct rd {
    const uint8_t *b;
    size_t len, pos;
    cq_err *err;
} rd;

static cq_status need(rd *r, uint64_t n, const char *what) {
    if (n > r->len - r->pos)
        return cq_err_set(r->err, CQ_ERR_FORMAT, -1, -1,
                          "gguf: truncated reading %s at byte %zu (%llu bytes needed, %zu left)",
                          what, r->pos, (unsigned long long)n, r->len - r->pos);
    return CQ_OK;
}
static cq_status rd_u32(rd *r, uint32_t *v, const char *what) {
    cq_status st = need(r, 4, what);
    if (st) return st;
    *v = cq_get_u32le(r->b + r->pos);
    r->pos += 4;
    return CQ_OK;
}
static cq_status rd_u64(rd *r, uint64_t *v, const char *what) {
    cq_status st = need(r, 8, what);
    if (st) return st;
    *v = cq_get_u64le(r->b + r->pos);
    r->pos += 8;
    return CQ_OK;
}
/* A gguf string: u64 length + bytes (not terminated). */
static cq_status rd_str(rd *r, const char **s, uint64_t *n, const char *what) {
    cq_status st = rd_u64(r, n, what);
    if (st) return st;
    if ((st = need(r, *n, what))) return st;
    *s = (const char *)r->b + r->pos;
    r->pos += (size_t)*n;
    return CQ_OK;
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case GV_U8: case GV_I8: case GV_BOOL: return 1;
    case GV_U16: case GV_I16: return 2;
    case GV_U32: case GV_I32: case GV_F32: return 4;
    case GV_U64: case GV_I64: case GV_F64: return 8;
    }
    return 0;
}

/* One metadata entry, values left in place. */
typedef struct kv {
    const char *key;
    uint64_t key_len;
    uint32_t type;
    size_t val_pos;    /* scalar / string position, or first element of an array */
    uint32_t arr_type; /* GV_ARR only */
    uint64_t arr_n;
} kv;

static cq_status skip_value(rd *r, uint32_t type, int depth) {
    cq_status st;
    size_t sz = scalar_size(type);
    if (sz) {
        if ((st = need(r, sz, "metadata value"))) return st;
        r->pos += sz;
        return CQ_OK;
    }
    if (type == GV_STR) {
        const char *s;
        uint64_t n;
        return rd_str(r, &s, &n, "metadata string");
    }
    if (type == GV_ARR) {
        if (depth > 2) return cq_err_set(r->err, CQ_ERR_FORMAT, -1, -1, "gguf: nested arrays");
        uint32_t et;
        uint64_t n;
        if ((st = rd_u32(r, &et, "array type")) || (st = rd_u64(r, &n, "array length"))) return st;
        size_t esz = scalar_size(et);
        if (esz) {
            if (n > (r->len - r->pos) / esz) return need(r, (uint64_t)-1, "array data");
            r->pos += (size_t)(n * esz);
            return CQ_OK;
        }
        if (et != GV_STR && et != GV_ARR)
            return cq_err_set(r->err, CQ_ERR_FORMAT, -1, -1, "gguf: array element type %u", et);
        /* each element takes at least 8 bytes: bound n before looping */
        if (n > (r->len - r->pos) / 8) return need(r, (uint64_t)-1, "array data");
        for (uint64_t i = 0; i < n; i++)
            if ((st = skip_value(r, et, depth + 1))) return st;
        return CQ_OK;
    }
    return cq_err_set(r->err, CQ_ERR_FORMAT, -1, -1, "gguf: unknown value type %u", type);
}

typedef struct gguf {
    kv *kvs;
    uint64_t n_kv;
    const uint8_t *b;
    size_t len;
} gguf;

static const kv *find_kv(const gguf *g, const char *key) {
    size_t kl = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key_len == kl && memcmp(g->kvs[i].key, key, kl) == 0) return &g->kvs[i];
    return NULL;
}

/* Read an integer-valued key of any integer type. */
static int kv_uint(const gguf *g, const char *key, uint64_t *v) {
    const kv *e = find_kv(g, key);
    if (!e) return 0;
    const uint8_t *p = g->b + e->val_pos;
    switch (e->type) {
    case GV_U8: *v = p[0]; return 1;
    case GV_U16: *v = cq_get_u16le(p); return 1;
    case GV_U32: *v = cq_get_u32le(p); return 1;
    case GV_U64: *v = cq_get_u64le(p); return 1;
    case GV_I8: { int8_t x = (int8_t)p[0]; if (x < 0) return -1; *v = (uint64_t)x; return 1; }
    case GV_I16: { int16_t x = (int16_t)cq_get_u16le(p); if (x < 0) return -1; *v = (uint64_t)x; return 1; }
    case GV_I32: { int32_t x = (int32_t)cq_get_u32le(p); if (x < 0) return -1; *v = (uint64_t)x; return 1; }
    case GV_I64: { int64_t x = (int64_t)cq_get_u64le(p); if (x < 0) return -1; *v = (uint64_t)x; return 1; }
    case GV_BOOL: *v = p[0] != 0; return 1;
    }
    return -1;
}
static int kv_float(const gguf *g, const char *key, double *v) {
    const kv *e = find_kv(g, key);
    if (!e) return 0;
    const uint8_t *p = g->b + e->val_pos;
    if (e->type == GV_F32) { uint32_t b = cq_get_u32le(p); float x; memcpy(&x, &b, 4); *v = x; return 1; }
    if (e->type == GV_F64) { uint64_t b = cq_get_u64le(p); memcpy(v, &b, 8); return 1; }
    uint64_t u;
    int r = kv_uint(g, key, &u);
    if (r == 1) *v = (double)u;
    return r;
}
/* String value: pointer into the file and its length. */
static int kv_str(const gguf *g, const char *key, const char **s, uint64_t *n) {
    const kv *e = find_kv(g, key);
    if (!e) return 0;
    if (e->type != GV_STR) return -1;
    *n = cq_get_u64le(g->b + e->val_pos);
    *s = (const char *)g->b + e->val_pos + 8;
    return 1;
}
static int str_is(const char *s, uint64_t n, const char *lit) {
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

typedef struct tinfo {
    const char *name;
    uint64_t name_len;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t offset;
} tinfo;

static const tinfo *find_tensor(const tinfo *t, uint64_t n, const char *name) {
    size_t kl = strlen(name);
    for (uint64_t i = 0; i < n; i++)
        if (t[i].name_len == kl && memcmp(t[i].name, name, kl) == 0) return &t[i];
    return NULL;
}

/* Bind tensor `name` to w with the expected shape [rows][cols] (ne = {cols, rows}). */
static cq_status bind(const tinfo *ti, uint64_t n_t, const uint8_t *data, const char *name,
                      uint32_t rows, uint32_t cols, int optional, cq_wtensor *w, cq_err *err) {
    const tinfo *t = find_tensor(ti, n_t, name);
    if (!t) {
        if (optional) return CQ_OK;
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: missing tensor %s", name);
    }
    uint64_t r = 1, c = t->ne[0];
    for (uint32_t d = 1; d < t->n_dims; d++) r *= t->ne[d]; /* bounded at parse time */
    if (c != cols || r != rows)
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1,
                          "gguf: tensor %s is [%llu][%llu], expected [%u][%u]", name,
                          (unsigned long long)r, (unsigned long long)c, rows, cols);
    switch (t->type) {
    case GT_F32: w->type = CQ_WTYPE_F32; break;
    case GT_F16: w->type = CQ_WTYPE_F16; break;
    case GT_BF16: w->type = CQ_WTYPE_BF16; break;
    case GT_Q8_0: w->type = CQ_WTYPE_Q8_0; break;
    default: return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "gguf: tensor %s has type %u", name, t->type);
    }
    w->rows = rows;
    w->cols = cols;
    w->data = data + t->offset;
    return CQ_OK;
}

static cq_status build_tokenizer(const gguf *g, uint32_t n_vocab_model, cq_tokenizer **out,
                                 cq_err *err);

cq_status cq_model_parse_gguf(void *blob, size_t len, int mapped, cq_model **out, cq_err *err) {
    *out = NULL;
    cq_status st = CQ_OK;
    gguf g = {0};
    tinfo *ti = NULL;
    cq_model *m = calloc(1, sizeof *m);
    if (!m) {
        cq_model_blob_release(blob, len, mapped);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    m->blob = blob;
    m->blob_len = len;
    m->blob_mapped = mapped;
    rd r = {blob, len, 0, err};
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    if ((st = rd_u32(&r, &magic, "magic"))) goto fail;
    if (memcmp(&magic, "GGUF", 4) != 0) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: bad magic");
        goto fail;
    }
    if ((st = rd_u32(&r, &version, "version"))) goto fail;
    if (version != 3 && version != 2) {
        st = cq_err_set(err, CQ_ERR_VERSION, -1, -1, "gguf: version %u (3 supported)", version);
        goto fail;
    }
    if ((st = rd_u64(&r, &n_tensors, "tensor count")) || (st = rd_u64(&r, &n_kv, "kv count")))
        goto fail;
    if (n_kv > MAX_KV || n_tensors > MAX_TENSORS || n_kv > len / 12 || n_tensors > len / 24) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: %llu tensors / %llu keys: implausible",
                        (unsigned long long)n_tensors, (unsigned long long)n_kv);
        goto fail;
    }
    g.b = blob;
    g.len = len;
    g.kvs = calloc(n_kv ? n_kv : 1, sizeof *g.kvs);
    ti = calloc(n_tensors ? n_tensors : 1, sizeof *ti);
    if (!g.kvs || !ti) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        kv *e = &g.kvs[i];
        if ((st = rd_str(&r, &e->key, &e->key_len, "metadata key")) ||
            (st = rd_u32(&r, &e->type, "metadata type")))
            goto fail;
        e->val_pos = r.pos;
        if (e->type == GV_ARR) {
            if ((st = need(&r, 12, "array header"))) goto fail;
            e->arr_type = cq_get_u32le(r.b + r.pos);
            e->arr_n = cq_get_u64le(r.b + r.pos + 4);
            e->val_pos = r.pos + 12; /* skip_value below re-reads the header */
        }
        g.n_kv = i + 1;
        if ((st = skip_value(&r, e->type, 0))) goto fail;
    }
    uint64_t align = 32;
    if (kv_uint(&g, "general.alignment", &align) < 0 || align == 0 || (align & (align - 1)) ||
        align > 65536) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: bad general.alignment");
        goto fail;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        tinfo *t = &ti[i];
        if ((st = rd_str(&r, &t->name, &t->name_len, "tensor name")) ||
            (st = rd_u32(&r, &t->n_dims, "tensor dims")))
            goto fail;
        if (t->n_dims == 0 || t->n_dims > 4) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: tensor %llu has %u dims",
                            (unsigned long long)i, t->n_dims);
            goto fail;
        }
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((st = rd_u64(&r, &t->ne[d], "tensor shape"))) goto fail;
        if ((st = rd_u32(&r, &t->type, "tensor type")) || (st = rd_u64(&r, &t->offset, "tensor offset")))
            goto fail;
    }
    /* data section: aligned after the infos */
    uint64_t data_start = (r.pos + align - 1) / align * align;
    if (data_start > len) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: no data section (truncated)");
        goto fail;
    }
    const uint8_t *data = (const uint8_t *)blob + data_start;
    uint64_t data_len = len - data_start;
    for (uint64_t i = 0; i < n_tensors; i++) {
        tinfo *t = &ti[i];
        uint64_t count = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (t->ne[d] == 0 || t->ne[d] > (1ull << 40) || count > (1ull << 40) / t->ne[d]) {
                st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: tensor %.*s has a bad shape",
                                (int)(t->name_len > 64 ? 64 : t->name_len), t->name);
                goto fail;
            }
            count *= t->ne[d];
        }
        uint64_t bytes;
        switch (t->type) {
        case GT_F32: bytes = count * 4; break;
        case GT_F16: case GT_BF16: bytes = count * 2; break;
        case GT_Q8_0:
            if (t->ne[0] % 32) {
                st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: Q8_0 tensor row not a multiple of 32");
                goto fail;
            }
            bytes = count / 32 * 34;
            break;
        default: bytes = 0; /* unsupported types are refused only if used (bind) */
        }
        if (t->offset % align || t->offset > data_len || bytes > data_len - t->offset) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                            "gguf: tensor %.*s (offset %llu, %llu bytes) outside the data section "
                            "of %llu bytes (truncated?)",
                            (int)(t->name_len > 64 ? 64 : t->name_len), t->name,
                            (unsigned long long)t->offset, (unsigned long long)bytes,
                            (unsigned long long)data_len);
            goto fail;
        }
        m->weight_bytes += bytes;
    }
    /* ---- hyperparameters */
    const char *arch;
    uint64_t arch_n;
    if (kv_str(&g, "general.architecture", &arch, &arch_n) != 1) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: no general.architecture");
        goto fail;
    }
    cq_model_config *c = &m->cfg;
    if (str_is(arch, arch_n, "llama")) {
        strcpy(c->arch, "llama");
        c->rope = CQ_ROPE_INTERLEAVED;
    } else if (str_is(arch, arch_n, "qwen2")) {
        strcpy(c->arch, "qwen2");
        c->rope = CQ_ROPE_HALF;
        c->qkv_bias = 1;
    } else {
        st = cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "gguf: architecture '%.*s' (llama, qwen2)",
                        (int)(arch_n > 32 ? 32 : arch_n), arch);
        goto fail;
    }
    char key[96];
    struct { const char *suffix; uint32_t *dst; int required; } ukeys[] = {
        {"embedding_length", &c->dim, 1},      {"feed_forward_length", &c->hidden_dim, 1},
        {"block_count", &c->n_layers, 1},      {"attention.head_count", &c->n_heads, 1},
        {"attention.head_count_kv", &c->n_kv_heads, 0}, {"context_length", &c->max_seq_len, 1},
        {"attention.key_length", &c->head_dim, 0},
    };
    for (size_t i = 0; i < sizeof ukeys / sizeof ukeys[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", c->arch, ukeys[i].suffix);
        uint64_t v;
        int got = kv_uint(&g, key, &v);
        if (got < 0 || (got == 1 && (v == 0 || v > (1u << 24)))) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: bad value of %s", key);
            goto fail;
        }
        if (got == 0 && ukeys[i].required) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: missing %s", key);
            goto fail;
        }
        if (got == 1) *ukeys[i].dst = (uint32_t)v;
    }
    if (!c->n_kv_heads) c->n_kv_heads = c->n_heads;
    if (!c->head_dim) {
        if (c->dim % c->n_heads) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: embedding_length %u not a multiple of head_count %u", c->dim, c->n_heads);
            goto fail;
        }
        c->head_dim = c->dim / c->n_heads;
    }
    double f;
    snprintf(key, sizeof key, "%s.rope.freq_base", c->arch);
    c->rope_theta = kv_float(&g, key, &f) == 1 ? (float)f : 10000.0f;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", c->arch);
    c->rms_eps = kv_float(&g, key, &f) == 1 ? (float)f : 1e-6f;
    snprintf(key, sizeof key, "%s.rope.dimension_count", c->arch);
    uint64_t rdim;
    if (kv_uint(&g, key, &rdim) == 1 && rdim != c->head_dim) {
        st = cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "gguf: partial RoPE (%llu of %u dims)",
                        (unsigned long long)rdim, c->head_dim);
        goto fail;
    }
    if (c->n_layers > 4096 || c->n_heads > 4096 || c->n_kv_heads > c->n_heads) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: implausible head counts");
        goto fail;
    }
    /* vocab from the embedding tensor */
    const tinfo *te = find_tensor(ti, n_tensors, "token_embd.weight");
    if (!te || te->n_dims != 2 || te->ne[1] > (1u << 24)) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: missing or bad token_embd.weight");
        goto fail;
    }
    c->vocab_size = (uint32_t)te->ne[1];
    uint32_t qd = c->n_heads * c->head_dim, kd = c->n_kv_heads * c->head_dim;
    m->layers = calloc(c->n_layers, sizeof *m->layers);
    if (!m->layers) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto fail;
    }
    if ((st = bind(ti, n_tensors, data, "token_embd.weight", c->vocab_size, c->dim, 0, &m->tok_embd, err)) ||
        (st = bind(ti, n_tensors, data, "output_norm.weight", 1, c->dim, 0, &m->out_norm, err)) ||
        (st = bind(ti, n_tensors, data, "output.weight", c->vocab_size, c->dim, 1, &m->output, err)))
        goto fail;
    if (!m->output.data) {
        m->output = m->tok_embd;
        c->tied_output = 1;
    }
    for (uint32_t l = 0; l < c->n_layers; l++) {
        cq_layer_w *w = &m->layers[l];
        struct { const char *n; uint32_t rows, cols; int opt; cq_wtensor *w; } b[] = {
            {"attn_norm.weight", 1, c->dim, 0, &w->attn_norm},
            {"attn_q.weight", qd, c->dim, 0, &w->wq},
            {"attn_k.weight", kd, c->dim, 0, &w->wk},
            {"attn_v.weight", kd, c->dim, 0, &w->wv},
            {"attn_output.weight", c->dim, qd, 0, &w->wo},
            {"attn_q.bias", 1, qd, !c->qkv_bias, &w->bq},
            {"attn_k.bias", 1, kd, !c->qkv_bias, &w->bk},
            {"attn_v.bias", 1, kd, !c->qkv_bias, &w->bv},
            {"ffn_norm.weight", 1, c->dim, 0, &w->ffn_norm},
            {"ffn_gate.weight", c->hidden_dim, c->dim, 0, &w->w_gate},
            {"ffn_up.weight", c->hidden_dim, c->dim, 0, &w->w_up},
            {"ffn_down.weight", c->dim, c->hidden_dim, 0, &w->w_down},
        };
        for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
            snprintf(key, sizeof key, "blk.%u.%s", l, b[i].n);
            if ((st = bind(ti, n_tensors, data, key, b[i].rows, b[i].cols, b[i].opt, b[i].w, err)))
                goto fail;
        }
        if (w->bq.data && (w->bq.type == CQ_WTYPE_Q8_0)) {
            st = cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "gguf: quantized bias");
            goto fail;
        }
    }
    if ((st = cq_model_validate(m, err))) goto fail;
    if (find_kv(&g, "tokenizer.ggml.model") &&
        (st = build_tokenizer(&g, c->vocab_size, &m->tok, err)))
        goto fail;
    free(g.kvs);
    free(ti);
    *out = m;
    return CQ_OK;
fail:
    free(g.kvs);
    free(ti);
    cq_model_free(m);
    return st;
}

/* ------------------------------------------------------------ tokenizer */

/* Read array key of strings into (pointer, length) lists; elements validated by skip_value. */
static cq_status str_array(const gguf *g, const char *key, const char ***s, uint32_t **l,
                           uint64_t *n, cq_err *err) {
    const kv *e = find_kv(g, key);
    *s = NULL;
    *l = NULL;
    *n = 0;
    if (!e) return CQ_OK;
    if (e->type != GV_ARR || e->arr_type != GV_STR || e->arr_n > (1u << 24))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: %s is not an array of strings", key);
    *s = malloc((e->arr_n ? e->arr_n : 1) * sizeof **s);
    *l = malloc((e->arr_n ? e->arr_n : 1) * sizeof **l);
    if (!*s || !*l) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    size_t p = e->val_pos;
    for (uint64_t i = 0; i < e->arr_n; i++) { /* bounds already verified by skip_value */
        uint64_t sl;
        sl = cq_get_u64le(g->b + p);
        if (sl > 0xFFFFFFu)
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: %s[%llu] too long", key,
                              (unsigned long long)i);
        (*s)[i] = (const char *)g->b + p + 8;
        (*l)[i] = (uint32_t)sl;
        p += 8 + (size_t)sl;
    }
    *n = e->arr_n;
    return CQ_OK;
}

static cq_status build_tokenizer(const gguf *g, uint32_t n_vocab_model, cq_tokenizer **out,
                                 cq_err *err) {
    const char *model;
    uint64_t model_n;
    if (kv_str(g, "tokenizer.ggml.model", &model, &model_n) != 1)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: tokenizer.ggml.model not a string");
    cq_tok_kind kind;
    if (str_is(model, model_n, "llama")) kind = CQ_TOK_SPM;
    else if (str_is(model, model_n, "gpt2")) kind = CQ_TOK_BPE;
    else
        return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "gguf: tokenizer '%.*s' (llama, gpt2)",
                          (int)(model_n > 32 ? 32 : model_n), model);
    const char **toks = NULL, **merges = NULL;
    uint32_t *tl = NULL, *ml = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    uint64_t n_tok, n_merge;
    cq_status st = str_array(g, "tokenizer.ggml.tokens", &toks, &tl, &n_tok, err);
    if (!st) st = str_array(g, "tokenizer.ggml.merges", &merges, &ml, &n_merge, err);
    if (st) goto done;
    if (n_tok == 0 || n_tok > n_vocab_model) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                        "gguf: %llu tokenizer tokens for a vocabulary of %u",
                        (unsigned long long)n_tok, n_vocab_model);
        goto done;
    }
    const kv *e = find_kv(g, "tokenizer.ggml.scores");
    if (e) {
        if (e->type != GV_ARR || e->arr_type != GV_F32 || e->arr_n != n_tok) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: tokenizer.ggml.scores bad");
            goto done;
        }
        scores = malloc(n_tok * sizeof *scores);
        if (!scores) { st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory"); goto done; }
        memcpy(scores, g->b + e->val_pos, n_tok * 4);
    }
    e = find_kv(g, "tokenizer.ggml.token_type");
    if (e) {
        if (e->type != GV_ARR || (e->arr_type != GV_I32 && e->arr_type != GV_U32) ||
            e->arr_n != n_tok) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "gguf: tokenizer.ggml.token_type bad");
            goto done;
        }
        types = malloc(n_tok * sizeof *types);
        if (!types) { st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory"); goto done; }
        memcpy(types, g->b + e->val_pos, n_tok * 4);
    }
    cq_tokenizer *t;
    if ((st = cq_tokenizer_build(kind, (uint32_t)n_tok, toks, tl, scores, types, merges, ml,
                                 (uint32_t)n_merge, &t, err)))
        goto done;
    uint64_t v;
    t->bos = kv_uint(g, "tokenizer.ggml.bos_token_id", &v) == 1 && v < n_tok ? (int32_t)v : -1;
    t->eos = kv_uint(g, "tokenizer.ggml.eos_token_id", &v) == 1 && v < n_tok ? (int32_t)v : -1;
    if (kv_uint(g, "tokenizer.ggml.unknown_token_id", &v) == 1 && v < n_tok) t->unk = (int32_t)v;
    if (kv_uint(g, "tokenizer.ggml.add_space_prefix", &v) == 1) t->add_space_prefix = (int)v;
    if (kv_uint(g, "tokenizer.ggml.add_bos_token", &v) == 1) t->add_bos = (int)v;
    t->space_is_u2581 = 1;
    const char *pre;
    uint64_t pre_n;
    if (kv_str(g, "tokenizer.ggml.pre", &pre, &pre_n) == 1 && str_is(pre, pre_n, "qwen2"))
        t->qwen2_pre = 1;
    *out = t;
done:
    free(toks);
    free(tl);
    free(merges);
    free(ml);
    free(scores);
    free(types);
    return st;
}
