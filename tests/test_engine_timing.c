/* SPDX-License-Identifier: MIT */
/*
 * test_engine_timing.c - the v0.3 model's cycle counts (measured by running it,
 * not computed) agree with its documented timing (docs/ENGINE_V03.md section
 * 4): value token D beats + 2 + 24D, key group G(D + 2) + D + G(24D + 1), read
 * 3 + D; with L lanes the quantize work becomes 24 * ceil(D / L) per token and
 * the output stays bit-identical. Also: the quantize core's start/done takes
 * CQ_ENG_QCORE_CYCLES cycles inside the FSM (COMPRESS state count). The v0.2
 * timing (the published RTL's, data-dependent) is tests/test_engine_spans.c.
 */
#include <stdlib.h>
#include <string.h>

#include "channelquant.h"
#include "cq_engine.h"
#include "cq_test.h"

static void run(cq_engine_rev rev, uint32_t D, uint32_t G, uint32_t lanes) {
    uint32_t T = G; /* one whole group */
    uint16_t *K = malloc((size_t)T * D * 2), *V = malloc((size_t)T * D * 2);
    cq_rng r;
    cq_rng_seed(&r, D * 31u + lanes);
    for (size_t i = 0; i < (size_t)T * D; i++) {
        K[i] = cq_f64_to_f16(cq_rng_normal(&r));
        V[i] = cq_f64_to_f16(cq_rng_normal(&r));
    }
    cq_engine_config c;
    cq_engine_config_default(&c);
    c.rev = rev;
    c.dim = D;
    c.group = G;
    c.lanes = lanes;
    c.sram_depth = 2 * T;
    cq_engine_report rep;
    cq_err e;
    cq_status st = cq_engine_run_check(&c, K, V, T, NULL, NULL, NULL, &rep, &e);
    CHECK(st == CQ_OK && rep.mismatches == 0, "v0.%d D=%u lanes=%u: %s", rev, D, lanes, e.msg);
    uint64_t B = (D + lanes - 1) / lanes;
    uint64_t val = (uint64_t)D + 2 + 24 * B;
    uint64_t grp = (uint64_t)G * (D + 2) + D + (uint64_t)G * (24 * B + 1);
    CHECK(rep.val_cycles == val * T, "v0.%d D=%u L=%u: value %llu cycles, want %llu", rev, D,
          lanes, (unsigned long long)rep.val_cycles, (unsigned long long)(val * T));
    CHECK(rep.key_cycles == grp, "v0.%d D=%u L=%u: key group %llu cycles, want %llu", rev, D,
          lanes, (unsigned long long)rep.key_cycles, (unsigned long long)grp);
    CHECK(rep.val_read_cycles == (uint64_t)(D + 3) * T && rep.key_read_cycles == (uint64_t)(D + 3) * T,
          "read cycles %llu / %llu", (unsigned long long)rep.val_read_cycles,
          (unsigned long long)rep.key_read_cycles);
    CHECK(rep.state_cycles[CQ_ES_COMPRESS] == (1 + CQ_ENG_QCORE_CYCLES * B) * T,
          "COMPRESS state cycles %llu", (unsigned long long)rep.state_cycles[CQ_ES_COMPRESS]);
    CHECK(rep.state_cycles[CQ_ES_KFEED] == D, "KFEED %llu",
          (unsigned long long)rep.state_cycles[CQ_ES_KFEED]);
    free(K);
    free(V);
}

int main(void) {
    for (int rev = 3; rev <= 3; rev++) {
        run((cq_engine_rev)rev, 64, 128, 1);
        run((cq_engine_rev)rev, 128, 128, 1);
        run((cq_engine_rev)rev, 64, 32, 3); /* uneven last batch */
        run((cq_engine_rev)rev, 128, 16, 128);
        run((cq_engine_rev)rev, 6, 4, 2);
    }
    return cq_test_done("test_engine_timing");
}
