/*
 * kernels_x86.h - internal pieces shared by the x86 kernel files (kernels_avx2.c,
 * kernels_avx512.c); included only by them. Not a public header.
 */
#ifndef CQ_KERNELS_X86_H
#define CQ_KERNELS_X86_H

#include <stdint.h>

#include "cq_kernels.h"

#define HC 4 /* query heads per register block (GQA heads share each unpack) */
/* Software prefetch distance of the INT4 streaming loops, in bytes (a prefetch may
 * point past the buffer: prefetches never fault). */
#define PF_AHEAD 2048
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Run BLK(NH) with NH a compile-time constant 1..4, so that the per-head
 * accumulator arrays are unrolled into registers. */
#define NH_SWITCH(nhc, BLK)                                                                        \
    switch (nhc) {                                                                                 \
    case 1: BLK(1); break;                                                                         \
    case 2: BLK(2); break;                                                                         \
    case 3: BLK(3); break;                                                                         \
    default: BLK(4); break;                                                                        \
    }

/* The 7-bit weights of one acc_i4q tile for up to 4 query heads (cq_kernels.h rule). */
typedef struct cq_i4q_tile {
    uint8_t wb[4][CQ_V8_TILE] __attribute__((aligned(32))); /* a8 per token, 0 past m */
    int32_t S8[4];                                           /* 8 * sum a8 */
    float d[4];                                              /* A / CQ_V8_MAX */
    int on[4];                                               /* A > 2^-100 */
} cq_i4q_tile;

/* Heads [0, nhc) (nhc <= 4) of the tile of m tokens whose first weight is w[0] (rows of
 * stride ws) and first value scale vs[0]. Defined in kernels_avx2.c. */
void cq_avx2_i4q_prep(const float *w, uint32_t ws, uint32_t nhc, uint32_t m, const uint16_t *vs,
                      cq_i4q_tile *tl);

#endif
