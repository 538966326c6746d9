/* SPDX-License-Identifier: MIT */
/*
 * cmd_codecs.c - `cq codecs`: list the codec registry (id, name, bits,
 * layout), and `cq codecs --measure`: run every codec of the registry (or a
 * chosen few) on real or generated [T][D] K/V blocks and report measured bits
 * per value (packed bytes), the codec's modeled figure, key/value NMSE, max
 * abs error and encode/decode speed. Works from the registry alone: a codec
 * added to src/codec/registry.c shows up here without touching this file.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

/* ------------------------------------------------------------------ listing */

/* A layout string may hold '|' (field separators): escape it in markdown. */
static void print_md_cell(const char *s) {
    for (; *s; s++) {
        if (*s == '|') putchar('\\');
        putchar(*s);
    }
}

/* A C string (NULL: "") as a JSON string. */
static void json_cstr(FILE *f, const char *s) {
    cq_tool_json_str(f, s, s ? strlen(s) : 0);
}

static int codecs_list(int json) {
    if (json) printf("[\n");
    else printf("| id | name | family | bits | roles | layout |\n|---:|---|---|---:|---|---|\n");
    for (size_t i = 0; i < cq_codec_count(); i++) {
        const cq_codec_traits *c = cq_codec_at(i);
        const char *roles = (c->flags & CQ_CODEC_F_KEYS) && (c->flags & CQ_CODEC_F_VALUES) ? "K,V"
                            : (c->flags & CQ_CODEC_F_KEYS)                                ? "K"
                                                                                          : "V";
        if (json) {
            printf("  {\"id\": %d, \"name\": ", (int)c->id);
            json_cstr(stdout, c->name);
            printf(", \"family\": ");
            json_cstr(stdout, c->family);
            printf(", \"bits\": %g, \"roles\": \"%s\", \"layout\": ", c->bits, roles);
            json_cstr(stdout, c->layout);
            printf("}%s\n", i + 1 < cq_codec_count() ? "," : "");
        } else {
            printf("| %d | %s | %s | %g | %s | ", (int)c->id, c->name, c->family, c->bits, roles);
            print_md_cell(c->layout);
            printf(" |\n");
        }
    }
    if (json) printf("]\n");
    return 0;
}

/* ------------------------------------------------------------------- inputs */

/* One [T][D] K/V block (a slice, a golden vector, a generated head, an .npy head). */
typedef struct mcase {
    uint32_t D, T;
    uint16_t *K, *V;
    uint8_t *mask; /* [D] static outlier mask, or NULL when the source has none */
} mcase;

typedef struct mset {
    mcase *c;
    size_t n, cap;
} mset;

static void mset_free(mset *s) {
    for (size_t i = 0; i < s->n; i++) free(s->c[i].K), free(s->c[i].V), free(s->c[i].mask);
    free(s->c);
    memset(s, 0, sizeof *s);
}

/* Takes ownership of K, V, mask (freed on failure). */
static cq_status mset_add(mset *s, uint32_t D, uint32_t T, uint16_t *K, uint16_t *V,
                          uint8_t *mask) {
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 8;
        mcase *p = realloc(s->c, nc * sizeof *p);
        if (!p) {
            free(K), free(V), free(mask);
            return CQ_ERR_NOMEM;
        }
        s->c = p, s->cap = nc;
    }
    s->c[s->n++] = (mcase){D, T, K, V, mask};
    return CQ_OK;
}

static void *dup_mem(const void *p, size_t n) {
    void *q = malloc(n ? n : 1);
    if (q && n) memcpy(q, p, n);
    return q;
}

static cq_status load_slices(const char *dir, mset *s, cq_err *e) {
    cq_slice_manifest m;
    cq_status st = cq_slice_manifest_load(dir, &m, e);
    if (st) return st;
    for (uint32_t i = 0; i < m.count && !st; i++) {
        cq_slice sl;
        if ((st = cq_slice_load(dir, &m, i, &sl, e))) break;
        size_t n = (size_t)sl.T * sl.D;
        uint16_t *K = dup_mem(sl.key, n * 2), *V = dup_mem(sl.val, n * 2);
        uint8_t *mk = dup_mem(sl.mask, sl.D);
        if (!K || !V || !mk) {
            free(K), free(V), free(mk);
            st = cq_err_set(e, CQ_ERR_NOMEM, -1, -1, "out of memory");
        } else {
            st = mset_add(s, sl.D, sl.T, K, V, mk);
        }
        cq_slice_free(&sl);
    }
    cq_slice_manifest_free(&m);
    return st;
}

static cq_status load_golden_one(const char *dir, mset *s, cq_err *e) {
    cq_golden g;
    cq_status st = cq_golden_load(dir, &g, e);
    if (st) return st;
    size_t n = (size_t)g.T * g.D;
    uint16_t *K = dup_mem(g.input_k, n * 2), *V = dup_mem(g.input_v, n * 2);
    uint8_t *mk = dup_mem(g.mask, g.D);
    if (!K || !V || !mk) {
        free(K), free(V), free(mk);
        st = cq_err_set(e, CQ_ERR_NOMEM, -1, -1, "out of memory");
    } else {
        st = mset_add(s, g.D, g.T, K, V, mk);
    }
    cq_golden_free(&g);
    return st;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* DIR is one vector (d{D}_T{T}_G{G}__TIER) or a directory of them. */
static cq_status load_golden(const char *dir, mset *s, cq_err *e) {
    cq_tier tier;
    uint32_t D, T, G;
    if (cq_golden_parse_name(dir, &tier, &D, &T, &G, NULL) == CQ_OK)
        return load_golden_one(dir, s, e);
    DIR *d = opendir(dir);
    if (!d) return cq_err_set(e, CQ_ERR_IO, -1, -1, "%s: cannot open directory", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    cq_status st = CQ_OK;
    struct dirent *de;
    while ((de = readdir(d)) && !st) {
        if (cq_golden_parse_name(de->d_name, &tier, &D, &T, &G, NULL) != CQ_OK) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                st = cq_err_set(e, CQ_ERR_NOMEM, -1, -1, "out of memory");
                break;
            }
            names = p;
        }
        size_t l = strlen(dir) + strlen(de->d_name) + 2;
        if (!(names[n] = malloc(l))) {
            st = cq_err_set(e, CQ_ERR_NOMEM, -1, -1, "out of memory");
            break;
        }
        snprintf(names[n++], l, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    if (!st && n == 0)
        st = cq_err_set(e, CQ_ERR_FORMAT, -1, -1, "%s: no golden vector directories", dir);
    if (!st) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (!st) st = load_golden_one(names[i], s, e);
        free(names[i]);
    }
    free(names);
    return st;
}

/* One [T][D] block of an .npy: shape [T][D] or [layers][heads][T][D]. */
static cq_status npy_block(const char *path, uint32_t layer, uint32_t head, uint16_t **out,
                           uint32_t *D, uint32_t *T, cq_err *e) {
    cq_npy a;
    cq_status st = cq_npy_load(path, 0, &a, e);
    if (st) return st;
    uint64_t L = 1, H = 1, t, d;
    if (a.ndim == 2) t = a.shape[0], d = a.shape[1];
    else if (a.ndim == 4) L = a.shape[0], H = a.shape[1], t = a.shape[2], d = a.shape[3];
    else {
        cq_npy_free(&a);
        return cq_err_set(e, CQ_ERR_SHAPE, -1, -1, "%s: shape must be [T][D] or [L][H][T][D]", path);
    }
    if (layer >= L || head >= H) {
        cq_npy_free(&a);
        return cq_err_set(e, CQ_ERR_RANGE, -1, -1, "%s: layer %u / head %u outside [%llu][%llu]",
                          path, layer, head, (unsigned long long)L, (unsigned long long)H);
    }
    if (t == 0 || t > 0xFFFFFFFFu || d < CQ_MIN_DIM || d > CQ_MAX_DIM || (d & 1)) {
        cq_npy_free(&a);
        return cq_err_set(e, CQ_ERR_SHAPE, -1, -1, "%s: T=%llu D=%llu not usable", path,
                          (unsigned long long)t, (unsigned long long)d);
    }
    uint16_t *all = malloc((size_t)a.count * 2), *blk = malloc((size_t)(t * d) * 2);
    if (!all || !blk) {
        free(all), free(blk), cq_npy_free(&a);
        return cq_err_set(e, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    cq_npy_to_f16(&a, all);
    memcpy(blk, all + ((size_t)layer * H + head) * t * d, (size_t)(t * d) * 2);
    free(all), cq_npy_free(&a);
    *out = blk, *D = (uint32_t)d, *T = (uint32_t)t;
    return CQ_OK;
}

static cq_status load_npy(const char *kp, const char *vp, uint32_t layer, uint32_t head,
                          const uint16_t *mask_ch, int nmask, mset *s, cq_err *e) {
    uint16_t *K = NULL, *V = NULL;
    uint32_t D, T, D2, T2;
    cq_status st = npy_block(kp, layer, head, &K, &D, &T, e);
    if (!st) st = npy_block(vp, layer, head, &V, &D2, &T2, e);
    if (!st && (D != D2 || T != T2))
        st = cq_err_set(e, CQ_ERR_SHAPE, -1, -1, "K is [%u][%u] but V is [%u][%u]", T, D, T2, D2);
    uint8_t *mk = NULL;
    if (!st && nmask > 0) {
        if (!(mk = calloc(D, 1))) st = cq_err_set(e, CQ_ERR_NOMEM, -1, -1, "out of memory");
        for (int i = 0; !st && i < nmask; i++) {
            if (mask_ch[i] >= D)
                st = cq_err_set(e, CQ_ERR_OUTLIERS, -1, mask_ch[i], "--mask channel %u >= D=%u",
                                mask_ch[i], D);
            else mk[mask_ch[i]] = 1;
        }
    }
    if (st) {
        free(K), free(V), free(mk);
        return st;
    }
    return mset_add(s, D, T, K, V, mk);
}

static cq_status load_synth(uint32_t D, uint32_t T, uint32_t hot, uint64_t seed, uint32_t cases,
                            mset *s, cq_err *e) {
    for (uint32_t i = 0; i < cases; i++) {
        cq_synth_cfg sc;
        cq_synth_cfg_default(&sc, D, T, seed + i);
        sc.hot = hot;
        uint16_t *K = malloc((size_t)T * D * 2), *V = malloc((size_t)T * D * 2);
        uint8_t *mk = malloc(D);
        if (!K || !V || !mk) {
            free(K), free(V), free(mk);
            return cq_err_set(e, CQ_ERR_NOMEM, -1, -1, "out of memory");
        }
        cq_status st = cq_synth_kv(&sc, K, V, mk, e);
        if (st) {
            free(K), free(V), free(mk);
            return st;
        }
        if ((st = mset_add(s, D, T, K, V, mk))) return cq_err_set(e, st, -1, -1, "out of memory");
    }
    return CQ_OK;
}

/* ----------------------------------------------------------------- measuring */

typedef struct role_stats {
    double bytes, values;     /* packed bytes, T*D summed over cases */
    double nmse_sum, modeled_sum;
    double maxerr;
    uint32_t ok, modeled_n, cases;
    double enc_bytes, enc_s, dec_bytes, dec_s; /* fp16 input bytes processed, seconds */
    char na[256];             /* first reason a case could not be coded */
} role_stats;

static const char *role_name(cq_role r) { return r == CQ_ROLE_KEY ? "keys" : "values"; }

/* --group / --residual: codec parameters shared by every case of one run */
static uint32_t opt_group = CQ_DEFAULT_GROUP, opt_residual = 128;

static void measure_case(const cq_codec_traits *c, const mcase *mc, cq_role role, double min_s,
                         role_stats *rs) {
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, mc->D);
    cfg.mask = mc->mask;
    cfg.group = opt_group;
    cfg.residual = opt_residual;
    rs->cases++;
    cq_status st = cq_codec_supports(c, &cfg, role);
    if (st) {
        if (!rs->na[0]) {
            if (st == CQ_ERR_UNSUPPORTED)
                snprintf(rs->na, sizeof rs->na, "does not code %s", role_name(role));
            else if (st == CQ_ERR_DIM)
                snprintf(rs->na, sizeof rs->na, "D=%u not supported", mc->D);
            else if (st == CQ_ERR_OUTLIERS)
                snprintf(rs->na, sizeof rs->na, "%s need a static outlier mask (none in this input)",
                         role_name(role));
            else snprintf(rs->na, sizeof rs->na, "%s", cq_status_name(st));
        }
        return;
    }
    const uint16_t *x = role == CQ_ROLE_KEY ? mc->K : mc->V;
    size_t n = (size_t)mc->T * mc->D;
    size_t nb = c->packed_bytes(&cfg, role, mc->T);
    uint8_t *buf = malloc(nb ? nb : 1);
    float *out = malloc((n ? n : 1) * sizeof *out);
    if (!buf || !out) {
        free(buf), free(out);
        snprintf(rs->na, sizeof rs->na, "out of memory");
        return;
    }
    cq_err e;
    cq_err_clear(&e);
    /* encode: repeat until min_s has elapsed so a short block still gets a reading */
    double t0 = cq_tool_now(), el = 0.0;
    unsigned reps = 0;
    do {
        st = c->encode(&cfg, role, x, mc->T, buf, nb, &e);
        reps++;
        el = cq_tool_now() - t0;
    } while (!st && el < min_s);
    if (st) {
        if (!rs->na[0])
            snprintf(rs->na, sizeof rs->na, "%s: %.200s", cq_status_name(st), e.msg);
        free(buf), free(out);
        return;
    }
    rs->enc_bytes += 2.0 * (double)n * reps, rs->enc_s += el;
    t0 = cq_tool_now(), reps = 0;
    do {
        st = c->decode(&cfg, role, buf, nb, mc->T, out);
        reps++;
        el = cq_tool_now() - t0;
    } while (!st && el < min_s);
    if (st) {
        if (!rs->na[0]) snprintf(rs->na, sizeof rs->na, "decode: %s", cq_status_name(st));
        free(buf), free(out);
        return;
    }
    rs->dec_bytes += 2.0 * (double)n * reps, rs->dec_s += el;
    double se = 0.0, sx = 0.0;
    for (size_t i = 0; i < n; i++) {
        double xv = cq_f16_to_f32(x[i]), d = (double)out[i] - xv;
        se += d * d, sx += xv * xv;
        if (!(fabs(d) <= rs->maxerr)) rs->maxerr = fabs(d); /* NaN propagates as NaN */
    }
    rs->nmse_sum += sx > 0.0 ? se / sx : (se > 0.0 ? INFINITY : 0.0);
    rs->bytes += (double)nb, rs->values += (double)n, rs->ok++;
    if (c->modeled_bpv) rs->modeled_sum += c->modeled_bpv(&cfg, role, mc->T), rs->modeled_n++;
    free(buf), free(out);
}

typedef struct codec_row {
    const cq_codec_traits *c;
    role_stats r[2];
} codec_row;

/* Figures of a role, or NaN when no case could be coded. */
static double st_bits(const role_stats *s) { return s->ok ? 8.0 * s->bytes / s->values : NAN; }
static double st_nmse(const role_stats *s) { return s->ok ? s->nmse_sum / s->ok : NAN; }
static double st_maxerr(const role_stats *s) { return s->ok ? s->maxerr : NAN; }
static double st_modeled(const role_stats *s) {
    return s->ok && s->modeled_n ? s->modeled_sum / s->modeled_n : NAN;
}

static double row_bits_kv(const codec_row *w) {
    const role_stats *k = &w->r[0], *v = &w->r[1];
    if (!k->ok || !v->ok) return NAN;
    return 8.0 * (k->bytes + v->bytes) / (k->values + v->values);
}
static double row_modeled_kv(const codec_row *w) {
    double a = st_modeled(&w->r[0]), b = st_modeled(&w->r[1]);
    return isnan(a) || isnan(b) ? NAN : 0.5 * (a + b);
}
static double row_speed(const codec_row *w, int dec) {
    double b = 0, s = 0;
    for (int i = 0; i < 2; i++) {
        b += dec ? w->r[i].dec_bytes : w->r[i].enc_bytes;
        s += dec ? w->r[i].dec_s : w->r[i].enc_s;
    }
    return s > 0 ? b / s / 1e6 : NAN;
}

static void row_notes(const codec_row *w, char *buf, size_t cap) {
    buf[0] = '\0';
    for (int i = 0; i < 2; i++) {
        const role_stats *s = &w->r[i];
        size_t l = strlen(buf);
        if (s->ok == s->cases || l + 8 >= cap) continue;
        if (s->ok == 0)
            snprintf(buf + l, cap - l, "%s%s n/a: %s", l ? "; " : "", i ? "V" : "K", s->na);
        else
            snprintf(buf + l, cap - l, "%s%s: %u of %u cases (%s)", l ? "; " : "", i ? "V" : "K",
                     s->ok, s->cases, s->na);
    }
    if (w->c->flags & CQ_CODEC_F_OFFLINE) {
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%swhole-sequence (offline)", l ? "; " : "");
    }
}

static void fmt_num(char *b, size_t cap, double v, const char *fmt) {
    if (isnan(v)) snprintf(b, cap, "n/a");
    else snprintf(b, cap, fmt, v);
}

static void print_md(const codec_row *rows, size_t n) {
    printf("| codec | codec bits/value K | V | K+V | modeled K+V | NMSE K | NMSE V | max err K | "
           "max err V | enc MB/s | dec MB/s | notes |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (size_t i = 0; i < n; i++) {
        const codec_row *w = &rows[i];
        char b[10][32], notes[480];
        fmt_num(b[0], 32, st_bits(&w->r[0]), "%.4f");
        fmt_num(b[1], 32, st_bits(&w->r[1]), "%.4f");
        fmt_num(b[2], 32, row_bits_kv(w), "%.4f");
        fmt_num(b[3], 32, row_modeled_kv(w), "%.6f");
        fmt_num(b[4], 32, st_nmse(&w->r[0]), "%.3e");
        fmt_num(b[5], 32, st_nmse(&w->r[1]), "%.3e");
        fmt_num(b[6], 32, st_maxerr(&w->r[0]), "%.4g");
        fmt_num(b[7], 32, st_maxerr(&w->r[1]), "%.4g");
        fmt_num(b[8], 32, row_speed(w, 0), "%.0f");
        fmt_num(b[9], 32, row_speed(w, 1), "%.0f");
        row_notes(w, notes, sizeof notes);
        printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | ", w->c->name, b[0],
               b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]);
        print_md_cell(notes);
        printf(" |\n");
    }
}

static void csv_num(double v) {
    if (isnan(v)) printf(",");
    else printf(",%.9g", v);
}

static void print_csv(const codec_row *rows, size_t n) {
    printf("codec,id,codec_bits_per_value_k,codec_bits_per_value_v,codec_bits_per_value,modeled_k,modeled_v,modeled_kv,nmse_k,nmse_v,"
           "maxerr_k,maxerr_v,enc_mbps,dec_mbps,notes\n");
    for (size_t i = 0; i < n; i++) {
        const codec_row *w = &rows[i];
        char notes[480];
        row_notes(w, notes, sizeof notes);
        for (char *p = notes; *p; p++)
            if (*p == '"') *p = '\'';
        printf("%s,%d", w->c->name, (int)w->c->id);
        csv_num(st_bits(&w->r[0]));
        csv_num(st_bits(&w->r[1]));
        csv_num(row_bits_kv(w));
        csv_num(st_modeled(&w->r[0]));
        csv_num(st_modeled(&w->r[1]));
        csv_num(row_modeled_kv(w));
        csv_num(st_nmse(&w->r[0]));
        csv_num(st_nmse(&w->r[1]));
        csv_num(st_maxerr(&w->r[0]));
        csv_num(st_maxerr(&w->r[1]));
        csv_num(row_speed(w, 0));
        csv_num(row_speed(w, 1));
        printf(",\"%s\"\n", notes);
    }
}

static void json_num(const char *key, double v, int last) {
    if (isnan(v) || isinf(v)) printf("\"%s\": null%s", key, last ? "" : ", ");
    else printf("\"%s\": %.9g%s", key, v, last ? "" : ", ");
}

static void print_json(const codec_row *rows, size_t n, const char *source, const mset *s) {
    printf("{\"source\": ");
    json_cstr(stdout, source);
    printf(", \"cases\": %zu, \"codecs\": [\n", s->n);
    for (size_t i = 0; i < n; i++) {
        const codec_row *w = &rows[i];
        printf("  {\"codec\": ");
        json_cstr(stdout, w->c->name);
        printf(", \"id\": %d, \"family\": ", (int)w->c->id);
        json_cstr(stdout, w->c->family);
        printf(", \"offline\": %s, ", (w->c->flags & CQ_CODEC_F_OFFLINE) ? "true" : "false");
        for (int r = 0; r < 2; r++) {
            const role_stats *st = &w->r[r];
            printf("\"%s\": {", r ? "values" : "keys");
            json_num("codec_bits_per_value", st_bits(st), 0);
            json_num("modeled_bits", st_modeled(st), 0);
            json_num("nmse", st_nmse(st), 0);
            json_num("max_abs_err", st_maxerr(st), 0);
            printf("\"cases_coded\": %u, \"cases\": %u, \"na\": ", st->ok, st->cases);
            if (st->ok == st->cases) printf("null");
            else json_cstr(stdout, st->na);
            printf("}, ");
        }
        json_num("codec_bits_per_value", row_bits_kv(w), 0);
        json_num("modeled_bits_kv", row_modeled_kv(w), 0);
        json_num("encode_mb_per_s", row_speed(w, 0), 0);
        json_num("decode_mb_per_s", row_speed(w, 1), 1);
        printf("}%s\n", i + 1 < n ? "," : "");
    }
    printf("]}\n");
}

static void measure_usage(FILE *f) {
    fprintf(f,
            "usage: cq codecs [--json]\n"
            "       cq codecs --measure [SOURCE] [--codec a,b,...] [--json|--csv] [--min-ms N]\n\n"
            "Without --measure: list every codec of the registry (stable id, name, family,\n"
            "nominal code bits, roles, layout).\n\n"
            "--measure runs every codec (or the --codec list) on [T][D] key and value blocks\n"
            "through the registry interface and reports, per codec: measured bits per value\n"
            "(8 x packed bytes / values, everything the method stores) for K, V and both;\n"
            "the method's own modeled bits (mean over cases) where it defines one; key and\n"
            "value NMSE (sum err^2 / sum x^2, mean over cases); max abs error; encode and\n"
            "decode speed in MB/s of fp16 input (wall clock on this machine, noisy).\n"
            "A codec that cannot code a role at this D shows n/a and the reason.\n\n"
            "SOURCE (one of; default: the built-in generator):\n"
            "  --slices DIR            the real Qwen2-0.5B slices (manifest.txt, key_i, val_i,\n"
            "                          keymask_i); every slice is a case; CQ-4+ uses each keymask\n"
            "  --golden DIR            a golden vector directory, or a directory of them\n"
            "  --npy-k K.npy --npy-v V.npy [--layer L] [--head H] [--mask c0,c1]\n"
            "                          [T][D] or [layers][heads][T][D] (fp16/fp32/fp64);\n"
            "                          --mask gives CQ-4+ its static key channels\n"
            "  --synth [--dim D] [--tokens T] [--hot N] [--seed S] [--cases N]\n"
            "                          Qwen2-like keys (hot channels, offsets, Student-t tails)\n"
            "                          and Gaussian values; the hot channels are the CQ-4+ mask.\n"
            "                          Defaults: D=64 T=512 hot=2 seed=1 cases=4.\n"
            "--min-ms N   time each encode/decode for at least N ms (default 2)\n"
            "--group G    ChannelQuant key group size (default 128)\n"
            "--residual R KIVI's fp16 residual window (default 128; 0 = the quantizer alone)\n");
}

static int codecs_measure(int argc, char **argv) {
    const char *slices = NULL, *golden = NULL, *npk = NULL, *npv = NULL, *list = NULL;
    int json = 0, csv = 0, synth = 0, nmask = 0;
    uint32_t layer = 0, head = 0, D = 64, T = 512, hot = 2, cases = 4, min_ms = 2;
    uint64_t seed = 1;
    uint16_t mask_ch[CQ_MAX_DIM];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (cq_is_help(a)) {
            measure_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--measure")) continue;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--csv")) csv = 1;
        else if (!strcmp(a, "--synth")) synth = 1;
        else if (!v) bad = 1;
        else if (!strcmp(a, "--slices")) slices = v, i++;
        else if (!strcmp(a, "--golden")) golden = v, i++;
        else if (!strcmp(a, "--npy-k")) npk = v, i++;
        else if (!strcmp(a, "--npy-v")) npv = v, i++;
        else if (!strcmp(a, "--codec")) list = v, i++;
        else if (!strcmp(a, "--layer")) bad = cq_arg_u32(v, 0, 0xFFFFFFFFu, &layer), i++;
        else if (!strcmp(a, "--head")) bad = cq_arg_u32(v, 0, 0xFFFFFFFFu, &head), i++;
        else if (!strcmp(a, "--dim")) bad = cq_arg_u32(v, CQ_MIN_DIM, CQ_MAX_DIM, &D), synth = 1, i++;
        else if (!strcmp(a, "--tokens")) bad = cq_arg_u32(v, 1, 1u << 20, &T), synth = 1, i++;
        else if (!strcmp(a, "--hot")) bad = cq_arg_u32(v, 0, CQ_MAX_DIM, &hot), synth = 1, i++;
        else if (!strcmp(a, "--cases")) bad = cq_arg_u32(v, 1, 1024, &cases), synth = 1, i++;
        else if (!strcmp(a, "--seed")) bad = cq_arg_u64(v, &seed), synth = 1, i++;
        else if (!strcmp(a, "--min-ms")) bad = cq_arg_u32(v, 0, 10000, &min_ms), i++;
        else if (!strcmp(a, "--group")) bad = cq_arg_u32(v, 1, 1u << 20, &opt_group), i++;
        else if (!strcmp(a, "--residual")) bad = cq_arg_u32(v, 0, 1u << 20, &opt_residual), i++;
        else if (!strcmp(a, "--mask")) {
            nmask = cq_arg_u16_list(v, mask_ch, CQ_MAX_DIM);
            bad = nmask < 0, i++;
        } else bad = 1;
        if (bad) {
            fprintf(stderr, "cq codecs: bad or unknown option '%s'%s%s\n", a, v ? " " : "",
                    v && strncmp(v, "--", 2) ? v : "");
            return 2;
        }
    }
    int nsrc = !!slices + !!golden + (npk || npv) + synth;
    if (nsrc > 1 || json + csv > 1 || (!!npk != !!npv)) {
        fprintf(stderr, "cq codecs: give one source (--slices, --golden, --npy-k with --npy-v, "
                        "or --synth) and at most one of --json/--csv\n");
        return 2;
    }
    if (nmask && !npk) {
        fprintf(stderr, "cq codecs: --mask applies to --npy-k/--npy-v input only\n");
        return 2;
    }
    if (synth || nsrc == 0) {
        if (hot >= D || (D & 1)) {
            fprintf(stderr, "cq codecs: --dim must be even and --hot < --dim\n");
            return 2;
        }
    }
    /* which codecs */
    size_t nc = 0, cap = cq_codec_count();
    codec_row *rows = calloc(cap ? cap : 1, sizeof *rows);
    if (!rows) return cq_report("codecs", CQ_ERR_NOMEM, NULL), 1;
    if (list) {
        const char *p = list;
        while (*p) {
            char name[96];
            size_t l = strcspn(p, ",");
            if (l == 0 || l >= sizeof name) {
                fprintf(stderr, "cq codecs: bad --codec list '%s'\n", list);
                free(rows);
                return 2;
            }
            memcpy(name, p, l), name[l] = '\0';
            const cq_codec_traits *c = cq_codec_find(name);
            if (!c) {
                fprintf(stderr, "cq codecs: unknown codec '%s' (see `cq codecs`)\n", name);
                free(rows);
                return 2;
            }
            int dup = 0;
            for (size_t k = 0; k < nc; k++) dup |= rows[k].c == c;
            if (!dup && nc < cap) rows[nc++].c = c;
            p += l;
            if (*p == ',' && !*++p) {
                fprintf(stderr, "cq codecs: bad --codec list '%s'\n", list);
                free(rows);
                return 2;
            }
        }
    } else {
        for (size_t k = 0; k < cap; k++) rows[nc++].c = cq_codec_at(k);
    }
    /* load the cases */
    mset s = {0};
    cq_err e;
    cq_err_clear(&e);
    cq_status st;
    char source[600];
    if (slices) {
        st = load_slices(slices, &s, &e);
        snprintf(source, sizeof source, "slices %s", slices);
    } else if (golden) {
        st = load_golden(golden, &s, &e);
        snprintf(source, sizeof source, "golden %s", golden);
    } else if (npk) {
        st = load_npy(npk, npv, layer, head, mask_ch, nmask, &s, &e);
        snprintf(source, sizeof source, "npy %s %s layer %u head %u", npk, npv, layer, head);
    } else {
        st = load_synth(D, T, hot, seed, cases, &s, &e);
        snprintf(source, sizeof source, "synth D=%u T=%u hot=%u seed=%llu cases=%u", D, T, hot,
                 (unsigned long long)seed, cases);
    }
    if (st) {
        cq_report("codecs", st, &e);
        mset_free(&s), free(rows);
        return 1;
    }
    for (size_t i = 0; i < s.n; i++) {
        uint32_t bt, bc;
        if (cq_find_nonfinite(s.c[i].K, s.c[i].T, s.c[i].D, &bt, &bc) ||
            cq_find_nonfinite(s.c[i].V, s.c[i].T, s.c[i].D, &bt, &bc)) {
            fprintf(stderr, "cq codecs: CQ_ERR_NONFINITE: case %zu: non-finite input at token %u, "
                            "channel %u\n", i, bt, bc);
            mset_free(&s), free(rows);
            return 1;
        }
    }
    fprintf(stderr, "cq codecs: measuring %zu codecs on %zu case(s) of %s\n", nc, s.n, source);
    for (size_t k = 0; k < nc; k++) {
        fprintf(stderr, "  [%zu/%zu] %s\n", k + 1, nc, rows[k].c->name);
        for (size_t i = 0; i < s.n; i++)
            for (int r = 0; r < 2; r++)
                measure_case(rows[k].c, &s.c[i], (cq_role)r, min_ms * 1e-3, &rows[k].r[r]);
    }
    if (json) print_json(rows, nc, source, &s);
    else if (csv) print_csv(rows, nc);
    else {
        printf("Source: %s (%zu case(s)). Bits are measured packed bytes; modeled is the method's "
               "own formula; speeds are wall-clock on this machine.\n\n", source, s.n);
        print_md(rows, nc);
    }
    mset_free(&s), free(rows);
    return 0;
}

/* ------------------------------------------------------------------- entry */

int cq_cmd_codecs(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--measure")) return codecs_measure(argc, argv);
    for (int i = 1; i < argc; i++) {
        if (cq_is_help(argv[i])) {
            measure_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "cq codecs: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    return codecs_list(json);
}
