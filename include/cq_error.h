/* SPDX-License-Identifier: MIT */
/*
 * cq_error.h - ChannelQuant status codes and error details.
 *
 * Every library function that can fail returns a cq_status. CQ_OK is 0; every
 * other code is a stable, named failure (the numbers never change meaning).
 * Functions that can name where bad input was found also take an optional
 * cq_err* (may be NULL) which receives the code, the token and channel, and a
 * one-line human-readable message. The library never aborts on bad input.
 *
 * Tier: STABLE CORE - what a runtime links; its ABI is kept within a major version
 * (docs/EMBEDDING.md).
 */
#ifndef CQ_ERROR_H
#define CQ_ERROR_H

#include "cq_api.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cq_status {
    CQ_OK = 0,
    CQ_ERR_NULL = 1,         /* a required pointer argument is NULL */
    CQ_ERR_DIM = 2,          /* head_dim D not even or outside [2, 512] */
    CQ_ERR_GROUP = 3,        /* key group size G is 0 */
    CQ_ERR_OUTLIERS = 4,     /* outlier list: k >= D, unsorted, duplicate, out of range */
    CQ_ERR_NONFINITE = 5,    /* an input element is Inf or NaN */
    CQ_ERR_BUFFER = 6,       /* a destination buffer is too small / source too short */
    CQ_ERR_NOMEM = 7,        /* allocation failed */
    CQ_ERR_IO = 8,           /* a file could not be opened, read or written */
    CQ_ERR_FORMAT = 9,       /* malformed input file or stream */
    CQ_ERR_SHAPE = 10,       /* tensor shapes disagree or are empty where not allowed */
    CQ_ERR_TIER = 11,        /* unknown tier or codec */
    CQ_ERR_UNSUPPORTED = 12, /* valid request that this codec/path does not support */
    CQ_ERR_OVERFLOW = 13,    /* an intermediate result overflows (fp16 range, size_t) */
    CQ_ERR_STATE = 14,       /* call not valid in the object's current state */
    CQ_ERR_RANGE = 15,       /* index or token range out of bounds */
    CQ_ERR_CHECKSUM = 16,    /* stored checksum does not match the data */
    CQ_ERR_VERSION = 17,     /* file format version not supported */
    CQ_ERR_MISMATCH = 18,    /* a comparison against an expected result failed */
    CQ_ERR_ARG = 19,         /* any other invalid argument */
    CQ_ERR_BUDGET = 20,      /* the request does not fit a fixed byte budget (nothing changed) */
    CQ_STATUS_COUNT_
} cq_status;

/* Stable short name of a status, e.g. "CQ_ERR_NONFINITE". Never NULL. */
CQ_API const char *cq_status_name(cq_status s);
/* One-line description of what the status means. Never NULL. */
CQ_API const char *cq_status_desc(cq_status s);

/* Optional error detail. token/channel are -1 when they do not apply. */
typedef struct cq_err {
    cq_status code;
    int64_t token;
    int32_t channel;
    char msg[224];
} cq_err;

/* Reset an error record to CQ_OK / no location. Accepts NULL. */
CQ_API void cq_err_clear(cq_err *e);

/* Fill *e (if non-NULL) and return code. printf-style message. */
CQ_API cq_status cq_err_set(cq_err *e, cq_status code, int64_t token, int32_t channel,
                     const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif /* CQ_ERROR_H */
