/* SPDX-License-Identifier: MIT */
/*
 * test_eval.c - evaluation building blocks: Wilson interval and McNemar
 * against independently computed values, quantiles, the HellaSwag jsonl
 * reader (good and malformed lines), the cloze builder, and the
 * attention-fidelity metrics on exact and lossy codecs.
 */
#include <math.h>

#include "channelquant.h"
#include "cq_eval.h"
#include "cq_test.h"

static void test_stats(void) {
    double lo, hi;
    /* reference values computed with the closed form in Python (see commit) */
    cq_wilson(81, 263, 1.959964, &lo, &hi);
    CHECK(fabs(lo - 0.25528851948901576) < 1e-12 && fabs(hi - 0.3662095774580194) < 1e-12,
          "wilson(81,263) = [%.15f, %.15f]", lo, hi);
    cq_wilson(0, 10, 1.959964, &lo, &hi);
    CHECK(lo == 0.0 && fabs(hi - 0.2775328030260577) < 1e-12, "wilson(0,10) hi %.15f", hi);
    cq_wilson(426, 1000, 1.959964, &lo, &hi);
    CHECK(fabs(lo - 0.3956920948686207) < 1e-12 && fabs(hi - 0.4568742653961419) < 1e-12,
          "wilson(426,1000)");
    /* exact McNemar: 2 * P(X <= min) for Binomial(b+c, 1/2) */
    CHECK(fabs(cq_mcnemar_p(1, 9) - 0.021484375) < 1e-12, "mcnemar(1,9) %.15f", cq_mcnemar_p(1, 9));
    CHECK(fabs(cq_mcnemar_p(28, 12) - 0.01658900337497471) < 1e-12, "mcnemar(28,12)");
    CHECK(cq_mcnemar_p(5, 5) == 1.0, "mcnemar(5,5) = %g", cq_mcnemar_p(5, 5));
    CHECK(cq_mcnemar_p(0, 0) == 1.0, "mcnemar(0,0)");
    double v[] = {5, 1, 4, 2, 3};
    CHECK(cq_quantile(v, 5, 0.5) == 3.0, "median");
    CHECK(cq_quantile(v, 5, 0.0) == 1.0 && cq_quantile(v, 5, 1.0) == 5.0, "min/max");
    CHECK(fabs(cq_quantile(v, 5, 0.99) - 4.96) < 1e-12, "p99 interpolates: %g", cq_quantile(v, 5, 0.99));
    CHECK(isnan(cq_quantile(v, 0, 0.5)), "empty quantile is NaN");
}

static void test_hellaswag(void) {
    const char *good =
        "{\"ctx_a\": \"A man sits.\", \"ctx_b\": \"he plays\", \"endings\": [\"a\", \"b\\u00e9\", "
        "\"c\\\"q\", \"d\"], \"label\": \"2\", \"extra\": {\"x\": [1, 2, null, true]}}\n"
        "\n"
        "{\"ctx\": \"Ctx only\", \"endings\": [\"e0\", \"e1\"], \"label\": 1}\n";
    cq_mc_set set;
    cq_err e;
    cq_status st = cq_mc_parse_hellaswag(good, strlen(good), 0, &set, &e);
    CHECK(st == CQ_OK, "parse good: %s", e.msg);
    if (st == CQ_OK) {
        CHECK(set.n == 2, "two items, got %zu", set.n);
        CHECK(!strcmp(set.items[0].context, "A man sits. He plays"), "ctx_a + ctx_b capitalized: '%s'",
              set.items[0].context);
        CHECK(set.items[0].label == 2 && set.items[0].n_endings == 4, "label/endings");
        CHECK(!strcmp(set.items[0].endings[1], "b\xc3\xa9"), "unicode escape");
        CHECK(!strcmp(set.items[0].endings[2], "c\"q"), "quote escape");
        CHECK(!strcmp(set.items[1].context, "Ctx only") && set.items[1].label == 1, "ctx item");
        cq_mc_free(&set);
    }
    st = cq_mc_parse_hellaswag(good, strlen(good), 1, &set, &e);
    CHECK(st == CQ_OK && set.n == 1, "max_items");
    cq_mc_free(&set);
    const char *bad[] = {
        "{\"ctx\": \"x\", \"endings\": [\"a\", \"b\"], \"label\": 2}",   /* label out of range */
        "{\"ctx\": \"x\", \"endings\": [\"a\", \"b\"]}",                 /* no label */
        "{\"endings\": [\"a\", \"b\"], \"label\": 0}",                   /* no ctx */
        "{\"ctx\": \"x\", \"endings\": [\"a\" \"b\"], \"label\": 0}",    /* missing comma */
        "{\"ctx\": \"x\", \"endings\": [\"a\", \"b\"], \"label\": 0",    /* unterminated */
        "{\"ctx\": \"\\ud800\", \"endings\": [\"a\", \"b\"], \"label\": 0}", /* lone surrogate */
        "[1,2]",
        "{\"ctx\": \"x\", \"endings\": [\"a\", \"b\"], \"label\": 0} junk",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "{\"ctx\": \"ok\", \"endings\": [\"a\", \"b\"], \"label\": 0}\n%s\n", bad[i]);
        st = cq_mc_parse_hellaswag(buf, strlen(buf), 0, &set, &e);
        CHECK(st == CQ_ERR_FORMAT && e.token == 2, "bad line %zu refused on line 2 (st %s, line %lld)", i,
              cq_status_name(st), (long long)e.token);
        if (st == CQ_OK) cq_mc_free(&set);
    }
}

static void test_cloze(void) {
    const char *text =
        "One a. Two a. Three a. Four a. Five a.\n\n"
        "One b! Two b? Three b. Four b.\n"
        "Too short. Only two.\n"
        "One c. Two c. Three c. \"Four c.\"\n"
        "One d. Two d. Three d. Four d.\r\n"
        "One e. Two e. Three e. Four e. Trailing fragment";
    cq_mc_set set;
    cq_err e;
    cq_status st = cq_mc_build_cloze(text, strlen(text), 0, 7, &set, &e);
    CHECK(st == CQ_OK, "cloze: %s", e.msg);
    if (st) return;
    CHECK(set.n == 5, "5 eligible paragraphs, got %zu", set.n);
    static const char letters[] = "abcde";
    for (size_t i = 0; i < set.n; i++) {
        const cq_mc_item *it = &set.items[i];
        char want_ctx[64], want_end[64];
        snprintf(want_ctx, sizeof want_ctx, "One %c", letters[i]);
        snprintf(want_end, sizeof want_end, " Four %c.", letters[i]);
        CHECK(!strncmp(it->context, want_ctx, 5), "item %zu context '%s'", i, it->context);
        CHECK(strstr(it->context, "Four") == NULL, "item %zu context stops after 3 sentences", i);
        CHECK(it->n_endings == 4 && it->label < 4, "item %zu shape", i);
        const char *truth = it->endings[it->label];
        CHECK(!strcmp(truth, want_end) || (i == 2 && !strcmp(truth, " \"Four c.\"")),
              "item %zu true ending '%s'", i, truth);
        for (uint32_t k = 0; k < 4; k++)
            if (k != it->label) CHECK(strcmp(it->endings[k], truth) != 0, "distractor differs");
    }
    cq_mc_free(&set);
    st = cq_mc_build_cloze("A. B. C. D.\n", 12, 0, 1, &set, &e);
    CHECK(st == CQ_ERR_SHAPE, "too few paragraphs refused");
    /* paragraphs without 3 textually different distractors give no item (the draw used to
     * spin forever on them: fuzz_jsonl); here only the two odd ones qualify */
    const char *same = "1. 2. 3. Same.\n4. 5. 6. Same.\n7. 8. 9. Same.\n1. 2. 3. X.\n4. 5. 6. Y.\n";
    st = cq_mc_build_cloze(same, strlen(same), 0, 3, &set, &e);
    CHECK(st == CQ_OK && set.n == 2, "cloze with repeated endings: %s, %zu items", e.msg, set.n);
    for (size_t i = 0; st == CQ_OK && i < set.n; i++) {
        const char *truth = set.items[i].endings[set.items[i].label];
        CHECK(!strcmp(truth, i ? " Y." : " X."), "item %zu true ending '%s'", i, truth);
    }
    cq_mc_free(&set);
    const char *all_same = "1. 2. 3. Same.\n4. 5. 6. Same.\n7. 8. 9. Same.\n1. 2. 3. Same.\n";
    st = cq_mc_build_cloze(all_same, strlen(all_same), 0, 3, &set, &e);
    CHECK(st == CQ_ERR_SHAPE && set.n == 0, "no usable paragraph refused (%s)", cq_status_name(st));
}

static void test_attn_fidelity(void) {
    const uint32_t D = 64, L = 200, NQ = 4;
    uint16_t *K = malloc((size_t)L * D * 2), *V = malloc((size_t)L * D * 2);
    float *q = malloc((size_t)NQ * D * 4);
    cq_rng r;
    cq_rng_seed(&r, 3);
    for (size_t i = 0; i < (size_t)L * D; i++) {
        K[i] = cq_f64_to_f16(cq_rng_normal(&r) * ((i % D) == 5 ? 10 : 1));
        V[i] = cq_f64_to_f16(cq_rng_normal(&r));
    }
    for (size_t i = 0; i < (size_t)NQ * D; i++) q[i] = (float)cq_rng_normal(&r);
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cq_attn_metrics acc, m;
    cq_err e;
    cq_attn_metrics_clear(&acc);
    cq_status st = cq_attn_fidelity_case(cq_codec_get(CQ_CODEC_FP16), cq_codec_get(CQ_CODEC_FP16),
                                         &cfg, K, V, L, q, NQ, &acc, &e);
    cq_attn_metrics_mean(&acc, &m);
    CHECK(st == CQ_OK && m.n == NQ, "fp16 case: %s", e.msg);
    CHECK(fabs(m.score_cos - 1) < 1e-12 && fabs(m.out_cos - 1) < 1e-12 && m.top1 == 1 && m.top5 == 1 &&
              m.k_nmse == 0 && m.v_nmse == 0,
          "fp16 is exact: cos %.17g %.17g", m.score_cos, m.out_cos);
    cq_attn_metrics_clear(&acc);
    st = cq_attn_fidelity_case(cq_codec_get(CQ_CODEC_CQ4), cq_codec_get(CQ_CODEC_CQ4), &cfg, K, V, L,
                               q, NQ, &acc, &e);
    cq_attn_metrics_mean(&acc, &m);
    CHECK(st == CQ_OK, "cq4 case: %s", e.msg);
    CHECK(m.score_cos > 0.98 && m.score_cos < 1 && m.out_cos > 0.95 && m.out_cos < 1,
          "cq4 is close but lossy: %g %g", m.score_cos, m.out_cos);
    CHECK(m.k_nmse > 1e-4 && m.k_nmse < 0.05 && m.v_nmse > 1e-4 && m.v_nmse < 0.05, "cq4 nmse %g %g",
          m.k_nmse, m.v_nmse);
    /* a codec that cannot code the role is an error, not a silent number */
    st = cq_attn_fidelity_case(cq_codec_get(CQ_CODEC_CQ3ROT), cq_codec_get(CQ_CODEC_CQ4), &cfg, K, V, L,
                               q, NQ, &acc, &e);
    CHECK(st == CQ_ERR_UNSUPPORTED, "cq3rot keys unsupported: %s", cq_status_name(st));
    free(K);
    free(V);
    free(q);
}

int main(void) {
    test_stats();
    test_hellaswag();
    test_cloze();
    test_attn_fidelity();
    return cq_test_done("test_eval");
}
