/* SPDX-License-Identifier: MIT */
/*
 * codec_nvfp4.c - NVFP4 (NVIDIA; BASELINES.md section 3): blocks of 16
 * consecutive channels of one token, FP4 E2M1 elements, one FP8 E4M3 scale
 * per block, times one fp32 scale per tensor. The "tensor" is the coded
 * [T][D] block (one layer, KV head and role).
 *
 * Arithmetic (fp32 throughout):
 *   s_t   = amax_tensor / (448 * 6)                       (stored fp32)
 *   sb    = e4m3_RNE_sat((amax_block / 6) / s_t)          (stored E4M3 byte)
 *   ds    = e4m3(sb) * s_t                                (one fp32 product)
 *   code  = e2m1_RNE_sat(x / ds)   (ds == 0: code = sign only, i.e. +-0)
 *   x_hat = e2m1(code) * ds
 * E4M3 is the OCP "FN" variant: bias 7, subnormals m * 2^-9, max 448, no
 * infinities, S.1111.111 = NaN; encoding rounds to nearest even and
 * saturates at 448. An all-zero tensor stores s_t = 0, scales 0, codes 0.
 *
 * Layout: s_t (fp32 LE, 4 B), then per token, per 16-channel block:
 * {E4M3 scale (1 B), 8 B of E2M1 codes, element 2i low nibble, 2i+1 high}
 * (NVIDIA's packed e2m1x2 order). 4.5 bits/value plus 32 bits per tensor.
 * Because s_t is taken from the whole block, the codec is offline here (a
 * deployed NVFP4 cache would calibrate s_t beforehand).
 */
#include <math.h>
#include <stdlib.h>

#include "blockfmt.h"
#include "cq_codec.h"

#define NVFP4_QK 16
#define NVFP4_BLOCK_BYTES (1 + NVFP4_QK / 2)

/* E4M3 (FN) encode of a finite v >= 0: RNE, saturate at 448. */
static uint8_t e4m3_encode(float v) {
    if (!(v > 0.0f)) return 0;
    if (v >= 448.0f) return 0x7E;
    int ex;
    (void)frexpf(v, &ex);            /* v = f * 2^ex, f in [0.5, 1) */
    int e = ex - 1;                  /* unbiased exponent of v */
    if (e < -6) e = -6;              /* subnormal range shares the 2^-9 quantum */
    const float q = ldexpf(1.0f, e - 3); /* spacing of E4M3 values in this binade */
    const float r = rintf(v / q);    /* v / q is exact; rint is ties-to-even */
    const float val = r * q;         /* may carry into the next binade */
    if (val >= 448.0f) return 0x7E;
    if (val < ldexpf(1.0f, -6)) return (uint8_t)r; /* subnormal: m = r in 0..7 (8 -> normal below) */
    (void)frexpf(val, &ex);
    const int eb = ex - 1 + 7;
    const int m = (int)(ldexpf(val, -(ex - 1)) * 8.0f) - 8;
    return (uint8_t)((eb << 3) | m);
}

static float e4m3_value(uint8_t b) {
    const int s = b >> 7, e = (b >> 3) & 0xF, m = b & 7;
    float v;
    if (e == 0xF && m == 7) v = NAN;
    else if (e == 0) v = ldexpf((float)m, -9);
    else v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -v : v;
}

static cq_status nv_check(const cq_codec_cfg *cfg, cq_role role) {
    (void)role;
    if (!cfg) return CQ_ERR_NULL;
    return cfg->dim && cfg->dim % NVFP4_QK == 0 ? CQ_OK : CQ_ERR_DIM;
}

static size_t nv_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    if (nv_check(cfg, role)) return 0;
    return 4 + (size_t)T * (cfg->dim / NVFP4_QK) * NVFP4_BLOCK_BYTES;
}

static cq_status nv_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                           uint8_t *dst, size_t cap, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || !dst || (T && !x)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (nv_check(cfg, role))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "nvfp4: D=%u is not a multiple of 16",
                          cfg->dim);
    if (cap < nv_bytes(cfg, role, T))
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "nvfp4: dst too small");
    cq_status st = cq_refuse_nonfinite("nvfp4", x, T, cfg->dim, err);
    if (st) return st;
    const uint32_t D = cfg->dim;
    const size_t n = (size_t)T * D;
    uint16_t amax_h = cq_amax_f16(x, n, 1);
    const float s_t = cq_f16_to_f32(amax_h) / (448.0f * 6.0f);
    cq_put_u32le(dst, cq_f32_bits(s_t));
    uint8_t *p = dst + 4;
    for (size_t b = 0; b < n; b += NVFP4_QK, p += NVFP4_BLOCK_BYTES) {
        float xb[NVFP4_QK], amax = 0.0f;
        for (int j = 0; j < NVFP4_QK; j++) {
            xb[j] = cq_f16_to_f32(x[b + j]);
            if (fabsf(xb[j]) > amax) amax = fabsf(xb[j]);
        }
        const uint8_t sb = s_t > 0.0f ? e4m3_encode((amax / 6.0f) / s_t) : 0;
        const float ds = e4m3_value(sb) * s_t;
        p[0] = sb;
        for (int i = 0; i < NVFP4_QK / 2; i++) {
            uint8_t c0, c1;
            if (ds > 0.0f) {
                c0 = cq_e2m1_encode(xb[2 * i] / ds);
                c1 = cq_e2m1_encode(xb[2 * i + 1] / ds);
            } else {
                c0 = (uint8_t)(signbit(xb[2 * i]) ? 8 : 0);
                c1 = (uint8_t)(signbit(xb[2 * i + 1]) ? 8 : 0);
            }
            p[1 + i] = (uint8_t)(c0 | (c1 << 4));
        }
    }
    return CQ_OK;
}

static cq_status nv_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                           uint32_t T, float *out) {
    if (!cfg || !src || (T && !out)) return CQ_ERR_NULL;
    if (nv_check(cfg, role)) return CQ_ERR_DIM;
    if (len != nv_bytes(cfg, role, T)) return CQ_ERR_BUFFER;
    const float s_t = cq_f32_from_bits(cq_get_u32le(src));
    const size_t n = (size_t)T * cfg->dim;
    const uint8_t *p = src + 4;
    for (size_t b = 0; b < n; b += NVFP4_QK, p += NVFP4_BLOCK_BYTES) {
        const float ds = e4m3_value(p[0]) * s_t;
        for (int i = 0; i < NVFP4_QK / 2; i++) {
            out[b + 2 * i] = cq_e2m1_value(p[1 + i] & 0x0F) * ds;
            out[b + 2 * i + 1] = cq_e2m1_value((uint8_t)(p[1 + i] >> 4)) * ds;
        }
    }
    return CQ_OK;
}

static double nv_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)role;
    return 4.5 + (T ? 32.0 / ((double)T * cfg->dim) : 0.0);
}

const cq_codec_traits cq_codec_nvfp4 = {
    .id = CQ_CODEC_NVFP4, .name = "nvfp4", .family = "mx",
    .layout = "fp32 tensor scale | per token, 16-channel blocks {E4M3 scale, 8 B E2M1 nibbles "
              "(2i low, 2i+1 high)} = 9 B",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_OFFLINE,
    .check = nv_check, .packed_bytes = nv_bytes, .encode = nv_encode, .decode = nv_decode,
    .modeled_bpv = nv_modeled,
};
