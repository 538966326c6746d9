/* SPDX-License-Identifier: MIT */
/*
 * codec_tbq.c - tbq3 and tbq4, the TurboQuant cache types of the sibling
 * llama.cpp fork (BASELINES.md section 4). turbo2/3/4 live in codec_turbo.c.
 *
 * Per block of B = 128 channels of one token (B = 64 when D is not a
 * multiple of 128; D a multiple of 64), fp32:
 *   n = ||x||, u = x/n (0 if n < 1e-12),
 *   y = FWHT(s (.) u)   unnormalized: for a unit u the coordinates are ~N(0,1),
 *                        which is what the N(0,1) codebooks expect
 *   idx_j = nearest N(0,1) Lloyd-Max centroid (a value on a midpoint goes up,
 *           so y == 0 goes to the upper half, as for turbo; the fork's CPU
 *           path sends exact boundary ties down - only exact ties differ)
 *   stored norm = fp16(n / ||C[idx]||)   (corrected norm)
 * Decode: s (.) FWHT(C[idx]) / sqrt(B) * norm: the orthonormal inverse, so the
 * reconstruction has the input's norm before fp16 rounding. The output is
 * un-rotated (the forks keep K/V rotated and rotate Q; same attention up to
 * fp rounding). One Rademacher mask s, first B bits (bit i of word i/32 set = -1).
 *
 * Packed layout per block: { qs, fp16 norm }:
 *   tbq3: 48 B of 3-bit codes as an LSB-first bit stream (code j at bit 3j) | norm   50 B
 *   tbq4: 64 B nibbles (low nibble = even j) | norm                             66 B
 * (a B = 64 block halves qs). Blocks are stored [T][D/B]. A norm that
 * overflows fp16 is refused with CQ_ERR_OVERFLOW (nothing written).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_bits.h"
#include "cq_codec.h"
#include "cq_registry.h"
#include "cq_util.h"

static const uint32_t tbq_signs[4] = {0xa3b1c6d9u, 0x7e4f2a85u, 0xd1936cf0u, 0x5b8e47a2u};

/* N(0,1) Lloyd-Max codebooks, ascending. */
static const float tbq_c3[8] = {-2.1519478649f, -1.3439114671f, -0.7560068854f, -0.2450947664f,
                                0.2450947664f,  0.7560068854f,  1.3439114671f,  2.1519478649f};
static const float tbq_c4[16] = {-2.7643471169f, -2.1048021157f, -1.6544546703f, -1.2904430627f,
                                 -0.9718584055f, -0.6794737713f, -0.4023510241f, -0.1332771696f,
                                 0.1332771696f,  0.4023510241f,  0.6794737713f,  0.9718584055f,
                                 1.2904430627f,  1.6544546703f,  2.1048021157f,  2.7643471169f};

static float tbq_sign(uint32_t i) { return cqb_mask_sign(tbq_signs, i); }

static cq_status tbq_check(const cq_codec_cfg *cfg, cq_role role) {
    (void)role;
    return cqb_turbo_block(cfg->dim) ? CQ_OK : CQ_ERR_DIM;
}

static size_t tbq_bytes_b(unsigned bits, const cq_codec_cfg *cfg, uint32_t T) {
    uint32_t B = cqb_turbo_block(cfg->dim);
    if (!B) return 0;
    return (size_t)T * (cfg->dim / B) * cqb_turbo_block_bytes(bits, B);
}

static const float *tbq_book(unsigned bits) { return bits == 3 ? tbq_c3 : tbq_c4; }

static void tbq_put(unsigned bits, uint8_t *qs, uint32_t j, unsigned idx) {
    if (bits == 3) cqb_put_bits(qs, j, 3, idx);
    else qs[j / 2] |= (uint8_t)((idx & 15u) << (4 * (j % 2)));
}
static unsigned tbq_get(unsigned bits, const uint8_t *qs, uint32_t j) {
    if (bits == 3) return cqb_get_bits(qs, j, 3);
    return (qs[j / 2] >> (4 * (j % 2))) & 15u;
}

static int tbq_block_encode(unsigned bits, uint32_t B, const float *x, uint8_t *blk) {
    const float *c = tbq_book(bits);
    unsigned nc = 1u << bits;
    float y[128], mid[15];
    cqb_midpoints(c, nc, mid);
    float n2 = 0.0f;
    for (uint32_t j = 0; j < B; j++) n2 += x[j] * x[j];
    float n = sqrtf(n2);
    for (uint32_t j = 0; j < B; j++) y[j] = n < 1e-12f ? 0.0f : x[j] / n * tbq_sign(j);
    cq_fwht_f32(y, B);
    memset(blk, 0, cqb_turbo_block_bytes(bits, B));
    float r2 = 0.0f;
    for (uint32_t j = 0; j < B; j++) {
        unsigned idx = cqb_nearest(y[j], mid, nc);
        r2 += c[idx] * c[idx];
        tbq_put(bits, blk, j, idx);
    }
    uint16_t h = cq_f32_to_f16(n / sqrtf(r2));
    if (!cq_f16_is_finite(h)) return -1;
    cqb_put16(blk + (size_t)B * bits / 8, h);
    return 0;
}

static void tbq_block_decode(unsigned bits, uint32_t B, const uint8_t *blk, float *out) {
    const float *c = tbq_book(bits);
    float norm = cq_f16_to_f32(cqb_get16(blk + (size_t)B * bits / 8));
    for (uint32_t j = 0; j < B; j++) out[j] = c[tbq_get(bits, blk, j)];
    cq_fwht_orthonormal_f32(out, B);
    for (uint32_t j = 0; j < B; j++) out[j] = out[j] * tbq_sign(j) * norm;
}

static cq_status tbq_encode_b(const char *name, unsigned bits, const cq_codec_cfg *cfg,
                              cq_role role, const uint16_t *x, uint32_t T, uint8_t *dst,
                              size_t cap, cq_err *err) {
    uint32_t D = cfg->dim, B = cqb_turbo_block(D);
    if (tbq_check(cfg, role))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "%s needs head_dim a multiple of 64, got %u",
                          name, D);
    size_t need = tbq_bytes_b(bits, cfg, T), bb = cqb_turbo_block_bytes(bits, B);
    if (cap < need) return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "dst too small");
    uint32_t bt, bc;
    if (cq_find_nonfinite(x, T, D, &bt, &bc))
        return cq_err_set(err, CQ_ERR_NONFINITE, bt, (int32_t)bc,
                          "non-finite input at token %u, channel %u: refused, nothing written", bt,
                          bc);
    uint8_t *tmp = malloc(need ? need : 1);
    if (!tmp) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    float xb[128];
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t b = 0; b < D / B; b++) {
            for (uint32_t j = 0; j < B; j++) xb[j] = cq_f16_to_f32(x[(size_t)t * D + b * B + j]);
            if (tbq_block_encode(bits, B, xb, tmp + ((size_t)t * (D / B) + b) * bb)) {
                free(tmp);
                return cq_err_set(err, CQ_ERR_OVERFLOW, t, (int32_t)(b * B),
                                  "%s: block norm of token %u, channels %u..%u overflows fp16",
                                  name, t, b * B, b * B + B - 1);
            }
        }
    memcpy(dst, tmp, need);
    free(tmp);
    return CQ_OK;
}

static cq_status tbq_decode_b(unsigned bits, const cq_codec_cfg *cfg, cq_role role,
                              const uint8_t *src, size_t len, uint32_t T, float *out) {
    uint32_t D = cfg->dim, B = cqb_turbo_block(D);
    if (tbq_check(cfg, role)) return CQ_ERR_DIM;
    if (len != tbq_bytes_b(bits, cfg, T)) return CQ_ERR_BUFFER;
    size_t bb = cqb_turbo_block_bytes(bits, B);
    for (size_t i = 0; i < (size_t)T * (D / B); i++) tbq_block_decode(bits, B, src + i * bb, out + i * B);
    return CQ_OK;
}

#define TBQ_CODEC(SYM, ID, NAME, BITS, LAYOUT)                                                     \
    static size_t SYM##_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {                 \
        (void)role;                                                                                \
        return tbq_bytes_b(BITS, cfg, T);                                                          \
    }                                                                                              \
    static cq_status SYM##_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x,        \
                                  uint32_t T, uint8_t *dst, size_t cap, cq_err *err) {             \
        return tbq_encode_b(NAME, BITS, cfg, role, x, T, dst, cap, err);                           \
    }                                                                                              \
    static cq_status SYM##_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src,       \
                                  size_t len, uint32_t T, float *out) {                            \
        return tbq_decode_b(BITS, cfg, role, src, len, T, out);                                    \
    }                                                                                              \
    static double SYM##_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {               \
        (void)role, (void)T;                                                                       \
        uint32_t B = cqb_turbo_block(cfg->dim);                                                          \
        return B ? (double)(BITS) + 16.0 / B : 0.0;                                                \
    }                                                                                              \
    const cq_codec_traits cq_codec_##SYM = {                                                       \
        .id = ID, .name = NAME, .family = "turboquant", .layout = LAYOUT, .bits = BITS,            \
        .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,                       \
        .check = tbq_check, .packed_bytes = SYM##_bytes, .encode = SYM##_encode,                   \
        .decode = SYM##_decode, .modeled_bpv = SYM##_modeled,                                      \
    };

extern const cq_codec_traits cq_codec_tbq3, cq_codec_tbq4;
TBQ_CODEC(tbq3, CQ_CODEC_TBQ3, "tbq3", 3,
          "per 128 ch (64 if D%128): 3-bit codes, LSB-first bit stream | fp16 norm (50 B/128)")
TBQ_CODEC(tbq4, CQ_CODEC_TBQ4, "tbq4", 4,
          "per 128 ch (64 if D%128): nibbles, low = even | fp16 norm (66 B/128)")
