/* SPDX-License-Identifier: MIT */
/*
 * codec_rotor.c - the rotation-per-vector codecs of the RotorQuant family
 * (BASELINES.md section 5): PlanarQuant-3 and IsoQuant-3 (fast variant).
 *
 * Per head vector x (one token, D channels), fp32:
 *   n = ||x|| (stored as fp16: the norm is charged, 16 bits per vector),
 *   u = x / n (0 when n < 1e-12),
 *   v = R u, R block-diagonal:
 *     planar3: 2x2 rotations of pairs (2i, 2i+1) by theta_i = 2 pi U[0,1);
 *     iso3:    4-D blocks as quaternions (w, x, y, z), v = qL (x) u_blk with qL
 *              a random unit quaternion (normalized N(0,1)^4);
 *   idx_j = nearest 3-bit Lloyd-Max centroid for N(0, 1/D) (N(0,1) centroids
 *           0.245094, 0.756005, 1.343909, 2.151946 times 1/sqrt(D); a value
 *           on a midpoint goes up);
 * decode: v_hat = C[idx], u_hat = R^T v_hat (iso: conj(qL) (x) v_hat), x_hat = n_hat u_hat.
 * Angles / quaternions come from the project RNG seeded with cfg->seed, drawn
 * in block order (planar: one uniform per pair; iso: four normals per block),
 * so a given seed is the same rotation on every machine.
 *
 * Packed layout, per token: D 3-bit codes as an LSB-first bit stream
 * (ceil(3D/8) bytes) | fp16 norm. Tokens are concatenated [T]. A norm that
 * overflows fp16 is refused with CQ_ERR_OVERFLOW (nothing written).
 * iso3 needs D % 4 == 0; planar3 takes every even D.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_bits.h"
#include "cq_codec.h"
#include "cq_registry.h"
#include "cq_util.h"

static const double lm3_pos[4] = {0.245094, 0.756005, 1.343909, 2.151946};

/* The rotation of one codec at one (D, seed): planar uses cs[2i], cs[2i+1] =
 * cos, sin of pair i; iso uses q[4b..4b+3] = (w, x, y, z) of block b. */
typedef struct rotor {
    int iso;
    uint32_t D;
    float p[CQ_MAX_DIM];
    float c[8], mid[7];
} rotor;

static void rotor_init(rotor *r, int iso, const cq_codec_cfg *cfg) {
    cq_rng g;
    cq_rng_seed(&g, cfg->seed);
    r->iso = iso;
    r->D = cfg->dim;
    if (!iso) {
        for (uint32_t i = 0; i < r->D / 2; i++) {
            double th = 6.283185307179586476925 * cq_rng_uniform(&g);
            r->p[2 * i] = (float)cos(th);
            r->p[2 * i + 1] = (float)sin(th);
        }
    } else {
        for (uint32_t b = 0; b < r->D / 4; b++) {
            double q[4], s = 0.0;
            for (int k = 0; k < 4; k++) q[k] = cq_rng_normal(&g), s += q[k] * q[k];
            s = sqrt(s); /* > 0 with probability 1; Box-Muller never returns all zeros */
            for (int k = 0; k < 4; k++) r->p[4 * b + k] = (float)(q[k] / s);
        }
    }
    double sd = 1.0 / sqrt((double)r->D);
    for (int k = 0; k < 4; k++) {
        r->c[3 - k] = (float)(-lm3_pos[k] * sd);
        r->c[4 + k] = (float)(lm3_pos[k] * sd);
    }
    cqb_midpoints(r->c, 8, r->mid);
}

/* Hamilton product a (x) b. */
static void qmul(const float *a, const float *b, float *o) {
    o[0] = a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3];
    o[1] = a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2];
    o[2] = a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1];
    o[3] = a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0];
}

/* v = R u (dir = +1) or u = R^T v (dir = -1), out of place. */
static void rotor_apply(const rotor *r, const float *in, float *out, int dir) {
    if (!r->iso) {
        for (uint32_t i = 0; i < r->D; i += 2) {
            float c = r->p[i], s = dir > 0 ? r->p[i + 1] : -r->p[i + 1];
            out[i] = c * in[i] - s * in[i + 1];
            out[i + 1] = s * in[i] + c * in[i + 1];
        }
    } else {
        for (uint32_t b = 0; b < r->D; b += 4) {
            const float *q = r->p + b;
            float qc[4] = {q[0], -q[1], -q[2], -q[3]};
            qmul(dir > 0 ? q : qc, in + b, out + b);
        }
    }
}

static size_t rotor_token_bytes(uint32_t D) { return cqb_stream_bytes(D, 3) + 2; }

static cq_status rotor_check_k(int iso, const cq_codec_cfg *cfg) {
    return iso && cfg->dim % 4 ? CQ_ERR_DIM : CQ_OK;
}

static cq_status rotor_encode_k(int iso, const char *name, const cq_codec_cfg *cfg,
                                const uint16_t *x, uint32_t T, uint8_t *dst, size_t cap,
                                cq_err *err) {
    uint32_t D = cfg->dim;
    if (D < CQ_MIN_DIM || D > CQ_MAX_DIM || (D & 1) || rotor_check_k(iso, cfg))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "%s: unsupported head_dim %u", name, D);
    size_t tb = rotor_token_bytes(D), need = tb * T;
    if (cap < need) return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "dst too small");
    uint32_t bt, bc;
    if (cq_find_nonfinite(x, T, D, &bt, &bc))
        return cq_err_set(err, CQ_ERR_NONFINITE, bt, (int32_t)bc,
                          "non-finite input at token %u, channel %u: refused, nothing written", bt,
                          bc);
    rotor *r = malloc(sizeof *r);
    uint8_t *tmp = malloc(need ? need : 1);
    if (!r || !tmp) {
        free(r), free(tmp);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    rotor_init(r, iso, cfg);
    memset(tmp, 0, need);
    float u[CQ_MAX_DIM], v[CQ_MAX_DIM];
    for (uint32_t t = 0; t < T; t++) {
        uint8_t *rec = tmp + (size_t)t * tb;
        float n2 = 0.0f;
        for (uint32_t j = 0; j < D; j++) {
            u[j] = cq_f16_to_f32(x[(size_t)t * D + j]);
            n2 += u[j] * u[j];
        }
        float n = sqrtf(n2);
        for (uint32_t j = 0; j < D; j++) u[j] = n < 1e-12f ? 0.0f : u[j] / n;
        rotor_apply(r, u, v, +1);
        for (uint32_t j = 0; j < D; j++) cqb_put_bits(rec, j, 3, cqb_nearest(v[j], r->mid, 8));
        uint16_t h = cq_f32_to_f16(n);
        if (!cq_f16_is_finite(h)) {
            free(r), free(tmp);
            return cq_err_set(err, CQ_ERR_OVERFLOW, t, -1, "%s: norm of token %u overflows fp16",
                              name, t);
        }
        cqb_put16(rec + tb - 2, h);
    }
    memcpy(dst, tmp, need);
    free(r), free(tmp);
    return CQ_OK;
}

static cq_status rotor_decode_k(int iso, const cq_codec_cfg *cfg, const uint8_t *src, size_t len,
                                uint32_t T, float *out) {
    uint32_t D = cfg->dim;
    if (D < CQ_MIN_DIM || D > CQ_MAX_DIM || (D & 1) || rotor_check_k(iso, cfg)) return CQ_ERR_DIM;
    size_t tb = rotor_token_bytes(D);
    if (len != tb * T) return CQ_ERR_BUFFER;
    rotor *r = malloc(sizeof *r);
    if (!r) return CQ_ERR_NOMEM;
    rotor_init(r, iso, cfg);
    float v[CQ_MAX_DIM];
    for (uint32_t t = 0; t < T; t++) {
        const uint8_t *rec = src + (size_t)t * tb;
        float n = cq_f16_to_f32(cqb_get16(rec + tb - 2));
        for (uint32_t j = 0; j < D; j++) v[j] = r->c[cqb_get_bits(rec, j, 3)];
        float *o = out + (size_t)t * D;
        rotor_apply(r, v, o, -1);
        for (uint32_t j = 0; j < D; j++) o[j] *= n;
    }
    free(r);
    return CQ_OK;
}

static double rotor_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role, (void)T;
    return 8.0 * (double)rotor_token_bytes(cfg->dim) / cfg->dim;
}

#define ROTOR_CODEC(SYM, ID, NAME, ISO, LAYOUT)                                                    \
    static cq_status SYM##_check(const cq_codec_cfg *cfg, cq_role role) {                          \
        (void)role;                                                                                \
        return rotor_check_k(ISO, cfg);                                                            \
    }                                                                                              \
    static size_t SYM##_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {                 \
        (void)role;                                                                                \
        return rotor_check_k(ISO, cfg) ? 0 : rotor_token_bytes(cfg->dim) * T;                      \
    }                                                                                              \
    static cq_status SYM##_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x,        \
                                  uint32_t T, uint8_t *dst, size_t cap, cq_err *err) {             \
        (void)role;                                                                                \
        return rotor_encode_k(ISO, NAME, cfg, x, T, dst, cap, err);                                \
    }                                                                                              \
    static cq_status SYM##_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src,       \
                                  size_t len, uint32_t T, float *out) {                            \
        (void)role;                                                                                \
        return rotor_decode_k(ISO, cfg, src, len, T, out);                                         \
    }                                                                                              \
    const cq_codec_traits cq_codec_##SYM = {                                                       \
        .id = ID, .name = NAME, .family = "rotorquant", .layout = LAYOUT, .bits = 3.0,             \
        .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,                       \
        .check = SYM##_check, .packed_bytes = SYM##_bytes, .encode = SYM##_encode,                 \
        .decode = SYM##_decode, .modeled_bpv = rotor_modeled,                                      \
    };

extern const cq_codec_traits cq_codec_planar3, cq_codec_iso3;
ROTOR_CODEC(planar3, CQ_CODEC_PLANAR3, "planar3", 0,
            "per token: D 3-bit codes, LSB-first stream | fp16 norm (2x2 random rotations)")
ROTOR_CODEC(iso3, CQ_CODEC_ISO3, "iso3", 1,
            "per token: D 3-bit codes, LSB-first stream | fp16 norm (quaternion qL (x) v, D%4==0)")
