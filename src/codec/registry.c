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

static const cq_codec_traits *const table[] = {
    &cq_codec_fp16,
    &cq_codec_cq8,
    &cq_codec_cq4,
    &cq_codec_cq4p,
    &cq_codec_cq3rot,
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
