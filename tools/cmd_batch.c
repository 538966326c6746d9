/* SPDX-License-Identifier: MIT */
/*
 * cmd_batch.c - `cq batch`: many prompts through the batch session (include/cq_batch.h):
 * continuous batching over the serving pool with prefix caching, greedy sampling.
 * Prints the throughput, the pool's memory by role at its fullest step, the bytes the
 * sharing saved, the prefix-cache counters, preemptions, the time to first token, and
 * each sequence's text; --check runs every prompt again alone (a pool of its own, no
 * prefix reuse) and compares the generated token ids, --check-logits also the logits of
 * every sampled position (a 64-bit hash of each row's bytes).
 *
 * Time to first token: the library numbers the steps (cq_batch_request_steps); the tool
 * stamps each step's start and end, so the timing stays out of the library. A sequence's
 * TTFT is the end of the step that sampled its first token, from the start of the run
 * and from the start of the step that admitted it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_batch.h"
#include "cq_file.h"
#include "cq_tool.h"

#define BATCH_OPTS (CQ_OPT_MODEL | CQ_OPT_TOK | CQ_OPT_KV | CQ_OPT_MASK | CQ_OPT_THREADS | \
                    CQ_OPT_GROUP | CQ_OPT_SINKS | CQ_OPT_FP16L | CQ_OPT_OUT)

static void batch_usage(FILE *f) {
    fprintf(f,
            "usage: cq batch --prompts FILE [-n N] [--budget MiB] [--max-batch N] [--check] [options]\n\n"
            "Run every prompt of FILE (one a line; empty lines skipped) through one batch session:\n"
            "continuous batching over the serving pool (docs/SERVING.md), prompts adopting the\n"
            "cached blocks of a shared prefix, greedy sampling, N tokens each (default 128) or up\n"
            "to the end-of-sequence token. Prints prefill and decode tokens/s, the pool's memory by\n"
            "role at its fullest step, the bytes sharing saved, prefix lookups / hits / blocks and\n"
            "tokens reused, evictions, preemptions, and each sequence's generated text.\n"
            "  --prompts FILE         the prompts (a regular file of at most 256 MiB)\n"
            "  -n N                   tokens to generate per prompt (default 128)\n"
            "  --budget MiB           the pool's byte budget in MiB (default 256; fractions allowed)\n"
            "  --max-batch N          tokens per step (default 256; at least sinks + G)\n"
            "  --max-seqs N           live sequences at once (default: --max-batch)\n"
            "  --no-prefix-cache      prompts neither adopt nor publish blocks\n"
            "  --kv-store URL         share prompt blocks with other processes through Redis:\n"
            "                         redis://HOST:PORT or redis-cluster://HOST:PORT[,HOST:PORT...]\n"
            "                         (docs/SERVING.md, \"The Redis tier\"); a newcomer fetches the\n"
            "                         blocks of its prompt that the pool lacks, a finished prefill\n"
            "                         publishes its blocks; a miss or a fault prefills locally\n"
            "  --kv-timeout MS        one Redis send or receive (default 500; connect: 200)\n"
            "  --check                run every prompt again alone (a pool of its own, same formats,\n"
            "                         no prefix reuse) and compare the token ids: exit 1 on any\n"
            "                         difference\n"
            "  --check-logits         as --check, and also compare the logits of every sampled\n"
            "                         position bit for bit (a 64-bit hash of each row's bytes):\n"
            "                         exit 1 on any difference\n"
            "  --json                 the summary, the time to first token (ttft_*_s) and every\n"
            "                         sequence (ttft_s, ttft_admitted_s, text) as one JSON object\n"
            "  --csv                  one row per sequence, with its time to first token (the\n"
            "                         summary goes to stderr)\n");
    cq_tool_opts_help(f, BATCH_OPTS);
}

/* The text of tokens continuing after prev, into a growing buffer. */
static char *detok(const cq_tokenizer *tok, int32_t prev, const int32_t *t, uint32_t n, size_t *len) {
    size_t cap = 64 + (size_t)n * 16, k = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        char piece[256];
        int m = cq_tokenizer_decode(tok, i ? t[i - 1] : prev, t[i], piece, sizeof piece);
        if (m <= 0) continue;
        if (k + (size_t)m + 1 > cap) {
            cap = (k + (size_t)m + 1) * 2;
            char *ns = realloc(s, cap);
            if (!ns) {
                free(s);
                return NULL;
            }
            s = ns;
        }
        memcpy(s + k, piece, (size_t)m);
        k += (size_t)m;
    }
    s[k] = '\0';
    *len = k;
    return s;
}

static int cmp_dbl(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* a number or null (JSON has no NaN) */
static void json_num(FILE *f, double v) {
    if (isnan(v)) fputs("null", f);
    else fprintf(f, "%.6f", v);
}

typedef struct prompt_set {
    int32_t **tok;
    uint32_t *n;
    uint32_t count;
} prompt_set;

static void prompts_free(prompt_set *p) {
    for (uint32_t i = 0; i < p->count; i++) free(p->tok[i]);
    free(p->tok);
    free(p->n);
    memset(p, 0, sizeof *p);
}

/* One prompt a line (\r\n accepted; empty lines skipped), tokenized with BOS when the
 * tokenizer wants it. 0 or an exit code. */
static int read_prompts(const char *path, const cq_tokenizer *tok, prompt_set *ps) {
    memset(ps, 0, sizeof *ps);
    char *buf = NULL;
    size_t len = 0;
    cq_err e;
    cq_err_clear(&e);
    cq_status st = cq_read_text(path, CQ_TEXT_MAX_BYTES, &buf, &len, &e);
    if (st) {
        cq_report("batch", st, &e);
        return 1;
    }
    uint32_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    ps->tok = calloc(lines, sizeof *ps->tok);
    ps->n = calloc(lines, sizeof *ps->n);
    int rc = ps->tok && ps->n ? 0 : 1;
    for (size_t a = 0; !rc && a < len;) {
        size_t b = a;
        while (b < len && buf[b] != '\n') b++;
        size_t end = b;
        if (end > a && buf[end - 1] == '\r') end--;
        if (end > a) {
            size_t cap = end - a + 8, n = 0;
            int32_t *t = malloc(cap * sizeof *t);
            if (!t) rc = 1;
            else if ((st = cq_tokenizer_encode(tok, buf + a, end - a, cq_tokenizer_add_bos(tok), t, cap,
                                               &n, &e))) {
                cq_report("batch", st, &e);
                free(t);
                rc = 1;
            } else if (n > UINT32_MAX) {
                free(t);
                rc = 1;
            } else {
                ps->tok[ps->count] = t;
                ps->n[ps->count++] = (uint32_t)n;
            }
        }
        a = b + 1;
    }
    free(buf);
    if (!rc && !ps->count) {
        fprintf(stderr, "cq batch: %s holds no prompt\n", path);
        rc = 1;
    }
    if (rc) prompts_free(ps);
    return rc;
}

/* --check-logits: a 64-bit FNV-1a hash of the bytes of each logits row a token is
 * sampled from, per (sequence, index). The main run records them (a sequence rerun after
 * a preemption must give the same hash again: `unstable` counts those that do not); each
 * run alone compares its rows with them. */
typedef struct logit_log {
    uint32_t vocab, count;
    uint64_t **hash;   /* [count][n_gen] */
    uint8_t **seen;    /* [count][n_gen] */
    uint64_t unstable;
} logit_log;

static uint64_t row_hash(const float *lg, uint32_t V) {
    const unsigned char *p = (const unsigned char *)lg;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < (size_t)V * sizeof *lg; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void logit_log_free(logit_log *l) {
    for (uint32_t i = 0; i < l->count; i++) {
        if (l->hash) free(l->hash[i]);
        if (l->seen) free(l->seen[i]);
    }
    free(l->hash);
    free(l->seen);
    memset(l, 0, sizeof *l);
}

static int logit_log_init(logit_log *l, uint32_t count, uint32_t n_gen, uint32_t vocab) {
    memset(l, 0, sizeof *l);
    l->vocab = vocab;
    l->hash = calloc(count, sizeof *l->hash);
    l->seen = calloc(count, sizeof *l->seen);
    if (!l->hash || !l->seen) return 1;
    l->count = count;
    for (uint32_t i = 0; i < count; i++) {
        l->hash[i] = calloc(n_gen ? n_gen : 1, sizeof **l->hash);
        l->seen[i] = calloc(n_gen ? n_gen : 1, 1);
        if (!l->hash[i] || !l->seen[i]) return 1;
    }
    return 0;
}

static void logits_record(void *user, uint32_t id, uint32_t index, const float *lg) {
    logit_log *l = user;
    if (id >= l->count) return;
    const uint64_t h = row_hash(lg, l->vocab);
    if (l->seen[id][index] && l->hash[id][index] != h) l->unstable++;
    l->hash[id][index] = h;
    l->seen[id][index] = 1;
}

/* one prompt alone against the main run's sequence seq */
typedef struct logit_cmp {
    const logit_log *main;
    uint32_t seq, compared, differ, first_bad;
} logit_cmp;

static void logits_compare(void *user, uint32_t id, uint32_t index, const float *lg) {
    logit_cmp *c = user;
    (void)id; /* the only request of its batch */
    const logit_log *l = c->main;
    const uint64_t h = row_hash(lg, l->vocab);
    if (!l->seen[c->seq][index] || l->hash[c->seq][index] != h) {
        if (!c->differ) c->first_bad = index;
        c->differ++;
    }
    c->compared++;
}

/* Everything a run of the batch session needs besides the prompts. */
typedef struct run_cfg {
    const cq_model *model;
    const cq_cache_config *cc;
    uint64_t budget;
    uint32_t max_batch, max_seqs, threads, n_gen;
    int no_prefix;
    cq_tool_kvstore *kvs;  /* --kv-store, or NULL */
    int32_t stop[2];
    uint32_t n_stop;
    cq_pool *pool;
    cq_batch_logits_fn on_logits; /* --check-logits, or NULL */
    void *logits_user;
    uint32_t precision; /* the format's @exact / @fast, or 0 */
} run_cfg;

static cq_status make_batch(const run_cfg *rc, int no_prefix, cq_batch **b, cq_err *e) {
    cq_batch_opts bo;
    cq_batch_opts_default(&bo);
    bo.cache = rc->cc;
    bo.budget_bytes = rc->budget;
    bo.max_batch = rc->max_batch;
    bo.max_seqs = rc->max_seqs;
    bo.n_threads = rc->threads;
    bo.pool = rc->pool;
    bo.no_prefix_cache = no_prefix;
    if (rc->kvs && !no_prefix) {
        bo.prefix_adopt = cq_tool_kvstore_batch_adopt;
        bo.prefix_published = cq_tool_kvstore_batch_published;
        bo.prefix_user = rc->kvs;
    }
    bo.stop_tokens = rc->stop;
    bo.n_stop = rc->n_stop;
    bo.on_logits = rc->on_logits;
    bo.logits_user = rc->logits_user;
    bo.attn_precision = rc->precision;
    return cq_batch_create(rc->model, &bo, b, e);
}

static const char *stop_name(cq_batch_stop s) {
    switch (s) {
    case CQ_BATCH_LENGTH: return "length";
    case CQ_BATCH_STOPTOK: return "eos";
    case CQ_BATCH_CONTEXT: return "context";
    default: return "running";
    }
}

/* --check: every prompt alone; the ids of those that differ. Returns the count whose
 * tokens differ, or -1 on an error (reported). With ll (--check-logits) also the logits:
 * *bad_logits the sequences with a differing or missing row, *positions the rows compared. */
static int check_alone(const run_cfg *rc_main, const prompt_set *ps, const cq_batch *main_b,
                       const logit_log *ll, int *bad_logits, uint64_t *positions) {
    int bad = 0;
    run_cfg rcv = *rc_main;
    const run_cfg *rc = &rcv;
    logit_cmp lc;
    rcv.on_logits = ll ? logits_compare : NULL;
    rcv.logits_user = ll ? &lc : NULL;
    *bad_logits = 0;
    *positions = 0;
    cq_progress pr;
    cq_progress_start(&pr, "cq batch: --check: prompt", ps->count);
    for (uint32_t i = 0; i < ps->count; i++) {
        cq_batch *b = NULL;
        cq_err e;
        cq_err_clear(&e);
        uint32_t id;
        memset(&lc, 0, sizeof lc);
        lc.main = ll;
        lc.seq = i;
        cq_status st = make_batch(rc, 1, &b, &e);
        if (!st) st = cq_batch_submit(b, ps->tok[i], ps->n[i], rc->n_gen, &id, &e);
        while (!st && cq_batch_unfinished(b)) st = cq_batch_step(b, NULL, &e);
        if (st) {
            cq_progress_end(&pr);
            cq_report("batch", st, &e);
            cq_batch_free(b);
            return -1;
        }
        const int32_t *ta, *tb;
        uint32_t na, nb;
        cq_batch_stop sa, sb;
        cq_batch_result(b, 0, &ta, &na, &sa, NULL);
        cq_batch_result(main_b, i, &tb, &nb, &sb, NULL);
        if (na != nb || sa != sb || (na && memcmp(ta, tb, na * sizeof *ta))) {
            uint32_t at = 0;
            while (at < na && at < nb && ta[at] == tb[at]) at++;
            cq_progress_end(&pr);
            fprintf(stderr, "cq batch: --check: sequence %u differs from running alone at generated "
                    "token %u (batched %u tokens, %s; alone %u tokens, %s)\n", i, at, nb,
                    stop_name(sb), na, stop_name(sa));
            bad++;
        }
        if (ll) {
            uint32_t recorded = 0;
            for (uint32_t k = 0; k < rc->n_gen; k++) recorded += ll->seen[i][k];
            *positions += lc.compared;
            if (lc.differ || recorded != lc.compared) {
                cq_progress_end(&pr);
                if (lc.differ)
                    fprintf(stderr, "cq batch: --check-logits: sequence %u: the logits of %u of %u sampled "
                            "positions differ from running alone (the first at generated token %u)\n",
                            i, lc.differ, lc.compared, lc.first_bad);
                else
                    fprintf(stderr, "cq batch: --check-logits: sequence %u: %u sampled positions batched, "
                            "%u alone\n", i, recorded, lc.compared);
                (*bad_logits)++;
            }
        }
        cq_batch_free(b);
        cq_progress_update(&pr, i + 1, NULL);
    }
    cq_progress_end(&pr);
    return bad;
}

int cq_cmd_batch(int argc, char **argv) {
    const char *prompts = NULL;
    uint32_t n_gen = 128, max_batch = 256, max_seqs = 0;
    double budget_mib = 256;
    int check = 0, check_logits = 0, no_prefix = 0;
    const char *kv_store = NULL;
    uint32_t kv_timeout = 0;
    cq_tool_opts op;
    cq_tool_opts_init(&op);
    op.kv = "fp16/fp16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        int r = cq_tool_opt("batch", &op, BATCH_OPTS, argc, argv, &i);
        if (r == 1) continue;
        if (r == 2) return 2;
        if (cq_is_help(a)) {
            batch_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--prompts") && has) prompts = argv[++i];
        else if (!strcmp(a, "-n") && has) {
            if (cq_arg_u32(argv[++i], 0, 1u << 20, &n_gen)) goto bad;
        } else if (!strcmp(a, "--budget") && has) {
            if (cq_arg_f64(argv[++i], &budget_mib) || !(budget_mib * 1048576.0 >= 1.0) ||
                budget_mib > 1048576.0)
                goto bad;
        } else if (!strcmp(a, "--max-batch") && has) {
            if (cq_arg_u32(argv[++i], 1, 1u << 20, &max_batch)) goto bad;
        } else if (!strcmp(a, "--max-seqs") && has) {
            if (cq_arg_u32(argv[++i], 1, 1u << 20, &max_seqs)) goto bad;
        } else if (!strcmp(a, "--check")) check = 1;
        else if (!strcmp(a, "--check-logits")) check = check_logits = 1;
        else if (!strcmp(a, "--no-prefix-cache")) no_prefix = 1;
        else if (!strcmp(a, "--kv-store") && has) kv_store = argv[++i];
        else if (!strcmp(a, "--kv-timeout") && has) {
            if (cq_arg_u32(argv[++i], 1, 600000, &kv_timeout)) goto bad;
        }
        else {
            fprintf(stderr, "cq batch: unknown or incomplete option '%s' (cq batch --help)\n", a);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "cq batch: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    if (cq_tool_opts_check("batch", &op)) return 2;
    if (!prompts) {
        fprintf(stderr, "cq batch: --prompts FILE is required (cq batch --help)\n");
        return 2;
    }
    if (kv_store && no_prefix) {
        fprintf(stderr, "cq batch: --kv-store shares prefix blocks: it cannot go with --no-prefix-cache\n");
        return 2;
    }
    if (strchr(op.kv, ',')) {
        fprintf(stderr, "cq batch: --kv takes one K/V format\n");
        return 2;
    }
    cq_err e;
    cq_err_clear(&e);
    cq_kv_format fmt;
    cq_status st = cq_kv_format_parse(op.kv, &fmt, &e);
    if (st) {
        cq_report("batch", st, &e);
        return 2;
    }
    if (fmt.reference) {
        fprintf(stderr, "cq batch: fp32 is the oracle path, not a cache format: the pool needs one\n");
        return 2;
    }
    cq_tool_model tm;
    int rc = cq_tool_model_load("batch", op.model, op.tokenizer, &tm);
    if (rc) return rc;
    const cq_model_config *c = cq_model_get_config(tm.model);
    uint8_t *masks = NULL;
    cq_layer_codecs *lbuf = NULL;
    cq_batch *b = NULL;
    cq_pool *pool = NULL;
    cq_tool_kvstore *kvs = NULL;
    prompt_set ps = {0};
    logit_log ll = {0};
    double *t_step = NULL; /* [2 * steps]: each step's start and end, from t0 */
    size_t cap_step = 0;
    double *ttft = NULL, *ttft_adm = NULL, *sorted = NULL;
    char **texts = NULL;
    size_t *tlen = NULL;
    rc = 1;
    if (cq_tool_load_mask("batch", &op, c, &masks)) goto out;
    if ((fmt.key == CQ_CODEC_CQ4P || fmt.val == CQ_CODEC_CQ4P) && !masks) {
        fprintf(stderr, "cq batch: format %s needs --mask FILE (cq calibrate writes one)\n", fmt.name);
        rc = 2;
        goto out;
    }
    char why[256];
    if (cq_kv_format_na(c, &fmt, op.group, masks, why, sizeof why)) {
        fprintf(stderr, "cq batch: %s: %s\n", fmt.name, why);
        rc = 2;
        goto out;
    }
    if ((rc = read_prompts(prompts, tm.tok, &ps))) goto out;
    rc = 1;
    cq_kv_setup po;
    cq_tool_kv_setup(&op, masks, &po);
    po.page_tokens = 0; /* the pool's pages are blocks of G */
    if (!(lbuf = calloc(c->n_layers, sizeof *lbuf))) goto oom;
    cq_cache_config cc;
    cq_kv_format_cache_config(c, &fmt, &po, lbuf, &cc);
    if (op.threads > 1) {
        cq_pool_opts pop;
        cq_pool_opts_default(&pop, op.threads);
        if ((st = cq_pool_create(&pop, &pool))) {
            cq_report("batch", st, NULL);
            goto out;
        }
    }
    if (kv_store) {
        cq_kvstore_opts ko;
        memset(&ko, 0, sizeof ko); /* 0: each field's default */
        ko.command_timeout_ms = kv_timeout;
        if ((rc = cq_tool_kvstore_open("batch", kv_store, &ko, &kvs))) goto out;
        rc = 1;
    }
    run_cfg rcfg = {tm.model, &cc, (uint64_t)(budget_mib * 1048576.0), max_batch, max_seqs, op.threads,
                    n_gen, no_prefix, kvs, {0, 0}, 0, pool, NULL, NULL, fmt.precision};
    if (cq_tokenizer_eos(tm.tok) >= 0) rcfg.stop[rcfg.n_stop++] = cq_tokenizer_eos(tm.tok);
    if (cq_tokenizer_bos(tm.tok) >= 0) rcfg.stop[rcfg.n_stop++] = cq_tokenizer_bos(tm.tok);
    if (check_logits) {
        if (logit_log_init(&ll, ps.count, n_gen, c->vocab_size)) goto oom;
        rcfg.on_logits = logits_record;
        rcfg.logits_user = &ll;
    }
    if ((st = make_batch(&rcfg, no_prefix, &b, &e))) {
        cq_report("batch", st, &e);
        rc = st == CQ_ERR_ARG ? 2 : 1;
        goto out;
    }
    uint64_t work = 0, n_prompt_tokens = 0;
    for (uint32_t i = 0; i < ps.count; i++) {
        uint32_t id;
        if ((st = cq_batch_submit(b, ps.tok[i], ps.n[i], n_gen, &id, &e))) {
            fprintf(stderr, "cq batch: prompt %u (line order, empty lines skipped): ", i);
            cq_report("batch", st, &e);
            goto out;
        }
        work += ps.n[i] + (uint64_t)n_gen;
        n_prompt_tokens += ps.n[i];
    }
    /* the run: every step timed; a step that computed prompt tokens counts as a prefill
     * step, one that only decoded as a decode step */
    double t_prefill = 0, t_decode = 0;
    uint64_t dec_only_tokens = 0;
    cq_progress pr;
    cq_progress_start(&pr, "cq batch: tokens", work);
    const double t0 = cq_tool_now();
    while (cq_batch_unfinished(b)) {
        cq_batch_step_info si;
        const double ts = cq_tool_now();
        if ((st = cq_batch_step(b, &si, &e))) {
            cq_progress_end(&pr);
            cq_report("batch", st, &e);
            goto out;
        }
        const double te = cq_tool_now(), dt = te - ts;
        cq_batch_stats sn;
        cq_batch_stats_get(b, &sn);
        if (sn.steps * 2 > cap_step) { /* the step just numbered sn.steps */
            size_t nc = cap_step ? cap_step * 2 : 512;
            while (nc < sn.steps * 2) nc *= 2;
            double *nt = realloc(t_step, nc * sizeof *nt);
            if (!nt) {
                cq_progress_end(&pr);
                goto oom;
            }
            t_step = nt;
            cap_step = nc;
        }
        if (sn.steps) {
            t_step[2 * (sn.steps - 1)] = ts - t0;
            t_step[2 * (sn.steps - 1) + 1] = te - t0;
        }
        if (si.prefill_tokens) t_prefill += dt;
        else {
            t_decode += dt;
            dec_only_tokens += si.decode_tokens;
        }
        cq_batch_stats bs;
        cq_batch_stats_get(b, &bs);
        uint64_t done = bs.prefill_tokens + bs.adopted_tokens + bs.generated - bs.recomputed_tokens;
        char extra[64];
        snprintf(extra, sizeof extra, "%u live", si.live);
        cq_progress_update(&pr, done < work ? done : work - 1, extra);
    }
    const double t_all = cq_tool_now() - t0;
    cq_progress_update(&pr, work, NULL);
    cq_progress_end(&pr);
    cq_batch_stats bs;
    cq_batch_stats_get(b, &bs);
    /* time to first token: NAN for a sequence that sampled none (-n 0) */
    ttft = calloc(ps.count, sizeof *ttft);
    ttft_adm = calloc(ps.count, sizeof *ttft_adm);
    sorted = calloc(2 * (size_t)ps.count, sizeof *sorted);
    if (!ttft || !ttft_adm || !sorted) goto oom;
    uint32_t n_ttft = 0;
    double ttft_sum = 0, ttft_adm_sum = 0;
    for (uint32_t i = 0; i < ps.count; i++) {
        uint64_t sa = 0, sf = 0;
        cq_batch_request_steps(b, i, &sa, &sf, NULL);
        ttft[i] = ttft_adm[i] = NAN;
        if (!sf || !sa || sf > bs.steps || sa > sf) continue;
        ttft[i] = t_step[2 * (sf - 1) + 1];
        ttft_adm[i] = t_step[2 * (sf - 1) + 1] - t_step[2 * (sa - 1)];
        sorted[n_ttft] = ttft[i];
        sorted[ps.count + n_ttft++] = ttft_adm[i];
        ttft_sum += ttft[i];
        ttft_adm_sum += ttft_adm[i];
    }
    double tt_mean = NAN, tt_med = NAN, tt_max = NAN, ta_mean = NAN, ta_med = NAN, ta_max = NAN;
    if (n_ttft) {
        qsort(sorted, n_ttft, sizeof *sorted, cmp_dbl);
        qsort(sorted + ps.count, n_ttft, sizeof *sorted, cmp_dbl);
        const double *sa = sorted + ps.count;
        tt_mean = ttft_sum / n_ttft;
        ta_mean = ttft_adm_sum / n_ttft;
        tt_med = n_ttft % 2 ? sorted[n_ttft / 2] : (sorted[n_ttft / 2 - 1] + sorted[n_ttft / 2]) / 2;
        ta_med = n_ttft % 2 ? sa[n_ttft / 2] : (sa[n_ttft / 2 - 1] + sa[n_ttft / 2]) / 2;
        tt_max = sorted[n_ttft - 1];
        ta_max = sa[n_ttft - 1];
    }
    cq_kvpool_mem fin;
    cq_kvpool_memory(cq_batch_kvpool(b), &fin);
    const cq_kvpool_mem *pk = &bs.peak;
    /* texts */
    texts = calloc(ps.count, sizeof *texts);
    tlen = calloc(ps.count, sizeof *tlen);
    if (!texts || !tlen) goto oom;
    for (uint32_t i = 0; i < ps.count; i++) {
        const int32_t *t;
        uint32_t n;
        cq_batch_result(b, i, &t, &n, NULL, NULL);
        if (!(texts[i] = detok(tm.tok, ps.tok[i][ps.n[i] - 1], t, n, &tlen[i]))) goto oom;
    }
    const char *label = cq_tool_model_label(tm.path);
    FILE *sf = op.csv ? stderr : stdout; /* the summary */
    if (op.json) {
        printf("{\"model\": ");
        cq_tool_json_str(stdout, tm.path, strlen(tm.path));
        printf(", \"model_note\": ");
        cq_tool_json_str(stdout, label, strlen(label));
        printf(", \"kv\": \"%s\", \"group\": %u, \"sinks\": %u, \"budget_bytes\": %llu, \"max_batch\": %u, "
               "\"threads\": %u, \"prefix_cache\": %d, \"prompts\": %u, \"n\": %u,\n",
               fmt.name, cc.group ? cc.group : 128, cc.n_sinks, (unsigned long long)rcfg.budget,
               max_batch, op.threads, !no_prefix, ps.count, n_gen);
        printf(" \"seconds\": %.6f, \"prefill_step_seconds\": %.6f, \"decode_step_seconds\": %.6f,\n"
               " \"steps\": %llu, \"prompt_tokens\": %llu, \"prefill_tokens\": %llu, \"decode_tokens\": %llu, "
               "\"generated\": %llu,\n \"prefill_tokens_per_s\": %.2f, \"decode_tokens_per_s\": %.2f, "
               "\"tokens_per_s\": %.2f,\n",
               t_all, t_prefill, t_decode, (unsigned long long)bs.steps,
               (unsigned long long)n_prompt_tokens, (unsigned long long)bs.prefill_tokens,
               (unsigned long long)bs.decode_tokens, (unsigned long long)bs.generated,
               t_prefill > 0 ? bs.prefill_tokens / t_prefill : 0.0,
               t_decode > 0 ? dec_only_tokens / t_decode : 0.0,
               t_all > 0 ? (bs.prefill_tokens + bs.decode_tokens) / t_all : 0.0);
        printf(" \"ttft_mean_s\": ");
        json_num(stdout, tt_mean);
        printf(", \"ttft_median_s\": ");
        json_num(stdout, tt_med);
        printf(", \"ttft_max_s\": ");
        json_num(stdout, tt_max);
        printf(", \"ttft_admitted_mean_s\": ");
        json_num(stdout, ta_mean);
        printf(", \"ttft_admitted_median_s\": ");
        json_num(stdout, ta_med);
        printf(", \"ttft_admitted_max_s\": ");
        json_num(stdout, ta_max);
        printf(",\n");
        printf(" \"peak_memory\": {\"referenced\": %llu, \"shared\": %llu, \"cached\": %llu, \"tails\": %llu, "
               "\"block_slack\": %llu, \"arena_slack\": %llu, \"index\": %llu, \"sequences\": %llu, "
               "\"tables\": %llu, \"total\": %llu, \"shared_saved\": %llu, \"sequences_live\": %u},\n",
               (unsigned long long)pk->referenced, (unsigned long long)bs.peak_shared_bytes,
               (unsigned long long)pk->cached, (unsigned long long)pk->tails,
               (unsigned long long)bs.peak_block_slack, (unsigned long long)pk->arena_slack,
               (unsigned long long)pk->index, (unsigned long long)pk->sequences,
               (unsigned long long)pk->tables, (unsigned long long)pk->total,
               (unsigned long long)pk->shared_saved, pk->n_seqs);
        printf(" \"final_memory\": {\"cached\": %llu, \"total\": %llu},\n",
               (unsigned long long)fin.cached, (unsigned long long)fin.total);
        printf(" \"prefix_lookups\": %llu, \"prefix_hits\": %llu, \"blocks_reused\": %llu, "
               "\"tokens_reused\": %llu, \"blocks_published\": %llu, \"duplicates\": %llu, "
               "\"blocks_evicted\": %llu, \"bytes_evicted\": %llu, \"preemptions\": %llu, "
               "\"deferrals\": %llu, \"recomputed_tokens\": %llu, \"peak_live\": %u,\n",
               (unsigned long long)fin.prefix.lookups, (unsigned long long)fin.prefix.hits,
               (unsigned long long)fin.prefix.blocks_reused, (unsigned long long)fin.prefix.tokens_reused,
               (unsigned long long)fin.prefix.commits, (unsigned long long)fin.prefix.duplicates,
               (unsigned long long)fin.prefix.blocks_evicted, (unsigned long long)fin.prefix.bytes_evicted,
               (unsigned long long)bs.preemptions, (unsigned long long)bs.deferrals,
               (unsigned long long)bs.recomputed_tokens, bs.peak_seqs);
        if (kvs) {
            printf(" ");
            cq_tool_kvstore_report(stdout, kvs, 1);
            printf(",\n");
        }
        printf(" \"sequences\": [\n");
        for (uint32_t i = 0; i < ps.count; i++) {
            const int32_t *t;
            uint32_t n;
            cq_batch_stop sp;
            cq_batch_result(b, i, &t, &n, &sp, NULL);
            printf("  {\"id\": %u, \"prompt_tokens\": %u, \"generated\": %u, \"stop\": \"%s\", \"ttft_s\": ",
                   i, ps.n[i], n, stop_name(sp));
            json_num(stdout, ttft[i]);
            printf(", \"ttft_admitted_s\": ");
            json_num(stdout, ttft_adm[i]);
            printf(", \"text\": ");
            cq_tool_json_str(stdout, texts[i], tlen[i]);
            printf("}%s\n", i + 1 < ps.count ? "," : "");
        }
        printf(" ]");
    } else {
        fprintf(sf, "cq batch: model %s%s%s%s\n", tm.path, *label ? " (" : "", label, *label ? ")" : "");
        fprintf(sf, "kv %s, G %u, sinks %u, budget %g MiB, max batch %u tokens, %u threads, prefix cache %s; "
                "%u prompts (%llu tokens), -n %u\n", fmt.name, cc.group ? cc.group : 128, cc.n_sinks,
                budget_mib, max_batch, op.threads, no_prefix ? "off" : "on", ps.count,
                (unsigned long long)n_prompt_tokens, n_gen);
        fprintf(sf, "\n| figure | value |\n|---|---:|\n");
        fprintf(sf, "| wall time (s) | %.3f |\n| steps | %llu |\n", t_all, (unsigned long long)bs.steps);
        fprintf(sf, "| prompt tokens computed / adopted | %llu / %llu |\n",
                (unsigned long long)bs.prefill_tokens, (unsigned long long)bs.adopted_tokens);
        fprintf(sf, "| prefill tokens/s (steps with prompt tokens) | %.1f |\n",
                t_prefill > 0 ? bs.prefill_tokens / t_prefill : 0.0);
        fprintf(sf, "| decode tokens/s (decode-only steps) | %.1f |\n",
                t_decode > 0 ? dec_only_tokens / t_decode : 0.0);
        fprintf(sf, "| all tokens/s (prefill + decode over the wall time) | %.1f |\n",
                t_all > 0 ? (bs.prefill_tokens + bs.decode_tokens) / t_all : 0.0);
        fprintf(sf, "| generated tokens | %llu |\n", (unsigned long long)bs.generated);
        fprintf(sf, "| time to first token from the start, mean / median / max (s) | %.3f / %.3f / %.3f |\n",
                tt_mean, tt_med, tt_max);
        fprintf(sf, "| time to first token from admission, mean / median / max (s) | %.3f / %.3f / %.3f |\n",
                ta_mean, ta_med, ta_max);
        fprintf(sf, "| peak live sequences | %u |\n", bs.peak_seqs);
        fprintf(sf, "| memory at the fullest step: blocks referenced (bytes) | %llu |\n",
                (unsigned long long)pk->referenced);
        fprintf(sf, "| - of which shared by several sequences | %llu |\n",
                (unsigned long long)bs.peak_shared_bytes);
        fprintf(sf, "| cached, unreferenced | %llu |\n| fp16 tails | %llu |\n",
                (unsigned long long)pk->cached, (unsigned long long)pk->tails);
        fprintf(sf, "| open-block slack / arena slack | %llu / %llu |\n",
                (unsigned long long)bs.peak_block_slack, (unsigned long long)pk->arena_slack);
        fprintf(sf, "| index / sequences / tables | %llu / %llu / %llu |\n",
                (unsigned long long)pk->index, (unsigned long long)pk->sequences,
                (unsigned long long)pk->tables);
        fprintf(sf, "| total | %llu |\n", (unsigned long long)pk->total);
        fprintf(sf, "| bytes shared (saved by sharing) | %llu |\n", (unsigned long long)pk->shared_saved);
        fprintf(sf, "| prefix lookups / hits | %llu / %llu |\n", (unsigned long long)fin.prefix.lookups,
                (unsigned long long)fin.prefix.hits);
        fprintf(sf, "| blocks / tokens reused | %llu / %llu |\n",
                (unsigned long long)fin.prefix.blocks_reused, (unsigned long long)fin.prefix.tokens_reused);
        fprintf(sf, "| blocks evicted | %llu |\n", (unsigned long long)fin.prefix.blocks_evicted);
        fprintf(sf, "| preemptions / deferred admissions | %llu / %llu |\n",
                (unsigned long long)bs.preemptions, (unsigned long long)bs.deferrals);
        fprintf(sf, "\n");
        if (kvs) {
            cq_tool_kvstore_report(sf, kvs, 0);
            fprintf(sf, "\n");
        }
        if (op.csv) printf("id,prompt_tokens,generated,stop,ttft_s,ttft_admitted_s,text\n");
        for (uint32_t i = 0; i < ps.count; i++) {
            const int32_t *t;
            uint32_t n;
            cq_batch_stop sp;
            cq_batch_result(b, i, &t, &n, &sp, NULL);
            if (op.csv) {
                printf("%u,%u,%u,%s,", i, ps.n[i], n, stop_name(sp));
                if (!isnan(ttft[i])) printf("%.6f,%.6f,\"", ttft[i], ttft_adm[i]);
                else printf(",,\"");
                for (size_t k = 0; k < tlen[i]; k++) {
                    if (texts[i][k] == '"') putchar('"');
                    putchar(texts[i][k]);
                }
                printf("\"\n");
            } else {
                printf("[%u] (%u prompt tokens, %u generated, %s) ", i, ps.n[i], n, stop_name(sp));
                for (size_t k = 0; k < tlen[i]; k++) {
                    if (texts[i][k] == '\n') fputs("\\n", stdout);
                    else putchar(texts[i][k]);
                }
                printf("\n");
            }
        }
    }
    rc = 0;
    if (check) {
        int bad_logits = 0;
        uint64_t positions = 0;
        /* CQ_TEST_LOGITS_FLIP=SEQ:INDEX (tests only): change the hash recorded for one
         * sampled position, so the test sees --check-logits fail */
        const char *flip = getenv("CQ_TEST_LOGITS_FLIP");
        unsigned fs, fi;
        if (check_logits && flip && sscanf(flip, "%u:%u", &fs, &fi) == 2 && fs < ll.count && fi < n_gen)
            ll.hash[fs][fi] ^= 1;
        int bad = check_alone(&rcfg, &ps, b, check_logits ? &ll : NULL, &bad_logits, &positions);
        if (check_logits && ll.unstable) bad_logits++; /* a rerun gave other logits */
        if (bad || bad_logits) rc = 1;
        if (op.json) {
            printf(",\n \"check\": {\"sequences\": %u, \"differing\": %d", ps.count, bad < 0 ? -1 : bad);
            if (check_logits)
                printf(", \"logits\": {\"positions\": %llu, \"differing\": %d, \"unstable\": %llu}",
                       (unsigned long long)positions, bad < 0 ? -1 : bad_logits,
                       (unsigned long long)ll.unstable);
            printf("}");
        }
        fprintf(stderr, "cq batch: --check: %s\n",
                bad < 0 ? "failed to run"
                        : bad ? "sequences differ from running alone"
                              : "every sequence's tokens equal running it alone");
        if (check_logits && bad >= 0) {
            if (ll.unstable)
                fprintf(stderr, "cq batch: --check-logits: %llu logits rows changed when a preempted "
                        "sequence ran again\n", (unsigned long long)ll.unstable);
            fprintf(stderr, "cq batch: --check-logits: %s (%llu sampled positions compared)\n",
                    bad_logits ? "logits differ from running alone"
                               : "every sequence's logits equal running it alone bit for bit",
                    (unsigned long long)positions);
        }
    }
    if (op.json) printf("\n}\n");
    goto out;
oom:
    fprintf(stderr, "cq batch: CQ_ERR_NOMEM: out of memory\n");
    rc = 1;
out:
    for (uint32_t i = 0; texts && i < ps.count; i++) free(texts[i]);
    logit_log_free(&ll);
    free(t_step);
    free(ttft);
    free(ttft_adm);
    free(sorted);
    free(texts);
    free(tlen);
    cq_batch_free(b);
    cq_tool_kvstore_free(kvs);
    cq_pool_free(pool);
    prompts_free(&ps);
    free(masks);
    free(lbuf);
    cq_tool_model_free(&tm);
    return rc;
}
