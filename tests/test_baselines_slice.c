/* SPDX-License-Identifier: MIT */
/*
 * test_baselines_slice.c - every baseline of this family on the 20 real
 * Qwen2-0.5B K/V slices (../shared/vectors/qwen2-0.5b, D = 64, T = 80): prints
 * measured bits/value (8 * packed bytes / (T * D)) and NMSE of keys and values
 * (sums over all slices), and checks what must hold on real keys: per-token
 * INT4 is worse than per-channel INT4, the run-time top-2 outlier lane only
 * improves on int4-channel, KIVI with its default window R = 128 keeps an
 * 80-token slice entirely in fp16 (exact), and every NMSE is finite.
 */
#include "baseline_rt.h"

typedef struct row {
    const char *name;
    uint32_t residual; /* KIVI's R (ignored by the others) */
    double kbits, vbits, kn, kd, vn, vd;
    double kn0, kd0; /* slice 0 alone */
} row;

static void accumulate(const uint16_t *x, const float *y, size_t n, double *num, double *den) {
    for (size_t i = 0; i < n; i++) {
        double a = cq_f16_to_f32(x[i]), d = a - y[i];
        *num += d * d;
        *den += a * a;
    }
}

int main(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/vectors/qwen2-0.5b", cq_test_shared());
    cq_slice_manifest m;
    cq_err e;
    cq_status st = cq_slice_manifest_load(dir, &m, &e);
    CHECK(st == CQ_OK, "manifest %s: %s", dir, e.msg);
    if (st) return cq_test_done("test_baselines_slice");
    row rows[] = {
        {.name = "fp16", .residual = 0},
        {.name = "cq4+", .residual = 0},
        {.name = "int8-token", .residual = 0},
        {.name = "int4-token", .residual = 0},
        {.name = "int4-channel", .residual = 0},
        {.name = "outlier-top2", .residual = 0},
        {.name = "kivi-4", .residual = 128},
        {.name = "kivi-4", .residual = 0},
        {.name = "kivi-2", .residual = 128},
        {.name = "kivi-2", .residual = 0},
        {.name = "q8_0", .residual = 0},
        {.name = "q4_0", .residual = 0},
        {.name = "q4_1", .residual = 0},
        {.name = "q5_0", .residual = 0},
        {.name = "q5_1", .residual = 0},
        {.name = "iq4_nl", .residual = 0},
        {.name = "q4_0_rot", .residual = 0},
        {.name = "mxfp4", .residual = 0},
        {.name = "nvfp4", .residual = 0},
    };
    const size_t nrows = sizeof rows / sizeof rows[0];
    double values = 0;
    for (uint32_t i = 0; i < m.count; i++) {
        cq_slice s;
        st = cq_slice_load(dir, &m, i, &s, &e);
        CHECK(st == CQ_OK, "slice %u: %s", i, e.msg);
        if (st) continue;
        const size_t n = (size_t)s.T * s.D;
        float *y = malloc(n * sizeof *y);
        values += (double)n;
        for (size_t k = 0; k < nrows; k++) {
            const cq_codec_traits *c = cq_codec_find(rows[k].name);
            CHECK(c != NULL, "%s missing", rows[k].name);
            if (!c) continue;
            cq_codec_cfg cfg;
            cq_codec_cfg_default(&cfg, s.D);
            cfg.residual = rows[k].residual;
            cfg.mask = s.mask;
            size_t bk = rt_roundtrip(c, &cfg, CQ_ROLE_KEY, s.key, s.T, y, NULL);
            accumulate(s.key, y, n, &rows[k].kn, &rows[k].kd);
            if (i == 0) accumulate(s.key, y, n, &rows[k].kn0, &rows[k].kd0);
            size_t bv = rt_roundtrip(c, &cfg, CQ_ROLE_VALUE, s.val, s.T, y, NULL);
            accumulate(s.val, y, n, &rows[k].vn, &rows[k].vd);
            rows[k].kbits += 8.0 * (double)bk;
            rows[k].vbits += 8.0 * (double)bv;
        }
        free(y);
        cq_slice_free(&s);
    }
    const uint32_t nslices = m.count;
    cq_slice_manifest_free(&m);
    printf("%u Qwen2-0.5B slices (D=64, T=80); bits/value = 8 x packed bytes / (T x D); NMSE = "
           "sum err^2 / sum x^2 over all slices (slice 0 = layer 2, head 0)\n\n",
           nslices);
    printf("| codec | R | key bits/value | key NMSE | key NMSE slice 0 | value bits/value | "
           "value NMSE |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    double nm[32];
    for (size_t k = 0; k < nrows; k++) {
        row *r = &rows[k];
        nm[k] = r->kn / r->kd;
        int kivi = !strncmp(r->name, "kivi", 4);
        char rs[16];
        snprintf(rs, sizeof rs, "%u", r->residual);
        printf("| %s | %s | %.4f | %.3e | %.3e | %.4f | %.3e |\n", r->name, kivi ? rs : "-",
               r->kbits / values, nm[k], r->kn0 / r->kd0, r->vbits / values, r->vn / r->vd);
        CHECK(isfinite(nm[k]) && isfinite(r->vn / r->vd), "%s: NMSE not finite", r->name);
    }
    /* rows: 0 fp16, 3 int4-token, 4 int4-channel, 5 outlier-top2, 6/8 KIVI R=128 */
    CHECK(nm[0] == 0 && nm[6] == 0 && nm[8] == 0 && rows[6].vn == 0 && rows[8].vn == 0,
          "fp16 and KIVI with R=128 > T must be exact on 80-token slices");
    CHECK(nm[3] > nm[4], "per-token INT4 keys (%g) should be worse than per-channel (%g)", nm[3],
          nm[4]);
    CHECK(nm[5] <= nm[4], "outlier-top2 (%g) must not be worse than int4-channel (%g)", nm[5],
          nm[4]);
    return cq_test_done("test_baselines_slice");
}
