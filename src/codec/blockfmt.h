/* SPDX-License-Identifier: MIT */
/*
 * blockfmt.h - library-internal plumbing of the baseline codecs. Mostly the
 * per-token block codecs (the ggml cache types and MXFP4): a token's D channels are cut into
 * D/B blocks of B consecutive channels, each coded into a fixed number of
 * bytes, and a [T][D] block is those blocks in token-major order. Each codec
 * file supplies only its block quantizer and dequantizer (what the method
 * is); this file does the rest (checks, sizes, the refusal of non-finite
 * input, little-endian helpers). The non-finite refusal, the LE helpers and
 * the FP4 E2M1 element code are shared with the other baselines (KIVI, the
 * integer family, NVFP4). Not a public header.
 */
#ifndef CQ_BLOCKFMT_H
#define CQ_BLOCKFMT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/cq_le.h" /* little-endian scalars inside packed buffers */
#include "cq_error.h"
#include "cq_registry.h"

typedef struct cq_blockfmt {
    const char *name;
    uint32_t block; /* channels per block (B) */
    uint32_t bytes; /* bytes per coded block */
    /* x: B finite fp32 values (exact widenings of fp16) -> out: `bytes` bytes. */
    void (*quantize)(const float *x, uint8_t *out);
    /* in: `bytes` arbitrary bytes -> y: B fp32 values. Must not misbehave on any bytes. */
    void (*dequantize)(const uint8_t *in, float *y);
} cq_blockfmt;

/* CQ_ERR_DIM unless D is a multiple of the block size. */
cq_status cq_blockfmt_check(const cq_blockfmt *f, const cq_codec_cfg *cfg);
/* T * (D / B) * bytes (0 when D is not supported). */
size_t cq_blockfmt_bytes(const cq_blockfmt *f, const cq_codec_cfg *cfg, uint32_t T);
/* Refuses non-finite input (token/channel named, nothing written), then codes every block. */
cq_status cq_blockfmt_encode(const cq_blockfmt *f, const cq_codec_cfg *cfg, const uint16_t *x,
                             uint32_t T, uint8_t *dst, size_t cap, cq_err *err);
cq_status cq_blockfmt_decode(const cq_blockfmt *f, const cq_codec_cfg *cfg, const uint8_t *src,
                             size_t len, uint32_t T, float *out);

/* The non-finite refusal every baseline shares (token and channel in the message). */
cq_status cq_refuse_nonfinite(const char *codec, const uint16_t *x, uint32_t T, uint32_t D,
                              cq_err *err);

/* Per-token symmetric INT4/INT8 of CONTRACT.md section 3 (bits 4 or 8): codes [T][D]
 * (INT4: nibbles, element 2i low) then T fp16 scales. The int8-token and int4-token codecs. */
size_t cq_tokint_bytes(const cq_codec_cfg *cfg, unsigned bits, uint32_t T);
cq_status cq_tokint_encode(const char *name, unsigned bits, const cq_codec_cfg *cfg,
                           const uint16_t *x, uint32_t T, uint8_t *dst, size_t cap, cq_err *err);
cq_status cq_tokint_decode(unsigned bits, const cq_codec_cfg *cfg, const uint8_t *src, size_t len,
                           uint32_t T, float *out);

/* Block formats other codec files build on. */
extern const cq_blockfmt cq_blockfmt_q4_0;

/* The registry functions of a block codec: check, packed_bytes, encode, decode and the
 * nominal bits/value 8 * bytes / B (role-independent). */
#define CQ_DEFINE_BLOCKFMT_CODEC_FUNCS(SYM, FMT)                                                    \
    static cq_status SYM##_check(const cq_codec_cfg *cfg, cq_role role) {                          \
        (void)role;                                                                                \
        return cq_blockfmt_check(&FMT, cfg);                                                       \
    }                                                                                              \
    static size_t SYM##_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {                 \
        (void)role;                                                                                \
        return cq_blockfmt_bytes(&FMT, cfg, T);                                                    \
    }                                                                                              \
    static cq_status SYM##_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x,        \
                                  uint32_t T, uint8_t *dst, size_t cap, cq_err *err) {             \
        (void)role;                                                                                \
        return cq_blockfmt_encode(&FMT, cfg, x, T, dst, cap, err);                                 \
    }                                                                                              \
    static cq_status SYM##_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src,       \
                                  size_t len, uint32_t T, float *out) {                            \
        (void)role;                                                                                \
        return cq_blockfmt_decode(&FMT, cfg, src, len, T, out);                                    \
    }                                                                                              \
    static double SYM##_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {               \
        (void)cfg, (void)role, (void)T;                                                            \
        return 8.0 * FMT.bytes / FMT.block;                                                        \
    }

/* FP4 E2M1 (OCP MX v1.0), shared by MXFP4 and NVFP4: code = sign << 3 | magnitude index,
 * magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6}. Encoding of an fp32 v: round to nearest, ties to
 * the even index (= even mantissa bit), saturate at 6; the sign of v is kept (-0.1 -> 0x8). */
static inline uint8_t cq_e2m1_encode(float v) {
    static const float mid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    uint8_t sign = (uint8_t)(signbit(v) ? 8 : 0);
    float a = v < 0.0f ? -v : v;
    uint8_t k = 0;
    for (uint8_t i = 0; i < 7; i++)
        if (a > mid[i] || (a == mid[i] && ((i + 1) & 1) == 0)) k = (uint8_t)(i + 1);
    return (uint8_t)(sign | k);
}
static inline float cq_e2m1_value(uint8_t code) {
    static const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    return (code & 8) ? -mag[code & 7] : mag[code & 7];
}

#endif
