/* SPDX-License-Identifier: MIT */
/*
 * engine_stim.c - stimulus helpers of the KVCE model tests (engine_stim.h).
 */
#include "engine_stim.h"

#include <stdlib.h>
#include <string.h>

cq_engine *es_make(cq_engine_rev rev, cq_tier tier, uint32_t D, uint32_t G, uint32_t depth,
                   const uint8_t *mask) {
    cq_engine_config c;
    cq_engine_config_default(&c);
    c.rev = rev;
    c.tier = tier;
    c.dim = D;
    c.group = G;
    c.sram_depth = depth;
    if (mask) memcpy(c.mask, mask, D);
    cq_engine *e = NULL;
    cq_err err;
    if (cq_engine_create(&c, &e, &err) != CQ_OK) return NULL;
    cq_engine_drv_init(e, &err);
    return e;
}

void es_token(uint32_t t, uint32_t D, uint16_t *x) {
    for (uint32_t c = 0; c < D; c++) {
        float v = (float)((int)((t * 7u + c * 13u) % 23u) - 11) * (0.05f + 0.01f * (float)c);
        x[c] = cq_f32_to_f16(v);
    }
}

void es_push(cq_engine *e, const uint16_t *x, uint32_t nbeats, int tuser, uint32_t tlast_at) {
    for (uint32_t b = 0, n = 0; b < nbeats && n < 100000; n++) {
        cq_engine_in in = {1, x[b], tuser, b == tlast_at, 1};
        cq_engine_out o;
        cq_engine_step(e, &in, &o);
        if (o.s_fire) b++;
    }
    for (int n = 0; n < 100000 && !cq_engine_token_ready(e); n++) cq_engine_step(e, NULL, NULL);
}

void es_beats(cq_engine *e, const uint16_t *x, uint32_t D, int tuser) {
    for (uint32_t b = 0; b < D; b++) {
        cq_engine_in in = {1, x[b], tuser, b == D - 1, 1};
        cq_engine_step(e, &in, NULL);
    }
}

uint32_t es_read(cq_engine *e, uint32_t addr, uint32_t *beats, uint32_t cap, uint32_t cycles,
                 uint32_t ready_pat) {
    cq_engine_reg_write(e, CQ_ENG_READ_ADDR, addr);
    uint32_t got = 0;
    for (uint32_t i = 0; i < cycles; i++) {
        cq_engine_in in = {0, 0, 0, 0, (int)((ready_pat >> (i % 32u)) & 1u)};
        cq_engine_out o;
        cq_engine_step(e, &in, &o);
        if (o.m_tvalid && o.m_fire && !o.m_lost && got < cap) beats[got++] = o.m_tdata;
    }
    return got;
}

void es_value_ref(const uint16_t *x, uint32_t D, unsigned bits, uint32_t *out) {
    uint8_t codes[CQ_MAX_DIM];
    uint16_t s;
    float f[CQ_MAX_DIM];
    cq_encode_token(x, D, bits, codes, &s, 0, NULL);
    cq_decode_token(codes, s, D, bits, f);
    for (uint32_t c = 0; c < D; c++) out[c] = cq_f32_bits(f[c]);
}

void es_key_ref(cq_tier tier, const uint8_t *mask, const uint16_t *K, uint32_t g, uint32_t D,
                uint32_t G, uint32_t *out, uint16_t *scales) {
    cq_params p;
    uint8_t zero[CQ_MAX_DIM] = {0};
    cq_params_init_mask(&p, tier, D, G, mask ? mask : zero, NULL);
    uint8_t *pay = calloc((size_t)g * D, 1);
    uint16_t sc[CQ_MAX_DIM], *side = calloc((size_t)g * D + 1, 2);
    float *f = calloc((size_t)g * D, sizeof(float));
    if (pay && side && f) {
        cq_encode_key_group(&p, K, g, pay, sc, side, 0, NULL);
        cq_decode_key_group_rows(&p, pay, sc, side, g, 0, g, f);
        for (size_t i = 0; i < (size_t)g * D; i++) out[i] = cq_f32_bits(f[i]);
        if (scales) memcpy(scales, sc, D * sizeof(uint16_t));
    }
    free(pay);
    free(side);
    free(f);
}
