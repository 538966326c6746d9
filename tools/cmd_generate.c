/* SPDX-License-Identifier: MIT */
/*
 * cmd_generate.c - `cq generate`: text generation with the built-in model
 * runtime, its KV cache in any K/V format (greedy by default). The text goes
 * to stdout; speed and measured cache bits per value to stderr.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

#define GEN_OPTS (CQ_OPT_MODEL | CQ_OPT_TOK | CQ_OPT_KV | CQ_OPT_MASK | CQ_OPT_THREADS | CQ_OPT_GROUP | \
                  CQ_OPT_SINKS | CQ_OPT_FP16L | CQ_OPT_CTX)

static void gen_usage(FILE *f) {
    fprintf(f,
            "usage: cq generate [--prompt TEXT] [-n N] [--temp T] [--seed S] [options]\n\n"
            "Generate N tokens (default 64) after the prompt (default \"Once upon a time\") with the\n"
            "KV cache in one --kv format (default fp16/fp16). The text goes to stdout; on stderr:\n"
            "prompt and generation speed in tokens per second, why generation stopped (N tokens,\n"
            "end-of-sequence token, the context full), and the codec and cache bits per value.\n"
            "  --temp T               0 (default) = greedy; otherwise sample softmax(logits / T)\n"
            "  --seed S               sampling seed (default 1)\n");
    cq_tool_opts_help(f, GEN_OPTS);
}

int cq_cmd_generate(int argc, char **argv) {
    const char *prompt = "Once upon a time";
    uint32_t n_gen = 64;
    double temp = 0;
    uint64_t seed = 1;
    cq_tool_opts op;
    cq_tool_opts_init(&op);
    op.kv = "fp16/fp16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        int r = cq_tool_opt("generate", &op, GEN_OPTS, argc, argv, &i);
        if (r == 1) continue;
        if (r == 2) return 2;
        if (cq_is_help(a)) {
            gen_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--prompt") && has) prompt = argv[++i];
        else if (!strcmp(a, "-n") && has) {
            if (cq_arg_u32(argv[++i], 0, 1u << 20, &n_gen)) goto bad;
        } else if (!strcmp(a, "--temp") && has) {
            if (cq_arg_f64(argv[++i], &temp) || temp < 0 || !isfinite(temp)) goto bad;
        } else if (!strcmp(a, "--seed") && has) {
            if (cq_arg_u64(argv[++i], &seed)) goto bad;
        } else {
            fprintf(stderr, "cq generate: unknown or incomplete option '%s' (cq generate --help)\n", a);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "cq generate: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    if (strchr(op.kv, ',')) {
        fprintf(stderr, "cq generate: --kv takes one K/V format\n");
        return 2;
    }
    const char *kv = op.kv;
    cq_kv_setup po;
    cq_err e;
    cq_err_clear(&e);
    cq_kv_format fmt;
    cq_status st = cq_kv_format_parse(kv, &fmt, &e);
    if (st) {
        cq_report("generate", st, &e);
        return 2;
    }
    cq_tool_model tm;
    int rc = cq_tool_model_load("generate", op.model, op.tokenizer, &tm);
    if (rc) return rc;
    const cq_model_config *c = cq_model_get_config(tm.model);
    uint8_t *masks = NULL;
    int32_t *toks = NULL;
    float *logits = NULL;
    cq_layer_codecs *lbuf = NULL;
    cq_session *s = NULL;
    rc = 1;
    if (cq_tool_load_mask("generate", &op, c, &masks)) goto out;
    cq_tool_kv_setup(&op, masks, &po);
    if ((fmt.key == CQ_CODEC_CQ4P || fmt.val == CQ_CODEC_CQ4P) && !masks) {
        fprintf(stderr, "cq generate: format %s needs --mask FILE (cq calibrate writes one)\n", fmt.name);
        rc = 2;
        goto out;
    }
    if (op.ctx > c->max_seq_len) {
        fprintf(stderr, "cq generate: --ctx %u is larger than the model's context of %u tokens\n",
                op.ctx, c->max_seq_len);
        rc = 2;
        goto out;
    }
    size_t plen = strlen(prompt), n_prompt = 0;
    size_t cap = plen + 8;
    toks = malloc(cap * sizeof *toks);
    logits = malloc((size_t)c->vocab_size * sizeof *logits);
    lbuf = calloc(c->n_layers, sizeof *lbuf);
    if (!toks || !logits || !lbuf) goto out;
    if ((st = cq_tokenizer_encode(tm.tok, prompt, plen, cq_tokenizer_add_bos(tm.tok), toks, cap,
                                  &n_prompt, &e))) {
        cq_report("generate", st, &e);
        goto out;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "cq generate: empty prompt (and the model takes no BOS)\n");
        goto out;
    }
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.n_threads = op.threads;
    uint64_t total = n_prompt + (uint64_t)n_gen;
    uint32_t ctx = op.ctx ? op.ctx : c->max_seq_len;
    if (n_prompt > ctx) {
        fprintf(stderr, "cq generate: the prompt has %zu tokens, more than the context of %u\n",
                n_prompt, ctx);
        rc = 2;
        goto out;
    }
    so.max_tokens = total < ctx ? (uint32_t)total : ctx;
    if (!po.page_tokens) po.page_tokens = so.max_tokens; /* one page per (layer, head): slack only from G rounding */
    cq_cache_config cc;
    if (fmt.reference) so.mode = CQ_KV_REFERENCE;
    else {
        so.mode = CQ_KV_CACHE;
        cq_kv_format_cache_config(c, &fmt, &po, lbuf, &cc);
        so.cache = &cc;
    }
    if ((st = cq_session_create(tm.model, &so, &s, &e))) {
        cq_report("generate", st, &e);
        goto out;
    }
    double t0 = cq_tool_now();
    if ((st = cq_session_forward(s, toks, (uint32_t)n_prompt, logits, 1, &e))) {
        cq_report("generate", st, &e);
        goto out;
    }
    double t_prompt = cq_tool_now() - t0;
    const char *why = "reached -n";
    cq_rng rng;
    cq_rng_seed(&rng, seed);
    /* echo the prompt as the tokenizer sees it */
    char piece[256];
    for (size_t i = 0; i < n_prompt; i++) {
        int n = cq_tokenizer_decode(tm.tok, i ? toks[i - 1] : -1, toks[i], piece, sizeof piece);
        if (n > 0) fwrite(piece, 1, (size_t)n, stdout);
    }
    int32_t prev = toks[n_prompt - 1];
    uint32_t made = 0;
    for (; made < n_gen; made++) {
        int32_t next = 0;
        if (temp == 0) {
            for (uint32_t v = 1; v < c->vocab_size; v++)
                if (logits[v] > logits[next]) next = (int32_t)v;
        } else {
            double mx = -INFINITY, sum = 0;
            for (uint32_t v = 0; v < c->vocab_size; v++) mx = logits[v] > mx ? logits[v] : mx;
            for (uint32_t v = 0; v < c->vocab_size; v++) sum += exp((logits[v] - mx) / temp);
            double u = cq_rng_uniform(&rng) * sum, run = 0;
            next = (int32_t)c->vocab_size - 1;
            for (uint32_t v = 0; v < c->vocab_size; v++) {
                run += exp((logits[v] - mx) / temp);
                if (u < run) { next = (int32_t)v; break; }
            }
        }
        if (next == cq_tokenizer_eos(tm.tok) || next == cq_tokenizer_bos(tm.tok)) {
            why = next == cq_tokenizer_eos(tm.tok) ? "end-of-sequence token" : "beginning-of-sequence token";
            break;
        }
        int n = cq_tokenizer_decode(tm.tok, prev, next, piece, sizeof piece);
        if (n > 0) fwrite(piece, 1, (size_t)n, stdout);
        fflush(stdout);
        prev = next;
        if (made + 1 == n_gen || cq_session_pos(s) >= so.max_tokens) {
            if (made + 1 < n_gen) why = op.ctx ? "context full (--ctx)" : "context full (the model's context)";
            made++;
            break;
        }
        if ((st = cq_session_forward(s, &next, 1, logits, 1, &e))) {
            cq_report("generate", st, &e);
            goto out;
        }
    }
    printf("\n");
    fflush(stdout);
    double t_all = cq_tool_now() - t0, t_gen = t_all - t_prompt;
    fprintf(stderr, "cq generate: kv %s; prompt %zu tokens in %.3f s (%.1f tokens/s); generated %u in "
            "%.3f s (%.1f tokens/s); stopped: %s\n", fmt.name, n_prompt, t_prompt,
            t_prompt > 0 ? (double)n_prompt / t_prompt : 0.0, made, t_gen,
            t_gen > 0 && made ? (double)made / t_gen : 0.0, why);
    if (cq_session_cache(s)) {
        cq_bits bits;
        uint32_t w = cq_kv_format_warnings(&fmt, cq_session_pos(s), op.group);
        if (cq_eval_bits(cq_session_cache(s), &bits, &w, &e) == CQ_OK)
            fprintf(stderr, "cq generate: codec %.3f bits/value; cache %.3f bits/value at %u tokens "
                    "(%llu bytes)\n", bits.codec_bpv, bits.cache_bpv, bits.context,
                    (unsigned long long)bits.mem.total);
        cq_tool_warn("generate", fmt.name, w);
    }
    rc = 0;
out:
    if (rc && !e.msg[0] && st == CQ_OK) fprintf(stderr, "cq generate: CQ_ERR_NOMEM: out of memory\n");
    cq_session_free(s);
    free(masks);
    free(toks);
    free(logits);
    free(lbuf);
    cq_tool_model_free(&tm);
    return rc;
}
