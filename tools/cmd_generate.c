/*
 * cmd_generate.c - `cq generate`: text generation with the built-in model
 * runtime, its KV cache in any K/V format (greedy by default). The text goes
 * to stdout; speed and measured cache bits per value to stderr.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq_tool.h"

static void gen_usage(FILE *f) {
    fprintf(f,
            "usage: cq generate [--model FILE|DIR] [--tokenizer FILE] [--prompt TEXT] [-n N]\n"
            "                   [--temp T] [--seed S] [--kv KEY/VAL] [--group G] [--sinks S]\n"
            "                   [--mask FILE] [--fp16-layers first,last] [--threads N]\n\n"
            "Generate N tokens (default 64) after the prompt (default \"Once upon a time\").\n"
            "--model     a llama2.c checkpoint or a GGUF file (llama, qwen2); default\n"
            "            $CQ_SHARED/models/stories260K (CQ_SHARED defaults to ../shared)\n"
            "--tokenizer llama2.c tokenizer.bin (default: tokenizer.bin or tok512.bin beside\n"
            "            the model; GGUF files carry their own)\n"
            "--temp      0 (default) = greedy; otherwise sample softmax(logits / T) with --seed\n"
            "--kv        cache formats by registry codec name, e.g. fp16/fp16 (default), cq8/cq8,\n"
            "            cq4/cq4, cq4+/cq4 (needs --mask); fp32 = the plain fp32 reference path\n"
            "--mask      CQ-4+ outlier mask file (text format of ../shared/vectors/masks)\n"
            "--fp16-layers  keep the first and/or last layer's K and V in fp16\n");
}

int cq_cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = "Once upon a time", *kv = "fp16/fp16";
    const char *mask_path = NULL;
    uint32_t n_gen = 64, threads = 2;
    double temp = 0;
    uint64_t seed = 1;
    cq_ppl_opts po;
    memset(&po, 0, sizeof po);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (cq_is_help(a)) {
            gen_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) model_path = argv[++i];
        else if (!strcmp(a, "--tokenizer") && has) tok_path = argv[++i];
        else if (!strcmp(a, "--prompt") && has) prompt = argv[++i];
        else if (!strcmp(a, "-n") && has) {
            if (cq_arg_u32(argv[++i], 0, 1u << 20, &n_gen)) goto bad;
        } else if (!strcmp(a, "--temp") && has) {
            if (cq_arg_f64(argv[++i], &temp) || temp < 0 || !isfinite(temp)) goto bad;
        } else if (!strcmp(a, "--seed") && has) {
            if (cq_arg_u64(argv[++i], &seed)) goto bad;
        } else if (!strcmp(a, "--kv") && has) kv = argv[++i];
        else if (!strcmp(a, "--group") && has) {
            if (cq_arg_u32(argv[++i], 1, 65536, &po.group)) goto bad;
        } else if (!strcmp(a, "--sinks") && has) {
            if (cq_arg_u32(argv[++i], 0, 1u << 20, &po.n_sinks)) goto bad;
        } else if (!strcmp(a, "--mask") && has) mask_path = argv[++i];
        else if (!strcmp(a, "--fp16-layers") && has) {
            if (cq_tool_fp16_layers(argv[++i], &po.fp16_first, &po.fp16_last)) goto bad;
        } else if (!strcmp(a, "--threads") && has) {
            if (cq_arg_u32(argv[++i], 1, 64, &threads)) goto bad;
        } else {
            fprintf(stderr, "cq generate: unknown or incomplete option '%s'\n", a);
            gen_usage(stderr);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "cq generate: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    cq_err e;
    cq_err_clear(&e);
    cq_kv_format fmt;
    cq_status st = cq_kv_format_parse(kv, &fmt, &e);
    if (st) {
        cq_report("generate", st, &e);
        return 2;
    }
    cq_tool_model tm;
    int rc = cq_tool_model_load("generate", model_path, tok_path, &tm);
    if (rc) return rc;
    const cq_model_config *c = cq_model_get_config(tm.model);
    uint8_t *masks = NULL;
    int32_t *toks = NULL;
    float *logits = NULL;
    cq_layer_codecs *lbuf = NULL;
    cq_session *s = NULL;
    rc = 1;
    if (mask_path) {
        masks = calloc((size_t)c->n_layers * c->n_kv_heads * c->head_dim, 1);
        if (!masks) goto out;
        if ((st = cq_mask_load(mask_path, c->n_layers, c->n_kv_heads, c->head_dim, masks, &e))) {
            cq_report("generate", st, &e);
            goto out;
        }
        po.masks = masks;
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
    so.n_threads = threads;
    uint64_t total = n_prompt + (uint64_t)n_gen;
    so.max_tokens = total < c->max_seq_len ? (uint32_t)total : c->max_seq_len;
    po.page_tokens = so.max_tokens; /* one page per (layer, head): slack only from G rounding */
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
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((st = cq_session_forward(s, toks, (uint32_t)n_prompt, logits, 1, &e))) {
        cq_report("generate", st, &e);
        goto out;
    }
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
        if (next == cq_tokenizer_eos(tm.tok) || next == cq_tokenizer_bos(tm.tok)) break;
        int n = cq_tokenizer_decode(tm.tok, prev, next, piece, sizeof piece);
        if (n > 0) fwrite(piece, 1, (size_t)n, stdout);
        fflush(stdout);
        prev = next;
        if (made + 1 == n_gen || cq_session_pos(s) >= so.max_tokens) {
            made++;
            break;
        }
        if ((st = cq_session_forward(s, &next, 1, logits, 1, &e))) {
            cq_report("generate", st, &e);
            goto out;
        }
    }
    printf("\n");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "cq generate: %zu prompt + %u generated tokens in %.3f s, kv %s", n_prompt,
            made, sec, fmt.name);
    cq_cache_mem mem;
    if (cq_session_cache(s) && cq_cache_memory(cq_session_cache(s), -1, &mem) == CQ_OK)
        fprintf(stderr, ", cache %.3f bits/value (%llu bytes)", mem.bits_per_value,
                (unsigned long long)mem.total);
    fprintf(stderr, "\n");
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
