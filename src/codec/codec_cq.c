/* SPDX-License-Identifier: MIT */
/*
 * codec_cq.c - registry adapters of the ChannelQuant tiers (CQ-8, CQ-4,
 * CQ-4+) and CQ-3-rot. The bytes are those of cq_tier.c / cq3rot.c; this file
 * only concatenates the canonical streams into one packed buffer:
 *   keys:   payload | scales (fp16 LE) | sidecar (fp16 LE, CQ-4+)
 *   values: payload | scales (fp16 LE)
 */
#include <stdlib.h>
#include <string.h>

#include "../core/cq_le.h"
#include "cq_codec.h"
#include "cq_registry.h"

static cq_tier tier_of(const cq_codec_traits *c) {
    return c->id == CQ_CODEC_CQ8 ? CQ_TIER_CQ8 : c->id == CQ_CODEC_CQ4 ? CQ_TIER_CQ4 : CQ_TIER_CQ4P;
}

static cq_status params_for(cq_tier tier, const cq_codec_cfg *cfg, cq_role role, cq_params *p,
                            cq_err *err) {
    /* values never use the outlier lane; keys of CQ-4+ need the static mask */
    if (tier == CQ_TIER_CQ4P && role == CQ_ROLE_KEY) {
        if (!cfg->mask)
            return cq_err_set(err, CQ_ERR_OUTLIERS, -1, -1,
                              "CQ-4+ keys need the static outlier mask (cq_codec_cfg.mask is NULL)");
        return cq_params_init_mask(p, tier, cfg->dim, cfg->group, cfg->mask, err);
    }
    return cq_params_init(p, tier == CQ_TIER_CQ4P ? CQ_TIER_CQ4 : tier, cfg->dim, cfg->group, NULL,
                          0, err);
}

static size_t blob_bytes(const cq_stream_sizes *s, cq_role role) {
    return role == CQ_ROLE_KEY ? s->key_payload + 2 * (s->key_scales + s->sidecar)
                               : s->val_payload + 2 * s->val_scales;
}

#define DEFINE_TIER_CODEC(SYM)                                                                     \
    static cq_status SYM##_check(const cq_codec_cfg *cfg, cq_role role) {                          \
        cq_params p;                                                                               \
        return params_for(tier_of(&cq_codec_##SYM), cfg, role, &p, NULL);                          \
    }                                                                                              \
    static size_t SYM##_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {                 \
        return tier_bytes(&cq_codec_##SYM, cfg, role, T);                                          \
    }                                                                                              \
    static cq_status SYM##_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x,        \
                                  uint32_t T, uint8_t *dst, size_t cap, cq_err *err) {             \
        return tier_encode(&cq_codec_##SYM, cfg, role, x, T, dst, cap, err);                       \
    }                                                                                              \
    static cq_status SYM##_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src,       \
                                  size_t len, uint32_t T, float *out) {                            \
        return tier_decode(&cq_codec_##SYM, cfg, role, src, len, T, out);                          \
    }                                                                                              \
    static double SYM##_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {               \
        return tier_modeled(&cq_codec_##SYM, cfg, role, T);                                        \
    }                                                                                              \
    static uint32_t SYM##_unit(const cq_codec_cfg *cfg, cq_role role) {                            \
        return tier_unit(&cq_codec_##SYM, cfg, role);                                              \
    }

static size_t tier_bytes(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role,
                         uint32_t T) {
    cq_params p;
    cq_stream_sizes s;
    if (params_for(tier_of(c), cfg, role, &p, NULL) || cq_stream_sizes_of(&p, T, &s)) return 0;
    return blob_bytes(&s, role);
}

static cq_status tier_encode(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role,
                             const uint16_t *x, uint32_t T, uint8_t *dst, size_t cap, cq_err *err) {
    cq_params p;
    cq_stream_sizes s;
    cq_status st = params_for(tier_of(c), cfg, role, &p, err);
    if (st) return st; /* err holds the parameter check's own message */
    if ((st = cq_stream_sizes_of(&p, T, &s))) return cq_err_set(err, st, -1, -1, "size overflow");
    if (cap < blob_bytes(&s, role)) return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "dst too small");
    size_t nsc = role == CQ_ROLE_KEY ? s.key_scales + s.sidecar : s.val_scales;
    uint16_t *tmp = malloc((nsc + 1) * sizeof *tmp);
    if (!tmp) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    if (role == CQ_ROLE_KEY) {
        cq_key_stream ks = {dst, tmp, tmp + s.key_scales};
        st = cq_encode_keys(&p, x, T, &ks, err);
        if (!st) cq_put_u16le_n(dst + s.key_payload, tmp, nsc);
    } else {
        cq_val_stream vs = {dst, tmp};
        st = cq_encode_values(&p, x, T, &vs, err);
        if (!st) cq_put_u16le_n(dst + s.val_payload, tmp, nsc);
    }
    free(tmp);
    return st;
}

static cq_status tier_decode(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role,
                             const uint8_t *src, size_t len, uint32_t T, float *out) {
    cq_params p;
    cq_stream_sizes s;
    cq_status st = params_for(tier_of(c), cfg, role, &p, NULL);
    if (st) return st;
    if ((st = cq_stream_sizes_of(&p, T, &s))) return st;
    if (len != blob_bytes(&s, role)) return CQ_ERR_BUFFER;
    size_t nsc = role == CQ_ROLE_KEY ? s.key_scales + s.sidecar : s.val_scales;
    uint16_t *tmp = malloc((nsc + 1) * sizeof *tmp);
    if (!tmp) return CQ_ERR_NOMEM;
    if (role == CQ_ROLE_KEY) {
        cq_get_u16le_n(tmp, src + s.key_payload, nsc);
        st = cq_decode_keys(&p, src, tmp, tmp + s.key_scales, T, out);
    } else {
        cq_get_u16le_n(tmp, src + s.val_payload, nsc);
        st = cq_decode_values(&p, src, tmp, T, out);
    }
    free(tmp);
    return st;
}

static uint32_t tier_unit(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role) {
    return (role == CQ_ROLE_KEY && tier_of(c) != CQ_TIER_CQ8) ? cfg->group : 1;
}

static double tier_modeled(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role,
                           uint32_t T) {
    (void)T;
    cq_tier t = tier_of(c);
    if (role == CQ_ROLE_VALUE) return cq_bpv_quoted_val(t, cfg->dim);
    if (t == CQ_TIER_CQ4P) {
        /* the exact CQ-4+ key figure of CONTRACT.md section 6 */
        uint32_t k = 0, D = cfg->dim;
        for (uint32_t i = 0; cfg->mask && i < D; i++) k += cfg->mask[i] != 0;
        return (4.0 * (D - k) + 16.0 * (D - k) / cfg->group + 16.0 * k) / D;
    }
    return cq_bpv_quoted_key(t, cfg->dim, cfg->group, 0);
}

extern const cq_codec_traits cq_codec_cq8, cq_codec_cq4, cq_codec_cq4p;
DEFINE_TIER_CODEC(cq8)
DEFINE_TIER_CODEC(cq4)
DEFINE_TIER_CODEC(cq4p)

const cq_codec_traits cq_codec_cq8 = {
    .id = CQ_CODEC_CQ8, .name = "cq8", .family = "channelquant",
    .layout = "INT8 per token: [T][D] int8 | T fp16 scales",
    .bits = 8.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING | CQ_CODEC_F_OURS,
    .check = cq8_check, .packed_bytes = cq8_bytes, .encode = cq8_encode, .decode = cq8_decode,
    .modeled_bpv = cq8_modeled, .unit_tokens = cq8_unit,
};

const cq_codec_traits cq_codec_cq4 = {
    .id = CQ_CODEC_CQ4, .name = "cq4", .family = "channelquant",
    .layout = "K: INT4 per channel per G-token group (nibbles, group-padded) | D fp16 scales/group; "
              "V: INT4 per token | T fp16 scales",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING | CQ_CODEC_F_OURS,
    .check = cq4_check, .packed_bytes = cq4_bytes, .encode = cq4_encode, .decode = cq4_decode,
    .modeled_bpv = cq4_modeled, .unit_tokens = cq4_unit,
};

const cq_codec_traits cq_codec_cq4p = {
    .id = CQ_CODEC_CQ4P, .name = "cq4+", .family = "channelquant",
    .layout = "as cq4, k static key channels as raw fp16 sidecar [T][k]",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING | CQ_CODEC_F_OURS,
    .check = cq4p_check, .packed_bytes = cq4p_bytes, .encode = cq4p_encode, .decode = cq4p_decode,
    .modeled_bpv = cq4p_modeled, .unit_tokens = cq4p_unit,
};

/* ----------------------------------------------------------------- CQ-3-rot */

static cq_status rot_check(const cq_codec_cfg *cfg, cq_role role) {
    if (role != CQ_ROLE_VALUE) return CQ_ERR_UNSUPPORTED;
    return (cfg->dim & (cfg->dim - 1)) == 0 ? CQ_OK : CQ_ERR_DIM;
}

static size_t rot_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role;
    return cq3rot_payload_bytes(cfg->dim, T) + 2 * (size_t)T;
}

static cq_status rot_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                            uint8_t *dst, size_t cap, cq_err *err) {
    cq_status st = rot_check(cfg, role);
    if (st == CQ_ERR_UNSUPPORTED)
        return cq_err_set(err, st, -1, -1, "cq3rot codes values only, not keys");
    if (st)
        return cq_err_set(err, st, -1, -1, "cq3rot needs a power-of-two head_dim D, got D=%u",
                          cfg->dim);
    if (cap < rot_bytes(cfg, role, T)) return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "dst too small");
    uint16_t *sc = malloc(((size_t)T + 1) * 2);
    if (!sc) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    st = cq3rot_encode(x, T, cfg->dim, dst, sc, err);
    if (!st) cq_put_u16le_n(dst + cq3rot_payload_bytes(cfg->dim, T), sc, T);
    free(sc);
    return st;
}

static cq_status rot_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                            uint32_t T, float *out) {
    cq_status st = rot_check(cfg, role);
    if (st) return st;
    if (len != rot_bytes(cfg, role, T)) return CQ_ERR_BUFFER;
    uint16_t *sc = malloc(((size_t)T + 1) * 2);
    if (!sc) return CQ_ERR_NOMEM;
    cq_get_u16le_n(sc, src + cq3rot_payload_bytes(cfg->dim, T), T);
    st = cq3rot_decode(src, sc, T, cfg->dim, out);
    free(sc);
    return st;
}

static double rot_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role, (void)T;
    return 3.0 + 16.0 / cfg->dim;
}

const cq_codec_traits cq_codec_cq3rot = {
    .id = CQ_CODEC_CQ3ROT, .name = "cq3rot", .family = "channelquant",
    .layout = "V only: fp16 WHT, INT3 per token, 3-bit LE stream | T fp16 scales",
    .bits = 3.0,
    .flags = CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING | CQ_CODEC_F_OURS,
    .check = rot_check, .packed_bytes = rot_bytes, .encode = rot_encode, .decode = rot_decode,
    .modeled_bpv = rot_modeled,
};
