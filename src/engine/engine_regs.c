/* SPDX-License-Identifier: MIT */
/*
 * engine_regs.c - construction, reset and the AXI-Lite register file of the
 * KVCE model (ENGINE.md section 2; v0.3 additions in docs/ENGINE_V03.md).
 * Register accesses take effect between two clock edges (before the next
 * cq_engine_step). The FSM itself lives in engine_fsm.c.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

void cq_engine_config_default(cq_engine_config *c) {
    memset(c, 0, sizeof *c);
    c->rev = CQ_ENGINE_V03;
    c->tier = CQ_TIER_CQ4;
    c->dim = 64;
    c->group = CQ_DEFAULT_GROUP;
    c->sram_depth = 1024;
    c->lanes = 1;
}

static uint32_t popcount_mask(const uint8_t *m, uint32_t D) {
    uint32_t n = 0;
    for (uint32_t c = 0; c < D; c++) n += m[c] != 0;
    return n;
}

cq_status cq_engine_create(const cq_engine_config *c, cq_engine **out, cq_err *err) {
    cq_err_clear(err);
    if (!c || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "engine config or out is NULL");
    *out = NULL;
    if (c->rev != CQ_ENGINE_V02 && c->rev != CQ_ENGINE_V03)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "unknown engine revision %d", (int)c->rev);
    if ((unsigned)c->tier >= CQ_TIER_COUNT_)
        return cq_err_set(err, CQ_ERR_TIER, -1, -1, "unknown tier %d", (int)c->tier);
    if (c->dim < CQ_MIN_DIM || c->dim > CQ_MAX_DIM || (c->dim & 1u))
        return cq_err_set(err, CQ_ERR_DIM, -1, -1, "engine D=%u: must be even, 2..512", c->dim);
    if (c->group == 0 || c->group > 65536u)
        return cq_err_set(err, CQ_ERR_GROUP, -1, -1, "engine G=%u: must be 1..65536", c->group);
    if (c->sram_depth == 0 || c->sram_depth > 65536u)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "SRAM depth %u: must be 1..65536",
                          c->sram_depth);
    if (c->lanes == 0 || c->lanes > c->dim)
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "lanes %u: must be 1..D (%u)", c->lanes,
                          c->dim);
    uint32_t k = popcount_mask(c->mask, c->dim);
    if (c->tier != CQ_TIER_CQ4P && k != 0)
        return cq_err_set(err, CQ_ERR_OUTLIERS, -1, -1, "%s has no outlier lane (mask has %u)",
                          cq_tier_name(c->tier), k);
    if (k >= c->dim)
        return cq_err_set(err, CQ_ERR_OUTLIERS, -1, -1, "outlier mask selects %u of %u channels",
                          k, c->dim);
    cq_engine *e = calloc(1, sizeof *e);
    if (!e) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "engine state");
    e->rev = c->rev;
    e->tr = eng_traits_of(c->rev);
    e->tier = c->tier;
    e->D = c->dim;
    e->G = c->tier == CQ_TIER_CQ8 ? (c->group ? c->group : 1) : c->group;
    e->k = k;
    e->depth = c->sram_depth;
    e->lanes = c->lanes;
    e->addr_bits = 0;
    while ((1ull << e->addr_bits) < e->depth) e->addr_bits++;
    e->qmax_v = c->tier == CQ_TIER_CQ8 ? 127 : 7;
    e->qmax_k = c->tier == CQ_TIER_CQ8 ? 127 : 7;
    e->vbits = c->tier == CQ_TIER_CQ8 ? 8u : 4u;
    for (uint32_t i = 0; i < e->D; i++) e->rom_mask[i] = c->mask[i] ? 1 : 0;
    cq_status st = eng_sram_init(e, err);
    if (st) {
        cq_engine_free(e);
        return st;
    }
    cq_engine_hard_reset(e);
    *out = e;
    return CQ_OK;
}

void cq_engine_free(cq_engine *e) {
    if (!e) return;
    eng_sram_free(e);
    free(e);
}

void cq_engine_hard_reset(cq_engine *e) {
    FILE *tr = e->trace;
    eng_sram_clear(e);
    eng_regs_reset(e);
    e->occupancy = 0;
    e->cycle = 0;
    memset(e->st_cycles, 0, sizeof e->st_cycles);
    memset(e->kamax, 0, sizeof e->kamax);
    e->beats_lost = 0;
    e->beats_dropped = 0;
    e->q_total = e->q_fast = 0;
    e->vstale = 0;
    e->kstale_n = 0;
    memset(e->sreg, 0, sizeof e->sreg);
    e->trace = tr;
}

void eng_regs_reset(cq_engine *e) {
    e->enable = 0;
    e->auto_inc = 0;
    e->write_addr = e->read_addr = e->kv_select = 0;
    e->irq_mask = e->irq_status = 0;
    e->read_timeout = ENG_DEFAULT_TIMEOUT;
    e->err_addr = 0;
    memset(e->mask_shadow, 0, sizeof e->mask_shadow);
    memcpy(e->mask, e->rom_mask, sizeof e->mask);
    for (uint32_t c = 0; c < e->D; c++)
        if (e->rom_mask[c]) e->mask_shadow[c / 32u] |= 1u << (c % 32u);
    e->st = CQ_ES_IDLE; /* power-on: no race, no path left running */
    eng_soft_reset(e);
    memset(e->kamax, 0, sizeof e->kamax);
}

/* v0.2 (R2): the value path finishes the token it was compressing; its codes
 * wait for the next token, which is lost in their favour. */
static void abort_value_path(cq_engine *e) {
    if (e->st == CQ_ES_COMPRESS) {
        e->vscale = cq_eng_scale_core(e->vamax, e->qmax_v);
        for (uint32_t c = 0; c < e->D; c++)
            e->vcode[c] = cq_eng_quantize_core(e->vbuf[c], e->vscale, e->qmax_v, NULL);
    }
    e->vstale = 1;
}

/* v0.2 (R2): the key path finishes the flush it was in; the records not yet
 * written go to the base of the next group (engine_fsm.c). */
static void abort_key_path(cq_engine *e) {
    uint32_t D = e->D, from = 0;
    if (e->st == CQ_ES_KFEED) {
        for (uint32_t c = 0; c < D; c++)
            e->kscale[c] = e->mask[c] ? 0 : cq_eng_scale_core(e->kamax[c], e->qmax_k);
    } else {
        from = e->emit_tok;
    }
    for (uint32_t i = from; i < e->gflush; i++)
        for (uint32_t c = 0; c < D; c++) {
            uint16_t x = e->resid[(size_t)i * D + c];
            e->kstale_codes[(size_t)i * D + c] =
                (int8_t)cq_eng_quantize_core(x, e->kscale[c], e->qmax_k, NULL);
            e->kstale_rows[(size_t)i * D + c] = x;
        }
    memcpy(e->kstale_scale, e->kscale, sizeof e->kstale_scale);
    e->kstale_from = from;
    e->kstale_n = e->gflush;
}

/* ENGINE.md section 5: back to IDLE, beat and group counters cleared (the group's
 * amax restarts with its next first token, engine_fsm.c). v0.2 leaves the value
 * and key paths running (R2) and loses a reset that meets a state assignment in
 * RLOAD or in KFEED's last cycle (R5); v0.3 aborts everything. */
void eng_soft_reset(cq_engine *e) {
    const eng_traits *t = e->tr;
    if (t->reset_race &&
        (e->st == CQ_ES_RLOAD || (e->st == CQ_ES_KFEED && e->sub + 1u == e->D + t->kfeed_extra)))
        return; /* R5: the FSM's own state assignment wins */
    if (t->reset_keeps_paths) {
        if (e->st == CQ_ES_COMPRESS || e->st == CQ_ES_STORE) abort_value_path(e);
        if ((e->st == CQ_ES_KFEED || e->st == CQ_ES_KEMIT) && e->kstale_codes) abort_key_path(e);
    } else {
        e->vstale = 0;
        e->kstale_n = 0;
    }
    e->st = CQ_ES_IDLE;
    e->beat = 0;
    e->gcount = 0;
    e->flush_req = 0;
    e->rd_pending = 0;
    e->rd_head = e->rd_count = 0;
    e->oidx = 0;
    e->sub = 0;
    e->chan = 0;
    e->qc_n = 0;
    if (e->rev == CQ_ENGINE_V03) memset(e->kamax, 0, sizeof e->kamax);
}

/* INFO_CR_K / INFO_CR_V (8.8 fixed point). v0.2 (item 7) takes 16*D/G in
 * integers, floor(D*16*256 / (D*4 + floor(16*D/G))); v0.3 takes it exactly,
 * floor(D*16*256*G / (G*D*4 + 16*D)). */
uint32_t eng_cr(const cq_engine *e, int key) {
    uint64_t D = e->D, G = e->G;
    uint64_t vb = e->tier == CQ_TIER_CQ8 ? 8u : 4u;
    if (!key || e->tier == CQ_TIER_CQ8) return (uint32_t)(D * 16u * 256u / (D * vb + 16u));
    if (e->tr->cr_k_integer) return (uint32_t)(D * 16u * 256u / (D * 4u + 16u * D / G));
    return (uint32_t)(D * 16u * 256u * G / (D * 4u * G + 16u * D));
}

/* WRITE_ADDR / READ_ADDR width: v0.2 (item 6) clog2(SRAM_DEPTH) bits, so an
 * address past the depth aliases; v0.3 16 bits. */
uint32_t eng_addr_mask(const cq_engine *e) {
    if (!e->tr->addr_alias) return 0xFFFFu;
    return e->addr_bits ? (uint32_t)((1ull << e->addr_bits) - 1u) : 0u;
}

void eng_raise(cq_engine *e, uint32_t irq_bit, uint32_t addr) {
    if (e->rev != CQ_ENGINE_V03) return; /* v0.2: nothing sets IRQ_STATUS */
    e->irq_status |= irq_bit;
    e->err_addr = addr;
}

int eng_idle(const cq_engine *e) {
    if (e->st != CQ_ES_IDLE) return 0;
    if (e->rev == CQ_ENGINE_V02) return !e->rd_pending;
    return e->rd_count == 0 && !e->flush_req;
}

int eng_irq_line(const cq_engine *e) {
    return e->rev == CQ_ENGINE_V03 && (e->irq_status & e->irq_mask) != 0;
}

static uint32_t status_word(const cq_engine *e) {
    uint32_t s = 0;
    if (eng_idle(e)) s |= CQ_ENG_ST_IDLE;
    if (e->occupancy >= e->depth) s |= CQ_ENG_ST_SRAM_FULL;
    if (e->rev == CQ_ENGINE_V03) {
        if (e->gcount > 0) s |= CQ_ENG_ST_GROUP_OPEN;
        if (e->rd_count || e->st == CQ_ES_RLOAD || e->st == CQ_ES_RWAIT || e->st == CQ_ES_OUTPUT)
            s |= CQ_ENG_ST_READ_BUSY;
        if (e->irq_status) s |= CQ_ENG_ST_ERROR;
        if (eng_irq_line(e)) s |= CQ_ENG_ST_IRQ;
    }
    return s;
}

static uint32_t reg_value(const cq_engine *e, uint32_t off) {
    int v3 = e->rev == CQ_ENGINE_V03;
    switch (off) {
    case CQ_ENG_CTRL:
        return ((uint32_t)e->enable << 1) | (v3 ? (uint32_t)e->auto_inc << 4 : 0u);
    case CQ_ENG_STATUS: return status_word(e);
    case CQ_ENG_INFO_DIM: return e->D;
    case CQ_ENG_INFO_TIER: return (uint32_t)e->tier;
    case CQ_ENG_INFO_GROUP: return e->G;
    case CQ_ENG_INFO_SRAM_DEPTH: return e->depth;
    case CQ_ENG_INFO_CR_K: return eng_cr(e, 1);
    case CQ_ENG_INFO_CR_V: return eng_cr(e, 0);
    case CQ_ENG_INFO_VERSION: return v3 ? CQ_ENG_VERSION_V03 : CQ_ENG_VERSION_V02;
    case CQ_ENG_OCCUPANCY: return e->occupancy;
    case CQ_ENG_WRITE_ADDR: return e->write_addr;
    case CQ_ENG_READ_ADDR: return e->read_addr;
    case CQ_ENG_KV_SELECT: return e->kv_select;
    case CQ_ENG_IRQ_MASK: return e->irq_mask;
    case CQ_ENG_IRQ_STATUS: return e->irq_status;
    case CQ_ENG_INFO_OUTLIER_K: return e->k;
    case CQ_ENG_INFO_SCALE_DEPTH: return e->D;
    case CQ_ENG_INFO_RESID_DEPTH: return e->G;
    default: break;
    }
    if (!v3) return CQ_ENG_UNMAPPED;
    switch (off) {
    case CQ_ENG_GROUP_COUNT: return e->gcount;
    case CQ_ENG_GROUP_BASE: return e->gcount ? e->gbase : 0u;
    case CQ_ENG_READ_TIMEOUT: return e->read_timeout;
    case CQ_ENG_ERR_ADDR: return e->err_addr;
    case CQ_ENG_INFO_SCALE_SETS: return e->sets;
    case CQ_ENG_INVALIDATE: return 0;
    case CQ_ENG_INFO_LANES: return e->lanes;
    case CQ_ENG_INFO_RECORD_BITS: return e->row_bits;
    case CQ_ENG_CYCLE_COUNT: return (uint32_t)e->cycle;
    case CQ_ENG_LAST_SCALE_SET: return e->last_set;
    default: break;
    }
    if (off >= CQ_ENG_MASK_SHADOW && off < CQ_ENG_MASK_SHADOW + 4u * CQ_ENG_MASK_WORDS &&
        (off & 3u) == 0)
        return e->mask_shadow[(off - CQ_ENG_MASK_SHADOW) / 4u];
    if (off >= CQ_ENG_MASK_ACTIVE && off < CQ_ENG_MASK_ACTIVE + 4u * CQ_ENG_MASK_WORDS &&
        (off & 3u) == 0) {
        uint32_t w = (off - CQ_ENG_MASK_ACTIVE) / 4u, v = 0;
        for (uint32_t b = 0; b < 32u; b++) {
            uint32_t c = w * 32u + b;
            if (c < e->D && e->mask[c]) v |= 1u << b;
        }
        return v;
    }
    return CQ_ENG_UNMAPPED;
}

uint32_t cq_engine_reg_read(cq_engine *e, uint32_t off) {
    if (!e) return CQ_ENG_UNMAPPED;
    uint32_t v = reg_value(e, off);
    eng_rp_reg_read(e, off, v);
    if (e->trace)
        fprintf(e->trace, "R %llu %04x %08x\n", (unsigned long long)e->cycle, off, v);
    return v;
}

/* v0.3 MASK_LOAD: shadow -> active when legal, else MASK_ERR and nothing changes. */
static void mask_load(cq_engine *e) {
    uint8_t m[CQ_MAX_DIM];
    uint32_t n = 0;
    int bad = 0;
    for (uint32_t w = 0; w < CQ_ENG_MASK_WORDS; w++)
        for (uint32_t b = 0; b < 32u; b++) {
            uint32_t c = w * 32u + b;
            int bit = (e->mask_shadow[w] >> b) & 1u;
            if (c < e->D) m[c] = (uint8_t)bit, n += (uint32_t)bit;
            else if (bit) bad = 1;
        }
    int busy = e->gcount > 0 || (e->st >= CQ_ES_KCOLLECT && e->st <= CQ_ES_KEMIT);
    if (bad || n != e->k || busy) {
        eng_raise(e, CQ_ENG_IRQ_MASK_ERR, 0);
        return;
    }
    memcpy(e->mask, m, e->D);
}

void cq_engine_reg_write(cq_engine *e, uint32_t off, uint32_t val) {
    if (!e) return;
    if (e->trace)
        fprintf(e->trace, "W %llu %04x %08x\n", (unsigned long long)e->cycle, off, val);
    eng_rp_reg_write(e, off, val);
    int v3 = e->rev == CQ_ENGINE_V03;
    switch (off) {
    case CQ_ENG_CTRL:
        if (val & CQ_ENG_CTRL_SOFT_RESET) eng_soft_reset(e);
        e->enable = (val & CQ_ENG_CTRL_ENABLE) != 0;
        if (v3) {
            e->auto_inc = (val & CQ_ENG_CTRL_AUTO_INC) != 0;
            if (val & CQ_ENG_CTRL_MASK_LOAD) mask_load(e);
            if ((val & CQ_ENG_CTRL_FLUSH) && e->gcount > 0) e->flush_req = 1;
        }
        return;
    case CQ_ENG_WRITE_ADDR: e->write_addr = val & eng_addr_mask(e); return;
    case CQ_ENG_READ_ADDR:
        e->read_addr = val & eng_addr_mask(e);
        if (!v3) {
            /* v0.2 (gap 4): the launch is taken only in IDLE; otherwise lost */
            if (e->st == CQ_ES_IDLE) e->rd_pending = 1;
        } else if (e->rd_count < ENG_READ_FIFO) {
            e->rd_fifo[(e->rd_head + e->rd_count) % ENG_READ_FIFO] = e->read_addr;
            e->rd_count++;
        } else {
            eng_raise(e, CQ_ENG_IRQ_RD_OVR, e->read_addr);
        }
        return;
    case CQ_ENG_KV_SELECT: e->kv_select = val & (v3 ? 3u : 1u); return;
    case CQ_ENG_IRQ_MASK: e->irq_mask = val & (v3 ? 0x1Fu : 0xFu); return;
    case CQ_ENG_IRQ_STATUS: e->irq_status &= ~val; return;
    default: break;
    }
    if (!v3) return; /* read-only and unmapped offsets: writes ignored */
    if (off == CQ_ENG_READ_TIMEOUT) e->read_timeout = val;
    else if (off == CQ_ENG_INVALIDATE) eng_invalidate(e, val & 0xFFFFu);
    else if (off >= CQ_ENG_MASK_SHADOW && off < CQ_ENG_MASK_SHADOW + 4u * CQ_ENG_MASK_WORDS &&
             (off & 3u) == 0)
        e->mask_shadow[(off - CQ_ENG_MASK_SHADOW) / 4u] = val;
}

/* ------------------------------------------------------------ inspection */

void cq_engine_get_info(const cq_engine *e, cq_engine_info *info) {
    memset(info, 0, sizeof *info);
    info->rev = e->rev;
    info->tier = e->tier;
    info->dim = e->D;
    info->group = e->G;
    info->k = e->k;
    info->sram_depth = e->depth;
    info->lanes = e->lanes;
    info->addr_bits = e->addr_bits;
    info->record_bits = e->row_bits;
    info->key_record_bits = e->key_bits;
    info->val_record_bits = e->val_bits;
    info->scale_sets = e->sets;
    info->scale_set_bits = e->sets ? 17u * e->D : 0u;
}

cq_status cq_engine_record_bits(const cq_engine *e, uint32_t addr, uint64_t *words, size_t nwords,
                                int *valid) {
    if (!e || !words) return CQ_ERR_NULL;
    if (addr >= e->depth) return CQ_ERR_RANGE;
    if (nwords < e->row_words) return CQ_ERR_BUFFER;
    memcpy(words, e->sram + (size_t)addr * e->row_words, e->row_words * sizeof(uint64_t));
    for (size_t i = e->row_words; i < nwords; i++) words[i] = 0;
    if (valid) *valid = e->valid[addr];
    return CQ_OK;
}

cq_status cq_engine_scale_set(const cq_engine *e, uint32_t set, uint16_t *scales, uint8_t *mask) {
    if (!e) return CQ_ERR_NULL;
    if (set >= e->sets) return CQ_ERR_RANGE;
    if (scales) memcpy(scales, e->set_scale + (size_t)set * e->D, e->D * sizeof(uint16_t));
    if (mask) memcpy(mask, e->set_mask + (size_t)set * e->D, e->D);
    return CQ_OK;
}

void cq_engine_set_trace(cq_engine *e, FILE *f) {
    if (!e) return;
    e->trace = f;
    if (f)
        fprintf(f, "# cq-engine-trace 1 rev=v0.%d tier=%s D=%u G=%u k=%u depth=%u lanes=%u\n",
                (int)e->rev, cq_tier_tag(e->tier), e->D, e->G, e->k, e->depth, e->lanes);
}
