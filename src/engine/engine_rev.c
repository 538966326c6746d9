/* SPDX-License-Identifier: MIT */
/*
 * engine_rev.c - what differs between the two revisions of the KVCE model, as
 * one table row per revision instead of revision tests spread over the files.
 * v0.2 is the published block as measured on its RTL (cycle for cycle, with
 * its defects R1-R3 and R5); v0.3 is our revision with its own documented
 * timing. The meaning of each field is in engine_internal.h; the facts behind
 * the v0.2 row are in docs/ENGINE_V03.md sections 4 and 7.
 */
#include "engine_internal.h"

static const eng_traits traits_v02 = {
    .rtl_qcore = 1,
    .scale_cycles = 2,
    .pack_cycles = 1,
    .store_cycles = 2,
    .kfeed_extra = 2,
    .read_wait = 3,
    .waddr_at_store = 1,
    .tlast_shift = 1,
    .addr_alias = 1,
    .cr_k_integer = 1,
    .cq8_no_tag = 1,
    .tready_in_read = 1,
    .reset_keeps_paths = 1,
    .reset_race = 1,
};

static const eng_traits traits_v03 = {
    .rtl_qcore = 0,
    .scale_cycles = 1,
    .pack_cycles = 0,
    .store_cycles = 1,
    .kfeed_extra = 0,
    .read_wait = 1,
};

const eng_traits *eng_traits_of(cq_engine_rev rev) {
    return rev == CQ_ENGINE_V02 ? &traits_v02 : &traits_v03;
}
