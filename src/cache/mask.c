/* SPDX-License-Identifier: MIT */
/*
 * mask.c - the text outlier-mask format of ../shared/vectors/masks
 * (CONTRACT.md section 10): lines "layer kv_head c0 c1 ...", '#' comments,
 * blank lines ignored. Every (layer, head) exactly once; channels ascending,
 * unique, < head_dim. Errors name the line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_cache.h"
#include "cq_codec.h"
#include "cq_file.h"

#define MASK_FILE_MAX (16u << 20)

static int parse_uint(const char **p, uint64_t *v) {
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == '\r') s++;
    if (*s < '0' || *s > '9') return 0;
    uint64_t x = 0;
    while (*s >= '0' && *s <= '9') {
        x = x * 10 + (uint64_t)(*s - '0');
        if (x > 0xFFFFFFFFull) return -1;
        s++;
    }
    if (*s && *s != ' ' && *s != '\t' && *s != '\r' && *s != '\n' && *s != '#') return -1;
    *p = s;
    *v = x;
    return 1;
}

cq_status cq_mask_load(const char *path, uint32_t n_layers, uint32_t n_kv_heads,
                       uint32_t head_dim, uint8_t *masks, cq_err *err) {
    cq_err_clear(err);
    if (!path || !masks) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "path or masks is NULL");
    if (!n_layers || !n_kv_heads || head_dim < CQ_MIN_DIM || head_dim > CQ_MAX_DIM)
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1, "invalid mask shape %u x %u x %u", n_layers,
                          n_kv_heads, head_dim);
    char *buf = NULL;
    size_t n_pairs = (size_t)n_layers * n_kv_heads;
    uint8_t *seen = calloc(n_pairs, 1);
    uint8_t *tmp = calloc(n_pairs, head_dim);
    cq_status st = CQ_OK;
    size_t len = 0;
    if (!seen || !tmp) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto done;
    }
    if ((st = cq_read_file(path, MASK_FILE_MAX, &buf, &len, err))) goto done;
    if (memchr(buf, '\0', len)) {
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: binary data in a text mask file", path);
        goto done;
    }
    uint32_t line = 0;
    for (char *p = buf; *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        line++;
        char *hash = strchr(p, '#');
        if (hash) *hash = '\0';
        const char *q = p;
        uint64_t L, h, ch, prev = 0;
        int r = parse_uint(&q, &L);
        if (r == 0) { /* blank or comment-only line */
            while (*q == ' ' || *q == '\t' || *q == '\r') q++;
            if (*q) {
                st = cq_err_set(err, CQ_ERR_FORMAT, line, -1, "%s:%u: expected 'layer kv_head c0 ...'",
                                path, line);
                goto done;
            }
        } else {
            if (r < 0 || parse_uint(&q, &h) != 1) {
                st = cq_err_set(err, CQ_ERR_FORMAT, line, -1, "%s:%u: expected 'layer kv_head c0 ...'",
                                path, line);
                goto done;
            }
            if (L >= n_layers || h >= n_kv_heads) {
                st = cq_err_set(err, CQ_ERR_RANGE, line, -1,
                                "%s:%u: layer %llu / kv head %llu outside %u x %u", path, line,
                                (unsigned long long)L, (unsigned long long)h, n_layers, n_kv_heads);
                goto done;
            }
            size_t pair = (size_t)L * n_kv_heads + h;
            if (seen[pair]) {
                st = cq_err_set(err, CQ_ERR_FORMAT, line, -1,
                                "%s:%u: layer %llu kv head %llu listed twice", path, line,
                                (unsigned long long)L, (unsigned long long)h);
                goto done;
            }
            seen[pair] = 1;
            int first = 1;
            while ((r = parse_uint(&q, &ch)) == 1) {
                if (ch >= head_dim || (!first && ch <= prev)) {
                    st = cq_err_set(err, CQ_ERR_OUTLIERS, line, ch < 0x7FFFFFFF ? (int32_t)ch : -1,
                                    "%s:%u: channel %llu is out of range or not ascending/unique",
                                    path, line, (unsigned long long)ch);
                    goto done;
                }
                tmp[pair * head_dim + ch] = 1;
                prev = ch;
                first = 0;
            }
            while (*q == ' ' || *q == '\t' || *q == '\r') q++;
            if (r < 0 || *q) {
                st = cq_err_set(err, CQ_ERR_FORMAT, line, -1, "%s:%u: bad channel list", path, line);
                goto done;
            }
        }
        if (!nl) break;
        p = nl + 1;
    }
    for (size_t i = 0; i < n_pairs; i++)
        if (!seen[i]) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: layer %zu kv head %zu is not listed",
                            path, i / n_kv_heads, i % n_kv_heads);
            goto done;
        }
    memcpy(masks, tmp, n_pairs * head_dim);
done:
    free(buf);
    free(seen);
    free(tmp);
    return st;
}
