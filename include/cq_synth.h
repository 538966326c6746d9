/* SPDX-License-Identifier: MIT */
/*
 * cq_synth.h - a reproducible generator of Qwen2-like KV blocks for
 * measurements and evaluations when no real K/V is at hand.
 *
 * Keys: per-channel offsets and scales, heavy-tailed (Student-t) noise, and a
 * few "hot" channels of much larger magnitude (the outlier channels that
 * per-token INT4 fails on and a static CQ-4+ mask is calibrated for).
 * Values: smaller, Gaussian, no hot channels. Output is fp16 bit patterns
 * (RNE), always finite. The hot-channel set is returned as a D-byte mask (the
 * generator's ground truth, what a calibrated ROM would hold).
 *
 * Tier: TOOL-GRADE - exported for the cq tool, tests and research; may change in any
 * minor version (docs/EMBEDDING.md).
 */
#ifndef CQ_SYNTH_H
#define CQ_SYNTH_H

#include "cq_api.h"
#include <stdint.h>

#include "cq_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cq_synth_cfg {
    uint32_t dim;       /* D, 2..512 */
    uint32_t tokens;    /* T >= 1 */
    uint32_t hot;       /* hot key channels (default 2), < D */
    double hot_gain;    /* magnitude of a hot channel relative to a typical one (default 12) */
    double offset;      /* std of the per-channel key offsets (default 0.5) */
    uint32_t dof;       /* Student-t degrees of freedom of the key noise (default 4; 0 = Gaussian) */
    double val_std;     /* value std (default 0.3) */
    uint64_t seed;
} cq_synth_cfg;

CQ_API void cq_synth_cfg_default(cq_synth_cfg *c, uint32_t dim, uint32_t tokens, uint64_t seed);

/* Fill K, V [T][D] (either may be NULL) and hot_mask [D] (may be NULL).
 * Same cfg -> same bits on every machine. */
CQ_API cq_status cq_synth_kv(const cq_synth_cfg *c, uint16_t *K, uint16_t *V, uint8_t *hot_mask,
                      cq_err *err);

#ifdef __cplusplus
}
#endif
#endif
