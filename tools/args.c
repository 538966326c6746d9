/* SPDX-License-Identifier: MIT */
/*
 * args.c - strict argument parsing, error reporting and the wall clock shared by
 * subcommands.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cq_tool.h"

int cq_is_help(const char *s) {
    return s && (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0 || strcmp(s, "help") == 0);
}

int cq_arg_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int cq_arg_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
    uint64_t v;
    if (cq_arg_u64(s, &v) || v < lo || v > hi) return -1;
    *out = (uint32_t)v;
    return 0;
}

int cq_arg_f64(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int cq_arg_u16_list(const char *s, uint16_t *out, int max) {
    if (!s) return -1;
    if (!*s) return 0;
    int n = 0;
    const char *p = s;
    while (*p) {
        char buf[16];
        size_t l = strcspn(p, ",");
        if (l == 0 || l >= sizeof buf || n >= max) return -1;
        memcpy(buf, p, l);
        buf[l] = '\0';
        uint32_t v;
        if (cq_arg_u32(buf, 0, 65535, &v)) return -1;
        out[n++] = (uint16_t)v;
        p += l;
        if (*p == ',') {
            p++;
            if (!*p) return -1;
        }
    }
    return n;
}

void cq_report(const char *cmd, cq_status st, const cq_err *e) {
    if (e && e->code != CQ_OK && e->msg[0])
        fprintf(stderr, "cq %s: %s: %s\n", cmd, cq_status_name(e->code), e->msg);
    else
        fprintf(stderr, "cq %s: %s: %s\n", cmd, cq_status_name(st), cq_status_desc(st));
}

double cq_tool_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
