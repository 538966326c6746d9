/*
 * cmd_eval.c - `cq eval ppl`: perplexity of the built-in model runtime with
 * compressed caches against the fp16 cache (EVAL.md section 2: chunked PPL,
 * KL divergence, same-top-1, delta PPL, measured bits per value), and
 * `cq eval calibrate`: a static key outlier mask from max |K| per channel
 * (EVAL.md section 4, without the stability gate), in the mask text format.
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
            "       cq eval calibrate [--model ...] [--text FILE] [--k K] [--seqs N] [--len L]\n"
            "                   [--out FILE]\n"
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
            "calibrate  run --seqs sequences (default 128) of --len tokens (default 160) taken\n"
            "           from the END of the text (held out from ppl's chunks, which start at the\n"
            "           beginning), take max |K| per (layer, kv head, channel) over all tokens and\n"
            "           keep the top --k channels (default 2; ties to the lower index); writes the\n"
            "           mask text format to --out (default stdout).\n"
            "Progress goes to stderr.\n");
}

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) break;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    *len = n;
    return b;
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
        const char *sh = getenv("CQ_SHARED");
        snprintf(c->text_default, sizeof c->text_default, "%.4000s/eval/tinystories_val.txt",
                 sh && *sh ? sh : "../shared");
        c->text_path = c->text_default;
    }
    size_t len;
    char *text = read_text(c->text_path, &len);
    if (!text) {
        fprintf(stderr, "cq %s: CQ_ERR_IO: cannot read %s\n", cmd, c->text_path);
        return 1;
    }
    size_t cap = len + 16;
    c->tokens = malloc(cap * sizeof *c->tokens);
    cq_err e;
    cq_err_clear(&e);
    cq_status st = c->tokens ? cq_tokenizer_encode(c->tm.tok, text, len,
                                                   cq_tokenizer_add_bos(c->tm.tok), c->tokens, cap,
                                                   &c->n_tokens, &e)
                             : CQ_ERR_NOMEM;
    free(text);
    if (st) {
        cq_report(cmd, st, &e);
        return 1;
    }
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
    po.n_threads = cm.threads;
    po.progress = progress;
    res = calloc(nf, sizeof *res);
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
        printf(" ]}\n");
    } else if (csv) {
        printf("format,bits_per_value,ppl,ppl_se,delta_ppl,kld_mean,kld_median,kld_p99,kld_max,"
               "same_top1,cache_bytes\n");
        for (uint32_t i = 0; i < nf; i++) {
            const cq_ppl_result *r = &res[i];
            printf("%s,%.4f,%.6f,%.6f,%.6f,%.6g,%.6g,%.6g,%.6g,%.6f,%llu\n", fmts[i].name,
                   r->bits_per_value, r->ppl, r->ppl_se, r->delta_ppl, r->kld_mean, r->kld_median,
                   r->kld_p99, r->kld_max, r->same_top1, (unsigned long long)r->mem.total);
        }
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

/* ----------------------------------------------------------- calibrate */

typedef struct calib {
    uint32_t D, Hkv;
    float *mx; /* [n_layers][Hkv][D] max |K| */
} calib;

static void calib_observe(void *user, uint32_t layer, uint32_t pos0, uint32_t n, const float *q,
                          const float *k, const float *v) {
    (void)pos0, (void)q, (void)v;
    calib *cb = user;
    uint32_t kvd = cb->Hkv * cb->D;
    float *m = cb->mx + (size_t)layer * kvd;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t e = 0; e < kvd; e++) {
            float a = fabsf(k[(size_t)i * kvd + e]);
            if (a > m[e]) m[e] = a;
        }
}

static int eval_calibrate(int argc, char **argv) {
    common cm;
    memset(&cm, 0, sizeof cm);
    cm.threads = 2;
    uint32_t k = 2, seqs = 128, len = 160;
    const char *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (cq_is_help(a)) {
            eval_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) cm.model_path = argv[++i];
        else if (!strcmp(a, "--tokenizer") && has) cm.tok_path = argv[++i];
        else if (!strcmp(a, "--text") && has) cm.text_path = argv[++i];
        else if (!strcmp(a, "--out") && has) out_path = argv[++i];
        else if (!strcmp(a, "--k") && has) {
            if (cq_arg_u32(argv[++i], 0, 512, &k)) goto bad;
        } else if (!strcmp(a, "--seqs") && has) {
            if (cq_arg_u32(argv[++i], 1, 1u << 20, &seqs)) goto bad;
        } else if (!strcmp(a, "--len") && has) {
            if (cq_arg_u32(argv[++i], 1, 1u << 20, &len)) goto bad;
        } else if (!strcmp(a, "--threads") && has) {
            if (cq_arg_u32(argv[++i], 1, 64, &cm.threads)) goto bad;
        } else {
            fprintf(stderr, "cq eval calibrate: unknown or incomplete option '%s'\n", a);
            eval_usage(stderr);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "cq eval calibrate: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    int rc = load_common("eval calibrate", &cm);
    calib cb = {0, 0, NULL};
    cq_session *s = NULL;
    FILE *out = NULL;
    char tmp_path[4200] = "";
    if (rc) goto done;
    rc = 1;
    const cq_model_config *c = cq_model_get_config(cm.tm.model);
    if (k >= c->head_dim) {
        fprintf(stderr, "cq eval calibrate: --k %u must be below head_dim %u\n", k, c->head_dim);
        rc = 2;
        goto done;
    }
    if (len > c->max_seq_len) len = c->max_seq_len;
    if ((uint64_t)seqs * len > cm.n_tokens) seqs = (uint32_t)(cm.n_tokens / len);
    if (!seqs) {
        fprintf(stderr, "cq eval calibrate: text too short\n");
        goto done;
    }
    cb.D = c->head_dim;
    cb.Hkv = c->n_kv_heads;
    cb.mx = calloc((size_t)c->n_layers * c->n_kv_heads * c->head_dim, sizeof(float));
    if (!cb.mx) goto done;
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.n_threads = cm.threads;
    so.max_tokens = len;
    so.batch = len;
    so.observer = calib_observe;
    so.observer_user = &cb;
    cq_err e;
    cq_err_clear(&e);
    cq_status st = cq_session_create(cm.tm.model, &so, &s, &e);
    size_t start = cm.n_tokens - (size_t)seqs * len;
    for (uint32_t q = 0; !st && q < seqs; q++) {
        cq_session_reset(s);
        st = cq_session_forward(s, cm.tokens + start + (size_t)q * len, len, NULL, 0, &e);
        if ((q + 1) % 16 == 0 || q + 1 == seqs)
            fprintf(stderr, "\rcq eval calibrate: sequence %u/%u", q + 1, seqs);
    }
    fprintf(stderr, "\n");
    if (st) {
        cq_report("eval calibrate", st, &e);
        goto done;
    }
    /* written to OUT.tmp and renamed: never a half-written mask */
    if (out_path) snprintf(tmp_path, sizeof tmp_path, "%.4000s.tmp", out_path);
    out = out_path ? fopen(tmp_path, "w") : stdout;
    if (!out) {
        fprintf(stderr, "cq eval calibrate: CQ_ERR_IO: cannot write %s\n", out_path);
        goto done;
    }
    fprintf(out, "# static key outlier-channel mask (top-%u) for %s\n", k, cm.tm.path);
    fprintf(out, "# layers %u kv_heads %u head_dim %u k %u; calibrated by max |K| (after RoPE) on %u "
                 "sequences of %u tokens (the last %zu tokens of %s)\n",
            c->n_layers, c->n_kv_heads, c->head_dim, k, seqs, len, (size_t)seqs * len, cm.text_path);
    fprintf(out, "# columns: layer kv_head channel_0 .. channel_{k-1} (ascending)\n");
    for (uint32_t l = 0; l < c->n_layers; l++)
        for (uint32_t h = 0; h < c->n_kv_heads; h++) {
            const float *m = cb.mx + ((size_t)l * c->n_kv_heads + h) * c->head_dim;
            uint8_t pick[512] = {0};
            for (uint32_t j = 0; j < k; j++) {
                int best = -1;
                for (uint32_t d = 0; d < c->head_dim; d++)
                    if (!pick[d] && (best < 0 || m[d] > m[best])) best = (int)d;
                pick[best] = 1;
            }
            fprintf(out, "%u %u", l, h);
            for (uint32_t d = 0; d < c->head_dim; d++)
                if (pick[d]) fprintf(out, " %u", d);
            fprintf(out, "\n");
        }
    rc = 0;
done:
    if (out && out != stdout) {
        if (fclose(out) != 0) rc = 1;
        if (rc == 0 && rename(tmp_path, out_path) != 0) rc = 1;
        if (rc) {
            remove(tmp_path);
            fprintf(stderr, "cq eval calibrate: CQ_ERR_IO: cannot write %s\n", out_path);
        }
    }
    cq_session_free(s);
    free(cb.mx);
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
    if (!strcmp(argv[1], "calibrate")) return eval_calibrate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "attn")) return cq_eval_attn(argc - 1, argv + 1);
    fprintf(stderr, "cq eval: unknown subcommand '%s'\n", argv[1]);
    eval_usage(stderr);
    return 2;
}
