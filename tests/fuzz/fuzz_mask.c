/* SPDX-License-Identifier: MIT */
/*
 * fuzz_mask.c - cq_mask_load (the text outlier-mask format of
 * ../shared/vectors/masks) on arbitrary files. cq_mask_load takes a path, so
 * the input (after its first byte) is written to a file in the scratch
 * directory. The first byte picks the shape: 24 layers x 2 heads x 64 (the
 * shared vectors), or one of a few others, including head_dim 512 and 1 x 1 x 2.
 * Invariants: nothing is written past the mask array; success means every
 * mask byte is 0 or 1 and the mask, written back in the canonical form
 * ("layer head c0 c1 ..."), loads to the same bytes; failure fills the error
 * record.
 */
#include <string.h>

#include "cq_cache.h"
#include "fuzz.h"

static const uint32_t shapes[8][3] = {
    {24, 2, 64}, {24, 2, 64}, {24, 2, 64}, {24, 2, 64},
    {1, 1, 2},   {2, 3, 128}, {1, 2, 512}, {4, 8, 16},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint32_t *sh = shapes[data[0] & 7u];
    const char *dir = fuzz_scratch_dir();
    if (fuzz_write(dir, "mask.txt", data + 1, size - 1) != 0) fuzz_fail("cannot write scratch file");
    char path[512];
    snprintf(path, sizeof path, "%s/mask.txt", dir);
    size_t n = (size_t)sh[0] * sh[1] * sh[2];
    uint8_t *m = malloc(n + 16);
    if (!m) return 0;
    memset(m, 0xA5, n + 16);
    cq_err e;
    cq_status st = cq_mask_load(path, sh[0], sh[1], sh[2], m, &e);
    for (size_t i = n; i < n + 16; i++)
        if (m[i] != 0xA5) fuzz_fail("wrote past the mask array (byte %zu)", i - n);
    if (st == CQ_OK) {
        for (size_t i = 0; i < n; i++)
            if (m[i] > 1) fuzz_fail("mask byte %zu = %u", i, m[i]);
        /* canonical text of the loaded mask, re-loaded */
        size_t cap = (size_t)sh[0] * sh[1] * 16 + n * 5 + 1, len = 0;
        char *txt = malloc(cap);
        uint8_t *m2 = malloc(n);
        if (txt && m2) {
            for (uint32_t l = 0; l < sh[0]; l++)
                for (uint32_t h = 0; h < sh[1]; h++) {
                    len += (size_t)snprintf(txt + len, cap - len, "%u %u", l, h);
                    for (uint32_t c = 0; c < sh[2]; c++)
                        if (m[((size_t)l * sh[1] + h) * sh[2] + c])
                            len += (size_t)snprintf(txt + len, cap - len, " %u", c);
                    len += (size_t)snprintf(txt + len, cap - len, "\n");
                }
            if (fuzz_write(dir, "mask2.txt", (const uint8_t *)txt, len) != 0) fuzz_fail("scratch write");
            snprintf(path, sizeof path, "%s/mask2.txt", dir);
            if (cq_mask_load(path, sh[0], sh[1], sh[2], m2, &e) != CQ_OK)
                fuzz_fail("canonical form of a loaded mask refused: %s", e.msg);
            if (memcmp(m, m2, n) != 0) fuzz_fail("canonical form loads to a different mask");
        }
        free(txt);
        free(m2);
    } else if (e.code != st || !e.msg[0]) {
        fuzz_fail("error record not filled (%s)", cq_status_name(st));
    }
    free(m);
    return 0;
}
