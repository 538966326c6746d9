/* SPDX-License-Identifier: MIT */
/*
 * codec_q5_0.c - ggml's Q5_0 cache type (BASELINES.md section 2): blocks of
 * 32 consecutive channels of one token, byte-compatible with ggml's
 * block_q5_0 {fp16 d; uint8 qh[4]; uint8 qs[16]} (22 bytes, 5.5 bits/value).
 * Low 4 bits: byte j = element j (low nibble) | element j+16 (high nibble);
 * bit 4 of element i is bit i of the little-endian 32-bit word qh.
 *
 * Quantizer = ggml's reference quantize_row_q5_0_ref, in fp32:
 *   m = the element of largest magnitude (first on ties), d = m / -16,
 *   id = d ? 1/d : 0, q = min(31, (int8)(x * id + 16.5)) (truncation),
 *   stored d = fp16_RNE(d). Decode: (q - 16) * fp16(d).
 */
#include <math.h>
#include <stddef.h>

#include "blockfmt.h"
#include "cq_fp16.h"

#define Q5_0_QK 32

typedef struct q5_0_block {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[Q5_0_QK / 2];
} q5_0_block;
_Static_assert(sizeof(q5_0_block) == 22, "block_q5_0 is 22 bytes in ggml");
_Static_assert(offsetof(q5_0_block, qh) == 2 && offsetof(q5_0_block, qs) == 6,
               "block_q5_0: d, qh, qs");

static void q5_0_quantize(const float *x, uint8_t *out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < Q5_0_QK; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    cq_put_u16le(out + offsetof(q5_0_block, d), cq_f32_to_f16(d));
    uint32_t qh = 0;
    for (int j = 0; j < Q5_0_QK / 2; j++) {
        int q0 = (int8_t)(x[j] * id + 16.5f), q1 = (int8_t)(x[j + 16] * id + 16.5f);
        q0 = q0 < 31 ? q0 : 31;
        q1 = q1 < 31 ? q1 : 31;
        out[offsetof(q5_0_block, qs) + j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
        qh |= (uint32_t)((q0 >> 4) & 1) << j;
        qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
    }
    cq_put_u32le(out + offsetof(q5_0_block, qh), qh);
}

static void q5_0_dequantize(const uint8_t *in, float *y) {
    const float d = cq_f16_to_f32(cq_get_u16le(in + offsetof(q5_0_block, d)));
    const uint32_t qh = cq_get_u32le(in + offsetof(q5_0_block, qh));
    const uint8_t *qs = in + offsetof(q5_0_block, qs);
    for (int j = 0; j < Q5_0_QK / 2; j++) {
        int q0 = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
        int q1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = (float)(q0 - 16) * d;
        y[j + 16] = (float)(q1 - 16) * d;
    }
}

static const cq_blockfmt fmt_q5_0 = {"q5_0", Q5_0_QK, sizeof(q5_0_block), q5_0_quantize,
                                     q5_0_dequantize};

CQ_DEFINE_BLOCKFMT_CODEC_FUNCS(q5_0, fmt_q5_0)

const cq_codec_traits cq_codec_q5_0 = {
    .id = CQ_CODEC_Q5_0, .name = "q5_0", .family = "ggml",
    .layout = "per token, 32-channel blocks {fp16 d, u32 LE high bits, 16 B nibbles} = 22 B "
              "(ggml block_q5_0)",
    .bits = 5.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .check = q5_0_check, .packed_bytes = q5_0_bytes, .encode = q5_0_encode,
    .decode = q5_0_decode, .modeled_bpv = q5_0_modeled,
};
