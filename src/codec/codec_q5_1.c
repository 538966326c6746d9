/* SPDX-License-Identifier: MIT */
/*
 * codec_q5_1.c - ggml's Q5_1 cache type (BASELINES.md section 2): blocks of
 * 32 consecutive channels of one token, byte-compatible with ggml's
 * block_q5_1 {fp16 d; fp16 m; uint8 qh[4]; uint8 qs[16]} (24 bytes, 6.0
 * bits/value). Nibbles and high bits as in q5_0.
 *
 * Quantizer = ggml's reference quantize_row_q5_1_ref, in fp32:
 *   min, max, d = (max - min) / 31, id = d ? 1/d : 0,
 *   q = (uint8)((x - min) * id + 0.5) (truncation; no clamp in ggml: the
 *   value never exceeds 31.5), stored d = fp16_RNE(d), m = fp16_RNE(min).
 *   Decode: q * fp16(d) + fp16(m).
 */
#include <float.h>
#include <stddef.h>

#include "blockfmt.h"
#include "cq_fp16.h"

#define Q5_1_QK 32

typedef struct q5_1_block {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[Q5_1_QK / 2];
} q5_1_block;
_Static_assert(sizeof(q5_1_block) == 24, "block_q5_1 is 24 bytes in ggml");
_Static_assert(offsetof(q5_1_block, m) == 2 && offsetof(q5_1_block, qh) == 4 &&
                   offsetof(q5_1_block, qs) == 8,
               "block_q5_1: d, m, qh, qs");

static void q5_1_quantize(const float *x, uint8_t *out) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < Q5_1_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    cq_put_u16le(out + offsetof(q5_1_block, d), cq_f32_to_f16(d));
    cq_put_u16le(out + offsetof(q5_1_block, m), cq_f32_to_f16(min));
    uint32_t qh = 0;
    for (int j = 0; j < Q5_1_QK / 2; j++) {
        /* the value is in [0, 31.5) up to rounding; the clamp only guards the conversion */
        float v0 = (x[j] - min) * id + 0.5f, v1 = (x[j + 16] - min) * id + 0.5f;
        int q0 = (uint8_t)(v0 < 255.0f ? v0 : 255.0f), q1 = (uint8_t)(v1 < 255.0f ? v1 : 255.0f);
        out[offsetof(q5_1_block, qs) + j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
        qh |= (uint32_t)((q0 >> 4) & 1) << j;
        qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
    }
    cq_put_u32le(out + offsetof(q5_1_block, qh), qh);
}

static void q5_1_dequantize(const uint8_t *in, float *y) {
    const float d = cq_f16_to_f32(cq_get_u16le(in + offsetof(q5_1_block, d)));
    const float m = cq_f16_to_f32(cq_get_u16le(in + offsetof(q5_1_block, m)));
    const uint32_t qh = cq_get_u32le(in + offsetof(q5_1_block, qh));
    const uint8_t *qs = in + offsetof(q5_1_block, qs);
    for (int j = 0; j < Q5_1_QK / 2; j++) {
        int q0 = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
        int q1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = (float)q0 * d + m;
        y[j + 16] = (float)q1 * d + m;
    }
}

static const cq_blockfmt fmt_q5_1 = {"q5_1", Q5_1_QK, sizeof(q5_1_block), q5_1_quantize,
                                     q5_1_dequantize};

CQ_DEFINE_BLOCKFMT_CODEC_FUNCS(q5_1, fmt_q5_1)

const cq_codec_traits cq_codec_q5_1 = {
    .id = CQ_CODEC_Q5_1, .name = "q5_1", .family = "ggml",
    .layout = "per token, 32-channel blocks {fp16 d, fp16 m, u32 LE high bits, 16 B nibbles} = "
              "24 B (ggml block_q5_1)",
    .bits = 5.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .check = q5_1_check, .packed_bytes = q5_1_bytes, .encode = q5_1_encode,
    .decode = q5_1_decode, .modeled_bpv = q5_1_modeled,
};
