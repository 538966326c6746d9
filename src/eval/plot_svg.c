/* SPDX-License-Identifier: MIT */
/*
 * plot_svg.c - dependency-free scatter plots as SVG (cq_plot_svg_write): axes
 * with "nice" ticks (linear or log y), one colour per series and a legend,
 * vertical error bars clipped to the axis, the Pareto front as a dashed step
 * line, every point's full name placed by plot_layout.c (or numbered, with a
 * key beside the plot), and a caption under the plot. Geometry (text extents,
 * placement, the front) lives in plot_layout.c; this file writes the SVG.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"
#include "cq_vectors.h"
#include "plot_internal.h"

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define N_PALETTE (sizeof palette / sizeof palette[0])

/* page layout, px */
#define PAGE_W 960.0
#define M_LEFT 84.0
#define M_RIGHT 280.0
#define M_TOP 48.0
#define PLOT_H 460.0
#define PLOT_W (PAGE_W - M_LEFT - M_RIGHT)
#define CAPTION_FS 12.0
#define CAPTION_LH 16.0
#define PANEL_X (M_LEFT + PLOT_W + 18) /* legend and key */
#define PANEL_W (PAGE_W - PANEL_X - 8)

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (!b || b->oom) return; /* NULL: a measuring pass that writes nothing */
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = (b->cap + (size_t)k + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

/* XML-escape s[0..len) (len SIZE_MAX: to the terminator) into the buffer */
static void sb_text_n(sbuf *b, const char *s, size_t len) {
    for (size_t i = 0; s && i < len && s[i]; i++) {
        switch (s[i]) {
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '&': sb_printf(b, "&amp;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default: sb_printf(b, "%c", s[i]);
        }
    }
}
static void sb_text(sbuf *b, const char *s) { sb_text_n(b, s, SIZE_MAX); }

/* ------------------------------------------------------------------ axes */

typedef struct axes {
    double x0, x1, y0, y1; /* data range (y in log10 units on a log axis) */
    int log_y;
} axes;

static double sx(const axes *a, double x) { return M_LEFT + (x - a->x0) / (a->x1 - a->x0) * PLOT_W; }
static double sy(const axes *a, double y) { return M_TOP + PLOT_H - (y - a->y0) / (a->y1 - a->y0) * PLOT_H; }

static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    return nf * mag;
}

/* Log-axis ticks (log10 units) in [y0, y1]: every step-th decade on a wide axis; on a narrower
 * one 1, 2 and 5 (or every digit) times a power of ten, whichever gives at least 3 ticks; on
 * an axis too narrow for that, "nice" linear values. */
static size_t log_ticks(double y0, double y1, double *t, size_t cap) {
    static const double mant[] = {1, 2, 5, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const size_t off[] = {0, 0, 3}, cnt[] = {1, 3, 9};
    double span = y1 - y0;
    size_t n = 0;
    if (span > 6) {
        double step = ceil(span / 6);
        for (double k = ceil(y0 / step) * step; k <= y1 && n < cap; k += step) t[n++] = k;
        return n;
    }
    for (int set = span > 2.2 ? 0 : 1; set < 3; set++) {
        n = 0;
        for (double k = floor(y0); k <= ceil(y1) && n < cap; k++)
            for (size_t j = 0; j < cnt[set] && n < cap; j++) {
                double v = k + log10(mant[off[set] + j]);
                if (v >= y0 - 1e-9 && v <= y1 + 1e-9) t[n++] = v;
            }
        if (n >= 3) return n;
    }
    double v0 = pow(10, y0), v1 = pow(10, y1), s = nice_step(v1 - v0, 5);
    n = 0;
    for (double v = ceil(v0 / s) * s; v <= v1 && n < cap; v += s) t[n++] = log10(v);
    return n;
}

/* a log tick's label: 0.001 .. 1000 and non-round values as decimals, else m x 10^k with a
 * raised exponent */
static void log_tick_label(sbuf *b, double v) {
    double k = floor(v + 1e-9), m = pow(10, v - k);
    if ((k >= -3 && k <= 3) || fabs(m - round(m)) > 1e-6) {
        sb_printf(b, "%.3g", pow(10, v));
        return;
    }
    m = round(m);
    if (m != 1) sb_printf(b, "%g&#215;", m);
    sb_printf(b, "10<tspan dy=\"-5\" font-size=\"9\">%g</tspan>", k);
}

/* ---------------------------------------------------------- error bars */

typedef struct ebar {
    int has;
    double lo, hi;        /* axis units (log10 on a log axis), clipped to [y0, y1] */
    int open_lo, open_hi; /* clipped: no cap at that end */
} ebar;

/* The bar of p in data units; 0 if none. */
static int bar_ends(const cq_plot_point *p, double *lo, double *hi) {
    if (p->y_lo < p->y_hi) {
        *lo = p->y_lo, *hi = p->y_hi;
        return 1;
    }
    if (p->y_err > 0) {
        *lo = p->y - p->y_err, *hi = p->y + p->y_err;
        return 1;
    }
    return 0;
}

static cq_status check_points(const cq_plot_point *pts, size_t n, cq_err *err) {
    for (size_t i = 0; i < n; i++) {
        const cq_plot_point *p = &pts[i];
        if (!isfinite(p->y_err) || p->y_err < 0)
            return cq_err_set(err, CQ_ERR_ARG, -1, -1, "plot point %zu: y_err %g is not a finite value >= 0",
                              i, p->y_err);
        if (!isfinite(p->y_lo) || !isfinite(p->y_hi))
            return cq_err_set(err, CQ_ERR_ARG, -1, -1, "plot point %zu: y_lo/y_hi not finite", i);
        if (p->y_lo < p->y_hi && isfinite(p->y) && (p->y < p->y_lo || p->y > p->y_hi))
            return cq_err_set(err, CQ_ERR_ARG, -1, -1, "plot point %zu: y %g outside its bar [%g, %g]", i,
                              p->y, p->y_lo, p->y_hi);
    }
    return CQ_OK;
}

static int drawable(const cq_plot_point *p, int log_y) {
    return isfinite(p->x) && isfinite(p->y) && (!log_y || p->y > 0);
}

/* The axis range: the drawn points and their bars (on a log axis a bar's lower end counts only
 * within a decade below the lowest point; farther down it is clipped), padded. */
static void fit_axes(const cq_plot_point *pts, size_t n, int log_y, axes *a) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (!drawable(&pts[i], log_y)) continue;
        double y = log_y ? log10(pts[i].y) : pts[i].y;
        x0 = fmin(x0, pts[i].x), x1 = fmax(x1, pts[i].x);
        y0 = fmin(y0, y), y1 = fmax(y1, y);
    }
    if (!isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    double ylow = y0;
    for (size_t i = 0; i < n; i++) {
        double lo, hi;
        if (!drawable(&pts[i], log_y) || !bar_ends(&pts[i], &lo, &hi)) continue;
        if (log_y) {
            y1 = fmax(y1, log10(hi));
            if (lo > 0 && log10(lo) >= ylow - 1) y0 = fmin(y0, log10(lo));
        } else {
            y0 = fmin(y0, lo), y1 = fmax(y1, hi);
        }
    }
    if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
    if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
    double px = (x1 - x0) * 0.06, py = (y1 - y0) * 0.08;
    a->x0 = x0 - px, a->x1 = x1 + px, a->y0 = y0 - py, a->y1 = y1 + py;
    a->log_y = log_y;
}

static ebar clip_bar(const cq_plot_point *p, const axes *a) {
    ebar e = {0};
    double lo, hi;
    if (!drawable(p, a->log_y) || !bar_ends(p, &lo, &hi)) return e;
    e.has = 1;
    e.lo = a->log_y ? (lo > 0 ? log10(lo) : -INFINITY) : lo;
    e.hi = a->log_y ? log10(hi) : hi;
    if (!(e.lo >= a->y0)) e.lo = a->y0, e.open_lo = 1; /* also catches -inf */
    if (!(e.hi <= a->y1)) e.hi = a->y1, e.open_hi = 1;
    return e;
}

/* ---------------------------------------------------------------- drawing */

static void draw_axes(sbuf *b, const axes *a, const cq_plot_opts *o) {
    sb_printf(b,
              "<rect class=\"frame\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
              "stroke=\"black\"/>\n",
              M_LEFT, M_TOP, PLOT_W, PLOT_H);
    double st = nice_step(a->x1 - a->x0, 8);
    for (double t = ceil(a->x0 / st) * st; t <= a->x1; t += st)
        sb_printf(b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                  sx(a, t), M_TOP, sx(a, t), M_TOP + PLOT_H, sx(a, t), M_TOP + PLOT_H + 18,
                  fabs(t) < st * 1e-9 ? 0.0 : t);
    double ticks[64];
    size_t nt = 0;
    if (a->log_y)
        nt = log_ticks(a->y0, a->y1, ticks, 64);
    else {
        double s = nice_step(a->y1 - a->y0, 6);
        for (double t = ceil(a->y0 / s) * s; t <= a->y1 && nt < 64; t += s)
            ticks[nt++] = fabs(t) < s * 1e-9 ? 0 : t;
    }
    for (size_t i = 0; i < nt; i++) {
        double y = sy(a, ticks[i]);
        sb_printf(b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">",
                  M_LEFT, y, M_LEFT + PLOT_W, y, M_LEFT - 6, y + 4);
        if (a->log_y)
            log_tick_label(b, ticks[i]);
        else
            sb_printf(b, "%g", ticks[i]);
        sb_printf(b, "</text>\n");
    }
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">", M_LEFT + PLOT_W / 2,
              M_TOP + PLOT_H + 42);
    sb_text(b, o->xlabel);
    sb_printf(b,
              "</text>\n<text transform=\"translate(20,%.1f) rotate(-90)\" text-anchor=\"middle\" "
              "font-size=\"13\">",
              M_TOP + PLOT_H / 2);
    sb_text(b, o->ylabel);
    if (a->log_y) sb_printf(b, o->ylabel && o->ylabel[0] ? " (log scale)" : "log scale");
    sb_printf(b, "</text>\n");
}

/* the dashed step line of the front through its points in order of x: along x at the
 * better point's y, then to the next point (the best y reachable with at most that many bits) */
static size_t front_points(const cq_plot_point *pts, const uint8_t *on, size_t n, size_t *idx) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (on[i]) {
            size_t j = m++;
            while (j > 0 &&
                   (pts[idx[j - 1]].x > pts[i].x || (pts[idx[j - 1]].x == pts[i].x && idx[j - 1] > i))) {
                idx[j] = idx[j - 1];
                j--;
            }
            idx[j] = i;
        }
    return m;
}

static double ypix(const axes *a, double y) { return sy(a, a->log_y ? log10(y) : y); }

/* Wrap text for a width in px at font size fs: the characters per line. */
static size_t chars_for(double width, double fs) {
    double c = width / (0.62 * fs);
    return c < 8 ? 8 : (size_t)c;
}

/* The legend and, under it, the key ("number name" for the points named outside the plot),
 * right of the plot. b NULL: only measure. Returns the bottom of the last line. */
static double draw_panel(sbuf *b, const cq_plot_opts *o, const cq_plot_point *pts, const char *const *names,
                         const cqp_label *lab, size_t n, size_t n_front) {
    size_t ws[64], wl[64], kmax = chars_for(PANEL_W - 22, CQP_LABEL_FS), n_key = 0;
    for (size_t i = 0; i < n; i++) n_key += lab[i].kind == CQP_NUMBER || lab[i].kind == CQP_KEY;
    double ly = M_TOP + 14;
    for (uint32_t s = 0; o->series_names && s < o->n_series; s++, ly += 20) {
        sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\">",
                  PANEL_X + 6, ly, palette[s % N_PALETTE], PANEL_X + 18, ly + 4);
        sb_text(b, o->series_names[s]);
        sb_printf(b, "</text>\n");
    }
    if (n_front) {
        sb_printf(
            b,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\" stroke-width=\"1.4\" "
            "stroke-dasharray=\"6 3\"/><circle cx=\"%.1f\" cy=\"%.1f\" r=\"7.5\" fill=\"none\" "
            "stroke=\"#333\" stroke-width=\"1.2\"/><text x=\"%.1f\" y=\"%.1f\">Pareto front (%s)</text>\n",
            PANEL_X - 4, ly, PANEL_X + 16, ly, PANEL_X + 6, ly, PANEL_X + 26, ly + 4,
            o->front == CQ_PLOT_FRONT_LOWER ? "fewer bits, lower y" : "fewer bits, higher y");
        ly += 20;
    }
    if (n_key) {
        ly += 10;
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">Key</text>\n", PANEL_X, ly);
        ly += 4;
        for (size_t i = 0; i < n; i++) {
            const cqp_label *L = &lab[i];
            if (L->kind != CQP_NUMBER && L->kind != CQP_KEY) continue;
            size_t nl = cqp_wrap(names[i], kmax, ws, wl, 64);
            sb_printf(b, "<text class=\"key\" data-index=\"%zu\" font-size=\"%g\">", i, CQP_LABEL_FS);
            ly += CQP_LINE_H;
            sb_printf(b, "<tspan x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">%u</tspan>", PANEL_X, ly, L->key);
            for (size_t j = 0; j < nl && j < 64; j++) {
                sb_printf(b, "<tspan x=\"%.1f\" y=\"%.1f\">", PANEL_X + 22, ly);
                sb_text_n(b, names[i] + ws[j], wl[j]);
                sb_printf(b, "</tspan>");
                if (j + 1 < nl) ly += CQP_LINE_H;
            }
            if (L->kind == CQP_KEY) {
                ly += CQP_LINE_H;
                sb_printf(b,
                          "<tspan x=\"%.1f\" y=\"%.1f\" fill=\"#666\">(not marked: x %.4g, y %.4g)</tspan>",
                          PANEL_X + 22, ly, pts[i].x, pts[i].y);
            }
            sb_printf(b, "</text>\n");
            ly += 4;
        }
    }
    return ly + 4;
}

cq_status cq_plot_svg_write(const char *path, const cq_plot_point *pts, size_t n, const cq_plot_opts *o,
                            cq_err *err) {
    if (!path || !o || (n && !pts)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (o->front != CQ_PLOT_FRONT_NONE && o->front != CQ_PLOT_FRONT_LOWER && o->front != CQ_PLOT_FRONT_HIGHER)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "unknown Pareto front direction %d", (int)o->front);
    cq_status st = check_points(pts, n, err);
    if (st) return st;
    axes a;
    fit_axes(pts, n, o->log_y, &a);

    size_t nn = n ? n : 1;
    double *px = malloc(nn * sizeof *px), *py = malloc(nn * sizeof *py);
    uint8_t *drawn = calloc(nn, 1), *on = calloc(nn, 1);
    const char **names = calloc(nn, sizeof *names);
    char **merged = calloc(nn, sizeof *merged);
    double *rad = malloc(nn * sizeof *rad);
    cqp_label *lab = calloc(nn, sizeof *lab);
    size_t *fidx = malloc(nn * sizeof *fidx);
    cqp_seg *soft = malloc((3 * nn + 1) * sizeof *soft);
    sbuf b = {0};
    ebar *bars = calloc(nn, sizeof *bars);
    st = CQ_OK;
    if (!px || !py || !drawn || !on || !names || !merged || !rad || !lab || !fidx || !soft || !bars)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        drawn[i] = (uint8_t)drawable(&pts[i], o->log_y);
        px[i] = drawn[i] ? sx(&a, pts[i].x) : 0;
        py[i] = drawn[i] ? ypix(&a, pts[i].y) : 0;
        names[i] = pts[i].label && pts[i].label[0] ? pts[i].label : NULL;
    }
    /* points drawn at the same place share one label, "first, second, ..." */
    for (size_t i = 0; i < n; i++) {
        if (!drawn[i] || !names[i]) continue;
        for (size_t j = 0; j < i; j++) {
            if (!drawn[j] || !names[j] || fabs(px[i] - px[j]) > 0.5 || fabs(py[i] - py[j]) > 0.5) continue;
            size_t lj = strlen(names[j]), li = strlen(names[i]);
            char *m = malloc(lj + li + 3);
            if (!m) goto nomem;
            memcpy(m, names[j], lj);
            memcpy(m + lj, ", ", 2);
            memcpy(m + lj + 2, names[i], li + 1);
            free(merged[j]);
            names[j] = merged[j] = m;
            names[i] = NULL;
            break;
        }
    }
    size_t n_front = cq_plot_pareto(pts, n, o->log_y, o->front, on);
    for (size_t i = 0; i < n; i++) rad[i] = on[i] ? 8.0 : CQP_MARKER_R; /* a front point's ring */
    size_t nf = front_points(pts, on, n, fidx), n_soft = 0;
    for (size_t k = 0; k + 1 < nf; k++) {
        size_t i = fidx[k], j = fidx[k + 1];
        soft[n_soft++] = (cqp_seg){px[i], py[i], px[j], py[i]};
        soft[n_soft++] = (cqp_seg){px[j], py[i], px[j], py[j]};
    }
    for (size_t i = 0; i < n; i++) {
        bars[i] = clip_bar(&pts[i], &a);
        if (bars[i].has) soft[n_soft++] = (cqp_seg){px[i], sy(&a, bars[i].hi), px[i], sy(&a, bars[i].lo)};
    }
    cqp_layout_in li = {.n = n, .px = px, .py = py, .drawn = drawn, .r = rad, .names = names,
                        .frame = {M_LEFT, M_TOP, PLOT_W, PLOT_H}, .soft = soft, .n_soft = n_soft,
                        .wrap = o->label_wrap ? o->label_wrap : 24};
    if (cqp_place_labels(&li, lab)) goto nomem;

    /* the caption under the plot, the panel beside it: the page grows to hold both */
    size_t ws[64], wl[64], cap_max = chars_for(PLOT_W, CAPTION_FS);
    size_t cap_lines = o->caption ? cqp_wrap(o->caption, cap_max, ws, wl, 0) : 0;
    double H = fmax(M_TOP + PLOT_H + 58 + CAPTION_LH * (double)cap_lines,
                    draw_panel(NULL, o, pts, names, lab, n, n_front)) +
               14;
    int panel = (o->series_names && o->n_series) || n_front;
    for (size_t i = 0; i < n; i++) panel |= lab[i].kind == CQP_NUMBER || lab[i].kind == CQP_KEY;
    double W = panel ? PAGE_W : M_LEFT + PLOT_W + 24; /* no legend, no key: no panel */

    sb_printf(&b,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
              "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Verdana, "
              "sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
              W, H, W, H);
    sb_printf(&b, "<text x=\"%.1f\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">", M_LEFT + PLOT_W / 2);
    sb_text(&b, o->title);
    sb_printf(&b, "</text>\n");
    draw_axes(&b, &a, o);
    if (nf > 1) {
        sb_printf(&b, "<polyline class=\"front\" fill=\"none\" stroke=\"#333\" stroke-width=\"1.4\" "
                      "stroke-dasharray=\"6 3\" points=\"");
        for (size_t k = 0; k < nf; k++) {
            size_t i = fidx[k];
            if (k) sb_printf(&b, " %.1f,%.1f", px[i], py[fidx[k - 1]]);
            sb_printf(&b, "%s%.1f,%.1f", k ? " " : "", px[i], py[i]);
        }
        sb_printf(&b, "\"/>\n");
    }
    for (size_t i = 0; i < n; i++) {
        if (!bars[i].has) continue;
        const char *col = palette[pts[i].series % N_PALETTE];
        double x = px[i], yt = sy(&a, bars[i].hi), yb = sy(&a, bars[i].lo);
        sb_printf(
            &b,
            "<line class=\"errbar\" data-index=\"%zu\"%s x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
            "stroke=\"%s\" stroke-width=\"1.2\"/>",
            i,
            bars[i].open_lo && bars[i].open_hi ? " data-open=\"lo hi\""
            : bars[i].open_lo                  ? " data-open=\"lo\""
            : bars[i].open_hi                  ? " data-open=\"hi\""
                                               : "",
            x, yt, x, yb, col);
        if (!bars[i].open_hi)
            sb_printf(&b,
                      "<line class=\"errcap\" data-index=\"%zu\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                      "y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.2\"/>",
                      i, x - 3.5, yt, x + 3.5, yt, col);
        if (!bars[i].open_lo)
            sb_printf(&b,
                      "<line class=\"errcap\" data-index=\"%zu\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                      "y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.2\"/>",
                      i, x - 3.5, yb, x + 3.5, yb, col);
        sb_printf(&b, "\n");
    }
    for (size_t i = 0; i < n; i++)
        if (drawn[i])
            sb_printf(
                &b,
                "<circle class=\"pt\" data-index=\"%zu\" cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\"/>\n",
                i, px[i], py[i], CQP_MARKER_R, palette[pts[i].series % N_PALETTE]);
    for (size_t k = 0; k < nf; k++)
        sb_printf(&b,
                  "<circle class=\"front-mark\" data-index=\"%zu\" cx=\"%.1f\" cy=\"%.1f\" r=\"7.5\" "
                  "fill=\"none\" stroke=\"#333\" stroke-width=\"1.2\"/>\n",
                  fidx[k], px[fidx[k]], py[fidx[k]]);
    for (size_t i = 0; i < n; i++) {
        const cqp_label *L = &lab[i];
        if (L->kind != CQP_FULL && L->kind != CQP_NUMBER) continue;
        if (L->leader)
            sb_printf(
                &b,
                "<line class=\"leader\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" "
                "stroke-width=\"0.8\"/>\n",
                L->lx1, L->ly1, L->lx2, L->ly2);
        if (o->debug_boxes)
            sb_printf(&b,
                      "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                      "stroke=\"#f0a\" stroke-width=\"0.5\"/>\n",
                      L->box.x, L->box.y, L->box.w, L->box.h);
        sb_printf(
            &b,
            "<text class=\"label%s\" data-index=\"%zu\" data-bbox=\"%.1f %.1f %.1f %.1f\" "
            "font-size=\"%g\" fill=\"#222\" stroke=\"white\" stroke-width=\"3\" stroke-linejoin=\"round\" "
            "paint-order=\"stroke\">",
            L->kind == CQP_NUMBER ? " num" : "", i, L->box.x, L->box.y, L->box.w, L->box.h, CQP_LABEL_FS);
        double base = L->box.y + 1 + 0.76 * CQP_LABEL_FS;
        if (L->kind == CQP_NUMBER)
            sb_printf(&b, "<tspan x=\"%.1f\" y=\"%.1f\">%u</tspan>", L->box.x, base, L->key);
        for (size_t j = 0; L->kind == CQP_FULL && j < L->n_lines; j++) {
            sb_printf(&b, "<tspan x=\"%.1f\" y=\"%.1f\">", L->box.x, base + CQP_LINE_H * (double)j);
            sb_text_n(&b, names[i] + L->start[j], L->len[j]);
            sb_printf(&b, "</tspan>");
        }
        sb_printf(&b, "</text>\n");
    }
    draw_panel(&b, o, pts, names, lab, n, n_front);
    if (o->caption) {
        size_t cs[64], cl[64], nl = cqp_wrap(o->caption, cap_max, cs, cl, 64);
        sb_printf(&b, "<text class=\"caption\" font-size=\"%g\" fill=\"#222\">", CAPTION_FS);
        for (size_t j = 0; j < nl && j < 64; j++) {
            sb_printf(&b, "<tspan x=\"%.1f\" y=\"%.1f\">", M_LEFT,
                      M_TOP + PLOT_H + 68 + CAPTION_LH * (double)j);
            sb_text_n(&b, o->caption + cs[j], cl[j]);
            sb_printf(&b, "</tspan>");
        }
        sb_printf(&b, "</text>\n");
    }
    sb_printf(&b, "</svg>\n");
    if (b.oom) goto nomem;
    st = cq_write_file_atomic(path, b.p, b.n, err);
    goto done;
nomem:
    st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
done:
    free(px), free(py), free(drawn), free(on), free(names), free(rad), free(lab), free(fidx), free(soft),
        free(bars);
    for (size_t i = 0; merged && i < n; i++) free(merged[i]);
    free(merged), free(b.p);
    return st;
}

cq_status cq_plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel, int log_y,
                      const cq_plot_point *pts, size_t n, const char *const *series_names, uint32_t n_series,
                      cq_err *err) {
    cq_plot_opts o;
    memset(&o, 0, sizeof o);
    o.title = title, o.xlabel = xlabel, o.ylabel = ylabel, o.log_y = log_y;
    o.series_names = series_names, o.n_series = n_series;
    return cq_plot_svg_write(path, pts, n, &o, err);
}
