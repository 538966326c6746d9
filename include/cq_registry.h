/* SPDX-License-Identifier: MIT */
/*
 * cq_registry.h - the codec registry: a stable enum of codec IDs and one const
 * traits table (ggml-style). Every codec, ChannelQuant's tiers and each
 * baseline alike, is one file under src/codec/ defining a cq_codec_traits,
 * plus one row in src/codec/registry.c.
 *
 * The uniform interface works on a [T][D] block of fp16 bit patterns of one
 * (layer, KV head) in one role (keys or values), produces ONE packed byte
 * buffer holding everything the method must store (codes, scales, zero
 * points, norms, sidecars, fp16 residual windows), and decodes it back to
 * [T][D] fp32 in the original (un-rotated) space. packed_bytes is exact: it is
 * what encode writes, so measured bits per value = 8 * bytes / (T * D).
 *
 * Tier: STABLE CORE - what a runtime links; its ABI is kept within a major version
 * (docs/EMBEDDING.md).
 */
#ifndef CQ_REGISTRY_H
#define CQ_REGISTRY_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>

#include "cq_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Stable IDs: never renumber; new codecs take new numbers. */
typedef enum cq_codec_id {
    CQ_CODEC_FP16 = 0,
    /* ChannelQuant tiers */
    CQ_CODEC_CQ8 = 1,
    CQ_CODEC_CQ4 = 2,
    CQ_CODEC_CQ4P = 3,
    CQ_CODEC_CQ3ROT = 4, /* values only (CONTRACT.md section 9) */
    /* plain integer family (BASELINES.md section 1) */
    CQ_CODEC_INT8_TOKEN = 16,
    CQ_CODEC_INT4_TOKEN = 17,
    CQ_CODEC_INT4_CHANNEL = 18,
    CQ_CODEC_OUTLIER_TOP2 = 19,
    CQ_CODEC_KIVI4 = 20,
    CQ_CODEC_KIVI2 = 21,
    /* ggml cache types (section 2) */
    CQ_CODEC_Q8_0 = 32,
    CQ_CODEC_Q4_0 = 33,
    CQ_CODEC_Q4_1 = 34,
    CQ_CODEC_Q5_0 = 35,
    CQ_CODEC_Q5_1 = 36,
    CQ_CODEC_IQ4_NL = 37,
    CQ_CODEC_Q4_0_ROT = 38,
    /* microscaling FP4 (section 3) */
    CQ_CODEC_MXFP4 = 48,
    CQ_CODEC_NVFP4 = 49,
    /* TurboQuant family (section 4) */
    CQ_CODEC_TURBO2 = 56,
    CQ_CODEC_TURBO3 = 57,
    CQ_CODEC_TURBO4 = 58,      /* corrected Gaussian Lloyd-Max table */
    CQ_CODEC_TURBO4_OLD = 59,  /* the table as first shipped */
    CQ_CODEC_TBQ3 = 60,
    CQ_CODEC_TBQ4 = 61,
    /* rotation-per-vector (section 5) */
    CQ_CODEC_PLANAR3 = 72,
    CQ_CODEC_ISO3 = 73,
    /* MegaQuant methods (section 6) */
    CQ_CODEC_MQ_A3_G32 = 80,
    CQ_CODEC_MQ_A3_G64 = 81,
    CQ_CODEC_MQ_A3_G64_META4 = 82,
    CQ_CODEC_MQ_A3_G64_META8 = 83,
    CQ_CODEC_MQ_A2_G64_META8 = 84,
    CQ_CODEC_MQ_H2_G64_META8 = 85,
    CQ_CODEC_MQ_H2_G32 = 86,
    CQ_CODEC_MQ_CW2 = 87,
    CQ_CODEC_MQ_SINK1_CW2 = 88,
} cq_codec_id;

typedef enum cq_role { CQ_ROLE_KEY = 0, CQ_ROLE_VALUE = 1 } cq_role;

/* Configuration shared by all codecs; fields a codec does not use are ignored. */
typedef struct cq_codec_cfg {
    uint32_t dim;          /* D (head_dim) */
    uint32_t group;        /* ChannelQuant key group G (default 128) */
    uint32_t residual;     /* fp16 residual window R of KIVI (default 128) */
    const uint8_t *mask;   /* D-byte outlier mask for CQ-4+ (NULL: none) */
    uint64_t seed;         /* fixed seed of random-rotation codecs */
    /* Zero (cq_codec_cfg_default sets it): room for new options without changing the
     * struct's size (docs/EMBEDDING.md, "Growing an option struct"). */
    uint32_t reserved[4];
} cq_codec_cfg;

CQ_API void cq_codec_cfg_default(cq_codec_cfg *cfg, uint32_t dim);

enum {
    CQ_CODEC_F_KEYS = 1u << 0,      /* can code keys */
    CQ_CODEC_F_VALUES = 1u << 1,    /* can code values */
    CQ_CODEC_F_STREAMING = 1u << 2, /* can be appended token by token (what a cache needs) */
    CQ_CODEC_F_OFFLINE = 1u << 3,   /* needs the whole sequence (not streamable) */
    CQ_CODEC_F_EXACT = 1u << 4,     /* lossless */
    CQ_CODEC_F_OURS = 1u << 5,      /* a ChannelQuant tier (not a baseline) */
};

typedef struct cq_codec_traits {
    cq_codec_id id;
    const char *name;    /* short, stable, lower-case: "cq4", "q4_0", "kivi-4" */
    const char *family;  /* "channelquant", "ggml", "kivi", ... */
    const char *layout;  /* one-line description of the packed layout */
    double bits;         /* nominal code bits per value (metadata excluded) */
    unsigned flags;
    /* Can this codec code role at cfg (D, ...)? NULL: any valid D, both roles per flags. */
    cq_status (*check)(const cq_codec_cfg *cfg, cq_role role);
    /* Exact packed size of a [T][D] block. */
    size_t (*packed_bytes)(const cq_codec_cfg *cfg, cq_role role, uint32_t T);
    /* Encode x [T][D] fp16 into dst (cap >= packed_bytes). Refuses non-finite input. */
    cq_status (*encode)(const cq_codec_cfg *cfg, cq_role role, const uint16_t *x, uint32_t T,
                        uint8_t *dst, size_t cap, cq_err *err);
    /* Decode src (len == packed_bytes) into out [T][D] fp32. Safe on arbitrary bytes. */
    cq_status (*decode)(const cq_codec_cfg *cfg, cq_role role, const uint8_t *src, size_t len,
                        uint32_t T, float *out);
    /* The method's own modeled bits per value where it defines one; NULL otherwise. */
    double (*modeled_bpv)(const cq_codec_cfg *cfg, cq_role role, uint32_t T);
    /* Streaming codecs: tokens per independently coded unit (a cache holds up to
     * this many tokens in fp16, then encodes them as one [unit][D] block).
     * NULL means 1 (per-token codecs). ChannelQuant keys: G. */
    uint32_t (*unit_tokens)(const cq_codec_cfg *cfg, cq_role role);
    /* Streaming codecs that keep the newest W tokens in fp16 (a sliding window, as
     * KIVI's values do): a cache holds them in fp16 and encodes each unit that leaves
     * the window with cfg->residual = 0. NULL means 0 (no window). */
    uint32_t (*window_tokens)(const cq_codec_cfg *cfg, cq_role role);
} cq_codec_traits;

/* Tokens per coded unit of a streaming codec (1 when the codec does not say). */
CQ_API uint32_t cq_codec_unit_tokens(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role);
/* Sliding fp16 window of a streaming codec (0 when the codec does not say). */
CQ_API uint32_t cq_codec_window_tokens(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role);

CQ_API size_t cq_codec_count(void);
CQ_API const cq_codec_traits *cq_codec_at(size_t i);
CQ_API const cq_codec_traits *cq_codec_get(cq_codec_id id);
CQ_API const cq_codec_traits *cq_codec_find(const char *name); /* case-insensitive; NULL if unknown */

/* Check role support: flags, then the codec's own check, then D. */
CQ_API cq_status cq_codec_supports(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role);

#ifdef __cplusplus
}
#endif
#endif /* CQ_REGISTRY_H */
