/* SPDX-License-Identifier: MIT */
/*
 * engine_stim.h - stimulus helpers shared by the KVCE model tests: build and
 * enable an instance, deterministic tokens, stream a token through the write
 * pins (tlast anywhere, any number of beats), read a record through the read
 * pins under a tready pattern, and the codec-core reference of a value token.
 */
#ifndef ENGINE_STIM_H
#define ENGINE_STIM_H

#include <stdint.h>

#include "channelquant.h"
#include "cq_engine.h"

/* A created and enabled instance (drv_init), or NULL. mask may be NULL. */
cq_engine *es_make(cq_engine_rev rev, cq_tier tier, uint32_t D, uint32_t G, uint32_t depth,
                   const uint8_t *mask);
/* Token t of a deterministic "tensor": small values with varied magnitudes. */
void es_token(uint32_t t, uint32_t D, uint16_t *x);
/* Stream nbeats beats of x (tvalid held until accepted), tlast on beat tlast_at,
 * then clock until the write port can take a new token (bounded). */
void es_push(cq_engine *e, const uint16_t *x, uint32_t nbeats, int tuser, uint32_t tlast_at);
/* Present D beats of x back to back, one per cycle, tlast on the last, without
 * waiting for tready or for the token to finish (the caller steers the FSM). */
void es_beats(cq_engine *e, const uint16_t *x, uint32_t D, int tuser);
/* Launch a read of addr and clock `cycles` cycles with m_tready = bit i%32 of
 * ready_pat; returns the beats delivered (at most cap). */
uint32_t es_read(cq_engine *e, uint32_t addr, uint32_t *beats, uint32_t cap, uint32_t cycles,
                 uint32_t ready_pat);
/* Codec-core reconstruction of one value token (bits 4 or 8) as fp32 bits. */
void es_value_ref(const uint16_t *x, uint32_t D, unsigned bits, uint32_t *out);
/* Codec-core reconstruction of one key group of g tokens (K [g][D], group size G)
 * as [g][D] fp32 bits; scales (may be NULL) receives the D group scales. */
void es_key_ref(cq_tier tier, const uint8_t *mask, const uint16_t *K, uint32_t g, uint32_t D,
                uint32_t G, uint32_t *out, uint16_t *scales);

#endif
