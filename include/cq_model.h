/* SPDX-License-Identifier: MIT */
/*
 * cq_model.h - the built-in model runtime: a Llama-family decoder (llama,
 * qwen2) whose KV store is the ChannelQuant cache, its loaders (llama2.c
 * checkpoints, GGUF v3), its tokenizers, and the perplexity / KL-divergence
 * evaluation of a compressed cache against the fp16 one (docs/MODEL.md).
 *
 * Everything here is a library API: errors are cq_status values with a
 * message in cq_err, loading never trusts a size it has not checked, and the
 * model can be built from a file (mmap) or from a byte buffer (tests, fuzzers).
 *
 * Tier: TOOL-GRADE - exported for the cq tool, tests and research; may change in any
 * minor version (docs/EMBEDDING.md).
 */
#ifndef CQ_MODEL_H
#define CQ_MODEL_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>

#include "cq_cache.h"
#include "cq_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ model */

typedef enum cq_rope_style {
    CQ_ROPE_INTERLEAVED = 0, /* rotate pairs (2i, 2i+1): llama2.c, GGUF llama */
    CQ_ROPE_HALF = 1,        /* rotate pairs (i, i + D/2): HF / NeoX, GGUF qwen2 */
} cq_rope_style;

/* Storage type of a weight tensor (ggml's block formats where they differ from plain arrays). */
typedef enum cq_wtype {
    CQ_WTYPE_F32 = 0,
    CQ_WTYPE_F16 = 1,
    CQ_WTYPE_BF16 = 2,
    CQ_WTYPE_Q8_0 = 3, /* blocks of 32: fp16 scale d, 32 x int8; x = d * q */
} cq_wtype;

typedef struct cq_model_config {
    char arch[16];          /* "llama" or "qwen2" */
    uint32_t dim;           /* residual width */
    uint32_t hidden_dim;    /* SwiGLU inner width */
    uint32_t n_layers;
    uint32_t n_heads;       /* query heads */
    uint32_t n_kv_heads;    /* key/value heads (GQA when < n_heads) */
    uint32_t head_dim;      /* D */
    uint32_t vocab_size;
    uint32_t max_seq_len;   /* context length of the checkpoint */
    float rope_theta;
    float rms_eps;
    cq_rope_style rope;
    int tied_output;        /* classifier = token embedding */
    int qkv_bias;           /* q/k/v projections have biases (qwen2) */
} cq_model_config;

typedef struct cq_model cq_model;
typedef struct cq_tokenizer cq_tokenizer;

/* Load a model file; the format is detected from its first bytes (GGUF magic,
 * else a llama2.c checkpoint). The file is memory-mapped. A GGUF file brings
 * its tokenizer (cq_model_tokenizer); a llama2.c checkpoint does not. */
CQ_API cq_status cq_model_load(const char *path, cq_model **out, cq_err *err);
/* The same from a byte buffer (copied: the caller may free buf afterwards). */
CQ_API cq_status cq_model_load_llama2c_mem(const void *buf, size_t len, cq_model **out, cq_err *err);
CQ_API cq_status cq_model_load_gguf_mem(const void *buf, size_t len, cq_model **out, cq_err *err);
CQ_API void cq_model_free(cq_model *m); /* accepts NULL */
CQ_API const cq_model_config *cq_model_get_config(const cq_model *m);
/* The tokenizer embedded in the model file (GGUF), or NULL. */
CQ_API const cq_tokenizer *cq_model_tokenizer(const cq_model *m);
/* Bytes of weights (as stored, before any conversion). */
CQ_API uint64_t cq_model_weight_bytes(const cq_model *m);

/* -------------------------------------------------------------- tokenizer */

typedef enum cq_tok_kind {
    CQ_TOK_SPM = 0, /* SentencePiece-style: scored merges, byte fallback <0xXX> */
    CQ_TOK_BPE = 1, /* byte-level BPE (GPT-2 / Qwen2): ranked merges over mapped bytes */
} cq_tok_kind;

/* llama2.c tokenizer.bin (max_token_length, then per token: score f32, len i32, bytes). */
CQ_API cq_status cq_tokenizer_load_llama2c(const char *path, uint32_t vocab_size, cq_tokenizer **out,
                                    cq_err *err);
CQ_API cq_status cq_tokenizer_llama2c_mem(const void *buf, size_t len, uint32_t vocab_size,
                                   cq_tokenizer **out, cq_err *err);
CQ_API void cq_tokenizer_free(cq_tokenizer *t); /* accepts NULL (never free cq_model_tokenizer's) */
CQ_API cq_tok_kind cq_tokenizer_kind(const cq_tokenizer *t);
CQ_API uint32_t cq_tokenizer_vocab(const cq_tokenizer *t);
CQ_API int32_t cq_tokenizer_bos(const cq_tokenizer *t); /* -1 when none */
CQ_API int32_t cq_tokenizer_eos(const cq_tokenizer *t);
/* Whether the model expects BOS first (SentencePiece: yes; BPE: no unless the GGUF
 * file says tokenizer.ggml.add_bos_token). The tools pass it as encode's bos. */
CQ_API int cq_tokenizer_add_bos(const cq_tokenizer *t);

/* Encode UTF-8 text (len bytes). Writes at most cap tokens; *n_out receives the
 * number the text needs (CQ_ERR_BUFFER when that exceeds cap). bos: prepend BOS. */
CQ_API cq_status cq_tokenizer_encode(const cq_tokenizer *t, const char *text, size_t len, int bos,
                              int32_t *tokens, size_t cap, size_t *n_out, cq_err *err);
/* The bytes of one token as it continues prev (-1 at the start): SentencePiece
 * strips the leading space after BOS; byte tokens give their byte; control
 * tokens give nothing. Writes at most cap bytes (no terminator); returns the length,
 * or -1 on an out-of-range token or a too-small buffer. */
CQ_API int cq_tokenizer_decode(const cq_tokenizer *t, int32_t prev, int32_t token, char *buf, size_t cap);

/* ---------------------------------------------------------------- session */

/* What a session keeps as its KV store. */
typedef enum cq_kv_mode {
    CQ_KV_REFERENCE = 0, /* plain fp32 K/V arrays and exact softmax in double: the test oracle */
    CQ_KV_CACHE = 1,     /* the cq_cache (any codec pair, sinks, per-layer overrides) */
} cq_kv_mode;

/* Called after RoPE for every batch of a layer (capture, calibration):
 * q [n][n_heads][D], k and v [n][n_kv_heads][D], tokens at positions pos0.. */
typedef void (*cq_qkv_observer)(void *user, uint32_t layer, uint32_t pos0, uint32_t n,
                                const float *q, const float *k, const float *v);

typedef struct cq_session_opts {
    cq_kv_mode mode;
    const cq_cache_config *cache; /* CQ_KV_CACHE: its n_layers/n_kv_heads/head_dim must match
                                     the model (NULL = fp16/fp16 defaults) */
    int ref_kv_fp16;              /* CQ_KV_REFERENCE: round K and V to fp16 as they are stored */
    uint32_t n_threads;           /* 0 = 1 */
    uint32_t max_tokens;          /* context capacity (0 = the model's max_seq_len) */
    uint32_t batch;               /* tokens per forward batch (0 = 64) */
    cq_qkv_observer observer;
    void *observer_user;
    cq_pool *pool;                /* threads for the matrix products and attention, owned by the
                                     caller (n_threads 0 = all of them); NULL: the session starts
                                     its own of n_threads threads and joins them when freed */
    int prompt_blocks;            /* CQ_KV_CACHE: cut a call's tokens into chunks that end on
                                     key-group borders (n_sinks + k G) but the last, and give
                                     every token of a call of more than one token prefill
                                     attention (also in a one-token last chunk): the KV and
                                     logits of a one-call prefill, as the batch session
                                     (include/cq_batch.h) computes them. The batch is raised to
                                     n_sinks + G when smaller. cq_session_opts_default sets 1;
                                     0: chunks of `batch`, decode attention for a one-token
                                     chunk. */
    uint32_t attn_precision;      /* CQ_KV_CACHE: cq_attn_precision of every attention call
                                     (cq_attn_opts.precision): 0 = the library default (FAST,
                                     or what CQ_ATTN_PRECISION names); another value than
                                     EXACT or FAST is CQ_ERR_ARG at create */
} cq_session_opts;

typedef struct cq_session cq_session;

CQ_API void cq_session_opts_default(cq_session_opts *o);
CQ_API cq_status cq_session_create(const cq_model *m, const cq_session_opts *o, cq_session **out,
                            cq_err *err);
CQ_API void cq_session_free(cq_session *s); /* accepts NULL */
/* Forget every token (the cache is reset, cq_cache_reset). */
CQ_API void cq_session_reset(cq_session *s);
CQ_API uint32_t cq_session_pos(const cq_session *s);
/* The session's cache (CQ_KV_CACHE), for cq_cache_memory; NULL otherwise. */
CQ_API cq_cache *cq_session_cache(cq_session *s);

/* Run n tokens at positions pos..pos+n-1 (appending them to the KV store).
 * logits: NULL, or [n][vocab] (all positions), or with last_only [vocab]. */
CQ_API cq_status cq_session_forward(cq_session *s, const int32_t *tokens, uint32_t n, float *logits,
                             int last_only, cq_err *err);

/* ------------------------------------------------------------- evaluation */

/* K/V formats, perplexity and KL divergence: include/cq_eval.h (src/eval/). */

#ifdef __cplusplus
}
#endif
#endif /* CQ_MODEL_H */
