/* SPDX-License-Identifier: MIT */
/*
 * test_engine_fuzz.c - random stimulus for the KVCE model: random register
 * writes (soft reset, flush, mask loads, addresses out of range, timeouts),
 * random beats (tvalid, tuser, early tlast, non-finite data) and random
 * read-port back-pressure, in both revisions and several shapes. The model
 * must never crash (this also runs under ASan+UBSan) and must keep its
 * invariants: OCCUPANCY <= SRAM_DEPTH and equal to the valid rows, a read beat
 * only in OUTPUT with tlast exactly on beat D-1, v0.3 never loses a beat,
 * IRQ_STATUS only within bits 4..0 (v0.2: always 0).
 */
#include <string.h>

#include "channelquant.h"
#include "cq_engine.h"
#include "cq_test.h"

static const uint32_t offs[] = {0x00, 0x28, 0x28, 0x28, 0x2C, 0x2C, 0x30, 0x34, 0x38,
                                0x50, 0x5C, 0x80, 0x84, 0x04, 0x99, 0x200};

static void fuzz(cq_engine_rev rev, cq_tier tier, uint32_t D, uint32_t G, uint32_t depth,
                 uint32_t lanes, uint64_t seed, uint32_t cycles) {
    cq_engine_config c;
    cq_engine_config_default(&c);
    c.rev = rev;
    c.tier = tier;
    c.dim = D;
    c.group = G;
    c.sram_depth = depth;
    c.lanes = lanes;
    if (tier == CQ_TIER_CQ4P) c.mask[0] = c.mask[D - 1] = 1;
    cq_engine *e;
    cq_err err;
    if (cq_engine_create(&c, &e, &err) != CQ_OK) {
        CHECK(0, "create: %s", err.msg);
        return;
    }
    cq_engine_drv_init(e, &err);
    cq_rng r;
    cq_rng_seed(&r, seed);
    long bad_occ = 0, bad_beat = 0, bad_irq = 0, lost3 = 0, beats = 0;
    uint32_t obeat = 0;
    for (uint32_t i = 0; i < cycles; i++) {
        if (cq_rng_below(&r, 64) == 0) {
            uint32_t off = offs[cq_rng_below(&r, sizeof offs / 4)];
            uint32_t v = (uint32_t)cq_rng_u64(&r);
            if (off == 0x00) v = 0x2u | (v & 0x1Du & (cq_rng_below(&r, 8) ? 0x1Cu : 0x1Fu));
            if (off == 0x28 || off == 0x2C) v %= depth + 8;
            if (off == 0x50) v &= 0xFF;
            cq_engine_reg_write(e, off, v);
        }
        cq_engine_in in;
        in.s_tvalid = cq_rng_below(&r, 4) != 0;
        in.s_tdata = (uint16_t)cq_rng_u64(&r);
        if (cq_rng_below(&r, 2)) in.s_tdata &= 0xBFFF; /* mostly finite, small */
        in.s_tuser = (int)cq_rng_below(&r, 2);
        in.s_tlast = cq_rng_below(&r, 16) == 0;
        in.m_tready = cq_rng_below(&r, 3) != 0;
        cq_engine_out o;
        cq_engine_state before = cq_engine_get_state(e);
        cq_engine_step(e, &in, &o);
        if (o.m_tvalid) {
            if (before != CQ_ES_OUTPUT) bad_beat++;
            if (o.m_fire) {
                beats++;
                if (o.m_tlast != (obeat == D - 1)) bad_beat++;
                obeat = o.m_tlast ? 0 : obeat + 1;
            }
            if (rev == CQ_ENGINE_V03 && o.m_lost) lost3++;
        }
        if (before != CQ_ES_OUTPUT && cq_engine_get_state(e) != CQ_ES_OUTPUT) obeat = 0;
        if ((i & 1023) == 0) {
            uint32_t occ = cq_engine_reg_read(e, CQ_ENG_OCCUPANCY), valid_rows = 0;
            uint64_t row[160];
            for (uint32_t a = 0; a < depth; a++) {
                int v = 0;
                cq_engine_record_bits(e, a, row, 160, &v);
                valid_rows += (uint32_t)v;
            }
            if (occ > depth || occ != valid_rows) bad_occ++;
            uint32_t irq = cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS);
            if (rev == CQ_ENGINE_V02 ? irq != 0 : (irq & ~0x1Fu) != 0) bad_irq++;
        }
    }
    CHECK(bad_occ == 0, "v0.%d D=%u: occupancy invariant broken %ld times", rev, D, bad_occ);
    CHECK(bad_beat == 0, "v0.%d D=%u: %ld bad read beats", rev, D, bad_beat);
    CHECK(bad_irq == 0, "v0.%d: IRQ_STATUS bits", rev);
    CHECK(lost3 == 0, "v0.3 lost %ld beats", lost3);
    CHECK(beats > 0 || rev == CQ_ENGINE_V02, "v0.%d D=%u: the fuzz never read a beat", rev, D);
    uint64_t sc[CQ_ES_COUNT_];
    cq_engine_state_cycles(e, sc);
    printf("  v0.%d %-5s D=%-2u: %ld beats read, occupancy %u, cycles in KEMIT %llu, RWAIT %llu\n",
           rev, cq_tier_tag(tier), D, beats, cq_engine_reg_read(e, CQ_ENG_OCCUPANCY),
           (unsigned long long)sc[CQ_ES_KEMIT], (unsigned long long)sc[CQ_ES_RWAIT]);
    cq_engine_free(e);
}

int main(void) {
    for (int rev = 2; rev <= 3; rev++) {
        fuzz((cq_engine_rev)rev, CQ_TIER_CQ4, 8, 4, 32, 1, 1, 200000);
        fuzz((cq_engine_rev)rev, CQ_TIER_CQ4P, 6, 3, 20, 2, 2, 200000);
        fuzz((cq_engine_rev)rev, CQ_TIER_CQ8, 4, 1, 16, 4, 3, 100000);
        fuzz((cq_engine_rev)rev, CQ_TIER_CQ4P, 16, 8, 64, 16, 4, 200000);
    }
    return cq_test_done("test_engine_fuzz");
}
