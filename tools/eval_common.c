/* SPDX-License-Identifier: MIT */
/*
 * eval_common.c - what the evaluation commands share (eval ppl/mc/capture/attn,
 * calibrate, sweep, run): reading and tokenizing a text, parsing K/V format
 * lists and saying why a format cannot run on a model, outlier calibration on
 * held-out text through the runtime's key observer, capturing Q/K/V, and the
 * attention-fidelity loop over a case layout. The protocols themselves live in
 * the library (src/eval, src/model); this file only wires them together.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

char *cq_tool_read_file(const char *path, size_t *len) {
    char *b;
    cq_err e;
    cq_err_clear(&e);
    if (cq_read_text(path, CQ_TEXT_MAX_BYTES, &b, len, &e)) {
        fprintf(stderr, "cq: %s: %s\n", cq_status_name(e.code), e.msg);
        return NULL;
    }
    return b;
}

const char *cq_tool_default_text(char *buf, size_t cap) {
    const char *sh = getenv("CQ_SHARED");
    snprintf(buf, cap, "%.4000s/eval/tinystories_val.txt", sh && *sh ? sh : "../shared");
    return buf;
}

int cq_tool_tokenize_file(const char *cmd, const cq_tokenizer *tok, const char *path,
                          int32_t **tokens, size_t *n_tokens) {
    size_t len;
    *tokens = NULL;
    *n_tokens = 0;
    char *text = cq_tool_read_file(path, &len);
    if (!text) {
        fprintf(stderr, "cq %s: CQ_ERR_IO: cannot read %s\n", cmd, path);
        return 1;
    }
    size_t cap = len + 16;
    int32_t *t = malloc(cap * sizeof *t);
    cq_err e;
    cq_err_clear(&e);
    cq_status st = t ? cq_tokenizer_encode(tok, text, len, cq_tokenizer_add_bos(tok), t, cap,
                                           n_tokens, &e)
                     : CQ_ERR_NOMEM;
    free(text);
    if (st) {
        free(t);
        cq_report(cmd, st, &e);
        return 1;
    }
    *tokens = t;
    return 0;
}

int cq_tool_parse_formats(const char *cmd, const char *list, cq_kv_format *f, uint32_t max,
                          uint32_t *n) {
    char buf[1024];
    *n = 0;
    if (strlen(list) >= sizeof buf) {
        fprintf(stderr, "cq %s: --formats too long\n", cmd);
        return 2;
    }
    strcpy(buf, list);
    cq_err e;
    cq_err_clear(&e);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (*n == max) {
            fprintf(stderr, "cq %s: at most %u formats\n", cmd, max);
            return 2;
        }
        cq_status st = cq_kv_format_parse(t, &f[*n], &e);
        if (st) {
            cq_report(cmd, st, &e);
            return 2;
        }
        (*n)++;
    }
    if (!*n) {
        fprintf(stderr, "cq %s: no formats\n", cmd);
        return 2;
    }
    return 0;
}
