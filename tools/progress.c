/* SPDX-License-Identifier: MIT */
/*
 * progress.c - progress of long runs that a log can hold: on a terminal one
 * line rewritten in place with carriage returns; anywhere else (a file, a
 * pipe, CI) a plain line at each tenth of the work and at the end. Every line
 * says done/total, the caller's running figure, the elapsed time and the ETA.
 */
#include <stdio.h>
#include <unistd.h>

#include "cq_tool.h"

void cq_progress_start(cq_progress *p, const char *label, uint64_t total) {
    p->label = label;
    p->total = total ? total : 1;
    p->t0 = p->last = cq_tool_now();
    p->tty = isatty(fileno(stderr));
    p->last_decile = 0;
    p->open = 0;
}

static void fmt_time(double s, char *buf, size_t cap) {
    if (s < 0) s = 0;
    unsigned t = (unsigned)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%uh%02um", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, cap, "%um%02us", t / 60, t % 60);
    else snprintf(buf, cap, "%us", t);
}

void cq_progress_update(cq_progress *p, uint64_t done, const char *extra) {
    double now = cq_tool_now(), el = now - p->t0;
    int decile = (int)(10 * done / p->total);
    int end = done >= p->total;
    if (p->tty) {
        if (!end && now - p->last < 0.2) return; /* at most 5 redraws a second */
    } else if (!end && decile <= p->last_decile) {
        return;
    }
    p->last = now;
    p->last_decile = decile;
    char e1[16], e2[16];
    fmt_time(el, e1, sizeof e1);
    fmt_time(done ? el * (double)(p->total - done) / (double)done : 0, e2, sizeof e2);
    fprintf(stderr, "%s%s %llu/%llu%s%s, %s elapsed, ETA %s%s", p->tty ? "\r\033[K" : "",
            p->label, (unsigned long long)done, (unsigned long long)p->total, extra ? ", " : "",
            extra ? extra : "", e1, end ? "0s" : e2, p->tty ? "" : "\n");
    p->open = p->tty;
    fflush(stderr);
}

void cq_progress_end(cq_progress *p) {
    if (p->open) fprintf(stderr, "\n");
    p->open = 0;
}
