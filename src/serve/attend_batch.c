/* SPDX-License-Identifier: MIT */
/*
 * attend_batch.c - batched attention over many sequences of a serving pool
 * (include/cq_serve.h, "Batched attention"; docs/SERVING.md, "Batched decode
 * attention"): decode (one query token per sequence) and prefill (each sequence's new
 * tokens). Checks what is the pool's to check (membership, duplicates, the prefill row
 * offsets), then hands the sequences' caches to the drivers of src/cache/attend.c as one
 * list (attend_items.h): one flat task list on one thread pool, each sequence's result
 * bit-identical to its single call. Takes no lock (the sequences' blocks cannot be freed
 * while the caller holds them, docs/SERVING.md "Thread safety").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvpool_internal.h"
#include "../cache/attend_items.h"

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (cq_seq *const *)a, y = (uintptr_t) * (cq_seq *const *)b;
    return x < y ? -1 : x > y;
}

/* Every sequence present, of pool p, and none twice. */
static cq_status check_seqs(cq_kvpool *p, cq_seq *const *seqs, uint32_t n, cq_err *err) {
    for (uint32_t i = 0; i < n; i++) {
        if (!seqs[i]) return cq_err_set(err, CQ_ERR_NULL, i, -1, "sequence %u is NULL", i);
        if (seqs[i]->pool != p)
            return cq_err_set(err, CQ_ERR_ARG, i, -1, "sequence %u belongs to another pool", i);
    }
    cq_seq **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    memcpy(sorted, seqs, (size_t)n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_ptr);
    const cq_seq *dup = NULL;
    for (uint32_t i = 1; i < n && !dup; i++)
        if (sorted[i] == sorted[i - 1]) dup = sorted[i];
    free(sorted);
    if (!dup) return CQ_OK;
    uint32_t a = 0, b = 0;
    while (seqs[a] != dup) a++;
    for (b = a + 1; seqs[b] != dup; b++) {}
    return cq_err_set(err, CQ_ERR_ARG, b, -1, "sequence %u appears twice in the batch (at %u and %u)",
                      a, a, b);
}

/* An error of the drivers that names item `bad`: say which sequence, token = its index. */
static cq_status name_seq(cq_status st, uint32_t bad, cq_err *err) {
    if (!st || !err || bad == UINT32_MAX) return st;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return cq_err_set(err, st, bad, err->channel, "sequence %u: %s", bad, msg);
}

static cq_status check_batch(cq_kvpool *p, cq_seq *const *seqs, uint32_t n, const float *q,
                             float *out, cq_err *err) {
    if (!p || !seqs || !q || !out)
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "pool, seqs, q or out is NULL");
    return check_seqs(p, seqs, n, err);
}

cq_status cq_kvpool_attend(cq_kvpool *p, uint32_t layer, cq_seq *const *seqs, uint32_t n_seqs,
                           const float *q, uint32_t n_q_heads, float *out,
                           const cq_attn_opts *opts, cq_err *err) {
    cq_err_clear(err);
    cq_status st = check_batch(p, seqs, n_seqs, q, out, err);
    if (st || n_seqs == 0) return st;
    const size_t row = (size_t)n_q_heads * p->D; /* [n_q_heads][D] per sequence */
    cq_attn_item *it = malloc((size_t)n_seqs * sizeof *it);
    if (!it) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    for (uint32_t i = 0; i < n_seqs; i++)
        it[i] = (cq_attn_item){seqs[i]->c, q + i * row, out + i * row, 1, 0};
    uint32_t bad = UINT32_MAX;
    st = cq_attend_decode_items(it, n_seqs, layer, n_q_heads, opts, &bad, err);
    free(it);
    return name_seq(st, bad, err);
}

cq_status cq_kvpool_attend_prefill(cq_kvpool *p, uint32_t layer, cq_seq *const *seqs,
                                   uint32_t n_seqs, const uint32_t *q_ofs, const uint32_t *pos0,
                                   const float *q, uint32_t n_q_heads, float *out,
                                   const cq_attn_opts *opts, cq_err *err) {
    cq_err_clear(err);
    cq_status st = check_batch(p, seqs, n_seqs, q, out, err);
    if (st) return st;
    if (!q_ofs || !pos0) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "q_ofs or pos0 is NULL");
    if (q_ofs[0] != 0)
        return cq_err_set(err, CQ_ERR_ARG, 0, -1, "q_ofs[0] = %u, must be 0", q_ofs[0]);
    for (uint32_t i = 0; i < n_seqs; i++)
        if (q_ofs[i + 1] < q_ofs[i])
            return cq_err_set(err, CQ_ERR_ARG, i, -1, "q_ofs decreases at sequence %u (%u > %u)",
                              i, q_ofs[i], q_ofs[i + 1]);
    if (n_seqs == 0) return CQ_OK;
    const size_t row = (size_t)n_q_heads * p->D; /* [n_q_heads][D] per query token */
    /* a sequence with partial blocks: one item per piece of its queries contiguous in its
     * cache (kvp_prefill_items), as its single call makes them */
    size_t cap = 0;
    for (uint32_t i = 0; i < n_seqs; i++) cap += (size_t)seqs[i]->n_part + 1;
    cq_attn_item *it = malloc(cap * sizeof *it);
    uint32_t *owner = malloc(cap * sizeof *owner), n_it = 0;
    if (!it || !owner) {
        free(it), free(owner);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    uint32_t bad = UINT32_MAX;
    for (uint32_t i = 0; i < n_seqs && !st; i++) {
        uint32_t k = 0;
        st = kvp_prefill_items(seqs[i], layer, q + q_ofs[i] * row, out + q_ofs[i] * row,
                               q_ofs[i + 1] - q_ofs[i], pos0[i], row, it + n_it, &k, err);
        for (uint32_t m = 0; m < k; m++) owner[n_it + m] = i;
        if (st) bad = i;
        n_it += k;
    }
    if (!st) {
        st = cq_attend_prefill_items(it, n_it, layer, n_q_heads, opts, &bad, err);
        if (bad != UINT32_MAX) bad = owner[bad];
    }
    free(it), free(owner);
    return name_seq(st, bad, err);
}
