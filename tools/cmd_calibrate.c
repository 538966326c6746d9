/* SPDX-License-Identifier: MIT */
/*
 * cmd_calibrate.c - `cq calibrate` (also `cq eval calibrate`): the static
 * key-outlier calibration of EVAL.md section 4 on a model and a text. The
 * runtime's key observer feeds post-RoPE keys to the library's cq_calib
 * (src/eval/calibrate.c), which does max |K|, top-k, concentration, the batch
 * stability gate and both output formats; this file is the command line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

#define CAL_OPTS (CQ_OPT_MODEL | CQ_OPT_TOK | CQ_OPT_FILE | CQ_OPT_THREADS | CQ_OPT_OUT)

static void calib_progress(void *user, uint32_t done, uint32_t total) {
    (void)total;
    cq_progress_update(user, done, NULL);
}

static void calib_usage(FILE *f) {
    fprintf(f,
            "usage: cq calibrate [--k K] [--seqs N] [--len L] [--batches B] [--out MASK]\n"
            "                    [--rom FILE] [options]\n"
            "       (cq eval calibrate is the same command)\n\n"
            "Outlier calibration (EVAL.md section 4). Runs --seqs sequences (default 128) of --len\n"
            "tokens (default 160, at most the model's context), taken in file order from the END of\n"
            "--text (default $CQ_SHARED/eval/tinystories_val.txt): the last seqs x len tokens, held\n"
            "out from `cq eval ppl` (chunks from the start; use --chunks so they do not reach the\n"
            "end) and from `cq eval mc` (cloze items from the first paragraphs). Each sequence\n"
            "starts with BOS. For every (layer, kv head, channel) it takes max |K| of the post-RoPE\n"
            "keys (what the cache stores) and keeps the top --k channels (default 2; ties to the\n"
            "lower index). Writes the text mask format of ../shared/vectors/masks to --out and\n"
            " the ROM image (one D-bit mask per line in hex)\n"
            "to --rom. Prints per (layer, head) the top-k channels and the concentration (largest\n"
            "channel max / median), and the stability gate: the sequences are split into --batches\n"
            "contiguous batches (default 8), each calibrated alone; overlap |top-k(batch) and\n"
            "top-k(all)| / k averaged over batches, per (layer, head) and as the mean over all,\n"
            "over layer 0 and over the other layers. --csv / --json print the same as data.\n"
            "The model is the default one (tinyqwen-hd64-kbias) unless -m names another.\n\n");
    cq_tool_opts_help(f, CAL_OPTS);
}

int cq_cmd_calibrate(int argc, char **argv) {
    const char *out_path = NULL, *rom_path = NULL;
    uint32_t k = 2;
    cq_tool_opts op;
    cq_tool_opts_init(&op);
    cq_calib_run_opts co;
    memset(&co, 0, sizeof co);
    co.seqs = 128;
    co.len = 160;
    co.batches = 8;
    co.threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        int r = cq_tool_opt("calibrate", &op, CAL_OPTS, argc, argv, &i);
        if (r == 1) continue;
        if (r == 2) return 2;
        if (cq_is_help(a)) {
            calib_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out") && has) out_path = argv[++i];
        else if (!strcmp(a, "--rom") && has) rom_path = argv[++i];
        else if (!strcmp(a, "--k") && has) {
            if (cq_arg_u32(argv[++i], 1, 4096, &k)) goto bad;
        } else if (!strcmp(a, "--seqs") && has) {
            if (cq_arg_u32(argv[++i], 1, 1u << 20, &co.seqs)) goto bad;
        } else if (!strcmp(a, "--len") && has) {
            if (cq_arg_u32(argv[++i], 2, 1u << 20, &co.len)) goto bad;
        } else if (!strcmp(a, "--batches") && has) {
            if (cq_arg_u32(argv[++i], 1, 4096, &co.batches)) goto bad;
        } else {
            fprintf(stderr, "cq calibrate: unknown or incomplete option '%s' (cq calibrate --help)\n", a);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "cq calibrate: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    if (cq_tool_opts_check("calibrate", &op)) return 2;
    const int csv = op.csv, json = op.json;
    const char *text = op.file;
    co.threads = op.threads;
    cq_tool_model tm;
    int rc = cq_tool_model_load("calibrate", op.model, op.tokenizer, &tm);
    if (rc) return rc;
    char tb[4096];
    if (!text) text = cq_tool_default_text(tb, sizeof tb);
    int32_t *tokens = NULL;
    size_t n_tokens = 0;
    cq_calib *cal = NULL;
    uint16_t *chan = NULL;
    double *conc = NULL, *stab = NULL;
    rc = 1;
    if (cq_tool_tokenize_file("calibrate", tm.tok, text, &tokens, &n_tokens)) goto out;
    const cq_model_config *c = cq_model_get_config(tm.model);
    if (k >= c->head_dim) {
        fprintf(stderr, "cq calibrate: --k %u must be below head_dim %u\n", k, c->head_dim);
        rc = 2;
        goto out;
    }
    cq_err e;
    cq_err_clear(&e);
    int32_t bos = cq_tokenizer_add_bos(tm.tok) ? cq_tokenizer_bos(tm.tok) : -1;
    cq_progress pg;
    cq_progress_start(&pg, "cq calibrate: sequence", co.seqs);
    co.progress = calib_progress;
    co.progress_user = &pg;
    cq_status st = cq_eval_calibrate(tm.model, tokens, n_tokens, bos, &co, &cal, &e);
    cq_progress_end(&pg);
    if (st) {
        cq_report("calibrate", st, &e);
        goto out;
    }
    const uint32_t L = c->n_layers, H = c->n_kv_heads;
    chan = malloc((size_t)L * H * k * sizeof *chan);
    conc = malloc((size_t)L * H * sizeof *conc);
    stab = malloc((size_t)L * H * sizeof *stab);
    if (!chan || !conc || !stab) goto out;
    double s_all, s0, s_rest;
    if ((st = cq_calib_topk(cal, -1, k, chan)) || (st = cq_calib_concentration(cal, conc)) ||
        (st = cq_calib_stability(cal, k, stab, &s_all, &s0, &s_rest))) {
        cq_report("calibrate", st, NULL);
        goto out;
    }
    char title[4600];
    snprintf(title, sizeof title,
             "%.2000s (max |K| after RoPE; %u sequences of %u tokens = the last %zu tokens of %.2000s)",
             tm.path, co.used_seqs, co.used_len, (size_t)co.used_seqs * co.used_len, text);
    if (out_path && (st = cq_calib_write_mask(cal, k, out_path, title, &e))) {
        cq_report("calibrate", st, &e);
        goto out;
    }
    if (rom_path && (st = cq_calib_write_rom(cal, k, rom_path, &e))) {
        cq_report("calibrate", st, &e);
        goto out;
    }
    if (json) {
        printf("{\"model\": \"%s\", \"text\": \"%s\", \"k\": %u, \"seqs\": %u, \"len\": %u, \"batches\": %u,"
               " \"first_token\": %zu, \"tokens\": %llu,\n \"stability\": {\"mean\": %.6f, \"layer0\": %.6f,"
               " \"rest\": %.6f},\n \"heads\": [\n",
               tm.path, text, k, co.used_seqs, co.used_len, co.used_batches, co.start,
               (unsigned long long)cq_calib_tokens(cal, -1), s_all, s0, s_rest);
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t h = 0; h < H; h++) {
                size_t i = (size_t)l * H + h;
                printf("  {\"layer\": %u, \"kv_head\": %u, \"channels\": [", l, h);
                for (uint32_t j = 0; j < k; j++) printf("%s%u", j ? ", " : "", chan[i * k + j]);
                printf("], \"concentration\": %.6f, \"stability\": %.6f}%s\n", conc[i], stab[i],
                       i + 1 < (size_t)L * H ? "," : "");
            }
        printf(" ]}\n");
    } else if (csv) {
        printf("layer,kv_head,channels,concentration,stability\n");
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t h = 0; h < H; h++) {
                size_t i = (size_t)l * H + h;
                printf("%u,%u,", l, h);
                for (uint32_t j = 0; j < k; j++) printf("%s%u", j ? " " : "", chan[i * k + j]);
                printf(",%.6f,%.6f\n", conc[i], stab[i]);
            }
    } else {
        printf("calibration: %s on %u sequences x %u tokens (the last %zu tokens of %s, from token "
               "%zu), %u batches, top-%u\n\n",
               tm.path, co.used_seqs, co.used_len, (size_t)co.used_seqs * co.used_len, text, co.start,
               co.used_batches, k);
        printf("| layer | kv head | top-%u channels | concentration | stability |\n"
               "|---:|---:|---|---:|---:|\n", k);
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t h = 0; h < H; h++) {
                size_t i = (size_t)l * H + h;
                printf("| %u | %u | ", l, h);
                for (uint32_t j = 0; j < k; j++) printf("%s%u", j ? " " : "", chan[i * k + j]);
                printf(" | %.3f | %.3f |\n", conc[i], stab[i]);
            }
        double cm = 0;
        for (size_t i = 0; i < (size_t)L * H; i++) cm += conc[i];
        printf("\nstability (mean overlap of per-batch top-%u with all-data top-%u): mean %.4f, "
               "layer 0 %.4f, layers 1..%u %.4f; mean concentration %.3f\n",
               k, k, s_all, s0, L - 1, s_rest, cm / ((double)L * H));
        if (out_path) printf("mask written to %s\n", out_path);
        if (rom_path) printf("ROM image written to %s\n", rom_path);
    }
    rc = 0;
out:
    free(chan);
    free(conc);
    free(stab);
    cq_calib_free(cal);
    free(tokens);
    cq_tool_model_free(&tm);
    return rc;
}
