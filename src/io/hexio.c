/* SPDX-License-Identifier: MIT */
/*
 * hexio.c - the fixed-width hex word format of the golden vectors (files are
 * read through the file layer, src/core/fileio.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_vectors.h"

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int is_space(int ch) { return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t'; }

cq_status cq_hex_parse(const char *text, size_t len, unsigned digits, uint32_t **words, size_t *n,
                       const char *what, cq_err *err) {
    if (!words || !n || (len && !text)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    *words = NULL;
    *n = 0;
    if (digits == 0 || digits > 8) return cq_err_set(err, CQ_ERR_ARG, -1, -1, "bad hex width");
    if (!what) what = "hex data";
    /* pass 1: validate and count, tracking the line for messages */
    size_t count = 0, line = 1;
    for (size_t i = 0; i < len;) {
        if (is_space((unsigned char)text[i])) {
            if (text[i] == '\n') line++;
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && !is_space((unsigned char)text[j])) {
            if (hexval((unsigned char)text[j]) < 0)
                return cq_err_set(err, CQ_ERR_FORMAT, (int64_t)line, -1,
                                  "%s: line %zu: '%c' is not a hex digit", what, line, text[j]);
            j++;
        }
        if (j - i != digits)
            return cq_err_set(err, CQ_ERR_FORMAT, (int64_t)line, -1,
                              "%s: line %zu: word of %zu hex digits, expected %u", what, line,
                              j - i, digits);
        count++;
        i = j;
    }
    uint32_t *w = malloc((count ? count : 1) * sizeof *w);
    if (!w) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "%s: out of memory", what);
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        if (is_space((unsigned char)text[i])) {
            i++;
            continue;
        }
        uint32_t v = 0;
        for (unsigned d = 0; d < digits; d++) v = (v << 4) | (uint32_t)hexval((unsigned char)text[i + d]);
        w[k++] = v;
        i += digits;
    }
    *words = w;
    *n = count;
    return CQ_OK;
}

cq_status cq_hex_load(const char *path, unsigned digits, uint32_t **words, size_t *n, cq_err *err) {
    char *buf;
    size_t len;
    cq_status st = cq_read_file(path, (size_t)1 << 30, &buf, &len, err);
    if (st) return st;
    st = cq_hex_parse(buf, len, digits, words, n, path, err);
    free(buf);
    return st;
}
