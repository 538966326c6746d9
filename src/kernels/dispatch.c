/* SPDX-License-Identifier: MIT */
/*
 * dispatch.c - picks the kernel table once: the CPU's features (cpuid via
 * __builtin_cpu_supports and <cpuid.h>), overridden by CQ_KERNELS=scalar|avx2|avx512.
 * Order of preference: avx512 (AVX2 + AVX512F/BW/VL/VNNI), avx2, scalar. Compiled
 * without any ISA flags, and without reference to the SIMD files when the library
 * is built with SIMD=0 (CQ_NO_SIMD).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_kernels.h"

#if !defined(CQ_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>

/* F16C is CPUID.1:ECX bit 29. Asked directly: clang's __builtin_cpu_supports does not
 * know "f16c" (gcc's does); avx2 and fma go through the builtin, which also checks
 * that the OS saves the YMM state. */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

#if !defined(CQ_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
static int avx2_ok;
static pthread_once_t avx2_once = PTHREAD_ONCE_INIT;

static void avx2_init(void) {
    __builtin_cpu_init();
    avx2_ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}
#endif

const cq_kernels *cq_kernels_avx2(void) {
#if !defined(CQ_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    pthread_once(&avx2_once, avx2_init);
    return avx2_ok ? &cq_kernels_avx2_table : NULL;
#else
    return NULL;
#endif
}

#if !defined(CQ_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
static cq_kernels avx512_table;
static int avx512_ok;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;

static void avx512_init(void) {
    __builtin_cpu_init();
    /* the builtin also checks that the OS saves the opmask and upper ZMM state */
    avx512_ok = cq_kernels_avx2() && __builtin_cpu_supports("avx512f") &&
                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                __builtin_cpu_supports("avx512vnni");
    if (avx512_ok) cq_kernels_avx512_fill(&avx512_table);
}
#endif

const cq_kernels *cq_kernels_avx512(void) {
#if !defined(CQ_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    pthread_once(&avx512_once, avx512_init);
    return avx512_ok ? &avx512_table : NULL;
#else
    return NULL;
#endif
}

const cq_kernels *cq_kernels_by_name(const char *name) {
    if (!name) return NULL;
    if (!strcmp(name, "scalar")) return cq_kernels_scalar();
    if (!strcmp(name, "avx2")) return cq_kernels_avx2();
    if (!strcmp(name, "avx512")) return cq_kernels_avx512();
    return NULL;
}

static const cq_kernels *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    const char *env = getenv("CQ_KERNELS");
    const cq_kernels *k = NULL;
    if (env && *env && strcmp(env, "auto") != 0) {
        k = cq_kernels_by_name(env);
        /* an unknown or unavailable request falls back to the best table, said once */
        if (!k) fprintf(stderr, "channelquant: CQ_KERNELS=%s is not available here; using auto\n", env);
    }
    if (!k) k = cq_kernels_avx512();
    if (!k) k = cq_kernels_avx2();
    if (!k) k = cq_kernels_scalar();
    chosen = k;
}

const cq_kernels *cq_kernels_get(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}
