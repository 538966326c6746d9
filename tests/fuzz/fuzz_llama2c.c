/* SPDX-License-Identifier: MIT */
/*
 * fuzz_llama2c.c - cq_model_load_llama2c_mem on arbitrary bytes. A model that loads must have a sane
 * configuration and, when its weights are at most 4 MB, one token must run through a
 * reference session and an fp16-cache session (fuzz_load_model in
 * common.c). A refusal fills the error record and leaves *out NULL.
 * Seeds: tests/fuzz/make_model_seeds.c.
 */
#include "cq_model.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_load_model(cq_model_load_llama2c_mem, data, size);
    return 0;
}
