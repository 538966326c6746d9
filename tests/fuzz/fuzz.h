/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - shared declarations of the fuzz targets (tests/fuzz/fuzz_*.c).
 * Each target defines LLVMFuzzerTestOneInput; it is linked either with
 * libFuzzer (`make fuzz`, clang) or with standalone.c, which replays the
 * committed corpus as an ordinary test (`make test`, any C compiler).
 * A target calls fuzz_fail() when an invariant of the API breaks, so that
 * both drivers report it as a crash.
 */
#ifndef CQ_FUZZ_H
#define CQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cq_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_fail(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz invariant broken at %s:%d: ", __FILE__, __LINE__);                   \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

/* Split data at 0xFF bytes (never part of a text file of ours) into at most max parts. */
size_t fuzz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len, size_t max);
/* A private scratch directory for file-based targets (created once, removed at exit). */
const char *fuzz_scratch_dir(void);
/* Write a file inside dir (name relative); returns 0 on success. */
int fuzz_write(const char *dir, const char *name, const uint8_t *data, size_t len);

/* A selector derived from the whole input (CRC-32C), so a mutation anywhere can change
 * the choices below without the input's own bytes being reserved for it. */
uint32_t fuzz_selector(const uint8_t *data, size_t size);
/* The kernel table sel picks among those this build and CPU have ("scalar", "avx2",
 * "avx512"): the fast paths and their compute layouts are fuzzed, not only the scalar one. */
const char *fuzz_pick_kernels(uint32_t sel);

struct cq_model;
struct cq_tokenizer;
/* Encode a few fixed strings and decode every token back (fuzz_tokenizer,
 * fuzz_gguf); fuzz_fail on any broken invariant of cq_tokenizer_encode/decode. */
void fuzz_exercise_tokenizer(const struct cq_tokenizer *t);
/* A model that loaded: sane config; when its weights are at most max_weight_bytes,
 * one forward step of one token through a reference session and through the
 * cache (its K/V formats and kernel table picked by sel): it runs, or refuses non-finite K/V (NONFINITE / OVERFLOW) without
 * appending anything. */
void fuzz_exercise_model(const struct cq_model *m, uint64_t max_weight_bytes, uint32_t sel);
/* One model-loader fuzz input: a refusal must fill the error record and leave *out NULL;
 * a model that loads goes through fuzz_exercise_model (weights up to 4 MB) and is freed. */
typedef cq_status (*fuzz_model_loader)(const void *buf, size_t len, struct cq_model **out,
                                       cq_err *err);
void fuzz_load_model(fuzz_model_loader load, const uint8_t *data, size_t size);

#endif
