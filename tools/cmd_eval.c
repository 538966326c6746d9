/* SPDX-License-Identifier: MIT */
/*
 * cmd_eval.c - `cq eval ppl`: perplexity of the built-in model runtime with
 * compressed caches against the fp16 cache, reported as llama-perplexity
 * --kl-divergence reports it (the protocol: src/eval/ppl.c), with the two bit
 * figures of every format; and the dispatch of the other eval subcommands:
 * mc (cmd_eval_mc.c), attn (cmd_eval_attn.c), capture (cmd_eval_mc.c) and
 * calibrate (cmd_calibrate.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

#define PPL_OPTS (CQ_OPT_MODEL | CQ_OPT_TOK | CQ_OPT_FILE | CQ_OPT_KV | CQ_OPT_MASK | CQ_OPT_CTX | \
                  CQ_OPT_THREADS | CQ_OPT_GROUP | CQ_OPT_SINKS | CQ_OPT_FP16L | CQ_OPT_PAGES | CQ_OPT_OUT)
#define DEFAULT_CHUNKS 32

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: cq eval ppl [options]\n"
            "       cq eval mc [--hellaswag FILE.jsonl | --cloze TEXT] [...]  (cq eval mc --help)\n"
            "       cq eval capture --out PREFIX [...]                     (cq eval capture --help)\n"
            "       cq eval calibrate [...]          (= cq calibrate; cq calibrate --help)\n"
            "       cq eval attn --q Q.npy --k K.npy --v V.npy [...]   (cq eval attn --help)\n\n"
            "ppl: the llama.cpp protocol. The text is tokenized with BOS and cut into chunks of\n"
            "--ctx tokens (default 512); each chunk runs from an empty cache with its first token\n"
            "set to BOS and its second half is scored. Every --kv format (default\n"
            "fp16/fp16,cq8/cq8,cq4/cq4) runs on the same chunks as the fp16/fp16 reference and is\n"
            "reported as llama-perplexity --kl-divergence reports it: PPL(Q) and PPL(base) with\n"
            "standard errors, PPL ratio and ln ratio, KLD mean +- SE, max and percentiles, same\n"
            "top-1 +- SE, RMS delta-p; and two bit figures: codec bits per value (what the format\n"
            "costs at any length) and cache bits per value (every byte the cache holds at the\n"
            "stated context). Warnings (stderr, and in --json) flag rows that are not what they\n"
            "seem (context <= G, KIVI window >= the sequence, calibration overlapping the text).\n\n");
    cq_tool_opts_help(f, PPL_OPTS);
    fprintf(f,
            "  --chunks N             chunks to score (default %d; 0 = the whole text)\n"
            "  --kld-base FILE        the reference's log-probabilities: read FILE when it exists\n"
            "                         (validated), else compute and write it (alias\n"
            "                         --kl-divergence-base)\n"
            "  --ref-oracle           reference = the fp32 path with K/V rounded to fp16\n"
            "  --ref-kv K/V           reference = this cache format (with the masks, sinks and\n"
            "                       fp16 layers of the others), e.g. --ref-kv cq4/cq4@exact\n"
            "                       --kv cq4/cq4@fast: FAST's KLD against EXACT directly\n"
            "  --calib-range A:B      token range a mask was calibrated on (warns on overlap)\n"
            "Progress and warnings go to stderr.\n",
            DEFAULT_CHUNKS);
}

typedef struct prog_ctx {
    cq_progress pg;
    const cq_kv_format *f;
} prog_ctx;

static void progress(void *user, uint32_t chunk, uint32_t n, const double *ppl, const double *kld,
                     uint32_t nf) {
    prog_ctx *p = user;
    char extra[160] = "";
    if (nf) /* the running figure of the last format (the one a reader waits for) */
        snprintf(extra, sizeof extra, "%s PPL %.4f KLD %.4g", p->f[nf - 1].name, ppl[nf - 1],
                 kld[nf - 1]);
    cq_progress_update(&p->pg, chunk, extra);
    if (chunk == n) cq_progress_end(&p->pg);
}

static void json_result(const cq_kv_format *f, const cq_ppl_result *r, int last) {
    printf("  {\"format\": \"%s\", \"codec_bits_per_value\": %.4f, \"cache_bits_per_value\": %.4f,"
           " \"cache_context\": %u, \"ppl\": %.6f, \"ppl_se\": %.6f, \"ppl_ratio\": %.6f,"
           " \"ppl_ratio_se\": %.6f, \"ln_ratio\": %.6g, \"ln_ratio_se\": %.6g, \"delta_ppl\": %.6f,"
           " \"delta_ppl_se\": %.6f, \"nll_cor\": %.6f, \"kld_mean\": %.6g, \"kld_se\": %.6g,"
           " \"kld_max\": %.6g, \"kld_min\": %.6g, \"kld_quantiles\": {",
           f->name, r->bits.codec_bpv, r->bits.cache_bpv, r->bits.context, r->ppl, r->ppl_se,
           r->ppl_ratio, r->ppl_ratio_se, r->ln_ratio, r->ln_ratio_se, r->delta_ppl,
           r->delta_ppl_se, r->nll_cor, r->kld_mean, r->kld_se, r->kld_max, r->kld_min);
    for (int q = 0; q < CQ_KLD_NQ; q++)
        printf("%s\"%g\": %.6g", q ? ", " : "", 100 * cq_kld_quantiles[q], r->kld_q[q]);
    printf("}, \"same_top1\": %.6f, \"same_top1_se\": %.6f, \"dp_mean\": %.6g, \"dp_mean_se\": %.6g,"
           " \"dp_rms\": %.6g, \"dp_rms_se\": %.6g, \"cache_bytes\": %llu,"
           " \"bytes\": {\"payload\": %llu, \"scales\": %llu, \"sidecar\": %llu, \"residual\": %llu,"
           " \"sinks\": %llu, \"slack\": %llu, \"headers\": %llu}, \"warnings\": ",
           r->same_top1, r->same_top1_se, r->dp_mean, r->dp_mean_se, r->dp_rms, r->dp_rms_se,
           (unsigned long long)r->mem.total, (unsigned long long)r->mem.payload,
           (unsigned long long)r->mem.scales, (unsigned long long)r->mem.sidecar,
           (unsigned long long)r->mem.residual, (unsigned long long)r->mem.sinks,
           (unsigned long long)r->mem.slack, (unsigned long long)r->mem.headers);
    cq_tool_json_warnings(stdout, r->warnings);
    printf("}%s\n", last ? "" : ",");
}

static int parse_range(const char *s, size_t *a, size_t *b) {
    char buf[64];
    const char *c = strchr(s, ':');
    if (!c || (size_t)(c - s) >= sizeof buf) return -1;
    memcpy(buf, s, (size_t)(c - s));
    buf[c - s] = '\0';
    uint64_t x, y;
    if (cq_arg_u64(buf, &x) || cq_arg_u64(c + 1, &y) || y < x) return -1;
    *a = (size_t)x, *b = (size_t)y;
    return 0;
}

static int eval_ppl(int argc, char **argv) {
    cq_tool_opts op;
    cq_tool_opts_init(&op);
    op.kv = "fp16/fp16,cq8/cq8,cq4/cq4";
    cq_ppl_opts po;
    memset(&po, 0, sizeof po);
    cq_kv_format ref_fmt;
    cq_err e;
    uint32_t chunks = DEFAULT_CHUNKS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        int r = cq_tool_opt("eval ppl", &op, PPL_OPTS, argc, argv, &i);
        if (r == 1) continue;
        if (r == 2) return 2;
        if (cq_is_help(a)) {
            eval_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--chunks") && has) {
            if (cq_arg_u32(argv[++i], 0, 1u << 24, &chunks)) goto bad;
        } else if ((!strcmp(a, "--kld-base") || !strcmp(a, "--kl-divergence-base")) && has) {
            po.base_path = argv[++i];
        } else if (!strcmp(a, "--calib-range") && has) {
            if (parse_range(argv[++i], &po.calib_begin, &po.calib_end)) goto bad;
        } else if (!strcmp(a, "--ref-oracle")) po.ref_oracle = 1;
        else if (!strcmp(a, "--ref-kv") && has) {
            if (cq_kv_format_parse(argv[++i], &ref_fmt, &e)) {
                fprintf(stderr, "cq eval ppl: --ref-kv: %s\n", e.msg);
                return 2;
            }
            po.ref = &ref_fmt;
        }
        else {
            fprintf(stderr, "cq eval ppl: unknown or incomplete option '%s' (cq eval ppl --help)\n", a);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "cq eval ppl: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    if (cq_tool_opts_check("eval ppl", &op)) return 2;
    if (po.ref_oracle && po.base_path) {
        fprintf(stderr, "cq eval ppl: --ref-oracle and --kld-base are exclusive\n");
        return 2;
    }
    if (po.ref && (po.ref_oracle || po.base_path)) {
        fprintf(stderr, "cq eval ppl: --ref-kv excludes --ref-oracle and --kld-base\n");
        return 2;
    }
    if (po.ref && po.ref->key == CQ_CODEC_CQ4P && !op.mask) {
        fprintf(stderr, "cq eval ppl: --ref-kv %s: CQ-4+ keys need --mask\n", po.ref->name);
        return 2;
    }
    const char *ref_name = po.ref ? po.ref->name : po.ref_oracle ? "fp32-oracle/fp16-rounded" : "fp16/fp16";
    cq_kv_format all[64];
    uint32_t n_all = 0;
    int rc = cq_tool_parse_formats("eval ppl", op.kv, all, 64, &n_all);
    if (rc) return rc;
    cq_tool_model tm;
    if ((rc = cq_tool_model_load("eval ppl", op.model, op.tokenizer, &tm))) return rc;
    rc = 1;
    int32_t *tokens = NULL;
    size_t n_tokens = 0;
    uint8_t *masks = NULL;
    cq_ppl_result *res = NULL;
    cq_kv_format *fmts = NULL;
    char text_default[4200];
    const char *text = op.file ? op.file : cq_tool_default_text(text_default, sizeof text_default);
    const cq_model_config *c = cq_model_get_config(tm.model);
    if (cq_tool_tokenize_file("eval ppl", tm.tok, text, &tokens, &n_tokens)) goto out;
    if (cq_tool_load_mask("eval ppl", &op, c, &masks)) goto out;
    po.n_ctx = op.ctx ? op.ctx : 512;
    if (po.n_ctx > c->max_seq_len) {
        fprintf(stderr, "cq eval ppl: --ctx %u is larger than the model's context of %u tokens\n",
                po.n_ctx, c->max_seq_len);
        rc = 2;
        goto out;
    }
    po.max_chunks = chunks;
    po.n_threads = op.threads;
    cq_tool_kv_setup(&op, masks, &po.kv);
    /* formats the cache cannot run on this model: reported as n/a, not run */
    fmts = calloc(n_all, sizeof *fmts);
    res = calloc(n_all + 1, sizeof *res);
    char na_name[64][48], na_why[64][160];
    uint32_t n_na = 0, nf = 0;
    if (!fmts || !res) goto out;
    for (uint32_t i = 0; i < n_all; i++) {
        if ((all[i].key == CQ_CODEC_CQ4P || all[i].val == CQ_CODEC_CQ4P) && !masks) {
            fprintf(stderr, "cq eval ppl: format %s needs --mask FILE (cq calibrate writes one)\n",
                    all[i].name);
            rc = 2;
            goto out;
        }
        const char *why = cq_kv_format_na(c, &all[i], op.group, masks, na_why[n_na], sizeof na_why[0]);
        if (why) {
            snprintf(na_name[n_na++], sizeof na_name[0], "%.47s", all[i].name);
            fprintf(stderr, "cq eval ppl: %s: n/a (%s)\n", all[i].name, why);
        } else {
            fmts[nf++] = all[i];
        }
    }
    size_t avail = n_tokens / po.n_ctx;
    uint32_t n_chunks = (uint32_t)(chunks && chunks < avail ? chunks : avail);
    fprintf(stderr, "cq eval ppl: %s: %zu tokens; %u chunks of %u (%s)\n", text, n_tokens, n_chunks,
            po.n_ctx, tm.path);
    prog_ctx pc;
    cq_progress_start(&pc.pg, "cq eval ppl: chunk", n_chunks);
    pc.f = fmts;
    po.progress = progress;
    po.progress_user = &pc;
    cq_ppl_result ref;
    int32_t bos = cq_tokenizer_add_bos(tm.tok) ? cq_tokenizer_bos(tm.tok) : -1;
    cq_err_clear(&e);
    cq_status st = cq_eval_ppl(tm.model, tokens, n_tokens, bos, &po, fmts, nf, res, &ref, &e);
    cq_progress_end(&pc.pg);
    if (st) {
        cq_report("eval ppl", st, &e);
        goto out;
    }
    if (po.base_path)
        fprintf(stderr, "cq eval ppl: reference %s %s\n", po.base_loaded ? "read from" : "written to",
                po.base_path);
    for (uint32_t i = 0; i < nf; i++) cq_tool_warn("eval ppl", fmts[i].name, res[i].warnings);
    const char *label = cq_tool_model_label(tm.path);
    const uint32_t G = op.group ? op.group : 128;
    if (op.json) {
        printf("{\"model\": \"%s\", \"model_note\": \"%s\", \"text\": \"%s\", \"n_ctx\": %u,"
               " \"chunks\": %u, \"scored\": %llu, \"sinks\": %u, \"fp16_first\": %d,"
               " \"fp16_last\": %d, \"group\": %u, \"reference_from_file\": %d,\n"
               " \"reference\": {\"format\": \"%s\", \"ppl\": %.6f, \"ppl_se\": %.6f, \"nll\": %.6f,"
               " \"codec_bits_per_value\": %.4f, \"cache_bits_per_value\": %.4f, \"cache_context\": %u},\n"
               " \"formats\": [\n",
               tm.path, label, text, ref.n_ctx, ref.n_chunks, (unsigned long long)ref.n_scored,
               op.sinks, op.fp16_first, op.fp16_last, G, po.base_loaded,
               ref_name, ref.ppl, ref.ppl_se,
               ref.nll_mean, ref.bits.codec_bpv, ref.bits.cache_bpv, ref.bits.context);
        for (uint32_t i = 0; i < nf; i++) json_result(&fmts[i], &res[i], i + 1 == nf);
        printf(" ], \"not_applicable\": [");
        for (uint32_t i = 0; i < n_na; i++)
            printf("%s{\"format\": \"%s\", \"reason\": \"%s\"}", i ? ", " : "", na_name[i], na_why[i]);
        printf("]}\n");
    } else if (op.csv) {
        printf("format,codec_bits_per_value,cache_bits_per_value,cache_context,ppl,ppl_se,ppl_base,"
               "ppl_base_se,ppl_ratio,ppl_ratio_se,ln_ratio,ln_ratio_se,delta_ppl,delta_ppl_se,"
               "kld_mean,kld_se,kld_max,kld_p99_9,kld_p99,kld_p95,kld_p90,kld_median,kld_p10,"
               "kld_p5,kld_p1,kld_min,same_top1,same_top1_se,dp_rms,dp_rms_se,cache_bytes,warnings\n");
        for (uint32_t i = 0; i < nf; i++) {
            const cq_ppl_result *r = &res[i];
            printf("%s,%.4f,%.4f,%u,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6g,%.6g,%.6f,%.6f,%.6g,%.6g,%.6g",
                   fmts[i].name, r->bits.codec_bpv, r->bits.cache_bpv, r->bits.context, r->ppl,
                   r->ppl_se, r->ppl_base, r->ppl_base_se, r->ppl_ratio, r->ppl_ratio_se,
                   r->ln_ratio, r->ln_ratio_se, r->delta_ppl, r->delta_ppl_se, r->kld_mean,
                   r->kld_se, r->kld_max);
            for (int q = 0; q < CQ_KLD_NQ; q++) printf(",%.6g", r->kld_q[q]);
            printf(",%.6g,%.6f,%.6f,%.6g,%.6g,%llu,", r->kld_min, r->same_top1, r->same_top1_se,
                   r->dp_rms, r->dp_rms_se, (unsigned long long)r->mem.total);
            for (uint32_t b = 0, n = 0; b < CQ_WARN_COUNT; b++)
                if (r->warnings & (1u << b)) printf("%s%s", n++ ? ";" : "", cq_warn_name(b));
            printf("\n");
        }
        for (uint32_t i = 0; i < n_na; i++) printf("%s,n/a%s\n", na_name[i], ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,");
    } else {
        printf("model %s%s%s%s\ntext %s: %u chunks of %u tokens, %llu scored; G %u, sinks %u, fp16 "
               "layers %s%s%s\n",
               tm.path, *label ? " (" : "", label, *label ? ")" : "", text, ref.n_chunks, ref.n_ctx,
               (unsigned long long)ref.n_scored, G, op.sinks, op.fp16_first ? "first" : "",
               op.fp16_first && op.fp16_last ? "," : "",
               op.fp16_last ? "last" : (op.fp16_first ? "" : "none"));
        printf("PPL(base) %s%s: %.4f +- %.4f; cache bits are measured at a context of %u tokens\n\n",
               po.ref ? ref_name : po.ref_oracle ? "fp32 path, K/V rounded to fp16" : "fp16/fp16 cache",
               po.base_loaded ? " (from the base file)" : "", ref.ppl, ref.ppl_se, ref.n_ctx);
        printf("| K/V | codec bits/value | cache bits/value | PPL(Q) | PPL ratio | ln ratio | KLD mean "
               "| KLD 99%% | KLD max | same top-1 | RMS dp |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (uint32_t i = 0; i < nf; i++) {
            const cq_ppl_result *r = &res[i];
            printf("| %s%s | %.3f | %.3f | %.4f +- %.4f | %.4f +- %.4f | %.5f +- %.5f | %.4g +- %.2g "
                   "| %.4g | %.4g | %.2f +- %.2f %% | %.3f +- %.3f %% |\n",
                   fmts[i].name, r->warnings ? " (!)" : "", r->bits.codec_bpv, r->bits.cache_bpv,
                   r->ppl, r->ppl_se, r->ppl_ratio, r->ppl_ratio_se, r->ln_ratio, r->ln_ratio_se,
                   r->kld_mean, r->kld_se, r->kld_p99, r->kld_max, 100 * r->same_top1,
                   100 * r->same_top1_se, 100 * r->dp_rms, 100 * r->dp_rms_se);
        }
        for (uint32_t i = 0; i < n_na; i++)
            printf("| %s | n/a: %s | | | | | | | | | |\n", na_name[i], na_why[i]);
        printf("\nKLD distribution (nats per token):\n\n| K/V | max | 99.9%% | 99%% | 95%% | 90%% | "
               "median | 10%% | 5%% | 1%% | min |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (uint32_t i = 0; i < nf; i++) {
            const cq_ppl_result *r = &res[i];
            printf("| %s | %.4g", fmts[i].name, r->kld_max);
            for (int q = 0; q < CQ_KLD_NQ; q++) printf(" | %.4g", r->kld_q[q]);
            printf(" | %.4g |\n", r->kld_min);
        }
        printf("\ncache memory after the last chunk, bits per value by role (context %u):\n\n"
               "| K/V | payload | scales | sidecar | residual | sinks | slack | headers | cache total |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n", ref.n_ctx);
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
        int any = 0;
        for (uint32_t i = 0; i < nf; i++) any |= res[i].warnings != 0;
        if (any) printf("\n(!) a warning applies to this row: see stderr or --json\n");
    }
    rc = 0;
out:
    free(masks);
    free(res);
    free(fmts);
    free(tokens);
    cq_tool_model_free(&tm);
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
