/* SPDX-License-Identifier: MIT */
/*
 * test_engine_spans.c - the v0.2 model is cycle-exact against the published
 * RTL's timing: every per-token and per-read span, measured by driving the
 * model through its pins, equals the span formulas of docs/ENGINE_V03.md
 * section 4, which this test computes on its own from the input data:
 *
 *   q(x, s) = 4 if x is +-0, s is 0, or the biased exponent fields differ by
 *             <= -2 or >= 9; else 25                 (quantize core latency)
 *   value token (and CQ-8 key)  D + 5 + sum over channels of q(x_c, s)
 *   key token, not the G-th     D + 2
 *   G-th key token (the flush)  2D + 4 + sum over the group's tokens of
 *                               (sum over channels of q(K_tc, s_c) + 1)
 *   read                        D + 5
 *
 * The scales come from the codec core (cq_scale_from_amax), not from the
 * engine; an outlier channel's scale is 0. With L quantize lanes a batch of L
 * channels takes its slowest unit. Inputs: the 9 golden vectors, the model's
 * synthetic N(0,1) inputs (T = 256, G = 128, D = 64 and 128, every tier), and
 * synthetic data with many zeros, huge values and subnormals (where the early
 * path dominates). Every read beat is also checked against the codec core by
 * cq_engine_run_check, so the timing change cannot have bought a wrong code.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "channelquant.h"
#include "cq_engine.h"
#include "cq_test.h"

static uint64_t n_spans, n_early_spans;

static int q_cycles(uint16_t x, uint16_t s) {
    int xm = x & 0x7FFF, sm = s & 0x7FFF;
    if (xm == 0 || sm == 0) return 4;
    int d = (xm >> 10) - (sm >> 10);
    return d <= -2 || d >= 9 ? 4 : 25;
}

/* Quantize work of one row: batches of L channels, each its slowest unit. */
static uint64_t row_q(const uint16_t *x, const uint16_t *s_per_ch, uint16_t s_all, uint32_t D,
                      uint32_t L, int *early) {
    uint64_t sum = 0;
    for (uint32_t c0 = 0; c0 < D; c0 += L) {
        int mx = 0;
        for (uint32_t c = c0; c < c0 + L && c < D; c++) {
            int q = q_cycles(x[c], s_per_ch ? s_per_ch[c] : s_all);
            if (q == 4) *early = 1;
            if (q > mx) mx = q;
        }
        sum += (uint64_t)mx;
    }
    return sum;
}

static uint64_t value_span(const uint16_t *x, uint32_t D, int qmax, uint32_t L, int *early) {
    uint16_t amax = 0;
    for (uint32_t c = 0; c < D; c++)
        if ((x[c] & 0x7FFF) > amax) amax = x[c] & 0x7FFF;
    uint16_t s = cq_scale_from_amax(amax, qmax);
    return D + 5u + row_q(x, NULL, s, D, L, early);
}

static uint64_t group_span(const uint16_t *K, uint32_t g, uint32_t D, const uint8_t *mask,
                           uint32_t L, int *early) {
    uint16_t s[CQ_MAX_DIM];
    for (uint32_t c = 0; c < D; c++) {
        uint16_t amax = 0;
        for (uint32_t t = 0; t < g; t++)
            if ((K[(size_t)t * D + c] & 0x7FFF) > amax) amax = K[(size_t)t * D + c] & 0x7FFF;
        s[c] = mask[c] ? 0 : cq_scale_from_amax(amax, 7);
    }
    uint64_t sum = 2u * D + 4u;
    for (uint32_t t = 0; t < g; t++) sum += row_q(K + (size_t)t * D, s, 0, D, L, early) + 1u;
    return sum;
}

static void check_span(const char *name, const char *what, uint32_t t, uint64_t got,
                       uint64_t want, int early, uint64_t flat) {
    n_spans++;
    if (early && want != flat) n_early_spans++;
    CHECK(got == want, "%s: %s %u: span %llu cycles, formula %llu", name, what, t,
          (unsigned long long)got, (unsigned long long)want);
}

/* Drive [T][D] K and V through a v0.2 engine as cq_engine_drv_push_kv does
 * (whole key groups back to back, then their values; CQ-8 K and V per token),
 * compare every span with its formula, then read every record. */
static void run(const char *name, cq_tier tier, uint32_t D, uint32_t T, uint32_t G,
                const uint8_t *mask, const uint16_t *K, const uint16_t *V, uint32_t L) {
    cq_engine_config cfg;
    cq_engine_config_default(&cfg);
    cfg.rev = CQ_ENGINE_V02;
    cfg.tier = tier;
    cfg.dim = D;
    cfg.group = G;
    cfg.lanes = L;
    cfg.sram_depth = 2 * T;
    memcpy(cfg.mask, mask, D);
    cq_engine *e = NULL;
    cq_err err;
    cq_status st = cq_engine_create(&cfg, &e, &err);
    CHECK(st == CQ_OK, "%s: %s", name, err.msg);
    if (st) return;
    cq_engine_drv_init(e, &err);
    int qv = tier == CQ_TIER_CQ8 ? 127 : 7;
    uint64_t flat_v = D + 2u + 24u * ((D + L - 1) / L);
    uint64_t spans0 = n_spans, early0 = n_early_spans, cyc;
    uint32_t keys = 0;
#define PUSH(x, isv, wa, addr, want, what, t, early)                                               \
    do {                                                                                           \
        st = cq_engine_drv_push_token(e, x, isv, wa, addr, &cyc, &err);                            \
        CHECK(st == CQ_OK, "%s: push: %s", name, err.msg);                                         \
        check_span(name, what, t, cyc, want, early, flat_v);                                      \
    } while (0)
    if (tier == CQ_TIER_CQ8) {
        for (uint32_t t = 0; t < T; t++) {
            int ek = 0, ev = 0;
            const uint16_t *k = K + (size_t)t * D, *v = V + (size_t)t * D;
            uint64_t wk = value_span(k, D, qv, L, &ek), wv = value_span(v, D, qv, L, &ev);
            PUSH(k, 0, 1, T + t, wk, "CQ-8 key", t, ek);
            PUSH(v, 1, 1, t, wv, "value", t, ev);
        }
        keys = T;
    } else {
        uint32_t full = T / G * G;
        for (uint32_t g0 = 0; g0 < full; g0 += G) {
            for (uint32_t t = g0; t < g0 + G; t++) {
                int ek = 0;
                uint64_t want = t + 1 < g0 + G ? D + 2u : group_span(K + (size_t)g0 * D, G, D, mask, L, &ek);
                uint64_t flat = 2u * D + 2u + (uint64_t)G * (24u * ((D + L - 1) / L) + 1u);
                st = cq_engine_drv_push_token(e, K + (size_t)t * D, 0, t == g0, T + t, &cyc, &err);
                CHECK(st == CQ_OK, "%s: push key: %s", name, err.msg);
                check_span(name, t + 1 < g0 + G ? "key" : "group-closing key", t, cyc, want, ek,
                           flat);
            }
            for (uint32_t t = g0; t < g0 + G; t++) {
                int ev = 0;
                uint64_t want = value_span(V + (size_t)t * D, D, qv, L, &ev);
                PUSH(V + (size_t)t * D, 1, 1, t, want, "value", t, ev);
            }
        }
        for (uint32_t t = full; t < T; t++) {
            int ev = 0;
            uint64_t want = value_span(V + (size_t)t * D, D, qv, L, &ev);
            PUSH(V + (size_t)t * D, 1, 1, t, want, "value", t, ev);
        }
        keys = full;
    }
#undef PUSH
    uint32_t beats[CQ_MAX_DIM];
    for (uint32_t a = 0; a < T + keys; a++) {
        st = cq_engine_drv_read(e, a < T ? a : T + (a - T), beats, 0, &cyc, &err);
        CHECK(st == CQ_OK, "%s: read %u: %s", name, a, err.msg);
        check_span(name, "read", a, cyc, D + 5u, 0, D + 3u);
    }
    printf("  %-34s L=%u: %5llu spans equal the formulas, %5llu with an early-path channel\n",
           name, L, (unsigned long long)(n_spans - spans0),
           (unsigned long long)(n_early_spans - early0));
    cq_engine_free(e);

    /* and the beats are still the contract's (the run the CLI does) */
    cq_engine_report rep;
    st = cq_engine_run_check(&cfg, K, V, T, NULL, NULL, NULL, &rep, &err);
    CHECK(st == CQ_OK && rep.mismatches == 0, "%s: beats: %s", name, err.msg);
    CHECK(rep.q_total > 0 && rep.q_fast <= rep.q_total, "%s: early-path counts", name);
}

static void golden(const char *root) {
    DIR *d = opendir(root);
    CHECK(d != NULL, "open %s", root);
    if (!d) return;
    char names[16][256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 16)
        if (de->d_name[0] == 'd' && strstr(de->d_name, "__"))
            snprintf(names[n++], sizeof names[0], "%s", de->d_name);
    closedir(d);
    CHECK(n == 9, "%d golden vectors, want 9", n);
    for (int i = 0; i < n; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", root, names[i]);
        cq_golden g;
        cq_err err;
        if (cq_golden_load(path, &g, &err) != CQ_OK) {
            CHECK(0, "load %s: %s", path, err.msg);
            continue;
        }
        run(names[i], g.tier, g.D, g.T, g.G ? g.G : 1, g.mask, g.input_k, g.input_v, 1);
        if (i == 0) run(names[i], g.tier, g.D, g.T, g.G ? g.G : 1, g.mask, g.input_k, g.input_v, 3);
        cq_golden_free(&g);
    }
}

/* N(0,1) (sparse = 0), or mostly zeros with huge values and subnormals (sparse = 1). */
static void synth(cq_tier tier, uint32_t D, uint32_t T, int sparse) {
    uint16_t *K = malloc((size_t)T * D * 2), *V = malloc((size_t)T * D * 2);
    uint8_t mask[CQ_MAX_DIM] = {0};
    cq_rng r;
    cq_rng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)T * D; i++) K[i] = cq_f64_to_f16(cq_rng_normal(&r));
    for (size_t i = 0; i < (size_t)T * D; i++) V[i] = cq_f64_to_f16(cq_rng_normal(&r));
    if (sparse) {
        for (size_t i = 0; i < (size_t)T * D; i++) {
            uint32_t k = (uint32_t)cq_rng_below(&r, 10);
            if (k < 6) K[i] = V[i] = (uint16_t)(k & 1 ? 0x8000 : 0); /* +-0 */
            else if (k == 6) K[i] = 0x6400, V[i] = 0xE400;           /* +-1024 */
            else if (k == 7) K[i] = V[i] = (uint16_t)(1 + cq_rng_below(&r, 1023)); /* subnormal */
        }
        for (uint32_t c = 0; c < D; c++) V[5 * D + c] = (uint16_t)(c + 1); /* an all-tiny token */
    }
    if (tier == CQ_TIER_CQ4P) mask[1] = mask[D / 2] = 1;
    char name[64];
    snprintf(name, sizeof name, "synthetic-%s %s D=%u", sparse ? "sparse" : "normal",
             cq_tier_tag(tier), D);
    run(name, tier, D, T, 128, mask, K, V, 1);
    free(K);
    free(V);
}

int main(void) {
    const char *shared = getenv("CQ_SHARED");
    char root[1024];
    snprintf(root, sizeof root, "%s/vectors/channelquant", shared ? shared : "../shared");
    golden(root);
    const cq_tier tiers[] = {CQ_TIER_CQ4, CQ_TIER_CQ4P, CQ_TIER_CQ8};
    for (int i = 0; i < 3; i++) {
        synth(tiers[i], 64, 256, 0);
        synth(tiers[i], 128, 256, 0);
        synth(tiers[i], 64, 256, 1);
    }
    printf("  %llu spans in all equal the formulas; %llu had an early-path channel\n",
           (unsigned long long)n_spans, (unsigned long long)n_early_spans);
    CHECK(n_early_spans > 1000, "the data exercise the early path (%llu spans)",
          (unsigned long long)n_early_spans);
    return cq_test_done("test_engine_spans");
}
