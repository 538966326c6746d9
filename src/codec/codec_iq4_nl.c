/* SPDX-License-Identifier: MIT */
/*
 * codec_iq4_nl.c - ggml's IQ4_NL cache type (BASELINES.md section 2): blocks
 * of 32 consecutive channels of one token, byte-compatible with ggml's
 * block_iq4_nl {fp16 d; uint8 qs[16]} (18 bytes, 4.5 bits/value); a code is
 * an index into 16 non-linear levels, byte j = index of element j (low
 * nibble) | index of element j+16 (high nibble). Decode: d * level[index].
 *
 * Quantizer = what ggml's cache writes, quantize_row_iq4_nl_ref (the impl
 * with ntry = -1, no quant weights), in fp32:
 *   amax, m = |x|-largest element (first on ties); amax < 1e-15 -> d = 0, all
 *   indices 0. Else d0 = m / level[0] (level[0] = -127), id = 1/d0,
 *   index_j = nearest level to id*x_j (an exact midpoint goes to the upper
 *   level), then the scale is refit by weighted least squares with weights
 *   w_j = x_j^2:  d = sum(w q x) / sum(w q q) (sequential fp32 sums, products
 *   left to right), stored fp16_RNE(d). ntry = -1 means ggml runs no further
 *   scale trials and keeps the first indices; the stored scale is the refit one.
 */
#include <math.h>
#include <stddef.h>

#include "blockfmt.h"
#include "cq_fp16.h"

#define IQ4_NL_QK 32

static const int8_t iq4nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1,    13,   25,  38,  53,  69,  89,  113};

typedef struct iq4_nl_block {
    uint16_t d;
    uint8_t qs[IQ4_NL_QK / 2];
} iq4_nl_block;
_Static_assert(sizeof(iq4_nl_block) == 18, "block_iq4_nl is 18 bytes in ggml");
_Static_assert(offsetof(iq4_nl_block, qs) == 2, "block_iq4_nl: d then qs");

/* Nearest level to x; at an exact midpoint the upper one. 2x and the level sums
 * are exact in fp32, so the comparison is exact. */
static int iq4nl_index(float x) {
    const float x2 = x + x;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1) {
        int j = idx + step;
        if (x2 >= (float)(iq4nl_levels[j - 1] + iq4nl_levels[j])) idx = j;
    }
    return idx;
}

static void iq4_nl_quantize(const float *x, uint8_t *out) {
    uint8_t L[IQ4_NL_QK] = {0};
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < IQ4_NL_QK; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    float d = 0.0f;
    if (!(amax < 1e-15f)) {
        const float id = 1.0f / (max / (float)iq4nl_levels[0]);
        float sumqx = 0.0f, sumq2 = 0.0f;
        for (int j = 0; j < IQ4_NL_QK; j++) {
            int l = iq4nl_index(id * x[j]);
            L[j] = (uint8_t)l;
            const float q = (float)iq4nl_levels[l], w = x[j] * x[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
    }
    cq_put_u16le(out + offsetof(iq4_nl_block, d), cq_f32_to_f16(d));
    for (int j = 0; j < IQ4_NL_QK / 2; j++)
        out[offsetof(iq4_nl_block, qs) + j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

static void iq4_nl_dequantize(const uint8_t *in, float *y) {
    const float d = cq_f16_to_f32(cq_get_u16le(in + offsetof(iq4_nl_block, d)));
    const uint8_t *qs = in + offsetof(iq4_nl_block, qs);
    for (int j = 0; j < IQ4_NL_QK / 2; j++) {
        y[j] = d * (float)iq4nl_levels[qs[j] & 0x0F];
        y[j + 16] = d * (float)iq4nl_levels[qs[j] >> 4];
    }
}

static const cq_blockfmt fmt_iq4_nl = {"iq4_nl", IQ4_NL_QK, sizeof(iq4_nl_block),
                                       iq4_nl_quantize, iq4_nl_dequantize};

CQ_DEFINE_BLOCKFMT_CODEC_FUNCS(iq4_nl, fmt_iq4_nl)

const cq_codec_traits cq_codec_iq4_nl = {
    .id = CQ_CODEC_IQ4_NL, .name = "iq4_nl", .family = "ggml",
    .layout = "per token, 32-channel blocks {fp16 d, 16 B level indices} = 18 B "
              "(ggml block_iq4_nl)",
    .bits = 4.0,
    .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,
    .check = iq4_nl_check, .packed_bytes = iq4_nl_bytes, .encode = iq4_nl_encode,
    .decode = iq4_nl_decode, .modeled_bpv = iq4_nl_modeled,
};
