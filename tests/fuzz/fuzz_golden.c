/* SPDX-License-Identifier: MIT */
/*
 * fuzz_golden.c - the golden-vector loader path (cq_golden_load, then
 * cq_golden_check) on arbitrary directory contents. The input is split at
 * 0xFF bytes: part 0 is the directory name (d{D}_T{T}_G{G}__TIER is what
 * parses), parts 1..10 are the ten files in the order below; a missing part
 * means a missing file.
 */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cq_vectors.h"
#include "fuzz.h"

static const char *const files[10] = {
    "input_k.f16.hex",    "input_v.f16.hex",    "outlier_mask.u8.hex",    "key_payload.u8.hex",
    "key_scales.f16.hex", "val_payload.u8.hex", "val_scales.f16.hex",     "sidecar.f16.hex",
    "expected_k_hat.f32.hex", "expected_v_hat.f32.hex",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[11];
    size_t len[11];
    size_t np = fuzz_split(data, size, part, len, 11);
    if (np < 1 || len[0] == 0 || len[0] > 64) return 0;
    char name[80];
    for (size_t i = 0; i < len[0]; i++) {
        char c = (char)part[0][i];
        name[i] = (c == '/' || c == '\0' || c == '.') ? '_' : c; /* one path component */
    }
    name[len[0]] = '\0';
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", fuzz_scratch_dir(), name);
    if (mkdir(dir, 0700) != 0) return 0;
    for (size_t f = 1; f < np; f++) fuzz_write(dir, files[f - 1], part[f], len[f]);
    cq_golden g;
    cq_err e;
    cq_status st = cq_golden_load(dir, &g, &e);
    if (st == CQ_OK) {
        cq_mismatch mm;
        st = cq_golden_check(&g, &mm, &e);
        if (st == CQ_ERR_MISMATCH && !mm.surface) fuzz_fail("mismatch without a surface");
        cq_golden_free(&g);
    } else if (e.code != st || !e.msg[0]) {
        fuzz_fail("error record not filled");
    }
    for (size_t f = 0; f < 10; f++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}
