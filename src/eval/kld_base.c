/* SPDX-License-Identifier: MIT */
/*
 * kld_base.c - the base log-probability file of the perplexity protocol (what
 * llama-perplexity's --kl-divergence-base keeps): the fp16-cache reference's
 * log-probabilities of every scored position, written once and read back so
 * the reference is not recomputed for every run. Format (docs/EVAL.md, "Base
 * file"), little-endian:
 *   0  "CQKLBASE"           8  u32 version (1)
 *   12 u32 n_ctx   16 u32 n_chunks   20 u32 vocab   24 i32 bos   28 u32 tokens CRC-32C
 *   32 u32 n_layers 36 u32 dim 40 u32 n_heads 44 u32 n_kv_heads 48 u32 head_dim
 *   52 u32 scored positions per chunk   56 u32 payload CRC-32C   60 u32 CRC-32C of bytes 0..59
 *   64 f32 log-probabilities [n_chunks][per][vocab]
 * A file is trusted only after its header, its exact size and its payload CRC are
 * checked, and its first chunk agrees with the one this run computes. Reading goes
 * through the file layer (regular files only, never blocking); writing through its
 * atomic writer.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/cq_le.h"
#include "cq_file.h"
#include "cq_util.h"
#include "eval_internal.h"

#define HDR 64
#define MAX_BASE_BYTES ((uint64_t)4 << 30)

struct cq_kld_base {
    char *path;
    int reading;
    int fd;
    uint32_t per, vocab, n_chunks;
    uint8_t *buf; /* writing: the whole file */
    size_t len;
    float *row;   /* reading: one chunk */
};

#define put32 cq_put_u32le
#define get32 cq_get_u32le

uint32_t cq_kld_base_tokens_crc(const int32_t *tokens, size_t n_chunks, uint32_t n_ctx, int32_t bos) {
    uint32_t crc = 0;
    uint8_t b[4];
    for (size_t i = 0; i < n_chunks * n_ctx; i++) {
        int32_t t = (i % n_ctx == 0 && bos >= 0) ? bos : tokens[i];
        put32(b, (uint32_t)t);
        crc = cq_crc32c(crc, b, 4);
    }
    return crc;
}

static void header(uint8_t *h, const cq_model_config *c, const cq_kld_base_key *k, uint32_t per,
                   uint32_t payload_crc) {
    memset(h, 0, HDR);
    memcpy(h, "CQKLBASE", 8);
    const uint32_t v[] = {1, k->n_ctx, k->n_chunks, k->vocab, (uint32_t)k->bos, k->tokens_crc,
                          c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim, per,
                          payload_crc};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) put32(h + 8 + 4 * i, v[i]);
    put32(h + 60, cq_crc32c(0, h, 60));
}

cq_status cq_kld_base_open(const char *path, const cq_model_config *c, const cq_kld_base_key *key,
                           cq_kld_base **out, cq_err *err) {
    *out = NULL;
    const uint32_t per = key->n_ctx - 1 - key->n_ctx / 2;
    uint64_t payload = (uint64_t)key->n_chunks * per * key->vocab * 4;
    if (payload > MAX_BASE_BYTES)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                          "base file of %llu bytes exceeds the %llu-byte bound: use fewer chunks",
                          (unsigned long long)payload, (unsigned long long)MAX_BASE_BYTES);
    cq_kld_base *b = calloc(1, sizeof *b);
    if (!b || !(b->path = strdup(path))) {
        free(b);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    b->fd = -1;
    b->per = per, b->vocab = key->vocab, b->n_chunks = key->n_chunks;
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno != ENOENT) {
            cq_status st = cq_err_set(err, CQ_ERR_IO, -1, -1, "%s: %s", path, strerror(errno));
            cq_kld_base_close(b);
            return st;
        }
        b->len = HDR + (size_t)payload; /* write mode: the whole file in memory */
        b->buf = malloc(b->len);
        if (!b->buf) {
            cq_kld_base_close(b);
            return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        }
        header(b->buf, c, key, per, 0);
        *out = b;
        return CQ_OK;
    }
    b->reading = 1;
    uint8_t h[HDR], want[HDR];
    uint64_t size = 0;
    cq_status st = cq_file_open(path, &b->fd, &size, err); /* regular files only, never blocks */
    if (!st && size < HDR)
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: %llu bytes: too short for a base file", path,
                        (unsigned long long)size);
    if (!st) st = cq_file_read_at(b->fd, path, 0, h, HDR, err);
    if (!st && (memcmp(h, "CQKLBASE", 8) || get32(h + 8) != 1 || get32(h + 60) != cq_crc32c(0, h, 60)))
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: not a version-1 base file (bad magic, "
                        "version or header CRC)", path);
    if (!st) {
        header(want, c, key, per, get32(h + 56));
        static const char *const what[] = {"context", "chunk count", "vocabulary", "BOS",
                                           "tokens (text)", "layers", "dim", "heads",
                                           "kv heads", "head_dim", "scored positions"};
        for (int i = 0; i < 11 && !st; i++)
            if (get32(h + 12 + 4 * i) != get32(want + 12 + 4 * i))
                st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                                "%s: written for another run: its %s is %u, this run's is %u "
                                "(delete it or give another --kld-base path)", path, what[i],
                                get32(h + 12 + 4 * i), get32(want + 12 + 4 * i));
        if (!st && size != HDR + payload)
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: %llu bytes, expected %llu", path,
                            (unsigned long long)size, (unsigned long long)(HDR + payload));
    }
    if (!st) { /* the payload CRC, streamed */
        uint8_t *tmp = malloc(1 << 16);
        uint32_t crc = 0;
        if (!tmp) st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        for (uint64_t off = HDR; !st && off < size; off += 1 << 16) {
            size_t n = size - off < (1 << 16) ? (size_t)(size - off) : (size_t)1 << 16;
            if (!(st = cq_file_read_at(b->fd, path, off, tmp, n, err))) crc = cq_crc32c(crc, tmp, n);
        }
        free(tmp);
        if (!st && crc != get32(h + 56))
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: payload CRC mismatch (corrupt)", path);
    }
    if (!st && !(b->row = malloc((size_t)per * key->vocab * 4)))
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    if (st) {
        cq_kld_base_close(b);
        return st;
    }
    *out = b;
    return CQ_OK;
}

int cq_kld_base_is_reading(const cq_kld_base *b) { return b && b->reading; }

cq_status cq_kld_base_read(cq_kld_base *b, uint32_t ch, uint32_t per, double *lp, cq_err *err) {
    size_t n = (size_t)per * b->vocab;
    uint8_t *raw = (uint8_t *)b->row;
    if (ch >= b->n_chunks || per != b->per)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "%s: no chunk %u", b->path, ch);
    cq_status st = cq_file_read_at(b->fd, b->path, HDR + (uint64_t)ch * n * 4, raw, n * 4, err);
    if (st) return st;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = get32(raw + 4 * i);
        float f;
        memcpy(&f, &u, 4);
        lp[i] = f;
    }
    return CQ_OK;
}

cq_status cq_kld_base_check(cq_kld_base *b, uint32_t per, const double *lp, cq_err *err) {
    size_t n = (size_t)per * b->vocab;
    double *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_status st = cq_kld_base_read(b, 0, per, tmp, err);
    double worst = 0;
    for (size_t i = 0; !st && i < n; i++) {
        double d = fabs(tmp[i] - lp[i]);
        if (!(d <= worst)) worst = d; /* NaN counts as a mismatch */
    }
    free(tmp);
    if (!st && !(worst <= 1e-3))
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: chunk 0 differs from this run's reference "
                        "by %.3g in a log-probability: another model or weights", b->path, worst);
    return st;
}

cq_status cq_kld_base_put(cq_kld_base *b, uint32_t ch, uint32_t per, const double *lp, cq_err *err) {
    if (b->reading || ch >= b->n_chunks || per != b->per)
        return cq_err_set(err, CQ_ERR_STATE, -1, -1, "base file: bad put");
    size_t n = (size_t)per * b->vocab;
    uint8_t *dst = b->buf + HDR + (size_t)ch * n * 4;
    for (size_t i = 0; i < n; i++) {
        float f = (float)lp[i];
        uint32_t u;
        memcpy(&u, &f, 4);
        put32(dst + 4 * i, u);
    }
    return CQ_OK;
}

cq_status cq_kld_base_commit(cq_kld_base *b, cq_err *err) {
    if (b->reading) return CQ_OK;
    put32(b->buf + 56, cq_crc32c(0, b->buf + HDR, b->len - HDR));
    put32(b->buf + 60, cq_crc32c(0, b->buf, 60));
    return cq_write_file_atomic(b->path, b->buf, b->len, err);
}

void cq_kld_base_close(cq_kld_base *b) {
    if (!b) return;
    if (b->fd >= 0) close(b->fd);
    free(b->buf);
    free(b->row);
    free(b->path);
    free(b);
}
