/* SPDX-License-Identifier: MIT */
/*
 * fuzz_slices.c - the real-model slice loader (manifest, six files per
 * slice) and cq_slice_check on arbitrary contents. The input is split at
 * 0xFF bytes: part 0 is manifest.txt, then key/val/keymask/keyhat/valhat/
 * vhatwht for slice 0, then the same for slice 1.
 */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cq_vectors.h"
#include "fuzz.h"

static const char *const stems[6] = {"key", "val", "keymask", "keyhat", "valhat", "vhatwht"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[13];
    size_t len[13];
    size_t np = fuzz_split(data, size, part, len, 13);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/slices", fuzz_scratch_dir());
    if (mkdir(dir, 0700) != 0) return 0;
    fuzz_write(dir, "manifest.txt", part[0], len[0]);
    for (size_t p = 1; p < np; p++) {
        char name[64];
        snprintf(name, sizeof name, "%s_%zu.hex", stems[(p - 1) % 6], (p - 1) / 6);
        fuzz_write(dir, name, part[p], len[p]);
    }
    cq_slice_manifest m;
    cq_err e;
    cq_status st = cq_slice_manifest_load(dir, &m, &e);
    if (st == CQ_OK) {
        for (uint32_t i = 0; i < m.count && i < 4; i++) {
            cq_slice s;
            if (cq_slice_load(dir, &m, i, &s, &e) != CQ_OK) continue;
            cq_mismatch mm;
            st = cq_slice_check(&s, &mm, &e);
            if (st == CQ_ERR_MISMATCH && !mm.surface) fuzz_fail("mismatch without a surface");
            cq_slice_free(&s);
        }
        cq_slice_manifest_free(&m);
    } else if (e.code != st || !e.msg[0]) {
        fuzz_fail("error record not filled");
    }
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    unlink(path);
    for (size_t p = 0; p < 12; p++) {
        snprintf(path, sizeof path, "%s/%s_%zu.hex", dir, stems[p % 6], p / 6);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}
