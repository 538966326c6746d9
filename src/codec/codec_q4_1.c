/* SPDX-License-Identifier: MIT */
/*
 * codec_q4_1.c - ggml's Q4_1 cache type (BASELINES.md section 2): blocks of
 * 32 consecutive channels of one token, byte-compatible with ggml's
 * block_q4_1 {fp16 d; fp16 m; uint8 qs[16]} (20 bytes, 5.0 bits/value);
 * byte j = element j (low nibble) | element j+16 (high nibble).
 *
 * Quantizer = ggml's reference quantize_row_q4_1_ref, in fp32:
 *   min, max over the block, d = (max - min) / 15, id = d ? 1/d : 0,
 *   q = min(15, (int8)((x - min) * id + 0.5)) (truncation),
 *   stored d = fp16_RNE(d), m = fp16_RNE(min). Decode: q * fp16(d) + fp16(m).
 */
#include <float.h>
#include <stddef.h>

#include "blockfmt.h"
#include "cq_fp16.h"

#define Q4_1_QK 32

typedef struct q4_1_block {
    uint16_t d, m;
    uint8_t qs[Q4_1_QK / 2];
} q4_1_block;
_Static_assert(sizeof(q4_1_block) == 20, "block_q4_1 is 20 bytes in ggml");
_Static_assert(offsetof(q4_1_block, m) == 2 && offsetof(q4_1_block, qs) == 4,
               "block_q4_1: d, m, qs");

static void q4_1_quantize(const float *x, uint8_t *out) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < Q4_1_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    cq_put_u16le(out + offsetof(q4_1_block, d), cq_f32_to_f16(d));
    cq_put_u16le(out + offsetof(q4_1_block, m), cq_f32_to_f16(min));
    for (int j = 0; j < Q4_1_QK / 2; j++) {
        /* (x - min) * id lies in [0, 15] up to rounding */
        int q0 = (int8_t)((x[j] - min) * id + 0.5f), q1 = (int8_t)((x[j + 16] - min) * id + 0.5f);
        q0 = q0 < 15 ? q0 : 15;
        q1 = q1 < 15 ? q1 : 15;
        out[offsetof(q4_1_block, qs) + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void q4_1_dequantize(const uint8_t *in, float *y) {
    const float d = cq_f16_to_f32(cq_get_u16le(in + offsetof(q4_1_block, d)));
    const float m = cq_f16_to_f32(cq_get_u16le(in + offsetof(q4_1_block, m)));
    const uint8_t *qs = in + offsetof(q4_1_block, qs);
    for (int j = 0; j < Q4_1_QK / 2; j++) {
        y[j] = (float)(qs[j] & 0x0F) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

static const cq_blockfmt fmt_q4_1 = {"q4_1", Q4_1_QK, sizeof(q4_1_block), q4_1_quantize,
                                     q4_1_dequantize};

CQ_DEFINE_BLOCKFMT_CODEC_FUNCS(q4_1, fmt_q4_1)

const cq_codec_traits cq_codec_q4_1 = {
    .id = CQ_CODEC_Q4_1, .name = "q4_1", .family = "ggml",
    .layout = "per token, 32-channel blocks {fp16 d, fp16 m, 16 B nibbles} = 20 B "
              "(ggml block_q4_1)",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .check = q4_1_check, .packed_bytes = q4_1_bytes, .encode = q4_1_encode,
    .decode = q4_1_decode, .modeled_bpv = q4_1_modeled,
};
