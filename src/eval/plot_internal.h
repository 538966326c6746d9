/* SPDX-License-Identifier: MIT */
/*
 * plot_internal.h - what plot_svg.c (axes, drawing, the SVG text) and
 * plot_layout.c (text extents, label wrapping, label placement, the Pareto
 * front) share. Pixel coordinates throughout: x to the right, y downwards.
 */
#ifndef CQ_PLOT_INTERNAL_H
#define CQ_PLOT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cq_eval.h"

#define CQP_LABEL_FS 11.0 /* label and key font size, px */
#define CQP_LINE_H 13.0   /* line pitch of wrapped labels and key lines, px */
#define CQP_MARKER_R 4.5  /* point marker radius, px */
#define CQP_MAX_LINES 6   /* a label needing more lines goes to the key */

typedef struct cqp_box {
    double x, y, w, h; /* top-left corner and size */
} cqp_box;

typedef struct cqp_seg {
    double x1, y1, x2, y2;
} cqp_seg;

/* Estimated advance width of s[0..len) in a sans-serif font of size fs (by character class:
 * wide capitals and symbols, narrow punctuation, the rest). */
double cqp_text_width(const char *s, size_t len, double fs);

/* Split s into lines of at most maxc characters, breaking after '/', '_', '-', '+', ',' or at a
 * space (dropped) where one falls in the line, else hard at maxc. Writes up to max_lines
 * (start, length) pairs; returns the number of lines s needs (may exceed max_lines). */
size_t cqp_wrap(const char *s, size_t maxc, size_t *start, size_t *len, size_t max_lines);

/* Where one point's name went. */
typedef enum cqp_place_kind {
    CQP_NONE = 0,   /* not drawn (no label, or the point is left out) */
    CQP_FULL = 1,   /* the wrapped name in the plot */
    CQP_NUMBER = 2, /* its key number in the plot, the name in the key */
    CQP_KEY = 3,    /* the name in the key only (not even the number fitted) */
} cqp_place_kind;

typedef struct cqp_label {
    cqp_place_kind kind;
    cqp_box box; /* the reserved box (FULL, NUMBER) */
    int leader;  /* 1: displaced, draw a leader line (lx1,ly1)-(lx2,ly2) */
    double lx1, ly1, lx2, ly2;
    uint32_t key;   /* 1-based key number (NUMBER, KEY), else 0 */
    size_t n_lines; /* FULL: wrapped lines */
    size_t start[CQP_MAX_LINES], len[CQP_MAX_LINES];
} cqp_label;

typedef struct cqp_layout_in {
    size_t n;
    const double *px, *py;    /* [n] pixel position of each point */
    const uint8_t *drawn;     /* [n] 1 if the point is drawn */
    const double *r;          /* [n] the radius its marker (and ring) covers */
    const char *const *names; /* [n] label or NULL */
    cqp_box frame;            /* labels stay inside */
    const cqp_seg *soft;      /* lines a label should avoid (error bars, the front) */
    size_t n_soft;
    uint32_t wrap; /* characters per label line */
} cqp_layout_in;

/* Greedy placement, the most crowded points first (neighbours within 30 px), then in order
 * of x and y: for each named point, the cheapest candidate box around it, then farther out
 * with a leader line, at the given wrap and then narrower; if the cheapest costs too much, its
 * number instead; if not even that fits, the key only. A box never leaves the frame or covers
 * a placed box or a marker; crossings (box and leader, box and soft line, leader and marker or
 * leader) and a box without a leader as near to another marker as to its own add to the cost.
 * out[n]. CQ_ERR_NOMEM on allocation failure. */
cq_status cqp_place_labels(const cqp_layout_in *in, cqp_label *out);

#endif
