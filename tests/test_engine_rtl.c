/* SPDX-License-Identifier: MIT */
/*
 * test_engine_rtl.c - the behaviours measured on the published KVCE RTL that
 * are not timing (docs/ENGINE_V03.md section 7.1; the spans are
 * test_engine_spans.c), and its defects R1-R3, R5:
 *   - item 3: soft reset inside a key group or its flush: the group's amax
 *     restarts at its first token (both revisions);
 *   - item 4: v0.2 ends a token at an early tlast, shift-filled into the top
 *     lanes (v0.3: FRAME);
 *   - item 6: v0.2 address registers are clog2(depth) bits: aliasing, and the
 *     drop / wait of addresses between depth and 2^bits;
 *   - item 7: INFO_CR_K with the integer (16 D) / G; item 8: CQ-8 rows untagged;
 *   - R1 tready during a read, R2 soft reset leaves the paths running, R3 (item
 *     5) WRITE_ADDR sampled in STORE, R5 soft reset lost in RLOAD / KFEED.
 * Each Rn test returns 1 for the fixed behaviour and is required to pass on
 * v0.3 and to fail on v0.2, where the defect's visible effect is also checked.
 */
#include <string.h>

#include "channelquant.h"
#include "cq_engine.h"
#include "cq_test.h"
#include "util/engine_stim.h"

#define D 8u
#define G 8u
#define DEPTH 64u

static int same(const uint32_t *a, const uint32_t *b) { return memcmp(a, b, D * 4u) == 0; }

static int valid(cq_engine *e, uint32_t addr) {
    uint64_t row[4];
    int v = 0;
    cq_engine_record_bits(e, addr, row, 4, &v);
    return v;
}

static void clock(cq_engine *e, int n) {
    for (int i = 0; i < n; i++) cq_engine_step(e, NULL, NULL);
}

static void soft_reset(cq_engine *e) {
    cq_engine_reg_write(e, CQ_ENG_CTRL, CQ_ENG_CTRL_SOFT_RESET | CQ_ENG_CTRL_ENABLE);
}

/* Item 3: big tokens abandoned by a soft reset (mid-group, or mid-flush when
 * in_flush) never reach the scales of the next group. Both revisions. */
static int amax_restart(cq_engine_rev rev, int in_flush) {
    cq_engine *e = es_make(rev, CQ_TIER_CQ4, D, G, DEPTH, NULL);
    uint16_t big[D], K[G * D];
    uint32_t ref[G * D], beats[D];
    for (uint32_t c = 0; c < D; c++) big[c] = 0x5A00; /* 192.0 */
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 0);
    uint32_t n = in_flush ? G : 2;
    for (uint32_t t = 0; t < n; t++) es_push(e, big, D, 0, D - 1);
    if (in_flush) { /* es_push of the G-th returned after the flush: redo it, stop in KEMIT */
        soft_reset(e);
        for (uint32_t t = 0; t + 1 < G; t++) es_push(e, big, D, 0, D - 1);
        es_beats(e, big, D, 0);
        for (int i = 0; i < 100000 && cq_engine_get_state(e) != CQ_ES_KEMIT; i++) clock(e, 1);
        CHECK(cq_engine_get_state(e) == CQ_ES_KEMIT, "item 3 setup: in KEMIT");
    }
    soft_reset(e);
    for (uint32_t t = 0; t < G; t++) es_token(t, D, K + t * D);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 0);
    for (uint32_t t = 0; t < G; t++) es_push(e, K + t * D, D, 0, D - 1);
    es_key_ref(CQ_TIER_CQ4, NULL, K, G, D, G, ref, NULL);
    int ok = 1;
    for (uint32_t t = 0; t < G && ok; t++)
        ok = es_read(e, t, beats, D, D + 8, ~0u) == D && same(beats, ref + t * D);
    cq_engine_free(e);
    return ok;
}

/* Item 4: a short token (3 beats, tlast on the third) between two full ones. */
static void early_tlast(void) {
    for (int rev = 2; rev <= 3; rev++) {
        cq_engine *e = es_make((cq_engine_rev)rev, CQ_TIER_CQ4, D, G, DEPTH, NULL);
        uint16_t p[D], x[D], y[D], filled[D];
        uint32_t beats[D], want[D];
        es_token(1, D, p);
        es_token(2, D, x);
        es_token(3, D, y);
        cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 1);
        es_push(e, p, D, 1, D - 1);
        cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 2);
        es_push(e, x, 3, 1, 2);
        cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 3);
        es_push(e, y, D, 1, D - 1);
        es_value_ref(y, D, 4, want);
        CHECK(es_read(e, 3, beats, D, D + 8, ~0u) == D && same(beats, want),
              "v0.%d: the token after a short one is intact", rev);
        if (rev == 2) { /* lanes 0..D-4: the previous token shifted down; top 3 lanes: x */
            for (uint32_t c = 0; c < D - 3; c++) filled[c] = p[c + 3];
            for (uint32_t c = 0; c < 3; c++) filled[D - 3 + c] = x[c];
            es_value_ref(filled, D, 4, want);
            CHECK(es_read(e, 2, beats, D, D + 8, ~0u) == D && same(beats, want),
                  "v0.2: the short token is stored shift-filled");
        } else {
            CHECK(!valid(e, 2) && (cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS) & CQ_ENG_IRQ_FRAME),
                  "v0.3: the short token is a FRAME error, not stored");
        }
        cq_engine_free(e);
    }
}

/* Item 6: a 48-record SRAM has 6-bit address registers in v0.2. */
static void address_alias(void) {
    cq_engine *e = es_make(CQ_ENGINE_V02, CQ_TIER_CQ4, D, G, 48, NULL);
    uint16_t x[D], y[D];
    uint32_t beats[D], want[D];
    es_token(4, D, x);
    es_token(5, D, y);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 64 + 5);
    CHECK(cq_engine_reg_read(e, CQ_ENG_WRITE_ADDR) == 5, "v0.2 WRITE_ADDR reads back truncated");
    es_push(e, x, D, 1, D - 1);
    CHECK(valid(e, 5), "v0.2: record 69 aliases onto 5");
    es_value_ref(x, D, 4, want);
    CHECK(es_read(e, 128 + 5, beats, D, D + 8, ~0u) == D && same(beats, want),
          "v0.2: a read of 133 aliases onto 5");
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 50); /* < 64 but >= 48: dropped silently */
    es_push(e, y, D, 1, D - 1);
    CHECK(cq_engine_reg_read(e, CQ_ENG_OCCUPANCY) == 1 && cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS) == 0,
          "v0.2: record 50 of 48 dropped silently");
    CHECK(es_read(e, 50, beats, D, 5000, ~0u) == 0 && cq_engine_get_state(e) == CQ_ES_RWAIT,
          "v0.2: a read of 50 waits");
    cq_engine_free(e);
    /* a power-of-two depth never waits or drops: every address aliases into range */
    e = es_make(CQ_ENGINE_V02, CQ_TIER_CQ4, D, G, DEPTH, NULL);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, DEPTH + 9);
    es_push(e, y, D, 1, D - 1);
    CHECK(valid(e, 9), "v0.2 depth 64: record 73 stored at 9");
    cq_engine_free(e);
}

/* Items 7 and 8: INFO_CR_K and the CQ-8 row width. */
static void info_and_rows(void) {
    cq_engine *e2 = es_make(CQ_ENGINE_V02, CQ_TIER_CQ4, 8, 3, DEPTH, NULL);
    cq_engine *e3 = es_make(CQ_ENGINE_V03, CQ_TIER_CQ4, 8, 3, DEPTH, NULL);
    /* 8*16*256 / (8*4 + (16*8)/3) = 32768 / 74; exact: 32768*3 / (96 + 128) */
    CHECK(cq_engine_reg_read(e2, CQ_ENG_INFO_CR_K) == 442, "v0.2 CR_K (D=8, G=3) %u",
          cq_engine_reg_read(e2, CQ_ENG_INFO_CR_K));
    CHECK(cq_engine_reg_read(e3, CQ_ENG_INFO_CR_K) == 438, "v0.3 CR_K (D=8, G=3) %u",
          cq_engine_reg_read(e3, CQ_ENG_INFO_CR_K));
    cq_engine_free(e2);
    cq_engine_free(e3);
    const uint32_t dims[2] = {64, 128}, v02[2] = {528, 1040}, v03[2] = {529, 1041};
    for (int i = 0; i < 2; i++)
        for (int rev = 2; rev <= 3; rev++) {
            cq_engine *e = es_make((cq_engine_rev)rev, CQ_TIER_CQ8, dims[i], 1, DEPTH, NULL);
            cq_engine_info info;
            cq_engine_get_info(e, &info);
            uint32_t want = rev == 2 ? v02[i] : v03[i];
            CHECK(info.record_bits == want, "v0.%d CQ-8 D=%u: %u-bit rows, want %u", rev,
                  dims[i], info.record_bits, want);
            cq_engine_free(e);
        }
}

/* R1: a master that watches tready streams a token while a read is served. */
static int r1(cq_engine_rev rev) {
    cq_engine *e = es_make(rev, CQ_TIER_CQ4, D, G, DEPTH, NULL);
    uint16_t x[D], y[D];
    uint32_t beats[D], want[D], wy[D];
    es_token(6, D, x);
    es_token(7, D, y);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 2);
    es_push(e, x, D, 1, D - 1);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 4);
    cq_engine_reg_write(e, CQ_ENG_READ_ADDR, 2);
    uint32_t b = 0, got = 0, dropped = 0;
    for (int i = 0; i < 5000 && (b < D || got < D); i++) {
        cq_engine_in in = {b < D, b < D ? y[b] : 0, 1, b == D - 1, 1};
        cq_engine_out o;
        cq_engine_step(e, &in, &o);
        if (o.s_fire) b++;
        dropped += (uint32_t)o.s_dropped;
        if (o.m_tvalid && o.m_fire && got < D) beats[got++] = o.m_tdata;
    }
    for (int i = 0; i < 5000 && !cq_engine_token_ready(e); i++) clock(e, 1);
    es_value_ref(x, D, 4, want);
    es_value_ref(y, D, 4, wy);
    int ok = got == D && same(beats, want);
    uint32_t yb[D];
    ok = ok && es_read(e, 4, yb, D, D + 8, ~0u) == D && same(yb, wy);
    if (rev == CQ_ENGINE_V02)
        CHECK(dropped == D && !valid(e, 4), "v0.2 R1: the %u beats taken during the read "
              "were dropped (%u), the token is lost", D, dropped);
    cq_engine_free(e);
    return ok;
}

/* R2 (value path): soft reset while a value token is compressed, then a new
 * token at a new address. */
static int r2_value(cq_engine_rev rev) {
    cq_engine *e = es_make(rev, CQ_TIER_CQ4, D, G, DEPTH, NULL);
    uint16_t x[D], y[D];
    uint32_t beats[D], wx[D], wy[D];
    es_token(8, D, x);
    es_token(9, D, y);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 1);
    es_beats(e, x, D, 1);
    clock(e, 10);
    CHECK(cq_engine_get_state(e) == CQ_ES_COMPRESS, "R2 setup: compressing");
    soft_reset(e);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 6);
    es_push(e, y, D, 1, D - 1);
    es_value_ref(x, D, 4, wx);
    es_value_ref(y, D, 4, wy);
    int ok = !valid(e, 1) && es_read(e, 6, beats, D, D + 8, ~0u) == D && same(beats, wy);
    if (rev == CQ_ENGINE_V02)
        CHECK(es_read(e, 6, beats, D, D + 8, ~0u) == D && same(beats, wx),
              "v0.2 R2: the aborted token's codes are stored at the new address");
    cq_engine_free(e);
    return ok;
}

/* R2 (key path): soft reset during a group flush, then a new group's first
 * token at a new base. */
static int r2_key(cq_engine_rev rev) {
    cq_engine *e = es_make(rev, CQ_TIER_CQ4, D, G, DEPTH, NULL);
    uint16_t K[G * D], z[D];
    uint32_t ref[G * D], beats[D];
    for (uint32_t t = 0; t < G; t++) es_token(t + 20, D, K + t * D);
    es_token(40, D, z);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 0);
    for (uint32_t t = 0; t + 1 < G; t++) es_push(e, K + t * D, D, 0, D - 1);
    es_beats(e, &K[(G - 1) * D], D, 0);
    for (int i = 0; i < 100000 && cq_engine_get_state(e) != CQ_ES_KEMIT; i++) clock(e, 1);
    CHECK(cq_engine_get_state(e) == CQ_ES_KEMIT, "R2 setup: flushing");
    soft_reset(e);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 32);
    es_push(e, z, D, 0, D - 1);
    int ok = cq_engine_reg_read(e, CQ_ENG_OCCUPANCY) == 0;
    if (rev == CQ_ENGINE_V02) {
        es_key_ref(CQ_TIER_CQ4, NULL, K, G, D, G, ref, NULL);
        soft_reset(e); /* leave KCOLLECT to read */
        int at_new = 1;
        for (uint32_t t = 0; t < G; t++)
            at_new &= es_read(e, 32 + t, beats, D, D + 8, ~0u) == D && same(beats, ref + t * D);
        CHECK(at_new && !valid(e, 0), "v0.2 R2: the old group's records are at the new base");
    }
    cq_engine_free(e);
    return ok;
}

/* R3 (item 5): WRITE_ADDR rewritten while a value token is compressed. Key
 * group bases are latched at the group's first token in both revisions. */
static int r3(cq_engine_rev rev) {
    cq_engine *e = es_make(rev, CQ_TIER_CQ4, D, G, DEPTH, NULL);
    uint16_t x[D], K[G * D];
    uint32_t beats[D], want[D];
    es_token(11, D, x);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 5);
    es_beats(e, x, D, 1);
    clock(e, 3);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 9);
    clock(e, 2000);
    es_value_ref(x, D, 4, want);
    int ok = valid(e, 5) && !valid(e, 9) && es_read(e, 5, beats, D, D + 8, ~0u) == D &&
             same(beats, want);
    if (rev == CQ_ENGINE_V02) CHECK(valid(e, 9) && !valid(e, 5), "v0.2 R3: retargeted to 9");
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 16);
    for (uint32_t t = 0; t < G; t++) {
        es_token(t, D, K + t * D);
        es_push(e, K + t * D, D, 0, D - 1);
        if (t == 0) cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 40);
    }
    CHECK(valid(e, 16) && valid(e, 16 + G - 1) && !valid(e, 40),
          "v0.%d: the key group base is latched at its first token", (int)rev);
    cq_engine_free(e);
    return ok;
}

/* R5 (RLOAD): a soft reset in the cycle after the read starts. */
static int r5_rload(cq_engine_rev rev) {
    cq_engine *e = es_make(rev, CQ_TIER_CQ4, D, G, DEPTH, NULL);
    uint16_t x[D];
    uint32_t beats[D];
    es_token(12, D, x);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 3);
    es_push(e, x, D, 1, D - 1);
    cq_engine_reg_write(e, CQ_ENG_READ_ADDR, 3);
    clock(e, 1);
    CHECK(cq_engine_get_state(e) == CQ_ES_RLOAD, "R5 setup: RLOAD");
    soft_reset(e);
    uint32_t got = 0;
    for (uint32_t i = 0; i < D + 20; i++) {
        cq_engine_out o;
        cq_engine_step(e, NULL, &o);
        if (o.m_tvalid && o.m_fire) got++;
    }
    (void)beats;
    if (rev == CQ_ENGINE_V02) CHECK(got == D, "v0.2 R5: the read went on (%u beats)", got);
    cq_engine_free(e);
    return got == 0;
}

/* R5 (KFEED): a soft reset at each cycle of KFEED; count the ones lost. */
static int r5_kfeed(cq_engine_rev rev) {
    int lost = 0, tried = 0;
    for (int k = 0; k < 64; k++) {
        cq_engine *e = es_make(rev, CQ_TIER_CQ4, D, G, DEPTH, NULL);
        uint16_t K[G * D];
        for (uint32_t t = 0; t < G; t++) es_token(t, D, K + t * D);
        cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 0);
        for (uint32_t t = 0; t + 1 < G; t++) es_push(e, K + t * D, D, 0, D - 1);
        es_beats(e, &K[(G - 1) * D], D, 0);
        for (int i = 0; i < 100 && cq_engine_get_state(e) != CQ_ES_KFEED; i++) clock(e, 1);
        clock(e, k);
        if (cq_engine_get_state(e) != CQ_ES_KFEED) {
            cq_engine_free(e);
            break;
        }
        tried++;
        soft_reset(e);
        clock(e, 20000);
        lost += cq_engine_reg_read(e, CQ_ENG_OCCUPANCY) != 0; /* the flush went on */
        cq_engine_free(e);
    }
    CHECK(tried >= (int)D, "R5: %d KFEED cycles tried", tried);
    if (rev == CQ_ENGINE_V02) CHECK(lost == 1, "v0.2 R5: %d of %d KFEED resets lost", lost, tried);
    return lost == 0;
}

int main(void) {
    for (int rev = 2; rev <= 3; rev++)
        for (int f = 0; f < 2; f++) {
            CHECK(amax_restart((cq_engine_rev)rev, f), "v0.%d item 3: amax restart (%s)", rev,
                  f ? "reset in the flush" : "reset mid-group");
        }
    printf("  item 3 soft reset in a group / its flush: the next group's scales are its own\n");
    early_tlast();
    printf("  item 4 early tlast: v0.2 shift-fills the short token, v0.3 FRAME\n");
    address_alias();
    printf("  item 6 v0.2 address registers alias modulo 2^clog2(depth)\n");
    info_and_rows();
    printf("  items 7, 8 INFO_CR_K integer, CQ-8 rows untagged (v0.2)\n");
    struct {
        const char *name;
        int (*fn)(cq_engine_rev);
    } defects[] = {{"R1 tready during a read", r1},
                   {"R2 soft reset mid-compress (value path)", r2_value},
                   {"R2 soft reset mid-flush (key path)", r2_key},
                   {"R3 WRITE_ADDR retargets a token in flight", r3},
                   {"R5 soft reset in RLOAD", r5_rload},
                   {"R5 soft reset in KFEED", r5_kfeed}};
    for (size_t i = 0; i < sizeof defects / sizeof defects[0]; i++) {
        int v3 = defects[i].fn(CQ_ENGINE_V03);
        int v2 = defects[i].fn(CQ_ENGINE_V02);
        CHECK(v3 == 1, "%s: not fixed in v0.3", defects[i].name);
        CHECK(v2 == 0, "%s: the v0.3 test passes on v0.2 (defect not reproduced)",
              defects[i].name);
        printf("  %-45s v0.2 %s, v0.3 %s\n", defects[i].name, v2 ? "fixed?!" : "shows it",
               v3 ? "fixed" : "NOT FIXED");
    }
    return cq_test_done("test_engine_rtl");
}
