/* SPDX-License-Identifier: MIT */
/*
 * hexio.c - hostile-input-safe file reading, atomic file writing, and the
 * fixed-width hex word format of the golden vectors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cq_vectors.h"

cq_status cq_read_file(const char *path, size_t max_bytes, char **buf, size_t *len, cq_err *err) {
    if (!path || !buf || !len) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return cq_err_set(err, CQ_ERR_IO, -1, -1, "%s: cannot open: %s", path, strerror(errno));
    struct stat stt;
    if (fstat(fileno(f), &stt) != 0 || !S_ISREG(stt.st_mode)) {
        fclose(f);
        return cq_err_set(err, CQ_ERR_IO, -1, -1, "%s: not a regular file", path);
    }
    if ((unsigned long long)stt.st_size > (unsigned long long)max_bytes) {
        fclose(f);
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: %lld bytes exceeds the limit of %zu",
                          path, (long long)stt.st_size, max_bytes);
    }
    size_t n = (size_t)stt.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = n ? fread(b, 1, n, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (got != n || bad) {
        free(b);
        return cq_err_set(err, CQ_ERR_IO, -1, -1, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return CQ_OK;
}

cq_status cq_write_file_atomic(const char *path, const void *data, size_t len, cq_err *err) {
    if (!path || (len && !data)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        cq_status st = cq_err_set(err, CQ_ERR_IO, -1, -1, "%s: cannot create temporary file: %s",
                                  path, strerror(errno));
        free(tmp);
        return st;
    }
    const unsigned char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    int ok = left == 0 && fsync(fd) == 0;
    ok = (close(fd) == 0) && ok;
    if (ok) {
        ok = chmod(tmp, 0644) == 0 && rename(tmp, path) == 0;
    }
    if (!ok) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return cq_err_set(err, CQ_ERR_IO, -1, -1, "%s: write failed: %s", path, strerror(e));
    }
    free(tmp);
    return CQ_OK;
}

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
