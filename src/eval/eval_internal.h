/* SPDX-License-Identifier: MIT */
/*
 * eval_internal.h - what the evaluation module's files share and nothing
 * outside src/eval/ sees: the base log-probability file of the perplexity
 * protocol (kld_base.c) and the model session of a K/V format (kv_format.c).
 */
#ifndef CQ_EVAL_INTERNAL_H
#define CQ_EVAL_INTERNAL_H

#include "cq_eval.h"

/* A model session for format f with setup kv (page_tokens 0: max_tokens), prefilling up to
 * max_tokens tokens per call. The fp32 oracle path (f->reference) rounds K/V to fp16 as they
 * are stored when ref_kv_fp16. */
cq_status cq_eval_session(const cq_model *m, const cq_kv_format *f, const cq_kv_setup *kv,
                          uint32_t n_threads, uint32_t max_tokens, int ref_kv_fp16, cq_session **out,
                          cq_err *err);

/* What a base file must match to be reused. */
typedef struct cq_kld_base_key {
    uint32_t n_ctx, n_chunks, vocab;
    int32_t bos;
    uint32_t tokens_crc; /* cq_kld_base_tokens_crc */
} cq_kld_base_key;

typedef struct cq_kld_base cq_kld_base;

/* CRC-32C of the chunks' tokens as they are run (BOS substituted). */
uint32_t cq_kld_base_tokens_crc(const int32_t *tokens, size_t n_chunks, uint32_t n_ctx, int32_t bos);
/* path exists: open it for reading, its header validated against key and the model's
 * shape and its payload CRC checked; else prepare to write it (nothing is created until
 * commit). */
cq_status cq_kld_base_open(const char *path, const cq_model_config *c, const cq_kld_base_key *key,
                           cq_kld_base **out, cq_err *err);
int cq_kld_base_is_reading(const cq_kld_base *b);
/* Reading: chunk ch's per scored positions x vocab log-probabilities into lp (double). */
cq_status cq_kld_base_read(cq_kld_base *b, uint32_t ch, uint32_t per, double *lp, cq_err *err);
/* Reading: compare chunk 0 of the file with lp computed by this run (max |diff| <= 1e-3). */
cq_status cq_kld_base_check(cq_kld_base *b, uint32_t per, const double *lp, cq_err *err);
/* Writing: keep chunk ch's log-probabilities; commit writes the file atomically. */
cq_status cq_kld_base_put(cq_kld_base *b, uint32_t ch, uint32_t per, const double *lp, cq_err *err);
cq_status cq_kld_base_commit(cq_kld_base *b, cq_err *err);
void cq_kld_base_close(cq_kld_base *b); /* accepts NULL */

#endif
