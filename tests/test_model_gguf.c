/* SPDX-License-Identifier: MIT */
/*
 * test_model_gguf.c - the GGUF loader and the forward pass on models this
 * test writes itself: random weights, llama and qwen2 architectures, head_dim
 * 64 and 128, GQA, F32/F16/BF16/Q8_0 tensors, small SentencePiece and
 * byte-level BPE vocabularies. Checks:
 *   - llama GGUF == the same (dequantized) weights in the llama2.c layout, bit for bit;
 *   - every model == a deliberately simple reference forward pass written
 *     here (double precision, one token at a time, both RoPE conventions);
 *   - the fp16 cache path == the oracle path with K/V rounded to fp16 (when the
 *     cache is built);
 *   - both tokenizers: hand-derived encodings and byte-exact round trips;
 *   - every truncation and many corruptions of the file are refused cleanly.
 * Contains its own GGUF writer (the library has none).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_fp16.h"
#include "cq_model.h"
#include "cq_test.h"
#include "cq_util.h"

/* ------------------------------------------------------------ byte buffer */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 1024;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_f32(buf *b, float v) { put(b, &v, 4); }
static void put_strn(buf *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}
static void put_str(buf *b, const char *s) { put_strn(b, s, strlen(s)); }

enum { V_U32 = 4, V_I32 = 5, V_F32 = 6, V_STR = 8, V_ARR = 9 };
enum { T_F32 = 0, T_F16 = 1, T_Q8_0 = 8, T_BF16 = 30 };

static void kv_u32(buf *b, const char *k, uint32_t v) { put_str(b, k); put_u32(b, V_U32); put_u32(b, v); }
static void kv_f32(buf *b, const char *k, float v) { put_str(b, k); put_u32(b, V_F32); put_f32(b, v); }
static void kv_str(buf *b, const char *k, const char *v) { put_str(b, k); put_u32(b, V_STR); put_str(b, v); }

/* ---------------------------------------------------------- quantization */

static uint16_t bf16_of(float f) {
    uint32_t u = cq_f32_bits(f);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* Encode x [n] as type t (appending to b) and overwrite x with what it decodes to. */
static void encode_tensor(buf *b, float *x, size_t n, int t) {
    if (t == T_F32) {
        put(b, x, n * 4);
    } else if (t == T_F16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = cq_f32_to_f16(x[i]);
            put(b, &h, 2);
            x[i] = cq_f16_to_f32(h);
        }
    } else if (t == T_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = bf16_of(x[i]);
            put(b, &h, 2);
            x[i] = cq_f32_from_bits((uint32_t)h << 16);
        }
    } else { /* Q8_0 */
        for (size_t blk = 0; blk < n / 32; blk++) {
            float *v = x + blk * 32, amax = 0;
            for (int i = 0; i < 32; i++) amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
            float d = amax / 127.0f;
            uint16_t dh = cq_f32_to_f16(d);
            float dd = cq_f16_to_f32(dh);
            int8_t q[32];
            for (int i = 0; i < 32; i++) {
                float r = d > 0 ? roundf(v[i] / d) : 0;
                q[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
                v[i] = dd * q[i];
            }
            put(b, &dh, 2);
            put(b, q, 32);
        }
    }
}

static size_t type_bytes(int t, size_t n) {
    return t == T_F32 ? n * 4 : t == T_Q8_0 ? n / 32 * 34 : n * 2;
}

/* ------------------------------------------------------------ test models */

typedef struct cfg {
    const char *arch;
    uint32_t dim, hidden, layers, heads, kv_heads, vocab, ctx;
    float theta, eps;
    int tied, bpe;
    int types[4]; /* cycled over the 2-D tensors */
} cfg;

typedef struct layer {
    float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *ffn_norm, *wg, *wu, *wd;
} layer;

typedef struct wts {
    float *embd, *out_norm, *output; /* output == embd when tied */
    layer L[4];
} wts;

static float *rnd(cq_rng *r, size_t n, double scale, double mean) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(mean + scale * cq_rng_normal(r));
    return p;
}

static void make_weights(const cfg *c, uint64_t seed, wts *w) {
    cq_rng r;
    cq_rng_seed(&r, seed);
    uint32_t D = c->dim / c->heads, qd = c->heads * D, kd = c->kv_heads * D;
    double s = 1.0 / sqrt(c->dim);
    w->embd = rnd(&r, (size_t)c->vocab * c->dim, 1.0, 0);
    w->out_norm = rnd(&r, c->dim, 0.1, 1.0);
    w->output = c->tied ? w->embd : rnd(&r, (size_t)c->vocab * c->dim, s, 0);
    for (uint32_t l = 0; l < c->layers; l++) {
        layer *L = &w->L[l];
        L->attn_norm = rnd(&r, c->dim, 0.1, 1.0);
        L->wq = rnd(&r, (size_t)qd * c->dim, s, 0);
        L->wk = rnd(&r, (size_t)kd * c->dim, s, 0);
        L->wv = rnd(&r, (size_t)kd * c->dim, s, 0);
        L->wo = rnd(&r, (size_t)c->dim * qd, 1.0 / sqrt(qd), 0);
        L->bq = !strcmp(c->arch, "qwen2") ? rnd(&r, qd, 0.5, 0) : NULL;
        L->bk = L->bq ? rnd(&r, kd, 0.5, 0) : NULL;
        L->bv = L->bq ? rnd(&r, kd, 0.5, 0) : NULL;
        L->ffn_norm = rnd(&r, c->dim, 0.1, 1.0);
        L->wg = rnd(&r, (size_t)c->hidden * c->dim, s, 0);
        L->wu = rnd(&r, (size_t)c->hidden * c->dim, s, 0);
        L->wd = rnd(&r, (size_t)c->dim * c->hidden, 1.0 / sqrt(c->hidden), 0);
    }
}

static void free_weights(const cfg *c, wts *w) {
    free(w->embd);
    free(w->out_norm);
    if (!c->tied) free(w->output);
    for (uint32_t l = 0; l < c->layers; l++) {
        layer *L = &w->L[l];
        float *all[] = {L->attn_norm, L->wq, L->wk, L->wv, L->wo, L->bq, L->bk, L->bv, L->ffn_norm, L->wg, L->wu, L->wd};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    }
}

/* ------------------------------------------------------------ vocabularies */

static uint32_t byte_cp(int b) { /* GPT-2 bytes_to_unicode */
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (uint32_t)b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
    return 256u + (uint32_t)n;
}
static int utf8(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

#define MAXV 300
typedef struct vocab {
    char tok[MAXV][24];
    float score[MAXV];
    int32_t type[MAXV];
    uint32_t n;
    const char *merges[8];
    uint32_t n_merges;
} vocab;

static const char *spm_extra[] = {"\xE2\x96\x81", "a", "b", "c", "t", "h", "e", "\xE2\x96\x81t", "he",
                                  "\xE2\x96\x81the", "\xE2\x96\x81" "a", "ab", "abc", "\xE2\x96\x81" "c"};
static const float spm_score[] = {-100, -100, -100, -100, -100, -100, -100, -2, -3, -1, -6, -4, -5, -7};

static void make_vocab(int bpe, vocab *v) {
    memset(v, 0, sizeof *v);
    if (!bpe) {
        strcpy(v->tok[0], "<unk>"), v->type[0] = 2;
        strcpy(v->tok[1], "<s>"), v->type[1] = 3;
        strcpy(v->tok[2], "</s>"), v->type[2] = 3;
        for (int b = 0; b < 256; b++) snprintf(v->tok[3 + b], 24, "<0x%02X>", b), v->type[3 + b] = 6;
        v->n = 259;
        for (size_t i = 0; i < sizeof spm_extra / sizeof spm_extra[0]; i++) {
            strcpy(v->tok[v->n], spm_extra[i]);
            v->score[v->n] = spm_score[i];
            v->type[v->n++] = 1;
        }
    } else {
        for (int b = 0; b < 256; b++) {
            int l = utf8(byte_cp(b), v->tok[b]);
            v->tok[b][l] = 0;
            v->type[b] = 1;
        }
        v->n = 256;
        static const char *m[] = {"\xC4\xA0 t", "h e", "\xC4\xA0t he", "a b", "ab c"};
        static const char *t[] = {"\xC4\xA0t", "he", "\xC4\xA0the", "ab", "abc"};
        for (int i = 0; i < 5; i++) {
            v->merges[i] = m[i];
            strcpy(v->tok[v->n], t[i]);
            v->type[v->n++] = 1;
        }
        v->n_merges = 5;
        strcpy(v->tok[v->n], "<|endoftext|>");
        v->type[v->n++] = 3;
    }
}

static int32_t vid(const vocab *v, const char *s) {
    for (uint32_t i = 0; i < v->n; i++)
        if (!strcmp(v->tok[i], s)) return (int32_t)i;
    return -1;
}

/* ------------------------------------------------------------ GGUF writer */

typedef struct gguf_pos {
    size_t infos;      /* first tensor info */
    size_t t0_ne0;     /* first tensor's ne[0] */
    size_t t0_type;    /* first tensor's type */
    size_t t0_offset;  /* first tensor's offset */
    size_t data;       /* start of the data section */
    size_t n_kv_field; /* the kv count */
} gguf_pos;

typedef struct tens {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[2];
    float *data;
    int type;
} tens;

static buf write_gguf(const cfg *c, wts *w, const vocab *v, gguf_pos *pos) {
    tens t[64];
    int nt = 0, cyc = 0;
#define T2(nm, rows, cols, ptr)                                                                    \
    do {                                                                                           \
        snprintf(t[nt].name, sizeof t[nt].name, "%s", nm);                                         \
        t[nt].n_dims = 2, t[nt].ne[0] = cols, t[nt].ne[1] = rows, t[nt].data = ptr;                \
        t[nt].type = c->types[cyc++ % 4];                                                          \
        nt++;                                                                                      \
    } while (0)
#define T1(nm, n, ptr)                                                                             \
    do {                                                                                           \
        snprintf(t[nt].name, sizeof t[nt].name, "%s", nm);                                         \
        t[nt].n_dims = 1, t[nt].ne[0] = n, t[nt].ne[1] = 1, t[nt].data = ptr, t[nt].type = T_F32;  \
        nt++;                                                                                      \
    } while (0)
    uint32_t D = c->dim / c->heads, qd = c->heads * D, kd = c->kv_heads * D;
    T2("token_embd.weight", c->vocab, c->dim, w->embd);
    T1("output_norm.weight", c->dim, w->out_norm);
    if (!c->tied) T2("output.weight", c->vocab, c->dim, w->output);
    char nm[64];
    for (uint32_t l = 0; l < c->layers; l++) {
        layer *L = &w->L[l];
#define N(s) (snprintf(nm, sizeof nm, "blk.%u.%s", l, s), nm)
        T1(N("attn_norm.weight"), c->dim, L->attn_norm);
        T2(N("attn_q.weight"), qd, c->dim, L->wq);
        T2(N("attn_k.weight"), kd, c->dim, L->wk);
        T2(N("attn_v.weight"), kd, c->dim, L->wv);
        T2(N("attn_output.weight"), c->dim, qd, L->wo);
        if (L->bq) {
            T1(N("attn_q.bias"), qd, L->bq);
            T1(N("attn_k.bias"), kd, L->bk);
            T1(N("attn_v.bias"), kd, L->bv);
        }
        T1(N("ffn_norm.weight"), c->dim, L->ffn_norm);
        T2(N("ffn_gate.weight"), c->hidden, c->dim, L->wg);
        T2(N("ffn_up.weight"), c->hidden, c->dim, L->wu);
        T2(N("ffn_down.weight"), c->dim, c->hidden, L->wd);
#undef N
    }
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, (uint64_t)nt);
    pos->n_kv_field = b.n;
    put_u64(&b, 0); /* patched below */
    uint64_t nkv = 0;
    char k[96];
#define K(s) (snprintf(k, sizeof k, "%s.%s", c->arch, s), k)
    kv_str(&b, "general.architecture", c->arch), nkv++;
    kv_u32(&b, "general.alignment", 32), nkv++;
    kv_u32(&b, K("context_length"), c->ctx), nkv++;
    kv_u32(&b, K("embedding_length"), c->dim), nkv++;
    kv_u32(&b, K("block_count"), c->layers), nkv++;
    kv_u32(&b, K("feed_forward_length"), c->hidden), nkv++;
    kv_u32(&b, K("attention.head_count"), c->heads), nkv++;
    kv_u32(&b, K("attention.head_count_kv"), c->kv_heads), nkv++;
    kv_f32(&b, K("rope.freq_base"), c->theta), nkv++;
    kv_f32(&b, K("attention.layer_norm_rms_epsilon"), c->eps), nkv++;
#undef K
    kv_str(&b, "tokenizer.ggml.model", c->bpe ? "gpt2" : "llama"), nkv++;
    if (c->bpe) kv_str(&b, "tokenizer.ggml.pre", "qwen2"), nkv++;
    put_str(&b, "tokenizer.ggml.tokens"), put_u32(&b, V_ARR), put_u32(&b, V_STR), put_u64(&b, v->n);
    for (uint32_t i = 0; i < v->n; i++) put_str(&b, v->tok[i]);
    nkv++;
    if (!c->bpe) {
        put_str(&b, "tokenizer.ggml.scores"), put_u32(&b, V_ARR), put_u32(&b, V_F32), put_u64(&b, v->n);
        put(&b, v->score, 4 * v->n);
        nkv++;
    } else {
        put_str(&b, "tokenizer.ggml.merges"), put_u32(&b, V_ARR), put_u32(&b, V_STR), put_u64(&b, v->n_merges);
        for (uint32_t i = 0; i < v->n_merges; i++) put_str(&b, v->merges[i]);
        nkv++;
    }
    put_str(&b, "tokenizer.ggml.token_type"), put_u32(&b, V_ARR), put_u32(&b, V_I32), put_u64(&b, v->n);
    put(&b, v->type, 4 * v->n);
    nkv++;
    kv_u32(&b, "tokenizer.ggml.bos_token_id", c->bpe ? v->n - 1 : 1), nkv++;
    kv_u32(&b, "tokenizer.ggml.eos_token_id", c->bpe ? v->n - 1 : 2), nkv++;
    memcpy(b.p + pos->n_kv_field, &nkv, 8);
    /* tensor infos, offsets aligned to 32 */
    pos->infos = b.n;
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        put_str(&b, t[i].name);
        put_u32(&b, t[i].n_dims);
        if (i == 0) pos->t0_ne0 = b.n;
        for (uint32_t d = 0; d < t[i].n_dims; d++) put_u64(&b, t[i].ne[d]);
        if (i == 0) pos->t0_type = b.n;
        put_u32(&b, (uint32_t)t[i].type);
        if (i == 0) pos->t0_offset = b.n;
        put_u64(&b, off);
        off += (type_bytes(t[i].type, t[i].ne[0] * t[i].ne[1]) + 31) / 32 * 32;
    }
    static const uint8_t zero[32];
    put(&b, zero, (32 - b.n % 32) % 32);
    pos->data = b.n;
    for (int i = 0; i < nt; i++) {
        encode_tensor(&b, t[i].data, t[i].ne[0] * t[i].ne[1], t[i].type);
        put(&b, zero, (32 - b.n % 32) % 32);
    }
#undef T1
#undef T2
    return b;
}

/* llama2.c layout of the (dequantized) weights; theta 10000 and eps 1e-5 implied. */
static buf write_llama2c(const cfg *c, const wts *w) {
    buf b = {0};
    uint32_t D = c->dim / c->heads, qd = c->heads * D, kd = c->kv_heads * D;
    int32_t h[7] = {(int32_t)c->dim, (int32_t)c->hidden, (int32_t)c->layers, (int32_t)c->heads,
                    (int32_t)c->kv_heads, c->tied ? (int32_t)c->vocab : -(int32_t)c->vocab,
                    (int32_t)c->ctx};
    put(&b, h, sizeof h);
    put(&b, w->embd, (size_t)c->vocab * c->dim * 4);
    for (uint32_t l = 0; l < c->layers; l++) put(&b, w->L[l].attn_norm, c->dim * 4);
    for (uint32_t l = 0; l < c->layers; l++) put(&b, w->L[l].wq, (size_t)qd * c->dim * 4);
    for (uint32_t l = 0; l < c->layers; l++) put(&b, w->L[l].wk, (size_t)kd * c->dim * 4);
    for (uint32_t l = 0; l < c->layers; l++) put(&b, w->L[l].wv, (size_t)kd * c->dim * 4);
    for (uint32_t l = 0; l < c->layers; l++) put(&b, w->L[l].wo, (size_t)qd * c->dim * 4);
    for (uint32_t l = 0; l < c->layers; l++) put(&b, w->L[l].ffn_norm, c->dim * 4);
    for (uint32_t l = 0; l < c->layers; l++) put(&b, w->L[l].wg, (size_t)c->hidden * c->dim * 4);
    for (uint32_t l = 0; l < c->layers; l++) put(&b, w->L[l].wd, (size_t)c->hidden * c->dim * 4);
    for (uint32_t l = 0; l < c->layers; l++) put(&b, w->L[l].wu, (size_t)c->hidden * c->dim * 4);
    put(&b, w->out_norm, c->dim * 4);
    float *fc = calloc((size_t)c->ctx * D, 4);
    put(&b, fc, (size_t)c->ctx * D * 4);
    free(fc);
    if (!c->tied) put(&b, w->output, (size_t)c->vocab * c->dim * 4);
    return b;
}

/* ---------------------------------------------------------- reference model */

/* y [rows] = W [rows][cols] x (+ b), in double */
static void ref_mv(double *y, const float *W, const double *x, uint32_t rows, uint32_t cols,
                   const float *b) {
    for (uint32_t r = 0; r < rows; r++) {
        double s = b ? b[r] : 0;
        for (uint32_t i = 0; i < cols; i++) s += (double)W[(size_t)r * cols + i] * x[i];
        y[r] = s;
    }
}
static void ref_norm(double *o, const double *x, const float *w, uint32_t n, double eps) {
    double ss = 0;
    for (uint32_t i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + eps);
    for (uint32_t i = 0; i < n; i++) o[i] = x[i] * inv * w[i];
}
static void ref_rope(double *v, uint32_t D, int half, uint32_t pos, double theta) {
    for (uint32_t i = 0; i < D / 2; i++) {
        double a = pos * pow(theta, -2.0 * i / D), cs = cos(a), sn = sin(a);
        uint32_t p = half ? i : 2 * i, q = half ? i + D / 2 : 2 * i + 1;
        double x0 = v[p], x1 = v[q];
        v[p] = x0 * cs - x1 * sn;
        v[q] = x0 * sn + x1 * cs;
    }
}

/* logits [T][vocab] of tokens, one token at a time (KV kept in double). */
static void ref_forward(const cfg *c, const wts *w, const int32_t *tok, uint32_t T, float *logits) {
    uint32_t D = c->dim / c->heads, H = c->heads, Hk = c->kv_heads, qd = H * D, kd = Hk * D;
    int half = !strcmp(c->arch, "qwen2");
    double *x = calloc(c->dim, 8), *xb = calloc(c->dim > qd ? c->dim : qd, 8), *q = calloc(qd, 8);
    double *att = calloc(qd, 8), *h1 = calloc(c->hidden, 8), *h2 = calloc(c->hidden, 8);
    double *tmp = calloc(c->dim > c->vocab ? c->dim : c->vocab, 8), *sc = calloc(T, 8);
    double *K = calloc((size_t)c->layers * T * kd, 8), *V = calloc((size_t)c->layers * T * kd, 8);
    for (uint32_t t = 0; t < T; t++) {
        for (uint32_t i = 0; i < c->dim; i++) x[i] = w->embd[(size_t)tok[t] * c->dim + i];
        for (uint32_t l = 0; l < c->layers; l++) {
            const layer *L = &w->L[l];
            double *k = K + ((size_t)l * T + t) * kd, *v = V + ((size_t)l * T + t) * kd;
            ref_norm(xb, x, L->attn_norm, c->dim, c->eps);
            ref_mv(q, L->wq, xb, qd, c->dim, L->bq);
            ref_mv(k, L->wk, xb, kd, c->dim, L->bk);
            ref_mv(v, L->wv, xb, kd, c->dim, L->bv);
            for (uint32_t h = 0; h < H; h++) ref_rope(q + h * D, D, half, t, c->theta);
            for (uint32_t h = 0; h < Hk; h++) ref_rope(k + h * D, D, half, t, c->theta);
            for (uint32_t h = 0; h < H; h++) {
                uint32_t g = h / (H / Hk);
                double mx = -1e300, sum = 0;
                for (uint32_t s = 0; s <= t; s++) {
                    double d = 0;
                    for (uint32_t e = 0; e < D; e++) d += q[h * D + e] * K[((size_t)l * T + s) * kd + g * D + e];
                    sc[s] = d / sqrt((double)D);
                    mx = sc[s] > mx ? sc[s] : mx;
                }
                for (uint32_t s = 0; s <= t; s++) sum += sc[s] = exp(sc[s] - mx);
                for (uint32_t e = 0; e < D; e++) {
                    double a = 0;
                    for (uint32_t s = 0; s <= t; s++) a += sc[s] * V[((size_t)l * T + s) * kd + g * D + e];
                    att[h * D + e] = a / sum;
                }
            }
            ref_mv(tmp, L->wo, att, c->dim, qd, NULL);
            for (uint32_t i = 0; i < c->dim; i++) x[i] += tmp[i];
            ref_norm(xb, x, L->ffn_norm, c->dim, c->eps);
            ref_mv(h1, L->wg, xb, c->hidden, c->dim, NULL);
            ref_mv(h2, L->wu, xb, c->hidden, c->dim, NULL);
            for (uint32_t i = 0; i < c->hidden; i++) h1[i] = h1[i] / (1 + exp(-h1[i])) * h2[i];
            ref_mv(tmp, L->wd, h1, c->dim, c->hidden, NULL);
            for (uint32_t i = 0; i < c->dim; i++) x[i] += tmp[i];
        }
        ref_norm(xb, x, w->out_norm, c->dim, c->eps);
        ref_mv(tmp, w->output, xb, c->vocab, c->dim, NULL);
        for (uint32_t i = 0; i < c->vocab; i++) logits[(size_t)t * c->vocab + i] = (float)tmp[i];
    }
    free(x), free(xb), free(q), free(att), free(h1), free(h2), free(tmp), free(sc), free(K), free(V);
}

/* Logits [T][V] of tokens; cc: the cache configuration (CQ_KV_CACHE; NULL = fp16/fp16). */
static float *run_model_cfg(const cq_model *m, const int32_t *tok, uint32_t T, cq_kv_mode mode,
                            int fp16, uint32_t batch, const cq_cache_config *cc) {
    cq_session_opts o;
    cq_session_opts_default(&o);
    o.mode = mode;
    o.cache = cc;
    o.ref_kv_fp16 = fp16;
    o.n_threads = 2;
    o.batch = batch;
    cq_session *s = NULL;
    cq_err e;
    if (cq_session_create(m, &o, &s, &e)) {
        fprintf(stderr, "session: %s\n", e.msg);
        return NULL;
    }
    uint32_t V = cq_model_get_config(m)->vocab_size;
    float *lg = malloc((size_t)T * V * 4);
    if (cq_session_forward(s, tok, T, lg, 0, &e)) {
        fprintf(stderr, "forward: %s\n", e.msg);
        free(lg);
        lg = NULL;
    }
    cq_session_free(s);
    return lg;
}

static float *run_model(const cq_model *m, const int32_t *tok, uint32_t T, cq_kv_mode mode, int fp16,
                        uint32_t batch) {
    return run_model_cfg(m, tok, T, mode, fp16, batch, NULL);
}

/* max |a-b| / max |b| */
static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    return md / (mb > 0 ? mb : 1);
}

/* ---------------------------------------------------------------- checks */

static void check_refusals(const buf *b, const gguf_pos *pos, const char *name) {
    cq_err e;
    cq_model *m = NULL;
    /* every truncation of the first 600 bytes, then strided through metadata, infos and data */
    int accepted = 0, silent = 0;
    for (size_t l = 0; l < b->n; l += l < 600 ? 1 : l < pos->data + 64 ? 7 : 997) {
        cq_err_clear(&e);
        if (cq_model_load_gguf_mem(b->p, l, &m, &e) == CQ_OK) accepted++;
        else if (!e.msg[0]) silent++;
        cq_model_free(m);
        m = NULL;
    }
    CHECK(accepted == 0 && silent == 0, "%s: %d truncations accepted, %d without a message", name,
          accepted, silent);
    /* random bit flips in the header region: no crash; an error with a message, or OK */
    uint8_t *c = malloc(b->n);
    cq_rng r;
    cq_rng_seed(&r, 7);
    int bad_state = 0;
    const char *iters_env = getenv("CQ_FUZZ_ITERS"); /* longer runs by hand */
    int iters = iters_env ? atoi(iters_env) : 200;
    for (int i = 0; i < iters; i++) {
        memcpy(c, b->p, b->n);
        for (uint32_t f = 1 + cq_rng_below(&r, 3); f; f--) { /* 1-3 flips in the header region */
            size_t at = cq_rng_below(&r, (uint32_t)pos->data);
            c[at] ^= (uint8_t)(1u << cq_rng_below(&r, 8));
        }
        cq_err_clear(&e);
        cq_status st = cq_model_load_gguf_mem(c, b->n, &m, &e);
        if ((st == CQ_OK) != (m != NULL) || (st && !e.msg[0])) bad_state++;
        cq_model_free(m);
        m = NULL;
    }
    CHECK(bad_state == 0, "%s: %d corruptions gave an inconsistent result", name, bad_state);
    /* targeted corruptions */
    struct { size_t at; uint64_t val; int width; cq_status want; const char *what; } cases[] = {
        {4, 4, 4, CQ_ERR_VERSION, "version 4"},
        {8, 1ull << 40, 8, CQ_ERR_FORMAT, "huge tensor count"},
        {pos->n_kv_field, 1ull << 40, 8, CQ_ERR_FORMAT, "huge kv count"},
        {24, 1ull << 62, 8, CQ_ERR_FORMAT, "huge key length"},
        {pos->t0_ne0, 32, 8, CQ_ERR_SHAPE, "wrong ne[0]"},
        {pos->t0_type, 2, 4, CQ_ERR_UNSUPPORTED, "Q4_0 tensor"},
        {pos->t0_offset, 1ull << 50, 8, CQ_ERR_FORMAT, "offset beyond the file"},
        {pos->t0_offset, 4, 8, CQ_ERR_FORMAT, "misaligned offset"},
        {pos->t0_ne0 - 4, 5, 4, CQ_ERR_FORMAT, "5 dims"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(c, b->p, b->n);
        memcpy(c + cases[i].at, &cases[i].val, (size_t)cases[i].width);
        cq_err_clear(&e);
        cq_status st = cq_model_load_gguf_mem(c, b->n, &m, &e);
        CHECK(st == cases[i].want && m == NULL && e.msg[0], "%s: %s gave %s (%s)", name,
              cases[i].what, cq_status_name(st), e.msg);
        cq_model_free(m);
        m = NULL;
    }
    free(c);
}

static void check_spm(const cq_tokenizer *t, const vocab *v) {
    cq_err e;
    int32_t ids[64];
    size_t n = 0;
    CHECK(cq_tokenizer_kind(t) == CQ_TOK_SPM && cq_tokenizer_add_bos(t) == 1, "kind, add_bos");
    CHECK(cq_tokenizer_encode(t, "the abc x", 9, 1, ids, 64, &n, &e) == CQ_OK, "%s", e.msg);
    int32_t want[] = {1, vid(v, "\xE2\x96\x81the"), vid(v, "\xE2\x96\x81"), vid(v, "abc"),
                      vid(v, "\xE2\x96\x81"), 3 + 'x'};
    CHECK(n == 6 && !memcmp(ids, want, sizeof want), "spm encode: n=%zu [%d %d %d %d %d %d]", n,
          ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]);
    const char *texts[] = {"the abc x", "hello, w\xC3\xB6rld\n  tab\tend", "a"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(texts[k]);
        CHECK(cq_tokenizer_encode(t, texts[k], l, 1, ids, 64, &n, &e) == CQ_OK, "%s", e.msg);
        char out[256];
        size_t ol = 0;
        for (size_t i = 1; i < n; i++) {
            int d = cq_tokenizer_decode(t, ids[i - 1], ids[i], out + ol, sizeof out - ol);
            if (d > 0) ol += (size_t)d;
        }
        CHECK(ol == l && !memcmp(out, texts[k], l), "spm round trip of '%s': '%.*s'", texts[k], (int)ol, out);
    }
}

static void check_bpe(const cq_tokenizer *t, const vocab *v) {
    cq_err e;
    int32_t ids[64];
    size_t n = 0;
    CHECK(cq_tokenizer_kind(t) == CQ_TOK_BPE && cq_tokenizer_add_bos(t) == 0, "kind, add_bos");
    CHECK(cq_tokenizer_encode(t, "the abc the", 11, 0, ids, 64, &n, &e) == CQ_OK, "%s", e.msg);
    int32_t want[] = {vid(v, "t"), vid(v, "he"), vid(v, "\xC4\xA0"), vid(v, "abc"), vid(v, "\xC4\xA0the")};
    CHECK(n == 5 && !memcmp(ids, want, sizeof want), "bpe encode: n=%zu [%d %d %d %d %d]", n, ids[0],
          ids[1], ids[2], ids[3], ids[4]);
    /* Qwen2 pre-tokenizer: digits one by one, so "123" never merges (no merges exist anyway) */
    CHECK(cq_tokenizer_encode(t, "x123", 4, 0, ids, 64, &n, &e) == CQ_OK && n == 4, "digits: %zu", n);
    const char *texts[] = {"the abc the", "Hello, world!\n\n  123 caf\xC3\xA9 \xF0\x9F\x98\x80\r\n end ",
                           "it's  THE'LL"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(texts[k]);
        CHECK(cq_tokenizer_encode(t, texts[k], l, 1, ids, 64, &n, &e) == CQ_OK, "%s", e.msg);
        CHECK(ids[0] == (int32_t)v->n - 1, "bos");
        char out[256];
        size_t ol = 0;
        for (size_t i = 1; i < n; i++) {
            int d = cq_tokenizer_decode(t, ids[i - 1], ids[i], out + ol, sizeof out - ol);
            if (d > 0) ol += (size_t)d;
        }
        CHECK(ol == l && !memcmp(out, texts[k], l), "bpe round trip of '%s': '%.*s'", texts[k], (int)ol, out);
    }
}

static void run_case(const cfg *c, uint64_t seed) {
    wts w;
    memset(&w, 0, sizeof w);
    make_weights(c, seed, &w);
    vocab v;
    make_vocab(c->bpe, &v);
    gguf_pos pos;
    buf g = write_gguf(c, &w, &v, &pos); /* w now holds the dequantized weights */
    char name[96];
    snprintf(name, sizeof name, "%s hd%u %s", c->arch, c->dim / c->heads, c->tied ? "tied" : "untied");
    cq_err e;
    cq_model *m = NULL;
    CHECK(cq_model_load_gguf_mem(g.p, g.n, &m, &e) == CQ_OK, "%s: load: %s", name, e.msg);
    if (!m) goto out;
    const cq_model_config *mc = cq_model_get_config(m);
    CHECK(mc->head_dim == c->dim / c->heads && mc->n_kv_heads == c->kv_heads && mc->vocab_size == c->vocab &&
              mc->tied_output == c->tied && mc->rope == (c->bpe ? CQ_ROPE_HALF : CQ_ROPE_INTERLEAVED) &&
              mc->rope_theta == c->theta && mc->rms_eps == c->eps && mc->qkv_bias == !strcmp(c->arch, "qwen2"),
          "%s: config", name);
    /* tokens: a fixed pseudo-random sequence */
    const uint32_t T = 48;
    int32_t tok[48];
    cq_rng r;
    cq_rng_seed(&r, seed + 1);
    for (uint32_t i = 0; i < T; i++) tok[i] = (int32_t)cq_rng_below(&r, c->vocab);
    float *got = run_model(m, tok, T, CQ_KV_REFERENCE, 0, 16);
    float *ref = malloc((size_t)T * c->vocab * 4);
    ref_forward(c, &w, tok, T, ref);
    CHECK(got != NULL, "%s: forward failed", name);
    if (got) {
        double re = rel_err(got, ref, (size_t)T * c->vocab);
        CHECK(re < 2e-5, "%s: logits vs reference forward: rel err %.3g", name, re);
    }
    /* llama: the same weights in the llama2.c layout give the same logits, bit for bit */
    if (!strcmp(c->arch, "llama") && c->theta == 10000.0f && c->eps == 1e-5f && got) {
        buf l2 = write_llama2c(c, &w);
        cq_model *m2 = NULL;
        CHECK(cq_model_load_llama2c_mem(l2.p, l2.n, &m2, &e) == CQ_OK, "%s: llama2.c: %s", name, e.msg);
        float *got2 = m2 ? run_model(m2, tok, T, CQ_KV_REFERENCE, 0, 5) : NULL;
        CHECK(got2 && !memcmp(got, got2, (size_t)T * c->vocab * 4), "%s: GGUF and llama2.c logits differ", name);
        free(got2);
        cq_model_free(m2);
        free(l2.p);
    }
    /* the fp16 cache == the oracle with K/V rounded to fp16 */
    float *o16 = run_model(m, tok, T, CQ_KV_REFERENCE, 1, 16);
    float *c16 = run_model(m, tok, T, CQ_KV_CACHE, 0, 16);
    CHECK(c16 != NULL, "%s: cache path failed", name);
    if (o16 && c16 && got) {
        /* The cache attends in fp32 (scores as fp32 dot products, online softmax) where the
         * oracle uses double; with scores of magnitude ~10-50 in these random models that
         * alone moves logits by ~1e-5 relative. The bound: that order, and far below what
         * rounding K/V to fp16 does (so the cache adds nothing beyond its fp16 input). */
        double re = rel_err(c16, o16, (size_t)T * c->vocab);
        double r16 = rel_err(o16, got, (size_t)T * c->vocab);
        CHECK(re < 5e-5 && re < r16 / 5, "%s: fp16 cache vs oracle: rel err %.3g (fp16 rounding itself %.3g)",
              name, re, r16);
    }
    /* decode path: token by token (cq_cache_attend) == prefill batches, within fp32 noise */
    float *d16 = run_model(m, tok, T, CQ_KV_CACHE, 0, 1);
    CHECK(d16 && c16 && rel_err(d16, c16, (size_t)T * c->vocab) < 5e-5, "%s: decode vs prefill %.3g",
          name, d16 && c16 ? rel_err(d16, c16, (size_t)T * c->vocab) : -1.0);
    free(d16);
    /* compressed caches run through the same path: finite, CQ-8 closer than CQ-4, CQ-4+ runs
     * (a mask of the two largest-|K| channels is not known here: channels 0 and D-1) */
    if (o16) {
        uint32_t hd = c->dim / c->heads;
        cq_cache_config cc;
        cq_cache_config_default(&cc, c->layers, c->kv_heads, hd);
        cc.group = 16; /* several full groups in 48 tokens, plus an in-flight one */
        uint8_t *mask = calloc((size_t)c->layers * c->kv_heads * hd, 1);
        for (uint32_t i = 0; i < c->layers * c->kv_heads; i++) mask[i * hd] = mask[i * hd + hd - 1] = 1;
        cc.outlier_masks = mask;
        cq_codec_id ids[3] = {CQ_CODEC_CQ8, CQ_CODEC_CQ4, CQ_CODEC_CQ4P};
        double err[3] = {0, 0, 0};
        for (int k = 0; k < 3; k++) {
            cc.key_codec = ids[k];
            cc.val_codec = ids[k] == CQ_CODEC_CQ4P ? CQ_CODEC_CQ4 : ids[k];
            float *lq = run_model_cfg(m, tok, T, CQ_KV_CACHE, 0, 16, &cc);
            CHECK(lq != NULL, "%s: codec %d failed", name, (int)ids[k]);
            if (!lq) continue;
            int finite = 1;
            for (size_t i = 0; i < (size_t)T * c->vocab; i++) finite &= isfinite(lq[i]) != 0;
            CHECK(finite, "%s: codec %d gives non-finite logits", name, (int)ids[k]);
            err[k] = rel_err(lq, o16, (size_t)T * c->vocab);
            free(lq);
        }
        if (getenv("CQ_TEST_VERBOSE")) fprintf(stderr, "%s: cq8 %.3g cq4 %.3g cq4+ %.3g\n", name, err[0], err[1], err[2]);
        CHECK(err[0] > 0 && err[0] < err[1] && err[1] < 0.5 && err[2] > 0 && err[2] < 0.5,
              "%s: rel err vs fp16: cq8 %.3g cq4 %.3g cq4+ %.3g", name, err[0], err[1], err[2]);
        free(mask);
    }
    free(o16);
    free(c16);
    free(got);
    free(ref);
    const cq_tokenizer *t = cq_model_tokenizer(m);
    CHECK(t != NULL, "%s: no tokenizer", name);
    if (t) c->bpe ? check_bpe(t, &v) : check_spm(t, &v);
    check_refusals(&g, &pos, name);
out:
    cq_model_free(m);
    free(g.p);
    free_weights(c, &w);
}

int main(void) {
    /* vocab = the test vocabularies' sizes: SPM 3 + 256 + 14, BPE 256 + 5 + 1 */
    const cfg cases[] = {
        {"llama", 128, 96, 2, 2, 1, 273, 64, 10000.0f, 1e-5f, 0, 0, {T_F16, T_BF16, T_Q8_0, T_F32}},
        {"llama", 256, 64, 2, 2, 1, 273, 64, 10000.0f, 1e-5f, 1, 0, {T_Q8_0, T_F32, T_F16, T_BF16}},
        {"llama", 256, 96, 1, 4, 2, 273, 64, 500000.0f, 1e-6f, 1, 0, {T_BF16, T_Q8_0, T_F16, T_F32}},
        {"qwen2", 256, 128, 2, 4, 2, 262, 64, 1000000.0f, 1e-6f, 1, 1, {T_F16, T_Q8_0, T_BF16, T_F32}},
        {"qwen2", 256, 64, 2, 2, 1, 262, 64, 1000000.0f, 1e-6f, 0, 1, {T_BF16, T_F32, T_Q8_0, T_F16}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 100 + i);
    return cq_test_done("test_model_gguf");
}
