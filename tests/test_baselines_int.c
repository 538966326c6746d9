/* SPDX-License-Identifier: MIT */
/*
 * test_baselines_int.c - the plain integer baselines (int8-token, int4-token,
 * int4-channel, outlier-top2) and KIVI-4/KIVI-2: hand-computed bytes, error
 * bounds read off the packed layout (|x - x_hat| <= scale/2 for the symmetric
 * codecs, scale/2 plus one fp32 rounding for KIVI), exactness of the fp16
 * parts (outlier channels, KIVI residual tokens), exact packed sizes, KIVI's
 * block-to-groups mapping and its streaming units, and the properties every
 * codec shares (baseline_rt.h).
 */
#include "baseline_rt.h"

static uint16_t h(double v) { return cq_f64_to_f16(v); }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static double f16(uint16_t v) { return cq_f16_to_f32(v); }

static const cq_codec_traits *get(const char *name) {
    const cq_codec_traits *c = cq_codec_find(name);
    CHECK(c != NULL, "codec %s not registered", name);
    return c;
}

/* The contract's scale, computed here in double (one rounding): fp16(max(amax/qmax, 2^-14)). */
static uint16_t want_scale(double amax, int qmax) {
    double q = amax / qmax;
    return cq_f64_to_f16(q < 0x1p-14 ? 0x1p-14 : q);
}

static void expect_bytes(const char *what, const uint8_t *got, const uint8_t *want, size_t n) {
    size_t bad = n;
    for (size_t i = 0; i < n && bad == n; i++)
        if (got[i] != want[i]) bad = i;
    CHECK(bad == n, "%s: byte %zu is %02x, expected %02x", what, bad, bad < n ? got[bad] : 0,
          bad < n ? want[bad] : 0);
}

/* ------------------------------------------------------ per-token codecs */

static void test_token_codecs(void) {
    /* int4-token hand block, D = 8: amax 7 -> scale 7/7 = 1 (0x3C00); codes round-half-even:
     * 7 -> 7, -7 -> -7 (0x9), 3.5 -> 4, -3.5 -> -4 (0xC), 2.5 -> 2, 0.5 -> 0, 1 -> 1, -0.4 -> 0;
     * nibbles (2i low): 0x97, 0xC4, 0x02, 0x01; then the scale 00 3C. */
    const cq_codec_traits *c4 = get("int4-token"), *c8 = get("int8-token");
    if (!c4 || !c8) return;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 8);
    const double v[8] = {7, -7, 3.5, -3.5, 2.5, 0.5, 1, -0.4};
    uint16_t x[8];
    for (int j = 0; j < 8; j++) x[j] = h(v[j]);
    uint8_t got[16];
    CHECK(c4->packed_bytes(&cfg, CQ_ROLE_KEY, 1) == 6, "int4-token size");
    CHECK(c4->encode(&cfg, CQ_ROLE_KEY, x, 1, got, 6, NULL) == CQ_OK, "int4-token encode");
    const uint8_t want4[6] = {0x97, 0xC4, 0x02, 0x01, 0x00, 0x3C};
    expect_bytes("int4-token", got, want4, 6);
    /* int8-token: amax 7 -> scale fp16(7/127) = 0x2B0E (7/127 = 0.05511811 = 2^-5 * 1.763780,
     * mantissa 0.763780 * 1024 = 782.1 -> 782 = 0x30E, exponent -5 + 15 = 10 -> 0x2800 | 0x30E);
     * 7 / 0.05511474609375 = 127.008 -> 127. */
    CHECK(c8->encode(&cfg, CQ_ROLE_KEY, x, 1, got, 10, NULL) == CQ_OK, "int8-token encode");
    CHECK(got[0] == 127 && got[1] == (uint8_t)-127 && rd16(got + 8) == 0x2B0E,
          "int8-token bytes %02x %02x scale %04x", got[0], got[1], rd16(got + 8));

    /* random round trips: |x - x_hat| <= s/2, s = the stored scale = the contract's */
    const uint32_t D = 64, T = 50;
    cq_rng r;
    cq_rng_seed(&r, 5);
    uint16_t xs[50 * 64];
    float y[50 * 64];
    rt_gauss(&r, xs, T, D, 1.0, 2);
    cq_codec_cfg_default(&cfg, D);
    for (int k = 0; k < 2; k++) {
        const cq_codec_traits *c = k ? c8 : c4;
        const int qmax = k ? 127 : 7;
        uint8_t *pk = NULL;
        size_t n = rt_roundtrip(c, &cfg, CQ_ROLE_VALUE, xs, T, y, &pk);
        const size_t pay = (size_t)T * (k ? D : D / 2);
        CHECK(n == pay + 2 * T, "%s size %zu", c->name, n);
        size_t sbad = 0, ebad = 0;
        for (uint32_t t = 0; n && t < T; t++) {
            double amax = 0;
            for (uint32_t i = 0; i < D; i++) amax = fmax(amax, fabs(f16(xs[t * D + i])));
            uint16_t s = rd16(pk + pay + 2 * t);
            sbad += s != want_scale(amax, qmax);
            for (uint32_t i = 0; i < D; i++)
                ebad += fabs(f16(xs[t * D + i]) - y[t * D + i]) > f16(s) / 2;
        }
        CHECK(sbad == 0 && ebad == 0, "%s: %zu scales wrong, %zu errors beyond s/2", c->name,
              sbad, ebad);
        free(pk);
    }
}

/* ------------------------------------------------ per-channel codecs */

/* Top-2 channels by max |x| over the block, ties to the lower index, ascending. */
static void ref_top2(const uint16_t *x, uint32_t T, uint32_t D, uint32_t *a, uint32_t *b) {
    double best[2] = {-1, -1};
    uint32_t idx[2] = {0, 0};
    for (uint32_t c = 0; c < D; c++) {
        double m = 0;
        for (uint32_t t = 0; t < T; t++) m = fmax(m, fabs(f16(x[t * D + c])));
        if (m > best[0]) best[1] = best[0], idx[1] = idx[0], best[0] = m, idx[0] = c;
        else if (m > best[1]) best[1] = m, idx[1] = c;
    }
    *a = idx[0] < idx[1] ? idx[0] : idx[1];
    *b = idx[0] < idx[1] ? idx[1] : idx[0];
}

static void test_channel_codecs(uint32_t D, uint32_t T, uint64_t seed) {
    const cq_codec_traits *ic = get("int4-channel"), *ot = get("outlier-top2");
    if (!ic || !ot) return;
    CHECK((ic->flags & CQ_CODEC_F_OFFLINE) && !(ic->flags & CQ_CODEC_F_STREAMING) &&
              (ot->flags & CQ_CODEC_F_OFFLINE),
          "per-channel codecs must be flagged offline");
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cq_rng r;
    cq_rng_seed(&r, seed);
    uint16_t *x = malloc((size_t)T * D * sizeof *x);
    float *y = malloc((size_t)T * D * sizeof *y), *y2 = malloc((size_t)T * D * sizeof *y2);
    rt_gauss(&r, x, T, D, 1.0, 0);
    /* two planted outlier channels (not the first two) and a -0.0 in one of them */
    const uint32_t o1 = D / 3, o2 = D - 2;
    for (uint32_t t = 0; t < T; t++) {
        x[t * D + o1] = h(25.0 * cq_rng_normal(&r));
        x[t * D + o2] = h(40.0 * cq_rng_normal(&r));
    }
    x[o2] = 0x8000;

    /* int4-channel keys: s_c over all T tokens, |err| <= s_c/2 */
    uint8_t *pk = NULL;
    size_t n = rt_roundtrip(ic, &cfg, CQ_ROLE_KEY, x, T, y, &pk);
    const size_t pay = ((size_t)T * D + 1) / 2;
    CHECK(n == pay + 2 * (size_t)D, "int4-channel key size %zu", n);
    size_t sbad = 0, ebad = 0;
    for (uint32_t c = 0; n && c < D; c++) {
        double amax = 0;
        for (uint32_t t = 0; t < T; t++) amax = fmax(amax, fabs(f16(x[t * D + c])));
        uint16_t s = rd16(pk + pay + 2 * c);
        sbad += s != want_scale(amax, 7);
        for (uint32_t t = 0; t < T; t++) ebad += fabs(f16(x[t * D + c]) - y[t * D + c]) > f16(s) / 2;
    }
    CHECK(sbad == 0 && ebad == 0, "int4-channel D=%u T=%u: %zu scales, %zu errors", D, T, sbad,
          ebad);
    free(pk);
    CHECK(ic->packed_bytes(&cfg, CQ_ROLE_VALUE, T) == (size_t)T * D / 2 + 2 * (size_t)T,
          "int4-channel value size");

    /* outlier-top2 keys */
    n = rt_roundtrip(ot, &cfg, CQ_ROLE_KEY, x, T, y2, &pk);
    const uint32_t kept = D - 2;
    const size_t opay = ((size_t)T * kept + 1) / 2;
    CHECK(n == 4 + opay + 2 * (size_t)kept + 4 * (size_t)T, "outlier-top2 key size %zu", n);
    uint32_t a, b;
    ref_top2(x, T, D, &a, &b);
    CHECK(a == o1 && b == o2, "planted outliers %u %u, reference picks %u %u", o1, o2, a, b);
    CHECK(n && rd16(pk) == a && rd16(pk + 2) == b, "outlier-top2 header %u %u, want %u %u",
          rd16(pk), rd16(pk + 2), a, b);
    size_t xbad = 0;
    sbad = ebad = 0;
    for (uint32_t c = 0, j = 0; n && c < D; c++) {
        if (c == a || c == b) {
            for (uint32_t t = 0; t < T; t++)
                xbad += cq_f32_bits(y2[t * D + c]) != cq_f32_bits(cq_f16_to_f32(x[t * D + c]));
            continue;
        }
        double amax = 0;
        for (uint32_t t = 0; t < T; t++) amax = fmax(amax, fabs(f16(x[t * D + c])));
        uint16_t s = rd16(pk + 4 + opay + 2 * j);
        sbad += s != want_scale(amax, 7);
        for (uint32_t t = 0; t < T; t++) ebad += fabs(f16(x[t * D + c]) - y2[t * D + c]) > f16(s) / 2;
        j++;
    }
    CHECK(xbad == 0, "outlier-top2: %zu outlier elements not bit-exact", xbad);
    CHECK(sbad == 0 && ebad == 0, "outlier-top2 D=%u T=%u: %zu scales, %zu errors", D, T, sbad,
          ebad);
    CHECK(cq_f32_bits(y2[o2]) == 0x80000000u, "-0.0 in an outlier channel must stay -0.0");
    /* same scales for the other channels, exact outliers: strictly better than int4-channel */
    CHECK(rt_nmse(x, y2, (size_t)T * D) < rt_nmse(x, y, (size_t)T * D),
          "outlier-top2 must beat int4-channel on planted outliers");
    /* a corrupted channel pair is refused */
    if (n) {
        uint8_t *bad = malloc(n);
        memcpy(bad, pk, n);
        bad[0] = (uint8_t)b, bad[1] = (uint8_t)(b >> 8); /* c0 == c1 */
        CHECK(ot->decode(&cfg, CQ_ROLE_KEY, bad, n, T, y2) == CQ_ERR_FORMAT, "c0 == c1 accepted");
        bad[0] = 0, bad[1] = 0, bad[2] = (uint8_t)D, bad[3] = (uint8_t)(D >> 8); /* c1 == D */
        CHECK(ot->decode(&cfg, CQ_ROLE_KEY, bad, n, T, y2) == CQ_ERR_FORMAT, "c1 == D accepted");
        /* random bytes behind a valid pair decode (the generic fuzz rarely hits a valid pair) */
        int fuzz_ok = 1;
        for (int it = 0; it < 30; it++) {
            for (size_t i = 4; i < n; i++) bad[i] = (uint8_t)cq_rng_u64(&r);
            uint32_t p0 = cq_rng_below(&r, D - 1), p1 = p0 + 1 + cq_rng_below(&r, D - 1 - p0);
            bad[0] = (uint8_t)p0, bad[1] = (uint8_t)(p0 >> 8), bad[2] = (uint8_t)p1,
            bad[3] = (uint8_t)(p1 >> 8);
            fuzz_ok &= ot->decode(&cfg, CQ_ROLE_KEY, bad, n, T, y2) == CQ_OK;
        }
        CHECK(fuzz_ok, "outlier-top2: random bytes behind a valid pair refused");
        free(bad);
    }
    free(pk);
    free(x);
    free(y);
    free(y2);
}

static void test_top2_ties(void) {
    /* D = 8, T = 2: channel maxima 5 at c1, c3, c6 (ties) and 4 at c0: the lower indices win,
     * header = 01 00 03 00 */
    const cq_codec_traits *ot = get("outlier-top2");
    if (!ot) return;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 8);
    const double v[16] = {4, 1, 0, -5, 0, 0, 5, 0, /* t1 */ 0, -5, 0, 2, 0, 0, 1, 0};
    uint16_t x[16];
    for (int i = 0; i < 16; i++) x[i] = h(v[i]);
    uint8_t pk[64];
    CHECK(ot->encode(&cfg, CQ_ROLE_KEY, x, 2, pk, sizeof pk, NULL) == CQ_OK, "encode");
    const uint8_t want[4] = {0x01, 0x00, 0x03, 0x00};
    expect_bytes("outlier-top2 tie header", pk, want, 4);
}

/* ------------------------------------------------------------------ KIVI */

static uint32_t kivi_nq(uint32_t T, uint32_t R, cq_role role) {
    if (R == 0) return T;
    if (role == CQ_ROLE_KEY) return T / R * R;
    return T > R ? T - R : 0;
}

static size_t kivi_size(uint32_t D, uint32_t T, uint32_t R, cq_role role, unsigned b) {
    uint32_t nq = kivi_nq(T, R, role);
    size_t s = 2 * (size_t)(T - nq) * D;
    if (role == CQ_ROLE_VALUE) return s + (size_t)nq * (4 * (D / 32) + D * b / 8);
    for (uint32_t t0 = 0; t0 < nq; t0 += 32) {
        uint32_t n = nq - t0 < 32 ? nq - t0 : 32;
        s += 4 * (size_t)D + (size_t)D * ((n * b + 7) / 8);
    }
    return s;
}

/* Check one group against its stored min/scale/codes: mn = min, s = fp16((mx - mn)/qmax)
 * (double, one rounding), |x - x_hat| <= s/2 + one fp32 rounding of the sum. */
static void kivi_group_check(const uint16_t *x, size_t n, size_t stride, const float *y,
                             uint16_t mn_h, uint16_t s_h, unsigned b, size_t *bad_meta,
                             size_t *bad_err) {
    double mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        mn = fmin(mn, f16(x[i * stride]));
        mx = fmax(mx, f16(x[i * stride]));
    }
    *bad_meta += f16(mn_h) != mn || s_h != cq_f64_to_f16((mx - mn) / ((1 << b) - 1));
    const double s = f16(s_h);
    for (size_t i = 0; i < n; i++) {
        double xv = f16(x[i * stride]);
        double bound = s > 0 ? s / 2 + 0x1p-23 * (fabs(xv) + fabs(mn) + s) : mx - mn;
        *bad_err += fabs(xv - y[i * stride]) > bound;
    }
}

static void test_kivi(const char *name, unsigned b, uint32_t D, uint32_t T, uint32_t R,
                      uint64_t seed) {
    const cq_codec_traits *c = get(name);
    if (!c) return;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cfg.residual = R;
    cq_rng r;
    cq_rng_seed(&r, seed);
    uint16_t *x = malloc(((size_t)T * D + 1) * sizeof *x);
    float *y = malloc(((size_t)T * D + 1) * sizeof *y);
    rt_gauss(&r, x, T, D, 1.0, 2);
    for (int role = 0; role < 2; role++) {
        if (role == CQ_ROLE_VALUE && D % 32) continue;
        const uint32_t nq = kivi_nq(T, R, (cq_role)role);
        uint8_t *pk = NULL;
        size_t n = rt_roundtrip(c, &cfg, (cq_role)role, x, T, y, &pk);
        CHECK(n == kivi_size(D, T, R, (cq_role)role, b) && (n > 0 || T == 0),
              "%s role %d T=%u R=%u: size %zu, want %zu", name, role, T, R, n,
              kivi_size(D, T, R, (cq_role)role, b));
        if (!n) {
            free(pk);
            continue;
        }
        size_t bad_meta = 0, bad_err = 0, bad_res = 0;
        const uint8_t *p = pk;
        if (role == CQ_ROLE_KEY) {
            for (uint32_t t0 = 0; t0 < nq; t0 += 32) {
                uint32_t g = nq - t0 < 32 ? nq - t0 : 32;
                for (uint32_t ch = 0; ch < D; ch++)
                    kivi_group_check(x + (size_t)t0 * D + ch, g, D, y + (size_t)t0 * D + ch,
                                     rd16(p + 2 * ch), rd16(p + 2 * (D + ch)), b, &bad_meta,
                                     &bad_err);
                p += 4 * (size_t)D + (size_t)D * ((g * b + 7) / 8);
            }
        } else {
            const uint32_t ng = D / 32;
            for (uint32_t t = 0; t < nq; t++) {
                for (uint32_t g = 0; g < ng; g++)
                    kivi_group_check(x + (size_t)t * D + 32 * g, 32, 1, y + (size_t)t * D + 32 * g,
                                     rd16(p + 2 * g), rd16(p + 2 * (ng + g)), b, &bad_meta,
                                     &bad_err);
                p += 4 * ng + D * b / 8;
            }
        }
        /* residual tokens: stored as their fp16 and decoded exactly */
        for (size_t i = (size_t)nq * D; i < (size_t)T * D; i++, p += 2)
            bad_res += rd16(p) != x[i] || cq_f32_bits(y[i]) != cq_f32_bits(cq_f16_to_f32(x[i]));
        CHECK(bad_meta == 0 && bad_err == 0 && bad_res == 0,
              "%s role %d D=%u T=%u R=%u: %zu min/scale wrong, %zu beyond s/2, %zu residual "
              "elements not exact",
              name, role, D, T, R, bad_meta, bad_err, bad_res);
        /* the quantized part is exactly what a window-less (R = 0) encode of those tokens gives:
         * the snapshot is units + residual */
        if (nq && (role == CQ_ROLE_VALUE || nq % 32 == 0)) {
            cq_codec_cfg c0 = cfg;
            c0.residual = 0;
            size_t n0 = c->packed_bytes(&c0, (cq_role)role, nq);
            uint8_t *q0 = malloc(n0);
            CHECK(c->encode(&c0, (cq_role)role, x, nq, q0, n0, NULL) == CQ_OK, "R=0 encode");
            CHECK(!memcmp(q0, pk, n0), "%s role %d T=%u R=%u: quantized part differs from units",
                  name, role, T, R);
            free(q0);
        }
        free(pk);
    }
    free(x);
    free(y);
}

static void test_kivi_hand(void) {
    /* KIVI-2 values, D = 32, R = 0: x_c = c % 4 except x5 = 1.5 and x7 = 2.5: mn = 0, mx = 3,
     * s = 3/3 = 1 (0x3C00); codes round-half-even: 1.5 -> 2, 2.5 -> 2; 2-bit LSB-first, four per
     * byte: c0..3 = 0,1,2,3 -> 0xE4; c4..7 = 0,2,2,2 -> 0 | 2<<2 | 2<<4 | 2<<6 = 0xA8; then 0xE4.
     * Layout: min 00 00 | scale 00 3C | 8 code bytes. */
    const cq_codec_traits *k2 = get("kivi-2"), *k4 = get("kivi-4");
    if (!k2 || !k4) return;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, 32);
    cfg.residual = 0;
    uint16_t x[64];
    for (int c = 0; c < 32; c++) x[c] = h(c % 4);
    x[5] = h(1.5), x[7] = h(2.5);
    uint8_t pk[256];
    CHECK(k2->packed_bytes(&cfg, CQ_ROLE_VALUE, 1) == 12, "kivi-2 token size");
    CHECK(k2->encode(&cfg, CQ_ROLE_VALUE, x, 1, pk, sizeof pk, NULL) == CQ_OK, "kivi-2 encode");
    const uint8_t want[12] = {0x00, 0x00, 0x00, 0x3C, 0xE4, 0xA8, 0xE4, 0xE4, 0xE4, 0xE4, 0xE4, 0xE4};
    expect_bytes("kivi-2 value token", pk, want, 12);

    /* KIVI-4 keys, D = 2, T = 32, R = 32 (one full group, no residual): channel 0 = t % 16
     * (mn 0, mx 15, s = 15/15 = 1, codes = t % 16, nibbles LSB-first: 10 32 54 76 98 BA DC FE,
     * twice); channel 1 = 5 everywhere (mn 5 = 0x4500, s = 0, codes 0).
     * Layout: mins 00 00 00 45 | scales 00 3C 00 00 | ch0 16 B | ch1 16 B. */
    cq_codec_cfg_default(&cfg, 2);
    cfg.residual = 32;
    for (int t = 0; t < 32; t++) x[2 * t] = h(t % 16), x[2 * t + 1] = h(5);
    CHECK(k4->packed_bytes(&cfg, CQ_ROLE_KEY, 32) == 8 + 32, "kivi-4 key group size");
    CHECK(k4->encode(&cfg, CQ_ROLE_KEY, x, 32, pk, sizeof pk, NULL) == CQ_OK, "kivi-4 encode");
    uint8_t want4[40] = {0x00, 0x00, 0x00, 0x45, 0x00, 0x3C, 0x00, 0x00};
    for (int k = 0; k < 16; k++) want4[8 + k] = (uint8_t)(((2 * k) % 16) | (((2 * k + 1) % 16) << 4));
    expect_bytes("kivi-4 key group", pk, want4, 40);
    float y[64];
    CHECK(k4->decode(&cfg, CQ_ROLE_KEY, want4, 40, 32, y) == CQ_OK, "kivi-4 decode");
    int dbad = 0;
    for (int t = 0; t < 32; t++) dbad += y[2 * t] != (float)(t % 16) || y[2 * t + 1] != 5.0f;
    CHECK(dbad == 0, "kivi-4 hand decode: %d wrong", dbad);
}

static void test_kivi_config(void) {
    const char *names[2] = {"kivi-4", "kivi-2"};
    for (int i = 0; i < 2; i++) {
        const cq_codec_traits *c = get(names[i]);
        if (!c) continue;
        cq_codec_cfg cfg;
        cq_codec_cfg_default(&cfg, 64);
        /* streaming units: keys R (a full unit is all quantized), values 1 */
        CHECK(cq_codec_unit_tokens(c, &cfg, CQ_ROLE_KEY) == 128 &&
                  cq_codec_unit_tokens(c, &cfg, CQ_ROLE_VALUE) == 1,
              "%s units", names[i]);
        CHECK(c->packed_bytes(&cfg, CQ_ROLE_KEY, 128) == kivi_size(64, 128, 128, CQ_ROLE_KEY,
                                                                    i ? 2 : 4) &&
                  kivi_nq(128, 128, CQ_ROLE_KEY) == 128,
              "%s: a full key unit must be all quantized", names[i]);
        cfg.residual = 0;
        CHECK(cq_codec_unit_tokens(c, &cfg, CQ_ROLE_KEY) == 32, "%s R=0 key unit", names[i]);
        /* KIVI's own figure: b + 1 */
        CHECK(c->modeled_bpv(&cfg, CQ_ROLE_KEY, 100) == (i ? 3.0 : 5.0), "%s bpv", names[i]);
        /* R must be a multiple of 32; values need D % 32 == 0; keys take any D */
        cfg.residual = 48;
        CHECK(cq_codec_supports(c, &cfg, CQ_ROLE_KEY) == CQ_ERR_ARG, "%s R=48", names[i]);
        cq_err e;
        uint16_t x[64] = {0};
        uint8_t d[4096];
        CHECK(c->encode(&cfg, CQ_ROLE_KEY, x, 1, d, sizeof d, &e) == CQ_ERR_ARG, "%s R=48 enc",
              names[i]);
        rt_refuses_dim(c, 48, CQ_ROLE_VALUE);
        cq_codec_cfg_default(&cfg, 48);
        CHECK(cq_codec_supports(c, &cfg, CQ_ROLE_KEY) == CQ_OK, "%s keys D=48", names[i]);
    }
}

int main(void) {
    test_token_codecs();
    test_channel_codecs(64, 80, 1);
    test_channel_codecs(128, 33, 2);
    test_channel_codecs(6, 5, 3);
    test_top2_ties();
    test_kivi_hand();
    test_kivi_config();
    const uint32_t Ts[] = {0, 1, 31, 32, 33, 100, 128, 129, 300};
    const uint32_t Rs[] = {0, 32, 128};
    for (int i = 0; i < 9; i++)
        for (int j = 0; j < 3; j++) {
            test_kivi("kivi-4", 4, 64, Ts[i], Rs[j], 10 * i + j);
            test_kivi("kivi-2", 2, 64, Ts[i], Rs[j], 100 + 10 * i + j);
        }
    test_kivi("kivi-4", 4, 128, 70, 32, 7);
    test_kivi("kivi-2", 2, 6, 70, 0, 8); /* keys only at D = 6 */

    const char *all[] = {"int8-token", "int4-token", "int4-channel", "outlier-top2", "kivi-4",
                         "kivi-2"};
    for (int i = 0; i < 6; i++) {
        const cq_codec_traits *c = get(all[i]);
        if (!c) continue;
        for (int role = 0; role < 2; role++) {
            cq_codec_cfg cfg;
            cq_codec_cfg_default(&cfg, 128);
            rt_common(c, &cfg, (cq_role)role, 9, 1000 + i);
            cq_codec_cfg_default(&cfg, 64);
            rt_common(c, &cfg, (cq_role)role, 200, 2000 + i);
            rt_common(c, &cfg, (cq_role)role, 1, 3000 + i);
            rt_common(c, &cfg, (cq_role)role, 0, 4000 + i);
            cfg.residual = 0;
            rt_common(c, &cfg, (cq_role)role, 45, 5000 + i);
        }
    }
    rt_refuses_dim(cq_codec_find("outlier-top2"), 2, CQ_ROLE_KEY);
    return cq_test_done("test_baselines_int");
}
