/* SPDX-License-Identifier: MIT */
/*
 * attend_items.h - the attention drivers of src/cache/attend.c over a list of caches
 * that share one configuration (the sequences of a serving pool, src/serve/attend_batch.c):
 * one flat task list over every item, run as ONE job on the thread pool. Per item the
 * tasks, the chunks and the chunk-order merge are exactly those of a single call
 * (cq_cache_attend / cq_cache_attend_prefill are these functions over one item), so an
 * item's result is bit-identical to the single call on it, whatever else is in the list
 * and however many threads run it.
 */
#ifndef CQ_ATTEND_ITEMS_H
#define CQ_ATTEND_ITEMS_H

#include "cq_cache.h"

typedef struct cq_attn_item {
    const cq_cache *c; /* every item of a call: the same configuration */
    const float *q;    /* decode [n_q_heads][D]; prefill [n_q][n_q_heads][D]; unscaled */
    float *out;        /* same shape as q */
    uint32_t n_q;      /* prefill: query tokens (0: nothing to do) */
    uint32_t pos0;     /* prefill: position of the first query */
} cq_attn_item;

/* Validate every item (the single call's checks and messages), then attend. On a
 * validation error nothing is written. CQ_ERR_OVERFLOW: the items whose scores overflow
 * have their out zeroed, every other item's out is valid. *bad (if not NULL) receives the
 * index of the item an error names (UINT32_MAX when it names none). */
cq_status cq_attend_decode_items(const cq_attn_item *it, uint32_t n, uint32_t layer,
                                 uint32_t n_q_heads, const cq_attn_opts *opts, uint32_t *bad,
                                 cq_err *err);
cq_status cq_attend_prefill_items(const cq_attn_item *it, uint32_t n, uint32_t layer,
                                  uint32_t n_q_heads, const cq_attn_opts *opts, uint32_t *bad,
                                  cq_err *err);

#endif
