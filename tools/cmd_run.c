/*
 * cmd_run.c - `cq run`: the main job on a built-in default. Checks the codec
 * against the shipped golden vectors when ../shared is beside the checkout,
 * then round-trips built-in synthetic KV data through every registry codec
 * and prints measured bits per value and error.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double normal(uint64_t *s) {
    double u = ((double)(mix(s) >> 11) + 0.5) * 0x1.0p-53, v = (double)(mix(s) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

int cq_cmd_run(int argc, char **argv) {
    const char *shared = "../shared";
    for (int i = 1; i < argc; i++) {
        if (cq_is_help(argv[i])) {
            printf("usage: cq run [--shared DIR]\n\nThe main job on a built-in default: golden-vector "
                   "conformance (when DIR, default ../shared, is present), then a round trip of "
                   "synthetic KV data (D=128, T=1000, two hot key channels) through every codec.\n");
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
    uint64_t s = 42;
    for (size_t i = 0; i < (size_t)T * D; i++) {
        size_t c = i % D;
        K[i] = cq_f64_to_f16(normal(&s) * (mask[c] ? 15.0 : 1.0) + (c % 7 == 0 ? 1.5 : 0.0));
        V[i] = cq_f64_to_f16(normal(&s) * 0.5);
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
        printf("| %s | %.4f | %.4f | %.3e | %.3e |\n", c->name, bpv[0], bpv[1], nmse[0], nmse[1]);
    }
    free(K);
    free(V);
    free(out);
    return rc;
}
