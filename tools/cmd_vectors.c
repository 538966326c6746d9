/* SPDX-License-Identifier: MIT */
/*
 * cmd_vectors.c - `cq vectors check|gen|replay`: conformance of the codec
 * against golden vectors (CONTRACT.md section 7) and real-model slices
 * (section 8), and a generator of new vectors in the same format.
 */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

static void vectors_usage(FILE *f) {
    fprintf(f,
            "usage: cq vectors check DIR...\n"
            "       cq vectors gen --tier TIER --dim D --tokens T --group G [--outliers a,b]\n"
            "                      [--seed N] [--specials] OUTDIR\n"
            "       cq vectors replay DIR\n\n"
            "check   compress each vector's inputs and decompress its stored bytes; compare\n"
            "        scales, packed bytes, sidecar and decoded K/V bit for bit. DIR is named\n"
            "        d{D}_T{T}_G{G}__{CQ8|CQ4|CQ4plus}. One line per vector; exit 1 if any fails.\n"
            "gen     write a new vector OUTDIR/d{D}_T{T}_G{G}__{TIER} (never overwrites):\n"
            "        N(0,1) inputs rounded to fp16 with planted high-magnitude key channels.\n"
            "        TIER is CQ8, CQ4 or CQ4plus (also CQ-8, CQ-4, CQ-4+). --outliers lists the\n"
            "        planted channels (for CQ4plus also the stored outlier mask; default: two\n"
            "        channels drawn from the seed). --specials mixes in zeros, -0.0,\n"
            "        subnormals, +-65504 and an all-zero token. Default seed 1.\n"
            "replay  the real-model slices of CONTRACT.md section 8 (manifest.txt, key_i, ...):\n"
            "        CQ-4+ keys (G=128, slice mask), INT4 values, CQ-3-rot values, bit for bit.\n");
}

static void print_mismatch(const cq_mismatch *mm) {
    if (mm->index == SIZE_MAX)
        printf("%s %s: length: expected %u words, got %u", mm->direction, mm->surface,
               mm->expected, mm->got);
    else
        printf("%s %s[%zu]: expected %0*x got %0*x", mm->direction, mm->surface, mm->index,
               (int)mm->digits, mm->expected, (int)mm->digits, mm->got);
}

static int vectors_check(int argc, char **argv) {
    if (argc < 2) {
        vectors_usage(stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (cq_is_help(argv[i])) {
            vectors_usage(stdout);
            return 0;
        }
    int failed = 0, passed = 0;
    for (int i = 1; i < argc; i++) {
        cq_golden g;
        cq_err e;
        cq_status st = cq_golden_load(argv[i], &g, &e);
        if (st) {
            printf("FAIL %s: %s: %s\n", argv[i], cq_status_name(st), e.msg);
            failed++;
            continue;
        }
        cq_mismatch mm;
        st = cq_golden_check(&g, &mm, &e);
        if (st == CQ_OK) {
            printf("ok   %s (%s, D=%u T=%u G=%u)\n", argv[i], cq_tier_name(g.tier), g.D, g.T, g.G);
            passed++;
        } else if (st == CQ_ERR_MISMATCH) {
            printf("FAIL %s: ", argv[i]);
            print_mismatch(&mm);
            printf("\n");
            failed++;
        } else {
            printf("FAIL %s: %s: %s\n", argv[i], cq_status_name(st), e.msg);
            failed++;
        }
        cq_golden_free(&g);
    }
    printf("vectors: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

static uint16_t special_value(cq_rng *s) {
    static const uint16_t specials[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400,
                                        0x7BFF, 0xFBFF, 0x3C00, 0xBC00, 0x3800};
    return specials[cq_rng_u64(s) % (sizeof specials / sizeof specials[0])];
}

static int vectors_gen(int argc, char **argv) {
    const char *tier_s = NULL, *out = NULL, *outl_s = NULL;
    uint32_t D = 0, T = 0, G = 0;
    uint64_t seed = 1;
    int specials = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cq_is_help(a)) {
            vectors_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tier") && v) tier_s = v, i++;
        else if (!strcmp(a, "--dim") && v) {
            if (cq_arg_u32(v, 0, 1u << 20, &D)) goto bad_num;
            i++;
        } else if (!strcmp(a, "--tokens") && v) {
            if (cq_arg_u32(v, 1, 1u << 24, &T)) goto bad_num;
            i++;
        } else if (!strcmp(a, "--group") && v) {
            if (cq_arg_u32(v, 0, 1u << 24, &G)) goto bad_num;
            i++;
        } else if (!strcmp(a, "--outliers") && v) outl_s = v, i++;
        else if (!strcmp(a, "--seed") && v) {
            if (cq_arg_u64(v, &seed)) goto bad_num;
            i++;
        } else if (!strcmp(a, "--specials")) specials = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "cq vectors gen: unknown or incomplete option '%s'\n", a);
            return 2;
        } else if (!out) out = a;
        else {
            fprintf(stderr, "cq vectors gen: unexpected argument '%s'\n", a);
            return 2;
        }
        continue;
    bad_num:
        fprintf(stderr, "cq vectors gen: bad value '%s' for %s\n", v, a);
        return 2;
    }
    if (!tier_s || !D || !T || !out) {
        fprintf(stderr, "cq vectors gen: --tier, --dim, --tokens and OUTDIR are required\n");
        vectors_usage(stderr);
        return 2;
    }
    cq_tier tier;
    if (cq_tier_parse(tier_s, &tier)) {
        fprintf(stderr, "cq vectors gen: unknown tier '%s' (CQ8, CQ4, CQ4plus)\n", tier_s);
        return 2;
    }
    if (G == 0 && tier == CQ_TIER_CQ8) G = CQ_DEFAULT_GROUP;
    uint16_t planted[CQ_MAX_DIM];
    int np = 0;
    cq_rng s;
    cq_rng_seed(&s, seed);
    if (outl_s) {
        np = cq_arg_u16_list(outl_s, planted, CQ_MAX_DIM);
        if (np < 0) {
            fprintf(stderr, "cq vectors gen: --outliers wants a comma-separated channel list\n");
            return 2;
        }
    } else if (D >= 4) {
        planted[0] = (uint16_t)(cq_rng_u64(&s) % D);
        do planted[1] = (uint16_t)(cq_rng_u64(&s) % D);
        while (planted[1] == planted[0]);
        if (planted[0] > planted[1]) {
            uint16_t t = planted[0];
            planted[0] = planted[1];
            planted[1] = t;
        }
        np = 2;
    }
    /* validate the full parameter set (including the outlier list) before generating */
    cq_params p;
    cq_err e;
    cq_status st = cq_params_init(&p, tier, D, G, planted, tier == CQ_TIER_CQ4P ? (uint32_t)np : 0, &e);
    if (st) {
        cq_report("vectors gen", st, &e);
        return 1;
    }
    for (int j = 0; j < np; j++)
        if (planted[j] >= D) {
            fprintf(stderr, "cq vectors gen: outlier channel %u is out of range for D=%u\n",
                    planted[j], D);
            return 1;
        }
    cq_golden g;
    memset(&g, 0, sizeof g);
    g.tier = tier;
    g.D = D;
    g.T = T;
    g.G = G;
    size_t td = (size_t)T * D;
    g.input_k = malloc(td * 2);
    g.input_v = malloc(td * 2);
    g.mask = calloc(D, 1);
    if (!g.input_k || !g.input_v || !g.mask) {
        cq_golden_free(&g);
        fprintf(stderr, "cq vectors gen: out of memory\n");
        return 1;
    }
    uint8_t is_planted[CQ_MAX_DIM] = {0};
    for (int j = 0; j < np; j++) is_planted[planted[j]] = 1;
    uint32_t zero_token = specials ? (uint32_t)(cq_rng_u64(&s) % T) : UINT32_MAX;
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t c = 0; c < D; c++) {
            size_t i = (size_t)t * D + c;
            double kx = cq_rng_normal(&s), vx = cq_rng_normal(&s);
            if (is_planted[c]) kx *= 12.0 + 4.0 * cq_rng_uniform(&s);
            g.input_k[i] = cq_f64_to_f16(kx);
            g.input_v[i] = cq_f64_to_f16(vx);
            if (specials && cq_rng_u64(&s) % 8 == 0) g.input_k[i] = special_value(&s);
            if (specials && cq_rng_u64(&s) % 8 == 0) g.input_v[i] = special_value(&s);
            if (t == zero_token) g.input_k[i] = g.input_v[i] = (c & 1) ? 0x8000 : 0x0000;
        }
    memcpy(g.mask, p.mask, D);
    st = cq_golden_compute(&g, &e);
    char name[128], path[4096];
    cq_golden_name(tier, D, T, G, name, sizeof name);
    if (!st && mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cq vectors gen: cannot create %s: %s\n", out, strerror(errno));
        cq_golden_free(&g);
        return 1;
    }
    snprintf(path, sizeof path, "%s/%s", out, name);
    if (!st) st = cq_golden_save(path, &g, &e);
    cq_golden_free(&g);
    if (st) {
        cq_report("vectors gen", st, &e);
        return 1;
    }
    printf("%s\n", path);
    return 0;
}

static int vectors_replay(int argc, char **argv) {
    if (argc == 2 && cq_is_help(argv[1])) {
        vectors_usage(stdout);
        return 0;
    }
    if (argc != 2) {
        vectors_usage(stderr);
        return 2;
    }
    const char *dir = argv[1];
    cq_slice_manifest m;
    cq_err e;
    cq_status st = cq_slice_manifest_load(dir, &m, &e);
    if (st) {
        cq_report("vectors replay", st, &e);
        return 1;
    }
    int failed = 0, passed = 0;
    for (uint32_t i = 0; i < m.count; i++) {
        cq_slice s;
        st = cq_slice_load(dir, &m, i, &s, &e);
        if (st) {
            printf("FAIL slice %u: %s: %s\n", m.index[i], cq_status_name(st), e.msg);
            failed++;
            continue;
        }
        cq_mismatch mm;
        st = cq_slice_check(&s, &mm, &e);
        if (st == CQ_OK) {
            printf("ok   slice %u (layer %u head %u, D=%u T=%u): keyhat valhat vhatwht\n", s.index,
                   s.layer, s.head, s.D, s.T);
            passed++;
        } else if (st == CQ_ERR_MISMATCH) {
            printf("FAIL slice %u (layer %u head %u): ", s.index, s.layer, s.head);
            print_mismatch(&mm);
            printf("\n");
            failed++;
        } else {
            printf("FAIL slice %u: %s: %s\n", s.index, cq_status_name(st), e.msg);
            failed++;
        }
        cq_slice_free(&s);
    }
    cq_slice_manifest_free(&m);
    printf("slices: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

int cq_cmd_vectors(int argc, char **argv) {
    if (argc < 2 || cq_is_help(argv[1])) {
        vectors_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "check")) return vectors_check(argc - 1, argv + 1);
    if (!strcmp(argv[1], "gen")) return vectors_gen(argc - 1, argv + 1);
    if (!strcmp(argv[1], "replay")) return vectors_replay(argc - 1, argv + 1);
    fprintf(stderr, "cq vectors: unknown action '%s'\n", argv[1]);
    vectors_usage(stderr);
    return 2;
}
