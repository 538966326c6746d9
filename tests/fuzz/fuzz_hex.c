/* SPDX-License-Identifier: MIT */
/*
 * fuzz_hex.c - cq_hex_parse on arbitrary text. Byte 0 picks the word width
 * (0..8, 0 being invalid); the rest is the text, not NUL-terminated.
 * Invariants: success gives words that fit the width and no more words than
 * the text can hold; failure gives no words and a filled error record.
 */
#include "cq_vectors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned digits = data[0] % 9;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    uint32_t *w = (uint32_t *)1; /* must be reset by the parser */
    size_t n = 12345;
    cq_err e;
    cq_status st = cq_hex_parse(text, len, digits, &w, &n, "fuzz", &e);
    if (st == CQ_OK) {
        if (n * digits > len) fuzz_fail("%zu words of %u digits from %zu bytes", n, digits, len);
        for (size_t i = 0; i < n; i++)
            if (digits < 8 && w[i] >> (4 * digits)) fuzz_fail("word %zu too wide", i);
        free(w);
    } else {
        if (w != NULL || n != 0) fuzz_fail("failure left outputs set");
        if (e.code != st || !e.msg[0]) fuzz_fail("error record not filled");
    }
    return 0;
}
