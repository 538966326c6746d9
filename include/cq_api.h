/* SPDX-License-Identifier: MIT */
/*
 * cq_api.h - the export macro of the public API.
 *
 * CQ_API marks every function of the public headers. The library's objects are
 * compiled with -fvisibility=hidden, so a function is exported from
 * libchannelquant.so only when its declaration carries CQ_API; everything else
 * stays internal to the library (tests/cli/abi_symbols.sh checks both ways).
 * Define CQ_API before including a header to override it (e.g. empty).
 *
 * Tier: STABLE CORE - what a runtime links; its ABI is kept within a major version
 * (docs/EMBEDDING.md).
 */
#ifndef CQ_API_H
#define CQ_API_H

#ifndef CQ_API
#if defined(__GNUC__) || defined(__clang__)
#define CQ_API __attribute__((visibility("default")))
#else
#define CQ_API
#endif
#endif

#endif /* CQ_API_H */
