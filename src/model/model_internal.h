/* SPDX-License-Identifier: MIT */
/*
 * model_internal.h - private structures of the model runtime shared by its
 * files: weight tensors as stored, the model, the tokenizer.
 * Not a public header (include/cq_model.h is).
 */
#ifndef CQ_MODEL_INTERNAL_H
#define CQ_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cq_model.h"

/* A 2-D weight [rows][cols] (row-major; rows = output features), or a 1-D
 * vector (rows = 1). data points into the model's blob. */
typedef struct cq_wtensor {
    cq_wtype type;
    uint32_t rows, cols;
    const void *data;
} cq_wtensor;

typedef struct cq_layer_w {
    cq_wtensor attn_norm;          /* [dim] */
    cq_wtensor wq, wk, wv, wo;     /* [n_heads*D][dim], [n_kv*D][dim] x2, [dim][n_heads*D] */
    cq_wtensor bq, bk, bv;         /* qwen2 biases (data NULL when absent) */
    cq_wtensor ffn_norm;           /* [dim] */
    cq_wtensor w_gate, w_up, w_down; /* [hidden][dim], [hidden][dim], [dim][hidden] */
} cq_layer_w;

struct cq_model {
    cq_model_config cfg;
    cq_wtensor tok_embd;           /* [vocab][dim] */
    cq_wtensor out_norm;           /* [dim] */
    cq_wtensor output;             /* [vocab][dim] (= tok_embd when tied) */
    cq_layer_w *layers;            /* [n_layers] */
    /* storage: either an mmap of a file or an owned malloc copy */
    void *blob;
    size_t blob_len;
    int blob_mapped;
    cq_tokenizer *tok;             /* embedded tokenizer (GGUF) or NULL */
    uint64_t weight_bytes;
};

/* Bytes of one row of cols elements of type t (0 for Q8_0 when cols % 32 != 0). */
size_t cq_wtype_row_bytes(cq_wtype t, uint32_t cols);
/* Dequantize row r of w into out [cols]. */
void cq_wtensor_row_f32(const cq_wtensor *w, uint32_t r, float *out);
/* Validate a model once its tensors are set: shapes against cfg. */
cq_status cq_model_validate(const cq_model *m, cq_err *err);
/* Parse into an existing blob (takes ownership of blob whatever the outcome). */
cq_status cq_model_parse_llama2c(void *blob, size_t len, int mapped, cq_model **out, cq_err *err);
cq_status cq_model_parse_gguf(void *blob, size_t len, int mapped, cq_model **out, cq_err *err);
/* Release a blob however it was obtained. */
void cq_model_blob_release(void *blob, size_t len, int mapped);

/* ---------------------------------------------------------------- tokenizer */

struct cq_tokenizer {
    cq_tok_kind kind;
    uint32_t n_vocab;
    char *strings;        /* all pieces, each NUL-terminated */
    uint32_t *offs;       /* [n_vocab] offset of each piece in strings */
    uint32_t *lens;       /* [n_vocab] byte length */
    float *scores;        /* [n_vocab] (SPM) */
    int32_t *types;       /* [n_vocab] GGUF token types (1 normal, 2 unknown, 3 control,
                             4 user-defined, 5 unused, 6 byte); NULL = all normal */
    uint32_t *hash;       /* open addressing: piece -> id + 1 (0 empty) */
    uint32_t hash_cap;
    /* BPE merges "a b" -> rank */
    char *merge_strings;
    uint32_t *merge_offs, *merge_lens;
    uint32_t n_merges;
    uint32_t *merge_hash;
    uint32_t merge_hash_cap;
    int32_t byte_tok[256]; /* token of each byte (SPM <0xXX>, BPE mapped char), -1 if none */
    int32_t bos, eos, unk;
    int add_bos;          /* the model expects BOS at the start (GGUF tokenizer.ggml.add_bos_token) */
    int space_is_u2581;   /* SPM: spaces are U+2581 in the vocabulary (GGUF) vs ' ' (llama2.c) */
    int add_space_prefix; /* SPM: prepend a space to the text */
    int qwen2_pre;        /* BPE: Qwen2 pre-tokenizer instead of GPT-2's */
};

/* Build helpers used by the loaders. pieces[i] has lens[i] bytes (not terminated). */
cq_status cq_tokenizer_build(cq_tok_kind kind, uint32_t n_vocab, const char *const *pieces,
                             const uint32_t *lens, const float *scores, const int32_t *types,
                             const char *const *merges, const uint32_t *merge_lens,
                             uint32_t n_merges, cq_tokenizer **out, cq_err *err);

/* Checked size arithmetic: 0 on success, -1 on overflow. */
static inline int cq_mul_sz(size_t a, size_t b, size_t *out) {
    if (a && b > (size_t)-1 / a) return -1;
    *out = a * b;
    return 0;
}

#endif
