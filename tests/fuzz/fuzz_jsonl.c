/* SPDX-License-Identifier: MIT */
/*
 * fuzz_jsonl.c - the multiple-choice parsers of cq_eval.h on arbitrary text:
 * cq_mc_parse_hellaswag (HellaSwag jsonl) and cq_mc_build_cloze (plain text
 * paragraphs). The first byte picks max_items (0 = all) and the cloze seed.
 * Invariants: success gives a set of at most max_items items, each with a
 * context, 1..CQ_MC_MAX_ENDINGS non-NULL NUL-terminated endings and a label
 * below n_endings (the cloze builder: exactly 4 endings); failure leaves an
 * empty set and a filled error record; cq_mc_free releases everything (ASan).
 */
#include <string.h>

#include "cq_eval.h"
#include "fuzz.h"

static void check_set(const char *who, cq_status st, const cq_mc_set *set, const cq_err *e,
                      size_t max_items, uint32_t endings) {
    if (st != CQ_OK) {
        if (set->n != 0 || set->items != NULL) fuzz_fail("%s: failure left %zu items", who, set->n);
        if (e->code != st || !e->msg[0]) fuzz_fail("%s: error record not filled", who);
        return;
    }
    if (max_items && set->n > max_items) fuzz_fail("%s: %zu items > max %zu", who, set->n, max_items);
    if (set->n && !set->items) fuzz_fail("%s: %zu items, NULL array", who, set->n);
    for (size_t i = 0; i < set->n; i++) {
        const cq_mc_item *it = &set->items[i];
        if (!it->context) fuzz_fail("%s: item %zu without context", who, i);
        (void)strlen(it->context);
        if (it->n_endings == 0 || it->n_endings > CQ_MC_MAX_ENDINGS ||
            (endings && it->n_endings != endings))
            fuzz_fail("%s: item %zu has %u endings", who, i, it->n_endings);
        if (it->label >= it->n_endings) fuzz_fail("%s: item %zu label %u", who, i, it->label);
        for (uint32_t k = 0; k < it->n_endings; k++) {
            if (!it->endings[k]) fuzz_fail("%s: item %zu ending %u NULL", who, i, k);
            (void)strlen(it->endings[k]);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t max_items = data[0] & 7u;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    cq_mc_set set;
    cq_err e;
    cq_status st = cq_mc_parse_hellaswag(text, len, max_items, &set, &e);
    check_set("hellaswag", st, &set, &e, max_items, 0);
    cq_mc_free(&set);
    st = cq_mc_build_cloze(text, len, max_items, data[0] >> 3, &set, &e);
    check_set("cloze", st, &set, &e, max_items, 4);
    cq_mc_free(&set);
    return 0;
}
