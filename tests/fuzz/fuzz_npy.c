/* SPDX-License-Identifier: MIT */
/*
 * fuzz_npy.c - cq_npy_parse on arbitrary bytes (limit 1 MiB of data), then
 * both element conversions over the whole array.
 * Invariants: success gives count == product of the shape, within the limit.
 */
#include <string.h>

#include "cq_util.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cq_npy a;
    cq_err e;
    cq_status st = cq_npy_parse(data, size, (size_t)1 << 20, &a, &e);
    if (st != CQ_OK) {
        if (e.code != st || !e.msg[0]) fuzz_fail("error record not filled");
        return 0;
    }
    uint64_t count = 1;
    for (uint32_t i = 0; i < a.ndim; i++) count *= a.shape[i];
    if (a.ndim > CQ_NPY_MAX_DIMS || count != a.count || a.count > ((size_t)1 << 20))
        fuzz_fail("shape/count inconsistent");
    uint16_t *h = malloc(a.count * 2 + 1);
    float *f = malloc(a.count * 4 + 1);
    if (h && f) {
        cq_npy_to_f16(&a, h);
        cq_npy_to_f32(&a, f);
    }
    free(h);
    free(f);
    cq_npy_free(&a);
    return 0;
}
