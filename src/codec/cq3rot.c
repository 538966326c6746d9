/* SPDX-License-Identifier: MIT */
/*
 * cq3rot.c - CQ-3-rot, the value-path extension of CONTRACT.md section 9:
 * per-token fp16 Walsh-Hadamard rotation (RNE after every butterfly), INT3
 * per-token quantization, 3-bit little-endian packing; decode applies the
 * same transform and the exact 1/D.
 * Packing: the codes of the whole block form one bit stream, code i of the
 * block (i = t*D + c) at bit offset 3i, LSB first across bytes.
 */
#include <string.h>

#include "cq_codec.h"

static int is_pow2(uint32_t d) { return d >= 2 && (d & (d - 1)) == 0; }

size_t cq3rot_payload_bytes(uint32_t D, uint32_t T) { return ((size_t)3 * D * T + 7) / 8; }

cq_status cq_wht_f16(uint16_t *row, uint32_t D) {
    if (!row) return CQ_ERR_NULL;
    if (!is_pow2(D) || D > CQ_MAX_DIM) return CQ_ERR_DIM;
    for (uint32_t h = 1; h < D; h <<= 1)
        for (uint32_t i = 0; i < D; i += 2 * h)
            for (uint32_t j = i; j < i + h; j++) {
                /* the sum of two fp16 values is exact in a double */
                double a = cq_f16_to_f32(row[j]), b = cq_f16_to_f32(row[j + h]);
                uint16_t s = cq_f64_to_f16(a + b), d = cq_f64_to_f16(a - b);
                if (!cq_f16_is_finite(s) || !cq_f16_is_finite(d)) return CQ_ERR_OVERFLOW;
                row[j] = s;
                row[j + h] = d;
            }
    return CQ_OK;
}

static void put3(uint8_t *buf, size_t i, int code) {
    size_t bit = 3 * i;
    unsigned v = (unsigned)code & 7u;
    for (int b = 0; b < 3; b++, bit++) {
        uint8_t m = (uint8_t)(1u << (bit & 7));
        if ((v >> b) & 1u) buf[bit >> 3] |= m;
        else buf[bit >> 3] &= (uint8_t)~m;
    }
}

static int get3(const uint8_t *buf, size_t i) {
    size_t bit = 3 * i;
    unsigned v = 0;
    for (int b = 0; b < 3; b++, bit++) v |= (unsigned)((buf[bit >> 3] >> (bit & 7)) & 1u) << b;
    return (int)((v ^ 4u) - 4u); /* sign-extend 3-bit two's complement */
}

/* Rotate and quantize one token into codes[D] and *scale. Refuses (CQ_ERR_OVERFLOW) a token
 * whose forward rotation overflows fp16, and also one whose stream could not be decoded: the
 * decoder's rotation of the dequantized codes reaches about D times the input, so an input
 * above ~65504/D would encode fine and then overflow on every decode. */
static cq_status rot_quant_token(const uint16_t *v, uint32_t D, int8_t *codes, uint16_t *scale) {
    uint16_t row[CQ_MAX_DIM];
    memcpy(row, v, D * sizeof row[0]);
    if (cq_wht_f16(row, D) != CQ_OK) return CQ_ERR_OVERFLOW;
    uint16_t s = cq_scale_from_amax(cq_amax_f16(row, D, 1), 3);
    for (uint32_t c = 0; c < D; c++) {
        codes[c] = (int8_t)cq_quantize(row[c], s, 3);
        row[c] = cq_f32_to_f16(cq_dequantize(codes[c], s)); /* what the decoder rotates */
    }
    if (cq_wht_f16(row, D) != CQ_OK) return CQ_ERR_OVERFLOW;
    *scale = s;
    return CQ_OK;
}

cq_status cq3rot_encode(const uint16_t *V, uint32_t T, uint32_t D, uint8_t *payload,
                        uint16_t *scales, cq_err *err) {
    cq_err_clear(err);
    if ((T && !V) || !payload || !scales) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    if (!is_pow2(D) || D > CQ_MAX_DIM)
        return cq_err_set(err, CQ_ERR_DIM, -1, -1,
                          "CQ-3-rot needs a power-of-two head_dim in [2, %d], got D=%u", CQ_MAX_DIM, D);
    uint32_t bt, bc;
    if (cq_find_nonfinite(V, T, D, &bt, &bc))
        return cq_err_set(err, CQ_ERR_NONFINITE, bt, (int32_t)bc,
                          "non-finite input at token %u, channel %u: refused, nothing written", bt, bc);
    /* check every token first so that an overflow refuses the block before any write */
    int8_t codes[CQ_MAX_DIM];
    uint16_t s;
    for (uint32_t t = 0; t < T; t++)
        if (rot_quant_token(V + (size_t)t * D, D, codes, &s) != CQ_OK)
            return cq_err_set(err, CQ_ERR_OVERFLOW, t, -1,
                              "token %u: the fp16 Walsh-Hadamard rotation (encode or decode) "
                              "overflows: CQ-3-rot needs |v| below about 65504/D=%u", t, D);
    memset(payload, 0, cq3rot_payload_bytes(D, T));
    for (uint32_t t = 0; t < T; t++) {
        (void)rot_quant_token(V + (size_t)t * D, D, codes, &s);
        scales[t] = s;
        for (uint32_t c = 0; c < D; c++) put3(payload, (size_t)t * D + c, codes[c]);
    }
    return CQ_OK;
}

cq_status cq3rot_decode(const uint8_t *payload, const uint16_t *scales, uint32_t T, uint32_t D,
                        float *out) {
    if (T && (!payload || !scales || !out)) return CQ_ERR_NULL;
    if (!is_pow2(D) || D > CQ_MAX_DIM) return CQ_ERR_DIM;
    const float inv_d = 1.0f / (float)D; /* a power of two: exact */
    uint16_t row[CQ_MAX_DIM];
    cq_status st = CQ_OK;
    for (uint32_t t = 0; t < T; t++) {
        for (uint32_t c = 0; c < D; c++)
            row[c] = cq_f32_to_f16(cq_dequantize(get3(payload, (size_t)t * D + c), scales[t]));
        if (cq_wht_f16(row, D) != CQ_OK) {
            /* only crafted streams get here; report it, still emit a defined row */
            st = CQ_ERR_OVERFLOW;
            for (uint32_t c = 0; c < D; c++) out[(size_t)t * D + c] = 0.0f;
            continue;
        }
        for (uint32_t c = 0; c < D; c++) out[(size_t)t * D + c] = cq_f16_to_f32(row[c]) * inv_d;
    }
    return st;
}
