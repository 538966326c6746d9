/* SPDX-License-Identifier: MIT */
/*
 * cmd_sweep.c - `cq sweep` (EVAL.md section 5): (a) key group size G x tier
 * (CQ-4, CQ-4+ with a calibrated mask, CQ-8 once) and (b) the codec zoo (every
 * registry codec as both K and V), each on a model and a text: measured cache
 * bits per value with PPL and KLD against the fp16 cache (cq_eval_ppl), and
 * the attention-fidelity protocol on Q/K/V captured from the same runtime.
 * Output: markdown tables, --csv/--json, and two SVG plots (cq_plot_svg).
 * Codecs the streaming cache cannot run at the model's head_dim are rows
 * marked n/a with the reason, never dropped.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

#define MAX_ROWS 96
#define SWEEP_OPTS (CQ_OPT_MODEL | CQ_OPT_TOK | CQ_OPT_FILE | CQ_OPT_KV | CQ_OPT_MASK | CQ_OPT_CTX | \
                    CQ_OPT_THREADS | CQ_OPT_OUT)

typedef struct row {
    const char *section; /* "group" or "zoo" */
    char label[64];
    cq_kv_format f;
    uint32_t group;
    char na_kld[160], na_attn[160]; /* non-empty: why that half could not run */
    double kld_se;
    double codec_bpv, bpv, ppl, dppl, kld, kld_p99, same_top1; /* cq_eval_ppl */
    uint32_t warnings;
    double attn_bpv, out_cos, score_cos, top1;      /* attention protocol */
} row;

static void sweep_usage(FILE *f) {
    fprintf(f,
            "usage: cq sweep [--groups 32,64,128,256] [--k K] [--calib-seqs N] [--chunks N]\n"
            "                [--attn-tokens N] [--no-groups] [--no-zoo] [--quick] [--plot PREFIX]\n"
            "                [options]\n\n"
            "EVAL.md section 5 on a model and a text:\n"
            " (a) G in --groups x {cq4/cq4, cq4+/cq4}, and cq8/cq8 once (G-independent);\n"
            " (b) the codec zoo: every registry codec as both K and V, or the --kv formats.\n"
            "Each row: codec bits per value and cache bits per value (at the --ctx context), PPL,\n"
            "delta PPL, KLD mean +- SE and p99, same-top-1 against the fp16 cache over --chunks\n"
            "chunks (default 4) of --ctx tokens (default 512) from the start of the text\n"
            "(cq_eval_ppl); and the attention-fidelity protocol (EVAL.md section 1) on Q/K/V of the\n"
            "first --attn-tokens tokens (default 384) captured from the same runtime, every layer and\n"
            "query head at 4 positions ({96, 191, 287, 383} for 384 tokens): output cosine, score\n"
            "cosine, top-1, with the packed bits of the whole-block codec. CQ-4+ uses --mask, else a\n"
            "mask calibrated on the fly (top --k, default 2, over --calib-seqs sequences, default\n"
            "32, of 160 tokens from the END of the text, held out from the scored chunks; a warning\n"
            "if they overlap). Codecs that cannot run in the streaming cache (not streamable, or not\n"
            "at this head_dim) are listed n/a with the reason. --quick: 1 chunk of 256, 256\n"
            "attention tokens, 8 calibration sequences (for tests). --plot PREFIX writes\n"
            "PREFIX_kld.svg (KLD mean, log scale, against codec bits per value) and PREFIX_cos.svg\n"
            "(attention-output cosine against bits per value).\n\n");
    cq_tool_opts_help(f, SWEEP_OPTS);
}

static void sweep_progress(void *user, uint32_t chunk, uint32_t n, const double *ppl,
                           const double *kld, uint32_t nf) {
    (void)ppl, (void)kld, (void)nf, (void)n;
    cq_progress_update(user, chunk, NULL);
}

static int parse_groups(const char *s, uint32_t *g, int max) {
    uint16_t v[16];
    int n = cq_arg_u16_list(s, v, max < 16 ? max : 16);
    if (n <= 0) return -1;
    for (int i = 0; i < n; i++) {
        if (v[i] < 1) return -1;
        g[i] = v[i];
    }
    return n;
}

static void print_num(FILE *o, double x, const char *fmt) {
    if (isnan(x)) fprintf(o, "null");
    else fprintf(o, fmt, x);
}

int cq_cmd_sweep(int argc, char **argv) {
    const char *plot = NULL;
    cq_tool_opts op;
    cq_tool_opts_init(&op);
    uint32_t groups[16] = {32, 64, 128, 256};
    int n_groups = 4, do_groups = 1, do_zoo = 1, quick = 0;
    uint32_t k = 2, calib_seqs = 32, chunks = 4, ctx = 512, attn_tokens = 384;
    int set_chunks = 0, set_attn = 0, set_calib = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        int r = cq_tool_opt("sweep", &op, SWEEP_OPTS, argc, argv, &i);
        if (r == 1) continue;
        if (r == 2) return 2;
        if (cq_is_help(a)) {
            sweep_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--plot") && has) plot = argv[++i];
        else if (!strcmp(a, "--groups") && has) {
            if ((n_groups = parse_groups(argv[++i], groups, 16)) < 0) goto bad;
        } else if (!strcmp(a, "--k") && has) {
            if (cq_arg_u32(argv[++i], 1, 4096, &k)) goto bad;
        } else if (!strcmp(a, "--calib-seqs") && has) {
            if (cq_arg_u32(argv[++i], 1, 1u << 20, &calib_seqs)) goto bad;
            set_calib = 1;
        } else if (!strcmp(a, "--chunks") && has) {
            if (cq_arg_u32(argv[++i], 1, 1u << 20, &chunks)) goto bad;
            set_chunks = 1;
        } else if (!strcmp(a, "--attn-tokens") && has) {
            if (cq_arg_u32(argv[++i], 8, 1u << 20, &attn_tokens)) goto bad;
            set_attn = 1;
        } else if (!strcmp(a, "--no-groups")) do_groups = 0;
        else if (!strcmp(a, "--no-zoo")) do_zoo = 0;
        else if (!strcmp(a, "--quick")) quick = 1;
        else {
            fprintf(stderr, "cq sweep: unknown or incomplete option '%s'\n", a);
            sweep_usage(stderr);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "cq sweep: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    if (cq_tool_opts_check("sweep", &op)) return 2;
    const int csv = op.csv, json = op.json;
    const char *text = op.file, *mask_path = op.mask;
    uint32_t threads = op.threads;
    int set_ctx = op.ctx != 0;
    if (set_ctx) ctx = op.ctx;
    cq_kv_format zoo_fmts[64];
    uint32_t n_zoo = 0;
    if (op.kv && cq_tool_parse_formats("sweep", op.kv, zoo_fmts, 64, &n_zoo)) return 2;
    if (!do_groups && !do_zoo) {
        fprintf(stderr, "cq sweep: nothing to do (--no-groups and --no-zoo)\n");
        return 2;
    }
    if (quick) {
        if (!set_chunks) chunks = 1;
        if (!set_ctx) ctx = 256;
        if (!set_attn) attn_tokens = 256;
        if (!set_calib) calib_seqs = 8;
    }
    cq_tool_model tm;
    int rc = cq_tool_model_load("sweep", op.model, op.tokenizer, &tm);
    if (rc) return rc;
    rc = 1;
    char tb[4096];
    if (!text) text = cq_tool_default_text(tb, sizeof tb);
    int32_t *tokens = NULL;
    size_t n_tokens = 0;
    uint8_t *masks = NULL;
    float *q = NULL, *kk = NULL, *vv = NULL;
    uint16_t *Q = NULL, *K = NULL, *V = NULL;
    row *rows = calloc(MAX_ROWS, sizeof *rows);
    cq_ppl_result *res = calloc(MAX_ROWS, sizeof *res);
    cq_kv_format *fm = calloc(MAX_ROWS, sizeof *fm);
    int nrows = 0;
    cq_err e;
    cq_err_clear(&e);
    cq_status st;
    if (!rows || !res || !fm) goto out;
    if (cq_tool_tokenize_file("sweep", tm.tok, text, &tokens, &n_tokens)) goto out;
    const cq_model_config *c = cq_model_get_config(tm.model);
    const uint32_t D = c->head_dim;
    int32_t bos = cq_tokenizer_add_bos(tm.tok) ? cq_tokenizer_bos(tm.tok) : -1;
    if (ctx > c->max_seq_len) {
        if (set_ctx) {
            fprintf(stderr, "cq sweep: --ctx %u is larger than the model's context of %u tokens\n", ctx,
                    c->max_seq_len);
            rc = 2;
            goto out;
        }
        ctx = c->max_seq_len;
    }
    if (attn_tokens > c->max_seq_len) attn_tokens = c->max_seq_len;
    if (attn_tokens > n_tokens || (uint64_t)chunks * ctx > n_tokens) {
        fprintf(stderr, "cq sweep: CQ_ERR_RANGE: the text is too short (%zu tokens)\n", n_tokens);
        goto out;
    }
    /* ---- the CQ-4+ mask: given, or calibrated on held-out text (the end of the file) */
    size_t nmask = (size_t)c->n_layers * c->n_kv_heads * D;
    masks = calloc(nmask, 1);
    if (!masks) goto out;
    char mask_desc[256];
    size_t calib_begin = 0, calib_end = 0;
    if (mask_path) {
        if ((st = cq_mask_load(mask_path, c->n_layers, c->n_kv_heads, D, masks, &e))) {
            cq_report("sweep", st, &e);
            goto out;
        }
        snprintf(mask_desc, sizeof mask_desc, "mask %.200s", mask_path);
    } else if (k < D) {
        cq_calib_run_opts co;
        memset(&co, 0, sizeof co);
        co.seqs = calib_seqs;
        co.len = 160;
        co.batches = 8;
        co.threads = threads;
        cq_calib *cal = NULL;
        st = cq_eval_calibrate(tm.model, tokens, n_tokens, bos, &co, &cal, &e);
        if (!st) st = cq_calib_masks(cal, c, k, masks);
        cq_calib_free(cal);
        if (st) {
            cq_report("sweep", st, &e);
            goto out;
        }
        calib_begin = co.start, calib_end = n_tokens;
        snprintf(mask_desc, sizeof mask_desc, "top-%u mask calibrated on the last %zu tokens", k,
                 (size_t)co.used_seqs * co.used_len);
    } else {
        fprintf(stderr, "cq sweep: --k %u must be below head_dim %u\n", k, D);
        rc = 2;
        goto out;
    }
    /* ---- rows */
    if (do_groups) {
        for (int gi = 0; gi < n_groups; gi++)
            for (int t = 0; t < 2 && nrows < MAX_ROWS; t++) {
                row *r = &rows[nrows++];
                r->section = "group";
                r->group = groups[gi];
                cq_kv_format_parse(t ? "cq4+/cq4" : "cq4/cq4", &r->f, &e);
                snprintf(r->label, sizeof r->label, "%s G=%u", t ? "cq4+/cq4" : "cq4/cq4", groups[gi]);
            }
        row *r = &rows[nrows++];
        r->section = "group";
        r->group = 128;
        cq_kv_format_parse("cq8/cq8", &r->f, &e);
        snprintf(r->label, sizeof r->label, "cq8/cq8");
    }
    if (do_zoo && n_zoo)
        for (uint32_t i = 0; i < n_zoo && nrows < MAX_ROWS; i++) {
            row *r = &rows[nrows++];
            r->section = "zoo";
            r->group = 128;
            r->f = zoo_fmts[i];
            snprintf(r->label, sizeof r->label, "%.47s", zoo_fmts[i].name);
        }
    if (do_zoo && !n_zoo)
        for (size_t i = 0; i < cq_codec_count() && nrows < MAX_ROWS; i++) {
            const cq_codec_traits *t = cq_codec_at(i);
            row *r = &rows[nrows++];
            r->section = "zoo";
            r->group = 128;
            memset(&r->f, 0, sizeof r->f);
            snprintf(r->f.name, sizeof r->f.name, "%.47s", t->name);
            r->f.key = r->f.val = t->id;
            snprintf(r->label, sizeof r->label, "%.47s", t->name);
        }
    /* why each row cannot run in the cache / through the codec */
    for (int i = 0; i < nrows; i++) {
        row *r = &rows[i];
        const char *why = cq_kv_format_na(c, &r->f, r->group, masks, r->na_kld, sizeof r->na_kld);
        if (!why) r->na_kld[0] = '\0';
        cq_codec_cfg cfg;
        cq_codec_cfg_default(&cfg, D);
        cfg.group = r->group;
        cfg.mask = masks;
        const cq_codec_traits *kc = cq_codec_get(r->f.key), *vc = cq_codec_get(r->f.val);
        if (cq_codec_supports(kc, &cfg, CQ_ROLE_KEY))
            snprintf(r->na_attn, sizeof r->na_attn, "%s cannot code keys at head_dim %u", kc->name, D);
        else if (cq_codec_supports(vc, &cfg, CQ_ROLE_VALUE))
            snprintf(r->na_attn, sizeof r->na_attn, "%s cannot code values at head_dim %u", vc->name, D);
        r->codec_bpv = r->bpv = r->ppl = r->dppl = r->kld = r->kld_p99 = r->same_top1 = NAN;
        r->attn_bpv = r->out_cos = r->score_cos = r->top1 = NAN;
    }
    /* ---- KLD / PPL: one cq_eval_ppl call per distinct G (the reference is rerun per call) */
    cq_ppl_opts po;
    memset(&po, 0, sizeof po);
    po.n_ctx = ctx;
    po.max_chunks = chunks;
    po.n_threads = threads;
    po.kv.masks = masks;
    po.calib_begin = calib_begin;
    po.calib_end = calib_end;
    uint32_t gdone[32];
    int ngd = 0;
    for (int i = 0; i < nrows; i++) {
        uint32_t G = rows[i].group;
        int seen = 0;
        for (int j = 0; j < ngd; j++) seen |= gdone[j] == G;
        if (seen || ngd == 32) continue;
        gdone[ngd++] = G;
        int idx[MAX_ROWS], nf = 0;
        for (int j = 0; j < nrows; j++)
            if (rows[j].group == G && !rows[j].na_kld[0]) {
                idx[nf] = j;
                fm[nf++] = rows[j].f;
            }
        if (!nf) continue;
        po.kv.group = G;
        char lab[96];
        snprintf(lab, sizeof lab, "cq sweep: G %u, %d formats: chunk", G, nf);
        cq_progress pg;
        cq_progress_start(&pg, lab, chunks);
        po.progress = sweep_progress;
        po.progress_user = &pg;
        cq_ppl_result ref;
        st = cq_eval_ppl(tm.model, tokens, n_tokens, bos, &po, fm, (uint32_t)nf, res, &ref, &e);
        cq_progress_end(&pg);
        if (st) {
            cq_report("sweep", st, &e);
            goto out;
        }
        for (int j = 0; j < nf; j++) {
            row *r = &rows[idx[j]];
            r->bpv = res[j].bits.cache_bpv;
            r->codec_bpv = res[j].bits.codec_bpv;
            r->kld_se = res[j].kld_se;
            r->warnings = res[j].warnings;
            cq_tool_warn("sweep", r->label, r->warnings);
            r->ppl = res[j].ppl;
            r->dppl = res[j].delta_ppl;
            r->kld = res[j].kld_mean;
            r->kld_p99 = res[j].kld_p99;
            r->same_top1 = res[j].same_top1;
        }
    }
    /* ---- attention fidelity on captured Q/K/V */
    fprintf(stderr, "cq sweep: capturing Q/K/V of %u tokens\n", attn_tokens);
    if ((st = cq_capture_qkv(tm.model, tokens, attn_tokens, threads, &q, &kk, &vv, &e))) {
        cq_report("sweep", st, &e);
        goto out;
    }
    size_t nq = (size_t)c->n_layers * c->n_heads * attn_tokens * D;
    size_t nk = (size_t)c->n_layers * c->n_kv_heads * attn_tokens * D;
    Q = malloc(nq * 2);
    K = malloc(nk * 2);
    V = malloc(nk * 2);
    if (!Q || !K || !V) goto out;
    cq_f32_to_f16_n(q, Q, nq);
    cq_f32_to_f16_n(kk, K, nk);
    cq_f32_to_f16_n(vv, V, nk);
    cq_qkv_set x = {Q, K, V, c->n_layers, c->n_heads, c->n_kv_heads, attn_tokens, D};
    cq_sel ls, hs, ps;
    cq_linspace(0, c->n_layers - 1, (int)c->n_layers, &ls);
    cq_linspace(0, c->n_heads - 1, (int)c->n_heads, &hs);
    if (attn_tokens >= 384) cq_linspace(96, 383, 4, &ps);
    else cq_linspace(attn_tokens / 4, attn_tokens - 1, 4, &ps);
    for (int i = 0; i < nrows; i++) {
        row *r = &rows[i];
        if (r->na_attn[0]) continue;
        cq_codec_cfg cfg;
        cq_codec_cfg_default(&cfg, D);
        cfg.group = r->group;
        cq_attn_metrics m;
        double bpv;
        cq_err ea;
        cq_err_clear(&ea);
        st = cq_attn_pair(cq_codec_get(r->f.key), cq_codec_get(r->f.val), &cfg, &x, &ls, &hs, &ps,
                               masks, &m, &bpv, &ea);
        if (st) {
            snprintf(r->na_attn, sizeof r->na_attn, "%.150s", ea.msg[0] ? ea.msg : cq_status_name(st));
            continue;
        }
        r->attn_bpv = bpv;
        r->out_cos = m.out_cos;
        r->score_cos = m.score_cos;
        r->top1 = m.top1;
    }
    /* ---- output */
    if (json) {
        printf("{\"model\": \"%s\", \"text\": \"%s\", \"head_dim\": %u, \"chunks\": %u, \"ctx\": %u,"
               " \"attn_tokens\": %u, \"mask\": \"%s\", \"rows\": [\n",
               tm.path, text, D, chunks, ctx, attn_tokens, mask_desc);
        for (int i = 0; i < nrows; i++) {
            const row *r = &rows[i];
            printf("  {\"section\": \"%s\", \"label\": \"%s\", \"format\": \"%s\", \"group\": %u, ",
                   r->section, r->label, r->f.name, r->group);
            printf("\"codec_bits_per_value\": ");
            print_num(stdout, r->codec_bpv, "%.4f");
            printf(", \"cache_bits_per_value\": ");
            print_num(stdout, r->bpv, "%.4f");
            printf(", \"cache_context\": %u", ctx);
            printf(", \"ppl\": ");
            print_num(stdout, r->ppl, "%.6f");
            printf(", \"delta_ppl\": ");
            print_num(stdout, r->dppl, "%.6f");
            printf(", \"kld_mean\": ");
            print_num(stdout, r->kld, "%.6g");
            printf(", \"kld_se\": ");
            print_num(stdout, r->kld_se, "%.6g");
            printf(", \"kld_p99\": ");
            print_num(stdout, r->kld_p99, "%.6g");
            printf(", \"same_top1\": ");
            print_num(stdout, r->same_top1, "%.6f");
            printf(", \"kld_na\": \"%s\", \"attn_bits_per_value\": ", r->na_kld);
            print_num(stdout, r->attn_bpv, "%.4f");
            printf(", \"out_cos\": ");
            print_num(stdout, r->out_cos, "%.8f");
            printf(", \"score_cos\": ");
            print_num(stdout, r->score_cos, "%.8f");
            printf(", \"top1\": ");
            print_num(stdout, r->top1, "%.6f");
            printf(", \"attn_na\": \"%s\", \"warnings\": ", r->na_attn);
            cq_tool_json_warnings(stdout, r->warnings);
            printf("}%s\n", i + 1 < nrows ? "," : "");
        }
        printf("]}\n");
    } else if (csv) {
        printf("section,label,format,group,codec_bits_per_value,cache_bits_per_value,cache_context,ppl,"
               "delta_ppl,kld_mean,kld_se,kld_p99,same_top1,attn_bits_per_value,out_cos,score_cos,top1,"
               "kld_na,attn_na,warnings\n");
        for (int i = 0; i < nrows; i++) {
            const row *r = &rows[i];
            printf("%s,%s,%s,%u,%.4f,%.4f,%u,%.6f,%.6f,%.6g,%.6g,%.6g,%.6f,%.4f,%.8f,%.8f,%.6f,\"%s\",\"%s\",",
                   r->section, r->label, r->f.name, r->group, r->codec_bpv, r->bpv, ctx, r->ppl, r->dppl,
                   r->kld, r->kld_se, r->kld_p99, r->same_top1, r->attn_bpv, r->out_cos, r->score_cos,
                   r->top1, r->na_kld, r->na_attn);
            for (uint32_t w = 0, n = 0; w < CQ_WARN_COUNT; w++)
                if (r->warnings & (1u << w)) printf("%s%s", n++ ? ";" : "", cq_warn_name(w));
            printf("\n");
        }
    } else {
        const char *label = cq_tool_model_label(tm.path);
        printf("sweep: %s%s%s%s on %s, head_dim %u; KLD over %u chunks of %u tokens vs the fp16 cache;\n"
               "attention fidelity on %u captured tokens (%d layers x %d query heads x %d positions);"
               " CQ-4+: %s; cache bits at a context of %u\n",
               tm.path, *label ? " (" : "", label, *label ? ")" : "", text, D, chunks, ctx, attn_tokens,
               ls.n, hs.n, ps.n, mask_desc, ctx);
        for (int sec = 0; sec < 2; sec++) {
            const char *name = sec ? "zoo" : "group";
            int any = 0;
            for (int i = 0; i < nrows; i++) any |= !strcmp(rows[i].section, name);
            if (!any) continue;
            printf("\n### %s\n\n| %s | codec bits/value | cache bits/value | PPL | dPPL | KLD mean |"
                   " KLD p99 | same top-1 | attn bits/value | output cos | score cos | top-1 |\n"
                   "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                   sec ? "codec zoo (each codec as K and V, G 128)" : "group size x tier",
                   sec ? "codec" : "tier, G");
            for (int i = 0; i < nrows; i++) {
                const row *r = &rows[i];
                if (strcmp(r->section, name)) continue;
                printf("| %s%s | ", r->label, r->warnings ? " (!)" : "");
                if (r->na_kld[0]) printf("n/a: %s | | | | | | | ", r->na_kld);
                else
                    printf("%.3f | %.3f | %.4f | %+.4f | %.3g +- %.2g | %.3g | %.4f | ", r->codec_bpv, r->bpv,
                           r->ppl, r->dppl, r->kld, r->kld_se, r->kld_p99, r->same_top1);
                if (r->na_attn[0]) printf("n/a: %s | | | |\n", r->na_attn);
                else printf("%.3f | %.5f | %.5f | %.3f |\n", r->attn_bpv, r->out_cos, r->score_cos, r->top1);
            }
        }
    }
    if (plot) {
        /* points named as the tables name the rows; the KLD plot's bars are +-1 standard error */
        cq_plot_point pts[MAX_ROWS];
        const char *series[] = {"CQ-4 (G sweep)", "CQ-4+ (G sweep)", "CQ-8", "codec zoo"};
        char path[4200], title[512], caption[1024], scored[32];
        const char *base = strrchr(tm.path, '/');
        base = base ? base + 1 : tm.path;
        /* the tinyqwen-hd64 models are this project's own (../shared/models/tinyqwen-hd64/README.md) */
        const char *self_trained = strstr(base, "tinyqwen") ? " (self-trained, not a public checkpoint)" : "";
        unsigned long long ns = (unsigned long long)chunks * (ctx - 1 - ctx / 2); /* cq_eval_ppl's */
        if (ns >= 1000000)
            snprintf(scored, sizeof scored, "%llu,%03llu,%03llu", ns / 1000000, ns / 1000 % 1000, ns % 1000);
        else if (ns >= 1000) snprintf(scored, sizeof scored, "%llu,%03llu", ns / 1000, ns % 1000);
        else snprintf(scored, sizeof scored, "%llu", ns);
        for (int which = 0; which < 2; which++) {
            size_t np = 0;
            int any_se = 0;
            for (int i = 0; i < nrows; i++) {
                const row *r = &rows[i];
                double xv = which ? r->attn_bpv : r->codec_bpv, yv = which ? r->out_cos : r->kld;
                if (isnan(xv) || isnan(yv) || (!which && yv <= 0)) continue; /* log axis: no zeros */
                /* the zoo's cq4/cq4+/cq8 are the G 128 and CQ-8 points of the group sweep */
                if (do_groups && !strcmp(r->section, "zoo") &&
                    (r->f.key == CQ_CODEC_CQ4 || r->f.key == CQ_CODEC_CQ4P || r->f.key == CQ_CODEC_CQ8))
                    continue;
                memset(&pts[np], 0, sizeof pts[np]);
                pts[np].x = xv;
                pts[np].y = yv;
                pts[np].label = r->label;
                pts[np].series = strcmp(r->section, "zoo") == 0 ? 3
                                 : r->f.key == CQ_CODEC_CQ8     ? 2
                                 : r->f.key == CQ_CODEC_CQ4P    ? 1
                                                                : 0;
                if (!which && r->kld_se > 0 && isfinite(r->kld_se)) pts[np].y_err = r->kld_se, any_se = 1;
                np++;
            }
            snprintf(path, sizeof path, "%.4000s_%s.svg", plot, which ? "cos" : "kld");
            snprintf(title, sizeof title, "%s (%.60s, head_dim %u)",
                     which ? "Attention-output cosine vs bits per value" : "KLD vs bits per value", base, D);
            if (which)
                snprintf(caption, sizeof caption,
                         "%.300s%s on %.300s: attention fidelity on Q/K/V of the first %u tokens, "
                         "%d layers x %d query heads x %d positions; bits of the packed whole-block codec.",
                         tm.path, self_trained, text, attn_tokens, ls.n, hs.n, ps.n);
            else
                snprintf(caption, sizeof caption,
                         "%.300s%s on %.300s: KLD against the fp16 cache, %u chunk%s x %u tokens, "
                         "%s scored tokens; codec bits per value of the committed tokens.%s",
                         tm.path, self_trained, text, chunks, chunks == 1 ? "" : "s", ctx, scored,
                         any_se ? " Bars: +-1 standard error of the mean." : "");
            cq_plot_opts po_plot;
            memset(&po_plot, 0, sizeof po_plot);
            po_plot.title = title;
            po_plot.xlabel =
                which ? "codec bits per value (packed, attention protocol)" : "codec bits per value";
            po_plot.ylabel = which ? "attention-output cosine (higher is better)"
                                   : "KLD mean vs fp16 cache, nats (lower is better)";
            po_plot.caption = caption;
            po_plot.log_y = !which;
            po_plot.front = which ? CQ_PLOT_FRONT_HIGHER : CQ_PLOT_FRONT_LOWER;
            po_plot.series_names = series;
            po_plot.n_series = 4;
            st = cq_plot_svg_write(path, pts, np, &po_plot, &e);
            if (st) {
                cq_report("sweep", st, &e);
                goto out;
            }
            fprintf(stderr, "cq sweep: wrote %s (%zu points)\n", path, np);
        }
    }
    rc = 0;
out:
    free(rows);
    free(res);
    free(fm);
    free(masks);
    free(q);
    free(kk);
    free(vv);
    free(Q);
    free(K);
    free(V);
    free(tokens);
    cq_tool_model_free(&tm);
    return rc;
}
