/* SPDX-License-Identifier: MIT */
/*
 * cq_batch.h - the batch session: the model runtime serving many prompts at once over
 * the serving pool (include/cq_serve.h, docs/SERVING.md "The model runtime and
 * `cq batch`"). Continuous batching: sequences join and leave between steps; a step
 * runs one forward pass over every live sequence's tokens (one token of each decoding
 * sequence, a prompt chunk of each prefilling one), with the matrix products over the
 * whole step and the KV appends and attention per sequence. Prompts adopt the cached
 * blocks of an equal prefix and publish their own full prompt blocks; greedy sampling.
 *
 * Why each sequence's tokens equal running it alone: every chunk of a prompt but its
 * last ends on a block border (S + k G tokens), a prompt token always takes prefill
 * attention, a decode token decode attention, and every output row of the matrix
 * products depends only on its own token's row. So a prompt's logits and its greedy
 * tokens are bit for bit those of the same prompt run alone in a pool of its own with
 * the same formats, whatever else is in the batch, whatever the thread count.
 *
 * Budget: before a step appends anything, the bytes its appends need
 * (cq_seq_append_need) are compared with what the pool can give; when they do not fit,
 * the youngest sequence is preempted (freed and queued again at the front: it starts
 * over from its prompt and, being deterministic, produces the same tokens again). A step
 * that fails (an error status) leaves no sequence half-stepped: the sequences of that
 * step are freed and queued again.
 *
 * Threading: one batch session is used by one thread at a time.
 *
 * Tier: TOOL-GRADE (docs/EMBEDDING.md): may change in any minor version while the
 * slices of docs/SERVING.md land.
 */
#ifndef CQ_BATCH_H
#define CQ_BATCH_H

#include "cq_api.h"
#include <stdint.h>

#include "cq_cache.h"
#include "cq_error.h"
#include "cq_model.h"
#include "cq_pool.h"
#include "cq_serve.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cq_batch cq_batch;

/* Called with the logits a token is sampled from (tests, scoring): request id, the index
 * of the token about to be sampled (0 = the first after the prompt), logits [vocab]. */
typedef void (*cq_batch_logits_fn)(void *user, uint32_t id, uint32_t index, const float *logits);

typedef struct cq_batch_opts {
    const cq_cache_config *cache; /* formats, G, sinks, masks; page_tokens and max_tokens 0
                                     (NULL: fp16/fp16, G = 128). Copied at create. */
    uint64_t budget_bytes;        /* the pool's byte budget (0 = 256 MiB) */
    uint32_t max_batch;           /* tokens per step (0 = 256); at least S + G, so a
                                     prompt chunk of one block always fits */
    uint32_t max_seqs;            /* live sequences at once (0 = max_batch; at most it) */
    uint32_t max_tokens;          /* context of a sequence (0 = the model's max_seq_len) */
    uint32_t n_threads;           /* 0 = 1 */
    cq_pool *pool;                /* threads, owned by the caller (NULL: the session's own) */
    int no_prefix_cache;          /* 1: prompts neither adopt nor publish blocks */
    const int32_t *stop_tokens;   /* sampling one of these ends a sequence (copied) */
    uint32_t n_stop;              /* at most 8 */
    uint64_t model_hash;          /* identity of the weights in the pool's configuration
                                     hash (0: from the model's shape and weight bytes) */
    cq_batch_logits_fn on_logits; /* NULL or a hook (see above) */
    void *logits_user;
    /* A prefix store beside the pool's own index (the Redis tier, include/cq_kvstore.h;
     * unused with no_prefix_cache). prefix_adopt, if set, replaces the newcomer's
     * cq_seq_adopt_prefix: given the empty sequence and its prompt it may insert the
     * prompt's blocks into the pool (cq_kvpool_block_insert) and adopts the longest cached
     * run, returning the tokens adopted in *adopted; on an error status the session falls
     * back to cq_seq_adopt_prefix (the hook must leave the sequence empty then).
     * prefix_published, if set, is called after a prompt's full blocks were published
     * (cq_seq_publish), with the prompt; it cannot fail the step. */
    cq_status (*prefix_adopt)(void *user, cq_kvpool *p, cq_seq *s, const uint32_t *tokens,
                              uint32_t n, uint32_t *adopted);
    void (*prefix_published)(void *user, const cq_kvpool *p, const uint32_t *tokens, uint32_t n);
    void *prefix_user;
    uint32_t attn_precision;      /* cq_attn_precision of every attention call (0 = the library
                                     default: FAST, or what CQ_ATTN_PRECISION names); another
                                     value than EXACT or FAST is CQ_ERR_ARG at create */
} cq_batch_opts;

typedef enum cq_batch_stop {
    CQ_BATCH_RUNNING = 0, /* waiting or live */
    CQ_BATCH_LENGTH = 1,  /* generated n_gen tokens */
    CQ_BATCH_STOPTOK = 2, /* sampled a stop token (not part of the output) */
    CQ_BATCH_CONTEXT = 3, /* the context (max_tokens) is full */
} cq_batch_stop;

/* What one step did. */
typedef struct cq_batch_step_info {
    uint32_t prefill_tokens; /* prompt tokens computed in this step */
    uint32_t decode_tokens;  /* decode tokens computed (one per decoding sequence) */
    uint32_t live;           /* sequences live after the step */
    uint32_t joined, finished, preempted;
} cq_batch_step_info;

typedef struct cq_batch_stats {
    uint64_t steps, prefill_tokens, decode_tokens, generated;
    uint64_t adopted_tokens;    /* prompt tokens taken from cached blocks instead of computed */
    uint64_t preemptions;       /* live sequences freed and queued again for room */
    uint64_t deferrals;         /* admissions undone in their step for room (not counted above) */
    uint64_t recomputed_tokens; /* tokens computed by sequences that were preempted afterwards */
    uint32_t peak_seqs;
    /* the pool at the step with the most referenced + tail bytes (after its appends) */
    cq_kvpool_mem peak;
    uint64_t peak_shared_bytes; /* blocks referenced by more than one sequence, each once */
    uint64_t peak_block_slack;  /* bytes of open-block positions past the sequences' ends */
} cq_batch_stats;

CQ_API void cq_batch_opts_default(cq_batch_opts *o);
/* CQ_ERR_ARG for max_batch < S + G or max_seqs > max_batch, the errors of
 * cq_kvpool_create for the formats (KIVI and other windowed codecs are refused). */
CQ_API cq_status cq_batch_create(const cq_model *m, const cq_batch_opts *o, cq_batch **out,
                                 cq_err *err);
CQ_API void cq_batch_free(cq_batch *b); /* accepts NULL */
/* Queue a prompt (copied; 1 <= n <= max_tokens, tokens in the vocabulary: CQ_ERR_RANGE)
 * for n_gen greedy tokens; *id numbers requests from 0 in submission order. */
CQ_API cq_status cq_batch_submit(cq_batch *b, const int32_t *prompt, uint32_t n, uint32_t n_gen,
                                 uint32_t *id, cq_err *err);
/* One step (info may be NULL). With nothing queued or live it does nothing. CQ_ERR_BUDGET
 * when the budget cannot hold one sequence's step alone (every other one preempted). */
CQ_API cq_status cq_batch_step(cq_batch *b, cq_batch_step_info *info, cq_err *err);
/* Requests not finished (queued or live). */
CQ_API uint32_t cq_batch_unfinished(const cq_batch *b);
/* The tokens generated so far for request id (valid until the next step or free). */
CQ_API cq_status cq_batch_result(const cq_batch *b, uint32_t id, const int32_t **tokens,
                                 uint32_t *n, cq_batch_stop *stop, cq_err *err);
CQ_API void cq_batch_stats_get(const cq_batch *b, cq_batch_stats *out);
/* The steps of request id, numbered from 1 in the order cq_batch_step completed them
 * (a failed step takes no number): *admitted the step of its first admission (a
 * sequence preempted later keeps it; an admission deferred in its step is none),
 * *first_token the step that first sampled a token for it (the stop token included;
 * a later rerun after a preemption keeps it); 0: not yet. Either may be NULL. Only
 * counts: a caller that wants times stamps the steps itself (`cq batch` does, for the
 * time to first token). */
CQ_API cq_status cq_batch_request_steps(const cq_batch *b, uint32_t id, uint64_t *admitted,
                                        uint64_t *first_token, cq_err *err);
/* The session's pool (memory, check). */
CQ_API const cq_kvpool *cq_batch_kvpool(const cq_batch *b);

#ifdef __cplusplus
}
#endif
#endif /* CQ_BATCH_H */
