/* SPDX-License-Identifier: MIT */
/*
 * cq_vectors.h - golden vectors (CONTRACT.md section 7) and real-model
 * replay slices (section 8): load, save, and check against the codec.
 *
 * Every loader treats its files as hostile: sizes are checked before they are
 * trusted, every line is validated, and a failure says which file and line.
 *
 * Tier: TOOL-GRADE - exported for the cq tool, tests and research; may change in any
 * minor version (docs/EMBEDDING.md).
 */
#ifndef CQ_VECTORS_H
#define CQ_VECTORS_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>

#include "cq_codec.h"
#include "cq_file.h" /* cq_read_file, cq_write_file_atomic */

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------- hex files */

/* Parse whitespace-separated hex words of exactly `digits` digits (2, 4 or 8). */
CQ_API cq_status cq_hex_parse(const char *text, size_t len, unsigned digits, uint32_t **words,
                       size_t *n, const char *what, cq_err *err);
/* Load a one-word-per-line hex file of the golden format. */
CQ_API cq_status cq_hex_load(const char *path, unsigned digits, uint32_t **words, size_t *n, cq_err *err);

/* ---------------------------------------------------------- golden vector */

typedef struct cq_golden {
    cq_tier tier;
    uint32_t D, T, G;
    uint16_t *input_k, *input_v;     /* [T][D] */
    uint8_t *mask;                   /* [D] */
    uint8_t *key_payload;            /* key_payload_n bytes */
    uint16_t *key_scales, *sidecar;  /* key_scales_n, sidecar_n */
    uint8_t *val_payload;            /* val_payload_n */
    uint16_t *val_scales;            /* val_scales_n */
    uint32_t *k_hat, *v_hat;         /* [T][D] fp32 bits */
    size_t key_payload_n, key_scales_n, sidecar_n, val_payload_n, val_scales_n;
} cq_golden;

/* Parse "d{D}_T{T}_G{G}__{CQ8|CQ4|CQ4plus}" (the last path component). */
CQ_API cq_status cq_golden_parse_name(const char *dir, cq_tier *tier, uint32_t *D, uint32_t *T,
                               uint32_t *G, cq_err *err);
/* Canonical directory name of a vector. */
CQ_API void cq_golden_name(cq_tier tier, uint32_t D, uint32_t T, uint32_t G, char *buf, size_t cap);

CQ_API cq_status cq_golden_load(const char *dir, cq_golden *g, cq_err *err);
/* Write all ten files into dir (created; must not already hold a vector). */
CQ_API cq_status cq_golden_save(const char *dir, const cq_golden *g, cq_err *err);
CQ_API void cq_golden_free(cq_golden *g);

/* Build the codec parameters a vector implies (tier, D, G, its outlier mask). */
CQ_API cq_status cq_golden_params(const cq_golden *g, cq_params *p, cq_err *err);

/* Fill every expected surface of g from its inputs with the codec (the generator). */
CQ_API cq_status cq_golden_compute(cq_golden *g, cq_err *err);

/* First mismatch found by cq_golden_check. */
typedef struct cq_mismatch {
    const char *surface; /* "key_payload", "k_hat", ... or NULL when all agree */
    const char *direction; /* "compress" or "decompress" */
    size_t index;
    uint32_t expected, got;
    unsigned digits; /* hex width of expected/got */
} cq_mismatch;

/* Compress the inputs and compare every stream; decompress the stored streams
 * and compare K_hat/V_hat (outlier channels: the widened fp16). CQ_OK or
 * CQ_ERR_MISMATCH with *mm describing the first difference. */
CQ_API cq_status cq_golden_check(const cq_golden *g, cq_mismatch *mm, cq_err *err);

/* ------------------------------------------------------ real-model slices */

typedef struct cq_slice {
    uint32_t index, D, T, layer, head;
    uint16_t *key, *val;                 /* [T][D] fp16 */
    uint8_t *mask;                       /* [D] */
    uint32_t *keyhat, *valhat, *vhatwht; /* [T][D] fp32 bits */
} cq_slice;

typedef struct cq_slice_manifest {
    uint32_t count;
    uint32_t *index, *D, *T, *layer, *head;
} cq_slice_manifest;

CQ_API cq_status cq_slice_manifest_load(const char *dir, cq_slice_manifest *m, cq_err *err);
CQ_API void cq_slice_manifest_free(cq_slice_manifest *m);
CQ_API cq_status cq_slice_load(const char *dir, const cq_slice_manifest *m, uint32_t i, cq_slice *s,
                        cq_err *err);
CQ_API void cq_slice_free(cq_slice *s);
/* Check CQ-4+ keys (G=128, slice mask), INT4 values and CQ-3-rot values. */
CQ_API cq_status cq_slice_check(const cq_slice *s, cq_mismatch *mm, cq_err *err);

#ifdef __cplusplus
}
#endif
#endif /* CQ_VECTORS_H */
