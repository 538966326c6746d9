/* SPDX-License-Identifier: MIT */
/*
 * plot_layout.c - the geometry behind the SVG plots: estimated text extents,
 * wrapping of long point names, greedy label placement without overlaps
 * (most crowded points first: candidate boxes around each point, then farther
 * out with a leader line, then a key number), and the Pareto front. No SVG text is written here
 * (plot_svg.c does that).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot_internal.h"

/* ------------------------------------------------------------ text extents */

/* Advance widths in em, by class, rounded up from DejaVu Sans (the widest common sans-serif),
 * so that the estimate covers the fonts a viewer is likely to substitute. */
static double char_em(unsigned char ch) {
    if (ch == 'm' || ch == 'w' || ch == 'M' || ch == 'W' || ch == '@' || ch == '%') return 1.0;
    if (ch == '+' || ch == '=' || ch == '<' || ch == '>' || ch == '~' || ch == '#') return 0.86;
    if (ch >= 'A' && ch <= 'Z') return ch == 'I' || ch == 'J' ? 0.42 : 0.80;
    if (strchr("ijl.,:;'|! ()[]", ch)) return 0.36;
    if (strchr("ftr/-\\", ch)) return 0.46;
    if (ch >= 0x80) return 0.5; /* a UTF-8 byte: multi-byte characters count once per byte */
    return 0.66;
}

double cqp_text_width(const char *s, size_t len, double fs) {
    double em = 0;
    for (size_t i = 0; i < len && s[i]; i++) em += char_em((unsigned char)s[i]);
    return em * fs;
}

size_t cqp_wrap(const char *s, size_t maxc, size_t *start, size_t *len, size_t max_lines) {
    size_t n = s ? strlen(s) : 0, pos = 0, lines = 0;
    if (maxc < 4) maxc = 4;
    while (pos < n) {
        while (pos < n && s[pos] == ' ') pos++;
        if (pos >= n) break;
        size_t take = n - pos;
        if (take > maxc) {
            take = 0;
            for (size_t k = maxc; k > maxc / 3; k--) {
                if (s[pos + k] == ' ' || strchr("/_-+,", s[pos + k - 1])) {
                    take = k;
                    break;
                }
            }
            if (!take) take = maxc;
        }
        size_t l = take;
        while (l && s[pos + l - 1] == ' ') l--;
        if (lines < max_lines) start[lines] = pos, len[lines] = l;
        lines++;
        pos += take;
    }
    return lines;
}

/* ---------------------------------------------------------------- geometry */

static int boxes_overlap(cqp_box a, cqp_box b, double padx, double pady) {
    return a.x < b.x + b.w + padx && b.x < a.x + a.w + padx && a.y < b.y + b.h + pady &&
           b.y < a.y + a.h + pady;
}

static int box_inside(cqp_box a, cqp_box f, double inset) {
    return a.x >= f.x + inset && a.y >= f.y + inset && a.x + a.w <= f.x + f.w - inset &&
           a.y + a.h <= f.y + f.h - inset;
}

/* distance from (cx, cy) to the nearest point of the box */
static double box_dist(cqp_box b, double cx, double cy) {
    double dx = cx < b.x ? b.x - cx : cx > b.x + b.w ? cx - b.x - b.w : 0;
    double dy = cy < b.y ? b.y - cy : cy > b.y + b.h ? cy - b.y - b.h : 0;
    return sqrt(dx * dx + dy * dy);
}

/* Liang-Barsky: does the segment meet the box (grown by pad)? */
static int seg_hits_box(cqp_seg s, cqp_box b, double pad) {
    double x0 = b.x - pad, x1 = b.x + b.w + pad, y0 = b.y - pad, y1 = b.y + b.h + pad;
    double dx = s.x2 - s.x1, dy = s.y2 - s.y1, t0 = 0, t1 = 1;
    double p[4] = {-dx, dx, -dy, dy}, q[4] = {s.x1 - x0, x1 - s.x1, s.y1 - y0, y1 - s.y1};
    for (int i = 0; i < 4; i++) {
        if (p[i] == 0) {
            if (q[i] < 0) return 0;
        } else {
            double t = q[i] / p[i];
            if (p[i] < 0) {
                if (t > t1) return 0;
                if (t > t0) t0 = t;
            } else {
                if (t < t0) return 0;
                if (t < t1) t1 = t;
            }
        }
    }
    return t0 <= t1;
}

static double orient(double ax, double ay, double bx, double by, double cx, double cy) {
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
}

static int segs_cross(cqp_seg a, cqp_seg b) {
    double d1 = orient(b.x1, b.y1, b.x2, b.y2, a.x1, a.y1), d2 = orient(b.x1, b.y1, b.x2, b.y2, a.x2, a.y2);
    double d3 = orient(a.x1, a.y1, a.x2, a.y2, b.x1, b.y1), d4 = orient(a.x1, a.y1, a.x2, a.y2, b.x2, b.y2);
    return ((d1 > 0) != (d2 > 0)) && ((d3 > 0) != (d4 > 0)) && d1 != 0 && d2 != 0 && d3 != 0 && d4 != 0;
}

static double seg_point_dist(cqp_seg s, double px, double py) {
    double dx = s.x2 - s.x1, dy = s.y2 - s.y1, l2 = dx * dx + dy * dy;
    double t = l2 > 0 ? ((px - s.x1) * dx + (py - s.y1) * dy) / l2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double ex = s.x1 + t * dx - px, ey = s.y1 + t * dy - py;
    return sqrt(ex * ex + ey * ey);
}

/* --------------------------------------------------------------- placement */

typedef struct cand {
    cqp_box b;
    int leader;
    cqp_seg l;
    double cost;
} cand;

#define N_NEAR 8
#define N_ANGLES 16
static const double radii[] = {16, 26, 38, 52, 70, 92, 120, 150, 185, 220};
#define N_RADII (sizeof radii / sizeof radii[0])
#define MAX_CANDS (N_NEAR + N_RADII * N_ANGLES)
/* px kept free beside a label (less, and a number reads as part of the next name); above and
 * below, the line pitch already separates */
#define BOX_GAP_X 5.0
/* a name whose best place costs this much (a long leader plus a crossing) gives way to its number */
#define FULL_MAX_COST 45.0

/* Candidate boxes of size w x h for a point at (px, py), with their base cost: the eight
 * positions touching the marker (right first), then rings at growing distance. */
static size_t candidates(double px, double py, double r0, double w, double h, cand *c) {
    const double d = r0 + 2.5, k = r0 * 0.75 + 1.6;
    const double near[N_NEAR][2] = {{px + d, py - h / 2},     {px + k, py - k - h},     {px + k, py + k},
                                    {px - d - w, py - h / 2}, {px - k - w, py - k - h}, {px - k - w, py + k},
                                    {px - w / 2, py - d - h}, {px - w / 2, py + d}};
    size_t n = 0;
    for (int i = 0; i < N_NEAR; i++, n++) {
        c[n].b = (cqp_box){near[i][0], near[i][1], w, h};
        c[n].leader = 0;
        c[n].cost = i;
    }
    for (size_t r = 0; r < N_RADII; r++)
        for (int a = 0; a < N_ANGLES; a++, n++) {
            double ang = a * (2 * M_PI / N_ANGLES), ca = cos(ang), sa = sin(ang);
            double ax = px + radii[r] * ca, ay = py + radii[r] * sa;
            double bx = ca > 0.38 ? ax : ca < -0.38 ? ax - w : ax - w / 2;
            double by = sa > 0.38 ? ay : sa < -0.38 ? ay - h : ay - h / 2;
            c[n].b = (cqp_box){bx, by, w, h};
            /* the leader runs from the marker's edge to the box's nearest point */
            double ex = px < bx ? bx : px > bx + w ? bx + w : px;
            double ey = py < by ? by : py > by + h ? by + h : py;
            double len = sqrt((ex - px) * (ex - px) + (ey - py) * (ey - py));
            double ux = len > 0 ? (ex - px) / len : 0, uy = len > 0 ? (ey - py) / len : 0;
            c[n].l = (cqp_seg){px + ux * (r0 + 1), py + uy * (r0 + 1), ex, ey};
            c[n].leader = 1;
            c[n].cost = 10 + radii[r] / 4 + (1 - ca);
        }
    return n;
}

typedef struct placed {
    cqp_box *box;
    size_t n_box;
    cqp_seg *lead;
    size_t n_lead;
} placed;

/* Cost of candidate c for point i, or INFINITY if it breaks a hard rule: outside the frame,
 * closer than BOX_GAP_X beside (1 px above or below) a placed box, over a marker. Penalties:
 * the box over a placed leader or the leader over a placed box 20, the box over a soft line
 * 25, the leader across a marker that does not touch its own 10, across another leader 6,
 * across a soft line 1; a box without a leader about as near to another marker as to its own
 * 15. */
static double judge(const cqp_layout_in *in, const placed *pl, size_t i, const cand *c) {
    if (!box_inside(c->b, in->frame, 2)) return INFINITY;
    for (size_t j = 0; j < pl->n_box; j++)
        if (boxes_overlap(c->b, pl->box[j], BOX_GAP_X, 1)) return INFINITY;
    for (size_t j = 0; j < in->n; j++)
        if (in->drawn[j] && box_dist(c->b, in->px[j], in->py[j]) < in->r[j] + 1.5) return INFINITY;
    double cost = c->cost;
    for (size_t j = 0; j < pl->n_lead; j++)
        if (seg_hits_box(pl->lead[j], c->b, 1)) cost += 20;
    if (c->leader) {
        for (size_t j = 0; j < pl->n_box; j++)
            if (seg_hits_box(c->l, pl->box[j], 1)) cost += 20;
        for (size_t j = 0; j < in->n; j++) {
            if (j == i || !in->drawn[j]) continue;
            double dx = in->px[j] - in->px[i], dy = in->py[j] - in->py[i];
            if (sqrt(dx * dx + dy * dy) < in->r[i] + in->r[j] + 1) continue; /* touches its own marker */
            if (seg_point_dist(c->l, in->px[j], in->py[j]) < in->r[j] + 1) cost += 10;
        }
        for (size_t j = 0; j < pl->n_lead; j++)
            if (segs_cross(c->l, pl->lead[j])) cost += 6;
        for (size_t j = 0; j < in->n_soft; j++)
            if (segs_cross(c->l, in->soft[j])) cost += 1;
    }
    for (size_t j = 0; j < in->n_soft; j++)
        if (seg_hits_box(in->soft[j], c->b, 0.5)) cost += 25;
    if (!c->leader) { /* without a leader, the nearest marker is the one a reader pairs it with */
        double own = box_dist(c->b, in->px[i], in->py[i]);
        for (size_t j = 0; j < in->n; j++)
            if (j != i && in->drawn[j] && box_dist(c->b, in->px[j], in->py[j]) < own + 4) {
                cost += 15;
                break;
            }
    }
    return cost;
}

/* The cheapest free candidate of size w x h for point i, if it costs less than max_cost; 0 if
 * none. */
static int place_one(const cqp_layout_in *in, placed *pl, size_t i, double w, double h, double max_cost,
                     cand *cs, cqp_label *out) {
    size_t nc = candidates(in->px[i], in->py[i], in->r[i], w, h, cs);
    double best = max_cost;
    size_t bi = 0;
    for (size_t k = 0; k < nc; k++) {
        if (cs[k].cost >= best) continue; /* base costs grow; penalties only add */
        double cost = judge(in, pl, i, &cs[k]);
        if (cost < best) best = cost, bi = k;
    }
    if (!(best < max_cost)) return 0;
    out->box = cs[bi].b;
    out->leader = cs[bi].leader;
    if (out->leader) {
        out->lx1 = cs[bi].l.x1, out->ly1 = cs[bi].l.y1, out->lx2 = cs[bi].l.x2, out->ly2 = cs[bi].l.y2;
        pl->lead[pl->n_lead++] = cs[bi].l;
    }
    pl->box[pl->n_box++] = cs[bi].b;
    return 1;
}

/* The placement order: the most crowded points first (they have the fewest free places), then
 * in order of x and y (the sort carries its keys: no shared state, so plots may be drawn from
 * several threads). */
typedef struct order_key {
    uint32_t crowd;
    double x, y;
    size_t i;
} order_key;

static int by_crowd_then_position(const void *pa, const void *pb) {
    const order_key *a = pa, *b = pb;
    if (a->crowd != b->crowd) return a->crowd > b->crowd ? -1 : 1;
    if (a->x != b->x) return a->x < b->x ? -1 : 1;
    if (a->y != b->y) return a->y < b->y ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

cq_status cqp_place_labels(const cqp_layout_in *in, cqp_label *out) {
    size_t n = in->n;
    memset(out, 0, n * sizeof *out);
    order_key *order = malloc((n ? n : 1) * sizeof *order);
    placed pl = {malloc((n ? n : 1) * sizeof(cqp_box)), 0, malloc((n ? n : 1) * sizeof(cqp_seg)), 0};
    cand *cs = malloc(MAX_CANDS * sizeof *cs);
    if (!order || !pl.box || !pl.lead || !cs) {
        free(order), free(pl.box), free(pl.lead), free(cs);
        return CQ_ERR_NOMEM;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in->drawn[i] || !in->names[i] || !in->names[i][0]) continue;
        order_key *o = &order[m++];
        *o = (order_key){0, in->px[i], in->py[i], i};
        for (size_t j = 0; j < n; j++) { /* drawn neighbours within 30 px */
            double dx = in->px[j] - o->x, dy = in->py[j] - o->y;
            o->crowd += j != i && in->drawn[j] && dx * dx + dy * dy < 30.0 * 30.0;
        }
    }
    qsort(order, m, sizeof *order, by_crowd_then_position);
    uint32_t next_key = 1;
    for (size_t k = 0; k < m; k++) {
        size_t i = order[k].i;
        cqp_label *L = &out[i];
        const char *s = in->names[i];
        /* the name at the given wrap, then narrower (more lines) */
        size_t wraps[2] = {in->wrap, in->wrap * 2 / 3}, prev_nl = 0;
        for (int t = 0; t < 2 && L->kind == CQP_NONE; t++) {
            size_t nl = cqp_wrap(s, wraps[t], L->start, L->len, CQP_MAX_LINES);
            if (nl > CQP_MAX_LINES || nl == prev_nl) continue; /* too long, or no new shape */
            prev_nl = nl;
            double w = 0;
            for (size_t j = 0; j < nl; j++)
                w = fmax(w, cqp_text_width(s + L->start[j], L->len[j], CQP_LABEL_FS));
            L->n_lines = nl;
            if (place_one(in, &pl, i, ceil(w), nl * CQP_LINE_H, FULL_MAX_COST, cs, L)) L->kind = CQP_FULL;
        }
        if (L->kind == CQP_FULL) continue;
        L->n_lines = 0;
        L->key = next_key++;
        char num[16];
        int nd = snprintf(num, sizeof num, "%u", L->key);
        L->kind = place_one(in, &pl, i, ceil(cqp_text_width(num, (size_t)nd, CQP_LABEL_FS)), CQP_LINE_H,
                            INFINITY, cs, L)
                      ? CQP_NUMBER
                      : CQP_KEY;
    }
    free(order), free(pl.box), free(pl.lead), free(cs);
    return CQ_OK;
}

/* ------------------------------------------------------------- Pareto front */

static int drawable(const cq_plot_point *p, int log_y) {
    return isfinite(p->x) && isfinite(p->y) && (!log_y || p->y > 0);
}

size_t cq_plot_pareto(const cq_plot_point *pts, size_t n, int log_y, cq_plot_front front, uint8_t *on_front) {
    if (!on_front) return 0;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        on_front[i] = 0;
        if (!pts || (front != CQ_PLOT_FRONT_LOWER && front != CQ_PLOT_FRONT_HIGHER) ||
            !drawable(&pts[i], log_y))
            continue;
        double sgn = front == CQ_PLOT_FRONT_LOWER ? 1 : -1; /* compare sgn * y, lower better */
        int dominated = 0;
        for (size_t j = 0; j < n && !dominated; j++) {
            if (j == i || !drawable(&pts[j], log_y)) continue;
            double yi = sgn * pts[i].y, yj = sgn * pts[j].y;
            dominated = pts[j].x <= pts[i].x && yj <= yi && (pts[j].x < pts[i].x || yj < yi);
        }
        on_front[i] = (uint8_t)!dominated;
        count += !dominated;
    }
    return count;
}
