/* SPDX-License-Identifier: MIT */
/*
 * cmd_engine.c - `cq engine run`: stream golden vectors, .npy tensors or
 * synthetic N(0,1) data through the KVCE model (include/cq_engine.h) in one or
 * both revisions, check every read beat against the codec core (and against
 * the golden K_hat / V_hat), and report the model's measured cycles per token,
 * tokens per second at given clocks, SRAM bits per value against the canonical
 * stream, and occupancy. --trace writes the beat-level trace of one run.
 * The model and its checks live in src/engine/; this file only parses, loads
 * inputs and prints.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

#define MAX_CLOCKS 8

static void engine_usage(FILE *f) {
    fprintf(f,
            "usage: cq engine run [options] [INPUT...]\n\n"
            "Drive the KV Cache Engine model like the chip (AXI-Lite registers, one fp16 beat\n"
            "per clock on the write port, fp32 beats on the read port): push K and V (values at\n"
            "records 0..T-1, keys at T..2T-1), read every record back and compare every beat\n"
            "bit for bit with the codec core (and the golden K_hat/V_hat). Report cycles per\n"
            "token (the model's own cycle counts: mean, min and max over the tokens; v0.2's\n"
            "are data-dependent) and the share of quantize-core runs that took the early\n"
            "path, tokens/s at each clock, SRAM bits per value against the canonical stream,\n"
            "and occupancy. Exit 1 if any beat differs.\n\n"
            "INPUT   a golden vector directory d{D}_T{T}_G{G}__{TIER} (its own tier, D, G,\n"
            "        mask), or a .npy file: [T][D] (used as K and as V) or [2][T][D] (K, V);\n"
            "        f2/f4/f8 (f4/f8 rounded to fp16). No INPUT: synthetic N(0,1) data.\n\n"
            "options:\n"
            "  --rev v0.2|v0.3|both   revision(s) to run (default both)\n"
            "  --tier CQ8|CQ4|CQ4plus tier for .npy / synthetic input (default CQ4)\n"
            "  --dim D --tokens T     synthetic shape (default 64 x 256)\n"
            "  --group G              key group for .npy / synthetic (default 128)\n"
            "  --seed N               synthetic seed (default 1)\n"
            "  --outliers a,b         CQ4plus outlier channels for .npy / synthetic\n"
            "                         (default: the 2 channels of largest max|K|, calibrated\n"
            "                         offline on the input itself)\n"
            "  --sram-depth N         records (default: power of two >= 2T, at least 256)\n"
            "  --lanes N              parallel quantize units (default 1, the published block)\n"
            "  --clock-mhz a,b        clocks for tokens/s (default 49,500)\n"
            "  --trace FILE           beat-level trace of the run (one input, one revision)\n"
            "  --trace-hex FILE       replay kit (one input, one revision; docs/ENGINE_REPLAY.md):\n"
            "                         FILE, a $readmemh image (one 64-bit word per event), and\n"
            "                         FILE.model_spans, FILE.model_rows (the model's spans and\n"
            "                         SRAM rows), FILE.standin_tokens, FILE.standin_rows (what\n"
            "                         the behavioural stand-in block of hw/ replays)\n"
            "  --json | --csv         machine-readable output instead of markdown\n");
}

typedef struct run_input {
    char name[256];
    cq_tier tier;
    uint32_t D, T, G;
    uint8_t mask[CQ_MAX_DIM];
    uint16_t *K, *V;
    uint32_t *k_hat, *v_hat; /* golden only */
    cq_golden golden;
    int is_golden;
} run_input;

static void input_free(run_input *in) {
    if (in->is_golden) cq_golden_free(&in->golden);
    else {
        free(in->K);
        free(in->V);
    }
}

/* Offline calibration of the default CQ4plus mask: the k channels of largest max|K|. */
static void top_channels(const uint16_t *K, uint32_t T, uint32_t D, uint32_t k, uint8_t *mask) {
    memset(mask, 0, CQ_MAX_DIM);
    for (uint32_t j = 0; j < k; j++) {
        int best = -1;
        uint16_t bv = 0;
        for (uint32_t c = 0; c < D; c++) {
            if (mask[c]) continue;
            uint16_t a = cq_amax_f16(K + c, T, D);
            if (best < 0 || a > bv) best = (int)c, bv = a;
        }
        mask[best] = 1;
    }
}

static int parse_list_u32(const char *s, double *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p && n < max) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0)) return -1;
        out[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return *p ? -1 : n;
}

/* Print a string as a JSON string literal (csv = 0) or as a CSV field (csv = 1). */
static void put_str(const char *str, int csv) {
    if (csv && !strpbrk(str, ",\"\n")) {
        fputs(str, stdout);
        return;
    }
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        if (*p == '"') fputs(csv ? "\"\"" : "\\\"", stdout);
        else if (!csv && *p == '\\') fputs("\\\\", stdout);
        else if (!csv && *p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

static double per(uint64_t num, uint64_t den) { return den ? (double)num / (double)den : NAN; }

static void fmt(char *buf, size_t cap, double v, const char *f) {
    if (isnan(v)) snprintf(buf, cap, "-");
    else snprintf(buf, cap, f, v);
}

int cq_cmd_engine(int argc, char **argv) {
    if (argc < 2 || cq_is_help(argv[1])) {
        engine_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "cq engine: unknown subcommand '%s'\n", argv[1]);
        engine_usage(stderr);
        return 2;
    }
    const char *tier_s = "CQ4", *rev_s = "both", *outl_s = NULL, *trace_path = NULL;
    const char *hex_path = NULL;
    const char *clk_s = "49,500";
    uint32_t D = 64, T = 256, G = 128, depth = 0, lanes = 1;
    uint64_t seed = 1;
    int json = 0, csv = 0;
    const char *inputs[64];
    int n_in = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (cq_is_help(a)) {
            engine_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--rev") && v) rev_s = v, i++;
        else if (!strcmp(a, "--tier") && v) tier_s = v, i++;
        else if (!strcmp(a, "--dim") && v) bad = cq_arg_u32(v, 2, CQ_MAX_DIM, &D), i++;
        else if (!strcmp(a, "--tokens") && v) bad = cq_arg_u32(v, 1, 32768, &T), i++;
        else if (!strcmp(a, "--group") && v) bad = cq_arg_u32(v, 1, 65536, &G), i++;
        else if (!strcmp(a, "--seed") && v) bad = cq_arg_u64(v, &seed), i++;
        else if (!strcmp(a, "--outliers") && v) outl_s = v, i++;
        else if (!strcmp(a, "--sram-depth") && v) bad = cq_arg_u32(v, 1, 65536, &depth), i++;
        else if (!strcmp(a, "--lanes") && v) bad = cq_arg_u32(v, 1, CQ_MAX_DIM, &lanes), i++;
        else if (!strcmp(a, "--clock-mhz") && v) clk_s = v, i++;
        else if (!strcmp(a, "--trace") && v) trace_path = v, i++;
        else if (!strcmp(a, "--trace-hex") && v) hex_path = v, i++;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--csv")) csv = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "cq engine: unknown or incomplete option '%s'\n", a);
            return 2;
        } else if (n_in < 64) inputs[n_in++] = a;
        else {
            fprintf(stderr, "cq engine: too many inputs\n");
            return 2;
        }
        if (bad) {
            fprintf(stderr, "cq engine: bad value '%s' for %s\n", v, a);
            return 2;
        }
    }
    int revs[2], n_rev = 0;
    if (!strcmp(rev_s, "both")) revs[n_rev++] = 2, revs[n_rev++] = 3;
    else if (!strcmp(rev_s, "v0.2") || !strcmp(rev_s, "0.2")) revs[n_rev++] = 2;
    else if (!strcmp(rev_s, "v0.3") || !strcmp(rev_s, "0.3")) revs[n_rev++] = 3;
    else {
        fprintf(stderr, "cq engine: --rev must be v0.2, v0.3 or both\n");
        return 2;
    }
    cq_tier tier;
    if (cq_tier_parse(tier_s, &tier) != CQ_OK) {
        fprintf(stderr, "cq engine: unknown tier '%s'\n", tier_s);
        return 2;
    }
    double clocks[MAX_CLOCKS];
    int n_clk = parse_list_u32(clk_s, clocks, MAX_CLOCKS);
    if (n_clk <= 0) {
        fprintf(stderr, "cq engine: bad --clock-mhz '%s'\n", clk_s);
        return 2;
    }
    if ((trace_path || hex_path) && (n_rev != 1 || n_in > 1)) {
        fprintf(stderr, "cq engine: --trace and --trace-hex need exactly one input and one --rev\n");
        return 2;
    }
    if (json && csv) {
        fprintf(stderr, "cq engine: --json and --csv are exclusive\n");
        return 2;
    }
    uint16_t outl[CQ_MAX_DIM];
    int n_outl = -1;
    if (outl_s && (n_outl = cq_arg_u16_list(outl_s, outl, CQ_MAX_DIM)) < 0) {
        fprintf(stderr, "cq engine: bad --outliers '%s'\n", outl_s);
        return 2;
    }
    /* the mask file's rules (cq_mask_load): ascending, unique; CQ4plus only */
    for (int j = 1; j < n_outl; j++)
        if (outl[j] <= outl[j - 1]) {
            fprintf(stderr, "cq engine: --outliers '%s': channels must be ascending and unique\n",
                    outl_s);
            return 2;
        }
    if (outl_s && tier != CQ_TIER_CQ4P) {
        fprintf(stderr, "cq engine: --outliers applies to --tier CQ4plus only (tier %s)\n", tier_s);
        return 2;
    }

    FILE *trace = NULL;
    cq_out trace_out = {0};
    if (trace_path) {
        cq_err te;
        cq_err_clear(&te);
        if (cq_out_open(&trace_out, trace_path, &te)) {
            cq_report("engine", te.code, &te);
            return 1;
        }
        trace = trace_out.f;
    }
    cq_engine_replay_files rpf;
    FILE **rp_slot[5] = {&rpf.image, &rpf.model_spans, &rpf.model_rows, &rpf.standin_tokens,
                         &rpf.standin_rows};
    static const char *const rp_ext[5] = {"", ".model_spans", ".model_rows", ".standin_tokens",
                                          ".standin_rows"};
    memset(&rpf, 0, sizeof rpf);
    for (int j = 0; hex_path && j < 5; j++) {
        char p[4096];
        snprintf(p, sizeof p, "%s%s", hex_path, rp_ext[j]);
        if (!(*rp_slot[j] = fopen(p, "w"))) {
            fprintf(stderr, "cq engine: CQ_ERR_IO: cannot open %s\n", p);
            for (int q = 0; q < j; q++) fclose(*rp_slot[q]);
            if (trace) cq_out_abort(&trace_out);
            return 1;
        }
    }
    int n_runs = n_in ? n_in : 1, failed = 0, rows = 0;
    if (json) printf("[\n");
    else if (csv)
        printf("input,rev,tier,D,G,T,keys,lanes,beats,mismatches,negzero_outliers,"
               "key_cyc_tok,val_cyc_tok,kv_cyc_tok,key_read_cyc,val_read_cyc,%s"
               "sram_bpv_key,sram_bpv_val,sram_bpv_kv,content_bpv_key,content_bpv_val,"
               "canon_bpv_key,canon_bpv_val,canon_bpv_kv,record_bits,occupancy,cycles,"
               "key_cyc_min,key_cyc_max,val_cyc_min,val_cyc_max,read_cyc_min,read_cyc_max,"
               "early_path_share\n",
               "compress_tok_s_first_clock,decompress_tok_s_first_clock,");
    for (int r = 0; r < n_runs; r++) {
        run_input in;
        memset(&in, 0, sizeof in);
        cq_err e;
        cq_err_clear(&e);
        const char *path = n_in ? inputs[r] : NULL;
        size_t pl = path ? strlen(path) : 0;
        if (path && pl > 4 && !strcmp(path + pl - 4, ".npy")) {
            cq_npy a;
            cq_status st = cq_npy_load(path, 0, &a, &e);
            if (st) {
                cq_report("engine", st, &e);
                failed = 1;
                continue;
            }
            int two = a.ndim == 3 && a.shape[0] == 2;
            if (!(a.ndim == 2 || two) || a.shape[a.ndim - 1] < 2 ||
                a.shape[a.ndim - 1] > CQ_MAX_DIM || a.shape[a.ndim - 2] < 1 ||
                a.shape[a.ndim - 2] > 32768) {
                fprintf(stderr, "cq engine: CQ_ERR_SHAPE: %s: want [T][D] or [2][T][D], D<=512\n",
                        path);
                cq_npy_free(&a);
                failed = 1;
                continue;
            }
            in.D = (uint32_t)a.shape[a.ndim - 1];
            in.T = (uint32_t)a.shape[a.ndim - 2];
            size_t n = (size_t)in.T * in.D;
            uint16_t *all = malloc(a.count * sizeof(uint16_t));
            in.K = malloc(n * 2);
            in.V = malloc(n * 2);
            if (!all || !in.K || !in.V) {
                fprintf(stderr, "cq engine: CQ_ERR_NOMEM\n");
                free(all);
                cq_npy_free(&a);
                input_free(&in);
                return 1;
            }
            cq_npy_to_f16(&a, all);
            memcpy(in.K, all, n * 2);
            memcpy(in.V, two ? all + n : all, n * 2);
            free(all);
            cq_npy_free(&a);
            in.tier = tier;
            in.G = G;
            snprintf(in.name, sizeof in.name, "%s", path);
        } else if (path) {
            cq_status st = cq_golden_load(path, &in.golden, &e);
            if (st) {
                cq_report("engine", st, &e);
                failed = 1;
                continue;
            }
            in.is_golden = 1;
            in.tier = in.golden.tier;
            in.D = in.golden.D;
            in.T = in.golden.T;
            in.G = in.golden.G ? in.golden.G : 1;
            in.K = in.golden.input_k;
            in.V = in.golden.input_v;
            in.k_hat = in.golden.k_hat;
            in.v_hat = in.golden.v_hat;
            memcpy(in.mask, in.golden.mask, in.D);
            const char *b = strrchr(path, '/');
            snprintf(in.name, sizeof in.name, "%s", b && b[1] ? b + 1 : path);
        } else {
            if (D & 1u) {
                fprintf(stderr, "cq engine: --dim must be even\n");
                return 2;
            }
            in.D = D;
            in.T = T;
            in.G = G;
            in.tier = tier;
            size_t n = (size_t)T * D;
            in.K = malloc(n * 2);
            in.V = malloc(n * 2);
            if (!in.K || !in.V) {
                input_free(&in);
                return 1;
            }
            cq_rng rng;
            cq_rng_seed(&rng, seed);
            for (size_t i = 0; i < n; i++) in.K[i] = cq_f64_to_f16(cq_rng_normal(&rng));
            for (size_t i = 0; i < n; i++) in.V[i] = cq_f64_to_f16(cq_rng_normal(&rng));
            snprintf(in.name, sizeof in.name, "synthetic-normal-seed%llu",
                     (unsigned long long)seed);
        }
        if (in.is_golden && n_outl >= 0) {
            fprintf(stderr, "cq engine: --outliers: %s is a golden vector with its own mask\n",
                    in.name);
            input_free(&in);
            return 2;
        }
        if (!in.is_golden && in.tier == CQ_TIER_CQ4P) {
            if (n_outl >= 0) {
                for (int j = 0; j < n_outl; j++) {
                    if (outl[j] >= in.D) {
                        fprintf(stderr, "cq engine: outlier channel %u >= D\n", outl[j]);
                        input_free(&in);
                        return 2;
                    }
                    in.mask[outl[j]] = 1;
                }
            } else {
                top_channels(in.K, in.T, in.D, CQ_DEFAULT_OUTLIERS, in.mask);
            }
        }
        for (int ri = 0; ri < n_rev; ri++) {
            cq_engine_config cfg;
            cq_engine_config_default(&cfg);
            cfg.rev = (cq_engine_rev)revs[ri];
            cfg.tier = in.tier;
            cfg.dim = in.D;
            cfg.group = in.G;
            cfg.lanes = lanes;
            uint32_t dd = 256;
            while (dd < 2 * in.T && dd < 65536) dd <<= 1;
            cfg.sram_depth = depth ? depth : dd;
            memcpy(cfg.mask, in.mask, in.D);
            fprintf(stderr, "engine: %s v0.%d (%s D=%u G=%u T=%u lanes=%u)...\n", in.name,
                    revs[ri], cq_tier_name(in.tier), in.D, in.G, in.T, lanes);
            cq_engine_report rep;
            cq_status st = cq_engine_run_check_replay(&cfg, in.K, in.V, in.T, in.k_hat, in.v_hat,
                                                      trace, hex_path ? &rpf : NULL, &rep, &e);
            if (st && st != CQ_ERR_MISMATCH) {
                cq_report("engine", st, &e);
                failed = 1;
                continue;
            }
            if (st == CQ_ERR_MISMATCH) {
                cq_report("engine", st, &e);
                failed = 1;
            }
            double ck = per(rep.key_cycles, rep.key_tokens), cv = per(rep.val_cycles, rep.val_tokens);
            double rk = per(rep.key_read_cycles, rep.key_reads);
            double rv = per(rep.val_read_cycles, rep.val_reads);
            double ckv = (isnan(ck) ? 0 : ck) + cv, rkv = (isnan(rk) ? 0 : rk) + rv;
            uint64_t nk = (uint64_t)rep.keys_stored * in.D, nv = (uint64_t)in.T * in.D;
            double sk = per(rep.sram_bits_key, nk), sv = per(rep.sram_bits_val, nv);
            double skv = per(rep.sram_bits_key + rep.sram_bits_val, nk + nv);
            double tk = per(rep.content_bits_key, nk), tv = per(rep.content_bits_val, nv);
            double qk = per(rep.canon_bits_key, nk), qv = per(rep.canon_bits_val, nv);
            double qkv = per(rep.canon_bits_key + rep.canon_bits_val, nk + nv);
            double early = per(rep.q_fast, rep.q_total);
            char mm[6][24];
            uint64_t mmv[6] = {rep.key_min, rep.key_max, rep.val_min, rep.val_max, rep.read_min,
                               rep.read_max};
            for (int m = 0; m < 6; m++) {
                if (m < 2 && rep.key_tokens == 0) snprintf(mm[m], sizeof mm[m], "-");
                else snprintf(mm[m], sizeof mm[m], "%llu", (unsigned long long)mmv[m]);
            }
            char b[16][32];
            fmt(b[0], 32, ck, "%.1f");
            fmt(b[1], 32, cv, "%.1f");
            fmt(b[2], 32, ckv, "%.1f");
            fmt(b[3], 32, rk, "%.1f");
            fmt(b[4], 32, rv, "%.1f");
            fmt(b[5], 32, sk, "%.3f");
            fmt(b[6], 32, sv, "%.3f");
            fmt(b[7], 32, skv, "%.3f");
            fmt(b[8], 32, tk, "%.3f");
            fmt(b[9], 32, tv, "%.3f");
            fmt(b[10], 32, qk, "%.3f");
            fmt(b[11], 32, qv, "%.3f");
            fmt(b[12], 32, qkv, "%.3f");
            if (json) {
                printf("%s  {\"input\": ", rows ? ",\n" : "");
                put_str(in.name, 0);
                printf(", \"rev\": \"v0.%d\", \"tier\": \"%s\", \"D\": %u, "
                       "\"G\": %u, \"T\": %u, \"keys\": %u, \"lanes\": %u, \"beats\": %llu, "
                       "\"mismatches\": %llu, \"negzero_outliers\": %llu, "
                       "\"key_cycles_per_token\": %s, \"val_cycles_per_token\": %s, "
                       "\"kv_cycles_per_token\": %s, \"key_read_cycles\": %s, "
                       "\"val_read_cycles\": %s, \"clocks\": [",
                       revs[ri], cq_tier_tag(in.tier), in.D, in.G,
                       in.T, rep.keys_stored, lanes, (unsigned long long)rep.beats_checked,
                       (unsigned long long)rep.mismatches,
                       (unsigned long long)rep.negzero_outliers, isnan(ck) ? "null" : b[0], b[1],
                       b[2], isnan(rk) ? "null" : b[3], b[4]);
                for (int c = 0; c < n_clk; c++)
                    printf("%s{\"mhz\": %g, \"compress_tokens_per_s\": %.0f, "
                           "\"decompress_tokens_per_s\": %.0f}",
                           c ? ", " : "", clocks[c], clocks[c] * 1e6 / ckv, clocks[c] * 1e6 / rkv);
                printf("], \"sram_bpv_key\": %s, \"sram_bpv_val\": %s, \"sram_bpv_kv\": %s, "
                       "\"content_bpv_key\": %s, \"content_bpv_val\": %s, \"canon_bpv_key\": %s, "
                       "\"canon_bpv_val\": %s, \"canon_bpv_kv\": %s, \"record_bits\": %u, "
                       "\"occupancy\": %u, \"cycles\": %llu, ",
                       isnan(sk) ? "null" : b[5], b[6], b[7], isnan(tk) ? "null" : b[8], b[9],
                       isnan(qk) ? "null" : b[10], b[11], b[12], rep.record_bits, rep.occupancy,
                       (unsigned long long)rep.total_cycles);
                printf("\"key_cycles_min\": %s, \"key_cycles_max\": %s, \"val_cycles_min\": %s, "
                       "\"val_cycles_max\": %s, \"read_cycles_min\": %s, \"read_cycles_max\": %s, "
                       "\"early_path_share\": %.6f}",
                       rep.key_tokens ? mm[0] : "null", rep.key_tokens ? mm[1] : "null", mm[2],
                       mm[3], mm[4], mm[5], isnan(early) ? 0.0 : early);
            } else if (csv) {
                put_str(in.name, 1);
                printf(",v0.%d,%s,%u,%u,%u,%u,%u,%llu,%llu,%llu,%s,%s,%s,%s,%s,%.0f,%.0f,%s,%s,"
                       "%s,%s,%s,%s,%s,%s,%u,%u,%llu,%s,%s,%s,%s,%s,%s,%.6f\n",
                       revs[ri], cq_tier_tag(in.tier), in.D, in.G, in.T, rep.keys_stored,
                       lanes, (unsigned long long)rep.beats_checked,
                       (unsigned long long)rep.mismatches,
                       (unsigned long long)rep.negzero_outliers, b[0], b[1], b[2], b[3], b[4],
                       clocks[0] * 1e6 / ckv, clocks[0] * 1e6 / rkv, b[5], b[6], b[7], b[8], b[9],
                       b[10], b[11], b[12], rep.record_bits, rep.occupancy,
                       (unsigned long long)rep.total_cycles, mm[0], mm[1], mm[2], mm[3], mm[4],
                       mm[5], isnan(early) ? 0.0 : early);
            } else {
                printf("\n### %s, v0.%d (%s, D=%u, G=%u, T=%u, lanes=%u)\n\n", in.name, revs[ri],
                       cq_tier_name(in.tier), in.D, in.G, in.T, lanes);
                printf("conformance: %llu beat comparisons (every read beat against the codec "
                       "core%s), %llu differ from the contract",
                       (unsigned long long)rep.beats_checked,
                       in.is_golden ? " and the golden K_hat/V_hat" : "",
                       (unsigned long long)rep.mismatches);
                if (rep.negzero_outliers)
                    printf(", %llu outlier -0.0 read as +0.0 (v0.2 gap 8)",
                           (unsigned long long)rep.negzero_outliers);
                printf("; keys stored %u of %u%s\n\n", rep.keys_stored, in.T,
                       rep.keys_stored < in.T ? " (v0.2: whole groups only, gap 1)" : "");
                printf("| path | compress cycles/token: mean | min | max | decompress "
                       "cycles/record: mean | min | max |\n|---|---:|---:|---:|---:|---:|---:|\n"
                       "| keys | %s | %s | %s | %s | %s | %s |\n"
                       "| values | %s | %s | %s | %s | %s | %s |\n"
                       "| K+V token | %s | | | %.1f | | |\n\n",
                       b[0], mm[0], mm[1], b[3], mm[4], mm[5], b[1], mm[2], mm[3], b[4], mm[4],
                       mm[5], b[2], rkv);
                printf("quantize core: %llu channel runs, %.2f%% took the early path%s\n\n",
                       (unsigned long long)rep.q_total, 100.0 * (isnan(early) ? 0.0 : early),
                       revs[ri] == 3 ? " (v0.3 core: 24 cycles either way)" : " (4 cycles, else 25)");
                printf("| clock (MHz) | compress tokens/s | decompress tokens/s |\n|---:|---:|---:|\n");
                for (int c = 0; c < n_clk; c++)
                    printf("| %g | %.0f | %.0f |\n", clocks[c], clocks[c] * 1e6 / ckv,
                           clocks[c] * 1e6 / rkv);
                printf("\n| bits per value | keys | values | K+V |\n|---|---:|---:|---:|\n"
                       "| SRAM rows (%u-bit rows%s) | %s | %s | %s |\n"
                       "| record content only | %s | %s | |\n"
                       "| canonical stream (CONTRACT.md 5) | %s | %s | %s |\n\n",
                       rep.record_bits, rep.scale_sets_used ? " + scale table" : "", b[5], b[6],
                       b[7], b[8], b[9], b[10], b[11], b[12]);
                printf("occupancy %u records; key record %u bits, value record %u bits; %llu "
                       "cycles in all\n",
                       rep.occupancy, rep.key_record_bits, rep.val_record_bits,
                       (unsigned long long)rep.total_cycles);
                printf("\n| state | cycles |\n|---|---:|\n");
                for (int s = 0; s < CQ_ES_COUNT_; s++)
                    printf("| %s | %llu |\n", cq_engine_state_name((cq_engine_state)s),
                           (unsigned long long)rep.state_cycles[s]);
            }
            rows++;
        }
        input_free(&in);
    }
    if (json) printf("\n]\n");
    for (int j = 0; hex_path && j < 5; j++)
        if (fclose(*rp_slot[j]) != 0) {
            fprintf(stderr, "cq engine: CQ_ERR_IO: writing %s%s failed\n", hex_path, rp_ext[j]);
            failed = 1;
        }
    if (trace) {
        cq_err te;
        cq_err_clear(&te);
        if (cq_out_commit(&trace_out, &te)) {
            cq_report("engine", te.code, &te);
            return 1;
        }
    }
    return failed ? 1 : 0;
}
