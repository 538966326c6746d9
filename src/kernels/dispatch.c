/*
 * dispatch.c - picks the kernel table once: the CPU's features (cpuid via
 * __builtin_cpu_supports), overridden by CQ_KERNELS=scalar|avx2. Compiled
 * without any ISA flags, and without reference to the AVX2 file when the
 * library is built with SIMD=0 (CQ_NO_SIMD).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_kernels.h"

#if !defined(CQ_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
/* F16C is CPUID leaf 1, ECX bit 29; read directly because clang before 15
 * rejects __builtin_cpu_supports("f16c") (which broke `make fuzz`). */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}
#endif

const cq_kernels *cq_kernels_avx2(void) {
#if !defined(CQ_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    }
    return ok ? &cq_kernels_avx2_table : NULL;
#else
    return NULL;
#endif
}

const cq_kernels *cq_kernels_by_name(const char *name) {
    if (!name) return NULL;
    if (!strcmp(name, "scalar")) return cq_kernels_scalar();
    if (!strcmp(name, "avx2")) return cq_kernels_avx2();
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
    if (!k) k = cq_kernels_avx2();
    if (!k) k = cq_kernels_scalar();
    chosen = k;
}

const cq_kernels *cq_kernels_get(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}
