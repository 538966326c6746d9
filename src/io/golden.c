/* SPDX-License-Identifier: MIT */
/*
 * golden.c - the golden-vector directory format of CONTRACT.md section 7:
 * name parsing, loading (validated), saving (atomic), generation from inputs,
 * and the bit-for-bit conformance check in both directions.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cq_vectors.h"

enum { F_IN_K, F_IN_V, F_MASK, F_KPAY, F_KSC, F_VPAY, F_VSC, F_SIDE, F_KHAT, F_VHAT, F_COUNT };

static const struct {
    const char *file;
    unsigned digits;
} files[F_COUNT] = {
    [F_IN_K] = {"input_k.f16.hex", 4},          [F_IN_V] = {"input_v.f16.hex", 4},
    [F_MASK] = {"outlier_mask.u8.hex", 2},      [F_KPAY] = {"key_payload.u8.hex", 2},
    [F_KSC] = {"key_scales.f16.hex", 4},        [F_VPAY] = {"val_payload.u8.hex", 2},
    [F_VSC] = {"val_scales.f16.hex", 4},        [F_SIDE] = {"sidecar.f16.hex", 4},
    [F_KHAT] = {"expected_k_hat.f32.hex", 8},   [F_VHAT] = {"expected_v_hat.f32.hex", 8},
};

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--; /* tolerate a trailing slash */
    const char *end = path + n, *b = end;
    while (b > path && b[-1] != '/') b--;
    static _Thread_local char buf[256];
    size_t l = (size_t)(end - b);
    if (l >= sizeof buf) l = sizeof buf - 1;
    memcpy(buf, b, l);
    buf[l] = '\0';
    return buf;
}

static int parse_u32(const char **s, uint32_t *out) {
    const char *p = *s;
    if (*p < '0' || *p > '9') return 0;
    unsigned long long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned)(*p - '0');
        if (v > 0xFFFFFFFFull) return 0;
        p++;
    }
    *out = (uint32_t)v;
    *s = p;
    return 1;
}

cq_status cq_golden_parse_name(const char *dir, cq_tier *tier, uint32_t *D, uint32_t *T,
                               uint32_t *G, cq_err *err) {
    if (!dir || !tier || !D || !T || !G) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    const char *name = base_name(dir), *p = name;
    if (*p++ != 'd' || !parse_u32(&p, D) || strncmp(p, "_T", 2) != 0) goto bad;
    p += 2;
    if (!parse_u32(&p, T) || strncmp(p, "_G", 2) != 0) goto bad;
    p += 2;
    if (!parse_u32(&p, G) || strncmp(p, "__", 2) != 0) goto bad;
    p += 2;
    if (strcmp(p, "CQ8") == 0) *tier = CQ_TIER_CQ8;
    else if (strcmp(p, "CQ4") == 0) *tier = CQ_TIER_CQ4;
    else if (strcmp(p, "CQ4plus") == 0) *tier = CQ_TIER_CQ4P;
    else goto bad;
    return CQ_OK;
bad:
    return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                      "'%s' is not a vector name of the form d{D}_T{T}_G{G}__{CQ8|CQ4|CQ4plus}",
                      name);
}

void cq_golden_name(cq_tier tier, uint32_t D, uint32_t T, uint32_t G, char *buf, size_t cap) {
    snprintf(buf, cap, "d%u_T%u_G%u__%s", D, T, G, cq_tier_tag(tier));
}

void cq_golden_free(cq_golden *g) {
    if (!g) return;
    free(g->input_k);
    free(g->input_v);
    free(g->mask);
    free(g->key_payload);
    free(g->key_scales);
    free(g->sidecar);
    free(g->val_payload);
    free(g->val_scales);
    free(g->k_hat);
    free(g->v_hat);
    memset(g, 0, sizeof *g);
}

/* Narrow loaded 32-bit words into the element type (width checked by the parser). */
static void *narrow(uint32_t *w, size_t n, size_t elem) {
    if (elem == 4) return w;
    void *out = malloc(n ? n * elem : 1);
    if (!out) {
        free(w);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (elem == 2) ((uint16_t *)out)[i] = (uint16_t)w[i];
        else ((uint8_t *)out)[i] = (uint8_t)w[i];
    }
    free(w);
    return out;
}

static cq_status load_one(const char *dir, int f, void **dst, size_t *n, cq_err *err) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, files[f].file) >= sizeof path)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "path too long");
    uint32_t *w;
    cq_status st = cq_hex_load(path, files[f].digits, &w, n, err);
    if (st) return st;
    void *v = narrow(w, *n, files[f].digits / 2);
    if (!v) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    *dst = v;
    return CQ_OK;
}

cq_status cq_golden_load(const char *dir, cq_golden *g, cq_err *err) {
    cq_err_clear(err);
    if (!dir || !g) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    memset(g, 0, sizeof *g);
    cq_status st = cq_golden_parse_name(dir, &g->tier, &g->D, &g->T, &g->G, err);
    if (st) return st;
    if (g->D < CQ_MIN_DIM || g->D > CQ_MAX_DIM || (g->D & 1))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "%s: D=%u is outside the contract", dir, g->D);
    if (g->T == 0 || g->T > (1u << 24))
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1, "%s: T=%u is outside [1, 2^24]", dir, g->T);
    if (g->G == 0) return cq_err_set(err, CQ_ERR_GROUP, -1, -1, "%s: G=0", dir);
    void *ptr[F_COUNT] = {0};
    size_t n[F_COUNT] = {0};
    for (int f = 0; f < F_COUNT; f++) {
        st = load_one(dir, f, &ptr[f], &n[f], err);
        if (st) {
            for (int j = 0; j < f; j++) free(ptr[j]);
            return st;
        }
    }
    g->input_k = ptr[F_IN_K];
    g->input_v = ptr[F_IN_V];
    g->mask = ptr[F_MASK];
    g->key_payload = ptr[F_KPAY];
    g->key_scales = ptr[F_KSC];
    g->val_payload = ptr[F_VPAY];
    g->val_scales = ptr[F_VSC];
    g->sidecar = ptr[F_SIDE];
    g->k_hat = ptr[F_KHAT];
    g->v_hat = ptr[F_VHAT];
    g->key_payload_n = n[F_KPAY];
    g->key_scales_n = n[F_KSC];
    g->val_payload_n = n[F_VPAY];
    g->val_scales_n = n[F_VSC];
    g->sidecar_n = n[F_SIDE];
    /* the inputs and hats must have the shape of the name; streams are checked by cq_golden_check */
    size_t td = (size_t)g->T * g->D;
    const struct { int f; size_t want; } shape[] = {
        {F_IN_K, td}, {F_IN_V, td}, {F_MASK, g->D}, {F_KHAT, td}, {F_VHAT, td}};
    for (size_t i = 0; i < sizeof shape / sizeof shape[0]; i++)
        if (n[shape[i].f] != shape[i].want) {
            st = cq_err_set(err, CQ_ERR_SHAPE, -1, -1, "%s/%s: %zu words, expected %zu", dir,
                            files[shape[i].f].file, n[shape[i].f], shape[i].want);
            cq_golden_free(g);
            return st;
        }
    for (uint32_t c = 0; c < g->D; c++)
        if (g->mask[c] > 1) {
            st = cq_err_set(err, CQ_ERR_FORMAT, -1, (int32_t)c, "%s: outlier mask byte %u is %u, not 0/1",
                            dir, c, g->mask[c]);
            cq_golden_free(g);
            return st;
        }
    return CQ_OK;
}

cq_status cq_golden_params(const cq_golden *g, cq_params *p, cq_err *err) {
    return cq_params_init_mask(p, g->tier, g->D, g->G, g->mask, err);
}

/* ------------------------------------------------------------------ save */

static cq_status write_hex(const char *path, const void *data, size_t n, unsigned digits,
                           cq_err *err) {
    size_t cap = n * (digits + 1) + 1;
    char *buf = malloc(cap);
    if (!buf) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = digits == 2 ? ((const uint8_t *)data)[i]
                   : digits == 4 ? ((const uint16_t *)data)[i]
                                 : ((const uint32_t *)data)[i];
        off += (size_t)snprintf(buf + off, cap - off, "%0*x\n", (int)digits, v);
    }
    cq_status st = cq_write_file_atomic(path, buf, off, err);
    free(buf);
    return st;
}

cq_status cq_golden_save(const char *dir, const cq_golden *g, cq_err *err) {
    cq_err_clear(err);
    if (!dir || !g) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    struct stat sb;
    if (stat(dir, &sb) == 0)
        return cq_err_set(err, CQ_ERR_IO, -1, -1, "%s already exists; not overwriting it", dir);
    /* write into a sibling temporary directory, then rename: never half-written */
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid()) >= sizeof tmp)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "path too long");
    if (mkdir(tmp, 0755) != 0)
        return cq_err_set(err, CQ_ERR_IO, -1, -1, "%s: cannot create: %s", tmp, strerror(errno));
    size_t td = (size_t)g->T * g->D;
    const void *data[F_COUNT] = {g->input_k, g->input_v, g->mask, g->key_payload, g->key_scales,
                                 g->val_payload, g->val_scales, g->sidecar, g->k_hat, g->v_hat};
    size_t cnt[F_COUNT] = {td, td, g->D, g->key_payload_n, g->key_scales_n,
                           g->val_payload_n, g->val_scales_n, g->sidecar_n, td, td};
    cq_status st = CQ_OK;
    for (int f = 0; f < F_COUNT && !st; f++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", tmp, files[f].file);
        st = write_hex(path, data[f], cnt[f], files[f].digits, err);
    }
    if (!st && rename(tmp, dir) != 0)
        st = cq_err_set(err, CQ_ERR_IO, -1, -1, "%s: rename failed: %s", dir, strerror(errno));
    if (st) {
        for (int f = 0; f < F_COUNT; f++) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s", tmp, files[f].file);
            unlink(path);
        }
        rmdir(tmp);
    }
    return st;
}

/* -------------------------------------------------------- compute / check */

typedef struct streams {
    cq_stream_sizes sz;
    uint8_t *kpay, *vpay;
    uint16_t *ksc, *side, *vsc;
    float *khat, *vhat;
} streams;

static void streams_free(streams *s) {
    free(s->kpay);
    free(s->vpay);
    free(s->ksc);
    free(s->side);
    free(s->vsc);
    free(s->khat);
    free(s->vhat);
}

/* Encode inputs and decode them back, all into fresh buffers. */
static cq_status encode_all(const cq_params *p, const uint16_t *K, const uint16_t *V, uint32_t T,
                            streams *s, cq_err *err) {
    memset(s, 0, sizeof *s);
    cq_status st = cq_stream_sizes_of(p, T, &s->sz);
    if (st) return cq_err_set(err, st, -1, -1, "stream sizes overflow");
    size_t td = (size_t)T * p->dim;
    s->kpay = calloc(s->sz.key_payload + 1, 1);
    s->vpay = calloc(s->sz.val_payload + 1, 1);
    s->ksc = calloc(s->sz.key_scales + 1, 2);
    s->side = calloc(s->sz.sidecar + 1, 2);
    s->vsc = calloc(s->sz.val_scales + 1, 2);
    s->khat = calloc(td + 1, 4);
    s->vhat = calloc(td + 1, 4);
    if (!s->kpay || !s->vpay || !s->ksc || !s->side || !s->vsc || !s->khat || !s->vhat) {
        streams_free(s);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    cq_key_stream ks = {s->kpay, s->ksc, s->side};
    cq_val_stream vs = {s->vpay, s->vsc};
    if ((st = cq_encode_keys(p, K, T, &ks, err)) || (st = cq_encode_values(p, V, T, &vs, err))) {
        streams_free(s);
        return st;
    }
    return CQ_OK;
}

cq_status cq_golden_compute(cq_golden *g, cq_err *err) {
    cq_params p;
    cq_status st = cq_golden_params(g, &p, err);
    if (st) return st;
    streams s;
    if ((st = encode_all(&p, g->input_k, g->input_v, g->T, &s, err))) return st;
    cq_decode_keys(&p, s.kpay, s.ksc, s.side, g->T, s.khat);
    cq_decode_values(&p, s.vpay, s.vsc, g->T, s.vhat);
    free(g->key_payload);
    free(g->key_scales);
    free(g->sidecar);
    free(g->val_payload);
    free(g->val_scales);
    free(g->k_hat);
    free(g->v_hat);
    g->key_payload = s.kpay;
    g->key_scales = s.ksc;
    g->sidecar = s.side;
    g->val_payload = s.vpay;
    g->val_scales = s.vsc;
    g->k_hat = (uint32_t *)(void *)s.khat;
    g->v_hat = (uint32_t *)(void *)s.vhat;
    g->key_payload_n = s.sz.key_payload;
    g->key_scales_n = s.sz.key_scales;
    g->sidecar_n = s.sz.sidecar;
    g->val_payload_n = s.sz.val_payload;
    g->val_scales_n = s.sz.val_scales;
    return CQ_OK;
}

static uint32_t word_at(const void *p, size_t i, unsigned digits) {
    return digits == 2 ? ((const uint8_t *)p)[i]
         : digits == 4 ? ((const uint16_t *)p)[i]
                       : ((const uint32_t *)p)[i];
}

/* Compare n expected words with n_got words; fill mm at the first difference. */
static int compare(const char *surface, const char *dir, const void *exp, size_t n_exp,
                   const void *got, size_t n_got, unsigned digits, cq_mismatch *mm) {
    if (n_exp != n_got) {
        *mm = (cq_mismatch){surface, dir, SIZE_MAX, (uint32_t)n_exp, (uint32_t)n_got, 0};
        return 1;
    }
    for (size_t i = 0; i < n_exp; i++) {
        uint32_t e = word_at(exp, i, digits), o = word_at(got, i, digits);
        if (e != o) {
            *mm = (cq_mismatch){surface, dir, i, e, o, digits};
            return 1;
        }
    }
    return 0;
}

cq_status cq_golden_check(const cq_golden *g, cq_mismatch *mm, cq_err *err) {
    cq_err_clear(err);
    cq_mismatch local;
    if (!mm) mm = &local;
    memset(mm, 0, sizeof *mm);
    cq_params p;
    cq_status st = cq_golden_params(g, &p, err);
    if (st) return st;
    streams s;
    if ((st = encode_all(&p, g->input_k, g->input_v, g->T, &s, err))) return st;
    size_t td = (size_t)g->T * g->D;
    int bad = compare("key_payload", "compress", g->key_payload, g->key_payload_n, s.kpay,
                      s.sz.key_payload, 2, mm) ||
              compare("key_scales", "compress", g->key_scales, g->key_scales_n, s.ksc,
                      s.sz.key_scales, 4, mm) ||
              compare("sidecar", "compress", g->sidecar, g->sidecar_n, s.side, s.sz.sidecar, 4,
                      mm) ||
              compare("val_payload", "compress", g->val_payload, g->val_payload_n, s.vpay,
                      s.sz.val_payload, 2, mm) ||
              compare("val_scales", "compress", g->val_scales, g->val_scales_n, s.vsc,
                      s.sz.val_scales, 4, mm);
    if (!bad) {
        /* decompress from the STORED bytes (lengths already known to agree) */
        cq_decode_keys(&p, g->key_payload, g->key_scales, g->sidecar, g->T, s.khat);
        cq_decode_values(&p, g->val_payload, g->val_scales, g->T, s.vhat);
        bad = compare("k_hat", "decompress", g->k_hat, td, s.khat, td, 8, mm) ||
              compare("v_hat", "decompress", g->v_hat, td, s.vhat, td, 8, mm);
    }
    if (!bad && p.k) {
        /* outlier channels of K_hat are the widened fp16 inputs, -0.0 included */
        for (uint32_t t = 0; t < g->T && !bad; t++)
            for (uint32_t o = 0; o < p.k && !bad; o++) {
                size_t i = (size_t)t * g->D + p.outlier[o];
                uint32_t want = cq_f32_bits(cq_f16_to_f32(g->input_k[i]));
                if (g->k_hat[i] != want) {
                    *mm = (cq_mismatch){"k_hat_outlier", "decompress", i, want, g->k_hat[i], 8};
                    bad = 1;
                }
            }
    }
    streams_free(&s);
    return bad ? CQ_ERR_MISMATCH : CQ_OK;
}
