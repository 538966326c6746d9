/*
 * kernels_x86.h - internal pieces shared by the x86 kernel files (kernels_avx2.c,
 * kernels_avx512.c); included only by them. Not a public header.
 */
#ifndef CQ_KERNELS_X86_H
#define CQ_KERNELS_X86_H

#include <stdint.h>

#include "cq_kernels.h"

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
