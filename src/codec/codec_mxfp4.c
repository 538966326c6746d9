/* SPDX-License-Identifier: MIT */
/*
 * codec_mxfp4.c - MXFP4 (OCP Microscaling Formats v1.0; BASELINES.md section
 * 3): blocks of 32 consecutive channels of one token share an E8M0 scale
 * X = 2^(floor(log2(amax)) - 2); elements are FP4 E2M1 of x / X, round to
 * nearest even, saturating at 6 (amax / X lies in [4, 8), so values above
 * 6X clip). 4.25 bits/value.
 *
 * Layout: ggml's block_mxfp4 {uint8 e; uint8 qs[16]} (17 bytes), byte j =
 * element j (low nibble) | element j+16 (high nibble), e = biased E8M0
 * exponent (X = 2^(e - 127)). An all-zero block stores e = 0 (as ggml).
 * Decode: e2m1(code) * 2^(e - 127); e = 0xFF is NaN in E8M0 and decodes to NaN.
 * floor(log2(amax)) is taken from the exponent bits (exact; amax is an fp16
 * value), and x / X is exact (X is a power of two).
 */
#include <math.h>
#include <stddef.h>

#include "blockfmt.h"
#include "cq_fp16.h"

#define MXFP4_QK 32

typedef struct mxfp4_block {
    uint8_t e;
    uint8_t qs[MXFP4_QK / 2];
} mxfp4_block;
_Static_assert(sizeof(mxfp4_block) == 17, "block_mxfp4 is 17 bytes in ggml");
_Static_assert(offsetof(mxfp4_block, qs) == 1, "block_mxfp4: e then qs");

static void mxfp4_quantize(const float *x, uint8_t *out) {
    float amax = 0.0f;
    for (int j = 0; j < MXFP4_QK; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
    uint8_t e = 0;
    if (amax > 0.0f) {
        int ex;
        (void)frexpf(amax, &ex); /* amax = f * 2^ex, f in [0.5, 1): floor(log2) = ex - 1 */
        e = (uint8_t)(ex - 1 - 2 + 127); /* fp16 inputs: ex - 1 in [-24, 15] -> e in [101, 140] */
    }
    out[offsetof(mxfp4_block, e)] = e;
    const float inv = ldexpf(1.0f, 127 - (int)e); /* 1/X, exact */
    uint8_t *qs = out + offsetof(mxfp4_block, qs);
    for (int j = 0; j < MXFP4_QK / 2; j++)
        qs[j] = (uint8_t)(cq_e2m1_encode(x[j] * inv) | (cq_e2m1_encode(x[j + 16] * inv) << 4));
}

static void mxfp4_dequantize(const uint8_t *in, float *y) {
    const uint8_t e = in[offsetof(mxfp4_block, e)];
    const float X = e == 0xFF ? NAN : ldexpf(1.0f, (int)e - 127);
    const uint8_t *qs = in + offsetof(mxfp4_block, qs);
    for (int j = 0; j < MXFP4_QK / 2; j++) {
        y[j] = cq_e2m1_value(qs[j] & 0x0F) * X;
        y[j + 16] = cq_e2m1_value((uint8_t)(qs[j] >> 4)) * X;
    }
}

static const cq_blockfmt fmt_mxfp4 = {"mxfp4", MXFP4_QK, sizeof(mxfp4_block), mxfp4_quantize,
                                      mxfp4_dequantize};

CQ_DEFINE_BLOCKFMT_CODEC_FUNCS(mxfp4, fmt_mxfp4)

const cq_codec_traits cq_codec_mxfp4 = {
    .id = CQ_CODEC_MXFP4, .name = "mxfp4", .family = "mx",
    .layout = "per token, 32-channel blocks {E8M0 e, 16 B E2M1 nibbles (j low, j+16 high)} = "
              "17 B (ggml block_mxfp4)",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .check = mxfp4_check, .packed_bytes = mxfp4_bytes, .encode = mxfp4_encode,
    .decode = mxfp4_decode, .modeled_bpv = mxfp4_modeled,
};
