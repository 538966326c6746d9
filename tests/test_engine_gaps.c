/* SPDX-License-Identifier: MIT */
/*
 * test_engine_gaps.c - the known gaps of the published block (ENGINE.md
 * section 7). Each gap_N(rev) runs the same scenario on a revision and returns
 * 1 when the behaviour is the fixed (v0.3) one: every such test is required to
 * pass on v0.3 AND to fail on v0.2, so the v0.2 model demonstrably has the gap
 * and v0.3 demonstrably removes it. Where a gap is "waits forever", the test
 * watches the wait (FSM state, STATUS.idle, no beat) for many cycles.
 * Small instances (D = 8, G = 8) keep the cycle counts low.
 */
#include <string.h>

#include "channelquant.h"
#include "cq_engine.h"
#include "cq_test.h"
#include "util/engine_stim.h"

#define D 8u
#define G 8u
#define DEPTH 64u

static cq_engine *make(cq_engine_rev rev, cq_tier tier, const uint8_t *mask) {
    return es_make(rev, tier, D, G, DEPTH, mask);
}

static void token(uint32_t t, uint16_t *x) { es_token(t, D, x); }

/* Stream one token, tlast on beat `tlast_at` (D-1 normally). */
static void push_raw(cq_engine *e, const uint16_t *x, int tuser, uint32_t tlast_at) {
    es_push(e, x, D, tuser, tlast_at);
}

static uint32_t read_raw(cq_engine *e, uint32_t addr, uint32_t *beats, uint32_t cycles,
                         uint32_t ready_pat) {
    return es_read(e, addr, beats, 64, cycles, ready_pat);
}

/* Codec-core reference of one key group (g tokens, K [g][D]) -> [g][D] fp32 bits. */
static void key_ref(cq_tier tier, const uint8_t *mask, const uint16_t *K, uint32_t g,
                    uint32_t *out, uint16_t *scales) {
    es_key_ref(tier, mask, K, g, D, G, out, scales);
}

static int same_beats(const uint32_t *a, const uint32_t *b, uint32_t n) {
    return memcmp(a, b, n * sizeof(uint32_t)) == 0;
}

/* Gap 1: a partial group is flushed by CTRL.FLUSH, and a value token streamed
 * while a group is open is stored as a value. */
static int gap1(cq_engine_rev rev) {
    cq_engine *e = make(rev, CQ_TIER_CQ4, NULL);
    uint16_t K[G * D], v[D];
    uint32_t ref[G * D], beats[64];
    for (uint32_t t = 0; t < 5; t++) token(t, K + t * D);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 10);
    for (uint32_t t = 0; t < 5; t++) push_raw(e, K + t * D, 0, D - 1);
    token(40, v);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 30);
    push_raw(e, v, 1, D - 1); /* a value token while the group is open */
    cq_engine_reg_write(e, CQ_ENG_CTRL, CQ_ENG_CTRL_ENABLE | CQ_ENG_CTRL_FLUSH);
    for (int i = 0; i < 20000; i++) cq_engine_step(e, NULL, NULL);
    key_ref(CQ_TIER_CQ4, NULL, K, 5, ref, NULL);
    int ok = cq_engine_reg_read(e, CQ_ENG_OCCUPANCY) == 6;
    for (uint32_t t = 0; t < 5 && ok; t++)
        ok = read_raw(e, 10 + t, beats, D + 8, ~0u) == D && same_beats(beats, ref + t * D, D);
    cq_engine_free(e);
    return ok;
}

/* Gap 2: a token of the in-flight group reads back as its exact fp16 values. */
static int gap2(cq_engine_rev rev) {
    cq_engine *e = make(rev, CQ_TIER_CQ4, NULL);
    uint16_t K[3 * D];
    uint32_t beats[64];
    for (uint32_t t = 0; t < 3; t++) token(t, K + t * D);
    K[D + 2] = 0x8000; /* -0.0 */
    K[D + 3] = 0x0001; /* smallest subnormal */
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 20);
    for (uint32_t t = 0; t < 3; t++) push_raw(e, K + t * D, 0, D - 1);
    uint32_t n = read_raw(e, 21, beats, 200, ~0u);
    int ok = n == D;
    for (uint32_t c = 0; c < D && ok; c++)
        ok = beats[c] == cq_f32_bits(cq_f16_to_f32(K[D + c]));
    if (rev == CQ_ENGINE_V02) /* the read was lost: the group keeps the FSM in KCOLLECT */
        CHECK(n == 0 && cq_engine_get_state(e) == CQ_ES_KCOLLECT, "v0.2 gap 2: %u beats, %s", n,
              cq_engine_state_name(cq_engine_get_state(e)));
    cq_engine_free(e);
    return ok;
}

/* Gap 3: a read of an unwritten / out-of-range record ends with RD_ERR. */
static int gap3(cq_engine_rev rev, uint32_t addr) {
    cq_engine *e = make(rev, CQ_TIER_CQ4, NULL);
    uint32_t beats[64];
    cq_engine_reg_write(e, CQ_ENG_IRQ_MASK, 0xF);
    uint32_t n = read_raw(e, addr, beats, 10000, ~0u);
    int ok = n == 0 && (cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS) & CQ_ENG_IRQ_RD_ERR) &&
             cq_engine_reg_read(e, CQ_ENG_ERR_ADDR) == addr &&
             (cq_engine_reg_read(e, CQ_ENG_STATUS) & (CQ_ENG_ST_IDLE | CQ_ENG_ST_IRQ)) ==
                 (CQ_ENG_ST_IDLE | CQ_ENG_ST_IRQ);
    if (rev == CQ_ENGINE_V02) {
        /* still waiting after 10000 cycles, visibly; a soft reset frees it */
        CHECK(cq_engine_get_state(e) == CQ_ES_RWAIT, "v0.2 gap 3: state %s",
              cq_engine_state_name(cq_engine_get_state(e)));
        CHECK((cq_engine_reg_read(e, CQ_ENG_STATUS) & CQ_ENG_ST_IDLE) == 0, "v0.2: not idle");
        /* R1: tready stays high while the read is served, and the beats are dropped */
        cq_engine_in in = {1, 0x3C00, 1, 0, 1};
        cq_engine_out o;
        cq_engine_step(e, &in, &o);
        CHECK(o.s_tready && o.s_fire && o.s_dropped, "v0.2 R1: beat taken and dropped in RWAIT");
        cq_engine_reg_write(e, CQ_ENG_CTRL, CQ_ENG_CTRL_SOFT_RESET | CQ_ENG_CTRL_ENABLE);
        CHECK(cq_engine_get_state(e) == CQ_ES_IDLE, "v0.2: soft reset ends the wait");
    }
    cq_engine_free(e);
    return ok;
}

/* Gap 4: a READ_ADDR write while the engine compresses is served afterwards. */
static int gap4(cq_engine_rev rev) {
    cq_engine *e = make(rev, CQ_TIER_CQ4, NULL);
    uint16_t x[D], y[D];
    uint32_t beats[64], want[64];
    token(1, x);
    token(2, y);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 5);
    push_raw(e, x, 1, D - 1);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 6);
    for (uint32_t b = 0; b < D; b++) { /* stream y, then ask for record 5 mid-compress */
        cq_engine_in in = {1, y[b], 1, b == D - 1, 1};
        cq_engine_step(e, &in, NULL);
    }
    for (int i = 0; i < 10; i++) cq_engine_step(e, NULL, NULL);
    CHECK(cq_engine_get_state(e) == CQ_ES_COMPRESS, "gap 4 setup: %s",
          cq_engine_state_name(cq_engine_get_state(e)));
    cq_engine_reg_write(e, CQ_ENG_READ_ADDR, 5);
    uint32_t got = 0;
    for (int i = 0; i < 2000; i++) {
        cq_engine_out o;
        cq_engine_step(e, NULL, &o);
        if (o.m_tvalid && o.m_fire && got < 64) beats[got++] = o.m_tdata;
    }
    uint8_t codes[D];
    uint16_t s;
    float f[D];
    cq_encode_token(x, D, 4, codes, &s, 0, NULL);
    cq_decode_token(codes, s, D, 4, f);
    for (uint32_t c = 0; c < D; c++) want[c] = cq_f32_bits(f[c]);
    int ok = got == D && same_beats(beats, want, D);
    cq_engine_free(e);
    return ok;
}

/* Gap 5a: a value record addressed past SRAM_DEPTH is reported (WR_RANGE). In
 * v0.2 the 6-bit WRITE_ADDR (depth 64) aliases it onto record 3, silently. */
static int gap5a(cq_engine_rev rev) {
    cq_engine *e = make(rev, CQ_TIER_CQ4, NULL);
    uint16_t x[D];
    token(3, x);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, DEPTH + 3);
    push_raw(e, x, 1, D - 1);
    uint32_t occ = cq_engine_reg_read(e, CQ_ENG_OCCUPANCY);
    if (rev == CQ_ENGINE_V02) {
        int v = 0;
        uint64_t row[4];
        cq_engine_record_bits(e, 3, row, 4, &v);
        CHECK(occ == 1 && v, "v0.2: the record aliases onto record 3");
    } else {
        CHECK(occ == 0, "out-of-range record not stored");
    }
    int ok = (cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS) & CQ_ENG_IRQ_WR_RANGE) &&
             cq_engine_reg_read(e, CQ_ENG_ERR_ADDR) == DEPTH + 3;
    cq_engine_free(e);
    return ok;
}

/* Gap 5b: a key group running past the end does not wrap onto record 0. */
static int gap5b(cq_engine_rev rev) {
    cq_engine *e = make(rev, CQ_TIER_CQ4, NULL);
    uint16_t K[G * D], x[D];
    uint64_t before[4], after[4];
    token(9, x);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 0);
    push_raw(e, x, 1, D - 1); /* a value record at 0 */
    cq_engine_record_bits(e, 0, before, 4, NULL);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, DEPTH - 2);
    for (uint32_t t = 0; t < G; t++) {
        token(t + 50, K + t * D);
        push_raw(e, K + t * D, 0, D - 1);
    }
    cq_engine_record_bits(e, 0, after, 4, NULL);
    int ok = memcmp(before, after, sizeof before) == 0 &&
             (cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS) & CQ_ENG_IRQ_WR_RANGE) &&
             cq_engine_reg_read(e, CQ_ENG_OCCUPANCY) == 3;
    if (rev == CQ_ENGINE_V02)
        CHECK(cq_engine_reg_read(e, CQ_ENG_OCCUPANCY) == 8, "v0.2 wraps: 2 + 6 wrapped records");
    cq_engine_free(e);
    return ok;
}

/* Gap 6a: the read port honours back-pressure (tready low half the time). */
static int gap6a(cq_engine_rev rev) {
    cq_engine *e = make(rev, CQ_TIER_CQ4, NULL);
    uint16_t x[D];
    uint32_t beats[64], want[64];
    token(4, x);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 2);
    push_raw(e, x, 1, D - 1);
    uint32_t n = read_raw(e, 2, beats, 200, 0x55555555u);
    read_raw(e, 2, want, D + 8, ~0u);
    int ok = n == D && same_beats(beats, want, D);
    if (rev == CQ_ENGINE_V02) CHECK(n == D / 2, "v0.2 loses the beats presented with tready low");
    cq_engine_free(e);
    return ok;
}

/* Gap 6b: an early tlast is a framing error; the next token is stored intact. */
static int gap6b(cq_engine_rev rev) {
    cq_engine *e = make(rev, CQ_TIER_CQ4, NULL);
    uint16_t x[D], y[D];
    uint32_t beats[64];
    token(5, x);
    token(6, y);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 7);
    for (uint32_t b = 0; b < 3; b++) { /* 3 beats, tlast on the third */
        cq_engine_in in = {1, x[b], 1, b == 2, 1};
        cq_engine_step(e, &in, NULL);
    }
    push_raw(e, y, 1, D - 1);
    for (int i = 0; i < 2000; i++) cq_engine_step(e, NULL, NULL);
    uint8_t codes[D];
    uint16_t s;
    float f[D];
    uint32_t want[D];
    cq_encode_token(y, D, 4, codes, &s, 0, NULL);
    cq_decode_token(codes, s, D, 4, f);
    for (uint32_t c = 0; c < D; c++) want[c] = cq_f32_bits(f[c]);
    uint32_t n = read_raw(e, 7, beats, 200, ~0u);
    int ok = n == D && same_beats(beats, want, D) &&
             (cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS) & CQ_ENG_IRQ_FRAME);
    cq_engine_free(e);
    return ok;
}

/* Gap 7: IRQ sources (covered above), KV_SELECT override, OCCUPANCY decrement,
 * WRITE_ADDR auto-increment. */
static int gap7(cq_engine_rev rev) {
    cq_engine *e = make(rev, CQ_TIER_CQ4, NULL);
    uint16_t x[D];
    cq_engine_reg_write(e, CQ_ENG_CTRL, CQ_ENG_CTRL_ENABLE | CQ_ENG_CTRL_AUTO_INC);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 0);
    for (uint32_t t = 0; t < 3; t++) {
        token(t, x);
        push_raw(e, x, 1, D - 1);
    }
    int ok = cq_engine_reg_read(e, CQ_ENG_OCCUPANCY) == 3 &&
             cq_engine_reg_read(e, CQ_ENG_WRITE_ADDR) == 3;
    cq_engine_reg_write(e, CQ_ENG_INVALIDATE, 1);
    ok = ok && cq_engine_reg_read(e, CQ_ENG_OCCUPANCY) == 2;
    /* KV_SELECT = 3: every token is a value whatever tuser says */
    cq_engine_reg_write(e, CQ_ENG_KV_SELECT, 3);
    token(7, x);
    push_raw(e, x, 0, D - 1);
    ok = ok && cq_engine_get_state(e) == CQ_ES_IDLE && cq_engine_reg_read(e, CQ_ENG_OCCUPANCY) == 3;
    cq_engine_free(e);
    return ok;
}

/* Gap 8a: an outlier of -0.0 reads back as -0.0. */
static int gap8a(cq_engine_rev rev) {
    uint8_t mask[D] = {0, 1, 0, 0, 0, 1, 0, 0};
    cq_engine *e = make(rev, CQ_TIER_CQ4P, mask);
    uint16_t K[G * D];
    uint32_t beats[64];
    for (uint32_t t = 0; t < G; t++) token(t, K + t * D);
    K[2 * D + 1] = 0x8000;
    K[3 * D + 5] = 0x8000;
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 0);
    for (uint32_t t = 0; t < G; t++) push_raw(e, K + t * D, 0, D - 1);
    uint32_t n2 = read_raw(e, 2, beats, D + 8, ~0u);
    int ok2 = n2 == D && beats[1] == 0x80000000u;
    uint32_t n3 = read_raw(e, 3, beats, D + 8, ~0u);
    int ok3 = n3 == D && beats[5] == 0x80000000u;
    if (rev == CQ_ENGINE_V02) CHECK(n3 == D && beats[5] == 0, "v0.2: -0.0 outlier reads +0.0");
    cq_engine_free(e);
    return ok2 && ok3;
}

/* Gap 8b: the outlier mask is loaded through registers and used. */
static int gap8b(cq_engine_rev rev) {
    uint8_t rom[D] = {0, 1, 0, 0, 0, 1, 0, 0};
    uint8_t newm[D] = {0, 0, 0, 1, 0, 0, 0, 1};
    cq_engine *e = make(rev, CQ_TIER_CQ4P, rom);
    uint16_t K[G * D];
    uint32_t ref[G * D], beats[64];
    for (uint32_t t = 0; t < G; t++) token(t, K + t * D);
    for (uint32_t c = 0; c < D; c++) K[4 * D + c] = (uint16_t)(K[4 * D + c] + (newm[c] ? 0x1800u : 0u));
    cq_engine_reg_write(e, CQ_ENG_MASK_SHADOW, 0x88u); /* channels 3 and 7 */
    cq_engine_reg_write(e, CQ_ENG_CTRL, CQ_ENG_CTRL_ENABLE | CQ_ENG_CTRL_MASK_LOAD);
    int ok = cq_engine_reg_read(e, CQ_ENG_MASK_ACTIVE) == 0x88u &&
             cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS) == 0;
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 0);
    for (uint32_t t = 0; t < G; t++) push_raw(e, K + t * D, 0, D - 1);
    key_ref(CQ_TIER_CQ4P, newm, K, G, ref, NULL);
    for (uint32_t t = 0; t < G && ok; t++)
        ok = read_raw(e, t, beats, D + 8, ~0u) == D && same_beats(beats, ref + t * D, D);
    /* a mask with the wrong number of channels is refused */
    cq_engine_reg_write(e, CQ_ENG_MASK_SHADOW, 0x7u);
    cq_engine_reg_write(e, CQ_ENG_CTRL, CQ_ENG_CTRL_ENABLE | CQ_ENG_CTRL_MASK_LOAD);
    ok = ok && cq_engine_reg_read(e, CQ_ENG_MASK_ACTIVE) == 0x88u &&
         (cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS) & CQ_ENG_IRQ_MASK_ERR);
    cq_engine_free(e);
    return ok;
}

/* Gap 9: key scales are stored once per group, not in every record. The v0.3
 * key record is narrower than 20D + 1 bits, its scale-set entry holds exactly
 * the codec's group scales, and the records still decode bit-exactly. */
static int gap9(cq_engine_rev rev) {
    cq_engine *e = make(rev, CQ_TIER_CQ4, NULL);
    uint16_t K[G * D], sc[D], set_sc[D];
    uint32_t ref[G * D], beats[64];
    for (uint32_t t = 0; t < G; t++) token(t + 11, K + t * D);
    cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, 0);
    for (uint32_t t = 0; t < G; t++) push_raw(e, K + t * D, 0, D - 1);
    key_ref(CQ_TIER_CQ4, NULL, K, G, ref, sc);
    cq_engine_info info;
    cq_engine_get_info(e, &info);
    int decode_ok = 1;
    for (uint32_t t = 0; t < G; t++)
        decode_ok &= read_raw(e, t, beats, D + 8, ~0u) == D && same_beats(beats, ref + t * D, D);
    CHECK(decode_ok, "v0.%d key records decode bit-exactly", (int)rev);
    uint64_t row[4];
    cq_engine_record_bits(e, 5, row, 4, NULL);
    if (rev == CQ_ENGINE_V02) { /* every record repeats the D scales */
        int rep = info.key_record_bits == 20 * D + 1;
        for (uint32_t c = 0; c < D; c++) {
            uint32_t pos = 4 * D + 16 * c;
            rep &= (uint16_t)((row[pos / 64] >> (pos % 64)) & 0xFFFFu) == sc[c];
        }
        CHECK(rep, "v0.2 key record = [codes][D scales][tag], %u bits", info.key_record_bits);
    }
    int ok = info.key_record_bits < 20 * D + 1 &&
             cq_engine_scale_set(e, cq_engine_reg_read(e, CQ_ENG_LAST_SCALE_SET), set_sc, NULL) ==
                 CQ_OK &&
             memcmp(set_sc, sc, sizeof sc) == 0;
    cq_engine_free(e);
    return ok && decode_ok;
}

int main(void) {
    struct {
        const char *name;
        int (*fn)(cq_engine_rev);
    } gaps[] = {{"1 partial-group flush / values during a group", gap1},
                {"2 read of the in-flight group", gap2},
                {"4 READ_ADDR while busy", gap4},
                {"5 out-of-range value record reported", gap5a},
                {"5 key group does not wrap", gap5b},
                {"6 read back-pressure", gap6a},
                {"6 early tlast framing", gap6b},
                {"7 auto-increment, occupancy, KV_SELECT", gap7},
                {"8 -0.0 outlier exact", gap8a},
                {"8 loadable outlier mask", gap8b},
                {"9 scales once per group", gap9}};
    for (size_t i = 0; i < sizeof gaps / sizeof gaps[0]; i++) {
        int v3 = gaps[i].fn(CQ_ENGINE_V03);
        int v2 = gaps[i].fn(CQ_ENGINE_V02);
        CHECK(v3 == 1, "gap %s: not fixed in v0.3", gaps[i].name);
        CHECK(v2 == 0, "gap %s: the v0.3 test passes on v0.2 (gap not reproduced)", gaps[i].name);
        printf("  gap %-45s v0.2 %s, v0.3 %s\n", gaps[i].name, v2 ? "fixed?!" : "shows it",
               v3 ? "fixed" : "NOT FIXED");
    }
    /* gap 3: unwritten record and out-of-range record */
    for (int a = 0; a < 2; a++) {
        uint32_t addr = a ? DEPTH + 5 : 9;
        int v3 = gap3(CQ_ENGINE_V03, addr), v2 = gap3(CQ_ENGINE_V02, addr);
        CHECK(v3 == 1 && v2 == 0, "gap 3 (addr %u): v0.3 %d v0.2 %d", addr, v3, v2);
        printf("  gap 3 bounded read wait (addr %-3u)                v0.2 %s, v0.3 %s\n", addr,
               v2 ? "fixed?!" : "waits", v3 ? "RD_ERR" : "NOT FIXED");
    }
    return cq_test_done("test_engine_gaps");
}
