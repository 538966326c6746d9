/* SPDX-License-Identifier: MIT */
/*
 * cmd_run.c - `cq run`: the main job on a built-in default. Its first screen
 * says what the codec is for: on the default model (tinyqwen-hd64-kbias, when
 * ../shared has it) the codec and cache bits, perplexity and KLD of the main
 * formats against the fp16 cache, one decode-attention speed ratio and the
 * golden-vector line. Then greedy text, the calibration's stability, a round
 * trip of synthetic KV data through every registry codec and the attention-
 * fidelity protocol on synthetic Q/K/V (the default without ../shared).
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
    cq_qkv_set x = {Q, K, V, 1, NQH, NKV, T, D};
    cq_sel ls, hs, ps;
    cq_linspace(0, 0, 1, &ls);
    cq_linspace(0, NQH - 1, (int)NQH, &hs);
    cq_linspace(96, 383, 4, &ps);
    uint8_t mask[CQ_MAX_DIM] = {0};
    mask[17] = mask[93] = 1;
    printf("## attention fidelity, synthetic Q/K/V (D=%u, T=%u, GQA %u:%u, positions 96/191/287/383)\n\n"
           "| K/V codec | codec bits/value | output cos | score cos | top-1 | top-5 |\n|---|---:|---:|---:|---:|---:|\n",
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
        if (cq_attn_pair(c, c, &cfg, &x, &ls, &hs, &ps, NULL, &m, &bpv, &e)) {
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

/* One decode-attention row: a step over L layers of a 16K-token cache, CQ-4 against fp16
 * through the same code (cq_cache_attend), timed round-robin in the same run. */
static int decode_row(uint32_t threads) {
    const uint32_t L = 4, H = 8, D = 64, T = 16384, NQ = 32, CH = 512;
    cq_cache *c[2] = {NULL, NULL};
    const cq_codec_id ids[2] = {CQ_CODEC_FP16, CQ_CODEC_CQ4};
    uint16_t *K = malloc((size_t)CH * H * D * 2), *V = malloc((size_t)CH * H * D * 2);
    float *q = malloc((size_t)NQ * D * 4), *out = malloc((size_t)NQ * D * 4), *ref = malloc((size_t)NQ * D * 4);
    int rc = 1;
    cq_err e;
    cq_err_clear(&e);
    if (!K || !V || !q || !out || !ref) goto done;
    cq_rng r;
    cq_rng_seed(&r, 11);
    for (uint32_t i = 0; i < NQ * D; i++) q[i] = (float)cq_rng_normal(&r);
    for (int f = 0; f < 2; f++) {
        cq_cache_config cc;
        cq_cache_config_default(&cc, L, H, D);
        cc.key_codec = cc.val_codec = ids[f];
        cc.page_tokens = T;
        if (cq_cache_create(&cc, &c[f], &e)) goto done;
    }
    cq_rng_seed(&r, 12);
    for (uint32_t t0 = 0; t0 < T; t0 += CH) {
        for (size_t i = 0; i < (size_t)CH * H * D; i++) {
            K[i] = cq_f64_to_f16(cq_rng_normal(&r) * ((i % D) == 5 ? 8.0 : 1.0));
            V[i] = cq_f64_to_f16(cq_rng_normal(&r));
        }
        for (uint32_t l = 0; l < L; l++)
            for (int f = 0; f < 2; f++)
                if (cq_cache_append(c[f], l, K, V, CH, &e)) goto done;
    }
    cq_attn_opts op;
    memset(&op, 0, sizeof op);
    op.n_threads = threads;
    double best[2] = {1e30, 1e30};
    /* a sanity check of the run: layer 0 of each format against its double-precision reference */
    for (int f = 0; f < 2; f++) {
        if (cq_cache_attend(c[f], 0, q, NQ, out, &op, &e) ||
            cq_cache_attend_ref(c[f], 0, q, 1, T - 1, NQ, ref, 0.0f, &e))
            goto done;
        double err = 0, den = 1e-30;
        for (uint32_t i = 0; i < NQ * D; i++) {
            err = fmax(err, fabs((double)out[i] - ref[i]));
            den = fmax(den, fabs((double)ref[i]));
        }
        if (!(err / den < 1e-2)) {
            fprintf(stderr, "cq run: decode attention off its reference by %.3g\n", err / den);
            goto done;
        }
    }
    for (int rep = 0; rep < 7; rep++)
        for (int f = 0; f < 2; f++) {
            double t0 = cq_tool_now();
            for (uint32_t l = 0; l < L; l++)
                if (cq_cache_attend(c[f], l, q, NQ, out, &op, &e)) goto done;
            double dt = cq_tool_now() - t0;
            if (dt < best[f]) best[f] = dt;
        }
    printf("decode attention, one step over %u layers x %u KV heads x D %u at %u tokens (GQA %u:%u, "
           "%u threads, best of 7, round-robin): fp16 %.2f ms, CQ-4 %.2f ms: CQ-4 is %.2fx fp16's "
           "speed through the same code (`cq bench` for the full table)\n",
           L, H, D, T, NQ, H, threads, 1e3 * best[0], 1e3 * best[1], best[0] / best[1]);
    rc = 0;
done:
    if (rc && e.msg[0]) fprintf(stderr, "cq run: decode row: %s\n", e.msg);
    cq_cache_free(c[0]);
    cq_cache_free(c[1]);
    free(K), free(V), free(q), free(out), free(ref);
    return rc;
}

/* The golden vectors of the contract: one line (and a line per failure). */
static int golden_line(const char *shared) {
    char vdir[4200];
    snprintf(vdir, sizeof vdir, "%.4000s/vectors/channelquant", shared);
    DIR *d = opendir(vdir);
    if (!d) {
        printf("golden vectors: skipped (no %s)\n", vdir);
        return 0;
    }
    struct dirent *de;
    int ok = 0, bad = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] != 'd') continue;
        char path[8400];
        snprintf(path, sizeof path, "%s/%s", vdir, de->d_name);
        cq_golden g;
        cq_err e;
        cq_mismatch mm;
        cq_err_clear(&e);
        if (cq_golden_load(path, &g, &e) == CQ_OK) {
            cq_status st = cq_golden_check(&g, &mm, &e);
            if (st) printf("golden vector FAILED: %s: %s\n", de->d_name, e.msg);
            st ? bad++ : ok++;
            cq_golden_free(&g);
        } else {
            printf("golden vector FAILED: %s: %s\n", de->d_name, e.msg);
            bad++;
        }
    }
    closedir(d);
    printf("golden vectors of the contract (%s): %d passed, %d failed, bit for bit\n", vdir, ok, bad);
    return bad != 0;
}

/* The first screen: the codec on the default model (tinyqwen-hd64-kbias). Fills *masks
 * (CQ-4+, calibrated on held-out text) and tm for the details that follow. */
typedef struct calib_note {
    size_t tokens;
    uint32_t batches;
    double s_all, s0, s_rest;
} calib_note;

static int model_summary(const char *mpath, const char *text, cq_tool_model *tm, int32_t **tokens,
                         size_t *n_tokens, uint8_t **masks, calib_note *cn) {
    if (cq_tool_model_load("run", mpath, NULL, tm)) return 1;
    const cq_model_config *c = cq_model_get_config(tm->model);
    cq_err e;
    cq_err_clear(&e);
    cq_status st = CQ_OK;
    if (cq_tool_tokenize_file("run", tm->tok, text, tokens, n_tokens)) return 1;
    int32_t bos = cq_tokenizer_add_bos(tm->tok) ? cq_tokenizer_bos(tm->tok) : -1;
    *masks = calloc((size_t)c->n_layers * c->n_kv_heads * c->head_dim, 1);
    if (!*masks) return 1;
    /* CQ-4+: top-2 key channels calibrated on the END of the text (held out) */
    cq_calib_run_opts co;
    memset(&co, 0, sizeof co);
    co.seqs = 32;
    co.len = 256;
    co.batches = 8;
    co.threads = 2;
    cq_calib *cal = NULL;
    st = cq_eval_calibrate(tm->model, *tokens, *n_tokens, bos, &co, &cal, &e);
    if (!st) st = cq_calib_masks(cal, c, 2, *masks);
    if (!st) st = cq_calib_stability(cal, 2, NULL, &cn->s_all, &cn->s0, &cn->s_rest);
    cq_calib_free(cal);
    if (st) {
        cq_report("run", st, &e);
        return 1;
    }
    cn->tokens = (size_t)co.used_seqs * co.used_len;
    cn->batches = co.used_batches;
    static const char *const names[] = {"cq8/cq8", "cq4/cq4", "cq4+/cq4", "kivi-4/kivi-4",
                                        "q4_0/q4_0", "int4-token/int4-token", "turbo4/turbo4"};
    enum { NF = sizeof names / sizeof names[0] };
    cq_kv_format f[NF];
    for (int i = 0; i < NF; i++) cq_kv_format_parse(names[i], &f[i], &e);
    cq_ppl_opts po;
    memset(&po, 0, sizeof po);
    po.n_ctx = 512;
    po.max_chunks = 8;
    po.n_threads = 2;
    po.kv.masks = *masks;
    po.calib_begin = co.start;
    po.calib_end = *n_tokens;
    cq_ppl_result res[NF], ref;
    if ((st = cq_eval_ppl(tm->model, *tokens, *n_tokens, bos, &po, f, NF, res, &ref, &e))) {
        cq_report("run", st, &e);
        return 1;
    }
    printf("model: %s\n       %s\n", tm->path, cq_tool_model_label(tm->path));
    printf("text:  %s, %u chunks of %u tokens, second halves scored (%llu tokens); G = 128;\n"
           "       CQ-4+ mask: top-2 key channels calibrated on the last %zu tokens (held out)\n\n",
           text, ref.n_chunks, ref.n_ctx, (unsigned long long)ref.n_scored,
           (size_t)co.used_seqs * co.used_len);
    printf("| K/V | codec bits/value | cache bits/value at %u tokens | PPL | KLD vs fp16 cache |\n"
           "|---|---:|---:|---:|---:|\n", ref.n_ctx);
    printf("| fp16/fp16 | %.3f | %.3f | %.4f +- %.4f | 0 (reference) |\n", ref.bits.codec_bpv,
           ref.bits.cache_bpv, ref.ppl, ref.ppl_se);
    for (int i = 0; i < NF; i++) {
        printf("| %s%s | %.3f | %.3f | %.4f +- %.4f | %.4f +- %.4f |\n", names[i],
               res[i].warnings ? " (!)" : "", res[i].bits.codec_bpv, res[i].bits.cache_bpv,
               res[i].ppl, res[i].ppl_se, res[i].kld_mean, res[i].kld_se);
        cq_tool_warn("run", names[i], res[i].warnings);
    }
    printf("\ncodec bits: payload, scales and sidecar of committed tokens per value (the format's cost at\n"
           "any length); cache bits: every byte the cache holds at that context, fp16 in-flight key\n"
           "group included. Full tables: cq eval ppl, cq sweep, docs/EVAL_RESULTS.md.\n\n");
    return 0;
}

/* Details after the first screen: greedy text and the calibration's stability. */
static int model_details(cq_tool_model *tm, const calib_note *cn) {
    const cq_model_config *c = cq_model_get_config(tm->model);
    cq_err e;
    cq_err_clear(&e);
    cq_session *s = NULL;
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.n_threads = 2;
    so.max_tokens = 64;
    float *lg = malloc((size_t)c->vocab_size * sizeof *lg);
    cq_status st = lg ? cq_session_create(tm->model, &so, &s, &e) : CQ_ERR_NOMEM;
    if (!st) {
        int32_t t = cq_tokenizer_bos(tm->tok), prev = -1;
        printf("## greedy text, 48 tokens from BOS, fp16 cache\n\n    ");
        for (int i = 0; i < 48 && !st; i++) {
            if ((st = cq_session_forward(s, &t, 1, lg, 1, &e))) break;
            int32_t best = 0;
            for (uint32_t v = 1; v < c->vocab_size; v++)
                if (lg[v] > lg[best]) best = (int32_t)v;
            char buf[64];
            int n = cq_tokenizer_decode(tm->tok, prev < 0 ? t : prev, best, buf, sizeof buf);
            if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
            prev = best;
            t = best;
        }
        printf("\n\n");
    }
    free(lg);
    cq_session_free(s);
    if (!st)
        printf("## CQ-4+ calibration: top-2 key channels by max |K| over %zu held-out tokens; "
               "stability over %u batches (overlap with the whole set): mean %.3f, layer 0 %.3f, "
               "other layers %.3f (cq calibrate)\n\n",
               cn->tokens, cn->batches, cn->s_all, cn->s0, cn->s_rest);
    if (st) cq_report("run", st, &e);
    return st != CQ_OK;
}

int cq_cmd_run(int argc, char **argv) {
    const char *shared = getenv("CQ_SHARED");
    if (!shared || !*shared) shared = "../shared";
    for (int i = 1; i < argc; i++) {
        if (cq_is_help(argv[i])) {
            printf("usage: cq run [--shared DIR]\n\nThe main job on a built-in default. First screen: "
                   "what the codec is for, on the default\nmodel (DIR/models/tinyqwen-hd64/"
                   "tinyqwen-hd64-kbias.gguf, self-trained, when DIR, default\n$CQ_SHARED or "
                   "../shared, has it): codec bits and cache bits per value, perplexity and KL\n"
                   "divergence against the fp16 cache for fp16, CQ-8, CQ-4, CQ-4+ (mask calibrated on\n"
                   "held-out text), KIVI-4, q4_0, int4-token and turbo4 on 8 chunks of 512 tokens; one\n"
                   "decode-attention row (CQ-4 against fp16 through the same code); the golden-vector\n"
                   "line. Then: greedy text, the calibration's stability, a round trip of synthetic KV\n"
                   "data (D=128, T=1000, two hot key channels) through every codec and the\n"
                   "attention-fidelity protocol on synthetic Q/K/V over the registry. Without DIR the\n"
                   "synthetic parts run alone.\n");
            return 0;
        } else if (!strcmp(argv[i], "--shared") && i + 1 < argc) shared = argv[++i];
        else {
            fprintf(stderr, "cq run: unknown option '%s' (cq run --help)\n", argv[i]);
            return 2;
        }
    }
    int rc = 0;
    printf("# ChannelQuant: KV-cache compression for LLM decoding\n\n"
           "Keys INT4 per channel per group of G tokens (the in-flight group kept in fp16), values INT4\n"
           "per token, and in CQ-4+ two calibrated key outlier channels kept in fp16: the KIVI (ICML\n"
           "2024) / KVQuant (2024) recipe as a bit-exact streaming codec with fused attention.\n\n");
    char mpath[4200], text[4200];
    snprintf(mpath, sizeof mpath, "%.4000s/models/tinyqwen-hd64/tinyqwen-hd64-kbias.gguf", shared);
    snprintf(text, sizeof text, "%.4000s/eval/tinystories_val.txt", shared);
    FILE *probe = fopen(mpath, "rb");
    cq_tool_model tm;
    memset(&tm, 0, sizeof tm);
    int32_t *tokens = NULL;
    size_t n_tokens = 0;
    uint8_t *masks = NULL;
    calib_note cn;
    memset(&cn, 0, sizeof cn);
    int have_model = probe != NULL;
    if (probe) fclose(probe);
    if (have_model) {
        if (model_summary(mpath, text, &tm, &tokens, &n_tokens, &masks, &cn)) rc = 1;
    } else {
        printf("(no %s: the model evaluation is skipped; the synthetic tables below are the default)\n\n",
               mpath);
    }
    if (decode_row(2)) rc = 1;
    if (golden_line(shared)) rc = 1;
    printf("\n");
    if (have_model && !rc && model_details(&tm, &cn)) rc = 1;
    free(masks);
    free(tokens);
    cq_tool_model_free(&tm);
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
    printf("| codec | K codec bits/value | V codec bits/value | K NMSE | V NMSE |\n|---|---:|---:|---:|---:|\n");
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
    return rc;
}
