/* SPDX-License-Identifier: MIT */
/*
 * attend.c - attention straight over the compressed cache: decode (one query
 * token, all query heads of a layer) and causal prefill, plus the double
 * precision reference over the read-back cache.
 *
 * One (kv head, token range) is processed in runs of at most BLK tokens that
 * never cross a page, key group, codec unit or the sink / in-flight borders.
 * Per run: scores of all GQA query heads of the kv head (each packed token is
 * unpacked once for all of them), an online-softmax step (running max m, sum
 * l, rescaled accumulator), then the value accumulation. CQ-4 keys: the
 * group's per-channel scales are folded into the query once per run
 * (qp = q .* s); outlier channels add a small fp16 side dot. With the FAST
 * precision (cq_attn_opts.precision) qp is then rounded to 8-bit blocks
 * (kernel quant_q8) and the codes are dotted in integers (dot_i4q). Values fold
 * their per-token scale into the softmax weight inside the kernel; with FAST,
 * committed INT4 values take 7-bit dithered weights and integer sums (acc_i4q),
 * while the softmax sum l stays the exact fp32 one.
 *
 * Threads: the caller's pool (cq_attn_opts.pool, include/cq_pool.h) or the process's
 * default one. Decode splits every kv head's tokens into chunks (chunk_tokens: a function
 * of the context and head count, not of the thread count, so results do not depend on
 * it) and merges the partial (m, l, acc) with a log-sum-exp merge in chunk
 * order. Read-only: safe to call concurrently on one cache. Both drivers take a list
 * of caches of one configuration (attend_items.h: a serving pool's batch) and run one
 * flat task list over all of them; a single call is a list of one.
 *
 * Row layout: a head whose role is held in the layer's row store reads its
 * slice of each decoded row (view_scores / view_acc), then the same kernels.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attend_items.h"
#include "fused.h"
#include "cq_pool.h"

/* Split-KV: tokens per (kv head, chunk) decode task. A function of the context T and the kv
 * head count only, never of the thread count (so neither are the results): about 8 tasks per
 * layer, chunks of 4096 to 16384 tokens, multiples of 4096. Long chunks keep the code streams'
 * prefetch running (measured, FAST CQ-4, 16K tokens, 8 kv heads, 2 threads: chunks of 2048 /
 * 4096 / 8192 / 16384 tokens at 0.67-0.68 / 0.63 / 0.59-0.62 / 0.57-0.60 ms per layer); short
 * contexts and few heads still get several tasks for the cores. */
static uint32_t chunk_tokens(uint32_t T, uint32_t H) {
    uint64_t c = ((uint64_t)T * H + 7) / 8;
    c = (c + 4095) / 4096 * 4096;
    return c < 4096 ? 4096u : c > 16384 ? 16384u : (uint32_t)c;
}

typedef struct part {
    float *m, *l, *acc; /* [nh], [nh], [nh][D] */
} part;

/* Contiguous tokens available at store position u (committed run or in-flight). */
static uint32_t store_run(const cq_store *s, uint32_t u) {
    s = cq_store_data(s); /* a row-layout view runs as its row store */
    if (u >= s->n_done) return s->n_done + s->n_resid - u;
    if (cq_store_per_token(s)) {
        uint32_t pe = (u / s->page_units + 1) * s->page_units;
        return (pe < s->n_done ? pe : s->n_done) - u;
    }
    uint32_t uu = u / s->unit;
    return uu * s->unit + cq_store_unit_len(s, uu) - u;
}

/* Tokens of a pool sequence's page left at store position u: P - u % P for a whole page, what
 * is left of the used positions of a partial one (0: u lies past them). */
static uint32_t part_left(const cq_page_source *ps, uint32_t P, uint32_t u) {
    const uint32_t pg = u / P, off = u % P;
    for (uint32_t i = 0; i < ps->n_part && ps->part_page[i] <= pg; i++)
        if (ps->part_page[i] == pg) return off < ps->part_used[i] ? ps->part_used[i] - off : 0;
    return P - off;
}

static cq_status gen_unit(const cq_store *s, uint32_t uu, float *buf, int64_t *id) {
    if (*id == (int64_t)uu) return CQ_OK;
    uint32_t g = cq_store_unit_len(s, uu);
    cq_status st = s->codec->decode(cq_store_ccfg(s, uu), s->role, cq_store_slot(s, uu),
                                    cq_store_gen_bytes(s, uu), g, buf);
    *id = st ? -1 : (int64_t)uu;
    return st;
}

/* Row layout (docs/CACHE.md): a head's view of the layer's row store. Its tokens
 * [u, u + n) come back as the head's slice of the row, contiguous [n][D], so the
 * same kernels as a per-head store apply: in flight as fp16 (into sc->h16),
 * committed as the decoded unit (the row unit into sc->rowbuf, the slice into buf). */
static const uint16_t *view_resid(const cq_store *s, uint32_t u, uint32_t n, run_scratch *sc) {
    const cq_store *rs = s->row;
    const uint32_t D = s->D, W = rs->D;
    const uint16_t *src = rs->resid + (size_t)(u - rs->n_done) * W + s->row_off;
    for (uint32_t t = 0; t < n; t++) memcpy(sc->h16 + (size_t)t * D, src + (size_t)t * W, (size_t)D * 2);
    return sc->h16;
}

static cq_status view_unit(const cq_store *s, uint32_t uu, float *buf, int64_t *id,
                           run_scratch *sc) {
    if (*id == (int64_t)uu) return CQ_OK;
    const cq_store *rs = s->row;
    const uint32_t D = s->D, W = rs->D, g = cq_store_unit_len(rs, uu);
    int64_t none = -1;
    cq_status st = gen_unit(rs, uu, sc->rowbuf, &none);
    *id = -1;
    if (st) return st;
    for (uint32_t t = 0; t < g; t++)
        memcpy(buf + (size_t)t * D, sc->rowbuf + (size_t)t * W + s->row_off, (size_t)D * sizeof *buf);
    *id = (int64_t)uu;
    return CQ_OK;
}

static cq_status view_scores(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n,
                             const float *q, uint32_t nh, run_scratch *sc) {
    const uint32_t D = s->D;
    if (u >= s->row->n_done) {
        k->dot_f16(q, nh, view_resid(s, u, n, sc), n, D, sc->s, BLK);
        return CQ_OK;
    }
    uint32_t uu = u / s->unit;
    cq_status st = view_unit(s, uu, sc->ku, &sc->ku_id, sc);
    if (st) return st;
    k->dot_f32(q, nh, sc->ku + (size_t)(u - uu * s->unit) * D, n, D, sc->s, BLK);
    return CQ_OK;
}

static cq_status view_acc(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n,
                          const float *w, uint32_t nh, float *acc, run_scratch *sc) {
    const uint32_t D = s->D;
    if (u >= s->row->n_done) {
        k->acc_f16(w, BLK, nh, view_resid(s, u, n, sc), n, D, acc);
        return CQ_OK;
    }
    uint32_t uu = u / s->unit;
    cq_status st = view_unit(s, uu, sc->vu, &sc->vu_id, sc);
    if (st) return st;
    k->acc_f32(w, BLK, nh, sc->vu + (size_t)(u - uu * s->unit) * D, n, D, acc);
    return CQ_OK;
}

/* scores of tokens [u, u+n) of the key store into sc->s */
static cq_status key_scores(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n,
                            const float *q, uint32_t nh, run_scratch *sc) {
    if (s->kind == ST_ROW) return view_scores(k, s, u, n, q, nh, sc);
    const uint32_t D = s->D;
    if (u >= s->n_done) {
        k->dot_f16(q, nh, s->resid + (size_t)(u - s->n_done) * D, n, D, sc->s, BLK);
        return CQ_OK;
    }
    if (s->fused) {
        s->fused->scores(k, s, u, n, q, nh, sc);
        return CQ_OK;
    }
    uint32_t uu = u / s->unit; /* a generic codec: its unit decoded once */
    cq_status st = gen_unit(s, uu, sc->ku, &sc->ku_id);
    if (st) return st;
    k->dot_f32(q, nh, sc->ku + (size_t)(u - uu * s->unit) * D, n, D, sc->s, BLK);
    return CQ_OK;
}

static cq_status val_acc(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n,
                         const float *w, uint32_t nh, float *acc, run_scratch *sc) {
    if (s->kind == ST_ROW) return view_acc(k, s, u, n, w, nh, acc, sc);
    const uint32_t D = s->D;
    if (u >= s->n_done) {
        k->acc_f16(w, BLK, nh, s->resid + (size_t)(u - s->n_done) * D, n, D, acc);
        return CQ_OK;
    }
    if (s->fused) {
        s->fused->acc(k, s, u, n, w, nh, acc, sc);
        return CQ_OK;
    }
    uint32_t uu = u / s->unit;
    cq_status st = gen_unit(s, uu, sc->vu, &sc->vu_id);
    if (st) return st;
    k->acc_f32(w, BLK, nh, sc->vu + (size_t)(u - uu * s->unit) * D, n, D, acc);
    return CQ_OK;
}

/* Online-softmax attention of nh query rows q [nh][D] (pre-scaled) over tokens
 * [a, b) of one (layer, kv head); leaves the unnormalized state in *pt. */
static cq_status attend_range(const cq_cache *c, const cq_head *hd, uint32_t a, uint32_t b,
                              const float *q, uint32_t nh, part *pt, run_scratch *sc) {
    const cq_kernels *k = c->kern;
    const uint32_t D = c->cfg.head_dim, S = c->cfg.n_sinks;
    for (uint32_t h = 0; h < nh; h++) pt->m[h] = -INFINITY, pt->l[h] = 0.0f;
    if (hd->k.fused && hd->k.fused->prep_query) hd->k.fused->prep_query(&hd->k, q, nh, sc);
    memset(pt->acc, 0, (size_t)nh * D * sizeof(float));
    uint32_t t = a;
    while (t < b) {
        uint32_t n = b - t < BLK ? b - t : BLK;
        int sink = t < S;
        if (sink) {
            if (S - t < n) n = S - t;
            k->dot_f16(q, nh, hd->sink_k + (size_t)t * D, n, D, sc->s, BLK);
        } else {
            uint32_t u = t - S, rk = store_run(&hd->k, u), rv = store_run(&hd->v, u);
            if (c->pager && c->pager->n_part) { /* a partial page ends its tokens early */
                uint32_t left = part_left(c->pager, c->page_tokens, u);
                if (!left) {
                    uint32_t skip = c->page_tokens - u % c->page_tokens;
                    t = b - t < skip ? b : t + skip;
                    continue;
                }
                if (left < n) n = left;
            }
            if (rk < n) n = rk;
            if (rv < n) n = rv;
            cq_status st = key_scores(k, &hd->k, u, n, q, nh, sc);
            if (st) return st;
        }
        for (uint32_t h = 0; h < nh; h++) {
            float *s = sc->s + (size_t)h * BLK, mx = k->max_f32(s, n);
            if (mx > pt->m[h]) {
                float r = expf(pt->m[h] - mx); /* 0 on the first run (m = -inf) */
                pt->l[h] *= r;
                float *ac = pt->acc + (size_t)h * D;
                for (uint32_t c2 = 0; c2 < D; c2++) ac[c2] *= r;
                pt->m[h] = mx;
            }
        }
        k->exp_sum(sc->s, BLK, nh, n, pt->m, sc->es); /* the heads' rows interleaved */
        for (uint32_t h = 0; h < nh; h++) pt->l[h] += sc->es[h];
        /* A score beyond fp32 (inf, or the NaN of inf - inf in a dot) made a weight and so l
         * NaN in every table (scalar expf and the SIMD exp keep NaN): stop here, before NaN
         * weights reach the value loops; the NaN output is CQ_ERR_OVERFLOW (check_output). */
        for (uint32_t h = 0; h < nh; h++)
            if (isnan(pt->l[h])) return CQ_OK;
        if (sink) {
            k->acc_f16(sc->s, BLK, nh, hd->sink_v + (size_t)t * D, n, D, pt->acc);
        } else {
            cq_status st = val_acc(k, &hd->v, t - S, n, sc->s, nh, pt->acc, sc);
            if (st) return st;
        }
        t += n;
    }
    return CQ_OK;
}

/* Scratch for runs of any head of layer l (sized for the largest need among its heads). */
static int scratch_init(run_scratch *sc, const cq_cache *c, const cq_layer *l, uint32_t nh,
                        int prec) {
    const uint32_t D = c->cfg.head_dim;
    memset(sc, 0, sizeof *sc);
    sc->ku_id = sc->vu_id = -1;
    sc->prec = prec;
    sc->qp = malloc((size_t)nh * D * sizeof(float));
    sc->qo = malloc((size_t)nh * D * sizeof(float));
    sc->qg = malloc((size_t)nh * D * sizeof(float));
    sc->q8 = malloc((size_t)nh * D);
    sc->qsh = malloc((size_t)nh * (D / CQ_Q8_BLOCK + 1));
    sc->qsc = malloc((size_t)nh * sizeof(float));
    sc->s = malloc((size_t)nh * BLK * sizeof(float));
    sc->es = malloc((size_t)nh * sizeof(float));
    uint32_t ku = 0, vu = 0;
    size_t rw = 0;
    for (uint32_t h = 0; h < c->cfg.n_kv_heads; h++) {
        const cq_head *hd = &l->heads[h];
        /* a fused format's decode rows (CQ-4 keys whose tokens start mid-byte) */
        uint32_t k1 = hd->k.kind == ST_GEN || hd->k.kind == ST_ROW ? hd->k.unit
                      : hd->k.fused->scratch_rows ? hd->k.fused->scratch_rows(&hd->k)
                                                  : 0;
        uint32_t v1 = hd->v.kind == ST_GEN || hd->v.kind == ST_ROW ? hd->v.unit : 0;
        if (k1 > ku) ku = k1;
        if (v1 > vu) vu = v1;
        /* row layout: one decoded row unit and one run of in-flight slices */
        if (hd->k.kind == ST_ROW && (size_t)hd->k.row->unit * hd->k.row->D > rw)
            rw = (size_t)hd->k.row->unit * hd->k.row->D;
        if (hd->v.kind == ST_ROW && (size_t)hd->v.row->unit * hd->v.row->D > rw)
            rw = (size_t)hd->v.row->unit * hd->v.row->D;
    }
    if (ku) sc->ku = malloc((size_t)ku * D * sizeof(float));
    if (vu) sc->vu = malloc((size_t)vu * D * sizeof(float));
    if (rw) {
        sc->rowbuf = malloc(rw * sizeof(float));
        sc->h16 = malloc((size_t)BLK * D * 2);
    }
    return sc->qp && sc->qo && sc->qg && sc->q8 && sc->qsh && sc->qsc && sc->s && sc->es &&
           (!ku || sc->ku) &&
           (!vu || sc->vu) && (!rw || (sc->rowbuf && sc->h16));
}

/* The scratch of pool worker w, made on its first task of a call (workers run their tasks one
 * after another, so a scratch is never shared); NULL when out of memory. A decoded unit held
 * in it belongs to one head: a new task forgets it. */
typedef struct worker_scratch {
    run_scratch *sc; /* [n] */
    uint8_t *ready;  /* [n]: 1 made, 2 failed */
    uint32_t n;
} worker_scratch;

static int workers_init(worker_scratch *ws, uint32_t n_threads, uint32_t n_tasks) {
    uint32_t n = n_threads < n_tasks ? n_threads : n_tasks;
    if (n > CQ_POOL_MAX) n = CQ_POOL_MAX;
    ws->n = n ? n : 1;
    ws->sc = calloc(ws->n, sizeof *ws->sc);
    ws->ready = calloc(ws->n, 1);
    return ws->sc && ws->ready;
}

static run_scratch *worker_get(worker_scratch *ws, uint32_t w, const cq_cache *c, const cq_layer *l,
                               uint32_t nh, int prec) {
    if (w >= ws->n) return NULL; /* cannot happen: the pool numbers workers below n_threads */
    if (!ws->ready[w]) ws->ready[w] = scratch_init(&ws->sc[w], c, l, nh, prec) ? 1 : 2;
    if (ws->ready[w] != 1) return NULL;
    ws->sc[w].ku_id = ws->sc[w].vu_id = -1;
    return &ws->sc[w];
}

static void scratch_free(run_scratch *sc) {
    free(sc->qp);
    free(sc->qo);
    free(sc->qg);
    free(sc->q8);
    free(sc->qsh);
    free(sc->qsc);
    free(sc->s);
    free(sc->es);
    free(sc->ku);
    free(sc->vu);
    free(sc->rowbuf);
    free(sc->h16);
}

static void workers_free(worker_scratch *ws) {
    for (uint32_t w = 0; ws->sc && ws->ready && w < ws->n; w++)
        if (ws->ready[w]) scratch_free(&ws->sc[w]);
    free(ws->sc);
    free(ws->ready);
}

static cq_status check_common(const cq_cache *c, uint32_t layer, const float *q, float *out,
                              uint32_t n_q_heads, size_t nq_rows, cq_err *err) {
    if (!c || !q || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "cache, q or out is NULL");
    if (layer >= c->cfg.n_layers)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "layer %u out of range", layer);
    const uint32_t H = c->cfg.n_kv_heads;
    if (n_q_heads == 0 || n_q_heads % H)
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1,
                          "n_q_heads=%u must be a positive multiple of n_kv_heads=%u", n_q_heads, H);
    for (size_t i = 0; i < nq_rows * c->cfg.head_dim; i++)
        if (!isfinite(q[i]))
            return cq_err_set(err, CQ_ERR_NONFINITE, -1, (int32_t)(i % c->cfg.head_dim),
                              "non-finite query element %zu", i);
    return CQ_OK;
}

cq_attn_precision cq_attn_precision_resolve(uint32_t p) {
    if (p == CQ_ATTN_EXACT || p == CQ_ATTN_FAST) return (cq_attn_precision)p;
    /* the default is FAST (docs/CACHE.md, "Tolerance"); the environment may name EXACT */
    const char *e = getenv("CQ_ATTN_PRECISION");
    if (e && !strcmp(e, "exact")) return CQ_ATTN_EXACT;
    return CQ_ATTN_FAST;
}

static cq_status check_precision(const cq_attn_opts *o, cq_err *err) {
    if (o && o->precision > CQ_ATTN_FAST)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "unknown attention precision %u", o->precision);
    return CQ_OK;
}

/* The caller's pool, else the process's default one (only reached with several threads). */
static cq_pool *attn_pool(const cq_attn_opts *o) {
    if (o && o->pool) return o->pool;
    return o && o->n_threads > 1 ? cq_pool_default() : NULL;
}

/* Threads of a call: as asked (0 = all of the caller's pool, or 1 without one), at most
 * the pool's (CQ_POOL_MAX for the default one, which grows). */
static uint32_t attn_threads(const cq_attn_opts *o) {
    uint32_t n = o && o->n_threads ? o->n_threads : o && o->pool ? cq_pool_threads(o->pool) : 1;
    if (o && o->pool && n > cq_pool_threads(o->pool)) n = cq_pool_threads(o->pool);
    return n > CQ_POOL_MAX ? CQ_POOL_MAX : n;
}

static float attn_scale(const cq_cache *c, const cq_attn_opts *o) {
    return o && o->scale != 0.0f ? o->scale : 1.0f / sqrtf((float)c->cfg.head_dim);
}

/* opts->scale: 0 (the default) or finite and positive */
static cq_status check_scale(float scale, cq_err *err) {
    if (scale != 0.0f && !(isfinite(scale) && scale > 0.0f))
        return cq_err_set(err, CQ_ERR_ARG, -1, -1,
                          "attention scale %g must be finite and positive (0 = 1/sqrt(D))",
                          (double)scale);
    return CQ_OK;
}

/* Scores beyond the fp32 range (finite but extreme queries or keys) make the softmax
 * NaN: refuse the result rather than return it (out is zeroed). */
static cq_status check_output(float *out, size_t n, cq_err *err) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(out[i])) {
            memset(out, 0, n * sizeof *out);
            return cq_err_set(err, CQ_ERR_OVERFLOW, -1, -1,
                              "attention scores overflow fp32 (queries or keys too large for "
                              "q.k * scale): no result");
        }
    return CQ_OK;
}


/* ------------------------------------------------------------- items */

/* Where the tasks of item i start in the flat task list: task0[i] (task0[n] = the total).
 * The item of a task: the last i with task0[i] <= task (binary search). */
static uint32_t item_of(const uint32_t *task0, uint32_t n, uint32_t task) {
    uint32_t lo = 0, hi = n; /* task0[lo] <= task < task0[hi] */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (task0[mid] <= task) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* The pre-scaled queries of every item, one allocation: rows[i] floats of item i at
 * (*qs)[ofs[i]]. */
static float *scale_queries(const cq_attn_item *it, uint32_t n, const size_t *ofs, float scale) {
    float *qs = malloc((ofs[n] ? ofs[n] : 1) * sizeof *qs);
    if (!qs) return NULL;
    for (uint32_t i = 0; i < n; i++)
        for (size_t k = 0; k < ofs[i + 1] - ofs[i]; k++) qs[ofs[i] + k] = it[i].q[k] * scale;
    return qs;
}

static cq_status set_bad(uint32_t *bad, uint32_t i, cq_status st) {
    if (bad) *bad = i;
    return st;
}

/* ------------------------------------------------------------- decode */

typedef struct decode_seq {
    uint32_t T, chunk, n_chunks;
} decode_seq;

typedef struct decode_job {
    const cq_attn_item *it;
    const decode_seq *ds;
    const uint32_t *task0; /* [n + 1] */
    const size_t *qofs;    /* [n + 1] */
    uint32_t n, layer;
    const float *q; /* item i: [nq][D] pre-scaled at q + qofs[i] */
    uint32_t nh;
    int prec;
    float *parts;   /* per task: m[nh] l[nh] acc[nh][D], at a stride of ps floats */
    size_t ps;      /* whole 64-byte lines: tasks on different threads never share one */
    worker_scratch ws;
    _Atomic int status;
} decode_job;

static void decode_task(void *ctx, uint32_t task, uint32_t worker) {
    decode_job *j = ctx;
    const uint32_t i = item_of(j->task0, j->n, task), local = task - j->task0[i];
    const cq_cache *c = j->it[i].c, *c0 = j->it[0].c;
    const cq_layer *l = &c->layers[j->layer];
    const decode_seq *s = &j->ds[i];
    const uint32_t D = c->cfg.head_dim, nh = j->nh;
    uint32_t h = local / s->n_chunks, ch = local % s->n_chunks;
    uint32_t a = ch * s->chunk, b = s->T - a > s->chunk ? a + s->chunk : s->T;
    float *base = j->parts + (size_t)task * j->ps;
    part pt = {base, base + nh, base + 2 * nh};
    /* scratch sized by the first item's layer: every item has its configuration */
    run_scratch *sc = worker_get(&j->ws, worker, c0, &c0->layers[j->layer], nh, j->prec);
    cq_status st = CQ_ERR_NOMEM;
    if (sc)
        st = attend_range(c, &l->heads[h], a, b, j->q + j->qofs[i] + (size_t)h * nh * D, nh, &pt, sc);
    if (st) atomic_store(&j->status, (int)st);
}

/* Log-sum-exp merge of item i's chunks into its out, per (kv head, query head) in chunk
 * order. */
static void decode_merge(const decode_job *j, uint32_t i, uint32_t H, uint32_t D) {
    const uint32_t nh = j->nh, nch = j->ds[i].n_chunks;
    const float *parts = j->parts + (size_t)j->task0[i] * j->ps;
    for (uint32_t h = 0; h < H; h++)
        for (uint32_t g = 0; g < nh; g++) {
            float M = -INFINITY, Lsum = 0.0f, *o = j->it[i].out + ((size_t)h * nh + g) * D;
            for (uint32_t ch = 0; ch < nch; ch++) {
                const float *b = parts + (size_t)(h * nch + ch) * j->ps;
                if (b[g] > M) M = b[g];
            }
            memset(o, 0, D * sizeof *o);
            for (uint32_t ch = 0; ch < nch; ch++) {
                const float *b = parts + (size_t)(h * nch + ch) * j->ps;
                float w = expf(b[g] - M);
                Lsum += w * b[nh + g];
                const float *acc = b + 2 * nh + (size_t)g * D;
                for (uint32_t d = 0; d < D; d++) o[d] += w * acc[d];
            }
            float inv = 1.0f / Lsum;
            for (uint32_t d = 0; d < D; d++) o[d] *= inv;
        }
}

cq_status cq_attend_decode_items(const cq_attn_item *it, uint32_t n, uint32_t layer,
                                 uint32_t n_q_heads, const cq_attn_opts *opts, uint32_t *bad,
                                 cq_err *err) {
    cq_err_clear(err);
    if (bad) *bad = UINT32_MAX;
    if (n == 0) return CQ_OK;
    if (!it) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "no items");
    cq_status st;
    for (uint32_t i = 0; i < n; i++) {
        const cq_cache *c = it[i].c;
        if ((st = check_common(c, layer, it[i].q, it[i].out, n_q_heads, n_q_heads, err)))
            return set_bad(bad, i, st);
        if (c->layers[layer].tokens == 0)
            return set_bad(bad, i, cq_err_set(err, CQ_ERR_STATE, -1, -1, "layer %u holds no tokens",
                                              layer));
    }
    const cq_cache *c0 = it[0].c;
    const float scale = attn_scale(c0, opts);
    if ((st = check_precision(opts, err)) || (st = check_scale(scale, err))) return st;
    const uint32_t H = c0->cfg.n_kv_heads, D = c0->cfg.head_dim, nh = n_q_heads / H;
    decode_seq *ds = malloc((size_t)n * sizeof *ds);
    uint32_t *task0 = malloc(((size_t)n + 1) * sizeof *task0);
    size_t *qofs = malloc(((size_t)n + 1) * sizeof *qofs);
    decode_job j = {it, ds, task0, qofs, n, layer, NULL, nh,
                    cq_attn_precision_resolve(opts ? opts->precision : 0), NULL, 0, {0}, 0};
    j.ps = ((size_t)nh * (D + 2) + 15) & ~(size_t)15;
    uint64_t n_tasks = 0;
    for (uint32_t i = 0; ds && task0 && qofs && i < n; i++) {
        const uint32_t T = it[i].c->layers[layer].tokens, chunk = chunk_tokens(T, H);
        ds[i] = (decode_seq){T, chunk, (T + chunk - 1) / chunk};
        task0[i] = (uint32_t)n_tasks;
        qofs[i] = (size_t)i * n_q_heads * D;
        n_tasks += (uint64_t)H * ds[i].n_chunks;
    }
    const uint32_t nthr = attn_threads(opts);
    float *qs = NULL;
    if (ds && task0 && qofs && n_tasks <= UINT32_MAX) {
        task0[n] = (uint32_t)n_tasks;
        qofs[n] = (size_t)n * n_q_heads * D;
        qs = scale_queries(it, n, qofs, scale);
        j.parts = aligned_alloc(64, (size_t)n_tasks * j.ps * sizeof(float));
    }
    if (!qs || !j.parts || !workers_init(&j.ws, nthr, (uint32_t)n_tasks)) {
        free(qs), free(j.parts), free(ds), free(task0), free(qofs);
        workers_free(&j.ws);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    j.q = qs;
    cq_pool_run(attn_pool(opts), nthr, (uint32_t)n_tasks, decode_task, &j);
    workers_free(&j.ws);
    st = (cq_status)atomic_load(&j.status);
    if (!st) {
        cq_err e1;
        for (uint32_t i = n; i-- > 0;) { /* the error names the first overflowing item */
            decode_merge(&j, i, H, D);
            if (check_output(it[i].out, (size_t)n_q_heads * D, &e1)) {
                st = set_bad(bad, i, CQ_ERR_OVERFLOW);
                if (err) *err = e1;
            }
        }
    } else {
        cq_err_set(err, st, -1, -1, "attention failed (%s)", cq_status_name(st));
    }
    free(qs), free(j.parts), free(ds), free(task0), free(qofs);
    return st;
}

cq_status cq_cache_attend(const cq_cache *c, uint32_t layer, const float *q, uint32_t n_q_heads,
                          float *out, const cq_attn_opts *opts, cq_err *err) {
    const cq_attn_item it = {c, q, out, 1, 0};
    return cq_attend_decode_items(&it, 1, layer, n_q_heads, opts, NULL, err);
}

/* ------------------------------------------------------------ prefill */

typedef struct prefill_job {
    const cq_attn_item *it;
    const uint32_t *task0; /* [n + 1]: item i's tasks are its n_q x H (query, kv head) pairs */
    const size_t *qofs;    /* [n + 1] */
    uint32_t n, layer;
    const float *q; /* item i: [n_q][nq_heads][D] pre-scaled at q + qofs[i] */
    uint32_t nh;
    int prec;
    worker_scratch ws;
    _Atomic int status;
} prefill_job;

static void prefill_task(void *ctx, uint32_t task, uint32_t worker) {
    prefill_job *j = ctx;
    const uint32_t k = item_of(j->task0, j->n, task), local = task - j->task0[k];
    const cq_cache *c = j->it[k].c, *c0 = j->it[0].c;
    const uint32_t H = c->cfg.n_kv_heads, D = c->cfg.head_dim, nh = j->nh;
    uint32_t i = local / H, h = local % H;
    size_t row = ((size_t)i * H + h) * nh * D;
    float *buf = malloc((size_t)nh * (D + 2) * sizeof(float));
    run_scratch *sc = buf ? worker_get(&j->ws, worker, c0, &c0->layers[j->layer], nh, j->prec) : NULL;
    cq_status st = CQ_ERR_NOMEM;
    if (sc) {
        part pt = {buf, buf + nh, buf + 2 * nh};
        float *out = j->it[k].out;
        st = attend_range(c, &c->layers[j->layer].heads[h], 0, j->it[k].pos0 + i + 1,
                          j->q + j->qofs[k] + row, nh, &pt, sc);
        if (!st)
            for (uint32_t g = 0; g < nh; g++) {
                float inv = 1.0f / pt.l[g];
                for (uint32_t d = 0; d < D; d++)
                    out[row + (size_t)g * D + d] = pt.acc[(size_t)g * D + d] * inv;
            }
    }
    free(buf);
    if (st) atomic_store(&j->status, (int)st);
}

cq_status cq_attend_prefill_items(const cq_attn_item *it, uint32_t n, uint32_t layer,
                                  uint32_t n_q_heads, const cq_attn_opts *opts, uint32_t *bad,
                                  cq_err *err) {
    cq_err_clear(err);
    if (bad) *bad = UINT32_MAX;
    if (n == 0) return CQ_OK;
    if (!it) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "no items");
    cq_status st;
    uint64_t n_tasks = 0;
    for (uint32_t i = 0; i < n; i++) {
        const cq_cache *c = it[i].c;
        if ((st = check_common(c, layer, it[i].q, it[i].out, n_q_heads,
                               (size_t)it[i].n_q * n_q_heads, err)))
            return set_bad(bad, i, st);
        const uint32_t T = c->layers[layer].tokens;
        if (it[i].n_q && (uint64_t)it[i].pos0 + it[i].n_q > T)
            return set_bad(bad, i,
                           cq_err_set(err, CQ_ERR_RANGE, it[i].pos0, -1,
                                      "queries at [%u, %llu) need that many tokens; layer %u "
                                      "holds %u",
                                      it[i].pos0, (unsigned long long)it[i].pos0 + it[i].n_q,
                                      layer, T));
        n_tasks += (uint64_t)it[i].n_q * c->cfg.n_kv_heads;
    }
    if (n_tasks == 0) return CQ_OK;
    const cq_cache *c0 = it[0].c;
    const uint32_t H = c0->cfg.n_kv_heads, D = c0->cfg.head_dim;
    const float scale = attn_scale(c0, opts);
    if ((st = check_precision(opts, err)) || (st = check_scale(scale, err))) return st;
    if (n_tasks > UINT32_MAX)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "%llu (query, kv head) tasks in one call",
                          (unsigned long long)n_tasks);
    uint32_t *task0 = malloc(((size_t)n + 1) * sizeof *task0);
    size_t *qofs = malloc(((size_t)n + 1) * sizeof *qofs);
    float *qs = NULL;
    if (task0 && qofs) {
        uint32_t t = 0;
        size_t o = 0;
        for (uint32_t i = 0; i < n; i++) {
            task0[i] = t, qofs[i] = o;
            t += it[i].n_q * H;
            o += (size_t)it[i].n_q * n_q_heads * D;
        }
        task0[n] = t, qofs[n] = o;
        qs = scale_queries(it, n, qofs, scale);
    }
    prefill_job j = {it, task0, qofs, n, layer, qs, n_q_heads / H,
                     cq_attn_precision_resolve(opts ? opts->precision : 0), {0}, 0};
    const uint32_t nthr = attn_threads(opts);
    if (!qs || !workers_init(&j.ws, nthr, (uint32_t)n_tasks)) {
        workers_free(&j.ws);
        free(qs), free(task0), free(qofs);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    cq_pool_run(attn_pool(opts), nthr, (uint32_t)n_tasks, prefill_task, &j);
    workers_free(&j.ws);
    st = (cq_status)atomic_load(&j.status);
    free(qs), free(task0), free(qofs);
    if (st) return cq_err_set(err, st, -1, -1, "attention failed (%s)", cq_status_name(st));
    cq_err e1;
    for (uint32_t i = n; i-- > 0;) /* the error names the first overflowing item */
        if (check_output(it[i].out, (size_t)it[i].n_q * n_q_heads * D, &e1)) {
            st = set_bad(bad, i, CQ_ERR_OVERFLOW);
            if (err) *err = e1;
        }
    return st;
}

cq_status cq_cache_attend_prefill(const cq_cache *c, uint32_t layer, const float *q, uint32_t n_q,
                                  uint32_t pos0, uint32_t n_q_heads, float *out,
                                  const cq_attn_opts *opts, cq_err *err) {
    const cq_attn_item it = {c, q, out, n_q, pos0};
    return cq_attend_prefill_items(&it, 1, layer, n_q_heads, opts, NULL, err);
}

/* ---------------------------------------------------------- reference */

cq_status cq_cache_attend_ref(const cq_cache *c, uint32_t layer, const float *q, uint32_t n_q,
                              uint32_t pos0, uint32_t n_q_heads, float *out, float scale,
                              cq_err *err) {
    cq_err_clear(err);
    cq_status st = check_common(c, layer, q, out, n_q_heads, (size_t)n_q * n_q_heads, err);
    if (st) return st;
    const cq_layer *l = &c->layers[layer];
    if ((uint64_t)pos0 + n_q > l->tokens || l->tokens == 0)
        return cq_err_set(err, CQ_ERR_RANGE, pos0, -1, "query positions beyond the %u tokens",
                          l->tokens);
    const uint32_t H = c->cfg.n_kv_heads, D = c->cfg.head_dim, nh = n_q_heads / H;
    const uint32_t T = pos0 + n_q;
    if ((st = check_scale(scale, err))) return st;
    const double sc = scale != 0.0f ? (double)scale : 1.0 / sqrt((double)D);
    float *K = malloc((size_t)T * D * sizeof *K), *V = malloc((size_t)T * D * sizeof *V);
    double *s = malloc((size_t)T * sizeof *s), *o = malloc((size_t)D * sizeof *o);
    if (!K || !V || !s || !o) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto done;
    }
    for (uint32_t h = 0; h < H && !st; h++) {
        if ((st = cq_cache_read(c, layer, h, 0, T, K, V, err))) break;
        for (uint32_t i = 0; i < n_q; i++)
            for (uint32_t g = 0; g < nh; g++) {
                const float *qq = q + (((size_t)i * H + h) * nh + g) * D;
                uint32_t n = pos0 + i + 1;
                double mx = -INFINITY, sum = 0.0;
                for (uint32_t t = 0; t < n; t++) {
                    double a = 0.0;
                    for (uint32_t d = 0; d < D; d++) a += (double)qq[d] * K[(size_t)t * D + d];
                    s[t] = a * sc;
                    if (s[t] > mx) mx = s[t];
                }
                memset(o, 0, D * sizeof *o);
                for (uint32_t t = 0; t < n; t++) {
                    double p = exp(s[t] - mx);
                    sum += p;
                    for (uint32_t d = 0; d < D; d++) o[d] += p * V[(size_t)t * D + d];
                }
                float *dst = out + (((size_t)i * H + h) * nh + g) * D;
                for (uint32_t d = 0; d < D; d++) dst[d] = (float)(o[d] / sum);
            }
    }
done:
    free(K);
    free(V);
    free(s);
    free(o);
    return st;
}
