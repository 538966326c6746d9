/* SPDX-License-Identifier: MIT */
/*
 * cq_tier.c - the three ChannelQuant tiers (CQ-8, CQ-4, CQ-4+) as canonical
 * byte streams: parameters, one value token, one key group, whole blocks.
 * CONTRACT.md sections 2, 4, 5 and 6. Scalar reference: clarity first.
 * Not here: SIMD kernels (src/kernels), streaming state (src/cache).
 */
#include <ctype.h>
#include <string.h>

#include "cq_codec.h"

static const char *const tier_names[CQ_TIER_COUNT_] = {"CQ-8", "CQ-4", "CQ-4+"};
static const char *const tier_tags[CQ_TIER_COUNT_] = {"CQ8", "CQ4", "CQ4plus"};

const char *cq_tier_name(cq_tier t) {
    return (unsigned)t < CQ_TIER_COUNT_ ? tier_names[t] : "?";
}
const char *cq_tier_tag(cq_tier t) {
    return (unsigned)t < CQ_TIER_COUNT_ ? tier_tags[t] : "?";
}

static int streq_nocase(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

cq_status cq_tier_parse(const char *s, cq_tier *out) {
    if (!s || !out) return CQ_ERR_NULL;
    static const struct { const char *s; cq_tier t; } alias[] = {
        {"CQ-8", CQ_TIER_CQ8}, {"CQ8", CQ_TIER_CQ8},   {"CQ-4", CQ_TIER_CQ4},
        {"CQ4", CQ_TIER_CQ4},  {"CQ-4+", CQ_TIER_CQ4P}, {"CQ4+", CQ_TIER_CQ4P},
        {"CQ4plus", CQ_TIER_CQ4P}, {"CQ-4plus", CQ_TIER_CQ4P},
    };
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (streq_nocase(s, alias[i].s)) {
            *out = alias[i].t;
            return CQ_OK;
        }
    return CQ_ERR_TIER;
}

unsigned cq_tier_key_bits(cq_tier t) { return t == CQ_TIER_CQ8 ? 8u : 4u; }
unsigned cq_tier_val_bits(cq_tier t) { return t == CQ_TIER_CQ8 ? 8u : 4u; }

/* ------------------------------------------------------------------ params */

static cq_status check_dim_group(cq_tier tier, uint32_t dim, uint32_t group, cq_err *err) {
    if ((unsigned)tier >= CQ_TIER_COUNT_)
        return cq_err_set(err, CQ_ERR_TIER, -1, -1, "unknown tier %d", (int)tier);
    if (dim < CQ_MIN_DIM || dim > CQ_MAX_DIM || (dim & 1))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1,
                          "head_dim D=%u is invalid: it must be even and within [%d, %d]", dim,
                          CQ_MIN_DIM, CQ_MAX_DIM);
    if (group == 0)
        return cq_err_set(err, CQ_ERR_GROUP, -1, -1, "key group size G=0 is invalid: G >= 1");
    return CQ_OK;
}

static void fill_derived(cq_params *p) {
    uint32_t n = 0, o = 0;
    for (uint32_t c = 0; c < p->dim; c++) {
        if (p->mask[c]) p->outlier[o++] = (uint16_t)c;
        else p->kept_idx[n++] = (uint16_t)c;
    }
    p->k = o;
    p->kept = n;
}

cq_status cq_params_init(cq_params *p, cq_tier tier, uint32_t dim, uint32_t group,
                         const uint16_t *outliers, uint32_t k, cq_err *err) {
    cq_err_clear(err);
    if (!p) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "params pointer is NULL");
    cq_status st = check_dim_group(tier, dim, group, err);
    if (st) return st;
    if (k > 0 && tier != CQ_TIER_CQ4P)
        return cq_err_set(err, CQ_ERR_OUTLIERS, -1, -1,
                          "%s has no outlier lane, but k=%u outlier channels were given",
                          cq_tier_name(tier), k);
    if (k >= dim)
        return cq_err_set(err, CQ_ERR_OUTLIERS, -1, -1,
                          "k=%u outlier channels is invalid for D=%u: k must be below D", k, dim);
    if (k > 0 && !outliers)
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "outlier list is NULL but k=%u", k);
    for (uint32_t i = 0; i < k; i++) {
        if (outliers[i] >= dim)
            return cq_err_set(err, CQ_ERR_OUTLIERS, -1, (int32_t)outliers[i],
                              "outlier channel %u is out of range for D=%u", outliers[i], dim);
        if (i > 0 && outliers[i] <= outliers[i - 1])
            return cq_err_set(err, CQ_ERR_OUTLIERS, -1, (int32_t)outliers[i],
                              "outlier channels must be ascending and unique: %u follows %u",
                              outliers[i], outliers[i - 1]);
    }
    memset(p, 0, sizeof *p);
    p->tier = tier;
    p->dim = dim;
    p->group = group;
    for (uint32_t i = 0; i < k; i++) p->mask[outliers[i]] = 1;
    fill_derived(p);
    return CQ_OK;
}

cq_status cq_params_init_mask(cq_params *p, cq_tier tier, uint32_t dim, uint32_t group,
                              const uint8_t *mask, cq_err *err) {
    cq_err_clear(err);
    if (!p || !mask) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "params or mask is NULL");
    cq_status st = check_dim_group(tier, dim, group, err);
    if (st) return st;
    uint16_t list[CQ_MAX_DIM];
    uint32_t k = 0;
    for (uint32_t c = 0; c < dim; c++)
        if (mask[c]) list[k++] = (uint16_t)c;
    return cq_params_init(p, tier, dim, group, list, k, err);
}

/* ------------------------------------------------------------------- units */

static cq_status nonfinite_err(cq_err *err, int64_t token, uint32_t channel, uint16_t h) {
    return cq_err_set(err, CQ_ERR_NONFINITE, token, (int32_t)channel,
                      "non-finite input at token %lld, channel %u (fp16 0x%04x): refused, "
                      "nothing written",
                      (long long)token, channel, h);
}

cq_status cq_encode_token(const uint16_t *x, uint32_t D, unsigned bits, uint8_t *codes,
                          uint16_t *scale, int64_t token, cq_err *err) {
    if (!x || !codes || !scale) return cq_err_set(err, CQ_ERR_NULL, token, -1, "NULL argument");
    if (D < CQ_MIN_DIM || D > CQ_MAX_DIM || (D & 1))
        return cq_err_set(err, CQ_ERR_DIM, token, -1, "invalid D=%u", D);
    if (bits != 4 && bits != 8)
        return cq_err_set(err, CQ_ERR_ARG, token, -1, "bits must be 4 or 8, got %u", bits);
    for (uint32_t c = 0; c < D; c++)
        if (!cq_f16_is_finite(x[c])) return nonfinite_err(err, token, c, x[c]);
    int qmax = bits == 8 ? 127 : 7;
    uint16_t s = cq_scale_from_amax(cq_amax_f16(x, D, 1), qmax);
    *scale = s;
    if (bits == 8) {
        for (uint32_t c = 0; c < D; c++) codes[c] = (uint8_t)(int8_t)cq_quantize(x[c], s, qmax);
    } else {
        for (uint32_t c = 0; c < D; c += 2) {
            int lo = cq_quantize(x[c], s, qmax), hi = cq_quantize(x[c + 1], s, qmax);
            codes[c / 2] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
        }
    }
    return CQ_OK;
}

void cq_decode_token(const uint8_t *codes, uint16_t scale, uint32_t D, unsigned bits, float *out) {
    if (bits == 8) {
        for (uint32_t c = 0; c < D; c++) out[c] = cq_dequantize((int8_t)codes[c], scale);
    } else {
        for (uint32_t c = 0; c < D; c++) out[c] = cq_dequantize(cq_nibble_get(codes, c), scale);
    }
}

size_t cq_key_group_bytes(const cq_params *p, uint32_t g) {
    return ((size_t)g * p->kept + 1) / 2;
}

cq_status cq_encode_key_group(const cq_params *p, const uint16_t *K, uint32_t g, uint8_t *payload,
                              uint16_t *scales, uint16_t *sidecar, int64_t first_token,
                              cq_err *err) {
    if (!p || !K || !payload || !scales || (p->k && !sidecar))
        return cq_err_set(err, CQ_ERR_NULL, first_token, -1, "NULL argument");
    if (p->tier == CQ_TIER_CQ8)
        return cq_err_set(err, CQ_ERR_TIER, first_token, -1,
                          "CQ-8 keys are per token: use cq_encode_token");
    if (g == 0 || g > p->group)
        return cq_err_set(err, CQ_ERR_SHAPE, first_token, -1,
                          "key group of %u tokens is invalid for G=%u", g, p->group);
    const uint32_t D = p->dim;
    uint32_t bt, bc;
    if (cq_find_nonfinite(K, g, D, &bt, &bc))
        return nonfinite_err(err, first_token + bt, bc, K[(size_t)bt * D + bc]);
    /* scales: one per kept channel over the g tokens present */
    for (uint32_t j = 0; j < p->kept; j++)
        scales[j] = cq_scale_from_amax(cq_amax_f16(K + p->kept_idx[j], g, D), 7);
    /* codes: token-major, kept channels ascending, one nibble stream per group */
    size_t nbytes = cq_key_group_bytes(p, g);
    memset(payload, 0, nbytes); /* pads an odd tail with a zero high nibble */
    size_t i = 0;
    for (uint32_t t = 0; t < g; t++) {
        const uint16_t *row = K + (size_t)t * D;
        for (uint32_t j = 0; j < p->kept; j++, i++)
            cq_nibble_put(payload, i, cq_quantize(row[p->kept_idx[j]], scales[j], 7));
        for (uint32_t o = 0; o < p->k; o++) sidecar[(size_t)t * p->k + o] = row[p->outlier[o]];
    }
    return CQ_OK;
}

void cq_decode_key_group_rows(const cq_params *p, const uint8_t *payload, const uint16_t *scales,
                              const uint16_t *sidecar, uint32_t g, uint32_t r0, uint32_t r1,
                              float *out) {
    const uint32_t D = p->dim;
    (void)g;
    for (uint32_t t = r0; t < r1; t++) {
        float *row = out + (size_t)(t - r0) * D;
        size_t i = (size_t)t * p->kept;
        for (uint32_t j = 0; j < p->kept; j++, i++)
            row[p->kept_idx[j]] = cq_dequantize(cq_nibble_get(payload, i), scales[j]);
        for (uint32_t o = 0; o < p->k; o++)
            row[p->outlier[o]] = cq_f16_to_f32(sidecar[(size_t)t * p->k + o]); /* exact, keeps -0.0 */
    }
}

/* ------------------------------------------------------------------ blocks */

static int mul_overflows(size_t a, size_t b) { return a != 0 && b > SIZE_MAX / a; }

cq_status cq_stream_sizes_of(const cq_params *p, uint32_t T, cq_stream_sizes *s) {
    if (!p || !s) return CQ_ERR_NULL;
    memset(s, 0, sizeof *s);
    const size_t D = p->dim;
    if (mul_overflows((size_t)T, D)) return CQ_ERR_OVERFLOW;
    unsigned vb = cq_tier_val_bits(p->tier);
    s->val_payload = (size_t)T * cq_token_bytes(p->dim, vb);
    s->val_scales = T;
    if (p->tier == CQ_TIER_CQ8) {
        s->key_payload = (size_t)T * D;
        s->key_scales = T;
        s->key_groups = T;
        return CQ_OK;
    }
    uint32_t full = T / p->group, tail = T % p->group;
    s->key_groups = full + (tail ? 1 : 0);
    s->key_payload = (size_t)full * cq_key_group_bytes(p, p->group) +
                     (tail ? cq_key_group_bytes(p, tail) : 0);
    s->key_scales = (size_t)s->key_groups * p->kept;
    s->sidecar = (size_t)T * p->k;
    return CQ_OK;
}

cq_status cq_encode_keys(const cq_params *p, const uint16_t *K, uint32_t T, const cq_key_stream *out,
                         cq_err *err) {
    cq_err_clear(err);
    if (!p || !out || !out->payload || !out->scales || (T && !K))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    const uint32_t D = p->dim;
    /* validate everything first: nothing is written on refusal */
    uint32_t bt, bc;
    if (cq_find_nonfinite(K, T, D, &bt, &bc))
        return nonfinite_err(err, bt, bc, K[(size_t)bt * D + bc]);
    if (p->tier == CQ_TIER_CQ8) {
        for (uint32_t t = 0; t < T; t++) {
            cq_status st = cq_encode_token(K + (size_t)t * D, D, 8, out->payload + (size_t)t * D,
                                           out->scales + t, t, err);
            if (st) return st;
        }
        return CQ_OK;
    }
    if (p->k && !out->sidecar) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "sidecar is NULL");
    size_t off = 0;
    for (uint32_t t0 = 0, gi = 0; t0 < T; t0 += p->group, gi++) {
        uint32_t g = T - t0 < p->group ? T - t0 : p->group;
        cq_status st = cq_encode_key_group(p, K + (size_t)t0 * D, g, out->payload + off,
                                           out->scales + (size_t)gi * p->kept,
                                           p->k ? out->sidecar + (size_t)t0 * p->k : NULL, t0, err);
        if (st) return st;
        off += cq_key_group_bytes(p, g);
    }
    return CQ_OK;
}

cq_status cq_encode_values(const cq_params *p, const uint16_t *V, uint32_t T,
                           const cq_val_stream *out, cq_err *err) {
    cq_err_clear(err);
    if (!p || !out || !out->payload || !out->scales || (T && !V))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    const uint32_t D = p->dim;
    uint32_t bt, bc;
    if (cq_find_nonfinite(V, T, D, &bt, &bc))
        return nonfinite_err(err, bt, bc, V[(size_t)bt * D + bc]);
    unsigned bits = cq_tier_val_bits(p->tier);
    size_t tb = cq_token_bytes(D, bits);
    for (uint32_t t = 0; t < T; t++) {
        cq_status st = cq_encode_token(V + (size_t)t * D, D, bits, out->payload + (size_t)t * tb,
                                       out->scales + t, t, err);
        if (st) return st;
    }
    return CQ_OK;
}

cq_status cq_decode_keys(const cq_params *p, const uint8_t *payload, const uint16_t *scales,
                         const uint16_t *sidecar, uint32_t T, float *out) {
    if (!p || (T && (!payload || !scales || !out))) return CQ_ERR_NULL;
    const uint32_t D = p->dim;
    if (p->tier == CQ_TIER_CQ8) {
        for (uint32_t t = 0; t < T; t++)
            cq_decode_token(payload + (size_t)t * D, scales[t], D, 8, out + (size_t)t * D);
        return CQ_OK;
    }
    if (p->k && T && !sidecar) return CQ_ERR_NULL;
    size_t off = 0;
    for (uint32_t t0 = 0, gi = 0; t0 < T; t0 += p->group, gi++) {
        uint32_t g = T - t0 < p->group ? T - t0 : p->group;
        cq_decode_key_group_rows(p, payload + off, scales + (size_t)gi * p->kept,
                                 p->k ? sidecar + (size_t)t0 * p->k : NULL, g, 0, g,
                                 out + (size_t)t0 * D);
        off += cq_key_group_bytes(p, g);
    }
    return CQ_OK;
}

cq_status cq_decode_values(const cq_params *p, const uint8_t *payload, const uint16_t *scales,
                           uint32_t T, float *out) {
    if (!p || (T && (!payload || !scales || !out))) return CQ_ERR_NULL;
    unsigned bits = cq_tier_val_bits(p->tier);
    size_t tb = cq_token_bytes(p->dim, bits);
    for (uint32_t t = 0; t < T; t++)
        cq_decode_token(payload + (size_t)t * tb, scales[t], p->dim, bits,
                        out + (size_t)t * p->dim);
    return CQ_OK;
}

/* ---------------------------------------------------------- bits per value */

double cq_bpv_quoted_key(cq_tier t, uint32_t D, uint32_t G, uint32_t k) {
    if (t == CQ_TIER_CQ8) return 8.0 + 16.0 / D;
    double b = 4.0 + 16.0 / G;
    if (t == CQ_TIER_CQ4P) b += ((double)k / D) * (16.0 - 4.0);
    return b;
}

double cq_bpv_quoted_val(cq_tier t, uint32_t D) {
    return (t == CQ_TIER_CQ8 ? 8.0 : 4.0) + 16.0 / D;
}
