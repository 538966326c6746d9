/* SPDX-License-Identifier: MIT */
/*
 * synth.c - the built-in generator of Qwen2-like keys and values (see
 * include/cq_synth.h). Not a model of any particular checkpoint: it plants the
 * three properties that decide how KV codecs rank (hot key channels,
 * per-channel offsets, heavy tails) with magnitudes like Qwen2-0.5B's
 * middle layers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_codec.h"
#include "cq_fp16.h"
#include "cq_synth.h"
#include "cq_util.h"

void cq_synth_cfg_default(cq_synth_cfg *c, uint32_t dim, uint32_t tokens, uint64_t seed) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->dim = dim;
    c->tokens = tokens;
    c->hot = 2;
    c->hot_gain = 12.0;
    c->offset = 0.5;
    c->dof = 4;
    c->val_std = 0.3;
    c->seed = seed;
}

/* Student-t with integer dof (Gaussian / sqrt(chi2/dof)), unit-variance scaled. */
static double student_t(cq_rng *r, uint32_t dof) {
    double z = cq_rng_normal(r);
    if (dof == 0) return z;
    double chi = 0.0;
    for (uint32_t i = 0; i < dof; i++) {
        double g = cq_rng_normal(r);
        chi += g * g;
    }
    if (chi < 1e-12) chi = 1e-12;
    double t = z / sqrt(chi / dof);
    return dof > 2 ? t * sqrt((dof - 2.0) / dof) : t;
}

static uint16_t to_f16_sat(double v) {
    if (v > 65504.0) v = 65504.0;
    if (v < -65504.0) v = -65504.0;
    return cq_f64_to_f16(v);
}

cq_status cq_synth_kv(const cq_synth_cfg *c, uint16_t *K, uint16_t *V, uint8_t *hot_mask,
                      cq_err *err) {
    if (!c) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL config");
    uint32_t D = c->dim, T = c->tokens;
    if (D < CQ_MIN_DIM || D > CQ_MAX_DIM)
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "synth: dim %u outside [2, 512]", D);
    if (T == 0) return cq_err_set(err, CQ_ERR_SHAPE, -1, -1, "synth: tokens must be >= 1");
    if (c->hot >= D) return cq_err_set(err, CQ_ERR_OUTLIERS, -1, -1, "synth: hot %u >= D", c->hot);
    if (!(c->hot_gain >= 0.0 && c->hot_gain < 1e4) || !(c->offset >= 0.0 && c->offset < 1e3) ||
        !(c->val_std >= 0.0 && c->val_std < 1e3) || c->dof > 64)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "synth: parameter out of range");
    cq_rng r;
    cq_rng_seed(&r, c->seed);
    double mu[CQ_MAX_DIM], sd[CQ_MAX_DIM];
    uint8_t hot[CQ_MAX_DIM];
    memset(hot, 0, sizeof hot);
    for (uint32_t i = 0; i < c->hot;) { /* distinct hot channels */
        uint32_t ch = cq_rng_below(&r, D);
        if (!hot[ch]) hot[ch] = 1, i++;
    }
    for (uint32_t ch = 0; ch < D; ch++) {
        /* log-normal channel scales around 1, offsets comparable to them */
        sd[ch] = exp(0.4 * cq_rng_normal(&r));
        mu[ch] = c->offset * cq_rng_normal(&r);
        if (hot[ch]) {
            sd[ch] *= 0.25 * c->hot_gain;
            mu[ch] = (cq_rng_uniform(&r) < 0.5 ? -1.0 : 1.0) * c->hot_gain;
        }
    }
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t ch = 0; ch < D; ch++) {
            double k = mu[ch] + sd[ch] * student_t(&r, c->dof);
            double v = c->val_std * cq_rng_normal(&r);
            if (K) K[(size_t)t * D + ch] = to_f16_sat(k);
            if (V) V[(size_t)t * D + ch] = to_f16_sat(v);
        }
    if (hot_mask) memcpy(hot_mask, hot, D);
    return CQ_OK;
}
