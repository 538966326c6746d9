/* SPDX-License-Identifier: MIT */
/*
 * cq_version.h - the library version: compile-time macros and the version of
 * the library actually linked at run time.
 *
 * Versioning: MAJOR changes when the ABI of the stable core breaks (it is the
 * soname: libchannelquant.so.MAJOR); MINOR when functions or trailing struct
 * fields are added; PATCH for fixes. docs/EMBEDDING.md states the rules.
 *
 * Tier: STABLE CORE - what a runtime links; its ABI is kept within a major version
 * (docs/EMBEDDING.md).
 */
#ifndef CQ_VERSION_H
#define CQ_VERSION_H

#include <stddef.h>

#include "cq_api.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CQ_VERSION_MAJOR 0
#define CQ_VERSION_MINOR 1
#define CQ_VERSION_PATCH 0
#define CQ_VERSION_STRING "0.1.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH, what cq_version() returns. */
#define CQ_VERSION_NUMBER (CQ_VERSION_MAJOR * 10000 + CQ_VERSION_MINOR * 100 + CQ_VERSION_PATCH)

/* CQ_VERSION_NUMBER of the linked library (compare with the header's to detect a mismatch). */
CQ_API unsigned cq_version(void);
/* "MAJOR.MINOR.PATCH" of the linked library. Never NULL. */
CQ_API const char *cq_version_string(void);

/* sizeof of a public struct as the linked library was compiled, by its name
 * ("cq_err", "cq_cache_config", ...); 0 for an unknown name. Lets a binding that
 * mirrors the structs (python/, another language) refuse a library whose layout
 * differs from its own, instead of corrupting memory. */
CQ_API size_t cq_abi_struct_size(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* CQ_VERSION_H */
