/* SPDX-License-Identifier: MIT */
/*
 * test_cache_kernels.c - differential tests of the kernel tables: the AVX2
 * encoders against the codec core bit for bit (every finite fp16 value, ties,
 * specials, awkward D, g, G and outlier sets), and the AVX2 attention loops
 * against the scalar reference within the stated bound, over awkward sizes.
 * In a SIMD=0 build (or on a CPU without AVX2) only the scalar table is
 * checked against the core.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/kernels/cq_kernels.h"
#include "cq_test.h"
#include "util/cache_testutil.h"

static const uint32_t DIMS[] = {2, 4, 6, 8, 14, 16, 18, 30, 32, 34, 40, 62, 64, 66, 96, 126, 128, 130, 256, 510, 512};
#define NDIMS (sizeof DIMS / sizeof DIMS[0])

static void test_enc_token(const cq_kernels *k) {
    cq_rng r;
    cq_rng_seed(&r, 1);
    int bad = 0, n = 0;
    uint16_t x[512];
    uint8_t a[512], b[512];
    for (size_t di = 0; di < NDIMS; di++)
        for (unsigned bits = 4; bits <= 8; bits += 4)
            for (int rep = 0; rep < 40; rep++) {
                const uint32_t D = DIMS[di];
                ctu_fill_f16(&r, x, D, rep < 20 ? 1.0f : 1e-3f, rep & 1);
                if (rep == 5) memset(x, 0, D * 2); /* all zero: scale 2^-14 */
                if (rep == 6)
                    for (uint32_t c = 0; c < D; c++) x[c] = 0x8000; /* all -0.0 */
                if (rep == 7) { /* exact ties: x = (j + 1/2) * scale with scale = 1 */
                    int qm = bits == 8 ? 127 : 7;
                    for (uint32_t c = 0; c < D; c++)
                        x[c] = cq_f32_to_f16((float)((int)(c % (2 * qm)) - qm) + 0.5f);
                    x[0] = cq_f32_to_f16((float)qm); /* amax = qmax: scale 1.0 */
                }
                uint16_t sa, sb;
                memset(a, 0xAA, sizeof a);
                memset(b, 0xAA, sizeof b);
                cq_encode_token(x, D, bits, a, &sa, 0, NULL);
                k->enc_token(x, D, bits, b, &sb);
                n++;
                if (sa != sb || memcmp(a, b, sizeof a)) bad++;
            }
    /* every finite fp16 value, as D=64 tokens with a large anchor to vary the scale */
    for (uint32_t base = 0; base < 0x10000; base += 63)
        for (unsigned bits = 4; bits <= 8; bits += 4) {
            uint32_t D = 64;
            for (uint32_t c = 0; c < 63; c++) {
                uint16_t h = (uint16_t)(base + c);
                x[c] = cq_f16_is_finite(h) ? h : 0x3C00;
            }
            x[63] = (uint16_t)(0x3C00 + (base % 0x3000)); /* anchor */
            uint16_t sa, sb;
            cq_encode_token(x, D, bits, a, &sa, 0, NULL);
            k->enc_token(x, D, bits, b, &sb);
            n++;
            if (sa != sb || memcmp(a, b, cq_token_bytes(D, bits))) bad++;
        }
    CHECK(bad == 0, "%s enc_token: %d of %d tokens differ from cq_encode_token", k->name, bad, n);
}

static void test_enc_key_group(const cq_kernels *k) {
    cq_rng r;
    cq_rng_seed(&r, 2);
    int bad = 0, n = 0;
    static const uint32_t gs[] = {1, 2, 3, 7, 16, 33, 128};
    uint16_t *K = malloc(128 * 512 * 2);
    uint8_t *pa = malloc(128 * 512), *pb = malloc(128 * 512);
    uint16_t sa[512], sb[512], *ca = malloc(128 * 512 * 2), *cb = malloc(128 * 512 * 2);
    for (size_t di = 0; di < NDIMS; di++)
        for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++)
            for (uint32_t kk = 0; kk < 4; kk++) {
                const uint32_t D = DIMS[di], g = gs[gi], G = g + (uint32_t)(gi & 1) * 5;
                uint32_t nk = kk == 3 ? 5 : kk;
                if (nk >= D) continue;
                uint8_t mask[512];
                ctu_random_masks(&r, mask, 1, D, nk);
                cq_params p;
                if (cq_params_init_mask(&p, nk ? CQ_TIER_CQ4P : CQ_TIER_CQ4, D, G, mask, NULL)) {
                    bad++;
                    continue;
                }
                ctu_fill_f16(&r, K, (size_t)g * D, (kk & 1) ? 1.0f : 0.01f, 1);
                if (gi == 2) memset(K, 0, (size_t)g * D * 2); /* all-zero group */
                size_t nb = cq_key_group_bytes(&p, g);
                memset(pa, 0x5A, nb + 8);
                memset(pb, 0x5A, nb + 8);
                cq_encode_key_group(&p, K, g, pa, sa, ca, 0, NULL);
                k->enc_key_group(&p, K, g, pb, sb, cb);
                n++;
                if (memcmp(pa, pb, nb + 8) || memcmp(sa, sb, p.kept * 2) ||
                    memcmp(ca, cb, (size_t)g * p.k * 2))
                    bad++;
            }
    CHECK(bad == 0, "%s enc_key_group: %d of %d groups differ from cq_encode_key_group", k->name,
          bad, n);
    free(K);
    free(pa);
    free(pb);
    free(ca);
    free(cb);
}

/* AVX2 attention loops vs the scalar reference: |a - b| <= 1e-5 * (sum of |terms|) per output */
static void test_attention_loops(const cq_kernels *v) {
    const cq_kernels *s = cq_kernels_scalar();
    cq_rng r;
    cq_rng_seed(&r, 3);
    static const uint32_t ns[] = {1, 3, 17, 64, 65, 128};
    static const uint32_t nhs[] = {1, 2, 3, 4, 5, 8};
    int bad = 0, n = 0;
    const uint32_t NMAX = 128, HMAX = 8, DMAX = 512;
    float *q = malloc(HMAX * DMAX * 4), *w = malloc(HMAX * NMAX * 4);
    float *sa = malloc(HMAX * NMAX * 4), *sb = malloc(HMAX * NMAX * 4), *mag = malloc(HMAX * NMAX * 4);
    float *aa = malloc(HMAX * DMAX * 4), *ab = malloc(HMAX * DMAX * 4), *am = malloc(HMAX * DMAX * 4);
    uint16_t *k16 = malloc(NMAX * DMAX * 2), *sc = malloc(NMAX * 2);
    float *k32 = malloc(NMAX * DMAX * 4), *kabs = malloc(NMAX * DMAX * 4);
    int8_t *k8 = malloc(NMAX * DMAX);
    uint8_t *k4 = malloc(NMAX * DMAX / 2 + 8); /* dot_i4 may read 7 bytes past the end */
    for (size_t di = 0; di < NDIMS; di++)
        for (size_t ni = 0; ni < 6; ni++)
            for (size_t hi = 0; hi < 6; hi++) {
                const uint32_t D = DIMS[di], N = ns[ni], nh = nhs[hi];
                for (uint32_t i = 0; i < nh * D; i++) q[i] = (float)cq_rng_normal(&r);
                for (uint32_t i = 0; i < nh * NMAX; i++) w[i] = (float)cq_rng_uniform(&r);
                ctu_fill_f16(&r, k16, (size_t)N * D, 1.0f, 0);
                for (uint32_t i = 0; i < N * D; i++) {
                    k32[i] = (float)cq_rng_normal(&r);
                    k8[i] = (int8_t)(cq_rng_below(&r, 256) - 128);
                }
                for (uint32_t i = 0; i < N * D / 2; i++) k4[i] = (uint8_t)cq_rng_below(&r, 256);
                for (uint32_t t = 0; t < N; t++) sc[t] = cq_f32_to_f16((float)cq_rng_uniform(&r) + 0.01f);
                for (int kind = 0; kind < 8; kind++) {
                    /* magnitudes: the same loop over |x| gives the error scale */
                    memset(aa, 0, nh * D * 4);
                    memset(ab, 0, nh * D * 4);
                    memset(am, 0, nh * D * 4);
                    float qa[8 * 512], wa[8 * 128];
                    for (uint32_t i = 0; i < nh * D; i++) qa[i] = fabsf(q[i]);
                    for (uint32_t i = 0; i < nh * NMAX; i++) wa[i] = fabsf(w[i]);
                    for (uint32_t i = 0; i < N * D; i++) kabs[i] = fabsf(k32[i]);
                    int is_dot = kind < 4;
                    switch (kind) {
                    case 0:
                        s->dot_f16(q, nh, k16, N, D, sa, NMAX);
                        v->dot_f16(q, nh, k16, N, D, sb, NMAX);
                        for (uint32_t i = 0; i < N * D; i++) kabs[i] = fabsf(cq_f16_to_f32(k16[i]));
                        s->dot_f32(qa, nh, kabs, N, D, mag, NMAX);
                        break;
                    case 1:
                        s->dot_f32(q, nh, k32, N, D, sa, NMAX);
                        v->dot_f32(q, nh, k32, N, D, sb, NMAX);
                        s->dot_f32(qa, nh, kabs, N, D, mag, NMAX);
                        break;
                    case 2:
                        s->dot_i8(q, nh, k8, sc, N, D, sa, NMAX);
                        v->dot_i8(q, nh, k8, sc, N, D, sb, NMAX);
                        for (uint32_t i = 0; i < N * D; i++) kabs[i] = 128.0f * 2.0f;
                        s->dot_f32(qa, nh, kabs, N, D, mag, NMAX);
                        break;
                    case 3:
                        s->dot_i4(q, nh, k4, N, D, sa, NMAX);
                        v->dot_i4(q, nh, k4, N, D, sb, NMAX);
                        for (uint32_t i = 0; i < N * D; i++) kabs[i] = 8.0f;
                        s->dot_f32(qa, nh, kabs, N, D, mag, NMAX);
                        break;
                    case 4:
                        s->acc_f16(w, NMAX, nh, k16, N, D, aa);
                        v->acc_f16(w, NMAX, nh, k16, N, D, ab);
                        for (uint32_t i = 0; i < N * D; i++) kabs[i] = fabsf(cq_f16_to_f32(k16[i]));
                        s->acc_f32(wa, NMAX, nh, kabs, N, D, am);
                        break;
                    case 5:
                        s->acc_f32(w, NMAX, nh, k32, N, D, aa);
                        v->acc_f32(w, NMAX, nh, k32, N, D, ab);
                        s->acc_f32(wa, NMAX, nh, kabs, N, D, am);
                        break;
                    case 6:
                        s->acc_i8(w, NMAX, nh, k8, sc, N, D, aa);
                        v->acc_i8(w, NMAX, nh, k8, sc, N, D, ab);
                        for (uint32_t i = 0; i < N * D; i++) kabs[i] = 128.0f * 2.0f;
                        s->acc_f32(wa, NMAX, nh, kabs, N, D, am);
                        break;
                    default:
                        s->acc_i4(w, NMAX, nh, k4, sc, N, D, aa);
                        v->acc_i4(w, NMAX, nh, k4, sc, N, D, ab);
                        for (uint32_t i = 0; i < N * D; i++) kabs[i] = 8.0f * 2.0f;
                        s->acc_f32(wa, NMAX, nh, kabs, N, D, am);
                        break;
                    }
                    n++;
                    int fail = 0;
                    if (is_dot) {
                        for (uint32_t h = 0; h < nh; h++)
                            for (uint32_t t = 0; t < N; t++) {
                                size_t i = (size_t)h * NMAX + t;
                                if (!(fabsf(sa[i] - sb[i]) <= 1e-5f * mag[i] + 1e-30f)) fail = 1;
                            }
                    } else {
                        for (uint32_t i = 0; i < nh * D; i++)
                            if (!(fabsf(aa[i] - ab[i]) <= 1e-5f * am[i] + 1e-30f)) fail = 1;
                    }
                    if (fail) {
                        bad++;
                        if (bad < 5) fprintf(stderr, "kernel %d D=%u n=%u nh=%u differs\n", kind, D, N, nh);
                    }
                }
            }
    CHECK(bad == 0, "%d of %d attention-loop cases outside 1e-5 of the term magnitudes", bad, n);
    /* exp_sum: relative 4e-7 per element, same sum within n ulps */
    float x[300], y[300];
    int ebad = 0;
    for (uint32_t nn = 1; nn < 300; nn += 13) {
        for (uint32_t i = 0; i < nn; i++) x[i] = y[i] = (float)(cq_rng_normal(&r) * 30.0);
        float m = -1e30f;
        for (uint32_t i = 0; i < nn; i++) m = x[i] > m ? x[i] : m;
        float s1, s2;
        s->exp_sum(x, nn, 1, nn, &m, &s1);
        v->exp_sum(y, nn, 1, nn, &m, &s2);
        for (uint32_t i = 0; i < nn; i++)
            if (!(fabsf(x[i] - y[i]) <= 4e-7f * x[i] + 1e-37f)) ebad++;
        if (!(fabsf(s1 - s2) <= 1e-6f * s1)) ebad++;
    }
    CHECK(ebad == 0, "exp_sum: %d differences", ebad);
    free(q); free(w); free(sa); free(sb); free(mag); free(aa); free(ab); free(am);
    free(k16); free(sc); free(k32); free(kabs); free(k8); free(k4);
}

/* FAST precision: quant_q8 against its stated rule (scalar) and bit for bit across tables;
 * dot_i4q against an independent 64-bit integer dot (scalar) and bit for bit across tables */
static void test_quantized_query(const cq_kernels *s, const cq_kernels *v) {
    cq_rng r;
    cq_rng_seed(&r, 17);
    int bad_rule = 0, bad_q = 0, bad_int = 0, bad_dot = 0, n = 0;
    float x[512];
    int8_t qa[8 * 512], qb[512];
    uint8_t sha[8 * 128], shb[128];
    float qsa[8], qsb;
    uint8_t *k4 = malloc(128 * 256 + 8); /* dot_i4q may read 7 bytes past the end */
    float *sa = malloc(8 * 128 * 4), *sb = malloc(8 * 128 * 4);
    for (size_t di = 0; di < NDIMS; di++)
        for (int rep = 0; rep < 12; rep++) {
            const uint32_t kept = DIMS[di], nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK;
            const uint32_t nh = 1 + cq_rng_below(&r, 8), N = 1 + cq_rng_below(&r, 128);
            for (uint32_t h = 0; h < nh; h++) {
                /* magnitudes spread over 2^-30..2^10 per block, zero blocks, exact ties */
                for (uint32_t c = 0; c < kept; c++) {
                    int blk = (int)(c / CQ_Q8_BLOCK);
                    double m = ldexp(1.0, (blk * 7 + rep * 3) % 41 - 30);
                    x[c] = (float)(cq_rng_normal(&r) * m);
                    if (rep == 3 && blk % 3 == 1) x[c] = 0.0f;
                    if (rep == 4) x[c] = (float)((int)(c % 9) - 4) + 0.5f; /* ties on the grid */
                }
                if (rep == 5) memset(x, 0, kept * 4); /* all zero: qs = 0 */
                int8_t *q8 = qa + (size_t)h * kept;
                uint8_t *sh = sha + (size_t)h * nb;
                s->quant_q8(x, kept, q8, sh, &qsa[h]);
                double amax = 0.0;
                for (uint32_t c = 0; c < kept; c++) amax = fmax(amax, fabs((double)x[c]));
                for (uint32_t b = 0; b < nb; b++) {
                    double ab = 0.0, step = ldexp((double)qsa[h], sh[b]);
                    for (uint32_t c = b * CQ_Q8_BLOCK; c < kept && c < (b + 1) * CQ_Q8_BLOCK; c++)
                        ab = fmax(ab, fabs((double)x[c]));
                    if (sh[b] > CQ_Q8_SHIFT_MAX) bad_rule++;
                    if (amax > 0 && step > fmax(2.0 * ab, ldexp(amax, -(int)CQ_Q8_SHIFT_MAX)) / 127.0 * (1 + 1e-6))
                        bad_rule++;
                    for (uint32_t c = b * CQ_Q8_BLOCK; c < kept && c < (b + 1) * CQ_Q8_BLOCK; c++)
                        if (q8[c] < -127 || !(fabs(q8[c] * step - x[c]) <= step / 2 + fabs(x[c]) * 0x1p-21))
                            bad_rule++;
                }
                if (v) {
                    v->quant_q8(x, kept, qb, shb, &qsb);
                    if (memcmp(qb, q8, kept) || memcmp(shb, sh, nb) || memcmp(&qsb, &qsa[h], 4)) bad_q++;
                }
            }
            for (uint32_t i = 0; i < N * kept / 2 + 8; i++) k4[i] = (uint8_t)cq_rng_below(&r, 256);
            s->dot_i4q(qa, sha, qsa, nh, k4, N, kept, sa, 128);
            for (uint32_t t = 0; t < N; t++)
                for (uint32_t h = 0; h < nh; h++) {
                    int64_t I = 0;
                    for (uint32_t c = 0; c < kept; c++)
                        I += (int64_t)qa[(size_t)h * kept + c] * cq_nibble_get(k4 + (size_t)t * (kept / 2), c) *
                             ((int64_t)1 << sha[(size_t)h * nb + c / CQ_Q8_BLOCK]);
                    float want = (float)I * qsa[h];
                    if (memcmp(&want, &sa[(size_t)h * 128 + t], 4)) bad_int++;
                }
            if (v) {
                v->dot_i4q(qa, sha, qsa, nh, k4, N, kept, sb, 128);
                for (uint32_t h = 0; h < nh; h++)
                    if (memcmp(sa + (size_t)h * 128, sb + (size_t)h * 128, N * 4)) bad_dot++;
            }
            n++;
        }
    CHECK(bad_rule == 0, "%s quant_q8: %d elements/blocks break the stated rule", s->name, bad_rule);
    CHECK(bad_int == 0, "%s dot_i4q: %d scores differ from the exact integer dot", s->name, bad_int);
    CHECK(bad_q == 0, "%s quant_q8: %d of %d rows differ from the scalar table", v ? v->name : "-", bad_q, n);
    CHECK(bad_dot == 0, "%s dot_i4q: %d of %d calls differ from the scalar table", v ? v->name : "-", bad_dot, n);
    free(k4);
    free(sa);
    free(sb);
}

/* FAST INT4 values (acc_i4q): against the exact acc_i4 within the rule's bound (each
 * token's w vs off by less than one step d = A / CQ_V8_MAX of its tile, |code| <= 8);
 * the dither keeps a flat run of sub-step weights' mass; bit for bit across tables over
 * awkward n, D, head counts, zero scales, zero and tiny weights. */
static void test_quantized_values(const cq_kernels *s, const cq_kernels *v) {
    cq_rng r;
    cq_rng_seed(&r, 23);
    enum { NMAX = 160 };
    int bad_bound = 0, bad_tab = 0, n = 0;
    float *w = malloc(9 * NMAX * 4), *aa = malloc(9 * 512 * 4), *ab = malloc(9 * 512 * 4),
          *ae = malloc(9 * 512 * 4);
    uint8_t *k4 = malloc(NMAX * 256 + 8);
    uint16_t sc[NMAX];
    for (size_t di = 0; di < NDIMS; di++)
        for (int rep = 0; rep < 10; rep++) {
            const uint32_t D = DIMS[di] & ~1u, nh = 1 + cq_rng_below(&r, 9),
                           N = 1 + cq_rng_below(&r, NMAX);
            for (uint32_t i = 0; i < N * D / 2 + 8; i++) k4[i] = (uint8_t)cq_rng_below(&r, 256);
            for (uint32_t t = 0; t < N; t++) {
                float m = (float)ldexp(1.0, (int)cq_rng_below(&r, 12) - 8);
                sc[t] = cq_f32_to_f16(rep == 2 && t % 5 == 0 ? 0.0f : m * (float)cq_rng_uniform(&r));
            }
            for (uint32_t h = 0; h < nh; h++)
                for (uint32_t t = 0; t < N; t++) {
                    float x = (float)exp(-fabs(cq_rng_normal(&r)) * (rep % 4) * 4.0);
                    if (rep == 5) x = t % 17 ? 1e-3f : 1.0f;         /* a flat sub-step tail */
                    if (rep == 6 && h == 0) x = t % 3 ? 0.0f : 1e-35f; /* tiles below 2^-100 */
                    w[(size_t)h * NMAX + t] = x;
                }
            for (size_t i = 0; i < (size_t)nh * D; i++) aa[i] = ab[i] = ae[i] = (float)i * 0.25f;
            s->acc_i4q(w, NMAX, nh, k4, sc, N, D, aa);
            s->acc_i4(w, NMAX, nh, k4, sc, N, D, ae);
            for (uint32_t h = 0; h < nh; h++) {
                double lim = 0.0, tot = 0.0;
                for (uint32_t t0 = 0; t0 < N; t0 += CQ_V8_TILE) {
                    double A = 0.0;
                    for (uint32_t t = t0; t < N && t < t0 + CQ_V8_TILE; t++) {
                        double a = (double)w[(size_t)h * NMAX + t] * cq_f16_to_f32(sc[t]);
                        A = fmax(A, a);
                        tot += a * 8.0;
                    }
                    /* a tile with A <= 2^-100 is dropped whole: error up to its full sum */
                    lim += (N - t0 < CQ_V8_TILE ? N - t0 : CQ_V8_TILE) * 8.0 * A /
                           (A > 0x1p-100 ? CQ_V8_MAX : 1);
                }
                for (uint32_t c = 0; c < D; c++) {
                    double e = fabs((double)aa[(size_t)h * D + c] - ae[(size_t)h * D + c]);
                    if (!(e <= lim * (1 + 1e-5) + 1e-5 * (tot + fabs(ae[(size_t)h * D + c]))))
                        bad_bound++;
                }
            }
            if (v) {
                v->acc_i4q(w, NMAX, nh, k4, sc, N, D, ab);
                if (memcmp(aa, ab, (size_t)nh * D * 4)) bad_tab++;
            }
            n++;
        }
    CHECK(bad_bound == 0, "%s acc_i4q: %d outputs outside the rounding bound", s->name, bad_bound);
    CHECK(bad_tab == 0, "%s acc_i4q: %d of %d calls differ from the scalar table", v ? v->name : "-", bad_tab, n);
    /* dither: 31 tokens at 1/8 of a step beside one full-scale token, value codes all +7:
     * plain rounding would drop the tail (3.9 steps of mass); dithered rounding keeps it */
    {
        const uint32_t D = 8, N = 32;
        for (uint32_t i = 0; i < N * D / 2 + 8; i++) k4[i] = 0x77;
        for (uint32_t t = 0; t < N; t++) {
            sc[t] = cq_f32_to_f16(1.0f);
            w[t] = t == 0 ? 1.0f : 1.0f / (8.0f * CQ_V8_MAX);
        }
        memset(aa, 0, D * 4);
        memset(ae, 0, D * 4);
        s->acc_i4q(w, NMAX, 1, k4, sc, N, D, aa);
        s->acc_i4(w, NMAX, 1, k4, sc, N, D, ae);
        CHECK(fabsf(aa[0] - ae[0]) <= 7.0f / CQ_V8_MAX, "dithered tail mass: %g vs exact %g", aa[0], ae[0]);
    }
    free(w);
    free(aa);
    free(ab);
    free(ae);
    free(k4);
}

/* Compute layouts (cq_tiles.h): packing is a permutation (round trip, padding tokens are
 * code 0); the scalar tiled specs give the bits of the token-major kernels on the same
 * codes; every table's tiled kernels give the scalar tiled bits, over awkward kept / D,
 * group sizes, run offsets and head counts. */
/* 1 when the first n scores of any of nh rows (stride ss) differ in a bit */
static int rows_differ(const float *a, const float *b, uint32_t nh, uint32_t ss, uint32_t n) {
    for (uint32_t h = 0; h < nh; h++)
        if (memcmp(a + (size_t)h * ss, b + (size_t)h * ss, (size_t)n * sizeof *a)) return 1;
    return 0;
}

/* the same nonzero starting accumulators in a (and b, when given) */
static void ramp(float *a, float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)i * 0.5f;
        if (b) b[i] = a[i];
    }
}

static void test_tiled(const cq_kernels *s, const cq_kernels *v) {
    cq_rng r;
    cq_rng_seed(&r, 29);
    int bad_lay = 0, bad_spec = 0, bad_tab = 0, n = 0;
    enum { GM = 160 };
    uint8_t *canon = malloc(GM * 256 + 16), *grp = malloc(GM * 256 + 16), *rows = malloc(GM * 256 + 16);
    float x[512], *sa = malloc(8 * GM * 4), *sb = malloc(8 * GM * 4);
    int8_t q8[8 * 512];
    uint8_t sh[8 * 64];
    float qs[8];
    for (size_t di = 0; di < NDIMS; di++)
        for (int rep = 0; rep < 6; rep++) {
            const uint32_t kept = DIMS[di], nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK;
            const uint32_t g = rep < 2 ? CQ_KT_TOK * (1 + cq_rng_below(&r, 5)) : 1 + cq_rng_below(&r, GM);
            const size_t gb = (size_t)(g + CQ_KT_TOK - 1) / CQ_KT_TOK * 16 * kept;
            for (size_t i = 0; i < gb + 16; i++) canon[i] = (uint8_t)cq_rng_below(&r, 256);
            if (rep == 5) /* mostly the largest u = code + 8 (15): the widest integer sums */
                for (size_t i = 0; i < gb + 16; i++)
                    if (cq_rng_below(&r, 4)) canon[i] = 0x77;
            memcpy(grp, canon, gb + 16);
            cq_kt_pack(grp, kept, g);
            for (uint32_t t = 0; t < (g + CQ_KT_TOK - 1) / CQ_KT_TOK * CQ_KT_TOK; t++)
                for (uint32_t c = 0; c < kept; c++) {
                    int want = t < g ? cq_nibble_get(canon, (size_t)t * kept + c) : 0;
                    bad_lay += cq_kt_get(grp, kept, t, c) != want;
                }
            const uint32_t r0 = cq_rng_below(&r, g), cnt = 1 + cq_rng_below(&r, g - r0);
            cq_kt_unpack(grp, kept, r0, r0 + cnt, rows);
            for (size_t i = 0; i < (size_t)cnt * kept; i++)
                bad_lay += cq_nibble_get(rows, i) != cq_nibble_get(canon, (size_t)r0 * kept + i);
            const uint32_t nh = 1 + cq_rng_below(&r, 8);
            for (uint32_t h = 0; h < nh; h++) {
                for (uint32_t c = 0; c < kept; c++)
                    x[c] = rep == 5 ? (h & 1 ? -1.0f : 1.0f) /* q8 = +-127, one shift for all blocks */
                                    : (float)(cq_rng_normal(&r) * ldexp(1.0, (int)((c / CQ_Q8_BLOCK * 5 + h) % 17) - 8));
                s->quant_q8(x, kept, q8 + (size_t)h * kept, sh + (size_t)h * nb, &qs[h]);
            }
            s->dot_i4tq(q8, sh, qs, nh, grp, r0, cnt, kept, sa, GM);
            if (kept % 2 == 0) { /* the token-major spec on the same codes */
                memset(rows + (size_t)cnt * kept / 2, 0, 8);
                s->dot_i4q(q8, sh, qs, nh, rows, cnt, kept, sb, GM);
                bad_spec += rows_differ(sa, sb, nh, GM, cnt);
            }
            /* EXACT: the scalar spec is s_dot_i4's loop (same bits on the rows); a table's
             * fp32 sums within 1e-5 of the sum of absolute terms */
            float *qp = malloc((size_t)nh * kept * 4);
            for (uint32_t i = 0; i < nh * kept; i++) qp[i] = (float)cq_rng_normal(&r);
            s->dot_i4t(qp, nh, grp, r0, cnt, kept, sa, GM);
            if (kept % 2 == 0) {
                s->dot_i4(qp, nh, rows, cnt, kept, sb, GM);
                bad_spec += rows_differ(sa, sb, nh, GM, cnt);
            }
            if (v) {
                v->dot_i4t(qp, nh, grp, r0, cnt, kept, sb, GM);
                int d = 0;
                for (uint32_t h = 0; h < nh; h++)
                    for (uint32_t t = 0; t < cnt; t++) {
                        double mag = 0.0;
                        for (uint32_t c = 0; c < kept; c++)
                            mag += fabs(qp[(size_t)h * kept + c] * 8.0);
                        d |= !(fabs((double)sa[(size_t)h * GM + t] - sb[(size_t)h * GM + t]) <= 1e-5 * mag);
                    }
                bad_tab += d;
            }
            free(qp);
            s->dot_i4tq(q8, sh, qs, nh, grp, r0, cnt, kept, sa, GM);
            if (v) {
                v->dot_i4tq(q8, sh, qs, nh, grp, r0, cnt, kept, sb, GM);
                bad_tab += rows_differ(sa, sb, nh, GM, cnt);
            }
            n++;
        }
    /* value blocks */
    static const uint32_t VD[] = {32, 64, 96, 128, 160, 256, 512};
    float *w = malloc(9 * GM * 4), *aa = malloc(9 * 512 * 4), *ab = malloc(9 * 512 * 4);
    uint16_t vsc[GM];
    for (size_t di = 0; di < sizeof VD / sizeof VD[0]; di++)
        for (int rep = 0; rep < 8; rep++) {
            const uint32_t D = VD[di], o = cq_rng_below(&r, CQ_VB_TOK), N = 1 + cq_rng_below(&r, GM - 4);
            const uint32_t nh = 1 + cq_rng_below(&r, 9), nblk = (o + N + CQ_VB_TOK - 1) / CQ_VB_TOK;
            for (size_t i = 0; i < (size_t)N * D / 2 + 8; i++) canon[i] = (uint8_t)cq_rng_below(&r, 256);
            for (size_t i = 0; i < (size_t)nblk * 2 * D; i++) grp[i] = (uint8_t)cq_rng_below(&r, 256);
            for (uint32_t t = 0; t < N; t++)
                cq_vb_put(grp + (size_t)((o + t) / CQ_VB_TOK) * 2 * D, D, (o + t) % CQ_VB_TOK,
                          canon + (size_t)t * D / 2);
            cq_vb_unpack(grp, D, o, N, rows);
            bad_lay += memcmp(rows, canon, (size_t)N * D / 2) != 0;
            for (uint32_t t = 0; t < N; t++)
                for (uint32_t c = 0; c < D; c++)
                    bad_lay += cq_vb_get(grp + (size_t)((o + t) / CQ_VB_TOK) * 2 * D, c, (o + t) % CQ_VB_TOK) !=
                               cq_nibble_get(canon + (size_t)t * D / 2, c);
            for (uint32_t t = 0; t < N; t++)
                vsc[t] = cq_f32_to_f16((float)ldexp(cq_rng_uniform(&r), (int)cq_rng_below(&r, 8) - 4));
            for (uint32_t h = 0; h < nh; h++)
                for (uint32_t t = 0; t < N; t++)
                    w[(size_t)h * GM + t] = (float)exp(-fabs(cq_rng_normal(&r)) * (rep % 4) * 3.0);
            if (rep >= 6) /* FAST tiles around the 2^-100 cut: some skipped, some with tiny steps */
                for (uint32_t h = 0; h < nh; h++) {
                    float f = 1.0f; /* per tile of CQ_V8_TILE: 2^-96 .. 2^-107 */
                    for (uint32_t t = 0; t < N; t++) {
                        if (t % CQ_V8_TILE == 0) f = (float)ldexp(1.0, -96 - (int)cq_rng_below(&r, 12));
                        w[(size_t)h * GM + t] *= f;
                    }
                }
            /* EXACT: s_acc_i4's bits on the rows; a table within 1e-5 of the term sums */
            double mag = 0.0;
            for (uint32_t h = 0; h < nh; h++)
                for (uint32_t t = 0; t < N; t++) mag += 8.0 * w[(size_t)h * GM + t] * cq_f16_to_f32(vsc[t]);
            ramp(aa, ab, (size_t)nh * D);
            s->acc_i4t(w, GM, nh, grp, o, vsc, N, D, aa);
            memset(canon + (size_t)N * D / 2, 0, 8);
            s->acc_i4(w, GM, nh, canon, vsc, N, D, ab);
            bad_spec += memcmp(aa, ab, (size_t)nh * D * 4) != 0;
            if (v) {
                ramp(ab, NULL, (size_t)nh * D);
                v->acc_i4t(w, GM, nh, grp, o, vsc, N, D, ab);
                int d = 0;
                for (size_t i = 0; i < (size_t)nh * D; i++)
                    d |= !(fabs((double)aa[i] - ab[i]) <= 1e-5 * (mag + fabs(aa[i])));
                bad_tab += d;
            }
            ramp(aa, ab, (size_t)nh * D);
            s->acc_i4tq(w, GM, nh, grp, o, vsc, N, D, aa);
            memset(canon + (size_t)N * D / 2, 0, 8);
            s->acc_i4q(w, GM, nh, canon, vsc, N, D, ab);
            bad_spec += memcmp(aa, ab, (size_t)nh * D * 4) != 0;
            if (v) {
                ramp(ab, NULL, (size_t)nh * D);
                v->acc_i4tq(w, GM, nh, grp, o, vsc, N, D, ab);
                bad_tab += memcmp(aa, ab, (size_t)nh * D * 4) != 0;
            }
            n++;
        }
    CHECK(bad_lay == 0, "compute layouts: %d codes misplaced", bad_lay);
    CHECK(bad_spec == 0, "scalar tiled kernels: %d calls differ from the token-major loops", bad_spec);
    CHECK(bad_tab == 0, "%s tiled kernels: %d of %d calls differ from the scalar table",
          v ? v->name : "-", bad_tab, n);
    free(canon);
    free(grp);
    free(rows);
    free(sa);
    free(sb);
    free(w);
    free(aa);
    free(ab);
}

/* fold_q: one fp32 product per element, so the tables agree bit for bit, with and without
 * a channel map (CQ-4+ kept channels) */
static void test_fold(const cq_kernels *s, const cq_kernels *v) {
    cq_rng r;
    cq_rng_seed(&r, 29);
    float q[4 * 512], a[4 * 512], b[4 * 512];
    uint16_t sc[512], idx[512];
    int bad = 0, bad_rule = 0, bad_fq = 0;
    for (size_t di = 0; di < NDIMS; di++) {
        const uint32_t D = DIMS[di];
        for (int mapped = 0; mapped < 2; mapped++) {
            uint32_t kept = 0;
            for (uint32_t c = 0; c < D; c++)
                if (!mapped || cq_rng_below(&r, 5)) idx[kept++] = (uint16_t)c;
            for (uint32_t i = 0; i < 4 * D; i++) q[i] = (float)cq_rng_normal(&r);
            for (uint32_t j = 0; j < kept; j++) sc[j] = (uint16_t)cq_rng_below(&r, 0x7C00);
            s->fold_q(q, 4, D, mapped ? idx : NULL, sc, kept, a);
            for (uint32_t h = 0; h < 4; h++)
                for (uint32_t j = 0; j < kept; j++) {
                    float want = q[h * D + idx[j]] * cq_f16_to_f32(sc[j]);
                    if (memcmp(&want, &a[h * kept + j], 4)) bad_rule++;
                }
            if (v) {
                v->fold_q(q, 4, D, mapped ? idx : NULL, sc, kept, b);
                if (memcmp(a, b, (size_t)4 * kept * 4)) bad++;
            }
            /* fold_quant_q8: fold_q then quant_q8 per head (unmapped rows of stride D),
             * bit for bit, in every table; sometimes a zero head (qs = 0) */
            const uint32_t nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK;
            int8_t qa[4 * 512], qb[4 * 512];
            uint8_t sa[4 * 64], sb[4 * 64];
            float fa[4], fb[4];
            if (mapped) memset(q + D, 0, D * sizeof *q);
            const cq_kernels *t = v ? v : s;
            s->fold_q(q, 4, D, NULL, sc, kept, a);
            for (uint32_t h = 0; h < 4; h++)
                s->quant_q8(a + h * kept, kept, qa + h * kept, sa + h * nb, &fa[h]);
            t->fold_quant_q8(q, 4, D, sc, kept, qb, sb, fb);
            if (memcmp(qa, qb, (size_t)4 * kept) || memcmp(sa, sb, (size_t)4 * nb) || memcmp(fa, fb, sizeof fa))
                bad_fq++;
        }
    }
    CHECK(bad_rule == 0, "scalar fold_q: %d products differ from q * scale", bad_rule);
    CHECK(bad == 0, "%s fold_q: %d calls differ from the scalar table", v ? v->name : "-", bad);
    CHECK(bad_fq == 0, "%s fold_quant_q8: %d calls differ from fold_q + quant_q8", v ? v->name : s->name,
          bad_fq);
}

/* side_dot (the CQ-4+ outlier lane): against its definition, and bit for bit across
 * tables, for k = 1..70 (the vector path, and the scalar fallback above 64) and 1-200 tokens */
static void test_side_dot(const cq_kernels *s, const cq_kernels *v) {
    cq_rng r;
    cq_rng_seed(&r, 31);
    enum { NM = 200, KM = 70, SS = 208 };
    float *qo = malloc(4 * KM * 4), *a = malloc(4 * SS * 4), *b = malloc(4 * SS * 4),
          *e = malloc(4 * SS * 4);
    uint16_t *side = malloc(NM * KM * 2);
    int bad = 0, bad_rule = 0;
    static const uint32_t KS[] = {1, 2, 3, 4, 7, 8, 9, 16, 33, 64, 65, 70};
    for (size_t ki = 0; ki < sizeof KS / sizeof KS[0]; ki++)
        for (int rep = 0; rep < 4; rep++) {
            const uint32_t k = KS[ki], n = 1 + cq_rng_below(&r, NM), nh = 1 + cq_rng_below(&r, 4);
            for (uint32_t i = 0; i < nh * k; i++) qo[i] = (float)cq_rng_normal(&r);
            for (uint32_t i = 0; i < n * k; i++) side[i] = cq_f32_to_f16((float)cq_rng_normal(&r) * 30.0f);
            for (uint32_t i = 0; i < 4 * SS; i++) a[i] = b[i] = e[i] = (float)cq_rng_normal(&r);
            for (uint32_t h = 0; h < nh; h++)
                for (uint32_t t = 0; t < n; t++)
                    for (uint32_t o = 0; o < k; o++)
                        e[h * SS + t] += qo[h * k + o] * cq_f16_to_f32(side[(size_t)t * k + o]);
            s->side_dot(qo, nh, side, n, k, a, SS);
            if (memcmp(a, e, 4 * SS * 4)) bad_rule++;
            if (v) {
                v->side_dot(qo, nh, side, n, k, b, SS);
                if (memcmp(a, b, 4 * SS * 4)) bad++;
            }
        }
    CHECK(bad_rule == 0, "scalar side_dot: %d calls differ from the definition", bad_rule);
    CHECK(bad == 0, "%s side_dot: %d calls differ from the scalar table", v ? v->name : "-", bad);
    free(qo);
    free(a);
    free(b);
    free(e);
    free(side);
}

/* The avx512 table's fp16 loops give the AVX2 loops' bits: dot_f16 (two tokens per pass,
 * kernels_avx512.c) the same per-(token, head) sums in the same order, over every D (odd
 * chunks, D % 8 != 0 through the AVX2 loop), odd and even token counts and 1-9 heads;
 * acc_f16 (whole 16-channel zmm lanes, 64-channel passes over 64-token tiles) the same
 * per-(head, channel) FMA sequence over the tokens, into an accumulator that already holds
 * values (D % 16 != 0 through the AVX2 loop). */
static void test_f16_pair(const cq_kernels *a, const cq_kernels *b) {
    cq_rng r;
    cq_rng_seed(&r, 19);
    static const uint32_t ns[] = {1, 2, 3, 16, 17, 63, 64, 65, 128};
    const uint32_t NMAX = 128, HMAX = 9, DMAX = 512;
    float *q = malloc(HMAX * DMAX * 4), *sa = malloc(HMAX * NMAX * 4), *sb = malloc(HMAX * NMAX * 4);
    float *w = malloc(HMAX * NMAX * 4), *aa = malloc(HMAX * DMAX * 4), *ab = malloc(HMAX * DMAX * 4);
    uint16_t *k16 = malloc(NMAX * DMAX * 2);
    int bad = 0, bad_acc = 0, n = 0;
    for (size_t di = 0; di < NDIMS; di++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (uint32_t nh = 1; nh <= HMAX; nh++) {
                const uint32_t D = DIMS[di], N = ns[ni];
                for (uint32_t i = 0; i < nh * D; i++) q[i] = (float)cq_rng_normal(&r);
                for (uint32_t i = 0; i < nh * NMAX; i++) w[i] = (float)cq_rng_uniform(&r);
                for (uint32_t i = 0; i < nh * D; i++) aa[i] = ab[i] = (float)cq_rng_normal(&r);
                ctu_fill_f16(&r, k16, (size_t)N * D, 1.0f, 0);
                memset(sa, 0, HMAX * NMAX * 4);
                memset(sb, 0xFF, HMAX * NMAX * 4);
                a->dot_f16(q, nh, k16, N, D, sa, NMAX);
                b->dot_f16(q, nh, k16, N, D, sb, NMAX);
                a->acc_f16(w, NMAX, nh, k16, N, D, aa);
                b->acc_f16(w, NMAX, nh, k16, N, D, ab);
                for (uint32_t h = 0; h < nh; h++) {
                    bad += memcmp(sa + (size_t)h * NMAX, sb + (size_t)h * NMAX, N * 4) != 0;
                    bad_acc += memcmp(aa + (size_t)h * D, ab + (size_t)h * D, D * 4) != 0;
                }
                n += (int)nh;
            }
    CHECK(bad == 0, "%s dot_f16 differs from %s's bits in %d of %d (head, shape) rows", b->name,
          a->name, bad, n);
    CHECK(bad_acc == 0, "%s acc_f16 differs from %s's bits in %d of %d (head, shape) rows",
          b->name, a->name, bad_acc, n);
    free(q), free(sa), free(sb), free(w), free(aa), free(ab), free(k16);
}

/* exp_sum of the AVX-512 table (16 lanes, vscalefps for the power of two) against the AVX2
 * table's bits: every element and the sum, for lengths that leave every tail size, with
 * arguments over [-90, 0] (past the -87 clamp, through the range whose results are
 * subnormal, down to exp(0) = 1) and a NaN (inf - inf) that must stay NaN. */
static void test_exp_pair(const cq_kernels *a, const cq_kernels *b) {
    cq_rng r;
    cq_rng_seed(&r, 23);
    float x[300], y[300];
    int bad = 0, bad_nan = 0, n = 0;
    for (uint32_t nn = 1; nn <= 300; nn += nn < 40 ? 1 : 37) {
        for (uint32_t i = 0; i < nn; i++) {
            const double u = cq_rng_uniform(&r);
            /* a third near the clamp and the subnormal results, the rest anywhere */
            x[i] = y[i] = (float)(i % 3 == 0 ? -84.0 - 6.0 * u : -90.0 * u);
        }
        x[nn - 1] = y[nn - 1] = 0.0f; /* the maximum's own weight */
        const float zero = 0.0f, inf = INFINITY;
        float sa, sb;
        a->exp_sum(x, nn, 1, nn, &zero, &sa);
        b->exp_sum(y, nn, 1, nn, &zero, &sb);
        bad += memcmp(x, y, nn * sizeof *x) != 0 || memcmp(&sa, &sb, sizeof sa) != 0;
        n++;
        x[nn / 2] = y[nn / 2] = INFINITY; /* inf - inf */
        a->exp_sum(x, nn, 1, nn, &inf, &sa);
        b->exp_sum(y, nn, 1, nn, &inf, &sb);
        bad_nan += !isnan(sa) || !isnan(sb);
    }
    CHECK(bad == 0, "%s exp_sum differs from %s's bits in %d of %d rows", b->name, a->name, bad, n);
    CHECK(bad_nan == 0, "exp_sum: %d sums of a row holding inf - inf are not NaN", bad_nan);
}

/* exp_sum over nh rows at once (the heads of a run) against one call per row, bit for bit in
 * every table: each row's weights and sum, for 1-9 rows (the SIMD tables interleave rows in
 * blocks of 4), lengths leaving every tail, rows with their own maxima, a row stride wider
 * than the row (the gap must stay untouched), and a row holding inf - inf, whose sum is NaN
 * while the other rows keep their bits. */
static void test_exp_rows(const cq_kernels *k) {
    enum { XS = 140 };
    cq_rng r;
    cq_rng_seed(&r, 31);
    static float x[9 * XS], y[9 * XS], o[9 * XS]; /* o: the rows as given */
    float m[9], sa[9], sb[9];
    int bad = 0, bad_gap = 0, bad_nan = 0, n = 0;
    for (uint32_t nh = 1; nh <= 9; nh++)
        for (uint32_t nn = 1; nn <= 130; nn += nn < 20 ? 1 : 11) {
            for (uint32_t i = 0; i < nh * XS; i++) x[i] = (float)(cq_rng_normal(&r) * 20.0);
            for (uint32_t h = 0; h < nh; h++) {
                m[h] = -1e30f;
                for (uint32_t i = 0; i < nn; i++) m[h] = x[h * XS + i] > m[h] ? x[h * XS + i] : m[h];
            }
            const int nan_row = (int)(n % (nh + 1)) - 1; /* -1: none */
            if (nan_row >= 0) x[nan_row * XS + nn / 2] = INFINITY, m[nan_row] = INFINITY;
            memcpy(y, x, sizeof x);
            memcpy(o, x, sizeof x);
            k->exp_sum(x, XS, nh, nn, m, sa);
            for (uint32_t h = 0; h < nh; h++) k->exp_sum(y + h * XS, XS, 1, nn, m + h, sb + h);
            for (uint32_t h = 0; h < nh; h++) {
                if ((int)h == nan_row) {
                    bad_nan += !isnan(sa[h]);
                    continue;
                }
                bad += memcmp(x + h * XS, y + h * XS, nn * sizeof *x) != 0 ||
                       memcmp(sa + h, sb + h, sizeof *sa) != 0;
                for (uint32_t i = nn; i < XS; i++) /* both calls left the gap as it was */
                    bad_gap += memcmp(x + h * XS + i, o + h * XS + i, sizeof *x) != 0 ||
                               memcmp(y + h * XS + i, o + h * XS + i, sizeof *x) != 0;
            }
            n++;
        }
    CHECK(bad == 0, "%s exp_sum of several rows differs from one row at a time in %d rows of %d calls",
          k->name, bad, n);
    CHECK(bad_gap == 0, "%s exp_sum wrote %d values past a row's n", k->name, bad_gap);
    CHECK(bad_nan == 0, "%s exp_sum: %d rows holding inf - inf did not sum to NaN", k->name, bad_nan);
}

int main(void) {
    const cq_kernels *s = cq_kernels_scalar();
    /* every SIMD table this CPU runs, each against the scalar reference */
    const cq_kernels *simd[2] = {cq_kernels_avx2(), cq_kernels_avx512()};
    printf("kernels in use: %s; avx2 %s; avx512 %s\n", cq_kernels_get()->name,
           simd[0] ? "available" : "not available", simd[1] ? "available" : "not available");
    test_enc_token(s);
    test_enc_key_group(s);
    test_exp_rows(s);
    if (!simd[0]) { /* the scalar table's own rule checks still run */
        test_quantized_query(s, NULL);
        test_quantized_values(s, NULL);
        test_tiled(s, NULL);
        test_fold(s, NULL);
        test_side_dot(s, NULL);
    }
    if (simd[0] && simd[1]) test_f16_pair(simd[0], simd[1]), test_exp_pair(simd[0], simd[1]);
    for (int i = 0; i < 2; i++) {
        const cq_kernels *v = simd[i];
        if (!v) continue;
        test_quantized_query(s, v);
        test_quantized_values(s, v);
        test_tiled(s, v);
        test_fold(s, v);
        test_side_dot(s, v);
        test_exp_rows(v);
        test_enc_token(v);
        test_enc_key_group(v);
        test_attention_loops(v);
        /* the non-finite scan: every position, every Inf/NaN class, awkward lengths */
        uint16_t x[100];
        int nbad = 0;
        for (uint32_t n = 1; n < 100; n += 7)
            for (uint32_t pos = 0; pos < n; pos++)
                for (int kind = 0; kind < 4; kind++) {
                    for (uint32_t j = 0; j < n; j++) x[j] = (uint16_t)(0x7BFF - j);
                    static const uint16_t sp[4] = {0x7C00, 0xFC00, 0x7E00, 0xFFFF};
                    x[pos] = sp[kind];
                    nbad += !v->any_nonfinite(x, n) || !s->any_nonfinite(x, n);
                    x[pos] = 0xFBFF;
                    nbad += v->any_nonfinite(x, n) || s->any_nonfinite(x, n);
                }
        CHECK(nbad == 0, "%s any_nonfinite: %d wrong answers", v->name, nbad);
        /* max_f32: the maximum at every position of 1..40 values, negatives, -0.0 ties */
        float xm[40];
        int mbad = 0;
        for (uint32_t n = 1; n <= 40; n++)
            for (uint32_t pos = 0; pos < n; pos++) {
                for (uint32_t j = 0; j < n; j++) xm[j] = -100.0f - (float)((j * 7) % 13);
                xm[pos] = -1.5f;
                mbad += v->max_f32(xm, n) != -1.5f || s->max_f32(xm, n) != -1.5f;
            }
        CHECK(mbad == 0, "%s max_f32: %d wrong maxima", v->name, mbad);
    }
    CHECK(cq_kernels_by_name("scalar") == s && cq_kernels_by_name("nope") == NULL, "by name");
    CHECK(cq_kernels_by_name("avx2") == simd[0] && cq_kernels_by_name("avx512") == simd[1],
          "by name: the SIMD tables");
    return cq_test_done("test_cache_kernels");
}
