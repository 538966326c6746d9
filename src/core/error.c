/* SPDX-License-Identifier: MIT */
/*
 * error.c - status names, descriptions and the cq_err detail record.
 * Lives here: the table of stable status names. Not here: any policy about
 * what is an error (each module decides and reports).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cq_error.h"

static const struct {
    const char *name;
    const char *desc;
} status_table[CQ_STATUS_COUNT_] = {
    [CQ_OK] = {"CQ_OK", "success"},
    [CQ_ERR_NULL] = {"CQ_ERR_NULL", "a required pointer argument is NULL"},
    [CQ_ERR_DIM] = {"CQ_ERR_DIM", "head dimension must be even and within [2, 512]"},
    [CQ_ERR_GROUP] = {"CQ_ERR_GROUP", "key group size must be at least 1"},
    [CQ_ERR_OUTLIERS] = {"CQ_ERR_OUTLIERS",
                         "outlier channels must be sorted, unique, fewer than D and below D"},
    [CQ_ERR_NONFINITE] = {"CQ_ERR_NONFINITE", "input contains Inf or NaN"},
    [CQ_ERR_BUFFER] = {"CQ_ERR_BUFFER", "buffer too small or data too short"},
    [CQ_ERR_NOMEM] = {"CQ_ERR_NOMEM", "out of memory"},
    [CQ_ERR_IO] = {"CQ_ERR_IO", "input/output error"},
    [CQ_ERR_FORMAT] = {"CQ_ERR_FORMAT", "malformed input"},
    [CQ_ERR_SHAPE] = {"CQ_ERR_SHAPE", "tensor shapes disagree or are empty"},
    [CQ_ERR_TIER] = {"CQ_ERR_TIER", "unknown tier or codec"},
    [CQ_ERR_UNSUPPORTED] = {"CQ_ERR_UNSUPPORTED", "operation not supported for this configuration"},
    [CQ_ERR_OVERFLOW] = {"CQ_ERR_OVERFLOW", "value or size overflows its representation"},
    [CQ_ERR_STATE] = {"CQ_ERR_STATE", "call not valid in the current state"},
    [CQ_ERR_RANGE] = {"CQ_ERR_RANGE", "index or range out of bounds"},
    [CQ_ERR_CHECKSUM] = {"CQ_ERR_CHECKSUM", "checksum mismatch"},
    [CQ_ERR_VERSION] = {"CQ_ERR_VERSION", "unsupported format version"},
    [CQ_ERR_MISMATCH] = {"CQ_ERR_MISMATCH", "result differs from the expected one"},
    [CQ_ERR_ARG] = {"CQ_ERR_ARG", "invalid argument"},
    [CQ_ERR_BUDGET] = {"CQ_ERR_BUDGET", "does not fit the byte budget"},
};

const char *cq_status_name(cq_status s) {
    if ((unsigned)s >= CQ_STATUS_COUNT_) return "CQ_ERR_UNKNOWN";
    return status_table[s].name;
}

const char *cq_status_desc(cq_status s) {
    if ((unsigned)s >= CQ_STATUS_COUNT_) return "unknown status code";
    return status_table[s].desc;
}

void cq_err_clear(cq_err *e) {
    if (!e) return;
    e->code = CQ_OK;
    e->token = -1;
    e->channel = -1;
    e->msg[0] = '\0';
}

cq_status cq_err_set(cq_err *e, cq_status code, int64_t token, int32_t channel, const char *fmt,
                     ...) {
    if (!e) return code;
    e->code = code;
    e->token = token;
    e->channel = channel;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}
