/* SPDX-License-Identifier: MIT */
/*
 * fuzz_engine.c - the KV Cache Engine model (cq_engine.h, both revisions)
 * driven by an arbitrary program of AXI-Lite reads/writes, stream beats and
 * clock steps decoded from the input. Header (8 bytes): revision, tier, D,
 * G, SRAM depth, lanes, outlier-mask seed, read-timeout; then 3-byte ops
 * (opcode, two argument bytes). At most 4096 cycles per input.
 * Invariants (checked after every op):
 *   - reads of unmapped offsets (and of the v0.3 registers in v0.2) give 0xDEADBEEF;
 *   - INFO registers echo the construction; INVALIDATE reads 0 (v0.3);
 *   - the FSM state is a valid state; CYCLE_COUNT and out.cycle count steps;
 *   - STATUS.SRAM_FULL == (OCCUPANCY >= depth), and in v0.3 STATUS.ERROR ==
 *     (IRQ_STATUS != 0), OCCUPANCY <= depth;
 *   - pins: a write beat fires only when offered and accepted; a read beat
 *     fires only when presented (v0.3: exactly when presented and taken, never
 *     lost); tlast only with tvalid; v0.2 never raises irq.
 */
#include <string.h>

#include "cq_engine.h"
#include "fuzz.h"

#define MAX_CYCLES 4096u

/* The register map of cq_engine.h, written out independently of engine_regs.c. */
static int mapped(uint32_t off, int v3) {
    if (off & 3u) return 0;
    if (off <= CQ_ENG_INFO_RESID_DEPTH) return 1;
    if (!v3) return 0;
    if (off >= CQ_ENG_GROUP_COUNT && off <= CQ_ENG_LAST_SCALE_SET) return 1;
    return off >= CQ_ENG_MASK_SHADOW && off < CQ_ENG_MASK_ACTIVE + 4u * CQ_ENG_MASK_WORDS;
}

static void check_regs(cq_engine *e, const cq_engine_config *c, int v3) {
    uint32_t st = cq_engine_reg_read(e, CQ_ENG_STATUS);
    uint32_t occ = cq_engine_reg_read(e, CQ_ENG_OCCUPANCY);
    uint32_t irq = cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS);
    if (cq_engine_reg_read(e, CQ_ENG_INFO_DIM) != c->dim ||
        cq_engine_reg_read(e, CQ_ENG_INFO_SRAM_DEPTH) != c->sram_depth ||
        cq_engine_reg_read(e, CQ_ENG_INFO_TIER) != (uint32_t)c->tier ||
        cq_engine_reg_read(e, CQ_ENG_INFO_VERSION) != (v3 ? CQ_ENG_VERSION_V03 : CQ_ENG_VERSION_V02))
        fuzz_fail("INFO registers changed");
    if (!!(st & CQ_ENG_ST_SRAM_FULL) != (occ >= c->sram_depth))
        fuzz_fail("STATUS.SRAM_FULL %u with occupancy %u of %u", st & CQ_ENG_ST_SRAM_FULL, occ,
                  c->sram_depth);
    if ((unsigned)cq_engine_get_state(e) >= CQ_ES_COUNT_) fuzz_fail("invalid FSM state");
    if (cq_engine_reg_read(e, CQ_ENG_CTRL) & (CQ_ENG_CTRL_SOFT_RESET | CQ_ENG_CTRL_FLUSH | CQ_ENG_CTRL_MASK_LOAD))
        fuzz_fail("a self-clearing CTRL bit reads back set");
    if (v3) {
        if (!!(st & CQ_ENG_ST_ERROR) != (irq != 0)) fuzz_fail("STATUS.ERROR vs IRQ_STATUS %#x", irq);
        if (occ > c->sram_depth) fuzz_fail("occupancy %u above depth %u", occ, c->sram_depth);
        if (cq_engine_reg_read(e, CQ_ENG_INVALIDATE) != 0) fuzz_fail("INVALIDATE reads non-zero");
        if (cq_engine_reg_read(e, CQ_ENG_CYCLE_COUNT) != (uint32_t)cq_engine_cycles(e))
            fuzz_fail("CYCLE_COUNT differs from the cycle counter");
        if (cq_engine_reg_read(e, CQ_ENG_GROUP_COUNT) != 0) {
            if (!(st & CQ_ENG_ST_GROUP_OPEN)) fuzz_fail("GROUP_COUNT without STATUS.GROUP_OPEN");
        } else if (st & CQ_ENG_ST_GROUP_OPEN) {
            fuzz_fail("STATUS.GROUP_OPEN with an empty group");
        }
    } else if (irq != 0) {
        fuzz_fail("v0.2 IRQ_STATUS %#x (nothing sets it)", irq);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    cq_engine_config c;
    cq_engine_config_default(&c);
    int v3 = data[0] & 1;
    c.rev = v3 ? CQ_ENGINE_V03 : CQ_ENGINE_V02;
    c.tier = (cq_tier)(data[1] % 3u);
    c.dim = 2u * (1u + data[2] % 32u);       /* 2..64: small, so records fill in few beats */
    c.group = 1u + data[3] % 8u;
    c.sram_depth = 1u + data[4] % 16u;
    c.lanes = 1u + data[5] % c.dim;
    memset(c.mask, 0, sizeof c.mask);
    if (c.tier == CQ_TIER_CQ4P) {
        c.mask[data[6] % c.dim] = 1;
        if (c.dim > 4) c.mask[(data[6] / 3u + 1u) % c.dim] = 1;
    }
    cq_engine *e = (cq_engine *)(uintptr_t)1;
    cq_err err;
    cq_status s = cq_engine_create(&c, &e, &err);
    if (s != CQ_OK) {
        /* a mask of 2 set channels out of D > 4 is always legal; D <= 4 gives 1 */
        fuzz_fail("create refused a legal config: %s", err.msg);
    }
    if (v3) cq_engine_reg_write(e, CQ_ENG_READ_TIMEOUT, 8u + data[7]);
    uint64_t steps = 0;
    check_regs(e, &c, v3);
    for (size_t i = 8; i + 3 <= size && steps < MAX_CYCLES; i += 3) {
        uint8_t op = data[i], a = data[i + 1], b = data[i + 2];
        switch (op & 7u) {
        case 0: { /* register write: offset a*4 (low bits of op make it unaligned sometimes) */
            uint32_t off = (uint32_t)a * 4u + ((op >> 3) == 31 ? 1u : 0u);
            uint32_t val = (uint32_t)b | ((uint32_t)(op >> 3) << 8);
            if (off == CQ_ENG_CTRL && (op & 0x80)) val |= CQ_ENG_CTRL_ENABLE;
            cq_engine_reg_write(e, off, val);
            break;
        }
        case 1: { /* register read of any offset */
            uint32_t off = (uint32_t)a | ((uint32_t)b << 8);
            uint32_t v = cq_engine_reg_read(e, off);
            if (!mapped(off, v3) && v != CQ_ENG_UNMAPPED)
                fuzz_fail("unmapped offset %#x read %#x", off, v);
            break;
        }
        case 2: /* stream a whole token (D beats), clocking until each is taken or a bound */
        case 3: {
            int is_val = op & 8;
            for (uint32_t d = 0; d < c.dim && steps < MAX_CYCLES; d++) {
                cq_engine_in in = {1, (uint16_t)(a * 257u + d * (b | 1u)), is_val != 0,
                                   d + 1 == c.dim, 1};
                cq_engine_out out;
                for (int tries = 0; tries < 64 && steps < MAX_CYCLES; tries++) {
                    cq_engine_step(e, &in, &out);
                    steps++;
                    if (out.s_fire) break;
                }
            }
            break;
        }
        default: { /* clock a+1 cycles with one fixed pin pattern from b */
            cq_engine_in in = {b & 1, (uint16_t)(a | (b << 8)), (b >> 1) & 1, (b >> 2) & 1, (b >> 3) & 1};
            for (uint32_t k = 0; k <= a % 64u && steps < MAX_CYCLES; k++) {
                uint64_t before = cq_engine_cycles(e);
                cq_engine_out out;
                cq_engine_step(e, (op & 8) ? NULL : &in, &out);
                steps++;
                const cq_engine_in *pin = (op & 8) ? NULL : &in;
                int offered = pin ? pin->s_tvalid : 0, ready = pin ? pin->m_tready : 1;
                if (out.cycle != before || cq_engine_cycles(e) != before + 1)
                    fuzz_fail("cycle counter: out %llu, before %llu", (unsigned long long)out.cycle,
                              (unsigned long long)before);
                if (out.s_fire && (!offered || !out.s_tready)) fuzz_fail("write beat fired unoffered");
                if (out.m_fire && !out.m_tvalid) fuzz_fail("read beat fired without tvalid");
                if (out.m_tlast && !out.m_tvalid) fuzz_fail("tlast without tvalid");
                if (v3 && (out.m_lost || out.m_fire != (out.m_tvalid && ready)))
                    fuzz_fail("v0.3 read handshake: valid %d ready %d fire %d lost %d", out.m_tvalid,
                              ready, out.m_fire, out.m_lost);
                if (!v3 && out.irq) fuzz_fail("v0.2 raised irq");
            }
            break;
        }
        }
        check_regs(e, &c, v3);
    }
    cq_engine_free(e);
    return 0;
}
