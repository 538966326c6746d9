/* SPDX-License-Identifier: MIT */
/*
 * codec_q4_0_rot.c - "q4_0+rot", llama.cpp's default quantized cache since
 * April 2026 (BASELINES.md section 2): each token's head vector is rotated
 * with a normalized Hadamard transform, then coded as ggml q4_0 blocks
 * (codec_q4_0.c, byte-identical block layout). Decode un-rotates, so every
 * codec is compared in the original space.
 *
 * Rotation size as in llama.cpp (llama-kv-cache.cpp, build_input_k_rot and
 * build_input_v_rot): enabled only when D % 64 == 0; keys use one
 * block-diagonal Sylvester Hadamard of size n = the largest power of two that
 * divides D (at least 64: D = 64 -> 64, 128 -> 128, 192 -> 64, 256 -> 256);
 * values always use n = 64 blocks. H/sqrt(n) is symmetric and its own inverse.
 * llama.cpp applies it as an fp32 matrix product; we use the fp32 fast
 * Walsh-Hadamard transform (same matrix, different fp32 summation order), so
 * the rotated values can differ from llama.cpp's in the last fp32 bit.
 */
#include <stdlib.h>

#include "blockfmt.h"
#include "cq_fp16.h"
#include "cq_util.h"

static uint32_t rot_size(const cq_codec_cfg *cfg, cq_role role) {
    if (role == CQ_ROLE_VALUE) return 64;
    uint32_t n = 64;
    while (cfg->dim % (2 * n) == 0) n *= 2;
    return n;
}

static cq_status q4r_check(const cq_codec_cfg *cfg, cq_role role) {
    (void)role;
    if (!cfg) return CQ_ERR_NULL;
    return cfg->dim && cfg->dim % 64 == 0 ? CQ_OK : CQ_ERR_DIM;
}

static size_t q4r_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    if (q4r_check(cfg, role)) return 0;
    return cq_blockfmt_bytes(&cq_blockfmt_q4_0, cfg, T);
}

static cq_status q4r_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                            uint8_t *dst, size_t cap, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || (T && (!x || !dst))) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (q4r_check(cfg, role))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1,
                          "q4_0_rot: D=%u is not a multiple of 64 (llama.cpp rotates only then)",
                          cfg->dim);
    if (cap < q4r_bytes(cfg, role, T))
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "q4_0_rot: dst too small");
    cq_status st = cq_refuse_nonfinite("q4_0_rot", x, T, cfg->dim, err);
    if (st) return st;
    const uint32_t D = cfg->dim, n = rot_size(cfg, role), B = cq_blockfmt_q4_0.block;
    float *row = malloc(D * sizeof *row);
    if (!row) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    for (uint32_t t = 0; t < T; t++) {
        for (uint32_t c = 0; c < D; c++) row[c] = cq_f16_to_f32(x[(size_t)t * D + c]);
        for (uint32_t c = 0; c < D; c += n) cq_fwht_orthonormal_f32(row + c, n);
        for (uint32_t c = 0; c < D; c += B) {
            cq_blockfmt_q4_0.quantize(row + c, dst);
            dst += cq_blockfmt_q4_0.bytes;
        }
    }
    free(row);
    return CQ_OK;
}

static cq_status q4r_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                            uint32_t T, float *out) {
    if (!cfg || (T && (!src || !out))) return CQ_ERR_NULL;
    if (q4r_check(cfg, role)) return CQ_ERR_DIM;
    if (len != q4r_bytes(cfg, role, T)) return CQ_ERR_BUFFER;
    cq_status st = cq_blockfmt_decode(&cq_blockfmt_q4_0, cfg, src, len, T, out);
    if (st) return st;
    const uint32_t D = cfg->dim, n = rot_size(cfg, role);
    for (size_t i = 0; i < (size_t)T * D; i += n) cq_fwht_orthonormal_f32(out + i, n);
    return CQ_OK;
}

static double q4r_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {
    (void)cfg, (void)role, (void)T;
    return 4.5;
}

const cq_codec_traits cq_codec_q4_0_rot = {
    .id = CQ_CODEC_Q4_0_ROT, .name = "q4_0_rot", .family = "ggml",
    .layout = "per token: normalized Hadamard (K: largest power of two dividing D, >= 64; V: 64), then ggml "
              "q4_0 blocks of 18 B",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .check = q4r_check, .packed_bytes = q4r_bytes, .encode = q4r_encode, .decode = q4r_decode,
    .modeled_bpv = q4r_modeled,
};
