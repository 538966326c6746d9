/* SPDX-License-Identifier: MIT */
/*
 * registry.c - the one table of codecs. Adding a codec: write its file under
 * src/codec/ defining `const cq_codec_traits cq_codec_<name>`, declare it
 * below, add one row to `table`. Order here is the order of listings.
 */
#include <ctype.h>
#include <string.h>

#include "cq_codec.h"
#include "cq_registry.h"

extern const cq_codec_traits cq_codec_fp16;
extern const cq_codec_traits cq_codec_cq8;
extern const cq_codec_traits cq_codec_cq4;
extern const cq_codec_traits cq_codec_cq4p;
extern const cq_codec_traits cq_codec_cq3rot;
/* baselines: plain integer family and KIVI (BASELINES.md section 1) */
extern const cq_codec_traits cq_codec_int8_token;
extern const cq_codec_traits cq_codec_int4_token;
extern const cq_codec_traits cq_codec_int4_channel;
extern const cq_codec_traits cq_codec_outlier_top2;
extern const cq_codec_traits cq_codec_kivi4;
extern const cq_codec_traits cq_codec_kivi2;
/* baselines: ggml cache types (section 2) */
extern const cq_codec_traits cq_codec_q8_0;
extern const cq_codec_traits cq_codec_q4_0;
extern const cq_codec_traits cq_codec_q4_1;
extern const cq_codec_traits cq_codec_q5_0;
extern const cq_codec_traits cq_codec_q5_1;
extern const cq_codec_traits cq_codec_iq4_nl;
extern const cq_codec_traits cq_codec_q4_0_rot;
/* baselines: microscaling FP4 (section 3) */
extern const cq_codec_traits cq_codec_mxfp4;
extern const cq_codec_traits cq_codec_nvfp4;
/* baselines: TurboQuant family, rotation-per-vector, MegaQuant (sections 4-6) */
extern const cq_codec_traits cq_codec_turbo2;
extern const cq_codec_traits cq_codec_turbo3;
extern const cq_codec_traits cq_codec_turbo4;
extern const cq_codec_traits cq_codec_turbo4_old;
extern const cq_codec_traits cq_codec_tbq3;
extern const cq_codec_traits cq_codec_tbq4;
extern const cq_codec_traits cq_codec_planar3;
extern const cq_codec_traits cq_codec_iso3;
extern const cq_codec_traits cq_codec_mq_a3_g32;
extern const cq_codec_traits cq_codec_mq_a3_g64;
extern const cq_codec_traits cq_codec_mq_a3_g64_meta4;
extern const cq_codec_traits cq_codec_mq_a3_g64_meta8;
extern const cq_codec_traits cq_codec_mq_a2_g64_meta8;
extern const cq_codec_traits cq_codec_mq_h2_g64_meta8;
extern const cq_codec_traits cq_codec_mq_h2_g32;
extern const cq_codec_traits cq_codec_mq_cw2;
extern const cq_codec_traits cq_codec_mq_sink1_cw2;

static const cq_codec_traits *const table[] = {
    &cq_codec_fp16,
    &cq_codec_cq8,
    &cq_codec_cq4,
    &cq_codec_cq4p,
    &cq_codec_cq3rot,
    /* plain integer family and KIVI */
    &cq_codec_int8_token,
    &cq_codec_int4_token,
    &cq_codec_int4_channel,
    &cq_codec_outlier_top2,
    &cq_codec_kivi4,
    &cq_codec_kivi2,
    /* ggml cache types */
    &cq_codec_q8_0,
    &cq_codec_q4_0,
    &cq_codec_q4_1,
    &cq_codec_q5_0,
    &cq_codec_q5_1,
    &cq_codec_iq4_nl,
    &cq_codec_q4_0_rot,
    /* microscaling FP4 */
    &cq_codec_mxfp4,
    &cq_codec_nvfp4,
    /* TurboQuant family, rotation-per-vector, MegaQuant */
    &cq_codec_turbo2,
    &cq_codec_turbo3,
    &cq_codec_turbo4,
    &cq_codec_turbo4_old,
    &cq_codec_tbq3,
    &cq_codec_tbq4,
    &cq_codec_planar3,
    &cq_codec_iso3,
    &cq_codec_mq_a3_g32,
    &cq_codec_mq_a3_g64,
    &cq_codec_mq_a3_g64_meta4,
    &cq_codec_mq_a3_g64_meta8,
    &cq_codec_mq_a2_g64_meta8,
    &cq_codec_mq_h2_g64_meta8,
    &cq_codec_mq_h2_g32,
    &cq_codec_mq_cw2,
    &cq_codec_mq_sink1_cw2,
};

void cq_codec_cfg_default(cq_codec_cfg *cfg, uint32_t dim) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->dim = dim;
    cfg->group = CQ_DEFAULT_GROUP;
    cfg->residual = 128;
    cfg->mask = NULL;
    cfg->seed = 0x5EEDC0DEull;
}

size_t cq_codec_count(void) { return sizeof table / sizeof table[0]; }

const cq_codec_traits *cq_codec_at(size_t i) { return i < cq_codec_count() ? table[i] : NULL; }

const cq_codec_traits *cq_codec_get(cq_codec_id id) {
    for (size_t i = 0; i < cq_codec_count(); i++)
        if (table[i]->id == id) return table[i];
    return NULL;
}

const cq_codec_traits *cq_codec_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < cq_codec_count(); i++) {
        const char *a = table[i]->name, *b = name;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
        if (!*a && !*b) return table[i];
    }
    return NULL;
}

cq_status cq_codec_supports(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role) {
    if (!c || !cfg) return CQ_ERR_NULL;
    unsigned need = role == CQ_ROLE_KEY ? CQ_CODEC_F_KEYS : CQ_CODEC_F_VALUES;
    if (!(c->flags & need)) return CQ_ERR_UNSUPPORTED;
    if (cfg->dim < CQ_MIN_DIM || cfg->dim > CQ_MAX_DIM || (cfg->dim & 1)) return CQ_ERR_DIM;
    return c->check ? c->check(cfg, role) : CQ_OK;
}

uint32_t cq_codec_unit_tokens(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role) {
    if (!c || !cfg || !c->unit_tokens) return 1;
    uint32_t u = c->unit_tokens(cfg, role);
    return u ? u : 1;
}

uint32_t cq_codec_window_tokens(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role) {
    if (!c || !cfg || !c->window_tokens) return 0;
    return c->window_tokens(cfg, role);
}
