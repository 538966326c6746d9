/* SPDX-License-Identifier: MIT */
/*
 * codec_q4_0.c - ggml's Q4_0 cache type (BASELINES.md section 2): blocks of
 * 32 consecutive channels of one token, byte-compatible with ggml's
 * block_q4_0 {fp16 d; uint8 qs[16]} (18 bytes, 4.5 bits/value). Byte j holds
 * element j in its low nibble and element j+16 in its high nibble.
 *
 * Quantizer = ggml's reference quantize_row_q4_0_ref, in fp32:
 *   m = the element of largest magnitude (first one on ties), d = m / -8,
 *   id = d ? 1/d : 0, q = min(15, (int8)(x * id + 8.5)) (truncation),
 *   stored d = fp16_RNE(d). Decode: (q - 8) * fp16(d).
 * An all-zero block stores d = -0.0 (0x8000) and codes 8, as ggml does.
 * The block quantizer is shared with q4_0_rot (codec_q4_0_rot.c).
 */
#include <math.h>
#include <stddef.h>

#include "blockfmt.h"
#include "cq_fp16.h"

#define Q4_0_QK 32

typedef struct q4_0_block {
    uint16_t d;
    uint8_t qs[Q4_0_QK / 2];
} q4_0_block;
_Static_assert(sizeof(q4_0_block) == 18, "block_q4_0 is 18 bytes in ggml");
_Static_assert(offsetof(q4_0_block, qs) == 2, "block_q4_0: d then qs");

static void q4_0_quantize(const float *x, uint8_t *out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < Q4_0_QK; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    cq_put_u16le(out + offsetof(q4_0_block, d), cq_f32_to_f16(d));
    for (int j = 0; j < Q4_0_QK / 2; j++) {
        /* x*id lies in [-8, 8] up to rounding, so the conversion is in range */
        int q0 = (int8_t)(x[j] * id + 8.5f), q1 = (int8_t)(x[j + 16] * id + 8.5f);
        q0 = q0 < 15 ? q0 : 15;
        q1 = q1 < 15 ? q1 : 15;
        out[offsetof(q4_0_block, qs) + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void q4_0_dequantize(const uint8_t *in, float *y) {
    const float d = cq_f16_to_f32(cq_get_u16le(in + offsetof(q4_0_block, d)));
    const uint8_t *qs = in + offsetof(q4_0_block, qs);
    for (int j = 0; j < Q4_0_QK / 2; j++) {
        y[j] = (float)((qs[j] & 0x0F) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

const cq_blockfmt cq_blockfmt_q4_0 = {"q4_0", Q4_0_QK, sizeof(q4_0_block), q4_0_quantize,
                                      q4_0_dequantize};

CQ_DEFINE_BLOCKFMT_CODEC_FUNCS(q4_0, cq_blockfmt_q4_0)

const cq_codec_traits cq_codec_q4_0 = {
    .id = CQ_CODEC_Q4_0, .name = "q4_0", .family = "ggml",
    .layout = "per token, 32-channel blocks {fp16 d, 16 B nibbles (j low, j+16 high)} = 18 B "
              "(ggml block_q4_0)",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .check = q4_0_check, .packed_bytes = q4_0_bytes, .encode = q4_0_encode,
    .decode = q4_0_decode, .modeled_bpv = q4_0_modeled,
};
