/* SPDX-License-Identifier: MIT */
/*
 * cq_codec.h - the ChannelQuant codec contract (CQ-8, CQ-4, CQ-4+, CQ-3-rot).
 *
 * This is the bit-exact scalar reference of the contract in
 * ../shared/docs/CONTRACT.md: arithmetic (section 3), scale axes and groups
 * (section 4), the canonical byte stream (section 5) and the CQ-3-rot value
 * path (section 9). Everything here is caller-owned memory; nothing allocates.
 *
 * Shapes: a block is [T][D] fp16 bit patterns, token-major. "Codes" are the
 * packed payload bytes of the canonical stream.
 *
 * Three levels of API, all producing the same bytes:
 *   - primitives: scale / quantize / dequantize / nibble packing;
 *   - units: one value token, one key group (what a cache and the engine
 *     model build on);
 *   - blocks: a whole [T][D] K or V tensor in canonical stream form.
 *
 * Tier: STABLE CORE - what a runtime links; its ABI is kept within a major version
 * (docs/EMBEDDING.md).
 */
#ifndef CQ_CODEC_H
#define CQ_CODEC_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>

#include "cq_error.h"
#include "cq_fp16.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CQ_MIN_DIM 2
#define CQ_MAX_DIM 512
#define CQ_DEFAULT_GROUP 128
#define CQ_DEFAULT_OUTLIERS 2

/* Tier numbers match the engine's INFO_TIER register. */
typedef enum cq_tier {
    CQ_TIER_CQ8 = 0,  /* INT8 per-token keys and values */
    CQ_TIER_CQ4 = 1,  /* INT4 per-channel-per-group keys, INT4 per-token values */
    CQ_TIER_CQ4P = 2, /* CQ-4 plus k static fp16 key outlier channels */
    CQ_TIER_COUNT_
} cq_tier;

CQ_API const char *cq_tier_name(cq_tier t);               /* "CQ-8", "CQ-4", "CQ-4+" */
CQ_API const char *cq_tier_tag(cq_tier t);                /* "CQ8", "CQ4", "CQ4plus" (vector dir names) */
CQ_API cq_status cq_tier_parse(const char *s, cq_tier *out); /* accepts both spellings, case-insensitive */

/*
 * Codec parameters of one (layer, KV head). Build with cq_params_init, which
 * validates and fills the derived fields; treat the struct as read-only after.
 */
typedef struct cq_params {
    cq_tier tier;
    uint32_t dim;                /* D: even, 2..512 */
    uint32_t group;              /* G >= 1; used by CQ-4 / CQ-4+ keys */
    uint32_t k;                  /* number of outlier channels (CQ-4+ only; 0 otherwise) */
    uint32_t kept;               /* D - k */
    uint16_t outlier[CQ_MAX_DIM]; /* k channel indices, ascending */
    uint16_t kept_idx[CQ_MAX_DIM];/* D - k channel indices, ascending */
    uint8_t mask[CQ_MAX_DIM];    /* D bytes, 1 = outlier channel */
} cq_params;

/*
 * Validate and build parameters. outliers may be NULL when k == 0. For CQ-8
 * and CQ-4 k must be 0. G must be >= 1 for every tier (ignored by CQ-8).
 */
CQ_API cq_status cq_params_init(cq_params *p, cq_tier tier, uint32_t dim, uint32_t group,
                         const uint16_t *outliers, uint32_t k, cq_err *err);
/* Same, with the outlier set given as a D-byte mask (nonzero = outlier). */
CQ_API cq_status cq_params_init_mask(cq_params *p, cq_tier tier, uint32_t dim, uint32_t group,
                              const uint8_t *mask, cq_err *err);

/* Bits of the key / value codes of a tier (8 or 4). */
CQ_API unsigned cq_tier_key_bits(cq_tier t);
CQ_API unsigned cq_tier_val_bits(cq_tier t);

/* ---------------------------------------------------------------- primitives */

/* scale = fp16_RNE(max(amax/qmax, 2^-14)); amax is an fp16 magnitude (bit 15 ignored). */
CQ_API uint16_t cq_scale_from_amax(uint16_t amax, int qmax);
/* code = clamp(round_half_even(x/scale), -qmax-1, qmax). x finite, scale a normal positive fp16. */
CQ_API int cq_quantize(uint16_t x, uint16_t scale, int qmax);
/* x_hat = code * scale, exact in fp32 (code 0 gives +0.0). */
CQ_API float cq_dequantize(int code, uint16_t scale);
/* max |x| over n fp16 values with stride (as integer compare of h & 0x7FFF). */
CQ_API uint16_t cq_amax_f16(const uint16_t *x, size_t n, size_t stride);

/* INT4 nibble stream: element i at nibble i (even = low). */
static inline void cq_nibble_put(uint8_t *buf, size_t i, int code) {
    uint8_t n = (uint8_t)(code & 0xF);
    if (i & 1) buf[i >> 1] = (uint8_t)((buf[i >> 1] & 0x0F) | (n << 4));
    else buf[i >> 1] = (uint8_t)((buf[i >> 1] & 0xF0) | n);
}
static inline int cq_nibble_get(const uint8_t *buf, size_t i) {
    int n = (i & 1) ? (buf[i >> 1] >> 4) : (buf[i >> 1] & 0xF);
    return (n ^ 8) - 8; /* sign-extend 4-bit two's complement */
}

/* First non-finite element of a [T][D] block (returns 1 and sets *t,*c), else 0. */
CQ_API int cq_find_nonfinite(const uint16_t *x, uint32_t T, uint32_t D, uint32_t *t, uint32_t *c);

/* --------------------------------------------------------------------- units */

/*
 * One token, per-token scale over its D channels (values of every tier; CQ-8
 * keys). bits is 4 or 8. codes receives D/2 (INT4) or D (INT8) bytes.
 * Refuses non-finite input (nothing written). token is only used in messages.
 */
CQ_API cq_status cq_encode_token(const uint16_t *x, uint32_t D, unsigned bits, uint8_t *codes,
                          uint16_t *scale, int64_t token, cq_err *err);
CQ_API void cq_decode_token(const uint8_t *codes, uint16_t scale, uint32_t D, unsigned bits, float *out);

/* Payload bytes of one token: D/2 or D. */
static inline size_t cq_token_bytes(uint32_t D, unsigned bits) {
    return bits == 8 ? (size_t)D : (size_t)D / 2;
}

/*
 * One key group of g tokens (CQ-4 / CQ-4+; 1 <= g <= G): K is [g][D].
 * payload: cq_key_group_bytes(p, g) bytes (codes [g][D-k], kept channels
 * ascending, padded to a whole byte); scales: D-k fp16; sidecar: [g][k] fp16.
 * first_token is only used in error messages.
 */
CQ_API size_t cq_key_group_bytes(const cq_params *p, uint32_t g);
CQ_API cq_status cq_encode_key_group(const cq_params *p, const uint16_t *K, uint32_t g, uint8_t *payload,
                              uint16_t *scales, uint16_t *sidecar, int64_t first_token,
                              cq_err *err);
/* Decode rows [r0, r1) of a group of g tokens into out [r1-r0][D]. */
CQ_API void cq_decode_key_group_rows(const cq_params *p, const uint8_t *payload, const uint16_t *scales,
                              const uint16_t *sidecar, uint32_t g, uint32_t r0, uint32_t r1,
                              float *out);

/* -------------------------------------------------------------------- blocks */

/* Sizes of the canonical streams of a [T][D] block (bytes / element counts). */
typedef struct cq_stream_sizes {
    size_t key_payload;    /* bytes */
    size_t key_scales;     /* fp16 count */
    size_t sidecar;        /* fp16 count (T*k) */
    size_t val_payload;    /* bytes */
    size_t val_scales;     /* fp16 count (T) */
    uint32_t key_groups;   /* number of key groups (CQ-4/4+), T for CQ-8 */
} cq_stream_sizes;

CQ_API cq_status cq_stream_sizes_of(const cq_params *p, uint32_t T, cq_stream_sizes *s);

/* Canonical key streams of a block; pointers caller-owned, sized by cq_stream_sizes_of. */
typedef struct cq_key_stream {
    uint8_t *payload;
    uint16_t *scales;
    uint16_t *sidecar; /* may be NULL when k == 0 */
} cq_key_stream;

typedef struct cq_val_stream {
    uint8_t *payload;
    uint16_t *scales;
} cq_val_stream;

/* Encode a [T][D] key block (groups from token 0; the last may be partial). */
CQ_API cq_status cq_encode_keys(const cq_params *p, const uint16_t *K, uint32_t T, const cq_key_stream *out,
                         cq_err *err);
/* Encode a [T][D] value block (per token, 8 bits for CQ-8, else 4). */
CQ_API cq_status cq_encode_values(const cq_params *p, const uint16_t *V, uint32_t T,
                           const cq_val_stream *out, cq_err *err);
/* Decode from the stored streams into [T][D] fp32. */
CQ_API cq_status cq_decode_keys(const cq_params *p, const uint8_t *payload, const uint16_t *scales,
                         const uint16_t *sidecar, uint32_t T, float *out);
CQ_API cq_status cq_decode_values(const cq_params *p, const uint8_t *payload, const uint16_t *scales,
                           uint32_t T, float *out);

/* ------------------------------------------------------ CQ-3-rot (section 9) */

/* D must be a power of two (2..512). Payload: ceil(3*D*T/8) bytes, T scales. */
CQ_API size_t cq3rot_payload_bytes(uint32_t D, uint32_t T);
/* In-place unnormalized Walsh-Hadamard transform on fp16 with RNE after each butterfly.
 * Returns CQ_ERR_OVERFLOW (and leaves a partially transformed row) if a butterfly
 * overflows fp16. */
CQ_API cq_status cq_wht_f16(uint16_t *row, uint32_t D);
/* Refuses, writing nothing: non-finite input (CQ_ERR_NONFINITE, token and channel named) and a
 * token whose rotation overflows fp16 in encode OR in decode (CQ_ERR_OVERFLOW, token named; the
 * decoder's unnormalized rotation reaches ~D*|v|, so |v| must stay below ~65504/D). */
CQ_API cq_status cq3rot_encode(const uint16_t *V, uint32_t T, uint32_t D, uint8_t *payload,
                        uint16_t *scales, cq_err *err);
CQ_API cq_status cq3rot_decode(const uint8_t *payload, const uint16_t *scales, uint32_t T, uint32_t D,
                        float *out);

/* ------------------------------------------------------------ bits per value */

/* Quoted (section 6) and exact per-stream bits/value of a tier at (D, G, k). */
CQ_API double cq_bpv_quoted_key(cq_tier t, uint32_t D, uint32_t G, uint32_t k);
CQ_API double cq_bpv_quoted_val(cq_tier t, uint32_t D);

#ifdef __cplusplus
}
#endif
#endif /* CQ_CODEC_H */
