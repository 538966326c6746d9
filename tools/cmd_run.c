/*
 * cmd_run.c - `cq run`: the main job on a built-in default. Checks the codec
 * against the shipped golden vectors when ../shared is beside the checkout,
 * round-trips built-in synthetic KV data through every registry codec, runs
 * the attention-fidelity protocol on synthetic Q/K/V over the registry, and,
 * when the stories260K model is in the shared directory, a short model
 * evaluation: greedy text, a perplexity/KLD table and a cloze multiple choice.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"


/* The attention-fidelity protocol on synthetic data: 1 layer, 4 query heads over
 * 2 KV heads, T = 384, D = 128, keys with two hot channels and a RoPE-like
 * per-channel offset, queries correlated with the hot channels. */
static int synthetic_attention(void) {
    const uint32_t T = 384, D = 128, NQH = 4, NKV = 2;
    size_t nk = (size_t)NKV * T * D, nq = (size_t)NQH * T * D;
    uint16_t *Q = malloc(nq * 2), *K = malloc(nk * 2), *V = malloc(nk * 2);
    if (!Q || !K || !V) {
        free(Q), free(K), free(V);
        return 1;
    }
    cq_rng s;
    cq_rng_seed(&s, 7);
    for (size_t i = 0; i < nk; i++) {
        size_t c = i % D;
        double hot = (c == 17 || c == 93) ? 12.0 : 1.0;
        K[i] = cq_f64_to_f16(cq_rng_normal(&s) * hot + (c % 5 == 0 ? 2.0 : 0.0));
        V[i] = cq_f64_to_f16(cq_rng_normal(&s) * 0.7);
    }
    for (size_t i = 0; i < nq; i++) {
        size_t c = i % D;
        Q[i] = cq_f64_to_f16(cq_rng_normal(&s) * ((c == 17 || c == 93) ? 0.6 : 1.0));
    }
    cq_tool_qkv x = {Q, K, V, 1, NQH, NKV, T, D};
    cq_tool_sel ls, hs, ps;
    cq_tool_linspace(0, 0, 1, &ls);
    cq_tool_linspace(0, NQH - 1, (int)NQH, &hs);
    cq_tool_linspace(96, 383, 4, &ps);
    uint8_t mask[CQ_MAX_DIM] = {0};
    mask[17] = mask[93] = 1;
    printf("## attention fidelity, synthetic Q/K/V (D=%u, T=%u, GQA %u:%u, positions 96/191/287/383)\n\n"
           "| K/V codec | bits/value | output cos | score cos | top-1 | top-5 |\n|---|---:|---:|---:|---:|---:|\n",
           D, T, NQH, NKV);
    for (size_t ci = 0; ci < cq_codec_count(); ci++) {
        const cq_codec_traits *c = cq_codec_at(ci);
        cq_codec_cfg cfg;
        cq_codec_cfg_default(&cfg, D);
        cfg.mask = mask;
        if (cq_codec_supports(c, &cfg, CQ_ROLE_KEY) || cq_codec_supports(c, &cfg, CQ_ROLE_VALUE)) {
            printf("| %s | n/a (not both roles at D=%u) | | | | |\n", c->name, D);
            continue;
        }
        cq_attn_metrics m;
        double bpv;
        cq_err e;
        cq_err_clear(&e);
        if (cq_tool_attn_pair(c, c, &cfg, &x, &ls, &hs, &ps, NULL, &m, &bpv, &e)) {
            printf("| %s | n/a: %s | | | | |\n", c->name, e.msg);
            continue;
        }
        printf("| %s | %.3f | %.5f | %.5f | %.3f | %.3f |\n", c->name, bpv, m.out_cos, m.score_cos, m.top1,
               m.top5);
    }
    printf("\n");
    free(Q), free(K), free(V);
    return 0;
}

/* The short model evaluation on stories260K (about half a minute on 2 cores). */
static int model_eval(const char *shared) {
    char mdir[4200], text[4200];
    snprintf(mdir, sizeof mdir, "%.4000s/models/stories260K", shared);
    snprintf(text, sizeof text, "%.4000s/eval/tinystories_val.txt", shared);
    cq_tool_model tm;
    if (cq_tool_model_load("run", mdir, NULL, &tm)) return 1;
    const cq_model_config *c = cq_model_get_config(tm.model);
    int rc = 1;
    int32_t *tokens = NULL;
    size_t n_tokens = 0;
    uint8_t *masks = NULL;
    cq_session *s = NULL;
    cq_mc_set set = {NULL, 0};
    cq_err e;
    cq_err_clear(&e);
    cq_status st = CQ_OK;
    if (cq_tool_tokenize_file("run", tm.tok, text, &tokens, &n_tokens)) goto out;
    int32_t bos = cq_tokenizer_add_bos(tm.tok) ? cq_tokenizer_bos(tm.tok) : -1;
    /* 1. greedy text through the fp16 cache */
    printf("## model: %s (dim %u, %u layers, %u/%u heads, head_dim %u)\n\n", tm.path, c->dim, c->n_layers,
           c->n_heads, c->n_kv_heads, c->head_dim);
    {
        cq_session_opts so;
        cq_session_opts_default(&so);
        so.n_threads = 2;
        so.max_tokens = 64;
        float *lg = malloc((size_t)c->vocab_size * sizeof *lg);
        if (!lg || (st = cq_session_create(tm.model, &so, &s, &e))) {
            free(lg);
            goto fail;
        }
        int32_t t = cq_tokenizer_bos(tm.tok), prev = -1;
        printf("greedy, 48 tokens from BOS, fp16 cache:\n\n    ");
        for (int i = 0; i < 48; i++) {
            if ((st = cq_session_forward(s, &t, 1, lg, 1, &e))) break;
            int32_t best = 0;
            for (uint32_t v = 1; v < c->vocab_size; v++)
                if (lg[v] > lg[best]) best = (int32_t)v;
            char buf[64];
            int n = cq_tokenizer_decode(tm.tok, prev < 0 ? t : prev, best, buf, sizeof buf);
            if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
            prev = best;
            t = best;
        }
        printf("\n\n");
        free(lg);
        if (st) goto fail;
    }
    /* 2. a CQ-4+ mask calibrated on held-out text (the end of the file) */
    masks = calloc((size_t)c->n_layers * c->n_kv_heads * c->head_dim, 1);
    cq_tool_calib_opts co;
    memset(&co, 0, sizeof co);
    co.seqs = 32;
    co.len = 160;
    co.batches = 8;
    co.threads = 2;
    co.quiet = 1;
    cq_calib *cal = NULL;
    if (!masks) goto out;
    st = cq_tool_calibrate(tm.model, tokens, n_tokens, bos, &co, &cal, &e);
    double s_all = 0, s0 = 0, s_rest = 0;
    if (!st) st = cq_tool_calib_masks(cal, c, 2, masks);
    if (!st) st = cq_calib_stability(cal, 2, NULL, &s_all, &s0, &s_rest);
    cq_calib_free(cal);
    if (st) goto fail;
    printf("CQ-4+ mask: top-2 key channels by max |K|, calibrated on the last %zu tokens (%u sequences);"
           " stability over %u batches: mean %.3f, layer 0 %.3f, other layers %.3f\n\n",
           (size_t)co.used_seqs * co.used_len, co.used_seqs, co.used_batches, s_all, s0, s_rest);
    /* 3. perplexity and KLD, 2 chunks of 512 from the start of the text */
    const char *names[] = {"cq8/cq8", "cq4/cq4", "cq4+/cq4"};
    cq_kv_format f[4];
    for (int i = 0; i < 3; i++) cq_kv_format_parse(names[i], &f[i], &e);
    cq_ppl_opts po;
    memset(&po, 0, sizeof po);
    po.n_ctx = 512;
    po.max_chunks = 2;
    po.n_threads = 2;
    po.masks = masks;
    cq_ppl_result res[3], ref;
    if ((st = cq_eval_ppl(tm.model, tokens, n_tokens, bos, &po, f, 3, res, &ref, &e))) goto fail;
    printf("perplexity, %u chunks of 512 tokens (second halves scored), G 128:\n\n"
           "| K/V | bits/value | PPL | KLD mean | same top-1 |\n|---|---:|---:|---:|---:|\n"
           "| fp16/fp16 | (reference) | %.4f | 0 | 1.0000 |\n", ref.n_chunks, ref.ppl);
    for (int i = 0; i < 3; i++)
        printf("| %s | %.3f | %.4f | %.4g | %.4f |\n", names[i], res[i].bits_per_value, res[i].ppl,
               res[i].kld_mean, res[i].same_top1);
    /* 4. a short cloze multiple choice */
    {
        size_t len;
        char *tx = cq_tool_read_file(text, &len);
        if (!tx) goto out;
        st = cq_mc_build_cloze(tx, len, 40, 1, &set, &e);
        free(tx);
        if (st) goto fail;
        cq_kv_format mf[4];
        cq_kv_format_parse("fp16/fp16", &mf[0], &e);
        for (int i = 0; i < 3; i++) mf[i + 1] = f[i];
        cq_mc_opts mo;
        memset(&mo, 0, sizeof mo);
        mo.threads = 2;
        mo.masks = masks;
        printf("\ncloze multiple choice, %zu items from the start of the text (acc_norm):\n\n"
               "| K/V | acc_norm | 95%% CI | agree w/ fp16 |\n|---|---:|---|---:|\n", set.n);
        cq_mc_result r0, r;
        memset(&r0, 0, sizeof r0);
        for (int i = 0; i < 4; i++) {
            if ((st = cq_mc_score(tm.model, tm.tok, &set, &mf[i], &mo, i ? &r : &r0, &e))) {
                cq_mc_result_free(&r0);
                goto fail;
            }
            const cq_mc_result *rr = i ? &r : &r0;
            double lo, hi;
            cq_wilson(rr->correct_norm, rr->n, 1.959964, &lo, &hi);
            uint64_t ag = 0;
            for (size_t k = 0; k < rr->n; k++) ag += rr->choice_norm[k] == r0.choice_norm[k];
            printf("| %s | %.3f | [%.3f, %.3f] | %.3f |\n", mf[i].name, (double)rr->correct_norm / rr->n,
                   lo, hi, (double)ag / rr->n);
            if (i) cq_mc_result_free(&r);
        }
        cq_mc_result_free(&r0);
        printf("\n(full tables: cq eval ppl, cq eval mc, cq calibrate, cq sweep; docs/EVAL_RESULTS.md)\n");
    }
    rc = 0;
    goto out;
fail:
    cq_report("run", st, &e);
out:
    cq_mc_free(&set);
    cq_session_free(s);
    free(masks);
    free(tokens);
    cq_tool_model_free(&tm);
    return rc;
}

int cq_cmd_run(int argc, char **argv) {
    const char *shared = getenv("CQ_SHARED");
    if (!shared || !*shared) shared = "../shared";
    for (int i = 1; i < argc; i++) {
        if (cq_is_help(argv[i])) {
            printf("usage: cq run [--shared DIR]\n\nThe main job on a built-in default: golden-vector "
                   "conformance (when DIR, default $CQ_SHARED or ../shared, is present), a round trip\n"
                   "of synthetic KV data (D=128, T=1000, two hot key channels) through every codec,\n"
                   "the attention-fidelity protocol on synthetic Q/K/V over the registry, and, when\n"
                   "DIR/models/stories260K exists, a short model evaluation: greedy text, PPL/KLD of\n"
                   "fp16, CQ-8, CQ-4, CQ-4+ (mask calibrated on held-out text) on 2 chunks, and a\n"
                   "40-item cloze multiple choice.\n");
            return 0;
        } else if (!strcmp(argv[i], "--shared") && i + 1 < argc) shared = argv[++i];
        else {
            fprintf(stderr, "cq run: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    int rc = 0;
    char vdir[4096];
    snprintf(vdir, sizeof vdir, "%s/vectors/channelquant", shared);
    DIR *d = opendir(vdir);
    if (d) {
        printf("## golden vectors (%s)\n\n", vdir);
        struct dirent *de;
        int ok = 0, bad = 0;
        while ((de = readdir(d))) {
            if (de->d_name[0] != 'd') continue;
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", vdir, de->d_name);
            cq_golden g;
            cq_err e;
            cq_mismatch mm;
            if (cq_golden_load(path, &g, &e) == CQ_OK) {
                cq_status st = cq_golden_check(&g, &mm, &e);
                printf("%s %s\n", st ? "FAIL" : "ok  ", de->d_name);
                st ? bad++ : ok++;
                cq_golden_free(&g);
            } else {
                printf("FAIL %s: %s\n", de->d_name, e.msg);
                bad++;
            }
        }
        closedir(d);
        printf("\n%d passed, %d failed\n\n", ok, bad);
        if (bad) rc = 1;
    } else {
        printf("(no %s: skipping golden vectors)\n\n", vdir);
    }
    const uint32_t D = 128, T = 1000;
    uint16_t *K = malloc((size_t)T * D * 2), *V = malloc((size_t)T * D * 2);
    float *out = malloc((size_t)T * D * 4);
    uint8_t mask[CQ_MAX_DIM] = {0};
    mask[17] = mask[93] = 1;
    cq_rng s;
    cq_rng_seed(&s, 42);
    for (size_t i = 0; i < (size_t)T * D; i++) {
        size_t c = i % D;
        K[i] = cq_f64_to_f16(cq_rng_normal(&s) * (mask[c] ? 15.0 : 1.0) + (c % 7 == 0 ? 1.5 : 0.0));
        V[i] = cq_f64_to_f16(cq_rng_normal(&s) * 0.5);
    }
    printf("## round trip, synthetic K/V, D=%u T=%u, hot key channels 17 and 93\n\n", D, T);
    printf("| codec | K bits/value | V bits/value | K NMSE | V NMSE |\n|---|---:|---:|---:|---:|\n");
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cfg.mask = mask;
    for (size_t ci = 0; ci < cq_codec_count(); ci++) {
        const cq_codec_traits *c = cq_codec_at(ci);
        double bpv[2] = {NAN, NAN}, nmse[2] = {NAN, NAN};
        for (int r = 0; r < 2; r++) {
            cq_role role = r ? CQ_ROLE_VALUE : CQ_ROLE_KEY;
            const uint16_t *x = r ? V : K;
            if (cq_codec_supports(c, &cfg, role)) continue;
            size_t nb = c->packed_bytes(&cfg, role, T);
            uint8_t *buf = malloc(nb + 1);
            cq_err e;
            if (!buf || c->encode(&cfg, role, x, T, buf, nb, &e) ||
                c->decode(&cfg, role, buf, nb, T, out)) {
                free(buf);
                rc = 1;
                continue;
            }
            double num = 0, den = 0;
            for (size_t i = 0; i < (size_t)T * D; i++) {
                double ref = cq_f16_to_f32(x[i]), dd = out[i] - ref;
                num += dd * dd;
                den += ref * ref;
            }
            bpv[r] = 8.0 * (double)nb / ((double)T * D);
            nmse[r] = num / den;
            free(buf);
        }
        char cell[4][32];
        for (int r = 0; r < 2; r++) {
            /* a role the codec cannot code is n/a, never a number */
            if (isnan(bpv[r])) snprintf(cell[r], sizeof cell[r], "n/a");
            else snprintf(cell[r], sizeof cell[r], "%.4f", bpv[r]);
            if (isnan(nmse[r])) snprintf(cell[2 + r], sizeof cell[2 + r], "n/a");
            else snprintf(cell[2 + r], sizeof cell[2 + r], "%.3e", nmse[r]);
        }
        printf("| %s | %s | %s | %s | %s |\n", c->name, cell[0], cell[1], cell[2], cell[3]);
    }
    free(K);
    free(V);
    free(out);
    printf("\n");
    if (synthetic_attention()) rc = 1;
    char mpath[4200];
    snprintf(mpath, sizeof mpath, "%.4000s/models/stories260K", shared);
    DIR *md = opendir(mpath);
    if (md) {
        closedir(md);
        if (model_eval(shared)) rc = 1;
    } else {
        printf("(no %s: the model evaluation is skipped; the synthetic tables above are the default)\n", mpath);
    }
    return rc;
}
