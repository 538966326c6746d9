/*
 * fuzz_llama2c.c - cq_model_load_llama2c_mem on arbitrary bytes. A model that loads must have a sane
 * configuration, its tokenizer (GGUF) must encode and decode fixed strings,
 * and, when its weights are at most 4 MB, one token must run through a
 * reference session and an fp16-cache session (fuzz_exercise_model in
 * common.c). A refusal fills the error record and leaves *out NULL.
 * Seeds: tests/fuzz/make_model_seeds.c.
 */
#include "cq_model.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cq_model *m = (cq_model *)(uintptr_t)1;
    cq_err e;
    cq_status st = cq_model_load_llama2c_mem(data, size, &m, &e);
    if (st != CQ_OK) {
        if (m != NULL || e.code != st || !e.msg[0]) fuzz_fail("failed load left state");
        return 0;
    }
    fuzz_exercise_model(m, 4u << 20);
    cq_model_free(m);
    return 0;
}
