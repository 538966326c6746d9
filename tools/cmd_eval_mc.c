/* SPDX-License-Identifier: MIT */
/*
 * cmd_eval_mc.c - `cq eval mc`: multiple choice with a compressed cache
 * (EVAL.md section 2, lm-eval-harness definitions) on HellaSwag jsonl or a
 * cloze set built from plain text, every K/V format against the fp16 cache;
 * and `cq eval capture`: Q/K/V of a text through the runtime as .npy files
 * for `cq eval attn`. Item sets, scoring and statistics are the library's
 * (src/eval: mc.c, mc_score.c, stats.c); this file parses and prints.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

/* ------------------------------------------------------------- scoring */

/* ---------------------------------------------------------------- mc */

typedef struct mc_prog {
    cq_progress pg;
} mc_prog;

static void mc_progress(void *user, size_t done, size_t total) {
    (void)total;
    cq_progress_update(&((mc_prog *)user)->pg, done, NULL);
}

#define MC_OPTS (CQ_OPT_MODEL | CQ_OPT_TOK | CQ_OPT_KV | CQ_OPT_MASK | CQ_OPT_THREADS | CQ_OPT_GROUP | \
                 CQ_OPT_SINKS | CQ_OPT_FP16L | CQ_OPT_OUT)

static void mc_usage(FILE *f) {
    fprintf(f,
            "usage: cq eval mc [--hellaswag FILE.jsonl | --cloze TEXTFILE] [--items N] [--seed S]\n"
            "                  [options]\n\n"
            "Multiple choice (EVAL.md section 2, lm-eval-harness definitions). Items come from a\n"
            "HellaSwag jsonl file or a cloze set built from a plain text (default: the cloze set of\n"
            "$CQ_SHARED/eval/tinystories_val.txt, built from its first paragraphs; --items N, default\n"
            "200; --seed for the distractors, default 1). Each ending is scored by the sum of the\n"
            "log-probabilities of its tokens given the context (context + ending tokenized jointly;\n"
            "the continuation is what follows the context's own tokens); acc = argmax of the sum,\n"
            "acc_norm = argmax of the sum over the ending's length in bytes. Every --kv format\n"
            "(default fp16/fp16,cq8/cq8,cq4/cq4; cq4+ needs --mask) runs after the fp16/fp16\n"
            "reference: acc and acc_norm with Wilson 95%% intervals, the agreement of its acc_norm\n"
            "choices with the reference and the McNemar p-value of acc_norm correctness against it,\n"
            "the codec bits per value of the format and the cache bits per value measured at the\n"
            "items' mean length (all bytes, and without unused page space). Items are short: one\n"
            "no longer than G keeps its CQ-4 keys in fp16, and a warning says how many are (-g\n"
            "changes G). Formats the cache cannot run at this model are listed as n/a.\n\n");
    cq_tool_opts_help(f, MC_OPTS);
}

int cq_eval_mc(int argc, char **argv) {
    const char *hs = NULL, *cloze = NULL;
    uint32_t items = 200, seed = 1;
    cq_tool_opts op;
    cq_tool_opts_init(&op);
    op.kv = "fp16/fp16,cq8/cq8,cq4/cq4";
    cq_mc_opts mo;
    memset(&mo, 0, sizeof mo);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        int r = cq_tool_opt("eval mc", &op, MC_OPTS, argc, argv, &i);
        if (r == 1) continue;
        if (r == 2) return 2;
        if (cq_is_help(a)) {
            mc_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--hellaswag") && has) hs = argv[++i];
        else if (!strcmp(a, "--cloze") && has) cloze = argv[++i];
        else if (!strcmp(a, "--items") && has) {
            if (cq_arg_u32(argv[++i], 1, 1u << 24, &items)) goto bad;
        } else if (!strcmp(a, "--seed") && has) {
            if (cq_arg_u32(argv[++i], 0, 0xFFFFFFFFu, &seed)) goto bad;
        } else {
            fprintf(stderr, "cq eval mc: unknown or incomplete option '%s' (cq eval mc --help)\n", a);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "cq eval mc: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    if (cq_tool_opts_check("eval mc", &op)) return 2;
    if (hs && cloze) {
        fprintf(stderr, "cq eval mc: --hellaswag and --cloze are exclusive\n");
        return 2;
    }
    const int csv = op.csv, json = op.json;
    const char *formats = op.kv, *mask_path = op.mask;
    mo.threads = op.threads;
    cq_kv_format fmts[33];
    uint32_t nf = 0;
    memset(&fmts[0], 0, sizeof fmts[0]);
    strcpy(fmts[0].name, "fp16/fp16");
    fmts[0].key = fmts[0].val = CQ_CODEC_FP16; /* the reference, always first */
    int rc = cq_tool_parse_formats("eval mc", formats, fmts + 1, 32, &nf);
    if (rc) return rc;
    nf++;
    /* the reference is always run first; a listed fp16/fp16 would only repeat it */
    for (uint32_t i = 1; i < nf; i++)
        if (!fmts[i].reference && fmts[i].key == CQ_CODEC_FP16 && fmts[i].val == CQ_CODEC_FP16) {
            memmove(&fmts[i], &fmts[i + 1], (nf - i - 1) * sizeof fmts[0]);
            nf--, i--;
        }
    for (uint32_t i = 1; i < nf; i++)
        if ((fmts[i].key == CQ_CODEC_CQ4P || fmts[i].val == CQ_CODEC_CQ4P) && !mask_path) {
            fprintf(stderr, "cq eval mc: format %s needs --mask FILE\n", fmts[i].name);
            return 2;
        }
    cq_tool_model tm;
    rc = cq_tool_model_load("eval mc", op.model, op.tokenizer, &tm);
    if (rc) return rc;
    rc = 1;
    cq_mc_set set = {NULL, 0};
    uint8_t *masks = NULL;
    cq_mc_result *res = calloc(nf, sizeof *res);
    char *na[33] = {0}, nabuf[33][160];
    char tb[4096];
    const char *src = hs ? hs : cloze ? cloze : cq_tool_default_text(tb, sizeof tb);
    cq_err e;
    cq_err_clear(&e);
    cq_status st;
    if (!res) goto out;
    if (hs) {
        st = cq_mc_load_hellaswag(hs, items, &set, &e);
    } else {
        size_t len;
        char *text = cq_tool_read_file(src, &len);
        if (!text) {
            fprintf(stderr, "cq eval mc: CQ_ERR_IO: cannot read %s\n", src);
            goto out;
        }
        st = cq_mc_build_cloze(text, len, items, seed, &set, &e);
        free(text);
    }
    if (st) {
        cq_report("eval mc", st, &e);
        goto out;
    }
    if (!set.n) {
        fprintf(stderr, "cq eval mc: CQ_ERR_FORMAT: no items in %s\n", src);
        goto out;
    }
    const cq_model_config *c = cq_model_get_config(tm.model);
    if (cq_tool_load_mask("eval mc", &op, c, &masks)) goto out;
    cq_tool_kv_setup(&op, masks, &mo.kv);
    fprintf(stderr, "cq eval mc: %zu items (%s %s), %s\n", set.n, hs ? "HellaSwag" : "cloze from", src,
            tm.path);
    for (uint32_t i = 0; i < nf; i++) {
        na[i] = (char *)cq_kv_format_na(c, &fmts[i], op.group, masks, nabuf[i], sizeof nabuf[i]);
        if (na[i]) {
            fprintf(stderr, "cq eval mc: %s: n/a (%s)\n", fmts[i].name, na[i]);
            continue;
        }
        cq_mc_opts o = mo;
        mc_prog mp;
        char lab[96];
        snprintf(lab, sizeof lab, "cq eval mc: %.47s: item", fmts[i].name);
        cq_progress_start(&mp.pg, lab, set.n);
        o.progress = mc_progress;
        o.progress_user = &mp;
        if (i == 0) o.kv.n_sinks = 0, o.kv.fp16_first = o.kv.fp16_last = 0, o.kv.masks = NULL;
        st = cq_mc_score(tm.model, tm.tok, &set, &fmts[i], &o, &res[i], &e);
        cq_progress_end(&mp.pg);
        if (!st && res[i].warnings) {
            if (res[i].warnings & CQ_WARN_CTX_LE_GROUP)
                fprintf(stderr, "cq eval mc: %s: %llu scored sequences are no longer than G: their "
                        "grouped keys stayed fp16\n", fmts[i].name, (unsigned long long)res[i].n_short);
            cq_tool_warn("eval mc", fmts[i].name, res[i].warnings);
        }
        if (st) {
            cq_report("eval mc", st, &e);
            goto out;
        }
    }
    if (res[0].retok)
        fprintf(stderr, "cq eval mc: %llu items had an ending whose joint tokenization does not "
                        "extend the context's (cut at the context's length, as lm-eval-harness)\n",
                (unsigned long long)res[0].retok);
    const double z = 1.959964;
    if (json)
        printf("{\"model\": \"%s\", \"items_source\": \"%s\", \"kind\": \"%s\", \"items\": %zu, \"group\": %u,"
               " \"formats\": [\n",
               tm.path, src, hs ? "hellaswag" : "cloze", set.n, op.group ? op.group : 128);
    else if (csv)
        printf("format,codec_bits_per_value,cache_bits_per_value,cache_bits_no_slack,mean_len,n,acc,acc_lo,acc_hi,acc_norm,acc_norm_lo,acc_norm_hi,"
               "agree_fp16,mcnemar_b,mcnemar_c,mcnemar_p,warnings\n");
    else
        printf("multiple choice: %zu items (%s %s), model %s, G %u\n\n"
               "| K/V | codec bits/value | cache bits/value | w/o slack | acc | acc 95%% CI | acc_norm | acc_norm 95%% CI | agree w/ fp16 |"
               " McNemar b/c | McNemar p |\n|---|---:|---:|---:|---:|---|---:|---|---:|---|---:|\n",
               set.n, hs ? "HellaSwag" : "cloze from", src, tm.path, op.group ? op.group : 128);
    int first = 1;
    for (uint32_t i = 0; i < nf; i++) {
        if (na[i]) {
            if (json)
                printf("%s  {\"format\": \"%s\", \"not_applicable\": \"%s\"}", first ? "" : ",\n",
                       fmts[i].name, na[i]);
            else if (csv)
                printf("%s,n/a,,,,,,,,,,,,,,,\n", fmts[i].name);
            else
                printf("| %s | n/a: %s | | | | | | | | | |\n", fmts[i].name, na[i]);
            first = 0;
            continue;
        }
        const cq_mc_result *r = &res[i];
        double a_lo, a_hi, n_lo, n_hi;
        cq_wilson(r->correct, r->n, z, &a_lo, &a_hi);
        cq_wilson(r->correct_norm, r->n, z, &n_lo, &n_hi);
        uint64_t agree = 0, b = 0, cc = 0;
        for (size_t k = 0; k < r->n; k++) {
            agree += r->choice_norm[k] == res[0].choice_norm[k];
            b += res[0].right_norm[k] && !r->right_norm[k];
            cc += !res[0].right_norm[k] && r->right_norm[k];
        }
        double acc = (double)r->correct / r->n, accn = (double)r->correct_norm / r->n;
        double ag = (double)agree / r->n, p = cq_mcnemar_p(b, cc);
        if (json)
        {
            printf("%s  {\"format\": \"%s\", \"codec_bits_per_value\": %.4f, \"cache_bits_per_value\": %.4f,"
                   " \"cache_bits_no_slack\": %.4f, \"cache_context_mean\": %.1f, \"n\": %llu, \"acc\": %.6f,"
                   " \"acc_ci\": [%.6f, %.6f], \"acc_norm\": %.6f, \"acc_norm_ci\": [%.6f, %.6f],"
                   " \"agree_fp16\": %.6f, \"mcnemar_b\": %llu, \"mcnemar_c\": %llu, \"mcnemar_p\": %.6g,"
                   " \"short_sequences\": %llu, \"warnings\": ",
                   first ? "" : ",\n", fmts[i].name, r->codec_bpv, r->bits_per_value, r->bits_no_slack,
                   r->mean_len, (unsigned long long)r->n, acc,
                   a_lo, a_hi, accn, n_lo, n_hi, ag, (unsigned long long)b, (unsigned long long)cc, p,
                   (unsigned long long)r->n_short);
            cq_tool_json_warnings(stdout, r->warnings);
            printf("}");
        }
        else if (csv)
        {
            printf("%s,%.4f,%.4f,%.4f,%.1f,%llu,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%llu,%llu,%.6g,", fmts[i].name,
                   r->codec_bpv, r->bits_per_value, r->bits_no_slack, r->mean_len, (unsigned long long)r->n,
                   acc, a_lo, a_hi, accn, n_lo, n_hi, ag, (unsigned long long)b, (unsigned long long)cc, p);
            for (uint32_t w = 0, k = 0; w < CQ_WARN_COUNT; w++)
                if (r->warnings & (1u << w)) printf("%s%s", k++ ? ";" : "", cq_warn_name(w));
            printf("\n");
        }
        else
            printf("| %s%s | %.3f | %.3f | %.3f | %.4f | [%.3f, %.3f] | %.4f | [%.3f, %.3f] | %.4f | %llu/%llu | %.3g |\n",
                   fmts[i].name, r->warnings ? " (!)" : "", r->codec_bpv, r->bits_per_value, r->bits_no_slack,
                   acc, a_lo, a_hi, accn, n_lo, n_hi, ag, (unsigned long long)b, (unsigned long long)cc, p);
        first = 0;
    }
    if (json) printf("\n]}\n");
    else if (!csv)
        printf("\ncache bits: every byte of the cache after each sequence, averaged; pages are sized to the "
               "longest sequence (%u tokens) while sequences average %.0f tokens, so the page slack is\n"
               "large (\"w/o slack\" leaves it out). Codec bits: what the format costs per value at any "
               "length. (!): a warning applies (stderr, --json).\n",
               res[0].longest, res[0].mean_len);
    rc = 0;
out:
    if (res)
        for (uint32_t i = 0; i < nf; i++) cq_mc_result_free(&res[i]);
    free(res);
    free(masks);
    cq_mc_free(&set);
    cq_tool_model_free(&tm);
    return rc;
}

/* ------------------------------------------------------------- capture */

static void capture_usage(FILE *f) {
    fprintf(f,
            "usage: cq eval capture --out PREFIX [-m MODEL] [--tokenizer FILE] [-f TEXT]\n"
            "                       [--tokens N] [--offset N] [-t THREADS]\n\n"
            "Runs --tokens tokens (default 384, at most the model's context) of --text (default\n"
            "$CQ_SHARED/eval/tinystories_val.txt) from token --offset (default 0; the first token\n"
            "is set to BOS) through the runtime with an fp16 cache and writes PREFIX_q.npy\n"
            "[layers][heads][tokens][D] and PREFIX_k.npy, PREFIX_v.npy [layers][kv_heads][tokens][D]\n"
            "as fp32: post-RoPE, exactly what the cache is given (it stores their fp16 rounding).\n"
            "`cq eval attn --q PREFIX_q.npy --k PREFIX_k.npy --v PREFIX_v.npy` reads them.\n");
}

int cq_eval_capture(int argc, char **argv) {
    const char *prefix = NULL;
    uint32_t ntok = 384, offset = 0;
    cq_tool_opts op;
    cq_tool_opts_init(&op);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        int r = cq_tool_opt("eval capture", &op, CQ_OPT_MODEL | CQ_OPT_TOK | CQ_OPT_FILE | CQ_OPT_THREADS,
                            argc, argv, &i);
        if (r == 1) continue;
        if (r == 2) return 2;
        if (cq_is_help(a)) {
            capture_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out") && has) prefix = argv[++i];
        else if (!strcmp(a, "--tokens") && has) {
            if (cq_arg_u32(argv[++i], 2, 1u << 20, &ntok)) goto bad;
        } else if (!strcmp(a, "--offset") && has) {
            if (cq_arg_u32(argv[++i], 0, 0xFFFFFFFFu, &offset)) goto bad;
        } else {
            fprintf(stderr, "cq eval capture: unknown or incomplete option '%s' (cq eval capture --help)\n", a);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "cq eval capture: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    if (!prefix || strlen(prefix) > 4000) {
        fprintf(stderr, "cq eval capture: --out PREFIX is required\n");
        return 2;
    }
    const char *text = op.file;
    const uint32_t threads = op.threads;
    cq_tool_model tm;
    int rc = cq_tool_model_load("eval capture", op.model, op.tokenizer, &tm);
    if (rc) return rc;
    char tb[4096];
    if (!text) text = cq_tool_default_text(tb, sizeof tb);
    int32_t *tokens = NULL;
    size_t n = 0;
    float *q = NULL, *k = NULL, *v = NULL;
    rc = 1;
    if (cq_tool_tokenize_file("eval capture", tm.tok, text, &tokens, &n)) goto out;
    const cq_model_config *c = cq_model_get_config(tm.model);
    if (ntok > c->max_seq_len) ntok = c->max_seq_len;
    if ((uint64_t)offset + ntok > n) {
        fprintf(stderr, "cq eval capture: CQ_ERR_RANGE: %s has %zu tokens, need %llu\n", text, n,
                (unsigned long long)offset + ntok);
        goto out;
    }
    int32_t bos = cq_tokenizer_bos(tm.tok);
    if (bos >= 0 && cq_tokenizer_add_bos(tm.tok)) tokens[offset] = bos;
    cq_err e;
    cq_err_clear(&e);
    cq_status st = cq_capture_qkv(tm.model, tokens + offset, ntok, threads, &q, &k, &v, &e);
    char path[4100];
    uint64_t qs[4] = {c->n_layers, c->n_heads, ntok, c->head_dim};
    uint64_t ks[4] = {c->n_layers, c->n_kv_heads, ntok, c->head_dim};
    if (!st) {
        snprintf(path, sizeof path, "%s_q.npy", prefix);
        st = cq_npy_save(path, CQ_NPY_F32, qs, 4, q, &e);
    }
    if (!st) {
        snprintf(path, sizeof path, "%s_k.npy", prefix);
        st = cq_npy_save(path, CQ_NPY_F32, ks, 4, k, &e);
    }
    if (!st) {
        snprintf(path, sizeof path, "%s_v.npy", prefix);
        st = cq_npy_save(path, CQ_NPY_F32, ks, 4, v, &e);
    }
    if (st) {
        cq_report("eval capture", st, &e);
        goto out;
    }
    printf("captured %u tokens of %s (from token %u) through %s: %s_{q,k,v}.npy, Q [%u][%u][%u][%u], "
           "K/V [%u][%u][%u][%u] fp32\n",
           ntok, text, offset, tm.path, prefix, c->n_layers, c->n_heads, ntok, c->head_dim,
           c->n_layers, c->n_kv_heads, ntok, c->head_dim);
    rc = 0;
out:
    free(q);
    free(k);
    free(v);
    free(tokens);
    cq_tool_model_free(&tm);
    return rc;
}
