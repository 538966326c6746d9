/* SPDX-License-Identifier: MIT */
/*
 * seq_file.c - the serving pool's files: a sequence (cq_kvpool_save_seq / _load_seq) and
 * the pool's cached blocks (cq_kvpool_save_cached / _load_cached), cache file format
 * version 3 (docs/CACHE_FILE.md, "Version 3"). The container is the cache file's (40-byte
 * header, sections with CRC-32C); each full block is the block wire form of
 * block_wire.c; the open block and the fp16 in-flight groups of a sequence are its TAIL.
 *
 * Saving builds the image under the pool mutex and writes it with the one atomic writer
 * (src/core/fileio.c). Loading reads the 40-byte header first, bounds the file by what the
 * pool's budget could hold, checks every section CRC and validates every byte (each wire
 * block with kvp_wire_parse, each open-block slot with its format's own check) before it
 * takes the pool mutex; then it computes the blocks it reuses (published blocks cached
 * already: dedup) and the bytes it needs, refuses with CQ_ERR_BUDGET before anything
 * changes, pins what it reuses, allocates, fills and publishes. Version 1 and 2 files
 * (a single cq_cache) load as one sequence through seq_file_v12.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../cache/fused.h"
#include "../cache/slot_io.h"
#include "../core/cq_le.h"
#include "cq_file.h"
#include "cq_util.h"
#include "kvpool_internal.h"
#include "seq_file.h"

#define FILE_MAGIC "CQKVCACH"
#define FILE_HDR 40u
#define SEC_HDR 24u
#define TAG_CONF 0x464E4F43u /* "CONF" */
#define TAG_BLKS 0x534B4C42u /* "BLKS" */
#define TAG_TAIL 0x4C494154u /* "TAIL" */
#define KIND_SEQ 1u
#define KIND_CACHED 2u
#define CONF_FIXED 48u
#define REC_HDR 16u  /* a BLKS record: u32 flags, u32 0, u64 wire bytes */
#define TENT_HDR 24u /* a TAIL store entry: kind, n_done, n_resid, 0, u64 data bytes */
#define FLAG_PUBLISHED 1u

static uint64_t conf_bytes(const cq_kvpool *p) { return CONF_FIXED + 8ull * p->NL; }

static void write_conf(const cq_kvpool *p, uint32_t kind, uint8_t *q) {
    cq_put_u32le(q, kind);
    cq_put_u32le(q + 4, 0);
    cq_put_u64le(q + 8, p->config_hash);
    cq_put_u64le(q + 16, p->model_hash);
    const uint32_t v[6] = {p->NL, p->H, p->D, p->G, p->S, p->NS};
    for (int i = 0; i < 6; i++) cq_put_u32le(q + 24 + 4 * i, v[i]);
    for (uint32_t L = 0; L < p->NL; L++) {
        cq_put_u32le(q + CONF_FIXED + 8 * L, (uint32_t)p->proto->layers[L].kid);
        cq_put_u32le(q + CONF_FIXED + 8 * L + 4, (uint32_t)p->proto->layers[L].vid);
    }
}

static void sec_header(uint8_t *q, uint32_t tag, uint32_t index, uint64_t len) {
    cq_put_u32le(q, tag);
    cq_put_u32le(q + 4, index);
    cq_put_u64le(q + 8, len);
    cq_put_u32le(q + 16, cq_crc32c(0, q + SEC_HDR, (size_t)len));
    cq_put_u32le(q + 20, cq_crc32c(0, q, 20));
}

/* An image of n_sec sections of the given payload lengths; *pay[i] = where payload i goes
 * (its header is written by finish_image once the payload is in place). */
static uint8_t *new_image(uint32_t n_sec, const uint64_t *len, uint64_t *total) {
    uint64_t t = FILE_HDR;
    for (uint32_t i = 0; i < n_sec; i++) t += SEC_HDR + len[i];
    if (t > SIZE_MAX / 2) return NULL;
    uint8_t *img = calloc(1, (size_t)t);
    if (!img) return NULL;
    memcpy(img, FILE_MAGIC, 8);
    cq_put_u32le(img + 8, 3u);
    cq_put_u32le(img + 12, FILE_HDR);
    cq_put_u64le(img + 16, t);
    cq_put_u32le(img + 24, n_sec);
    cq_put_u32le(img + 36, cq_crc32c(0, img, 36));
    *total = t;
    return img;
}

static void finish_image(uint8_t *img, uint32_t n_sec, const uint32_t *tags, const uint64_t *len) {
    uint8_t *q = img + FILE_HDR;
    for (uint32_t i = 0; i < n_sec; i++) {
        sec_header(q, tags[i], i, len[i]);
        q += SEC_HDR + len[i];
    }
}

static uint8_t *payload(uint8_t *img, uint32_t i, const uint64_t *len) {
    uint8_t *q = img + FILE_HDR;
    for (uint32_t k = 0; k < i; k++) q += SEC_HDR + len[k];
    return q + SEC_HDR;
}

/* ------------------------------------------------------------ save a sequence */

/* Bytes of the TAIL payload of a sequence of n tokens holding nb full blocks. */
static uint64_t tail_bytes(const cq_kvpool *p, const cq_seq *s, uint32_t n, uint32_t nb) {
    uint64_t b = 16;
    if (s->n_blk <= nb) return b;
    const uint32_t ns = n < p->S ? n : p->S;
    if (nb == 0) b += 4ull * p->NL * p->H * ns * p->D;
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *d = cq_layer_store_c(&s->c->layers[L], p->H, j);
            b += TENT_HDR;
            if (d) b += cq_slot_canon_len_n(d, d->n_done - nb * p->G) + 2ull * d->n_resid * d->D;
        }
    return b;
}

static void write_tail(const cq_kvpool *p, const cq_seq *s, uint32_t n, uint32_t nb, uint8_t *q) {
    const int open = s->n_blk > nb;
    cq_put_u32le(q, n);
    cq_put_u32le(q + 4, nb);
    cq_put_u32le(q + 8, (uint32_t)open);
    cq_put_u32le(q + 12, 0);
    q += 16;
    if (!open) return;
    const uint32_t ns = n < p->S ? n : p->S, id = s->blk[nb];
    if (nb == 0 && ns) { /* the sinks are in the open block 0 */
        const size_t hb = (size_t)p->S * p->D;
        const uint16_t *sl = (const uint16_t *)p->sink_of[id];
        for (uint32_t L = 0; L < p->NL; L++)
            for (uint32_t h = 0; h < p->H; h++)
                for (int r = 0; r < 2; r++, q += 2 * (size_t)ns * p->D)
                    cq_put_u16le_n(q, sl + (((size_t)L * p->H + h) * 2 + r) * hb, (size_t)ns * p->D);
    }
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *d = cq_layer_store_c(&s->c->layers[L], p->H, j);
            const uint32_t cd = d ? d->n_done - nb * p->G : 0;
            const uint64_t dl = d ? cq_slot_canon_len_n(d, cd) : 0;
            cq_put_u32le(q, d ? (uint32_t)d->kind : KIND_NONE);
            cq_put_u32le(q + 4, cd);
            cq_put_u32le(q + 8, d ? d->n_resid : 0);
            cq_put_u32le(q + 12, 0);
            cq_put_u64le(q + 16, dl);
            q += TENT_HDR;
            if (!d) continue;
            cq_slot_export_n(d, kvp_slot(p, L * p->NS + j, id), cd, q);
            q += dl;
            cq_put_u16le_n(q, d->resid, (size_t)d->n_resid * d->D);
            q += 2 * (size_t)d->n_resid * d->D;
        }
}

/* The image of sequence s (under the pool mutex). */
static cq_status seq_image(const cq_seq *s, const uint32_t *tokens, uint32_t n_tokens,
                           uint8_t **out, uint64_t *out_len, cq_err *err) {
    const cq_kvpool *p = s->pool;
    const uint32_t n = s->c->layers[0].tokens;
    for (uint32_t L = 1; L < p->NL; L++)
        if (s->c->layers[L].tokens != n)
            return cq_err_set(err, CQ_ERR_STATE, -1, -1,
                              "save needs every layer at the same length (layer 0: %u, layer %u: "
                              "%u tokens)", n, L, s->c->layers[L].tokens);
    if (tokens && n_tokens > n)
        return cq_err_set(err, CQ_ERR_RANGE, n_tokens, -1, "%u token ids for a sequence of %u",
                          n_tokens, n);
    const uint32_t F = p->S + p->G, nb = n < F ? 0 : (n - p->S) / p->G;
    uint64_t len[3] = {conf_bytes(p), 8, tail_bytes(p, s, n, nb)};
    for (uint32_t b = 0; b < nb; b++) len[1] += REC_HDR + kvp_wire_len(p, b);
    uint64_t total;
    uint8_t *img = new_image(3, len, &total);
    uint32_t *zero = calloc(F, sizeof *zero);
    if (!img || !zero) {
        free(img);
        free(zero);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory (a %llu-byte image)",
                          (unsigned long long)total);
    }
    write_conf(p, KIND_SEQ, payload(img, 0, len));
    uint8_t *q = payload(img, 1, len);
    cq_put_u32le(q, nb);
    cq_put_u32le(q + 4, 0);
    q += 8;
    uint64_t parent = 0;
    cq_status st = CQ_OK;
    for (uint32_t b = 0; b < nb && !st; b++) {
        const uint32_t t0 = b ? p->S + b * p->G : 0, cnt = b ? p->G : F, id = s->blk[b];
        cq_prefix_block_info bi;
        cq_prefix_info(p->ix, id, &bi, NULL);
        const int pub = tokens && bi.state == CQ_BLOCK_CACHED;
        const uint32_t *tk = pub ? bi.tokens
                                 : tokens && t0 + cnt <= n_tokens ? tokens + t0 : zero;
        if (pub && t0 < n_tokens) { /* the index's tokens must be the caller's */
            const uint32_t m = n_tokens - t0 < cnt ? n_tokens - t0 : cnt;
            if (memcmp(bi.tokens, tokens + t0, (size_t)m * sizeof *tokens))
                st = cq_err_set(err, CQ_ERR_MISMATCH, t0, -1,
                                "block %u was published with other tokens than those given", b);
        }
        const uint64_t h = cq_prefix_chain_hash(p->config_hash, parent, tk, cnt);
        const uint64_t wl = kvp_wire_len(p, b);
        cq_put_u32le(q, pub ? FLAG_PUBLISHED : 0);
        cq_put_u32le(q + 4, 0);
        cq_put_u64le(q + 8, wl);
        kvp_wire_write(p, id, b, tk, parent, h, q + REC_HDR);
        q += REC_HDR + wl;
        parent = h;
    }
    free(zero);
    if (st) {
        free(img);
        return st;
    }
    write_tail(p, s, n, nb, payload(img, 2, len));
    const uint32_t tags[3] = {TAG_CONF, TAG_BLKS, TAG_TAIL};
    finish_image(img, 3, tags, len);
    *out = img;
    *out_len = total;
    return CQ_OK;
}

cq_status cq_kvpool_save_seq(const cq_seq *s, const uint32_t *tokens, uint32_t n_tokens,
                             const char *path, cq_err *err) {
    cq_err_clear(err);
    if (!s || !path || (!tokens && n_tokens))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sequence, path or tokens is NULL");
    cq_kvpool *p = s->pool;
    uint8_t *img = NULL;
    uint64_t len = 0;
    pthread_mutex_lock(&p->mu);
    cq_status st = CQ_OK;
    if (s->n_part) /* the file's blocks lie on the grid of a fresh prompt */
        st = cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1,
                        "the sequence holds a partial block (block %u, %u of %u positions used, "
                        "from a truncate inside a key group): its later groups do not lie on "
                        "the G-token grid the file format records; it cannot be saved "
                        "(docs/SERVING.md, \"Save and restore\")",
                        s->part_b[0], s->part_k[0], p->G);
    if (!st) st = seq_image(s, tokens, n_tokens, &img, &len, err);
    pthread_mutex_unlock(&p->mu);
    if (!st) st = cq_write_file_atomic(path, img, (size_t)len, err);
    free(img);
    return st;
}

/* ------------------------------------------------------------ save the cached blocks */

cq_status cq_kvpool_save_cached(const cq_kvpool *cp, const char *path, cq_err *err) {
    cq_err_clear(err);
    if (!cp || !path) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "pool or path is NULL");
    cq_kvpool *p = (cq_kvpool *)cp;
    pthread_mutex_lock(&p->mu);
    const uint32_t cap = cq_prefix_capacity(p->ix);
    /* ids, then the same ids in chain order, and the per-position counts of that sort */
    uint32_t *ids = malloc(((size_t)cap + 1) * 2 * sizeof *ids), n = 0, maxpos = 0, *start = NULL;
    cq_prefix_block_info bi, pi;
    uint8_t *img = NULL;
    uint64_t total = 0;
    cq_status st = CQ_OK;
    uint64_t len[2] = {conf_bytes(p), 8};
    if (!ids) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto out;
    }
    for (uint32_t id = 0; id < cap; id++)
        if (cq_prefix_info(p->ix, id, &bi, NULL) == CQ_OK && bi.state == CQ_BLOCK_CACHED) {
            ids[n++] = id;
            len[1] += REC_HDR + kvp_wire_len(p, bi.pos);
            if (bi.pos > maxpos) maxpos = bi.pos;
        }
    /* chain order: by position (a parent is one position before its child), then id; a
     * counting sort, stable, so ids stay ascending within a position */
    uint32_t *order = ids + cap + 1;
    if (!(start = calloc((size_t)maxpos + 2, sizeof *start)) || !(img = new_image(2, len, &total))) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        cq_prefix_info(p->ix, ids[i], &bi, NULL);
        start[bi.pos + 1]++;
    }
    for (uint32_t k = 0; k <= maxpos; k++) start[k + 1] += start[k];
    for (uint32_t i = 0; i < n; i++) {
        cq_prefix_info(p->ix, ids[i], &bi, NULL);
        order[start[bi.pos]++] = ids[i];
    }
    write_conf(p, KIND_CACHED, payload(img, 0, len));
    uint8_t *q = payload(img, 1, len);
    cq_put_u32le(q, n);
    cq_put_u32le(q + 4, 0);
    q += 8;
    for (uint32_t i = 0; i < n; i++) {
        cq_prefix_info(p->ix, order[i], &bi, NULL);
        uint64_t ph = 0;
        if (bi.parent != CQ_BLOCK_NONE) {
            cq_prefix_info(p->ix, bi.parent, &pi, NULL);
            ph = pi.hash;
        }
        const uint64_t wl = kvp_wire_len(p, bi.pos);
        cq_put_u32le(q, FLAG_PUBLISHED);
        cq_put_u32le(q + 4, 0);
        cq_put_u64le(q + 8, wl);
        kvp_wire_write(p, order[i], bi.pos, bi.tokens, ph, bi.hash, q + REC_HDR);
        q += REC_HDR + wl;
    }
    const uint32_t tags[2] = {TAG_CONF, TAG_BLKS};
    finish_image(img, 2, tags, len);
out:
    pthread_mutex_unlock(&p->mu);
    free(ids);
    free(start);
    if (!st) st = cq_write_file_atomic(path, img, (size_t)total, err);
    free(img);
    return st;
}

/* ------------------------------------------------------------ reading a file */

/* The largest file this pool could have written: every block the budget holds (each
 * could be a first block), twice, an open block and the headers. */
static uint64_t file_bound(const cq_kvpool *p) {
    const uint64_t per = REC_HDR + kvp_wire_len(p, 0);
    cq_prefix_stats ps;
    cq_prefix_stats_get(p->ix, &ps);
    const uint64_t blocks = ps.budget_bytes / (p->block_bytes ? p->block_bytes : 1) + 2;
    return (1u << 20) + 2 * blocks * per + 4 * per + 2ull * p->tail_bytes;
}

cq_status seqf_read(const cq_kvpool *p, const char *path, uint8_t **buf, size_t *len,
                    uint32_t *version, cq_err *err) {
    int fd;
    uint64_t size;
    *buf = NULL;
    cq_status st = cq_file_open(path, &fd, &size, err);
    if (st) return st;
    uint8_t hdr[FILE_HDR];
    const size_t nh = size < FILE_HDR ? (size_t)size : FILE_HDR;
    st = cq_file_read_at(fd, path, 0, hdr, nh, err);
    if (!st && (nh < FILE_HDR || memcmp(hdr, FILE_MAGIC, 8)))
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                        "not a ChannelQuant cache file (%llu bytes; magic)",
                        (unsigned long long)size);
    if (!st && CRC_BAD(cq_get_u32le(hdr + 36), cq_crc32c(0, hdr, 36)))
        st = cq_err_set(err, CQ_ERR_CHECKSUM, -1, -1, "header CRC: stored 0x%08x, computed 0x%08x",
                        cq_get_u32le(hdr + 36), cq_crc32c(0, hdr, 36));
    if (!st) *version = cq_get_u32le(hdr + 8);
    if (!st && (*version < 1 || *version > 3))
        st = cq_err_set(err, CQ_ERR_VERSION, -1, -1,
                        "file format version %u, cq_kvpool_load_seq reads versions 1..3", *version);
    if (!st && cq_get_u64le(hdr + 16) != size)
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                        "size: file is %llu bytes, its header says %llu (truncated or extended)",
                        (unsigned long long)size, (unsigned long long)cq_get_u64le(hdr + 16));
    const uint64_t bound = file_bound(p);
    if (!st && (size > bound || size > SIZE_MAX / 2))
        st = cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                        "the file is %llu bytes, more than this pool could have written (%llu)",
                        (unsigned long long)size, (unsigned long long)bound);
    if (!st && !(*buf = malloc((size_t)size)))
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory (%llu bytes)",
                        (unsigned long long)size);
    if (!st) st = cq_file_read_at(fd, path, 0, *buf, (size_t)size, err);
    close(fd);
    if (st) {
        free(*buf);
        *buf = NULL;
        return st;
    }
    *len = (size_t)size;
    return CQ_OK;
}

/* Version 3: the header fields and every section (tags in order, CRCs); sec[i], sl[i] =
 * payload i. */
static cq_status check_sections(const uint8_t *b, size_t n, uint32_t n_sec, const uint32_t *tags,
                                const uint8_t **sec, uint64_t *sl, cq_err *err) {
    if (cq_get_u32le(b + 12) != FILE_HDR || cq_get_u32le(b + 28) || cq_get_u32le(b + 32))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "header: size %u, flags 0x%x, reserved 0x%x",
                          cq_get_u32le(b + 12), cq_get_u32le(b + 28), cq_get_u32le(b + 32));
    if (cq_get_u32le(b + 24) != n_sec)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "header: %u sections, this file kind has %u",
                          cq_get_u32le(b + 24), n_sec);
    size_t o = FILE_HDR;
    for (uint32_t i = 0; i < n_sec; i++) {
        if (n - o < SEC_HDR)
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "section %u: header missing", i);
        const uint8_t *h = b + o;
        if (CRC_BAD(cq_get_u32le(h + 20), cq_crc32c(0, h, 20)))
            return cq_err_set(err, CQ_ERR_CHECKSUM, -1, -1, "section %u: header CRC", i);
        if (cq_get_u32le(h) != tags[i] || cq_get_u32le(h + 4) != i)
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                              "section %u: tag 0x%08x index %u, expected 0x%08x index %u", i,
                              cq_get_u32le(h), cq_get_u32le(h + 4), tags[i], i);
        const uint64_t l = cq_get_u64le(h + 8);
        o += SEC_HDR;
        if (l > n - o)
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                              "section %u: %llu bytes run past the end of the file", i,
                              (unsigned long long)l);
        if (CRC_BAD(cq_get_u32le(h + 16), cq_crc32c(0, b + o, (size_t)l)))
            return cq_err_set(err, CQ_ERR_CHECKSUM, -1, -1, "section %u: payload CRC", i);
        sec[i] = b + o;
        sl[i] = l;
        o += (size_t)l;
    }
    if (o != n)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%zu bytes after the last section", n - o);
    return CQ_OK;
}

static cq_status check_conf(const cq_kvpool *p, const uint8_t *c, uint64_t l, uint32_t kind,
                            cq_err *err) {
    if (l < CONF_FIXED)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "configuration: %llu bytes",
                          (unsigned long long)l);
    if (cq_get_u32le(c) != kind)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "file kind %u: %s", cq_get_u32le(c),
                          cq_get_u32le(c) == KIND_SEQ      ? "a sequence (cq_kvpool_load_seq)"
                          : cq_get_u32le(c) == KIND_CACHED ? "cached blocks (cq_kvpool_load_cached)"
                                                           : "unknown");
    if (cq_get_u64le(c + 16) != p->model_hash)
        return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                          "model hash 0x%016llx, this pool's is 0x%016llx",
                          (unsigned long long)cq_get_u64le(c + 16),
                          (unsigned long long)p->model_hash);
    if (cq_get_u64le(c + 8) != p->config_hash)
        return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                          "configuration hash 0x%016llx, this pool's is 0x%016llx (another "
                          "shape, G, sinks, formats or masks)",
                          (unsigned long long)cq_get_u64le(c + 8),
                          (unsigned long long)p->config_hash);
    if (l != conf_bytes(p))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "configuration: %llu bytes, expected %llu",
                          (unsigned long long)l, (unsigned long long)conf_bytes(p));
    uint8_t *want = malloc((size_t)l);
    if (!want) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    write_conf(p, kind, want);
    const int diff = memcmp(want, c, (size_t)l) != 0;
    free(want);
    if (diff)
        return cq_err_set(err, CQ_ERR_MISMATCH, -1, -1,
                          "configuration: layout or formats differ from this pool's");
    return CQ_OK;
}

/* The BLKS payload: n blocks, each checked (w[i], flags[i]); w must hold n entries. */
static cq_status parse_blocks(const cq_kvpool *p, const uint8_t *c, uint64_t l, uint32_t *nb,
                              kvp_wire **w, uint32_t **flags, cq_err *err) {
    *w = NULL;
    *flags = NULL;
    if (l < 8 || cq_get_u32le(c + 4))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "blocks: section malformed");
    const uint32_t n = cq_get_u32le(c);
    if (n > (l - 8) / (REC_HDR + 84))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "blocks: %u blocks in %llu bytes", n,
                          (unsigned long long)l);
    *w = calloc((size_t)n + 1, sizeof **w);
    *flags = calloc((size_t)n + 1, sizeof **flags);
    if (!*w || !*flags) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    uint64_t o = 8;
    cq_status st = CQ_OK;
    uint32_t i = 0;
    for (; i < n && !st; i++) {
        if (l - o < REC_HDR) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "block %u: record truncated", i);
            break;
        }
        const uint32_t fl = cq_get_u32le(c + o);
        const uint64_t wl = cq_get_u64le(c + o + 8);
        if (fl > FLAG_PUBLISHED || cq_get_u32le(c + o + 4) || wl > l - o - REC_HDR) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "block %u: record flags 0x%x, %llu bytes",
                            i, fl, (unsigned long long)wl);
            break;
        }
        (*flags)[i] = fl;
        st = kvp_wire_parse(p, c + o + REC_HDR, (size_t)wl, &(*w)[i], err);
        if (st && err) {
            char m[sizeof err->msg];
            memcpy(m, err->msg, sizeof m);
            cq_err_set(err, st, err->token, err->channel, "block %u: %.200s", i, m);
        }
        o += REC_HDR + wl;
    }
    *nb = n; /* entries not parsed hold no tokens (calloc): free_blocks frees all n */
    if (!st && o != l)
        st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "blocks: %llu trailing bytes",
                        (unsigned long long)(l - o));
    return st;
}

static void free_blocks(kvp_wire *w, uint32_t n) {
    for (uint32_t i = 0; w && i < n; i++) free(w[i].tokens);
    free(w);
}

/* Pin blocks (a reference each) and release them again. */
static void pin_all(cq_kvpool *p, const uint32_t *ids, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) (void)cq_prefix_ref(p->ix, ids[i], NULL);
}

/* Bytes of the LRU that pinning ids[0, n) takes out of reach of eviction. */
static uint64_t lru_part(const cq_kvpool *p, const uint32_t *ids, uint32_t n) {
    uint64_t b = 0;
    for (uint32_t i = 0; i < n; i++) {
        cq_prefix_block_info bi;
        cq_prefix_info(p->ix, ids[i], &bi, NULL);
        if (bi.in_lru) b += bi.bytes;
    }
    return b;
}

/* CQ_ERR_BUDGET (nothing changed) unless need bytes fit with pinned LRU bytes pinned. */
static cq_status fits(const cq_kvpool *p, uint64_t need, uint64_t pinned, const char *what,
                      cq_err *err) {
    cq_prefix_stats ps;
    cq_prefix_stats_get(p->ix, &ps);
    if (need + pinned > ps.budget_bytes - ps.used_bytes + ps.lru_bytes)
        return cq_err_set(err, CQ_ERR_BUDGET, -1, -1,
                          "%s needs %llu bytes (budget %llu, used %llu, evictable %llu)", what,
                          (unsigned long long)need, (unsigned long long)ps.budget_bytes,
                          (unsigned long long)ps.used_bytes,
                          (unsigned long long)(ps.lru_bytes - pinned));
    return CQ_OK;
}

/* ------------------------------------------------------------ load the cached blocks */

cq_status cq_kvpool_load_cached(cq_kvpool *p, const char *path, cq_err *err) {
    cq_err_clear(err);
    if (!p || !path) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "pool or path is NULL");
    uint8_t *b = NULL, *mark = NULL;
    size_t n = 0;
    uint32_t version = 0, nb = 0, *flags = NULL, *ids = NULL, *pins = NULL, *fresh = NULL;
    uint32_t *par_file = NULL, *par_pool = NULL;
    uint8_t *own = NULL;
    kvp_wire *w = NULL;
    cq_status st = seqf_read(p, path, &b, &n, &version, err);
    if (!st && version != 3)
        st = cq_err_set(err, CQ_ERR_VERSION, -1, -1,
                        "file format version %u holds one cache, not cached blocks (version 3)",
                        version);
    const uint32_t tags[2] = {TAG_CONF, TAG_BLKS};
    const uint8_t *sec[2];
    uint64_t sl[2];
    if (!st) st = check_sections(b, n, 2, tags, sec, sl, err);
    if (!st) st = check_conf(p, sec[0], sl[0], KIND_CACHED, err);
    if (!st) st = parse_blocks(p, sec[1], sl[1], &nb, &w, &flags, err);
    for (uint32_t i = 0; !st && i < nb; i++) {
        if (flags[i] != FLAG_PUBLISHED)
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "block %u: not published", i);
        for (uint32_t k = 0; !st && k < i; k++)
            if (w[k].info.chain_hash == w[i].info.chain_hash && w[k].info.pos == w[i].info.pos)
                st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "block %u repeats block %u", i, k);
    }
    const size_t na = (size_t)nb + 1;
    if (!st && (!(ids = malloc(na * 4)) || !(par_file = malloc(na * 4)) ||
                !(par_pool = malloc(na * 4)) || !(own = calloc(na, 1)) ||
                !(fresh = malloc(na * 4))))
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    if (st) goto done;
    pthread_mutex_lock(&p->mu);
    /* (1) per block: the pool's equal block (reused), or its parent (a file block before it,
     * or the pool's); pin every block of the pool that is reused or a parent, and their
     * ancestors, so that the allocations' evictions cannot take them */
    const uint32_t cap = cq_prefix_capacity(p->ix);
    uint32_t n_pins = 0, n_fresh = 0;
    uint64_t need = 0;
    cq_prefix_block_info bi;
    if (!(mark = calloc((size_t)cap + 1, 1)) || !(pins = malloc(((size_t)cap + 1) * 4)))
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    for (uint32_t i = 0; !st && i < nb; i++) {
        const cq_block_wire_info *in = &w[i].info;
        ids[i] = kvp_find_cached(p, in->chain_hash, in->pos, &bi);
        if (ids[i] != CQ_BLOCK_NONE &&
            memcmp(bi.tokens, w[i].tokens, (size_t)in->n_tokens * sizeof *w[i].tokens))
            ids[i] = CQ_BLOCK_NONE;
        own[i] = ids[i] != CQ_BLOCK_NONE;
        par_file[i] = par_pool[i] = CQ_BLOCK_NONE;
        if (!own[i] && in->pos) {
            for (uint32_t k = 0; k < i && par_file[i] == CQ_BLOCK_NONE; k++)
                if (w[k].info.chain_hash == in->parent_hash && w[k].info.pos == in->pos - 1)
                    par_file[i] = k;
            if (par_file[i] == CQ_BLOCK_NONE &&
                (par_pool[i] = kvp_find_cached(p, in->parent_hash, in->pos - 1, &bi)) ==
                    CQ_BLOCK_NONE)
                st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                                "block %u at position %u: its parent is neither before it in the "
                                "file nor cached in the pool", i, in->pos);
        }
        for (uint32_t a = own[i] ? ids[i] : par_pool[i]; a != CQ_BLOCK_NONE && !mark[a];) {
            mark[a] = 1;
            pins[n_pins++] = a;
            cq_prefix_info(p->ix, a, &bi, NULL);
            a = bi.parent;
        }
        if (!own[i]) need += p->block_bytes + (in->pos == 0 ? p->sink_bytes : 0);
    }
    /* (2) the budget for the whole file, before anything changes */
    if (!st) st = fits(p, need, lru_part(p, pins, n_pins), "loading the cached blocks", err);
    if (st) {
        pthread_mutex_unlock(&p->mu);
        goto done;
    }
    pin_all(p, pins, n_pins);
    /* (3) allocate, fill and publish in file order (parents first); the new blocks stay
     * referenced until the end, so that later allocations cannot evict them */
    for (uint32_t i = 0; i < nb && !st; i++) {
        if (own[i]) continue;
        st = kvp_alloc_blocks(p, 1, w[i].info.pos, &ids[i], err);
        if (st) break;
        fresh[n_fresh++] = ids[i];
        kvp_wire_import(p, ids[i], &w[i]);
        const uint32_t par = par_file[i] != CQ_BLOCK_NONE ? ids[par_file[i]] : par_pool[i];
        uint32_t canon;
        st = cq_prefix_commit(p->ix, ids[i], par, w[i].tokens, w[i].info.n_tokens, &canon, err);
    }
    (void)cq_prefix_release_chain(p->ix, fresh, n_fresh, NULL); /* deepest first */
    for (uint32_t i = 0; i < n_pins / 2; i++) { /* pins: each chain deepest first */
        const uint32_t t = pins[i];
        pins[i] = pins[n_pins - 1 - i];
        pins[n_pins - 1 - i] = t;
    }
    (void)cq_prefix_release_chain(p->ix, pins, n_pins, NULL);
    pthread_mutex_unlock(&p->mu);
done:
    free(mark);
    free(pins);
    free(ids);
    free(par_file);
    free(par_pool);
    free(own);
    free(fresh);
    free(flags);
    free_blocks(w, nb);
    free(b);
    return st;
}

/* ------------------------------------------------------------ load a sequence */

/* The open block of a TAIL section, per (layer, store): committed tokens in the block, in
 * flight, and where their bytes lie. */
typedef struct tent {
    uint32_t cd, nr;
    const uint8_t *data, *resid;
} tent;

typedef struct tail_view {
    uint32_t n, open, ns;
    const uint8_t *sinks; /* the open block 0's sinks [NL][H][2][ns][D], or NULL */
    tent *e;              /* [NA] */
} tail_view;

static cq_status parse_tail(const cq_kvpool *p, const uint8_t *c, uint64_t l, uint32_t nb,
                            tail_view *t, cq_err *err) {
    if (l < 16 || cq_get_u32le(c + 12))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "tail: section malformed");
    t->n = cq_get_u32le(c);
    t->open = cq_get_u32le(c + 8);
    const uint32_t n = t->n, F = p->S + p->G;
    const uint32_t want_nb = n < F ? 0 : (n - p->S) / p->G;
    if (n > 0xFFFFFFF0u || cq_get_u32le(c + 4) != nb || nb != want_nb ||
        t->open != (kvp_blocks_for(p, n) > nb))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                          "tail: %u tokens, %u full blocks (the file holds %u), open %u",
                          n, cq_get_u32le(c + 4), nb, t->open);
    uint64_t o = 16;
    if (!t->open) {
        if (l != o) return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "tail: trailing bytes");
        return CQ_OK;
    }
    t->ns = n < p->S ? n : p->S;
    const uint32_t T = (n > p->S ? n - p->S : 0) - nb * p->G; /* store tokens in the block */
    if (nb == 0 && t->ns) {
        const uint64_t sb = 4ull * p->NL * p->H * t->ns * p->D;
        if (l - o < sb || !cq_fused_all_finite(c + o, (size_t)(sb / 2)))
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "tail: sinks truncated or not finite");
        t->sinks = c + o;
        o += sb;
    }
    char where[64];
    for (uint32_t L = 0; L < p->NL; L++)
        for (uint32_t j = 0; j < p->NS; j++) {
            const cq_store *s = store_at(p, L, j);
            tent *e = &t->e[L * p->NS + j];
            if (l - o < TENT_HDR)
                return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "tail: truncated");
            const uint8_t *h = c + o;
            o += TENT_HDR;
            e->cd = cq_get_u32le(h + 4);
            e->nr = cq_get_u32le(h + 8);
            const uint64_t dl = cq_get_u64le(h + 16);
            const uint32_t kind = s ? (uint32_t)s->kind : KIND_NONE;
            const uint32_t cd = s ? T - T % s->unit : 0, nr = s ? T % s->unit : 0;
            if (cq_get_u32le(h) != kind || cq_get_u32le(h + 12) || e->cd != cd || e->nr != nr ||
                dl != (s ? cq_slot_canon_len_n(s, cd) : 0) ||
                l - o < dl + 2ull * nr * (s ? s->D : 0))
                return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                                  "tail: layer %u store %u: kind %u, %u committed, %u in flight, "
                                  "%llu bytes (expected kind %u, %u, %u)",
                                  L, j, cq_get_u32le(h), e->cd, e->nr, (unsigned long long)dl,
                                  kind, cd, nr);
            if (!s) continue;
            snprintf(where, sizeof where, "tail: layer %u store %u", L, j);
            cq_status st = cq_slot_check_n(s, c + o, cd, where, err);
            if (st) return st;
            e->data = c + o;
            o += dl;
            if (!cq_fused_all_finite(c + o, (size_t)nr * s->D))
                return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: non-finite in-flight token",
                                  where);
            e->resid = c + o;
            o += 2ull * nr * s->D;
        }
    if (o != l) return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "tail: trailing bytes");
    return CQ_OK;
}

/* Empty again: every store without tokens or pages (the blocks are released by the caller). */
static void seq_reset(cq_kvpool *p, cq_seq *s) {
    kvp_clear_stores(p, s);
    kvp_tail_detach(p, s);
    s->n_blk = 0;
    kvp_bind_sinks(p, s);
}

/* Build sequence s (empty, in the pool) from the checked file parts, under the mutex. */
static cq_status build_seq(cq_kvpool *p, cq_seq *s, const kvp_wire *w, const uint32_t *flags,
                           uint32_t nb, const tail_view *t, cq_err *err) {
    const uint32_t nt = nb + t->open;
    uint32_t *ids = malloc(((size_t)nt + 1) * sizeof *ids);
    if (!ids) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    if (nt > s->cap_blk) {
        uint32_t *nbk = kvp_alloc(p, (size_t)nt * sizeof *nbk);
        if (!nbk) {
            free(ids);
            return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        }
        kvp_free(p, s->blk, (size_t)s->cap_blk * sizeof *s->blk);
        s->blk = nbk;
        s->cap_blk = nt;
    }
    /* (1) the published blocks the pool holds already (dedup) */
    uint32_t r = 0, parent = CQ_BLOCK_NONE;
    cq_prefix_block_info bi;
    while (r < nb && (flags[r] & FLAG_PUBLISHED)) {
        const uint32_t id = kvp_find_cached(p, w[r].info.chain_hash, r, &bi);
        if (id == CQ_BLOCK_NONE || bi.parent != parent ||
            memcmp(bi.tokens, w[r].tokens, (size_t)w[r].info.n_tokens * sizeof *w[r].tokens))
            break;
        ids[r++] = parent = id;
    }
    /* (2) the budget for the rest, with the reused blocks pinned; nothing changed yet */
    int need_tail = 0;
    for (uint32_t a = 0; t->open && a < p->NA; a++) need_tail |= t->e[a].nr != 0;
    uint64_t need = need_tail ? p->tail_bytes : 0;
    for (uint32_t i = r; i < nt; i++) need += p->block_bytes + (i == 0 ? p->sink_bytes : 0);
    cq_status st = fits(p, need, lru_part(p, ids, r), "restoring the sequence", err);
    if (st) {
        free(ids);
        return st;
    }
    /* (3) references: the reused blocks, new ones, the tail */
    pin_all(p, ids, r);
    uint32_t got = r;
    for (; got < nt && !st; got++)
        if ((st = kvp_alloc_blocks(p, 1, got, &ids[got], err))) break;
    if (!st && need_tail) st = kvp_tail_attach(p, s, err);
    if (st) {
        (void)cq_prefix_release_chain(p->ix, ids, got, NULL);
        free(ids);
        return st;
    }
    /* (4) the bytes, then publishing in chain order */
    for (uint32_t i = r; i < nb; i++) kvp_wire_import(p, ids[i], &w[i]);
    if (t->open) {
        const uint32_t id = ids[nb];
        if (t->sinks) {
            const size_t hb = (size_t)p->S * p->D, sb = (size_t)t->ns * p->D;
            uint16_t *sl = (uint16_t *)p->sink_of[id];
            for (size_t k = 0; k < (size_t)p->NL * p->H * 2; k++)
                cq_get_u16le_n(sl + k * hb, t->sinks + k * sb * 2, sb);
        }
        for (uint32_t L = 0; L < p->NL; L++)
            for (uint32_t j = 0; j < p->NS; j++) {
                const cq_store *d = store_at(p, L, j);
                const tent *e = &t->e[L * p->NS + j];
                if (d) cq_slot_import_n(d, kvp_slot(p, L * p->NS + j, id), e->cd, e->data);
            }
    }
    for (uint32_t i = r; i < nb && (flags[i] & FLAG_PUBLISHED); i++) {
        uint32_t canon = ids[i];
        if (cq_prefix_commit(p->ix, ids[i], i ? ids[i - 1] : CQ_BLOCK_NONE, w[i].tokens,
                             w[i].info.n_tokens, &canon, NULL))
            break; /* stays private: the sequence is whole either way */
        if (canon != ids[i]) { /* an equal block is cached: use it (dedup) */
            (void)cq_prefix_ref(p->ix, canon, NULL);
            (void)cq_prefix_release(p->ix, ids[i], NULL);
            ids[i] = canon;
        }
    }
    /* (5) the stores: pages from the blocks, committed and in-flight tokens */
    if (nt) memcpy(s->blk, ids, (size_t)nt * sizeof *ids);
    s->n_blk = nt;
    kvp_bind_sinks(p, s);
    for (uint32_t L = 0; L < p->NL && !st; L++) {
        cq_layer *l = &s->c->layers[L];
        l->tokens = t->n;
        for (uint32_t j = 0; j < p->NS && !st; j++) {
            cq_store *d = cq_layer_store(l, p->H, j);
            if (!d) continue;
            const tent *e = t->open ? &t->e[L * p->NS + j] : NULL;
            d->n_done = nb * p->G + (e ? e->cd : 0);
            d->n_resid = 0;
            d->tail_g = 0;
            if (cq_store_reserve(s->c, l, d, d->n_done)) {
                st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
                break;
            }
            if (e && e->nr) {
                cq_get_u16le_n(d->resid, e->resid, (size_t)e->nr * d->D);
                d->n_resid = e->nr;
            }
        }
    }
    if (st) { /* undo: an empty sequence again (published blocks stay cached) */
        seq_reset(p, s);
        (void)cq_prefix_release_chain(p->ix, ids, nt, NULL);
    }
    free(ids);
    return st;
}

cq_status cq_kvpool_load_seq(cq_kvpool *p, const char *path, cq_seq **out, cq_err *err) {
    cq_err_clear(err);
    if (!p || !path || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "pool, path or out is NULL");
    *out = NULL;
    uint8_t *b = NULL;
    size_t n = 0;
    uint32_t version = 0, nb = 0, *flags = NULL;
    kvp_wire *w = NULL;
    tail_view t;
    memset(&t, 0, sizeof t);
    cq_seq *s = NULL;
    cq_status st = seqf_read(p, path, &b, &n, &version, err);
    if (!st && version < 3) {
        st = seqf_load_v12(p, b, n, out, err);
        goto done;
    }
    const uint32_t tags[3] = {TAG_CONF, TAG_BLKS, TAG_TAIL};
    const uint8_t *sec[3];
    uint64_t sl[3];
    if (!st) st = check_sections(b, n, 3, tags, sec, sl, err);
    if (!st) st = check_conf(p, sec[0], sl[0], KIND_SEQ, err);
    if (!st) st = parse_blocks(p, sec[1], sl[1], &nb, &w, &flags, err);
    for (uint32_t i = 0; !st && i < nb; i++)
        if (w[i].info.pos != i || (i && w[i].info.parent_hash != w[i - 1].info.chain_hash) ||
            (i && (flags[i] & FLAG_PUBLISHED) && !(flags[i - 1] & FLAG_PUBLISHED)))
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                            "block %u: position %u, not the chain of the blocks before it", i,
                            w[i].info.pos);
    if (!st && !(t.e = calloc((size_t)p->NA + 1, sizeof *t.e)))
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    if (!st) st = parse_tail(p, sec[2], sl[2], nb, &t, err);
    if (!st) st = cq_seq_create(p, &s, err);
    if (!st) {
        pthread_mutex_lock(&p->mu);
        st = build_seq(p, s, w, flags, nb, &t, err);
        pthread_mutex_unlock(&p->mu);
        if (st) cq_seq_free(s);
        else *out = s;
    }
done:
    free(t.e);
    free(flags);
    free_blocks(w, nb);
    free(b);
    if (st && err) {
        char m[sizeof err->msg], bp[72];
        memcpy(m, err->msg, sizeof m);
        cq_err_set(err, st, err->token, err->channel, "%s: %.150s",
                   cq_path_brief(path, bp, sizeof bp), m);
    }
    return st;
}
