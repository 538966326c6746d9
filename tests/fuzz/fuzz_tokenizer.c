/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tokenizer.c - the llama2.c tokenizer.bin loader
 * (cq_tokenizer_llama2c_mem) on arbitrary bytes, then encode and decode of a
 * few fixed strings through what it loaded. Header: 2 bytes giving vocab_size
 * (1..1024); the rest is the file. (The GGUF tokenizers are reached through
 * fuzz_gguf.) Invariants: a refusal fills the error record and leaves *out
 * NULL; a loaded tokenizer has the asked vocabulary; encode gives tokens inside
 * it, BOS first when asked, and reports the needed count on a short buffer;
 * decode is bounded and refuses out-of-range ids (fuzz_exercise_tokenizer).
 * Seeds: tests/fuzz/make_model_seeds.c.
 */
#include "cq_model.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    uint32_t nv = 1u + ((uint32_t)data[0] | ((uint32_t)data[1] << 8)) % 1024u;
    cq_tokenizer *t = (cq_tokenizer *)(uintptr_t)1;
    cq_err e;
    cq_status st = cq_tokenizer_llama2c_mem(data + 2, size - 2, nv, &t, &e);
    if (st != CQ_OK) {
        if (t != NULL || e.code != st || !e.msg[0]) fuzz_fail("failed load left state");
        return 0;
    }
    if (cq_tokenizer_vocab(t) != nv) fuzz_fail("vocab %u, asked %u", cq_tokenizer_vocab(t), nv);
    fuzz_exercise_tokenizer(t);
    cq_tokenizer_free(t);
    return 0;
}
