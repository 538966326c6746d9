/*
 * plot_svg.c - a dependency-free scatter plot as SVG: axes with "nice" ticks,
 * optional log-scale y, one colour per series, a label per point, a legend.
 * Used by the sweeps (bits per value against KLD / attention cosine).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"
#include "cq_vectors.h"

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
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

/* XML-escape a label into the buffer */
static void sb_text(sbuf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '&': sb_printf(b, "&amp;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default: sb_printf(b, "%c", *s);
        }
    }
}

static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    return nf * mag;
}

cq_status cq_plot_svg(const char *path, const char *title, const char *xlabel, const char *ylabel,
                      int log_y, const cq_plot_point *pts, size_t n, const char *const *series_names,
                      uint32_t n_series, cq_err *err) {
    if (!path || (n && !pts)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        double y = log_y ? (pts[i].y > 0 ? log10(pts[i].y) : NAN) : pts[i].y;
        if (!isfinite(pts[i].x) || !isfinite(y)) continue;
        used++;
        x0 = fmin(x0, pts[i].x), x1 = fmax(x1, pts[i].x);
        y0 = fmin(y0, y), y1 = fmax(y1, y);
    }
    if (!used) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
    if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
    double px = (x1 - x0) * 0.06, py = (y1 - y0) * 0.08;
    x0 -= px, x1 += px, y0 -= py, y1 += py;
    const double W = 900, Hh = 600, ml = 90, mr = 220, mt = 50, mb = 70;
    const double pw = W - ml - mr, ph = Hh - mt - mb;
#define SX(x) (ml + ((x) - x0) / (x1 - x0) * pw)
#define SY(y) (mt + ph - ((y) - y0) / (y1 - y0) * ph)
    sbuf b = {0};
    sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
                  "width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, Hh);
    sb_printf(&b, "<text x=\"%.1f\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">", ml + pw / 2);
    sb_text(&b, title);
    sb_printf(&b, "</text>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                  "stroke=\"black\"/>\n", ml, mt, pw, ph);
    double sx = nice_step(x1 - x0, 8);
    for (double t = ceil(x0 / sx) * sx; t <= x1; t += sx) {
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                  SX(t), mt, SX(t), mt + ph, SX(t), mt + ph + 18, fabs(t) < sx * 1e-9 ? 0.0 : t);
    }
    double sy = log_y ? fmax(1.0, floor(nice_step(y1 - y0, 6))) : nice_step(y1 - y0, 6);
    for (double t = ceil(y0 / sy) * sy; t <= y1; t += sy) {
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", ml, SY(t),
                  ml + pw, SY(t));
        if (log_y) sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">1e%g</text>\n", ml - 6, SY(t) + 4, t);
        else sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", ml - 6, SY(t) + 4,
                       fabs(t) < sy * 1e-9 ? 0.0 : t);
    }
    sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", ml + pw / 2, Hh - 20);
    sb_text(&b, xlabel);
    sb_printf(&b, "</text>\n<text transform=\"translate(22,%.1f) rotate(-90)\" text-anchor=\"middle\">",
              mt + ph / 2);
    sb_text(&b, ylabel);
    if (log_y) sb_printf(&b, " (log scale)");
    sb_printf(&b, "</text>\n");
    for (size_t i = 0; i < n; i++) {
        double y = log_y ? (pts[i].y > 0 ? log10(pts[i].y) : NAN) : pts[i].y;
        if (!isfinite(pts[i].x) || !isfinite(y)) continue;
        const char *col = palette[pts[i].series % (sizeof palette / sizeof palette[0])];
        sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" fill=\"%s\"/>", SX(pts[i].x), SY(y), col);
        if (pts[i].label) {
            sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\">", SX(pts[i].x) + 6, SY(y) - 5);
            sb_text(&b, pts[i].label);
            sb_printf(&b, "</text>");
        }
        sb_printf(&b, "\n");
    }
    for (uint32_t s = 0; s < n_series && series_names; s++) {
        const char *col = palette[s % (sizeof palette / sizeof palette[0])];
        sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\">",
                  ml + pw + 20, mt + 14 + 20.0 * s, col, ml + pw + 32, mt + 18 + 20.0 * s);
        sb_text(&b, series_names[s]);
        sb_printf(&b, "</text>\n");
    }
    sb_printf(&b, "</svg>\n");
#undef SX
#undef SY
    if (b.oom) {
        free(b.p);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    cq_status st = cq_write_file_atomic(path, b.p, b.n, err);
    free(b.p);
    return st;
}
