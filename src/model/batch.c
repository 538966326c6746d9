/* SPDX-License-Identifier: MIT */
/*
 * batch.c - the batch session (include/cq_batch.h): continuous batching of many prompts
 * over the serving pool. A step plans its tokens (one per decoding sequence, then a
 * prompt chunk cut on a block border for each prefilling sequence, then newcomers that
 * adopt their prompt's cached prefix), checks the budget (preempting the youngest
 * sequence while the step's appends do not fit), runs one forward pass over all of the
 * step's rows (forward_ops.c: the per-token math, shared with forward.c), with the KV
 * appends and the attention per sequence, then publishes completed prompts' blocks and
 * samples greedily. The cache, the blocks and their sharing are the pool's (src/serve).
 */
#include <stdlib.h>
#include <string.h>

#include "cq_batch.h"
#include "cq_prefix.h"
#include "forward_internal.h"

#define MAX_STOP 8u

typedef struct req {
    uint32_t *prompt;   /* [n_prompt] token ids */
    uint32_t n_prompt, n_gen;
    int32_t *out;       /* [n_gen] generated tokens */
    uint32_t n_out;
    cq_batch_stop stop;
    cq_seq *seq;        /* non-NULL while live */
    uint32_t fed;       /* prompt tokens the sequence holds (adopted + computed) */
    uint64_t stamp;     /* admission order of the current admission */
    uint64_t work;      /* tokens computed since that admission */
    uint64_t step_admitted; /* the step (1 = the first) of its first admission, 0: none yet */
    uint64_t step_first;    /* the step that sampled its first token, 0: none yet */
} req;

/* One sequence's share of a step: rows [row0, row0 + n) at positions pos0.. */
typedef struct entry {
    uint32_t r, n, pos0, row0;
    int prompt;         /* prompt tokens (prefill attention) or one decode token */
    int fresh;          /* admitted in this step */
} entry;

struct cq_batch {
    const cq_model *m;
    cq_batch_opts o;
    int32_t stop[MAX_STOP];
    cq_pool *pool;
    int own_pool;
    uint32_t n_threads, S, G, max_batch, max_seqs, max_tokens;
    cq_kvpool *kv;
    cq_fwd f;
    req *reqs;
    uint32_t n_reqs, cap_reqs;
    uint32_t *queue;    /* waiting request ids, [q_n], front first */
    uint32_t q_n;
    uint32_t *live;     /* live request ids, admission order */
    uint32_t n_live;
    entry *plan;        /* [max_seqs] */
    cq_seq **att_seq;   /* [max_seqs] one batched attention call's sequences */
    uint32_t *att_ofs;  /* [max_seqs + 1] its query rows (prefill) */
    uint32_t *att_pos;  /* [max_seqs] its first positions (prefill) */
    uint32_t n_plan;
    int32_t *tok;       /* [max_batch] the step's tokens */
    uint32_t *sel;      /* [max_seqs] rows whose logits are sampled */
    float *logits;      /* [max_seqs][V] */
    uint64_t next_stamp;
    uint32_t unfinished;
    cq_batch_stats stats;
};

void cq_batch_opts_default(cq_batch_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_threads = 1;
}

void cq_batch_free(cq_batch *b) {
    if (!b) return;
    for (uint32_t i = 0; i < b->n_reqs; i++) {
        cq_seq_free(b->reqs[i].seq);
        free(b->reqs[i].prompt);
        free(b->reqs[i].out);
    }
    cq_kvpool_free(b->kv);
    if (b->own_pool) cq_pool_free(b->pool);
    cq_fwd_release(&b->f);
    free(b->reqs);
    free(b->queue);
    free(b->live);
    free(b->plan);
    free(b->att_seq);
    free(b->att_ofs);
    free(b->att_pos);
    free(b->tok);
    free(b->sel);
    free(b->logits);
    free(b);
}

static uint64_t model_hash(const cq_model *m) {
    const cq_model_config *c = &m->cfg;
    uint32_t theta;
    memcpy(&theta, &c->rope_theta, sizeof theta);
    const uint64_t w[] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                          c->head_dim, c->vocab_size, c->max_seq_len, theta,
                          (uint64_t)c->rope, m->weight_bytes};
    return cq_prefix_hash_bytes(w, sizeof w);
}

cq_status cq_batch_create(const cq_model *m, const cq_batch_opts *o, cq_batch **out, cq_err *err) {
    cq_err_clear(err);
    if (!m || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "model or out is NULL");
    *out = NULL;
    const cq_model_config *c = &m->cfg;
    cq_batch *b = calloc(1, sizeof *b);
    if (!b) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    if (o) b->o = *o;
    else cq_batch_opts_default(&b->o);
    b->m = m;
    cq_cache_config cc;
    if (b->o.cache) cc = *b->o.cache;
    else {
        cq_cache_config_default(&cc, c->n_layers, c->n_kv_heads, c->head_dim);
        cc.key_codec = cc.val_codec = CQ_CODEC_FP16;
    }
    b->o.cache = NULL; /* not kept */
    b->G = cc.group ? cc.group : 128;
    b->S = cc.n_sinks;
    b->max_batch = b->o.max_batch ? b->o.max_batch : 256;
    b->max_seqs = b->o.max_seqs ? b->o.max_seqs : b->max_batch;
    b->max_tokens = b->o.max_tokens ? b->o.max_tokens : c->max_seq_len;
    b->n_threads = b->o.n_threads ? b->o.n_threads : 1;
    if (b->n_threads > CQ_POOL_MAX) b->n_threads = CQ_POOL_MAX;
    cq_status st = CQ_OK;
    if (cc.n_layers != c->n_layers || cc.n_kv_heads != c->n_kv_heads || cc.head_dim != c->head_dim)
        st = cq_err_set(err, CQ_ERR_SHAPE, -1, -1, "cache is %u layers x %u kv heads x %u, model %u x %u x %u",
                        cc.n_layers, cc.n_kv_heads, cc.head_dim, c->n_layers, c->n_kv_heads, c->head_dim);
    else if ((uint64_t)b->S + b->G > b->max_batch)
        st = cq_err_set(err, CQ_ERR_ARG, -1, -1,
                        "max_batch %u is below one block of S + G = %u tokens: a prompt chunk "
                        "must end on a block border", b->max_batch, b->S + b->G);
    else if (b->max_seqs > b->max_batch)
        st = cq_err_set(err, CQ_ERR_ARG, -1, -1, "max_seqs %u exceeds max_batch %u: every live "
                        "sequence needs a row in a step", b->max_seqs, b->max_batch);
    else if (b->max_tokens > c->max_seq_len)
        st = cq_err_set(err, CQ_ERR_ARG, -1, -1, "max_tokens %u exceeds the model's context of %u",
                        b->max_tokens, c->max_seq_len);
    else if (b->o.n_stop > MAX_STOP || (b->o.n_stop && !b->o.stop_tokens))
        st = cq_err_set(err, CQ_ERR_ARG, -1, -1, "at most %u stop tokens", MAX_STOP);
    else
        st = cq_fwd_check_precision(b->o.attn_precision, err);
    if (st) {
        cq_batch_free(b);
        return st;
    }
    if (b->o.n_stop) memcpy(b->stop, b->o.stop_tokens, b->o.n_stop * sizeof *b->stop);
    b->o.stop_tokens = NULL;
    if (b->o.pool) {
        b->pool = b->o.pool;
        if (!b->o.n_threads || b->n_threads > cq_pool_threads(b->pool))
            b->n_threads = cq_pool_threads(b->pool);
    } else if (b->n_threads > 1) {
        cq_pool_opts po;
        cq_pool_opts_default(&po, b->n_threads);
        if ((st = cq_pool_create(&po, &b->pool))) {
            cq_batch_free(b);
            return cq_err_set(err, st, -1, -1, "cannot start %u threads", po.n_threads);
        }
        b->own_pool = 1;
    }
    cq_kvpool_config pc = {.cache = cc,
                           .budget_bytes = b->o.budget_bytes ? b->o.budget_bytes : (uint64_t)256 << 20,
                           .model_hash = b->o.model_hash ? b->o.model_hash : model_hash(m)};
    if ((st = cq_kvpool_create(&pc, &b->kv, err)) ||
        (st = cq_fwd_init(&b->f, m, b->max_batch, b->max_tokens, b->pool, b->n_threads, err))) {
        cq_batch_free(b);
        return st;
    }
    b->live = calloc(b->max_seqs, sizeof *b->live);
    b->plan = calloc(b->max_seqs, sizeof *b->plan);
    b->att_seq = calloc(b->max_seqs, sizeof *b->att_seq);
    b->att_ofs = calloc((size_t)b->max_seqs + 1, sizeof *b->att_ofs);
    b->att_pos = calloc(b->max_seqs, sizeof *b->att_pos);
    b->tok = calloc(b->max_batch, sizeof *b->tok);
    b->sel = calloc(b->max_seqs, sizeof *b->sel);
    b->logits = calloc((size_t)b->max_seqs * c->vocab_size, sizeof *b->logits);
    if (!b->live || !b->plan || !b->att_seq || !b->att_ofs || !b->att_pos || !b->tok || !b->sel || !b->logits) {
        cq_batch_free(b);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    *out = b;
    return CQ_OK;
}

cq_status cq_batch_submit(cq_batch *b, const int32_t *prompt, uint32_t n, uint32_t n_gen,
                          uint32_t *id, cq_err *err) {
    cq_err_clear(err);
    if (!b || !prompt || !id) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "batch, prompt or id is NULL");
    if (n == 0 || n > b->max_tokens)
        return cq_err_set(err, CQ_ERR_RANGE, n, -1, "a prompt of %u tokens (1 to %u)", n, b->max_tokens);
    for (uint32_t i = 0; i < n; i++)
        if (prompt[i] < 0 || (uint32_t)prompt[i] >= b->m->cfg.vocab_size)
            return cq_err_set(err, CQ_ERR_RANGE, i, -1, "token %d outside vocabulary %u", prompt[i],
                              b->m->cfg.vocab_size);
    if (b->n_reqs == UINT32_MAX) return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "too many requests");
    if (b->n_reqs == b->cap_reqs) {
        uint32_t cap = b->cap_reqs ? b->cap_reqs * 2 : 16;
        req *nr = realloc(b->reqs, (size_t)cap * sizeof *nr);
        uint32_t *nq = nr ? realloc(b->queue, (size_t)cap * sizeof *nq) : NULL;
        if (nr) b->reqs = nr;
        if (!nq) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        b->queue = nq;
        b->cap_reqs = cap;
    }
    req r;
    memset(&r, 0, sizeof r);
    r.prompt = malloc((size_t)n * sizeof *r.prompt);
    r.out = malloc((size_t)(n_gen ? n_gen : 1) * sizeof *r.out);
    if (!r.prompt || !r.out) {
        free(r.prompt);
        free(r.out);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    for (uint32_t i = 0; i < n; i++) r.prompt[i] = (uint32_t)prompt[i];
    r.n_prompt = n;
    r.n_gen = n_gen;
    *id = b->n_reqs;
    b->reqs[b->n_reqs++] = r;
    b->queue[b->q_n++] = *id;
    b->unfinished++;
    return CQ_OK;
}

uint32_t cq_batch_unfinished(const cq_batch *b) { return b ? b->unfinished : 0; }

cq_status cq_batch_result(const cq_batch *b, uint32_t id, const int32_t **tokens, uint32_t *n,
                          cq_batch_stop *stop, cq_err *err) {
    cq_err_clear(err);
    if (!b) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "batch is NULL");
    if (id >= b->n_reqs) return cq_err_set(err, CQ_ERR_RANGE, id, -1, "no request %u", id);
    const req *r = &b->reqs[id];
    if (tokens) *tokens = r->out;
    if (n) *n = r->n_out;
    if (stop) *stop = r->stop;
    return CQ_OK;
}

void cq_batch_stats_get(const cq_batch *b, cq_batch_stats *out) {
    if (!out) return;
    if (!b) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = b->stats;
}

const cq_kvpool *cq_batch_kvpool(const cq_batch *b) { return b ? b->kv : NULL; }

cq_status cq_batch_request_steps(const cq_batch *b, uint32_t id, uint64_t *admitted,
                                 uint64_t *first_token, cq_err *err) {
    cq_err_clear(err);
    if (!b) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "batch is NULL");
    if (id >= b->n_reqs) return cq_err_set(err, CQ_ERR_RANGE, id, -1, "no request %u", id);
    if (admitted) *admitted = b->reqs[id].step_admitted;
    if (first_token) *first_token = b->reqs[id].step_first;
    return CQ_OK;
}

/* ------------------------------------------------------------ scheduling */

/* Prompt tokens of r that the next chunk takes with `room` rows: the rest of the prompt
 * when it fits, else the most that end on a block border (S + k G), else 0. */
static uint32_t chunk_of(const cq_batch *b, const req *r, uint32_t room) {
    const uint32_t rest = r->n_prompt - r->fed;
    if (rest <= room) return rest;
    const uint64_t end = (uint64_t)r->fed + room;
    if (end < (uint64_t)b->S + b->G) return 0;
    const uint64_t border = b->S + (end - b->S) / b->G * b->G;
    return border > r->fed ? (uint32_t)(border - r->fed) : 0;
}

/* Free r's sequence and put it back at the front of the queue (it starts over). */
static void requeue(cq_batch *b, uint32_t id) {
    req *r = &b->reqs[id];
    cq_seq_free(r->seq);
    r->seq = NULL;
    r->fed = 0;
    r->n_out = 0;
    b->stats.recomputed_tokens += r->work;
    r->work = 0;
    for (uint32_t i = 0; i < b->n_live; i++)
        if (b->live[i] == id) {
            memmove(b->live + i, b->live + i + 1, (size_t)(b->n_live - i - 1) * sizeof *b->live);
            b->n_live--;
            break;
        }
    memmove(b->queue + 1, b->queue, (size_t)b->q_n * sizeof *b->queue);
    b->queue[0] = id;
    b->q_n++;
}

static void drop_entry(cq_batch *b, uint32_t id) {
    for (uint32_t i = 0; i < b->n_plan; i++)
        if (b->plan[i].r == id) {
            memmove(b->plan + i, b->plan + i + 1, (size_t)(b->n_plan - i - 1) * sizeof *b->plan);
            b->n_plan--;
            return;
        }
}

/* Bytes the pool can give now (budget - used + evictable) and the step's appends need. */
static cq_status budget_fits(cq_batch *b, int *fits, cq_err *err) {
    uint64_t need = 0;
    for (uint32_t i = 0; i < b->n_plan; i++) {
        uint64_t x;
        cq_status st = cq_seq_append_need(b->reqs[b->plan[i].r].seq, b->plan[i].n, &x, err);
        if (st) return st;
        need += x;
    }
    cq_kvpool_mem mem;
    cq_status st = cq_kvpool_memory(b->kv, &mem);
    if (st) return cq_err_set(err, st, -1, -1, "pool memory");
    const cq_prefix_stats *ps = &mem.prefix;
    *fits = need <= ps->budget_bytes - ps->used_bytes + ps->lru_bytes;
    return CQ_OK;
}

/* Plan the step: decoders, then prefill chunks of live prompts, then newcomers; then
 * preempt the youngest while the appends do not fit. */
static cq_status plan_step(cq_batch *b, cq_batch_step_info *info, cq_err *err) {
    uint32_t room = b->max_batch;
    b->n_plan = 0;
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < b->n_live; i++) {
            const uint32_t id = b->live[i];
            req *r = &b->reqs[id];
            const int decoding = r->fed == r->n_prompt;
            if (decoding != (pass == 0) || !room) continue;
            entry e = {id, 1, r->n_prompt + r->n_out - 1, 0, 0, 0};
            if (!decoding) {
                e.n = chunk_of(b, r, room);
                e.pos0 = r->fed;
                e.prompt = 1;
            }
            if (!e.n) continue;
            room -= e.n;
            b->plan[b->n_plan++] = e;
        }
    while (b->q_n && b->n_live < b->max_seqs && room) {
        const uint32_t id = b->queue[0];
        req *r = &b->reqs[id];
        /* a chunk of one block or the whole prompt must fit, else it waits (in order),
         * and no lookup is made for an admission that would be undone */
        if (room < b->S + b->G && r->n_prompt > room) break;
        cq_status st = cq_seq_create(b->kv, &r->seq, err);
        if (st) return st;
        uint32_t adopted = 0;
        if (!b->o.no_prefix_cache &&
            (!b->o.prefix_adopt || b->o.prefix_adopt(b->o.prefix_user, b->kv, r->seq, r->prompt,
                                                     r->n_prompt, &adopted) != CQ_OK)) {
            adopted = 0; /* no prefix store, or it failed (a miss): the pool's index alone */
            st = cq_seq_adopt_prefix(r->seq, r->prompt, r->n_prompt, &adopted, err);
        }
        if (st) {
            cq_seq_free(r->seq);
            r->seq = NULL;
            return st;
        }
        r->fed = adopted;
        const uint32_t n = chunk_of(b, r, room); /* > 0: room >= S + G or the prompt fits */
        memmove(b->queue, b->queue + 1, (size_t)(b->q_n - 1) * sizeof *b->queue);
        b->q_n--;
        r->stamp = b->next_stamp++;
        r->work = 0;
        b->live[b->n_live++] = id;
        b->stats.adopted_tokens += adopted;
        entry e = {id, n, adopted, 0, 1, 1};
        b->plan[b->n_plan++] = e;
        room -= n;
        info->joined++;
    }
    for (;;) {
        int fits = 0;
        cq_status st = budget_fits(b, &fits, err);
        if (st) return st;
        if (fits) break;
        if (b->n_live <= 1)
            return cq_err_set(err, CQ_ERR_BUDGET, -1, -1,
                              "the pool's budget cannot hold the next step of one sequence alone "
                              "(%u tokens); give a larger budget", b->n_plan ? b->plan[0].n : 0);
        uint32_t young = 0; /* the youngest live sequence */
        for (uint32_t i = 1; i < b->n_live; i++)
            if (b->reqs[b->live[i]].stamp > b->reqs[b->live[young]].stamp) young = i;
        const uint32_t id = b->live[young];
        int fresh = 0;
        for (uint32_t i = 0; i < b->n_plan; i++)
            if (b->plan[i].r == id) fresh = b->plan[i].fresh;
        if (fresh) {
            b->stats.deferrals++;
            info->joined--;
            b->stats.adopted_tokens -= b->reqs[id].fed;
        } else {
            b->stats.preemptions++;
            info->preempted++;
        }
        drop_entry(b, id);
        requeue(b, id);
    }
    return CQ_OK;
}

/* ------------------------------------------------------------ the step */

/* Attention of layer l for the planned rows: a prompt token takes prefill attention
 * (also alone in its chunk), a decode token decode attention. Each maximal run of
 * consecutive plan entries of one kind is one batched pool call (cq_kvpool_attend /
 * cq_kvpool_attend_prefill, one flat task list on the thread pool); both are
 * bit-identical per sequence to attending it alone, so the batch composition does
 * not change any sequence's result. */
static cq_status step_attend(cq_batch *b, uint32_t l, cq_err *err) {
    const cq_model_config *c = &b->m->cfg;
    const uint32_t H = c->n_heads, qd = H * c->head_dim;
    cq_attn_opts ao = {.n_threads = b->n_threads, .scale = 0.0f, .precision = b->o.attn_precision,
                       .pool = b->pool};
    for (uint32_t i = 0; i < b->n_plan;) {
        const int prompt = b->plan[i].prompt;
        const uint32_t row0 = b->plan[i].row0;
        uint32_t k = 0;
        for (; i + k < b->n_plan && b->plan[i + k].prompt == prompt; k++) {
            const entry *e = &b->plan[i + k];
            b->att_seq[k] = b->reqs[e->r].seq;
            b->att_ofs[k] = e->row0 - row0; /* rows are consecutive in plan order */
            b->att_pos[k] = e->pos0;
        }
        b->att_ofs[k] = b->plan[i + k - 1].row0 + b->plan[i + k - 1].n - row0;
        const float *q = b->f.q + (size_t)row0 * qd;
        float *o = b->f.xb + (size_t)row0 * qd;
        cq_status st = prompt ? cq_kvpool_attend_prefill(b->kv, l, b->att_seq, k, b->att_ofs,
                                                         b->att_pos, q, H, o, &ao, err)
                              : cq_kvpool_attend(b->kv, l, b->att_seq, k, q, H, o, &ao, err);
        if (st) return st;
        i += k;
    }
    return CQ_OK;
}

/* The forward pass over the planned rows; logits of the rows in sel. */
static cq_status step_forward(cq_batch *b, uint32_t rows, uint32_t n_sel, cq_err *err) {
    const cq_model_config *c = &b->m->cfg;
    const uint32_t kvd = c->n_kv_heads * c->head_dim;
    cq_fwd *f = &b->f;
    cq_fwd_embed(f, b->tok, rows); /* x [rows][dim] */
    for (uint32_t l = 0; l < c->n_layers; l++) {
        cq_fwd_qkv(f, l, rows); /* q [rows][H*D], k, v [rows][Hkv*D], after RoPE */
        for (uint32_t i = 0; i < b->n_plan; i++) {
            const entry *e = &b->plan[i];
            cq_status st = cq_seq_append_f32(b->reqs[e->r].seq, l, f->k + (size_t)e->row0 * kvd,
                                             f->v + (size_t)e->row0 * kvd, e->n, err);
            if (st) return st;
        }
        cq_status st = step_attend(b, l, err);
        if (st) return st;
        cq_fwd_post_attn(f, l, rows); /* x += xb Wo; x += SwiGLU */
    }
    if (n_sel) cq_fwd_logits(f, b->sel, 0, n_sel, b->logits);
    return CQ_OK;
}

/* The pool at its fullest so far (after a step's appends). */
static void note_peak(cq_batch *b) {
    cq_kvpool_mem mem;
    if (cq_kvpool_memory(b->kv, &mem)) return;
    if (b->stats.steps > 1 && mem.referenced + mem.tails <= b->stats.peak.referenced + b->stats.peak.tails)
        return;
    uint64_t shared = 0, slack = 0;
    for (uint32_t i = 0; i < b->n_live; i++) {
        cq_seq_mem sm;
        if (cq_seq_memory(b->reqs[b->live[i]].seq, &sm)) continue;
        shared += sm.shared_bytes;
        slack += sm.slack;
    }
    b->stats.peak = mem;
    b->stats.peak_shared_bytes = shared - mem.shared_saved; /* each shared block once */
    b->stats.peak_block_slack = slack;
}

static int is_stop(const cq_batch *b, int32_t t) {
    for (uint32_t i = 0; i < b->o.n_stop; i++)
        if (b->stop[i] == t) return 1;
    return 0;
}

/* A sequence leaves: its blocks go back (published ones stay cached). */
static void finish(cq_batch *b, uint32_t id, cq_batch_stop why, cq_batch_step_info *info) {
    req *r = &b->reqs[id];
    r->stop = why;
    cq_seq_free(r->seq);
    r->seq = NULL;
    for (uint32_t i = 0; i < b->n_live; i++)
        if (b->live[i] == id) {
            memmove(b->live + i, b->live + i + 1, (size_t)(b->n_live - i - 1) * sizeof *b->live);
            b->n_live--;
            break;
        }
    b->unfinished--;
    info->finished++;
}

cq_status cq_batch_step(cq_batch *b, cq_batch_step_info *info, cq_err *err) {
    cq_err_clear(err);
    cq_batch_step_info dummy;
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    if (!b) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "batch is NULL");
    cq_status st = plan_step(b, info, err);
    if (!st && b->n_plan) {
        /* rows, tokens, positions; the rows sampled */
        uint32_t rows = 0, n_sel = 0;
        for (uint32_t i = 0; i < b->n_plan; i++) {
            entry *e = &b->plan[i];
            const req *r = &b->reqs[e->r];
            e->row0 = rows;
            for (uint32_t j = 0; j < e->n; j++) {
                b->tok[rows + j] = e->prompt ? (int32_t)r->prompt[e->pos0 + j] : r->out[r->n_out - 1];
                b->f.pos[rows + j] = e->pos0 + j;
            }
            rows += e->n;
            if (!e->prompt || (e->pos0 + e->n == r->n_prompt && r->n_gen))
                b->sel[n_sel++] = rows - 1;
            if (e->prompt) info->prefill_tokens += e->n;
            else info->decode_tokens += e->n;
        }
        st = step_forward(b, rows, n_sel, err);
        /* the completed prompts' full blocks go into the prefix index */
        for (uint32_t i = 0; !st && i < b->n_plan; i++) {
            const entry *e = &b->plan[i];
            const req *r = &b->reqs[e->r];
            if (e->prompt && e->pos0 + e->n == r->n_prompt && !b->o.no_prefix_cache)
            {
                st = cq_seq_publish(r->seq, r->prompt, r->n_prompt, err);
                if (!st && b->o.prefix_published)
                    b->o.prefix_published(b->o.prefix_user, b->kv, r->prompt, r->n_prompt);
            }
        }
        if (st) { /* no sequence stays half-stepped: every one of the step starts over */
            for (uint32_t i = b->n_plan; i-- > 0;) requeue(b, b->plan[i].r);
            b->n_plan = 0;
            info->live = b->n_live;
            return st;
        }
        b->stats.steps++;
        b->stats.prefill_tokens += info->prefill_tokens;
        b->stats.decode_tokens += info->decode_tokens;
        note_peak(b);
        /* sampling: greedy, ties to the lowest id */
        const uint32_t V = b->m->cfg.vocab_size;
        uint32_t k = 0;
        for (uint32_t i = 0; i < b->n_plan; i++) {
            const entry *e = &b->plan[i];
            req *r = &b->reqs[e->r];
            r->work += e->n;
            if (e->fresh && !r->step_admitted) r->step_admitted = b->stats.steps;
            if (e->prompt) {
                r->fed += e->n;
                if (r->fed < r->n_prompt) continue;
                if (!r->n_gen) {
                    finish(b, e->r, CQ_BATCH_LENGTH, info);
                    continue;
                }
            }
            const float *lg = b->logits + (size_t)k++ * V;
            if (b->o.on_logits) b->o.on_logits(b->o.logits_user, e->r, r->n_out, lg);
            if (!r->step_first) r->step_first = b->stats.steps;
            int32_t best = 0;
            for (uint32_t v = 1; v < V; v++)
                if (lg[v] > lg[best]) best = (int32_t)v;
            b->stats.generated++;
            if (is_stop(b, best)) {
                finish(b, e->r, CQ_BATCH_STOPTOK, info);
                continue;
            }
            r->out[r->n_out++] = best;
            if (r->n_out == r->n_gen) finish(b, e->r, CQ_BATCH_LENGTH, info);
            else if ((uint64_t)r->n_prompt + r->n_out > b->max_tokens)
                finish(b, e->r, CQ_BATCH_CONTEXT, info);
        }
    }
    if (b->n_live > b->stats.peak_seqs) b->stats.peak_seqs = b->n_live;
    info->live = b->n_live;
    return st;
}
