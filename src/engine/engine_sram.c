/* SPDX-License-Identifier: MIT */
/*
 * engine_sram.c - the KVCE record SRAM, bit for bit (ENGINE.md section 4, and
 * the v0.3 layouts of docs/ENGINE_V03.md). Rows are arrays of 64-bit words,
 * bit i of the row at word i/64, bit i%64 (LSB first). Every record has its
 * tag in the top bit of the row (row_bits - 1): 0 value/CQ-8 key, 1 key;
 * v0.2 CQ-8 rows (one record kind) have no tag bit.
 *
 *   value (all tiers) and CQ-8 key:  [D codes x vbits][fp16 scale][... 0][tag=0]
 *   v0.2 key (CQ-4/CQ-4+):           [D x 4-bit code][D x fp16 field][tag=1]
 *                                    field = group channel scale, or raw key with
 *                                    code +1 on an outlier channel
 *   v0.3 key (CQ-4/CQ-4+):           [D x 4-bit code][k x fp16 raw outlier]
 *                                    [scale-set index][... 0][tag=1]
 *                                    the D scales (and the mask) live once per
 *                                    group in the scale table
 *
 * Decoding goes through the integer dequantize core (engine_cores.c). The FSM
 * that decides when to store and read lives in engine_fsm.c.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

uint64_t eng_get_bits(const uint64_t *row, uint32_t pos, uint32_t n) {
    uint64_t v = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t b = pos + i;
        v |= ((row[b >> 6] >> (b & 63u)) & 1u) << i;
    }
    return v;
}

void eng_put_bits(uint64_t *row, uint32_t pos, uint32_t n, uint64_t v) {
    for (uint32_t i = 0; i < n; i++) {
        uint32_t b = pos + i;
        uint64_t m = 1ull << (b & 63u);
        if ((v >> i) & 1u) row[b >> 6] |= m;
        else row[b >> 6] &= ~m;
    }
}

static uint32_t ceil_log2(uint32_t n) {
    uint32_t b = 0;
    while ((1ull << b) < n) b++;
    return b;
}

cq_status eng_sram_init(cq_engine *e, cq_err *err) {
    uint32_t D = e->D;
    uint32_t vcontent = D * e->vbits + 16u;
    uint32_t kcontent;
    e->sets = 0;
    e->set_idx_bits = 0;
    if (e->tier == CQ_TIER_CQ8) {
        kcontent = vcontent;
    } else if (e->rev == CQ_ENGINE_V02) {
        kcontent = 4u * D + 16u * D;
    } else {
        /* enough scale-table entries for every whole group the SRAM can hold,
         * twice over (partial groups from FLUSH also take one) */
        e->sets = 2u * ((e->depth + e->G - 1u) / e->G);
        if (e->sets < 2u) e->sets = 2u;
        e->set_idx_bits = ceil_log2(e->sets);
        if (e->set_idx_bits == 0) e->set_idx_bits = 1;
        kcontent = 4u * D + 16u * e->k + e->set_idx_bits;
    }
    /* v0.2 (item 8): a CQ-8 row has one record kind and no tag bit */
    e->has_tag = !(e->tier == CQ_TIER_CQ8 && e->tr->cq8_no_tag);
    uint32_t tag = e->has_tag ? 1u : 0u;
    e->row_bits = (kcontent > vcontent ? kcontent : vcontent) + tag;
    e->key_bits = kcontent + tag;
    e->val_bits = vcontent + tag;
    e->row_words = (e->row_bits + 63u) / 64u;
    e->sram = calloc((size_t)e->depth * e->row_words, sizeof(uint64_t));
    e->valid = calloc(e->depth, 1);
    e->resid = calloc((size_t)e->G * D, sizeof(uint16_t));
    if (e->sets) {
        e->set_scale = calloc((size_t)e->sets * D, sizeof(uint16_t));
        e->set_mask = calloc((size_t)e->sets * D, 1);
    }
    int stale = e->tr->reset_keeps_paths && e->tier != CQ_TIER_CQ8;
    if (stale) {
        e->kstale_codes = calloc((size_t)e->G * D, 1);
        e->kstale_rows = calloc((size_t)e->G * D, sizeof(uint16_t));
    }
    if (!e->sram || !e->valid || !e->resid || (e->sets && (!e->set_scale || !e->set_mask)) ||
        (stale && (!e->kstale_codes || !e->kstale_rows)))
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "engine SRAM of %u records x %u bits",
                          e->depth, e->row_bits);
    return CQ_OK;
}

void eng_sram_clear(cq_engine *e) {
    memset(e->sram, 0, (size_t)e->depth * e->row_words * sizeof(uint64_t));
    memset(e->valid, 0, e->depth);
    memset(e->resid, 0, (size_t)e->G * e->D * sizeof(uint16_t));
    if (e->sets) {
        memset(e->set_scale, 0, (size_t)e->sets * e->D * sizeof(uint16_t));
        memset(e->set_mask, 0, (size_t)e->sets * e->D);
    }
    e->next_set = 0;
    e->last_set = 0;
}

void eng_sram_free(cq_engine *e) {
    free(e->sram);
    free(e->valid);
    free(e->resid);
    free(e->set_scale);
    free(e->set_mask);
    free(e->kstale_codes);
    free(e->kstale_rows);
}

static uint64_t *row_of(const cq_engine *e, uint32_t addr) {
    return e->sram + (size_t)addr * e->row_words;
}

static void mark_written(cq_engine *e, uint32_t addr) {
    if (!e->valid[addr]) {
        e->valid[addr] = 1;
        e->occupancy++;
    }
    eng_rp_row(e, addr);
}

void eng_invalidate(cq_engine *e, uint32_t addr) {
    if (addr < e->depth && e->valid[addr]) {
        e->valid[addr] = 0;
        e->occupancy--;
    }
}

void eng_store_value(cq_engine *e, uint32_t addr, const int *codes, uint16_t scale) {
    uint64_t *row = row_of(e, addr);
    memset(row, 0, e->row_words * sizeof(uint64_t));
    uint32_t w = e->vbits, D = e->D;
    for (uint32_t c = 0; c < D; c++)
        eng_put_bits(row, c * w, w, (uint64_t)((uint32_t)codes[c] & ((1u << w) - 1u)));
    eng_put_bits(row, D * w, 16, scale);
    if (e->has_tag) eng_put_bits(row, e->row_bits - 1u, 1, 0);
    mark_written(e, addr);
}

void eng_store_key(cq_engine *e, uint32_t addr, const int *codes, const uint16_t *raw_token,
                   const uint16_t *scales, uint32_t set) {
    uint64_t *row = row_of(e, addr);
    memset(row, 0, e->row_words * sizeof(uint64_t));
    uint32_t D = e->D;
    if (e->rev == CQ_ENGINE_V02) {
        for (uint32_t c = 0; c < D; c++) {
            int out = e->mask[c] != 0;
            /* outlier channel: code +1 and the raw key in the field, so that the
             * read path's code x field widens it with no mask */
            eng_put_bits(row, 4u * c, 4, out ? 1u : (uint32_t)codes[c] & 0xFu);
            eng_put_bits(row, 4u * D + 16u * c, 16, out ? raw_token[c] : scales[c]);
        }
    } else {
        uint32_t j = 0;
        for (uint32_t c = 0; c < D; c++) {
            if (e->mask[c]) {
                eng_put_bits(row, 4u * c, 4, 0);
                eng_put_bits(row, 4u * D + 16u * j, 16, raw_token[c]);
                j++;
            } else {
                eng_put_bits(row, 4u * c, 4, (uint32_t)codes[c] & 0xFu);
            }
        }
        eng_put_bits(row, 4u * D + 16u * e->k, e->set_idx_bits, set);
    }
    eng_put_bits(row, e->row_bits - 1u, 1, 1);
    mark_written(e, addr);
}

static int sext(uint64_t v, unsigned bits) {
    int x = (int)(v & ((1u << bits) - 1u));
    return x >= (1 << (bits - 1)) ? x - (1 << bits) : x;
}

void eng_decode_record(const cq_engine *e, uint32_t addr, uint32_t *beats) {
    const uint64_t *row = row_of(e, addr);
    uint32_t D = e->D;
    int tag = e->has_tag ? (int)eng_get_bits(row, e->row_bits - 1u, 1) : 0;
    if (!tag) {
        uint32_t w = e->vbits;
        uint16_t scale = (uint16_t)eng_get_bits(row, D * w, 16);
        for (uint32_t c = 0; c < D; c++)
            beats[c] = cq_eng_dequant_core(sext(eng_get_bits(row, c * w, w), w), scale);
        return;
    }
    if (e->rev == CQ_ENGINE_V02) {
        for (uint32_t c = 0; c < D; c++)
            beats[c] = cq_eng_dequant_core(sext(eng_get_bits(row, 4u * c, 4), 4),
                                           (uint16_t)eng_get_bits(row, 4u * D + 16u * c, 16));
        return;
    }
    uint32_t set = (uint32_t)eng_get_bits(row, 4u * D + 16u * e->k, e->set_idx_bits);
    if (set >= e->sets) set = 0; /* cannot happen for rows the engine wrote */
    const uint16_t *sc = e->set_scale + (size_t)set * D;
    const uint8_t *mk = e->set_mask + (size_t)set * D;
    uint32_t j = 0;
    for (uint32_t c = 0; c < D; c++) {
        if (mk[c]) /* the outlier lane bypasses the multiplier: exact, -0.0 kept */
            beats[c] = cq_eng_widen_core((uint16_t)eng_get_bits(row, 4u * D + 16u * j++, 16));
        else
            beats[c] = cq_eng_dequant_core(sext(eng_get_bits(row, 4u * c, 4), 4), sc[c]);
    }
}
