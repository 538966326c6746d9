/* SPDX-License-Identifier: MIT */
/*
 * bench_peaks.c - the arithmetic peaks `cq bench --kernels` measures beside the kernels: how
 * many of the instructions the attention kernels multiply with one core retires per cycle when
 * nothing else limits it (twelve independent accumulators, no loads), so that a kernel's floor
 * is a measured figure of this machine rather than a vendor's table.
 *
 * Each peak runs a chain block of 12 independent accumulators x 8 rounds per iteration in
 * inline asm (the file is compiled without ISA flags: the assembler takes every mnemonic, and
 * a peak runs only when cpuid reports its ISA, checked by the caller through the kernel tables
 * the CPU runs). Registers 0-11 only, clobbered as xmm0-xmm11, and vzeroupper after each run.
 * Best of five trials, as for the clock: time a shared machine takes away only lowers a trial.
 * Two pairs (two instructions alternating over the accumulators) show which work shares the
 * pipes of the products: a pair that retires at the rate of either instruction alone takes its
 * cycles from the other's.
 */
#include "cq_tool.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PK_X86 1
#endif

#ifdef PK_X86
/* 12 independent accumulators, one instruction each, as one asm line */
#define PK12(op, r)                                                                                \
    op " %%" r "12, %%" r "13, %%" r "0\n\t" op " %%" r "12, %%" r "13, %%" r "1\n\t" op           \
       " %%" r "12, %%" r "13, %%" r "2\n\t" op " %%" r "12, %%" r "13, %%" r "3\n\t" op           \
       " %%" r "12, %%" r "13, %%" r "4\n\t" op " %%" r "12, %%" r "13, %%" r "5\n\t" op           \
       " %%" r "12, %%" r "13, %%" r "6\n\t" op " %%" r "12, %%" r "13, %%" r "7\n\t" op           \
       " %%" r "12, %%" r "13, %%" r "8\n\t" op " %%" r "12, %%" r "13, %%" r "9\n\t" op           \
       " %%" r "12, %%" r "13, %%" r "10\n\t" op " %%" r "12, %%" r "13, %%" r "11\n\t"
#define PK96(op, r) PK12(op, r) PK12(op, r) PK12(op, r) PK12(op, r) PK12(op, r) PK12(op, r) PK12(op, r) PK12(op, r)
#define PK_CLOBBER                                                                                 \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",     \
        "xmm11", "xmm12", "xmm13"

/* one iteration = 96 instructions; the sources (12, 13) are zeroed so values stay finite */
#define PK_LOOP(name, zero, op, r)                                                                 \
    static void name(uint64_t iters) {                                                            \
        __asm__ volatile(zero " %%" r "12, %%" r "12, %%" r "12\n\t" zero " %%" r "13, %%" r     \
                              "13, %%" r "13\n\t"                                                 \
                              "1:\n\t" PK96(op, r) "dec %0\n\t"                                   \
                              "jnz 1b\n\t"                                                        \
                              "vzeroupper"                                                        \
                         : "+r"(iters)                                                            \
                         :                                                                        \
                         : "cc", PK_CLOBBER);                                                     \
    }
PK_LOOP(pk_fma_ymm, "vxorps", "vfmadd231ps", "ymm")
PK_LOOP(pk_fma_zmm, "vpxord", "vfmadd231ps", "zmm")
PK_LOOP(pk_maddubs_ymm, "vpxor", "vpmaddubsw", "ymm")
PK_LOOP(pk_vnni_zmm, "vpxord", "vpdpbusd", "zmm")

/* pairs: op1 on the even accumulators, op2 on the odd ones (2: a two-operand op2 from ymm12,
 * the conversion's form) */
#define PK_A(op, a) op " %%zmm12, %%zmm13, %%zmm" a "\n\t"
#define PK_C(op, a) op " %%ymm12, %%zmm" a "\n\t"
#define PK12P(o1, o2, B)                                                                           \
    PK_A(o1, "0") B(o2, "1") PK_A(o1, "2") B(o2, "3") PK_A(o1, "4") B(o2, "5") PK_A(o1, "6")      \
        B(o2, "7") PK_A(o1, "8") B(o2, "9") PK_A(o1, "10") B(o2, "11")
#define PK_PAIR(name, o1, o2, B)                                                                   \
    static void name(uint64_t iters) {                                                            \
        __asm__ volatile("vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13\n\t" \
                         "1:\n\t" PK12P(o1, o2, B) PK12P(o1, o2, B) PK12P(o1, o2, B)              \
                             PK12P(o1, o2, B) PK12P(o1, o2, B) PK12P(o1, o2, B) PK12P(o1, o2, B)    \
                                 PK12P(o1, o2, B) "dec %0\n\t"                                     \
                                                  "jnz 1b\n\t"                                     \
                                                  "vzeroupper"                                      \
                         : "+r"(iters)                                                            \
                         :                                                                        \
                         : "cc", PK_CLOBBER);                                                     \
    }
PK_PAIR(pk_vnni_fma_zmm, "vpdpbusd", "vfmadd231ps", PK_A)
PK_PAIR(pk_fma_cvt_zmm, "vfmadd231ps", "vcvtph2ps", PK_C)
#endif

typedef struct pk_def {
    const char *id, *insn;
    int avx512; /* 1: needs the avx512 table (F/BW/VL/VNNI), 0: the avx2 one */
    double products;  /* multiply-adds one instruction does */
#ifdef PK_X86
    void (*run)(uint64_t);
#endif
} pk_def;

static const pk_def PEAKS[CQ_PEAK_N] = {
#ifdef PK_X86
    {"fma_ymm", "vfmadd231ps ymm", 0, 8, pk_fma_ymm},
    {"fma_zmm", "vfmadd231ps zmm", 1, 16, pk_fma_zmm},
    {"maddubs_ymm", "vpmaddubsw ymm", 0, 32, pk_maddubs_ymm},
    {"vnni_zmm", "vpdpbusd zmm", 1, 64, pk_vnni_zmm},
    {"vnni_fma_zmm", "vpdpbusd + vfmadd231ps zmm", 1, 0, pk_vnni_fma_zmm},
    {"fma_cvt_zmm", "vfmadd231ps + vcvtph2ps zmm", 1, 0, pk_fma_cvt_zmm},
#else
    {"fma_ymm", "vfmadd231ps ymm", 0, 8},
    {"fma_zmm", "vfmadd231ps zmm", 1, 16},
    {"maddubs_ymm", "vpmaddubsw ymm", 0, 32},
    {"vnni_zmm", "vpdpbusd zmm", 1, 64},
    {"vnni_fma_zmm", "vpdpbusd + vfmadd231ps zmm", 1, 0},
    {"fma_cvt_zmm", "vfmadd231ps + vcvtph2ps zmm", 1, 0},
#endif
};

const char *cq_peak_id(int i) { return PEAKS[i].id; }
const char *cq_peak_insn(int i) { return PEAKS[i].insn; }
double cq_peak_products(int i) { return PEAKS[i].products; }

/* Instructions per ns of peak i (0: not measured: not x86-64, or the CPU lacks its ISA as
 * reported by the kernel tables it runs). */
double cq_peak_measure(int i, int have_avx2, int have_avx512) {
#ifdef PK_X86
    if (i < 0 || i >= CQ_PEAK_N || !(PEAKS[i].avx512 ? have_avx512 : have_avx2)) return 0.0;
    const uint64_t iters = 40000; /* 3.84 M instructions: ~1-2 ms */
    double best = 0.0;
    for (int trial = 0; trial < 5; trial++) {
        double t0 = cq_tool_now();
        PEAKS[i].run(iters);
        double r = (double)iters * 96.0 / ((cq_tool_now() - t0) * 1e9);
        if (r > best) best = r;
    }
    return best;
#else
    (void)i, (void)have_avx2, (void)have_avx512;
    return 0.0;
#endif
}

/* The peak a kernel table's products go through: fp32 FMAs, or the byte products of the FAST
 * INT4 loops (avx512: vpdpbusd zmm; avx2: vpmaddubsw ymm); -1 for a table without one. */
int cq_peak_of_table(const char *table, int integer) {
    if (!table) return -1;
    if (!strcmp(table, "avx512")) return integer ? CQ_PEAK_VNNI_ZMM : CQ_PEAK_FMA_ZMM;
    if (!strcmp(table, "avx2")) return integer ? CQ_PEAK_MADDUBS_YMM : CQ_PEAK_FMA_YMM;
    return -1;
}

double cq_peak_floor_ns(const double *peak, int p, uint32_t D, uint32_t heads) {
    if (p < 0 || p >= CQ_PEAK_N || !(peak[p] > 0) || !(PEAKS[p].products > 0)) return 0.0;
    return 2.0 * heads * D / (peak[p] * PEAKS[p].products);
}
