/*
 * cmd_eval.c - `cq eval ppl`: perplexity of the built-in model runtime with
 * compressed caches against the fp16 cache (EVAL.md section 2: chunked PPL,
 * KL divergence, same-top-1, delta PPL, measured bits per value), and the
 * dispatch of the other eval subcommands: mc (cmd_eval_mc.c), attn
 * (cmd_eval_attn.c), capture (cmd_eval_mc.c) and calibrate (cmd_calibrate.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: cq eval ppl [--model FILE|DIR] [--tokenizer FILE] [--text FILE] [--ctx N]\n"
            "                   [--chunks N] [--formats F1,F2,...] [--mask FILE] [--sinks S]\n"
            "                   [--fp16-layers first,last] [--group G] [--threads N]\n"
            "                   [--page-tokens P] [--ref-oracle] [--csv | --json]\n"
            "       cq eval mc [--hellaswag FILE.jsonl | --cloze TEXT] [...]  (cq eval mc --help)\n"
            "       cq eval capture --out PREFIX [...]                     (cq eval capture --help)\n"
            "       cq eval calibrate [...]          (= cq calibrate; cq calibrate --help)\n"
            "       cq eval attn --q Q.npy --k K.npy --v V.npy [...]   (cq eval attn --help)\n\n"
            "ppl        the llama.cpp protocol: the text (default $CQ_SHARED/eval/tinystories_val.txt)\n"
            "           is tokenized with BOS, cut into chunks of --ctx tokens (default 512, at most\n"
            "           the model's context), each run from an empty cache with its first token set\n"
            "           to BOS; the second half of each chunk is scored. Every format of --formats\n"
            "           (default fp16/fp16,cq8/cq8,cq4/cq4; KEY/VAL by registry codec name, cq4+\n"
            "           needs --mask; fp32 = the plain fp32 reference path) runs on the same chunks\n"
            "           as the fp16/fp16 reference: PPL +- standard error, delta PPL, KL divergence\n"
            "           of the format from the reference (mean, median, p99, max), same-top-1 rate,\n"
            "           and the cache's measured bits per value (cq_cache_memory, all bytes).\n"
            "           --sinks S keeps the first S tokens in fp16; --fp16-layers first,last keeps\n"
            "           those layers' K and V in fp16; --ref-oracle uses the fp32 path with K/V\n"
            "           rounded to fp16 as the reference instead of the fp16 cache. --page-tokens\n"
            "           sets the cache page (default: --ctx, a cache sized for its context; the\n"
            "           measured bits include all page slack).\n"
            "           Formats the cache cannot run at this model (e.g. 32-channel-block\n"
            "           codecs at head_dim 8) are listed as n/a with the reason.\n"
            "Progress goes to stderr.\n");
}

typedef struct common {
    const char *model_path, *tok_path, *text_path, *mask_path;
    uint32_t threads;
    cq_tool_model tm;
    int32_t *tokens;
    size_t n_tokens;
    char text_default[4096];
} common;

static int load_common(const char *cmd, common *c) {
    int rc = cq_tool_model_load(cmd, c->model_path, c->tok_path, &c->tm);
    if (rc) return rc;
    if (!c->text_path) {
        c->text_path = cq_tool_default_text(c->text_default, sizeof c->text_default);
    }
    if (cq_tool_tokenize_file(cmd, c->tm.tok, c->text_path, &c->tokens, &c->n_tokens)) return 1;
    fprintf(stderr, "cq %s: %s: %zu tokens (%s)\n", cmd, c->text_path, c->n_tokens, c->tm.path);
    return 0;
}

static void progress(void *user, uint32_t chunk, uint32_t n) {
    (void)user;
    fprintf(stderr, "\rcq eval ppl: chunk %u/%u", chunk, n);
    if (chunk == n) fprintf(stderr, "\n");
}

/* ---------------------------------------------------------------- ppl */

static int eval_ppl(int argc, char **argv) {
    common cm;
    memset(&cm, 0, sizeof cm);
    cm.threads = 2;
    const char *formats = "fp16/fp16,cq8/cq8,cq4/cq4";
    int csv = 0, json = 0;
    cq_ppl_opts po;
    memset(&po, 0, sizeof po);
    po.n_ctx = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (cq_is_help(a)) {
            eval_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) cm.model_path = argv[++i];
        else if (!strcmp(a, "--tokenizer") && has) cm.tok_path = argv[++i];
        else if (!strcmp(a, "--text") && has) cm.text_path = argv[++i];
        else if (!strcmp(a, "--mask") && has) cm.mask_path = argv[++i];
        else if (!strcmp(a, "--formats") && has) formats = argv[++i];
        else if (!strcmp(a, "--ctx") && has) {
            if (cq_arg_u32(argv[++i], 4, 1u << 24, &po.n_ctx)) goto bad;
        } else if (!strcmp(a, "--chunks") && has) {
            if (cq_arg_u32(argv[++i], 1, 1u << 24, &po.max_chunks)) goto bad;
        } else if (!strcmp(a, "--sinks") && has) {
            if (cq_arg_u32(argv[++i], 0, 1u << 20, &po.n_sinks)) goto bad;
        } else if (!strcmp(a, "--group") && has) {
            if (cq_arg_u32(argv[++i], 1, 65536, &po.group)) goto bad;
        } else if (!strcmp(a, "--threads") && has) {
            if (cq_arg_u32(argv[++i], 1, 64, &cm.threads)) goto bad;
        } else if (!strcmp(a, "--fp16-layers") && has) {
            if (cq_tool_fp16_layers(argv[++i], &po.fp16_first, &po.fp16_last)) goto bad;
        } else if (!strcmp(a, "--page-tokens") && has) {
            if (cq_arg_u32(argv[++i], 1, 1u << 24, &po.page_tokens)) goto bad;
        } else if (!strcmp(a, "--ref-oracle")) po.ref_oracle = 1;
        else if (!strcmp(a, "--csv")) csv = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else {
            fprintf(stderr, "cq eval ppl: unknown or incomplete option '%s'\n", a);
            eval_usage(stderr);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "cq eval ppl: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    if (csv && json) {
        fprintf(stderr, "cq eval ppl: --csv and --json are exclusive\n");
        return 2;
    }
    /* formats */
    cq_kv_format fmts[32];
    uint32_t nf = 0;
    cq_err e;
    cq_err_clear(&e);
    {
        char buf[1024];
        if (strlen(formats) >= sizeof buf) {
            fprintf(stderr, "cq eval ppl: --formats too long\n");
            return 2;
        }
        strcpy(buf, formats);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
            if (nf == 32) {
                fprintf(stderr, "cq eval ppl: at most 32 formats\n");
                return 2;
            }
            cq_status st = cq_kv_format_parse(t, &fmts[nf], &e);
            if (st) {
                cq_report("eval ppl", st, &e);
                return 2;
            }
            if ((fmts[nf].key == CQ_CODEC_CQ4P || fmts[nf].val == CQ_CODEC_CQ4P) && !cm.mask_path) {
                fprintf(stderr, "cq eval ppl: format %s needs --mask FILE\n", t);
                return 2;
            }
            nf++;
        }
    }
    if (!nf) {
        fprintf(stderr, "cq eval ppl: no formats\n");
        return 2;
    }
    int rc = load_common("eval ppl", &cm);
    uint8_t *masks = NULL;
    cq_ppl_result *res = NULL;
    if (rc) goto out;
    rc = 1;
    const cq_model_config *c = cq_model_get_config(cm.tm.model);
    if (cm.mask_path) {
        masks = calloc((size_t)c->n_layers * c->n_kv_heads * c->head_dim, 1);
        cq_status st = masks ? cq_mask_load(cm.mask_path, c->n_layers, c->n_kv_heads, c->head_dim,
                                            masks, &e)
                             : CQ_ERR_NOMEM;
        if (st) {
            cq_report("eval ppl", st, &e);
            goto out;
        }
        po.masks = masks;
    }
    /* formats the cache cannot run on this model: reported as n/a, not run */
    char na_name[32][48], na_why[32][160];
    uint32_t n_na = 0, nr = 0;
    for (uint32_t i = 0; i < nf; i++) {
        const char *why = cq_tool_format_na(c, &fmts[i], po.group, masks, na_why[n_na], sizeof na_why[0]);
        if (why) {
            snprintf(na_name[n_na++], sizeof na_name[0], "%.47s", fmts[i].name);
            fprintf(stderr, "cq eval ppl: %s: n/a (%s)\n", fmts[i].name, why);
        } else {
            fmts[nr++] = fmts[i];
        }
    }
    nf = nr;
    po.n_threads = cm.threads;
    po.progress = progress;
    res = calloc(nf + 1, sizeof *res);
    if (!res) goto out;
    cq_ppl_result ref;
    int32_t bos = cq_tokenizer_add_bos(cm.tm.tok) ? cq_tokenizer_bos(cm.tm.tok) : -1;
    cq_status st = cq_eval_ppl(cm.tm.model, cm.tokens, cm.n_tokens, bos, &po,
                               fmts, nf, res, &ref, &e);
    if (st) {
        fprintf(stderr, "\n");
        cq_report("eval ppl", st, &e);
        goto out;
    }
    uint32_t ctx = po.n_ctx < c->max_seq_len ? po.n_ctx : c->max_seq_len;
    if (json) {
        printf("{\"model\": \"%s\", \"text\": \"%s\", \"n_ctx\": %u, \"chunks\": %u, \"scored\": %llu,"
               " \"sinks\": %u, \"fp16_first\": %d, \"fp16_last\": %d, \"group\": %u,\n"
               " \"reference\": {\"ppl\": %.6f, \"ppl_se\": %.6f, \"nll\": %.6f},\n \"formats\": [\n",
               cm.tm.path, cm.text_path, ctx, ref.n_chunks, (unsigned long long)ref.n_scored,
               po.n_sinks, po.fp16_first, po.fp16_last, po.group ? po.group : 128, ref.ppl,
               ref.ppl_se, ref.nll_mean);
        for (uint32_t i = 0; i < nf; i++) {
            const cq_ppl_result *r = &res[i];
            printf("  {\"format\": \"%s\", \"bits_per_value\": %.4f, \"ppl\": %.6f, \"ppl_se\": %.6f,"
                   " \"delta_ppl\": %.6f, \"kld_mean\": %.6g, \"kld_median\": %.6g, \"kld_p99\": %.6g,"
                   " \"kld_max\": %.6g, \"same_top1\": %.6f, \"cache_bytes\": %llu,"
                   " \"bytes\": {\"payload\": %llu, \"scales\": %llu, \"sidecar\": %llu,"
                   " \"residual\": %llu, \"sinks\": %llu, \"slack\": %llu, \"headers\": %llu}}%s\n",
                   fmts[i].name, r->bits_per_value, r->ppl, r->ppl_se, r->delta_ppl, r->kld_mean,
                   r->kld_median, r->kld_p99, r->kld_max, r->same_top1,
                   (unsigned long long)r->mem.total, (unsigned long long)r->mem.payload,
                   (unsigned long long)r->mem.scales, (unsigned long long)r->mem.sidecar,
                   (unsigned long long)r->mem.residual, (unsigned long long)r->mem.sinks,
                   (unsigned long long)r->mem.slack, (unsigned long long)r->mem.headers,
                   i + 1 < nf ? "," : "");
        }
        printf(" ], \"not_applicable\": [");
        for (uint32_t i = 0; i < n_na; i++)
            printf("%s{\"format\": \"%s\", \"reason\": \"%s\"}", i ? ", " : "", na_name[i], na_why[i]);
        printf("]}\n");
    } else if (csv) {
        printf("format,bits_per_value,ppl,ppl_se,delta_ppl,kld_mean,kld_median,kld_p99,kld_max,"
               "same_top1,cache_bytes\n");
        for (uint32_t i = 0; i < nf; i++) {
            const cq_ppl_result *r = &res[i];
            printf("%s,%.4f,%.6f,%.6f,%.6f,%.6g,%.6g,%.6g,%.6g,%.6f,%llu\n", fmts[i].name,
                   r->bits_per_value, r->ppl, r->ppl_se, r->delta_ppl, r->kld_mean, r->kld_median,
                   r->kld_p99, r->kld_max, r->same_top1, (unsigned long long)r->mem.total);
        }
        for (uint32_t i = 0; i < n_na; i++) printf("%s,n/a,,,,,,,,,\n", na_name[i]);
    } else {
        printf("model %s, text %s: %u chunks of %u tokens, %llu scored; sinks %u, fp16 layers %s%s%s,"
               " G %u\nreference %s: PPL %.4f +- %.4f (mean NLL %.4f nats)\n\n",
               cm.tm.path, cm.text_path, ref.n_chunks, ctx, (unsigned long long)ref.n_scored,
               po.n_sinks, po.fp16_first ? "first" : "", po.fp16_first && po.fp16_last ? "," : "",
               po.fp16_last ? "last" : (po.fp16_first ? "" : "none"), po.group ? po.group : 128,
               po.ref_oracle ? "fp32 path, K/V rounded to fp16" : "fp16/fp16 cache", ref.ppl, ref.ppl_se, ref.nll_mean);
        printf("| K/V | bits/value | PPL | dPPL | KLD mean | KLD median | KLD p99 | KLD max | "
               "same top-1 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (uint32_t i = 0; i < nf; i++) {
            const cq_ppl_result *r = &res[i];
            printf("| %s | %.3f | %.4f +- %.4f | %+.4f | %.3g | %.3g | %.3g | %.3g | %.4f |\n",
                   fmts[i].name, r->bits_per_value, r->ppl, r->ppl_se, r->delta_ppl, r->kld_mean,
                   r->kld_median, r->kld_p99, r->kld_max, r->same_top1);
        }
        for (uint32_t i = 0; i < n_na; i++)
            printf("| %s | n/a: %s | | | | | | | |\n", na_name[i], na_why[i]);
        /* where the bits go: measured cache bytes after the last chunk, as bits per value */
        printf("\nmeasured cache memory after the last chunk (bits per value by role):\n\n"
               "| K/V | payload | scales | sidecar | residual | sinks | slack | headers | total |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (uint32_t i = 0; i < nf; i++) {
            const cq_cache_mem *mm = &res[i].mem;
            double per = mm->tokens ? 8.0 / ((double)mm->tokens * c->head_dim * 2) : 0;
            if (!mm->total) {
                printf("| %s | (no cache: fp32 arrays) | | | | | | | %.3f |\n", fmts[i].name,
                       res[i].bits_per_value);
                continue;
            }
            printf("| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", fmts[i].name,
                   per * (double)mm->payload, per * (double)mm->scales, per * (double)mm->sidecar,
                   per * (double)mm->residual, per * (double)mm->sinks, per * (double)mm->slack,
                   per * (double)mm->headers, res[i].bits_per_value);
        }
    }
    rc = 0;
out:
    free(masks);
    free(res);
    free(cm.tokens);
    cq_tool_model_free(&cm.tm);
    return rc;
}

int cq_cmd_eval(int argc, char **argv) {
    if (argc < 2 || cq_is_help(argv[1])) {
        eval_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "ppl")) return eval_ppl(argc - 1, argv + 1);
    if (!strcmp(argv[1], "calibrate")) return cq_cmd_calibrate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "mc")) return cq_eval_mc(argc - 1, argv + 1);
    if (!strcmp(argv[1], "capture")) return cq_eval_capture(argc - 1, argv + 1);
    if (!strcmp(argv[1], "attn")) return cq_eval_attn(argc - 1, argv + 1);
    fprintf(stderr, "cq eval: unknown subcommand '%s'\n", argv[1]);
    eval_usage(stderr);
    return 2;
}
