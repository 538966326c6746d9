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

typedef struct row {
    const char *section; /* "group" or "zoo" */
    char label[64];
    cq_kv_format f;
    uint32_t group;
    char na_kld[160], na_attn[160]; /* non-empty: why that half could not run */
    double bpv, ppl, dppl, kld, kld_p99, same_top1; /* cache, cq_eval_ppl */
    double kld_se;                                  /* standard error of kld; 0 = unknown (no bar) */
    double attn_bpv, out_cos, score_cos, top1;      /* attention protocol */
} row;

static void sweep_usage(FILE *f) {
    fprintf(f,
            "usage: cq sweep [--model FILE|DIR] [--tokenizer FILE] [--text FILE] [--mask FILE]\n"
            "                [--k K] [--calib-seqs N] [--groups 32,64,128,256] [--chunks N]\n"
            "                [--ctx N] [--attn-tokens N] [--no-groups] [--no-zoo] [--quick]\n"
            "                [--threads N] [--plot PREFIX] [--csv | --json]\n\n"
            "EVAL.md section 5 on a model and a text (default stories260K and\n"
            "$CQ_SHARED/eval/tinystories_val.txt):\n"
            " (a) G in --groups x {cq4/cq4, cq4+/cq4}, and cq8/cq8 once (G-independent);\n"
            " (b) the codec zoo: every registry codec as both K and V.\n"
            "Each row: the cache's measured bits per value, PPL, delta PPL, KLD mean and p99 and\n"
            "same-top-1 against the fp16 cache over --chunks chunks (default 4) of --ctx tokens\n"
            "(default 512) from the start of the text (cq_eval_ppl); and the attention-fidelity\n"
            "protocol (EVAL.md section 1) on Q/K/V of the first --attn-tokens tokens (default 384)\n"
            "captured from the same runtime, every layer and query head at 4 positions ({96, 191,\n"
            "287, 383} for 384 tokens): output cosine, score cosine, top-1, with the packed bits\n"
            "of the whole-block codec. CQ-4+ uses --mask, else a mask calibrated on the fly (top\n"
            "--k, default 2, over --calib-seqs sequences, default 32, of 160 tokens from the END of\n"
            "the text, held out from the scored chunks). Codecs that cannot run in the streaming\n"
            "cache (not streamable, or not at this head_dim: e.g. 32-channel-block codecs at D=8)\n"
            "are listed n/a with the reason. --quick: 1 chunk of 256, 256 attention tokens, 8\n"
            "calibration sequences (for tests). --plot PREFIX writes PREFIX_kld.svg (KLD mean on a\n"
            "log scale against bits per value) and PREFIX_cos.svg (attention-output cosine against\n"
            "bits per value).\n");
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
    const char *model = NULL, *tokp = NULL, *text = NULL, *mask_path = NULL, *plot = NULL;
    uint32_t groups[16] = {32, 64, 128, 256};
    int n_groups = 4, do_groups = 1, do_zoo = 1, csv = 0, json = 0, quick = 0;
    uint32_t k = 2, calib_seqs = 32, chunks = 4, ctx = 512, attn_tokens = 384, threads = 2;
    int set_chunks = 0, set_ctx = 0, set_attn = 0, set_calib = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (cq_is_help(a)) {
            sweep_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) model = argv[++i];
        else if (!strcmp(a, "--tokenizer") && has) tokp = argv[++i];
        else if (!strcmp(a, "--text") && has) text = argv[++i];
        else if (!strcmp(a, "--mask") && has) mask_path = argv[++i];
        else if (!strcmp(a, "--plot") && has) plot = argv[++i];
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
        } else if (!strcmp(a, "--ctx") && has) {
            if (cq_arg_u32(argv[++i], 8, 1u << 20, &ctx)) goto bad;
            set_ctx = 1;
        } else if (!strcmp(a, "--attn-tokens") && has) {
            if (cq_arg_u32(argv[++i], 8, 1u << 20, &attn_tokens)) goto bad;
            set_attn = 1;
        } else if (!strcmp(a, "--threads") && has) {
            if (cq_arg_u32(argv[++i], 1, 64, &threads)) goto bad;
        } else if (!strcmp(a, "--no-groups")) do_groups = 0;
        else if (!strcmp(a, "--no-zoo")) do_zoo = 0;
        else if (!strcmp(a, "--quick")) quick = 1;
        else if (!strcmp(a, "--csv")) csv = 1;
        else if (!strcmp(a, "--json")) json = 1;
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
    if (csv && json) {
        fprintf(stderr, "cq sweep: --csv and --json are exclusive\n");
        return 2;
    }
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
    int rc = cq_tool_model_load("sweep", model, tokp, &tm);
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
    if (ctx > c->max_seq_len) ctx = c->max_seq_len;
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
    if (mask_path) {
        if ((st = cq_mask_load(mask_path, c->n_layers, c->n_kv_heads, D, masks, &e))) {
            cq_report("sweep", st, &e);
            goto out;
        }
        snprintf(mask_desc, sizeof mask_desc, "mask %.200s", mask_path);
    } else if (k < D) {
        cq_tool_calib_opts co;
        memset(&co, 0, sizeof co);
        co.seqs = calib_seqs;
        co.len = 160;
        co.batches = 8;
        co.threads = threads;
        cq_calib *cal = NULL;
        st = cq_tool_calibrate(tm.model, tokens, n_tokens, bos, &co, &cal, &e);
        if (!st) st = cq_tool_calib_masks(cal, c, k, masks);
        cq_calib_free(cal);
        if (st) {
            cq_report("sweep", st, &e);
            goto out;
        }
        if (co.start < (size_t)chunks * ctx)
            fprintf(stderr, "cq sweep: note: calibration tokens overlap the scored chunks\n");
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
                snprintf(r->label, sizeof r->label, "%s G%u", t ? "CQ-4+" : "CQ-4", groups[gi]);
            }
        row *r = &rows[nrows++];
        r->section = "group";
        r->group = 128;
        cq_kv_format_parse("cq8/cq8", &r->f, &e);
        snprintf(r->label, sizeof r->label, "CQ-8");
    }
    if (do_zoo)
        for (size_t i = 0; i < cq_codec_count() && nrows < MAX_ROWS; i++) {
            const cq_codec_traits *t = cq_codec_at(i);
            row *r = &rows[nrows++];
            r->section = "zoo";
            r->group = 128;
            memset(&r->f, 0, sizeof r->f);
            snprintf(r->f.name, sizeof r->f.name, "%.47s", t->name);
            r->f.key = r->f.val = t->id;
            snprintf(r->label, sizeof r->label, "%.63s", t->name);
        }
    /* why each row cannot run in the cache / through the codec */
    for (int i = 0; i < nrows; i++) {
        row *r = &rows[i];
        const char *why = cq_tool_format_na(c, &r->f, r->group, masks, r->na_kld, sizeof r->na_kld);
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
        r->bpv = r->ppl = r->dppl = r->kld = r->kld_p99 = r->same_top1 = NAN;
        r->attn_bpv = r->out_cos = r->score_cos = r->top1 = NAN;
    }
    /* ---- KLD / PPL: one cq_eval_ppl call per distinct G (the reference is rerun per call) */
    cq_ppl_opts po;
    memset(&po, 0, sizeof po);
    po.n_ctx = ctx;
    po.max_chunks = chunks;
    po.n_threads = threads;
    po.masks = masks;
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
        po.group = G;
        fprintf(stderr, "cq sweep: ppl/KLD at G %u: %d formats x %u chunks of %u\n", G, nf, chunks, ctx);
        cq_ppl_result ref;
        if ((st = cq_eval_ppl(tm.model, tokens, n_tokens, bos, &po, fm, (uint32_t)nf, res, &ref, &e))) {
            cq_report("sweep", st, &e);
            goto out;
        }
        for (int j = 0; j < nf; j++) {
            row *r = &rows[idx[j]];
            r->bpv = res[j].bits_per_value;
            r->ppl = res[j].ppl;
            r->dppl = res[j].delta_ppl;
            r->kld = res[j].kld_mean;
            r->kld_p99 = res[j].kld_p99;
            r->same_top1 = res[j].same_top1;
        }
    }
    /* ---- attention fidelity on captured Q/K/V */
    fprintf(stderr, "cq sweep: capturing Q/K/V of %u tokens\n", attn_tokens);
    if ((st = cq_tool_capture(tm.model, tokens, attn_tokens, threads, &q, &kk, &vv, &e))) {
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
    cq_tool_qkv x = {Q, K, V, c->n_layers, c->n_heads, c->n_kv_heads, attn_tokens, D};
    cq_tool_sel ls, hs, ps;
    cq_tool_linspace(0, c->n_layers - 1, (int)c->n_layers, &ls);
    cq_tool_linspace(0, c->n_heads - 1, (int)c->n_heads, &hs);
    if (attn_tokens >= 384) cq_tool_linspace(96, 383, 4, &ps);
    else cq_tool_linspace(attn_tokens / 4, attn_tokens - 1, 4, &ps);
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
        st = cq_tool_attn_pair(cq_codec_get(r->f.key), cq_codec_get(r->f.val), &cfg, &x, &ls, &hs, &ps,
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
            printf("\"bits_per_value\": ");
            print_num(stdout, r->bpv, "%.4f");
            printf(", \"ppl\": ");
            print_num(stdout, r->ppl, "%.6f");
            printf(", \"delta_ppl\": ");
            print_num(stdout, r->dppl, "%.6f");
            printf(", \"kld_mean\": ");
            print_num(stdout, r->kld, "%.6g");
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
            printf(", \"attn_na\": \"%s\"}%s\n", r->na_attn, i + 1 < nrows ? "," : "");
        }
        printf("]}\n");
    } else if (csv) {
        printf("section,label,format,group,bits_per_value,ppl,delta_ppl,kld_mean,kld_p99,same_top1,"
               "attn_bits_per_value,out_cos,score_cos,top1,kld_na,attn_na\n");
        for (int i = 0; i < nrows; i++) {
            const row *r = &rows[i];
            printf("%s,%s,%s,%u,%.4f,%.6f,%.6f,%.6g,%.6g,%.6f,%.4f,%.8f,%.8f,%.6f,\"%s\",\"%s\"\n",
                   r->section, r->label, r->f.name, r->group, r->bpv, r->ppl, r->dppl, r->kld,
                   r->kld_p99, r->same_top1, r->attn_bpv, r->out_cos, r->score_cos, r->top1, r->na_kld,
                   r->na_attn);
        }
    } else {
        printf("sweep: %s on %s, head_dim %u; KLD over %u chunks of %u tokens vs the fp16 cache;\n"
               "attention fidelity on %u captured tokens (%d layers x %d query heads x %d positions);"
               " CQ-4+: %s\n",
               tm.path, text, D, chunks, ctx, attn_tokens, ls.n, hs.n, ps.n, mask_desc);
        for (int sec = 0; sec < 2; sec++) {
            const char *name = sec ? "zoo" : "group";
            int any = 0;
            for (int i = 0; i < nrows; i++) any |= !strcmp(rows[i].section, name);
            if (!any) continue;
            printf("\n### %s\n\n| %s | cache bits/value | PPL | dPPL | KLD mean | KLD p99 | same top-1 |"
                   " attn bits/value | output cos | score cos | top-1 |\n"
                   "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                   sec ? "codec zoo (each codec as K and V, G 128)" : "group size x tier",
                   sec ? "codec" : "tier, G");
            for (int i = 0; i < nrows; i++) {
                const row *r = &rows[i];
                if (strcmp(r->section, name)) continue;
                printf("| %s | ", r->label);
                if (r->na_kld[0]) printf("n/a: %s | | | | | | ", r->na_kld);
                else
                    printf("%.3f | %.4f | %+.4f | %.3g | %.3g | %.4f | ", r->bpv, r->ppl, r->dppl, r->kld,
                           r->kld_p99, r->same_top1);
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
                double xv = which ? r->attn_bpv : r->bpv, yv = which ? r->out_cos : r->kld;
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
                         "%s scored tokens; cache bits measured at context %u.%s",
                         tm.path, self_trained, text, chunks, chunks == 1 ? "" : "s", ctx, scored, ctx,
                         any_se ? " Bars: +-1 standard error of the mean." : "");
            cq_plot_opts po_plot;
            memset(&po_plot, 0, sizeof po_plot);
            po_plot.title = title;
            po_plot.xlabel =
                which ? "bits per value (packed, attention protocol)" : "cache bits per value (measured)";
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
