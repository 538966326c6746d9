/* SPDX-License-Identifier: MIT */
/*
 * test_eval_model.c - the evaluation on the default model and the figures
 * every command reports:
 *   - the first 16 greedy tokens of each tinyqwen-hd64 variant (self-trained)
 *     after "Once upon a time" through the fp16 cache are pinned, and the fp32
 *     oracle path (K/V rounded to fp16) gives the same tokens (the two variants
 *     compute the same function, so their pins are equal);
 *   - the codec bits per value measured from a cache (cq_eval_bits) and the
 *     registry's figure (cq_format_codec_bits) equal the formulas at D = 64:
 *     CQ-4: 4 + 8/G + 8/D; CQ-4+ with k channels: ((4 + 16/G)(D - k) + 16 k) / (2 D)
 *     + (4 + 16/D) / 2; CQ-8: 8 + 16/D;
 *   - the warnings: context <= G, a KIVI window covering the sequence, the
 *     calibration range overlapping the scored chunks, and a context larger
 *     than the model's refused.
 * Needs ../shared (models); without it the model checks are skipped, the rest runs.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"
#include "cq_fp16.h"
#include "cq_test.h"
#include "cq_util.h"

/* greedy continuation of "Once upon a time" (with BOS), n tokens */
static int greedy(const cq_model *m, cq_kv_mode mode, int32_t *out, int n) {
    const cq_tokenizer *tok = cq_model_tokenizer(m);
    const cq_model_config *c = cq_model_get_config(m);
    int32_t in[64];
    size_t np = 0;
    cq_err e;
    cq_err_clear(&e);
    if (!tok || cq_tokenizer_encode(tok, "Once upon a time", 16, cq_tokenizer_add_bos(tok), in, 64, &np, &e))
        return -1;
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.mode = mode;
    so.ref_kv_fp16 = mode == CQ_KV_REFERENCE;
    so.max_tokens = 128;
    so.n_threads = 2;
    cq_session *s = NULL;
    float *lg = malloc((size_t)c->vocab_size * sizeof *lg);
    int rc = -1;
    if (!lg || cq_session_create(m, &so, &s, &e)) goto done;
    if (cq_session_forward(s, in, (uint32_t)np, lg, 1, &e)) goto done;
    for (int i = 0; i < n; i++) {
        int32_t b = 0;
        for (uint32_t v = 1; v < c->vocab_size; v++)
            if (lg[v] > lg[b]) b = (int32_t)v;
        out[i] = b;
        if (cq_session_forward(s, &b, 1, lg, 1, &e)) goto done;
    }
    rc = 0;
done:
    cq_session_free(s);
    free(lg);
    return rc;
}

static void test_greedy_pins(const char *shared) {
    static const struct {
        const char *file;
        int32_t pin[16];
    } cases[] = {
        {"tinyqwen-hd64.gguf", {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337}},
        {"tinyqwen-hd64-kbias.gguf", {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%.4000s/models/tinyqwen-hd64/%s", shared, cases[i].file);
        cq_model *m = NULL;
        cq_err e;
        cq_err_clear(&e);
        if (cq_model_load(path, &m, &e)) {
            CHECK(0, "%s: %s", path, e.msg);
            continue;
        }
        int32_t a[16], b[16];
        CHECK(greedy(m, CQ_KV_CACHE, a, 16) == 0, "%s: greedy through the fp16 cache", cases[i].file);
        CHECK(greedy(m, CQ_KV_REFERENCE, b, 16) == 0, "%s: greedy on the oracle path", cases[i].file);
        printf("%s greedy:", cases[i].file);
        for (int t = 0; t < 16; t++) printf(" %d", a[t]);
        printf("\n");
        CHECK(!memcmp(a, cases[i].pin, sizeof a), "%s: the first 16 greedy tokens moved", cases[i].file);
        CHECK(!memcmp(a, b, sizeof a), "%s: the fp16 cache and the oracle path disagree", cases[i].file);
        cq_model_free(m);
    }
}

/* append T random tokens to a 2-layer, 2-head, D-64 cache of format f; its codec bits */
static double measured_bits(const char *fmt, uint32_t G, uint32_t T, const uint8_t *masks,
                            uint32_t *warn) {
    const uint32_t L = 2, H = 2, D = 64;
    cq_kv_format f;
    cq_err e;
    cq_err_clear(&e);
    if (cq_kv_format_parse(fmt, &f, &e)) return NAN;
    cq_model_config mc;
    memset(&mc, 0, sizeof mc);
    mc.n_layers = L, mc.n_kv_heads = H, mc.head_dim = D;
    cq_kv_setup kv;
    memset(&kv, 0, sizeof kv);
    kv.group = G;
    kv.masks = masks;
    cq_layer_codecs lb[2];
    cq_cache_config cc;
    cq_kv_format_cache_config(&mc, &f, &kv, lb, &cc);
    cq_cache *c = NULL;
    if (cq_cache_create(&cc, &c, &e)) return NAN;
    uint16_t *K = malloc((size_t)T * H * D * 2), *V = malloc((size_t)T * H * D * 2);
    cq_rng r;
    cq_rng_seed(&r, 5);
    for (size_t i = 0; i < (size_t)T * H * D; i++) {
        K[i] = cq_f64_to_f16(cq_rng_normal(&r));
        V[i] = cq_f64_to_f16(cq_rng_normal(&r));
    }
    double bpv = NAN;
    cq_bits bits;
    int ok = 1;
    for (uint32_t l = 0; l < L; l++) ok &= cq_cache_append(c, l, K, V, T, &e) == CQ_OK;
    *warn = 0;
    if (ok && cq_eval_bits(c, &bits, warn, &e) == CQ_OK) bpv = bits.codec_bpv;
    free(K);
    free(V);
    cq_cache_free(c);
    return bpv;
}

static void test_codec_bits(void) {
    const double D = 64;
    uint8_t masks[2 * 2 * 64];
    memset(masks, 0, sizeof masks);
    for (int h = 0; h < 4; h++) masks[h * 64 + 3] = masks[h * 64 + 40] = 1; /* k = 2 */
    const uint32_t groups[] = {32, 64, 128, 256};
    for (size_t i = 0; i < 4; i++) {
        double G = groups[i], k = 2;
        uint32_t w;
        double cq4 = 4 + 8 / G + 8 / D;
        double cq4p = ((4 + 16 / G) * (D - k) + 16 * k) / (2 * D) + (4 + 16 / D) / 2;
        double m4 = measured_bits("cq4/cq4", groups[i], 512, NULL, &w);
        CHECK(fabs(m4 - cq4) < 1e-12, "cq4 G=%u: measured %.6f, formula %.6f", groups[i], m4, cq4);
        CHECK(w == 0, "cq4 G=%u at 512 tokens: no warning expected, got %#x", groups[i], w);
        double m4p = measured_bits("cq4+/cq4", groups[i], 512, masks, &w);
        CHECK(fabs(m4p - cq4p) < 1e-12, "cq4+ G=%u: measured %.6f, formula %.6f", groups[i], m4p, cq4p);
        cq_kv_format f;
        cq_err e;
        cq_kv_format_parse("cq4/cq4", &f, &e);
        double r4 = cq_format_codec_bits(&f, 2, 64, groups[i], NULL);
        CHECK(fabs(r4 - cq4) < 1e-12, "cq4 G=%u registry %.6f, formula %.6f", groups[i], r4, cq4);
        cq_kv_format_parse("cq4+/cq4", &f, &e);
        double r4p = cq_format_codec_bits(&f, 2, 64, groups[i], masks);
        CHECK(fabs(r4p - cq4p) < 1e-12, "cq4+ G=%u registry %.6f, formula %.6f", groups[i], r4p, cq4p);
    }
    uint32_t w;
    double m8 = measured_bits("cq8/cq8", 128, 300, NULL, &w);
    CHECK(fabs(m8 - (8 + 16 / D)) < 1e-12, "cq8: measured %.6f, formula %.6f", m8, 8 + 16 / D);
    double m16 = measured_bits("fp16/fp16", 128, 300, NULL, &w);
    CHECK(m16 == 16.0, "fp16: measured %.6f", m16);
    /* a context shorter than G: keys never committed; the registry's unit figure and a warning */
    double ms = measured_bits("cq4/cq4", 128, 100, NULL, &w);
    CHECK(fabs(ms - (4 + 8 / 128.0 + 8 / D)) < 1e-12, "cq4 at 100 tokens: %.6f", ms);
    CHECK(w & CQ_WARN_CTX_LE_GROUP, "cq4 at 100 tokens < G: ctx_le_group expected, got %#x", w);
}

static void test_warnings(void) {
    cq_kv_format f;
    cq_err e;
    cq_kv_format_parse("cq4/cq4", &f, &e);
    CHECK(cq_kv_format_warnings(&f, 128, 128) & CQ_WARN_CTX_LE_GROUP, "cq4 ctx 128 G 128");
    CHECK(!(cq_kv_format_warnings(&f, 129, 128) & CQ_WARN_CTX_LE_GROUP), "cq4 ctx 129 G 128");
    CHECK(cq_kv_format_warnings(&f, 64, 64) & CQ_WARN_CTX_LE_GROUP, "cq4 ctx 64 G 64");
    CHECK(!(cq_kv_format_warnings(&f, 512, 64) & CQ_WARN_CTX_LE_GROUP), "cq4 ctx 512 G 64");
    cq_kv_format_parse("cq8/cq8", &f, &e);
    CHECK(cq_kv_format_warnings(&f, 16, 128) == 0, "cq8 has no group");
    cq_kv_format_parse("kivi-4/kivi-4", &f, &e);
    CHECK(cq_kv_format_warnings(&f, 128, 128) & CQ_WARN_KIVI_WINDOW, "kivi-4 window 128 >= 128");
    CHECK(!(cq_kv_format_warnings(&f, 512, 128) & CQ_WARN_KIVI_WINDOW), "kivi-4 window 128 < 512");
    cq_kv_format_parse("fp32", &f, &e);
    CHECK(cq_kv_format_warnings(&f, 4, 128) == 0, "the oracle path warns of nothing");
    for (uint32_t b = 0; b < CQ_WARN_COUNT; b++)
        CHECK(strlen(cq_warn_name(b)) > 3 && strlen(cq_warn_text(b)) > 20, "warning %u named", b);
}

static void test_ppl_warnings(const char *shared) {
    char path[4200];
    snprintf(path, sizeof path, "%.4000s/models/tinyqwen-hd64/tinyqwen-hd64-kbias.gguf", shared);
    cq_model *m = NULL;
    cq_err e;
    cq_err_clear(&e);
    if (cq_model_load(path, &m, &e)) {
        CHECK(0, "%s: %s", path, e.msg);
        return;
    }
    int32_t tok[1200];
    cq_rng r;
    cq_rng_seed(&r, 3);
    for (int i = 0; i < 1200; i++) tok[i] = (int32_t)(cq_rng_uniform(&r) * 500) + 3;
    cq_kv_format f[2];
    cq_kv_format_parse("cq4/cq4", &f[0], &e);
    cq_kv_format_parse("cq8/cq8", &f[1], &e);
    cq_ppl_opts o;
    memset(&o, 0, sizeof o);
    o.n_ctx = 128;
    o.max_chunks = 2;
    o.n_threads = 1;
    o.calib_begin = 300; /* after the 2 x 128 tokens of the chunks */
    o.calib_end = 1200;
    cq_ppl_result res[2], ref;
    CHECK(cq_eval_ppl(m, tok, 1200, 1, &o, f, 2, res, &ref, &e) == CQ_OK, "ppl: %s", e.msg);
    CHECK(res[0].warnings & CQ_WARN_CTX_LE_GROUP, "cq4 at ctx 128: %#x", res[0].warnings);
    CHECK(!(res[1].warnings & CQ_WARN_CTX_LE_GROUP), "cq8 at ctx 128: %#x", res[1].warnings);
    CHECK(!(res[0].warnings & CQ_WARN_CALIB_OVERLAP), "calibration [300, 1200) after the chunks' 256 tokens");
    o.calib_begin = 100;
    CHECK(cq_eval_ppl(m, tok, 1200, 1, &o, f, 2, res, &ref, &e) == CQ_OK, "ppl: %s", e.msg);
    CHECK((res[0].warnings & res[1].warnings) & CQ_WARN_CALIB_OVERLAP, "calibration [100, ..) overlaps");
    /* the statistics hang together: ratio = exp(ln ratio), delta = PPL(Q) - PPL(base) */
    CHECK(fabs(res[0].ppl_ratio - exp(res[0].ln_ratio)) < 1e-12, "ratio");
    CHECK(fabs(res[0].delta_ppl - (res[0].ppl - res[0].ppl_base)) < 1e-12, "delta");
    CHECK(fabs(res[0].ppl_base - ref.ppl) < 1e-12, "base");
    CHECK(res[0].kld_q[0] >= res[0].kld_q[1] && res[0].kld_q[1] >= res[0].kld_q[4] &&
              res[0].kld_q[4] >= res[0].kld_q[7] && res[0].kld_max >= res[0].kld_q[0] &&
              res[0].kld_min <= res[0].kld_q[7], "KLD quantiles ordered");
    CHECK(res[0].kld_se > 0 && res[0].dp_rms > 0 && res[0].same_top1 > 0.5, "KLD SE, RMS dp, same top");
    o.n_ctx = 1024;
    o.calib_begin = o.calib_end = 0;
    CHECK(cq_eval_ppl(m, tok, 1200, 1, &o, f, 1, res, &ref, &e) == CQ_ERR_RANGE,
          "a context larger than the model's is refused");
    CHECK(strstr(e.msg, "larger than the model's context") != NULL, "message: %s", e.msg);
    cq_model_free(m);
}

/* the "@exact" / "@fast" suffix of a format: parsed into precision, kept in the name, the
 * one-name spelling canonical with it; bad suffixes and fp32 with one refused */
static void test_format_precision(void) {
    cq_kv_format f;
    cq_err e;
    CHECK(cq_kv_format_parse("cq4/cq4@exact", &f, &e) == CQ_OK && f.precision == CQ_ATTN_EXACT &&
              f.key == CQ_CODEC_CQ4 && f.val == CQ_CODEC_CQ4 && !strcmp(f.name, "cq4/cq4@exact"),
          "cq4/cq4@exact: %u %s", f.precision, f.name);
    CHECK(cq_kv_format_parse("cq4@FAST", &f, &e) == CQ_OK && f.precision == CQ_ATTN_FAST &&
              !strcmp(f.name, "cq4/cq4@fast"), "cq4@FAST: %u %s", f.precision, f.name);
    CHECK(cq_kv_format_parse("cq8/cq4", &f, &e) == CQ_OK && f.precision == 0, "no suffix: default");
    const char *bad[] = {"cq4/cq4@", "cq4/cq4@slow", "fp32@exact", "@fast", "cq4@exact@fast"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(cq_kv_format_parse(bad[i], &f, &e) != CQ_OK, "'%s' refused", bad[i]);
}

/* cq_session_opts.attn_precision reaches the cache's attention: EXACT and FAST sessions give
 * different logits on a CQ-4 cache, each reproduces itself bit for bit, and a value that is
 * neither is refused at create */
static void test_session_precision(const char *shared) {
    char path[4200];
    snprintf(path, sizeof path, "%.4000s/models/tinyqwen-hd64/tinyqwen-hd64-kbias.gguf", shared);
    cq_model *m = NULL;
    cq_err e;
    if (cq_model_load(path, &m, &e)) {
        CHECK(0, "%s: %s", path, e.msg);
        return;
    }
    const cq_model_config *c = cq_model_get_config(m);
    cq_kv_format f;
    cq_kv_format_parse("cq4/cq4", &f, &e);
    cq_kv_setup kv;
    memset(&kv, 0, sizeof kv);
    kv.page_tokens = 300;
    cq_layer_codecs *lbuf = calloc(c->n_layers, sizeof *lbuf);
    cq_cache_config cc;
    cq_kv_format_cache_config(c, &f, &kv, lbuf, &cc);
    int32_t tok[300];
    for (int i = 0; i < 300; i++) tok[i] = 3 + (i * 37) % 400;
    float *lg[3];
    for (int k = 0; k < 3; k++) lg[k] = malloc((size_t)300 * c->vocab_size * sizeof(float));
    const uint32_t prec[3] = {CQ_ATTN_EXACT, CQ_ATTN_FAST, CQ_ATTN_EXACT};
    for (int k = 0; k < 3; k++) {
        cq_session_opts so;
        cq_session_opts_default(&so);
        so.mode = CQ_KV_CACHE;
        so.cache = &cc;
        so.max_tokens = so.batch = 300;
        so.attn_precision = prec[k];
        cq_session *s = NULL;
        CHECK(lg[k] && cq_session_create(m, &so, &s, &e) == CQ_OK, "session: %s", e.msg);
        CHECK(s && cq_session_forward(s, tok, 300, lg[k], 0, &e) == CQ_OK, "forward: %s", e.msg);
        cq_session_free(s);
    }
    const size_t nb = (size_t)300 * c->vocab_size * sizeof(float);
    CHECK(!memcmp(lg[0], lg[2], nb), "EXACT reproduces itself");
    CHECK(memcmp(lg[0], lg[1], nb) != 0, "FAST differs from EXACT (the precision reached attention)");
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.attn_precision = 7;
    cq_session *s = NULL;
    CHECK(cq_session_create(m, &so, &s, &e) == CQ_ERR_ARG && !s, "attn_precision 7 refused");
    for (int k = 0; k < 3; k++) free(lg[k]);
    free(lbuf);
    cq_model_free(m);
}

int main(void) {
    test_codec_bits();
    test_format_precision();
    test_warnings();
    const char *shared = cq_test_shared();
    char probe[4200];
    snprintf(probe, sizeof probe, "%.4000s/models/tinyqwen-hd64/tinyqwen-hd64.gguf", shared);
    FILE *f = fopen(probe, "rb");
    if (f) {
        fclose(f);
        test_greedy_pins(shared);
        test_ppl_warnings(shared);
        test_session_precision(shared);
    } else {
        printf("test_eval_model: no %s: model checks skipped\n", probe);
    }
    return cq_test_done("test_eval_model");
}
