/* SPDX-License-Identifier: MIT */
/*
 * cmd_batch.c - `cq batch`: many prompts through the batch session (include/cq_batch.h):
 * continuous batching over the serving pool with prefix caching, greedy sampling.
 * Prints the throughput, the pool's memory by role at its fullest step, the bytes the
 * sharing saved, the prefix-cache counters, preemptions, and each sequence's text;
 * --check runs every prompt again alone (a pool of its own, no prefix reuse) and
 * compares the generated token ids.
 */
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
            "  --csv                  one row per sequence (the summary goes to stderr)\n");
    cq_tool_opts_help(f, BATCH_OPTS);
}

static void json_str(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
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

/* --check: every prompt alone; the ids of those that differ. Returns the count differing,
 * or -1 on an error (reported). */
static int check_alone(const run_cfg *rc, const prompt_set *ps, const cq_batch *main_b) {
    int bad = 0;
    cq_progress pr;
    cq_progress_start(&pr, "cq batch: --check: prompt", ps->count);
    for (uint32_t i = 0; i < ps->count; i++) {
        cq_batch *b = NULL;
        cq_err e;
        cq_err_clear(&e);
        uint32_t id;
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
    int check = 0, no_prefix = 0;
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
                    n_gen, no_prefix, kvs, {0, 0}, 0, pool};
    if (cq_tokenizer_eos(tm.tok) >= 0) rcfg.stop[rcfg.n_stop++] = cq_tokenizer_eos(tm.tok);
    if (cq_tokenizer_bos(tm.tok) >= 0) rcfg.stop[rcfg.n_stop++] = cq_tokenizer_bos(tm.tok);
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
        const double dt = cq_tool_now() - ts;
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
        json_str(stdout, tm.path, strlen(tm.path));
        printf(", \"model_note\": ");
        json_str(stdout, label, strlen(label));
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
            printf("  {\"id\": %u, \"prompt_tokens\": %u, \"generated\": %u, \"stop\": \"%s\", \"text\": ",
                   i, ps.n[i], n, stop_name(sp));
            json_str(stdout, texts[i], tlen[i]);
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
        if (op.csv) printf("id,prompt_tokens,generated,stop,text\n");
        for (uint32_t i = 0; i < ps.count; i++) {
            const int32_t *t;
            uint32_t n;
            cq_batch_stop sp;
            cq_batch_result(b, i, &t, &n, &sp, NULL);
            if (op.csv) {
                printf("%u,%u,%u,%s,\"", i, ps.n[i], n, stop_name(sp));
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
        int bad = check_alone(&rcfg, &ps, b);
        if (bad) rc = 1;
        if (op.json) printf(",\n \"check\": {\"sequences\": %u, \"differing\": %d}", ps.count, bad < 0 ? -1 : bad);
        fprintf(stderr, "cq batch: --check: %s\n",
                bad < 0 ? "failed to run"
                        : bad ? "sequences differ from running alone"
                              : "every sequence's tokens equal running it alone");
    }
    if (op.json) printf("\n}\n");
    goto out;
oom:
    fprintf(stderr, "cq batch: CQ_ERR_NOMEM: out of memory\n");
    rc = 1;
out:
    for (uint32_t i = 0; texts && i < ps.count; i++) free(texts[i]);
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
