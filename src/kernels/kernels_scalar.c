/*
 * kernels_scalar.c - the scalar reference of every hot loop of the cache.
 * Encoders call the codec core itself (the contract), so they are the spec the
 * AVX2 encoders are tested against bit for bit. The attention loops are plain
 * fp32 loops in token order; the AVX2 versions reorder sums and agree within
 * the bound stated in docs/CACHE.md.
 * Not here: SIMD code (kernels_avx2.c), the choice of table (dispatch.c).
 */
#include <math.h>

#include "cq_kernels.h"

static void s_enc_token(const uint16_t *x, uint32_t D, unsigned bits, uint8_t *codes,
                        uint16_t *scale) {
    (void)cq_encode_token(x, D, bits, codes, scale, 0, NULL); /* finite: cannot fail */
}

static void s_enc_key_group(const cq_params *p, const uint16_t *K, uint32_t g, uint8_t *payload,
                            uint16_t *scales, uint16_t *sidecar) {
    (void)cq_encode_key_group(p, K, g, payload, scales, sidecar, 0, NULL);
}

static void s_dot_f16(const float *q, uint32_t nh, const uint16_t *k, uint32_t n, uint32_t D,
                      float *s, uint32_t ss) {
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < nh; h++) {
            float a = 0.0f;
            for (uint32_t c = 0; c < D; c++)
                a += q[(size_t)h * D + c] * cq_f16_to_f32(k[(size_t)t * D + c]);
            s[(size_t)h * ss + t] = a;
        }
}

static void s_dot_f32(const float *q, uint32_t nh, const float *k, uint32_t n, uint32_t D,
                      float *s, uint32_t ss) {
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < nh; h++) {
            float a = 0.0f;
            for (uint32_t c = 0; c < D; c++) a += q[(size_t)h * D + c] * k[(size_t)t * D + c];
            s[(size_t)h * ss + t] = a;
        }
}

static void s_dot_i8(const float *q, uint32_t nh, const int8_t *k, const uint16_t *ks, uint32_t n,
                     uint32_t D, float *s, uint32_t ss) {
    for (uint32_t t = 0; t < n; t++) {
        float sc = cq_f16_to_f32(ks[t]);
        for (uint32_t h = 0; h < nh; h++) {
            float a = 0.0f;
            for (uint32_t c = 0; c < D; c++) a += q[(size_t)h * D + c] * (float)k[(size_t)t * D + c];
            s[(size_t)h * ss + t] = a * sc;
        }
    }
}

static void s_dot_i4(const float *qp, uint32_t nh, const uint8_t *k, uint32_t n, uint32_t kept,
                     float *s, uint32_t ss) {
    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *row = k + (size_t)t * (kept / 2);
        for (uint32_t h = 0; h < nh; h++) {
            float a = 0.0f;
            for (uint32_t c = 0; c < kept; c++)
                a += qp[(size_t)h * kept + c] * (float)cq_nibble_get(row, c);
            s[(size_t)h * ss + t] = a;
        }
    }
}

static void s_acc_f16(const float *w, uint32_t ws, uint32_t nh, const uint16_t *v, uint32_t n,
                      uint32_t D, float *acc) {
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < nh; h++) {
            float p = w[(size_t)h * ws + t];
            for (uint32_t c = 0; c < D; c++)
                acc[(size_t)h * D + c] += p * cq_f16_to_f32(v[(size_t)t * D + c]);
        }
}

static void s_acc_f32(const float *w, uint32_t ws, uint32_t nh, const float *v, uint32_t n,
                      uint32_t D, float *acc) {
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < nh; h++) {
            float p = w[(size_t)h * ws + t];
            for (uint32_t c = 0; c < D; c++) acc[(size_t)h * D + c] += p * v[(size_t)t * D + c];
        }
}

static void s_acc_i8(const float *w, uint32_t ws, uint32_t nh, const int8_t *v, const uint16_t *vs,
                     uint32_t n, uint32_t D, float *acc) {
    for (uint32_t t = 0; t < n; t++) {
        float sc = cq_f16_to_f32(vs[t]);
        for (uint32_t h = 0; h < nh; h++) {
            float p = w[(size_t)h * ws + t] * sc;
            for (uint32_t c = 0; c < D; c++)
                acc[(size_t)h * D + c] += p * (float)v[(size_t)t * D + c];
        }
    }
}

static void s_acc_i4(const float *w, uint32_t ws, uint32_t nh, const uint8_t *v, const uint16_t *vs,
                     uint32_t n, uint32_t D, float *acc) {
    for (uint32_t t = 0; t < n; t++) {
        float sc = cq_f16_to_f32(vs[t]);
        const uint8_t *row = v + (size_t)t * (D / 2);
        for (uint32_t h = 0; h < nh; h++) {
            float p = w[(size_t)h * ws + t] * sc;
            for (uint32_t c = 0; c < D; c++)
                acc[(size_t)h * D + c] += p * (float)cq_nibble_get(row, c);
        }
    }
}

static int s_any_nonfinite(const uint16_t *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!cq_f16_is_finite(x[i])) return 1;
    return 0;
}

static float s_exp_sum(float *x, uint32_t n, float m) {
    float sum = 0.0f;
    for (uint32_t i = 0; i < n; i++) sum += (x[i] = expf(x[i] - m));
    return sum;
}

static uint64_t s_read_sum(const uint8_t *p, size_t n) {
    const uint64_t *w = (const uint64_t *)(const void *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i < n / 8; i += 4) a += w[i], b += w[i + 1], c += w[i + 2], d += w[i + 3];
    return a ^ b ^ c ^ d;
}

static void s_f16_to_f32(const uint16_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = cq_f16_to_f32(x[i]);
}

static const cq_kernels scalar_table = {
    .name = "scalar",
    .enc_token = s_enc_token,
    .enc_key_group = s_enc_key_group,
    .dot_f16 = s_dot_f16,
    .dot_f32 = s_dot_f32,
    .dot_i8 = s_dot_i8,
    .dot_i4 = s_dot_i4,
    .acc_f16 = s_acc_f16,
    .acc_f32 = s_acc_f32,
    .acc_i8 = s_acc_i8,
    .acc_i4 = s_acc_i4,
    .any_nonfinite = s_any_nonfinite,
    .exp_sum = s_exp_sum,
    .read_sum = s_read_sum,
    .f16_to_f32 = s_f16_to_f32,
};

const cq_kernels *cq_kernels_scalar(void) { return &scalar_table; }
