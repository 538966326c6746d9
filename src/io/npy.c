/* SPDX-License-Identifier: MIT */
/*
 * npy.c - the NumPy .npy format (versions 1.0, 2.0, 3.0): little-endian
 * float16/32/64, C order, up to 8 dimensions. The header is parsed as hostile
 * text: only the three keys of the format are accepted, every number is
 * range checked, and the payload size is computed with overflow checks and
 * compared with the file before anything is allocated; a file is read header
 * first (cq_npy_load), so a bad or oversized one costs a few bytes of reading.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/cq_le.h"
#include "cq_file.h"
#include "cq_fp16.h"
#include "cq_util.h"
#include "cq_vectors.h"

static const size_t dtype_size[] = {2, 4, 8};

#define NPY_MAX_HEADER (1u << 20) /* bytes of header dictionary accepted */

void cq_npy_free(cq_npy *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* Parse a quoted string literal into buf; returns pointer after it or NULL. */
static const char *parse_str(const char *p, const char *end, char *buf, size_t cap) {
    if (p >= end || (*p != '\'' && *p != '"')) return NULL;
    char q = *p++;
    size_t n = 0;
    while (p < end && *p != q) {
        if (n + 1 >= cap) return NULL;
        buf[n++] = *p++;
    }
    if (p >= end) return NULL;
    buf[n] = '\0';
    return p + 1;
}

static cq_status parse_header(const char *h, size_t hl, cq_npy *out, cq_err *err) {
    const char *p = h, *end = h + hl;
    int have_descr = 0, have_order = 0, have_shape = 0;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{') goto bad;
    for (;;) {
        p = skip_ws(p, end);
        if (p < end && *p == '}') break;
        char key[32];
        if (!(p = parse_str(p, end, key, sizeof key))) goto bad;
        p = skip_ws(p, end);
        if (p >= end || *p++ != ':') goto bad;
        p = skip_ws(p, end);
        if (!strcmp(key, "descr")) {
            char d[16];
            if (!(p = parse_str(p, end, d, sizeof d))) goto bad;
            if (!strcmp(d, "<f2")) out->dtype = CQ_NPY_F16;
            else if (!strcmp(d, "<f4")) out->dtype = CQ_NPY_F32;
            else if (!strcmp(d, "<f8")) out->dtype = CQ_NPY_F64;
            else return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1,
                                   "npy dtype '%s' is not supported (<f2, <f4, <f8)", d);
            have_descr++;
        } else if (!strcmp(key, "fortran_order")) {
            if (end - p >= 5 && !strncmp(p, "False", 5)) p += 5;
            else if (end - p >= 4 && !strncmp(p, "True", 4))
                return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "npy: Fortran order is not supported");
            else goto bad;
            have_order++;
        } else if (!strcmp(key, "shape")) {
            if (p >= end || *p++ != '(') goto bad;
            out->ndim = 0;
            for (;;) {
                p = skip_ws(p, end);
                if (p < end && *p == ')') {
                    p++;
                    break;
                }
                if (p >= end || *p < '0' || *p > '9') goto bad;
                unsigned long long v = 0;
                while (p < end && *p >= '0' && *p <= '9') {
                    v = v * 10 + (unsigned)(*p++ - '0');
                    if (v > (1ull << 40)) goto bad;
                }
                if (out->ndim >= CQ_NPY_MAX_DIMS)
                    return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1, "npy: more than %d dims",
                                      CQ_NPY_MAX_DIMS);
                out->shape[out->ndim++] = v;
                p = skip_ws(p, end);
                if (p < end && *p == ',') p++;
                else if (p < end && *p == ')') continue;
                else goto bad;
            }
            have_shape++;
        } else goto bad;
        p = skip_ws(p, end);
        if (p < end && *p == ',') p++;
    }
    if (have_descr != 1 || have_order != 1 || have_shape != 1) goto bad;
    return CQ_OK;
bad:
    return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "npy: malformed header dictionary");
}

/* The preamble and header dictionary: buf holds the first avail bytes of a file
 * of file_len bytes. Needs avail >= 12 or the whole file; on success *data_off
 * and *nbytes locate the payload (checked against file_len), out holds the shape. */
static cq_status npy_header(const uint8_t *buf, size_t avail, uint64_t file_len, size_t max_bytes,
                            cq_npy *out, size_t *data_off, size_t *nbytes, cq_err *err) {
    memset(out, 0, sizeof *out);
    if (!max_bytes) max_bytes = (size_t)1 << 32;
    if (avail < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "npy: bad magic");
    unsigned major = buf[6];
    size_t hl, off;
    if (major == 1) {
        hl = cq_get_u16le(buf + 8);
        off = 10;
    } else if (major == 2 || major == 3) {
        if (avail < 12) return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "npy: truncated header");
        hl = cq_get_u32le(buf + 8);
        off = 12;
    } else {
        return cq_err_set(err, CQ_ERR_VERSION, -1, -1, "npy: format version %u is not supported", major);
    }
    if (hl > file_len - off || hl > NPY_MAX_HEADER)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "npy: header length %zu exceeds the file "
                          "or the %u-byte limit", hl, NPY_MAX_HEADER);
    if (hl > avail - off) return CQ_ERR_BUFFER; /* the caller reads more and comes back */
    cq_status st = parse_header((const char *)buf + off, hl, out, err);
    if (st) return st;
    uint64_t count = 1;
    for (uint32_t i = 0; i < out->ndim; i++) {
        if (out->shape[i] && count > UINT64_MAX / out->shape[i])
            return cq_err_set(err, CQ_ERR_OVERFLOW, -1, -1, "npy: shape overflows");
        count *= out->shape[i];
    }
    size_t es = dtype_size[out->dtype];
    if (count > (uint64_t)(max_bytes / es))
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                          "npy: %llu elements exceed the limit of %zu data bytes",
                          (unsigned long long)count, max_bytes);
    *nbytes = (size_t)count * es;
    *data_off = off + hl;
    if (file_len - *data_off != *nbytes)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "npy: %llu data bytes, the shape needs %zu",
                          (unsigned long long)(file_len - *data_off), *nbytes);
    out->count = count;
    return CQ_OK;
}

cq_status cq_npy_parse(const uint8_t *buf, size_t len, size_t max_bytes, cq_npy *out, cq_err *err) {
    cq_err_clear(err);
    if (!buf || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    size_t data_off, nbytes;
    cq_status st = npy_header(buf, len, len, max_bytes, out, &data_off, &nbytes, err);
    if (st) return st;
    out->data = malloc(nbytes ? nbytes : 1);
    if (!out->data) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "npy: out of memory");
    memcpy(out->data, buf + data_off, nbytes);
    return CQ_OK;
}

/* Header first (at most NPY_MAX_HEADER + 12 bytes read and checked), then the
 * payload straight into the array: the file is never held twice. */
cq_status cq_npy_load(const char *path, size_t max_bytes, cq_npy *out, cq_err *err) {
    cq_err_clear(err);
    if (!path || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    memset(out, 0, sizeof *out);
    int fd;
    uint64_t size;
    cq_status st = cq_file_open(path, &fd, &size, err);
    if (st) return st;
    uint8_t pre[12], *hdr = NULL;
    size_t data_off = 0, nbytes = 0, n = size < sizeof pre ? (size_t)size : sizeof pre;
    st = cq_file_read_at(fd, path, 0, pre, n, err);
    if (!st) st = npy_header(pre, n, size, max_bytes, out, &data_off, &nbytes, err);
    if (st == CQ_ERR_BUFFER) { /* the header dictionary: its length is now checked */
        size_t hn = (pre[6] == 1 ? 10u : 12u) + (pre[6] == 1 ? cq_get_u16le(pre + 8)
                                                              : cq_get_u32le(pre + 8));
        hdr = malloc(hn);
        st = hdr ? cq_file_read_at(fd, path, 0, hdr, hn, err)
                 : cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "npy: out of memory");
        if (!st) st = npy_header(hdr, hn, size, max_bytes, out, &data_off, &nbytes, err);
        free(hdr);
    }
    if (!st) {
        out->data = malloc(nbytes ? nbytes : 1);
        st = out->data ? cq_file_read_at(fd, path, data_off, out->data, nbytes, err)
                       : cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "npy: out of memory");
    }
    close(fd);
    if (st) {
        cq_npy_free(out);
        memset(out, 0, sizeof *out);
        if (err) {
            char tmp[sizeof err->msg], bp[80];
            memcpy(tmp, err->msg, sizeof tmp);
            cq_err_set(err, st, err->token, err->channel, "%s: %.140s",
                       cq_path_brief(path, bp, sizeof bp), tmp);
        }
    }
    return st;
}

cq_status cq_npy_save(const char *path, cq_npy_dtype dtype, const uint64_t *shape, uint32_t ndim,
                      const void *data, cq_err *err) {
    if (!path || (ndim && !shape) || ndim > CQ_NPY_MAX_DIMS || (unsigned)dtype > CQ_NPY_F64)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "npy_save: bad arguments");
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     dtype == CQ_NPY_F16 ? "<f2" : dtype == CQ_NPY_F32 ? "<f4" : "<f8");
    uint64_t count = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%llu%s", (unsigned long long)shape[i],
                      ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
        count *= shape[i];
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t total_hdr = 10 + (size_t)n + 1;
    size_t pad = (64 - total_hdr % 64) % 64;
    size_t hl = (size_t)n + pad + 1;
    size_t nbytes = (size_t)count * dtype_size[dtype];
    uint8_t *buf = malloc(10 + hl + nbytes);
    if (!buf) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    cq_put_u16le(buf + 8, (uint16_t)hl);
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', pad);
    buf[10 + hl - 1] = '\n';
    if (nbytes) memcpy(buf + 10 + hl, data, nbytes);
    cq_status st = cq_write_file_atomic(path, buf, 10 + hl + nbytes, err);
    free(buf);
    return st;
}

void cq_npy_to_f16(const cq_npy *a, uint16_t *dst) {
    for (uint64_t i = 0; i < a->count; i++) {
        if (a->dtype == CQ_NPY_F16) dst[i] = ((const uint16_t *)a->data)[i];
        else if (a->dtype == CQ_NPY_F32) dst[i] = cq_f32_to_f16(((const float *)a->data)[i]);
        else dst[i] = cq_f64_to_f16(((const double *)a->data)[i]);
    }
}

void cq_npy_to_f32(const cq_npy *a, float *dst) {
    for (uint64_t i = 0; i < a->count; i++) {
        if (a->dtype == CQ_NPY_F16) dst[i] = cq_f16_to_f32(((const uint16_t *)a->data)[i]);
        else if (a->dtype == CQ_NPY_F32) dst[i] = ((const float *)a->data)[i];
        else dst[i] = (float)((const double *)a->data)[i];
    }
}
