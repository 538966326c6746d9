/* SPDX-License-Identifier: MIT */
/*
 * test_plot.c - the SVG plots (src/eval/plot_svg.c, plot_layout.c), checked by
 * parsing the files they write: no two label boxes overlap and none covers a
 * point or leaves the frame, every name is in the plot or the key, every
 * coordinate is finite, the Pareto front is exactly the expected points (both
 * directions), error bars appear where given and are clipped (open end) on a
 * log axis, the caption is there and escaped, bad input is refused.
 * CQ_PLOT_KEEP=DIR keeps the SVGs in DIR for a look.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/eval/plot_internal.h"
#include "cq_eval.h"
#include "cq_test.h"

/* ------------------------------------------------------------ SVG reading */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = '\0';
    fclose(f);
    return s;
}

/* The value of attribute name in the tag starting at tag (up to its '>'), into out. */
static int attr(const char *tag, const char *name, char *out, size_t cap) {
    const char *end = strchr(tag, '>');
    size_t nl = strlen(name);
    for (const char *p = tag + 1; end && p < end; p++) { /* tag[0] is the "<" */
        if (p[-1] == ' ' && !strncmp(p, name, nl) && p[nl] == '=' && p[nl + 1] == '"') {
            const char *v = p + nl + 2, *q = strchr(v, '"');
            if (!q || (size_t)(q - v) >= cap) return 0;
            memcpy(out, v, (size_t)(q - v));
            out[q - v] = '\0';
            return 1;
        }
    }
    return 0;
}

static double attr_num(const char *tag, const char *name) {
    char v[64];
    return attr(tag, name, v, sizeof v) ? strtod(v, NULL) : NAN;
}

static int has_class(const char *tag, const char *cls) {
    char v[128];
    if (!attr(tag, "class", v, sizeof v)) return 0;
    for (char *t = strtok(v, " "); t; t = strtok(NULL, " "))
        if (!strcmp(t, cls)) return 1;
    return 0;
}

/* The text content of the element starting at tag: tags stripped, entities decoded, spaces
 * dropped (wrapping may drop the space at a break), a '\n' before each tspan after the first. */
static void text_of(const char *tag, char *out, size_t cap) {
    const char *p = strchr(tag, '>'), *end = strstr(tag, "</text>");
    size_t n = 0;
    for (p = p ? p + 1 : tag; end && p < end && n + 1 < cap; p++) {
        if (*p == '<') {
            if (n && !strncmp(p, "<tspan", 6)) out[n++] = '\n';
            p = strchr(p, '>');
            if (!p) break;
        } else if (*p == '&') {
            static const char *const ent[] = {"&lt;", "&gt;", "&amp;", "&quot;"}, rep[] = "<>&\"";
            for (int k = 0; k < 4; k++)
                if (!strncmp(p, ent[k], strlen(ent[k]))) {
                    out[n++] = rep[k];
                    p += strlen(ent[k]) - 1;
                    break;
                }
        } else if (*p != ' ') {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

/* s without spaces and line breaks */
static void squeeze(const char *s, char *out, size_t cap) {
    size_t n = 0;
    for (; *s && n + 1 < cap; s++)
        if (*s != ' ' && *s != '\n') out[n++] = *s;
    out[n] = '\0';
}

/* Every coordinate-like attribute parses as finite numbers and says neither nan nor inf. */
static int all_finite(const char *svg, char *bad, size_t cap) {
    static const char *const names[] = {"x", "y",     "x1",     "y1",     "x2",        "y2",      "cx", "cy",
                                        "r", "width", "height", "points", "data-bbox", "viewBox", "dy"};
    for (const char *t = strchr(svg, '<'); t; t = strchr(t + 1, '<')) {
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            char v[8192];
            if (!attr(t, names[k], v, sizeof v)) continue;
            if (!strcmp(v, "100%")) continue;
            for (char *c = v; *c; c++)
                if (*c == ',') *c = ' ';
            char *p = v, *e;
            int any = 0;
            for (;;) {
                double d = strtod(p, &e);
                if (e == p) break;
                any = 1;
                if (!isfinite(d)) {
                    snprintf(bad, cap, "%s=\"%.200s\"", names[k], v);
                    return 0;
                }
                p = e;
            }
            while (*p == ' ') p++;
            if (!any || *p) {
                snprintf(bad, cap, "%s=\"%.60s\" does not parse", names[k], v);
                return 0;
            }
        }
    }
    return 1;
}

typedef struct parsed {
    double fx, fy, fw, fh; /* the frame */
    size_t n_lab;
    struct {
        int index, num;
        double x, y, w, h;
        char text[512];
    } lab[256];
    size_t n_key;
    struct {
        int index;
        char text[512];
    } key[256];
    size_t n_pt;
    struct {
        double cx, cy, r;
    } pt[256];
    size_t n_front;
    int front[256];
    char caption[2048];
} parsed;

static void parse(const char *svg, parsed *P) {
    memset(P, 0, sizeof *P);
    P->fx = P->fy = P->fw = P->fh = NAN;
    for (const char *t = strchr(svg, '<'); t; t = strchr(t + 1, '<')) {
        if (!strncmp(t, "<rect", 5) && has_class(t, "frame")) {
            P->fx = attr_num(t, "x"), P->fy = attr_num(t, "y");
            P->fw = attr_num(t, "width"), P->fh = attr_num(t, "height");
        } else if (!strncmp(t, "<text", 5) && has_class(t, "label") && P->n_lab < 256) {
            char v[128];
            double b[4] = {NAN, NAN, NAN, NAN};
            if (attr(t, "data-bbox", v, sizeof v)) sscanf(v, "%lf %lf %lf %lf", &b[0], &b[1], &b[2], &b[3]);
            P->lab[P->n_lab].index = (int)attr_num(t, "data-index");
            P->lab[P->n_lab].num = has_class(t, "num");
            P->lab[P->n_lab].x = b[0], P->lab[P->n_lab].y = b[1], P->lab[P->n_lab].w = b[2],
            P->lab[P->n_lab].h = b[3];
            text_of(t, P->lab[P->n_lab].text, sizeof P->lab[P->n_lab].text);
            P->n_lab++;
        } else if (!strncmp(t, "<text", 5) && has_class(t, "key") && P->n_key < 256) {
            P->key[P->n_key].index = (int)attr_num(t, "data-index");
            text_of(t, P->key[P->n_key].text, sizeof P->key[P->n_key].text);
            P->n_key++;
        } else if (!strncmp(t, "<text", 5) && has_class(t, "caption")) {
            text_of(t, P->caption, sizeof P->caption);
        } else if (!strncmp(t, "<circle", 7) && has_class(t, "pt") && P->n_pt < 256) {
            P->pt[P->n_pt].cx = attr_num(t, "cx"), P->pt[P->n_pt].cy = attr_num(t, "cy");
            P->pt[P->n_pt].r = attr_num(t, "r");
            P->n_pt++;
        } else if (!strncmp(t, "<circle", 7) && has_class(t, "front-mark") && P->n_front < 256) {
            P->front[P->n_front++] = (int)attr_num(t, "data-index");
        }
    }
}

static int overlap(double ax, double ay, double aw, double ah, double bx, double by, double bw, double bh) {
    return ax < bx + bw && bx < ax + aw && ay < by + bh && by < ay + ah;
}

static double box_point_dist(double x, double y, double w, double h, double cx, double cy) {
    double dx = cx < x ? x - cx : cx > x + w ? cx - x - w : 0;
    double dy = cy < y ? y - cy : cy > y + h ? cy - y - h : 0;
    return sqrt(dx * dx + dy * dy);
}

/* --------------------------------------------------------------- fixtures */

static char g_dir[256];

static const char *path_for(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s.svg", g_dir, name);
    return buf;
}

/* The attention-cosine points of a quick sweep on tinyqwen-hd64-kbias (bits, cosine, name):
 * a tight cluster of CQ-4 variants near 4.3 bits, several points at the same place, long
 * MegaQuant names; then longer K/V pairs crowded in again. */
static const struct {
    double x, y;
    const char *name;
    uint32_t series;
} crowd[] = {
    {4.3871, 0.99264517, "cq4/cq4 G32", 0},
    {4.5664, 0.9939751, "cq4+/cq4 G32", 1},
    {4.2623, 0.99361468, "cq4/cq4 G64", 0},
    {4.4455, 0.9944731, "cq4+/cq4 G64", 1},
    {4.1999, 0.99271864, "cq4/cq4 G128", 0},
    {4.385, 0.99365957, "cq4+/cq4 G128", 1},
    {4.1749, 0.99269983, "cq4/cq4 G256", 0},
    {4.3609, 0.99418485, "cq4+/cq4 G256", 1},
    {8.25, 0.9994521, "cq8/cq8", 2},
    {16.0, 1.0, "fp16/fp16", 3},
    {8.25, 0.9994521, "int8-token/int8-token", 3},
    {4.25, 0.84341867, "int4-token/int4-token", 3},
    {4.1749, 0.99269983, "int4-channel/int4-channel", 3},
    {4.3624, 0.99422591, "outlier-top2/outlier-top2", 3},
    {9.9594, 0.99954149, "kivi-4/kivi-4", 3},
    {8.8612, 0.98613509, "kivi-2/kivi-2", 3},
    {8.5, 0.99970524, "q8_0/q8_0", 3},
    {4.5, 0.93822839, "q4_0/q4_0", 3},
    {5.0, 0.95712114, "q4_1/q4_1", 3},
    {5.5, 0.97994837, "q5_0/q5_0", 3},
    {6.0, 0.99620765, "q5_1/q5_1", 3},
    {4.5, 0.95352556, "iq4_nl/iq4_nl", 3},
    {4.5, 0.98903085, "q4_0_rot/q4_0_rot", 3},
    {4.25, 0.95202268, "mxfp4/mxfp4", 3},
    {4.5031, 0.98644781, "nvfp4/nvfp4", 3},
    {2.25, 0.81141213, "turbo2/turbo2", 3},
    {3.25, 0.94781053, "turbo3/turbo3", 3},
    {4.25, 0.98052794, "turbo4/turbo4", 3},
    {4.25, 0.95005732, "turbo4_old/turbo4_old", 3},
    {3.25, 0.93608261, "tbq3/tbq3", 3},
    {4.25, 0.98104529, "tbq4/tbq4", 3},
    {3.25, 0.93131697, "planar3/planar3", 3},
    {3.25, 0.93256552, "iso3/iso3", 3},
    {4.0, 0.89404367, "affine_seven_level_3bit_g32", 3},
    {3.5, 0.76557575, "affine_seven_level_3bit_g64", 3},
    {3.1312, 0.76344925, "affine_seven_level_3bit_g64_meta4", 3},
    {3.2562, 0.76540088, "affine_seven_level_3bit_g64_meta8", 3},
    {2.2562, 0.50279428, "affine_four_level_2bit_g64_meta8", 3},
    {2.2562, 0.77976889,
     "hadamard_affine_four_level_2bit_g64_meta8/hadamard_affine_four_level_2bit_g64_meta8", 3},
    {3.0, 0.82592639, "hadamard_affine_four_level_2bit_g32", 3},
    {2.0998, 0.82352113, "channelwise_four_level_2bit", 3},
    {2.1872, 0.79315487, "sink1_channelwise_four_level_2bit/sink1_channelwise_four_level_2bit", 3},
    {4.31, 0.9930, "q4_0_rot/cq4+ with a deliberately long pair name", 3},
    {4.33, 0.9925, "affine_seven_level_3bit_g64_meta8/cq4", 3},
    {4.29, 0.9935, "turbo4/cq4+ G64", 3},
};
#define N_CROWD (sizeof crowd / sizeof crowd[0])

static void test_crowded(void) {
    cq_plot_point pts[N_CROWD];
    memset(pts, 0, sizeof pts);
    for (size_t i = 0; i < N_CROWD; i++) {
        pts[i].x = crowd[i].x, pts[i].y = crowd[i].y, pts[i].label = crowd[i].name;
        pts[i].series = crowd[i].series;
    }
    const char *series[] = {"CQ-4 (G sweep)", "CQ-4+ (G sweep)", "CQ-8", "codec zoo"};
    cq_plot_opts o;
    memset(&o, 0, sizeof o);
    o.title = "attention-output cosine vs bits";
    o.xlabel = "bits per value";
    o.ylabel = "attention-output cosine";
    o.caption = "crowded fixture";
    o.front = CQ_PLOT_FRONT_HIGHER;
    o.series_names = series;
    o.n_series = 4;
    char path[512];
    cq_err e;
    cq_err_clear(&e);
    cq_status st = cq_plot_svg_write(path_for("crowded", path, sizeof path), pts, N_CROWD, &o, &e);
    CHECK(st == CQ_OK, "crowded plot: %s %s", cq_status_name(st), e.msg);
    char *svg = slurp(path);
    CHECK(svg != NULL, "crowded plot not written");
    if (!svg) return;
    static parsed P;
    parse(svg, &P);
    char bad[256] = "";
    CHECK(all_finite(svg, bad, sizeof bad), "non-finite coordinate: %s", bad);
    CHECK(isfinite(P.fx) && P.fw > 0 && P.fh > 0, "no frame");
    CHECK(P.n_pt == N_CROWD, "%zu points drawn of %zu", P.n_pt, N_CROWD);
    /* no two label boxes overlap; each lies inside the frame and off every marker */
    int overlaps = 0, outside = 0, on_marker = 0, bad_box = 0;
    for (size_t a = 0; a < P.n_lab; a++) {
        double x = P.lab[a].x, y = P.lab[a].y, w = P.lab[a].w, h = P.lab[a].h;
        if (!(w > 0 && h > 0)) bad_box++;
        for (size_t b = a + 1; b < P.n_lab; b++)
            if (overlap(x, y, w, h, P.lab[b].x, P.lab[b].y, P.lab[b].w, P.lab[b].h)) {
                overlaps++;
                fprintf(stderr, "  overlap: '%s' and '%s'\n", P.lab[a].text, P.lab[b].text);
            }
        if (x < P.fx || y < P.fy || x + w > P.fx + P.fw || y + h > P.fy + P.fh) outside++;
        for (size_t k = 0; k < P.n_pt; k++)
            if (box_point_dist(x, y, w, h, P.pt[k].cx, P.pt[k].cy) < P.pt[k].r) on_marker++;
        /* the box holds its lines: at least 0.5 em per character of the longest, one line pitch each */
        size_t longest = 0, cur = 0, lines = 1;
        for (const char *c = P.lab[a].text; *c; c++) {
            if (*c == '\n')
                lines++, cur = 0;
            else if (++cur > longest)
                longest = cur;
        }
        if (w < 0.5 * CQP_LABEL_FS * (double)longest || h < CQP_LINE_H * (double)lines) bad_box++;
    }
    CHECK(overlaps == 0, "%d pairs of label boxes overlap", overlaps);
    CHECK(outside == 0, "%d label boxes leave the frame", outside);
    CHECK(on_marker == 0, "%d (label, marker) pairs overlap", on_marker);
    CHECK(bad_box == 0, "%d label boxes are empty or narrower than their text", bad_box);
    /* every name appears in full: in a plot label or in the key */
    int missing = 0, full = 0;
    for (size_t i = 0; i < N_CROWD; i++) {
        char want[256];
        squeeze(crowd[i].name, want, sizeof want);
        int found = 0;
        char flat[512];
        for (size_t a = 0; a < P.n_lab && !found; a++) {
            squeeze(P.lab[a].text, flat, sizeof flat);
            found = !P.lab[a].num && strstr(flat, want);
        }
        full += found;
        for (size_t k = 0; k < P.n_key && !found; k++) {
            squeeze(P.key[k].text, flat, sizeof flat);
            found = strstr(flat, want) != NULL;
        }
        if (!found) {
            missing++;
            fprintf(stderr, "  missing name: %s\n", crowd[i].name);
        }
    }
    CHECK(missing == 0, "%d names neither in the plot nor in the key", missing);
    /* the layout must do real work: most names in the plot itself, not all pushed to the key */
    CHECK(full >= (int)N_CROWD / 2, "only %d of %zu names placed in the plot", full, N_CROWD);
    /* each key number in the plot has its key line, for the same point */
    int unmatched = 0;
    for (size_t a = 0; a < P.n_lab; a++) {
        if (!P.lab[a].num) continue;
        int ok = 0;
        for (size_t k = 0; k < P.n_key && !ok; k++)
            ok = P.key[k].index == P.lab[a].index &&
                 !strncmp(P.key[k].text, P.lab[a].text, strlen(P.lab[a].text));
        unmatched += !ok;
    }
    CHECK(unmatched == 0, "%d key numbers without their key line", unmatched);
    free(svg);
}

/* ------------------------------------------------------------ Pareto front */

static void front_indices(const parsed *P, uint8_t *mark, size_t n) {
    memset(mark, 0, n);
    for (size_t k = 0; k < P->n_front; k++)
        if (P->front[k] >= 0 && (size_t)P->front[k] < n) mark[P->front[k]] = 1;
}

static void test_front(void) {
    /* lower is better, log y: 0, 1, 4 and both of the twin points 6/7; 2, 3, 5 are dominated,
     * 8 (x NaN) and 9 (y <= 0 on the log axis, which would dominate all) are left out */
    const cq_plot_point lo[] = {
        {2, 0.30, "a", 0, 0, 0, 0},  {3, 0.10, "b", 0, 0, 0, 0},  {3, 0.20, "c", 0, 0, 0, 0},
        {4, 0.10, "d", 0, 0, 0, 0},  {5, 0.02, "e", 0, 0, 0, 0},  {6, 0.05, "f", 0, 0, 0, 0},
        {8, 0.001, "g", 0, 0, 0, 0}, {8, 0.001, "h", 0, 0, 0, 0}, {NAN, 0.1, "i", 0, 0, 0, 0},
        {1, -0.5, "j", 0, 0, 0, 0},
    };
    const uint8_t want_lo[] = {1, 1, 0, 0, 1, 0, 1, 1, 0, 0};
    /* higher is better, linear y */
    const cq_plot_point hi[] = {
        {2, 0.80, "p", 0, 0, 0, 0}, {3, 0.95, "q", 0, 0, 0, 0},  {3, 0.90, "r", 0, 0, 0, 0},
        {4, 0.94, "s", 0, 0, 0, 0}, {5, 0.99, "t", 0, 0, 0, 0},  {16, 1.0, "u", 0, 0, 0, 0},
        {9, 0.99, "v", 0, 0, 0, 0}, {1.5, 0.2, "w", 0, 0, 0, 0},
    };
    const uint8_t want_hi[] = {1, 1, 0, 0, 1, 1, 0, 1};
    struct {
        const cq_plot_point *p;
        size_t n;
        const uint8_t *want;
        int log_y;
        cq_plot_front dir;
        const char *name;
    } cases[] = {{lo, 10, want_lo, 1, CQ_PLOT_FRONT_LOWER, "front_lower"},
                 {hi, 8, want_hi, 0, CQ_PLOT_FRONT_HIGHER, "front_higher"}};
    for (int c = 0; c < 2; c++) {
        uint8_t on[16], got[16];
        size_t nf = cq_plot_pareto(cases[c].p, cases[c].n, cases[c].log_y, cases[c].dir, on);
        size_t want_n = 0;
        int diff = 0;
        for (size_t i = 0; i < cases[c].n; i++) want_n += cases[c].want[i], diff += on[i] != cases[c].want[i];
        CHECK(diff == 0 && nf == want_n, "%s: cq_plot_pareto differs at %d points (%zu on it)", cases[c].name,
              diff, nf);
        cq_plot_opts o;
        memset(&o, 0, sizeof o);
        o.log_y = cases[c].log_y;
        o.front = cases[c].dir;
        char path[512];
        cq_err e;
        cq_status st =
            cq_plot_svg_write(path_for(cases[c].name, path, sizeof path), cases[c].p, cases[c].n, &o, &e);
        CHECK(st == CQ_OK, "%s: %s", cases[c].name, cq_status_name(st));
        char *svg = slurp(path);
        if (!svg) {
            CHECK(0, "%s not written", cases[c].name);
            continue;
        }
        static parsed P;
        parse(svg, &P);
        front_indices(&P, got, cases[c].n);
        diff = 0;
        for (size_t i = 0; i < cases[c].n; i++) diff += got[i] != cases[c].want[i];
        CHECK(diff == 0 && P.n_front == want_n, "%s: the SVG rings %zu points, %d differ from the expected",
              cases[c].name, P.n_front, diff);
        /* the step line: every front point and one corner between each pair */
        const char *pl = strstr(svg, "<polyline class=\"front\"");
        char pts_attr[4096] = "";
        CHECK(pl && attr(pl, "points", pts_attr, sizeof pts_attr), "%s: no front polyline", cases[c].name);
        size_t pairs = 0;
        for (char *q = pts_attr; *q; q++) pairs += *q == ',';
        CHECK(pairs == 2 * want_n - 1, "%s: the front line has %zu vertices, want %zu", cases[c].name, pairs,
              2 * want_n - 1);
        char bad[256] = "";
        CHECK(all_finite(svg, bad, sizeof bad), "%s: non-finite coordinate: %s", cases[c].name, bad);
        free(svg);
    }
    uint8_t on[4] = {9, 9, 9, 9};
    CHECK(cq_plot_pareto(lo, 4, 1, CQ_PLOT_FRONT_NONE, on) == 0 && !on[0] && !on[3],
          "front NONE marks points");
}

/* ------------------------------------------------------------- error bars */

typedef struct bar {
    int found, open_lo, open_hi, caps;
    double y1, y2;
} bar;

static bar bar_of(const char *svg, int index) {
    bar b = {0};
    for (const char *t = strstr(svg, "<line"); t; t = strstr(t + 1, "<line")) {
        if ((int)attr_num(t, "data-index") != index) continue;
        if (has_class(t, "errbar")) {
            char v[32] = "";
            b.found = 1;
            b.y1 = attr_num(t, "y1"), b.y2 = attr_num(t, "y2");
            attr(t, "data-open", v, sizeof v);
            b.open_lo = strstr(v, "lo") != NULL, b.open_hi = strstr(v, "hi") != NULL;
        } else if (has_class(t, "errcap")) {
            b.caps++;
        }
    }
    return b;
}

static double point_cy(const char *svg, int index) {
    for (const char *t = strstr(svg, "<circle"); t; t = strstr(t + 1, "<circle"))
        if (has_class(t, "pt") && (int)attr_num(t, "data-index") == index) return attr_num(t, "cy");
    return NAN;
}

static void test_error_bars(void) {
    cq_plot_point p[5];
    memset(p, 0, sizeof p);
    p[0] = (cq_plot_point){3, 0.01, "lower end below zero", 0, 0.02, 0, 0}; /* lo -0.01: open */
    p[1] = (cq_plot_point){4, 0.05, "asymmetric", 0, 0, 0.04, 0.07};        /* closed, 2 caps */
    p[2] = (cq_plot_point){5, 0.002, "no bar", 0, 0, 0, 0};
    p[3] = (cq_plot_point){6, 1e-3, "lower end far below", 0, 0, 1e-9, 2e-3}; /* > a decade: open */
    p[4] = (cq_plot_point){7, 0.5, "symmetric", 0, 0.1, 0, 0};
    cq_plot_opts o;
    memset(&o, 0, sizeof o);
    o.log_y = 1;
    o.front = CQ_PLOT_FRONT_LOWER;
    o.caption = "error bars: +-1 standard error";
    char path[512];
    cq_err e;
    cq_status st = cq_plot_svg_write(path_for("errbars_log", path, sizeof path), p, 5, &o, &e);
    CHECK(st == CQ_OK, "log error bars: %s %s", cq_status_name(st), e.msg);
    char *svg = slurp(path);
    if (!svg) {
        CHECK(0, "errbars_log not written");
        return;
    }
    static parsed P;
    parse(svg, &P);
    double bottom = P.fy + P.fh, top = P.fy;
    char bad[256] = "";
    CHECK(all_finite(svg, bad, sizeof bad), "log error bars: non-finite coordinate: %s", bad);
    bar b0 = bar_of(svg, 0), b1 = bar_of(svg, 1), b2 = bar_of(svg, 2), b3 = bar_of(svg, 3),
        b4 = bar_of(svg, 4);
    CHECK(b0.found && b0.open_lo && !b0.open_hi && b0.caps == 1 && fabs(b0.y2 - bottom) < 0.06,
          "a bar below zero on a log axis ends open at the axis bottom (found %d open %d/%d caps %d y2 %g "
          "bottom %g)",
          b0.found, b0.open_lo, b0.open_hi, b0.caps, b0.y2, bottom);
    double cy1 = point_cy(svg, 1);
    CHECK(b1.found && !b1.open_lo && !b1.open_hi && b1.caps == 2 && b1.y1 < cy1 && cy1 < b1.y2 &&
              b1.y2 < bottom,
          "asymmetric bar: found %d open %d/%d caps %d y %g..%g point %g", b1.found, b1.open_lo, b1.open_hi,
          b1.caps, b1.y1, b1.y2, cy1);
    CHECK(!b2.found && b2.caps == 0, "a point without error has a bar");
    CHECK(b3.found && b3.open_lo && b3.caps == 1 && fabs(b3.y2 - bottom) < 0.06,
          "a bar far below the data is clipped open at the bottom (open %d caps %d y2 %g)", b3.open_lo,
          b3.caps, b3.y2);
    CHECK(b4.found && !b4.open_lo && !b4.open_hi && b4.caps == 2 && b4.y1 >= top && b4.y2 <= bottom,
          "symmetric bar within range is closed");
    free(svg);
    /* linear axis: the range covers every bar, so none is open */
    p[0].y = 0.01;
    o.log_y = 0;
    st = cq_plot_svg_write(path_for("errbars_lin", path, sizeof path), p, 5, &o, &e);
    CHECK(st == CQ_OK, "linear error bars: %s", cq_status_name(st));
    svg = slurp(path);
    if (!svg) return;
    int open = 0, found = 0;
    for (int i = 0; i < 5; i++) {
        bar b = bar_of(svg, i);
        found += b.found, open += b.open_lo + b.open_hi;
    }
    CHECK(found == 4 && open == 0, "linear: %d bars, %d open ends (want 4, 0)", found, open);
    CHECK(all_finite(svg, bad, sizeof bad), "linear error bars: non-finite coordinate: %s", bad);
    free(svg);
}

/* ------------------------------------------------- caption, API, bad input */

static void test_caption_and_api(void) {
    const char *cap =
        "tinyqwen-hd64-kbias (self-trained), 64 chunks x 512 tokens, 16,320 scored tokens; "
        "K & V <as the table> with a caption long enough to wrap onto a second line under the plot";
    cq_plot_point p[2] = {{4, 0.01, "q4_0/q4_0", 0, 0, 0, 0}, {8, 0.001, "cq8/cq8", 1, 0, 0, 0}};
    cq_plot_opts o;
    memset(&o, 0, sizeof o);
    o.caption = cap;
    o.log_y = 1;
    char path[512];
    cq_err e;
    CHECK(cq_plot_svg_write(path_for("caption", path, sizeof path), p, 2, &o, &e) == CQ_OK, "caption plot");
    char *svg = slurp(path);
    if (svg) {
        static parsed P;
        parse(svg, &P);
        char want[1024], got[1024];
        squeeze(cap, want, sizeof want);
        squeeze(P.caption, got, sizeof got);
        CHECK(!strcmp(got, want), "caption text: '%s'", got);
        CHECK(strstr(svg, "K &amp; V &lt;as the table&gt;") != NULL, "caption not XML-escaped");
        CHECK(strstr(svg, "<tspan") && strstr(strstr(svg, "class=\"caption\""), "</tspan><tspan"),
              "a long caption is not wrapped");
        free(svg);
    }
    /* the old entry point still draws labels */
    const char *series[] = {"one", "two"};
    CHECK(cq_plot_svg(path_for("legacy", path, sizeof path), "t", "x", "y", 0, p, 2, series, 2, &e) == CQ_OK,
          "cq_plot_svg");
    svg = slurp(path);
    CHECK(svg && strstr(svg, "q4_0/q4_0") && strstr(svg, "cq8/cq8"), "cq_plot_svg lost the labels");
    free(svg);
    /* empty and undrawable inputs still give a valid file with finite coordinates */
    cq_plot_point nanp[2] = {{NAN, 1, "n", 0, 0, 0, 0}, {1, INFINITY, "i", 0, 0, 0, 0}};
    for (int k = 0; k < 2; k++) {
        CHECK(cq_plot_svg_write(path_for("empty", path, sizeof path), nanp, k ? 2 : 0, &o, &e) == CQ_OK,
              "empty plot %d", k);
        svg = slurp(path);
        char bad[256] = "";
        CHECK(svg && all_finite(svg, bad, sizeof bad) && !strstr(svg, "class=\"pt\""), "empty plot %d: %s", k,
              bad);
        free(svg);
    }
    /* bad input: clear errors, nothing written */
    cq_plot_point q = {1, 1, "q", 0, 0, 0, 0};
    CHECK(cq_plot_svg_write(NULL, &q, 1, &o, &e) == CQ_ERR_NULL, "NULL path");
    CHECK(cq_plot_svg_write(path, NULL, 1, &o, &e) == CQ_ERR_NULL, "NULL points");
    CHECK(cq_plot_svg_write(path, &q, 1, NULL, &e) == CQ_ERR_NULL, "NULL options");
    q.y_err = -1;
    CHECK(cq_plot_svg_write(path, &q, 1, &o, &e) == CQ_ERR_ARG && strstr(e.msg, "point 0"),
          "negative y_err: %s", e.msg);
    q.y_err = NAN;
    CHECK(cq_plot_svg_write(path, &q, 1, &o, &e) == CQ_ERR_ARG, "NaN y_err");
    q.y_err = 0, q.y_lo = 2, q.y_hi = 3;
    CHECK(cq_plot_svg_write(path, &q, 1, &o, &e) == CQ_ERR_ARG, "y outside [y_lo, y_hi]");
    q.y_lo = 0, q.y_hi = INFINITY;
    CHECK(cq_plot_svg_write(path, &q, 1, &o, &e) == CQ_ERR_ARG, "infinite y_hi");
    q.y_hi = 0;
    o.front = (cq_plot_front)7;
    CHECK(cq_plot_svg_write(path, &q, 1, &o, &e) == CQ_ERR_ARG, "unknown front");
    o.front = CQ_PLOT_FRONT_NONE;
    CHECK(cq_plot_svg_write("/nonexistent-dir/x/plot.svg", &q, 1, &o, &e) == CQ_ERR_IO, "unwritable path");
}

static void test_wrap(void) {
    size_t s[8], l[8];
    const char *name = "hadamard_affine_four_level_2bit_g64_meta8";
    size_t n = cqp_wrap(name, 24, s, l, 8), total = 0;
    int too_long = 0;
    for (size_t i = 0; i < n; i++) total += l[i], too_long += l[i] > 24;
    CHECK(n == 2 && total == strlen(name) && !too_long && name[s[0] + l[0] - 1] == '_',
          "wrap at '_': %zu lines", n);
    n = cqp_wrap("abcdefghijklmnopqrstuvwxyz0123456789", 10, s, l, 8);
    CHECK(n == 4 && l[0] == 10 && l[3] == 6, "hard wrap: %zu lines", n);
    n = cqp_wrap("two words", 24, s, l, 8);
    CHECK(n == 1 && l[0] == 9, "short name wrapped");
    CHECK(cqp_wrap("", 24, s, l, 8) == 0 && cqp_wrap(NULL, 24, s, l, 8) == 0, "empty name has lines");
    CHECK(cqp_text_width("MW", 2, 10) > cqp_text_width("il", 2, 10), "text width ignores the glyphs");
}

int main(void) {
    const char *keep = getenv("CQ_PLOT_KEEP");
    if (keep && *keep)
        snprintf(g_dir, sizeof g_dir, "%s", keep);
    else {
        snprintf(g_dir, sizeof g_dir, "/tmp/cq_plot_XXXXXX");
        if (!mkdtemp(g_dir)) {
            CHECK(0, "mkdtemp failed");
            return cq_test_done("test_plot");
        }
    }
    test_wrap();
    test_crowded();
    test_front();
    test_error_bars();
    test_caption_and_api();
    if (!(keep && *keep)) {
        static const char *const names[] = {"crowded",     "front_lower", "front_higher", "errbars_log",
                                            "errbars_lin", "caption",     "legacy",       "empty"};
        char p[512];
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) remove(path_for(names[i], p, sizeof p));
        rmdir(g_dir);
    }
    return cq_test_done("test_plot");
}
