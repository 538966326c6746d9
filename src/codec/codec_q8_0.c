/* SPDX-License-Identifier: MIT */
/*
 * codec_q8_0.c - ggml's Q8_0 cache type (BASELINES.md section 2): blocks of
 * 32 consecutive channels of one token, byte-compatible with ggml's
 * block_q8_0 {fp16 d; int8 qs[32]} (34 bytes, 8.5 bits/value).
 *
 * Quantizer = ggml's reference quantize_row_q8_0_ref, in fp32:
 *   amax = max |x|, d = amax / 127, id = d ? 1/d : 0, q = roundf(x * id)
 * (half away from zero), stored d = fp16_RNE(d). Decode: q * fp16(d).
 * The quantizer divides by the fp32 d, not the stored fp16 one, exactly as
 * ggml does; that is why |x - x_hat| can exceed d/2 by the fp16 rounding of d.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "blockfmt.h"
#include "cq_fp16.h"

#define Q8_0_QK 32

typedef struct q8_0_block {
    uint16_t d; /* fp16 bits */
    int8_t qs[Q8_0_QK];
} q8_0_block;
_Static_assert(sizeof(q8_0_block) == 34, "block_q8_0 is 34 bytes in ggml");
_Static_assert(offsetof(q8_0_block, qs) == 2, "block_q8_0: d then qs");

static void q8_0_quantize(const float *x, uint8_t *out) {
    float amax = 0.0f;
    for (int j = 0; j < Q8_0_QK; j++) {
        float a = fabsf(x[j]);
        amax = amax > a ? amax : a;
    }
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    cq_put_u16le(out + offsetof(q8_0_block, d), cq_f32_to_f16(d));
    for (int j = 0; j < Q8_0_QK; j++)
        out[offsetof(q8_0_block, qs) + j] = (uint8_t)(int8_t)roundf(x[j] * id); /* |.| <= 127 */
}

static void q8_0_dequantize(const uint8_t *in, float *y) {
    const float d = cq_f16_to_f32(cq_get_u16le(in + offsetof(q8_0_block, d)));
    for (int j = 0; j < Q8_0_QK; j++) y[j] = (float)(int8_t)in[offsetof(q8_0_block, qs) + j] * d;
}

static const cq_blockfmt fmt_q8_0 = {"q8_0", Q8_0_QK, sizeof(q8_0_block), q8_0_quantize,
                                     q8_0_dequantize};

CQ_DEFINE_BLOCKFMT_CODEC_FUNCS(q8_0, fmt_q8_0)

const cq_codec_traits cq_codec_q8_0 = {
    .id = CQ_CODEC_Q8_0, .name = "q8_0", .family = "ggml",
    .layout = "per token, 32-channel blocks {fp16 d, int8 qs[32]} = 34 B (ggml block_q8_0)",
    .bits = 8.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .check = q8_0_check, .packed_bytes = q8_0_bytes, .encode = q8_0_encode,
    .decode = q8_0_decode, .modeled_bpv = q8_0_modeled,
};
