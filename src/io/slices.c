/* SPDX-License-Identifier: MIT */
/*
 * slices.c - the real-model replay slices of CONTRACT.md section 8
 * (manifest.txt, key_i/val_i/keymask_i/keyhat_i/valhat_i/vhatwht_i) and their
 * bit-exact check: CQ-4+ keys (G=128, the slice's mask), INT4 per-token
 * values, CQ-3-rot values.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_vectors.h"

#define SLICE_GROUP 128
#define MAX_FILE ((size_t)1 << 28)

/* Parse up to `max` unsigned decimal integers from the first line; returns how many. */
static int parse_header(const char *text, size_t len, uint32_t *v, int max, size_t *consumed) {
    size_t i = 0;
    int n = 0;
    while (i < len && text[i] != '\n') {
        while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r')) i++;
        if (i >= len || text[i] == '\n') break;
        if (text[i] < '0' || text[i] > '9' || n == max) return -1;
        unsigned long long x = 0;
        while (i < len && text[i] >= '0' && text[i] <= '9') {
            x = x * 10 + (unsigned)(text[i] - '0');
            if (x > 0xFFFFFFFFull) return -1;
            i++;
        }
        if (i < len && !(text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
            return -1;
        v[n++] = (uint32_t)x;
    }
    *consumed = i;
    return n;
}

cq_status cq_slice_manifest_load(const char *dir, cq_slice_manifest *m, cq_err *err) {
    cq_err_clear(err);
    if (!dir || !m) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    memset(m, 0, sizeof *m);
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/manifest.txt", dir) >= sizeof path)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "path too long");
    char *buf;
    size_t len;
    cq_status st = cq_read_file(path, 1 << 20, &buf, &len, err);
    if (st) return st;
    size_t pos = 0, used;
    uint32_t v[5];
    int n = parse_header(buf, len, v, 1, &used);
    if (n != 1 || v[0] == 0 || v[0] > 100000) {
        free(buf);
        return cq_err_set(err, CQ_ERR_FORMAT, 1, -1, "%s: line 1 must hold the slice count", path);
    }
    uint32_t count = v[0];
    pos = used + (used < len);
    m->count = count;
    m->index = calloc(count, 4);
    m->D = calloc(count, 4);
    m->T = calloc(count, 4);
    m->layer = calloc(count, 4);
    m->head = calloc(count, 4);
    if (!m->index || !m->D || !m->T || !m->layer || !m->head) {
        free(buf);
        cq_slice_manifest_free(m);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    for (uint32_t i = 0; i < count; i++) {
        if (pos >= len) {
            st = cq_err_set(err, CQ_ERR_FORMAT, i + 2, -1, "%s: %u slices announced, %u found", path,
                            count, i);
            break;
        }
        n = parse_header(buf + pos, len - pos, v, 5, &used);
        if (n != 5 || v[1] < CQ_MIN_DIM || v[1] > CQ_MAX_DIM || (v[1] & 1) || v[2] == 0 ||
            v[2] > (1u << 20)) {
            st = cq_err_set(err, CQ_ERR_FORMAT, i + 2, -1,
                            "%s: line %u must be 'i D T layer head' with a valid D and T", path, i + 2);
            break;
        }
        m->index[i] = v[0];
        m->D[i] = v[1];
        m->T[i] = v[2];
        m->layer[i] = v[3];
        m->head[i] = v[4];
        pos += used + (pos + used < len);
    }
    free(buf);
    if (st) cq_slice_manifest_free(m);
    return st;
}

void cq_slice_manifest_free(cq_slice_manifest *m) {
    if (!m) return;
    free(m->index);
    free(m->D);
    free(m->T);
    free(m->layer);
    free(m->head);
    memset(m, 0, sizeof *m);
}

/* Load one slice file: optional header (expected values in hdr[0..nh)), then n words. */
static cq_status load_words(const char *dir, const char *stem, uint32_t idx, const uint32_t *hdr,
                            int nh, int nh_alt, unsigned digits, size_t want, uint32_t **out,
                            cq_err *err) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s_%u.hex", dir, stem, idx) >= sizeof path)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "path too long");
    char *buf;
    size_t len;
    cq_status st = cq_read_file(path, MAX_FILE, &buf, &len, err);
    if (st) return st;
    size_t skip = 0;
    if (nh > 0) {
        uint32_t v[4];
        size_t used;
        int n = parse_header(buf, len, v, 4, &used);
        int ok = (n == nh || n == nh_alt);
        for (int i = 0; ok && i < 2; i++) ok = v[i] == hdr[i];
        if (!ok) {
            free(buf);
            return cq_err_set(err, CQ_ERR_FORMAT, 1, -1, "%s: header must be '%u %u%s'", path,
                              hdr[0], hdr[1], nh_alt > nh ? " [bits]" : "");
        }
        skip = used;
    }
    size_t n;
    st = cq_hex_parse(buf + skip, len - skip, digits, out, &n, path, err);
    free(buf);
    if (st) return st;
    if (n != want) {
        free(*out);
        *out = NULL;
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1, "%s: %zu words, expected %zu", path, n, want);
    }
    return CQ_OK;
}

static uint16_t *to_u16(uint32_t *w, size_t n) {
    uint16_t *o = malloc(n * 2 + 1);
    if (o)
        for (size_t i = 0; i < n; i++) o[i] = (uint16_t)w[i];
    free(w);
    return o;
}

cq_status cq_slice_load(const char *dir, const cq_slice_manifest *m, uint32_t i, cq_slice *s,
                        cq_err *err) {
    cq_err_clear(err);
    if (!dir || !m || !s) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (i >= m->count) return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "slice %u of %u", i, m->count);
    memset(s, 0, sizeof *s);
    s->index = m->index[i];
    s->D = m->D[i];
    s->T = m->T[i];
    s->layer = m->layer[i];
    s->head = m->head[i];
    size_t td = (size_t)s->D * s->T;
    uint32_t hdr[2] = {s->D, s->T};
    uint32_t *k = NULL, *v = NULL, *mask = NULL;
    cq_status st;
    if ((st = load_words(dir, "key", s->index, hdr, 2, 2, 4, td, &k, err)) ||
        (st = load_words(dir, "val", s->index, hdr, 3, 2, 4, td, &v, err)) ||
        (st = load_words(dir, "keymask", s->index, NULL, 0, 0, 2, s->D, &mask, err)) ||
        (st = load_words(dir, "keyhat", s->index, NULL, 0, 0, 8, td, &s->keyhat, err)) ||
        (st = load_words(dir, "valhat", s->index, NULL, 0, 0, 8, td, &s->valhat, err)) ||
        (st = load_words(dir, "vhatwht", s->index, NULL, 0, 0, 8, td, &s->vhatwht, err))) {
        free(k);
        free(v);
        free(mask);
        cq_slice_free(s);
        return st;
    }
    s->key = to_u16(k, td);
    s->val = to_u16(v, td);
    s->mask = malloc(s->D);
    if (!s->key || !s->val || !s->mask) {
        free(mask);
        cq_slice_free(s);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    for (uint32_t c = 0; c < s->D; c++) {
        if (mask[c] > 1) {
            free(mask);
            cq_slice_free(s);
            return cq_err_set(err, CQ_ERR_FORMAT, -1, (int32_t)c, "keymask_%u: byte %u is not 0/1",
                              m->index[i], c);
        }
        s->mask[c] = (uint8_t)mask[c];
    }
    free(mask);
    return CQ_OK;
}

void cq_slice_free(cq_slice *s) {
    if (!s) return;
    free(s->key);
    free(s->val);
    free(s->mask);
    free(s->keyhat);
    free(s->valhat);
    free(s->vhatwht);
    memset(s, 0, sizeof *s);
}

static int compare_f32(const char *surface, const uint32_t *exp, const float *got, size_t n,
                       cq_mismatch *mm) {
    for (size_t i = 0; i < n; i++)
        if (exp[i] != cq_f32_bits(got[i])) {
            *mm = (cq_mismatch){surface, "decompress", i, exp[i], cq_f32_bits(got[i]), 8};
            return 1;
        }
    return 0;
}

cq_status cq_slice_check(const cq_slice *s, cq_mismatch *mm, cq_err *err) {
    cq_err_clear(err);
    cq_mismatch local;
    if (!mm) mm = &local;
    memset(mm, 0, sizeof *mm);
    cq_params kp, vp;
    cq_status st = cq_params_init_mask(&kp, CQ_TIER_CQ4P, s->D, SLICE_GROUP, s->mask, err);
    if (st) return st;
    if ((st = cq_params_init(&vp, CQ_TIER_CQ4, s->D, SLICE_GROUP, NULL, 0, err))) return st;
    cq_stream_sizes sz;
    if ((st = cq_stream_sizes_of(&kp, s->T, &sz))) return cq_err_set(err, st, -1, -1, "overflow");
    size_t td = (size_t)s->T * s->D;
    uint8_t *kpay = calloc(sz.key_payload + 1, 1), *vpay = calloc(sz.val_payload + 1, 1);
    uint8_t *wpay = calloc(cq3rot_payload_bytes(s->D, s->T) + 1, 1);
    uint16_t *ksc = calloc(sz.key_scales + 1, 2), *side = calloc(sz.sidecar + 1, 2);
    uint16_t *vsc = calloc(sz.val_scales + 1, 2), *wsc = calloc(s->T + 1, 2);
    float *out = calloc(td + 1, 4);
    int bad = 0;
    if (!kpay || !vpay || !wpay || !ksc || !side || !vsc || !wsc || !out) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto done;
    }
    cq_key_stream ks = {kpay, ksc, side};
    cq_val_stream vs = {vpay, vsc};
    if ((st = cq_encode_keys(&kp, s->key, s->T, &ks, err))) goto done;
    cq_decode_keys(&kp, kpay, ksc, side, s->T, out);
    if ((bad = compare_f32("keyhat", s->keyhat, out, td, mm))) goto done;
    if ((st = cq_encode_values(&vp, s->val, s->T, &vs, err))) goto done;
    cq_decode_values(&vp, vpay, vsc, s->T, out);
    if ((bad = compare_f32("valhat", s->valhat, out, td, mm))) goto done;
    if ((st = cq3rot_encode(s->val, s->T, s->D, wpay, wsc, err))) goto done;
    if ((st = cq3rot_decode(wpay, wsc, s->T, s->D, out))) {
        st = cq_err_set(err, st, -1, -1, "CQ-3-rot decode failed: %s", cq_status_name(st));
        goto done;
    }
    bad = compare_f32("vhatwht", s->vhatwht, out, td, mm);
done:
    free(kpay);
    free(vpay);
    free(wpay);
    free(ksc);
    free(side);
    free(vsc);
    free(wsc);
    free(out);
    if (st) return st;
    return bad ? CQ_ERR_MISMATCH : CQ_OK;
}
