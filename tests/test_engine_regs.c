/* SPDX-License-Identifier: MIT */
/*
 * test_engine_regs.c - the KVCE register map (ENGINE.md section 2 and the v0.3
 * additions of docs/ENGINE_V03.md) in both revisions: every offset 0x000..0x1FC
 * and some unaligned ones, reset values, read-only writes ignored, RW widths,
 * self-clearing CTRL bits, W1C on IRQ_STATUS, unmapped reads 0xDEADBEEF and
 * unmapped writes without effect, INFO_CR from an independent formula.
 */
#include <math.h>
#include <string.h>

#include "channelquant.h"
#include "cq_engine.h"
#include "cq_test.h"

static cq_engine *make(cq_engine_rev rev, cq_tier tier, uint32_t D, uint32_t G) {
    cq_engine_config c;
    cq_engine_config_default(&c);
    c.rev = rev;
    c.tier = tier;
    c.dim = D;
    c.group = G;
    c.sram_depth = 256;
    if (tier == CQ_TIER_CQ4P) c.mask[1] = c.mask[D - 2] = 1;
    cq_engine *e = NULL;
    cq_err err;
    cq_status st = cq_engine_create(&c, &e, &err);
    CHECK(st == CQ_OK, "create: %s", err.msg);
    return e;
}

static const uint32_t v02_offs[] = {0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x20,
                                    0x24, 0x28, 0x2C, 0x30, 0x34, 0x38, 0x3C, 0x40, 0x44};

static int is_v02(uint32_t off) {
    for (size_t i = 0; i < sizeof v02_offs / 4; i++)
        if (v02_offs[i] == off) return 1;
    return 0;
}
static int is_v03_extra(uint32_t off) {
    if (off >= 0x48 && off <= 0x6C && (off & 3) == 0) return 1;
    if (off >= 0x80 && off <= 0xFC && (off & 3) == 0) return 1;
    return 0;
}

static uint32_t cr_expected(cq_tier t, uint32_t D, uint32_t G, int key) {
    double bpv = t == CQ_TIER_CQ8 ? 8.0 : 4.0;
    double den = key && t != CQ_TIER_CQ8 ? D * 4.0 + 16.0 * D / G : D * bpv + 16.0;
    return (uint32_t)floor(D * 16.0 * 256.0 / den + 1e-9);
}

static void test_map(cq_engine_rev rev, cq_tier tier, uint32_t D, uint32_t G) {
    cq_engine *e = make(rev, tier, D, G);
    if (!e) return;
    int v3 = rev == CQ_ENGINE_V03;
    uint32_t k = tier == CQ_TIER_CQ4P ? 2 : 0;
    /* reset values of the v0.2 map */
    struct { uint32_t off, val; } rv[] = {
        {0x00, 0}, {0x04, 1}, {0x08, D}, {0x0C, (uint32_t)tier}, {0x10, G}, {0x14, 256},
        {0x18, cr_expected(tier, D, G, 1)}, {0x1C, cr_expected(tier, D, G, 0)},
        {0x20, v3 ? 0x00030000u : 0x00020000u}, {0x24, 0}, {0x28, 0}, {0x2C, 0}, {0x30, 0},
        {0x34, 0}, {0x38, 0}, {0x3C, k}, {0x40, D}, {0x44, G}};
    for (size_t i = 0; i < sizeof rv / sizeof rv[0]; i++)
        CHECK(cq_engine_reg_read(e, rv[i].off) == rv[i].val, "v0.%d reset %02x = %08x want %08x",
              rev, rv[i].off, cq_engine_reg_read(e, rv[i].off), rv[i].val);
    /* every offset: mapped or 0xDEADBEEF */
    int bad = 0;
    for (uint32_t off = 0; off < 0x200; off++) {
        uint32_t v = cq_engine_reg_read(e, off);
        int mapped = (off & 3) == 0 && (is_v02(off) || (v3 && is_v03_extra(off)));
        if (!mapped && v != 0xDEADBEEFu) bad++;
        if (mapped && v == 0xDEADBEEFu) bad++;
    }
    CHECK(bad == 0, "v0.%d: %d offsets mapped wrongly", rev, bad);
    CHECK(cq_engine_reg_read(e, 0xFFFFFFFCu) == 0xDEADBEEFu, "far offset");
    if (v3) {
        uint32_t r3[][2] = {{0x48, 0}, {0x4C, 0}, {0x50, 64}, {0x54, 0}, {0x5C, 0}, {0x60, 1},
                            {0x68, 0}, {0x6C, 0}};
        for (size_t i = 0; i < sizeof r3 / sizeof r3[0]; i++)
            CHECK(cq_engine_reg_read(e, r3[i][0]) == r3[i][1], "v0.3 reset %02x = %08x", r3[i][0],
                  cq_engine_reg_read(e, r3[i][0]));
        cq_engine_info info;
        cq_engine_get_info(e, &info);
        CHECK(cq_engine_reg_read(e, 0x64) == info.record_bits, "INFO_RECORD_BITS");
        CHECK(cq_engine_reg_read(e, 0x58) == info.scale_sets, "INFO_SCALE_SETS");
        uint32_t m0 = cq_engine_reg_read(e, 0x80), a0 = cq_engine_reg_read(e, 0xC0);
        uint32_t want = tier == CQ_TIER_CQ4P ? (1u << 1) | (D - 2 < 32 ? 1u << (D - 2) : 0u) : 0u;
        CHECK(m0 == want && a0 == want, "mask regs reset to the build-time mask: %08x %08x", m0,
              a0);
    }
    /* read-only registers ignore writes */
    uint32_t ro[] = {0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x3C, 0x40, 0x44};
    for (size_t i = 0; i < sizeof ro / 4; i++) {
        uint32_t before = cq_engine_reg_read(e, ro[i]);
        cq_engine_reg_write(e, ro[i], ~before);
        CHECK(cq_engine_reg_read(e, ro[i]) == before, "v0.%d RO %02x changed", rev, ro[i]);
    }
    if (v3) {
        uint32_t ro3[] = {0x48, 0x4C, 0x54, 0x58, 0x60, 0x64, 0x6C, 0xC0, 0xFC};
        for (size_t i = 0; i < sizeof ro3 / 4; i++) {
            uint32_t before = cq_engine_reg_read(e, ro3[i]);
            cq_engine_reg_write(e, ro3[i], ~before);
            CHECK(cq_engine_reg_read(e, ro3[i]) == before, "v0.3 RO %02x changed", ro3[i]);
        }
    }
    /* unmapped writes ignored and harmless */
    cq_engine_reg_write(e, 0x100, 0x12345678u);
    cq_engine_reg_write(e, 0x29, 0x55u);
    CHECK(cq_engine_reg_read(e, 0x100) == 0xDEADBEEFu, "unmapped after write");
    CHECK(cq_engine_reg_read(e, 0x28) == 0, "unaligned write reached WRITE_ADDR");
    if (!v3) {
        cq_engine_reg_write(e, 0x50, 7);
        CHECK(cq_engine_reg_read(e, 0x50) == 0xDEADBEEFu, "v0.2 has no READ_TIMEOUT");
    }
    /* RW widths */
    /* v0.3: 16 bits; v0.2: clog2(SRAM_DEPTH) = 8 bits (depth 256), so it reads back truncated */
    cq_engine_reg_write(e, 0x28, 0xFFFFFFFFu);
    CHECK(cq_engine_reg_read(e, 0x28) == (v3 ? 0xFFFFu : 0xFFu), "WRITE_ADDR width");
    cq_engine_reg_write(e, 0x2C, 0x1FFu);
    CHECK(cq_engine_reg_read(e, 0x2C) == (v3 ? 0x1FFu : 0xFFu), "READ_ADDR width");
    cq_engine_reg_write(e, 0x00, 0x3); /* end the read that write launched */
    cq_engine_reg_write(e, 0x30, 0xFFFFFFFFu);
    CHECK(cq_engine_reg_read(e, 0x30) == (v3 ? 3u : 1u), "KV_SELECT width");
    cq_engine_reg_write(e, 0x34, 0xFFFFFFFFu);
    CHECK(cq_engine_reg_read(e, 0x34) == (v3 ? 0x1Fu : 0xFu), "IRQ_MASK width");
    /* CTRL: reset pulse self-clears, enable sticks */
    cq_engine_reg_write(e, 0x00, 0x3);
    CHECK(cq_engine_reg_read(e, 0x00) == 0x2, "CTRL after 0x3 reads %08x",
          cq_engine_reg_read(e, 0x00));
    cq_engine_reg_write(e, 0x00, 0xFFFFFFFFu & ~0x8u); /* all but MASK_LOAD */
    CHECK(cq_engine_reg_read(e, 0x00) == (v3 ? 0x12u : 0x2u), "CTRL bits: %08x",
          cq_engine_reg_read(e, 0x00));
    cq_engine_reg_write(e, 0x00, 0);
    CHECK(cq_engine_reg_read(e, 0x00) == 0, "CTRL cleared");
    /* READ_ADDR launches a read: while pending STATUS.idle is 0; soft reset drops it */
    cq_engine_reg_write(e, 0x2C, 0x7);
    CHECK(cq_engine_reg_read(e, 0x2C) == 0x7, "READ_ADDR readback");
    CHECK((cq_engine_reg_read(e, 0x04) & 1u) == 0, "a pending read is not idle");
    cq_engine_reg_write(e, 0x00, 0x1);
    CHECK((cq_engine_reg_read(e, 0x04) & 1u) == 1, "soft reset drops the pending read");
    CHECK(cq_engine_reg_read(e, 0x2C) == 0x7, "soft reset keeps registers");
    /* W1C: v0.2 has no source; writes of 1 leave 0 */
    cq_engine_reg_write(e, 0x38, 0xFFFFFFFFu);
    CHECK(cq_engine_reg_read(e, 0x38) == 0, "IRQ_STATUS");
    if (v3) {
        /* raise RD_ERR (unwritten record) and MASK_ERR (bad popcount), then clear one by one */
        cq_engine_reg_write(e, 0x00, 0x2);
        cq_engine_reg_write(e, 0x50, 5);
        cq_engine_reg_write(e, 0x34, 0x1F);
        cq_engine_reg_write(e, 0x2C, 3);
        for (int i = 0; i < 20; i++) cq_engine_step(e, NULL, NULL);
        for (uint32_t w = 0; w < 16; w++) cq_engine_reg_write(e, 0x80 + 4 * w, 0);
        cq_engine_reg_write(e, 0x80, 0x1u); /* one bit set: k is 0 or 2, never 1 */
        cq_engine_reg_write(e, 0x00, 0x2 | 0x8);
        CHECK(cq_engine_reg_read(e, 0x38) == 0x9u, "IRQ_STATUS = %08x",
              cq_engine_reg_read(e, 0x38));
        CHECK(cq_engine_reg_read(e, 0x04) & 0x30u, "STATUS error + irq");
        cq_engine_reg_write(e, 0x38, 0x0);
        CHECK(cq_engine_reg_read(e, 0x38) == 0x9u, "W1C: writing 0 clears nothing");
        cq_engine_reg_write(e, 0x38, 0x8);
        CHECK(cq_engine_reg_read(e, 0x38) == 0x1u, "W1C: clears only bit 3");
        cq_engine_reg_write(e, 0x38, 0x1);
        CHECK(cq_engine_reg_read(e, 0x38) == 0x0u, "W1C: clears bit 0");
        CHECK((cq_engine_reg_read(e, 0x04) & 0x30u) == 0, "STATUS error clear");
        cq_engine_reg_write(e, 0x5C, 3);
        CHECK(cq_engine_reg_read(e, 0x5C) == 0, "INVALIDATE reads 0");
        cq_engine_reg_write(e, 0x50, 0xFFFFFFFFu);
        CHECK(cq_engine_reg_read(e, 0x50) == 0xFFFFFFFFu, "READ_TIMEOUT is 32 bits");
        uint32_t c0 = cq_engine_reg_read(e, 0x68);
        cq_engine_step(e, NULL, NULL);
        CHECK(cq_engine_reg_read(e, 0x68) == c0 + 1, "CYCLE_COUNT counts");
    }
    /* hard reset restores every reset value */
    cq_engine_hard_reset(e);
    for (size_t i = 0; i < sizeof rv / sizeof rv[0]; i++)
        CHECK(cq_engine_reg_read(e, rv[i].off) == rv[i].val, "after hard reset %02x", rv[i].off);
    cq_engine_free(e);
}

static void test_create_errors(void) {
    cq_engine_config c;
    cq_engine *e = (cq_engine *)1;
    cq_err err;
    cq_engine_config_default(&c);
    c.dim = 63;
    CHECK(cq_engine_create(&c, &e, &err) == CQ_ERR_DIM && e == NULL, "odd D");
    cq_engine_config_default(&c);
    c.mask[3] = 1;
    CHECK(cq_engine_create(&c, &e, &err) == CQ_ERR_OUTLIERS, "CQ-4 with a mask");
    cq_engine_config_default(&c);
    c.lanes = 65;
    CHECK(cq_engine_create(&c, &e, &err) == CQ_ERR_ARG, "lanes > D");
    cq_engine_config_default(&c);
    c.sram_depth = 0;
    CHECK(cq_engine_create(&c, &e, &err) == CQ_ERR_ARG, "depth 0");
    CHECK(cq_engine_create(NULL, &e, &err) == CQ_ERR_NULL, "NULL config");
    cq_engine_free(NULL);
    CHECK(cq_engine_reg_read(NULL, 0) == 0xDEADBEEFu, "NULL engine read");
}

int main(void) {
    for (int rev = 2; rev <= 3; rev++) {
        test_map((cq_engine_rev)rev, CQ_TIER_CQ4, 64, 128);
        test_map((cq_engine_rev)rev, CQ_TIER_CQ4P, 64, 128);
        test_map((cq_engine_rev)rev, CQ_TIER_CQ8, 64, 128);
        test_map((cq_engine_rev)rev, CQ_TIER_CQ4, 128, 128);
        test_map((cq_engine_rev)rev, CQ_TIER_CQ4P, 96, 48);
    }
    /* the ISA document's examples */
    cq_engine *e = make(CQ_ENGINE_V02, CQ_TIER_CQ4, 64, 128);
    CHECK(cq_engine_reg_read(e, 0x1C) == 963 && cq_engine_reg_read(e, 0x18) == 992, "CR D=64");
    cq_engine_free(e);
    e = make(CQ_ENGINE_V02, CQ_TIER_CQ8, 64, 128);
    CHECK(cq_engine_reg_read(e, 0x1C) == 496 && cq_engine_reg_read(e, 0x18) == 496, "CR CQ-8");
    cq_engine_free(e);
    test_create_errors();
    return cq_test_done("test_engine_regs");
}
