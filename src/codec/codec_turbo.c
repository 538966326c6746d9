/* SPDX-License-Identifier: MIT */
/*
 * codec_turbo.c - the TurboQuant cache types of the llama.cpp fork that
 * defines them (BASELINES.md section 4): turbo2, turbo3, turbo4 (corrected
 * Gaussian Lloyd-Max table) and turbo4_old (the 4-bit table as first
 * shipped). The sibling fork's tbq3/tbq4 live in codec_tbq.c.
 *
 * Per block of B = 128 channels of one token (B = 64 when D is not a
 * multiple of 128; D must be a multiple of 64), all in fp32:
 *   n = ||x||, u = x/n (0 if n < 1e-10),
 *   y = s2 (.) FWHT(s1 (.) u) / sqrt(B)     (orthonormal; s1, s2 = 128-bit masks, first B bits)
 *   idx_j = nearest centroid of y_j          (a value on a midpoint goes up; 0 -> upper half)
 *   r = ||C[idx]||, stored norm = fp16(n / r)  (norm correction)
 * Decode: y_hat = C[idx] * norm, then the inverse rotation (s2, FWHT/sqrt(B),
 * s1), so the output is in the original space like every other codec of the
 * registry. The real fork keeps K and V rotated and rotates Q instead (and
 * un-rotates the attention output); for attention this is the same up to fp
 * rounding because the rotation is orthonormal.
 * For B = 64 the centroid tables are not rescaled (the fork's 64-wide path
 * uses the same sigma = 1/sqrt(128) tables; norm correction restores the norm).
 *
 * Packed layout per block (B = 128; a B = 64 block is half of every field):
 *   turbo2: fp16 norm | 32 B codes (2 bits, index j at bits 2(j%4) of byte j/4)   34 B
 *   turbo3: fp16 norm | 32 B low 2 bits (as turbo2) | 16 B high bit (bit j%8 of byte j/8) 50 B
 *   turbo4: fp16 norm | 64 B nibbles (low nibble = even j)                          66 B
 * Index i of a codebook counts centroids in ascending order (0 = most negative).
 * Blocks are stored [T][D/B], token-major. A norm that overflows fp16 is
 * refused with CQ_ERR_OVERFLOW (nothing written).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_bits.h"
#include "cq_codec.h"
#include "cq_registry.h"
#include "cq_util.h"

static const uint32_t turbo_s1[4] = {0xe46a0359u, 0x42f85949u, 0xa4c63bbbu, 0x49f250a9u};
static const uint32_t turbo_s2[4] = {0x16acee90u, 0x3f628fdcu, 0xb7a5357au, 0xbea56562u};

/* Centroids for sigma = 1/sqrt(128), ascending. */
static const float turbo_c2[4] = {-0.133462f, -0.039994f, 0.039994f, 0.133462f};
static const float turbo_c3[8] = {-0.190685f, -0.117832f, -0.065717f, -0.021460f,
                                  0.021460f,  0.065717f,  0.117832f,  0.190685f};
static const float turbo_c4[16] = {-0.241556f, -0.182907f, -0.143047f, -0.111065f,
                                   -0.083317f, -0.058069f, -0.034311f, -0.011353f,
                                   0.011353f,  0.034311f,  0.058069f,  0.083317f,
                                   0.111065f,  0.143047f,  0.182907f,  0.241556f};
static const float turbo_c4_old[16] = {-0.173926f, -0.117195f, -0.089527f, -0.068756f,
                                       -0.051262f, -0.035597f, -0.020989f, -0.006938f,
                                       0.006938f,  0.020989f,  0.035597f,  0.051262f,
                                       0.068756f,  0.089527f,  0.117195f,  0.173926f};

typedef struct turbo_kind {
    unsigned bits;
    const float *c;
} turbo_kind;

static turbo_kind kind_of(cq_codec_id id) {
    switch (id) {
    case CQ_CODEC_TURBO2: return (turbo_kind){2, turbo_c2};
    case CQ_CODEC_TURBO3: return (turbo_kind){3, turbo_c3};
    case CQ_CODEC_TURBO4_OLD: return (turbo_kind){4, turbo_c4_old};
    default: return (turbo_kind){4, turbo_c4};
    }
}

/* Block width for a head dim: 128, else 64, else 0 (unsupported). */

static cq_status turbo_check(const cq_codec_cfg *cfg, cq_role role) {
    (void)role;
    return cqb_turbo_block(cfg->dim) ? CQ_OK : CQ_ERR_DIM;
}

static size_t turbo_bytes_k(turbo_kind k, const cq_codec_cfg *cfg, uint32_t T) {
    uint32_t B = cqb_turbo_block(cfg->dim);
    if (!B) return 0;
    return (size_t)T * (cfg->dim / B) * cqb_turbo_block_bytes(k.bits, B);
}

/* Write code idx of element j into a block's code area (after the norm). */
static void put_code(unsigned bits, uint32_t B, uint8_t *qs, uint32_t j, unsigned idx) {
    if (bits == 2) {
        qs[j / 4] |= (uint8_t)((idx & 3u) << (2 * (j % 4)));
    } else if (bits == 3) {
        qs[j / 4] |= (uint8_t)((idx & 3u) << (2 * (j % 4)));
        qs[B / 4 + j / 8] |= (uint8_t)(((idx >> 2) & 1u) << (j % 8));
    } else {
        qs[j / 2] |= (uint8_t)((idx & 15u) << (4 * (j % 2)));
    }
}

static unsigned get_code(unsigned bits, uint32_t B, const uint8_t *qs, uint32_t j) {
    if (bits == 2) return (qs[j / 4] >> (2 * (j % 4))) & 3u;
    if (bits == 3)
        return ((qs[j / 4] >> (2 * (j % 4))) & 3u) | (((qs[B / 4 + j / 8] >> (j % 8)) & 1u) << 2);
    return (qs[j / 2] >> (4 * (j % 2))) & 15u;
}

/* Encode one block x[B] (fp32 of fp16 inputs) into blk. Returns 0, or -1 if
 * the stored norm overflows fp16. */
static int turbo_block_encode(turbo_kind k, uint32_t B, const float *x, uint8_t *blk) {
    float y[128], mid[15];
    unsigned nc = 1u << k.bits;
    cqb_midpoints(k.c, nc, mid);
    float n2 = 0.0f;
    for (uint32_t j = 0; j < B; j++) n2 += x[j] * x[j];
    float n = sqrtf(n2);
    for (uint32_t j = 0; j < B; j++) y[j] = n < 1e-10f ? 0.0f : x[j] / n * cqb_mask_sign(turbo_s1, j);
    cq_fwht_orthonormal_f32(y, B);
    memset(blk, 0, cqb_turbo_block_bytes(k.bits, B));
    float r2 = 0.0f;
    for (uint32_t j = 0; j < B; j++) {
        unsigned idx = cqb_nearest(y[j] * cqb_mask_sign(turbo_s2, j), mid, nc);
        r2 += k.c[idx] * k.c[idx];
        put_code(k.bits, B, blk + 2, j, idx);
    }
    uint16_t h = cq_f32_to_f16(n / sqrtf(r2)); /* r2 > 0: no centroid is 0 */
    if (!cq_f16_is_finite(h)) return -1;
    cqb_put16(blk, h);
    return 0;
}

static void turbo_block_decode(turbo_kind k, uint32_t B, const uint8_t *blk, float *out) {
    float norm = cq_f16_to_f32(cqb_get16(blk));
    for (uint32_t j = 0; j < B; j++)
        out[j] = k.c[get_code(k.bits, B, blk + 2, j)] * norm * cqb_mask_sign(turbo_s2, j);
    cq_fwht_orthonormal_f32(out, B);
    for (uint32_t j = 0; j < B; j++) out[j] *= cqb_mask_sign(turbo_s1, j);
}

static cq_status turbo_encode_k(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role,
                                const uint16_t *x, uint32_t T, uint8_t *dst, size_t cap,
                                cq_err *err) {
    turbo_kind k = kind_of(c->id);
    uint32_t D = cfg->dim, B = cqb_turbo_block(D);
    if (turbo_check(cfg, role))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "%s needs head_dim a multiple of 64, got %u",
                          c->name, D);
    size_t need = turbo_bytes_k(k, cfg, T), bb = cqb_turbo_block_bytes(k.bits, B);
    if (cap < need) return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "dst too small");
    uint32_t bt, bc;
    if (cq_find_nonfinite(x, T, D, &bt, &bc))
        return cq_err_set(err, CQ_ERR_NONFINITE, bt, (int32_t)bc,
                          "non-finite input at token %u, channel %u: refused, nothing written", bt,
                          bc);
    uint8_t *tmp = malloc(need ? need : 1); /* stage: an overflow must not half-write dst */
    if (!tmp) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    float xb[128];
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t b = 0; b < D / B; b++) {
            for (uint32_t j = 0; j < B; j++) xb[j] = cq_f16_to_f32(x[(size_t)t * D + b * B + j]);
            if (turbo_block_encode(k, B, xb, tmp + ((size_t)t * (D / B) + b) * bb)) {
                free(tmp);
                return cq_err_set(err, CQ_ERR_OVERFLOW, t, (int32_t)(b * B),
                                  "%s: block norm of token %u, channels %u..%u overflows fp16",
                                  c->name, t, b * B, b * B + B - 1);
            }
        }
    memcpy(dst, tmp, need);
    free(tmp);
    return CQ_OK;
}

static cq_status turbo_decode_k(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role,
                                const uint8_t *src, size_t len, uint32_t T, float *out) {
    turbo_kind k = kind_of(c->id);
    uint32_t D = cfg->dim, B = cqb_turbo_block(D);
    if (turbo_check(cfg, role)) return CQ_ERR_DIM;
    if (len != turbo_bytes_k(k, cfg, T)) return CQ_ERR_BUFFER;
    size_t bb = cqb_turbo_block_bytes(k.bits, B);
    for (size_t i = 0; i < (size_t)T * (D / B); i++) turbo_block_decode(k, B, src + i * bb, out + i * B);
    return CQ_OK;
}

#define TURBO_CODEC(SYM, ID, NAME, BITS, LAYOUT)                                                   \
    extern const cq_codec_traits cq_codec_##SYM;                                                   \
    static size_t SYM##_bytes(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {                 \
        (void)role;                                                                                \
        return turbo_bytes_k(kind_of(ID), cfg, T);                                                 \
    }                                                                                              \
    static cq_status SYM##_encode(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x,        \
                                  uint32_t T, uint8_t *dst, size_t cap, cq_err *err) {             \
        return turbo_encode_k(&cq_codec_##SYM, cfg, role, x, T, dst, cap, err);                    \
    }                                                                                              \
    static cq_status SYM##_decode(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src,       \
                                  size_t len, uint32_t T, float *out) {                            \
        return turbo_decode_k(&cq_codec_##SYM, cfg, role, src, len, T, out);                       \
    }                                                                                              \
    static double SYM##_modeled(const cq_codec_cfg *cfg, cq_role role, uint32_t T) {               \
        (void)role, (void)T;                                                                       \
        uint32_t B = cqb_turbo_block(cfg->dim);                                                        \
        return B ? (double)(BITS) + 16.0 / B : 0.0;                                                \
    }                                                                                              \
    const cq_codec_traits cq_codec_##SYM = {                                                       \
        .id = ID, .name = NAME, .family = "turboquant", .layout = LAYOUT, .bits = BITS,            \
        .flags = CQ_CODEC_F_KEYS | CQ_CODEC_F_VALUES | CQ_CODEC_F_STREAMING,                       \
        .check = turbo_check, .packed_bytes = SYM##_bytes, .encode = SYM##_encode,                 \
        .decode = SYM##_decode, .modeled_bpv = SYM##_modeled,                                      \
    };

TURBO_CODEC(turbo2, CQ_CODEC_TURBO2, "turbo2", 2.0,
            "per 128 ch (64 if D%128): fp16 norm | 2-bit codes, 4 per byte (34 B/128)")
TURBO_CODEC(turbo3, CQ_CODEC_TURBO3, "turbo3", 3.0,
            "per 128 ch (64 if D%128): fp16 norm | low 2 bits, 4/byte | high bit, 8/byte (50 B/128)")
TURBO_CODEC(turbo4, CQ_CODEC_TURBO4, "turbo4", 4.0,
            "per 128 ch (64 if D%128): fp16 norm | nibbles, low = even (66 B/128); Gaussian table")
TURBO_CODEC(turbo4_old, CQ_CODEC_TURBO4_OLD, "turbo4_old", 4.0,
            "as turbo4, with the 4-bit table as first shipped (about 0.61x too narrow)")
