/* SPDX-License-Identifier: MIT */
/*
 * engine_cores.c - the KVCE compute cores as integer datapaths (ENGINE.md
 * section 6): scale (restoring division by qmax, sticky, RNE to 11 bits),
 * quantize (a cycle-stepped core: decode, 21 restoring radix-2 division steps
 * with a guard and a sticky bit, round half to even and clamp, done: 24
 * cycles; the v0.2 core 25, or 4 on its early path), dequantize (|code| x
 * significand by shift-and-add, normalized into fp32) and the exact fp16 ->
 * fp32 widening of the v0.3 outlier lane.
 *
 * No floating point is used here on purpose: these are the datapaths an RTL
 * designer would build, and tests/test_engine_cores.c proves them bit for bit
 * against the codec core (cq_scale_from_amax, cq_quantize, cq_dequantize),
 * which is the contract. What does not live here: the FSM that schedules the
 * cores (engine_fsm.c) and the record layouts (engine_sram.c).
 */
#include "engine_internal.h"

/* Position of the most significant set bit (v != 0). */
static int msb64(uint64_t v) {
    int p = 0;
    while (v >>= 1) p++;
    return p;
}

/* Restoring radix-2 division: nbits quotient bits of num / den, MSB first, as
 * the hardware iterates it (shift remainder in, trial subtract, keep or
 * restore). num < den << nbits is required; *rem receives the remainder. */
static uint64_t restoring_div(uint64_t num, uint64_t den, int nbits, uint64_t *rem) {
    uint64_t r = 0, q = 0;
    for (int i = nbits - 1; i >= 0; i--) {
        r = (r << 1) | ((num >> i) & 1u);
        q <<= 1;
        if (r >= den) {
            r -= den;
            q |= 1u;
        }
    }
    *rem = r;
    return q;
}

/* Unpack an fp16 magnitude into sig * 2^exp (sig has no implicit-bit normalization
 * for subnormals). */
static void f16_unpack(uint16_t h, uint32_t *sig, int *exp) {
    uint32_t e = (h >> 10) & 0x1Fu, f = h & 0x3FFu;
    if (e == 0) {
        *sig = f;
        *exp = -24;
    } else {
        *sig = f | 0x400u;
        *exp = (int)e - 25;
    }
}

uint16_t cq_eng_scale_core(uint16_t amax, int qmax) {
    uint32_t a = amax & 0x7FFFu;
    if ((a >> 10) == 0x1Fu) return 0x7E00u; /* non-finite: outside the contract */
    if (qmax < 1) qmax = 1; /* the datapath is sized for qmax 1..127 */
    if (qmax > 127) qmax = 127;
    uint32_t sig;
    int E;
    f16_unpack((uint16_t)a, &sig, &E);
    /* The 2^-14 floor as an exact integer test on the unrounded quotient:
     * sig * 2^E / qmax <= 2^-14  <=>  sig << (E + 24) <= qmax << 10  (E + 24 in 0..29). */
    if (sig == 0 || ((uint64_t)sig << (E + 24)) <= ((uint64_t)qmax << 10)) return 0x0400u;
    /* Q = floor(sig * 2^24 / qmax): 35 quotient bits cover sig < 2^11 and qmax >= 1 */
    uint64_t R;
    uint64_t Q = restoring_div((uint64_t)sig << 24, (uint64_t)qmax, 36, &R);
    int p = msb64(Q); /* >= 17 for qmax <= 127 */
    int shift = p - 10;
    uint64_t m = Q >> shift;
    uint64_t low = Q & ((1ull << shift) - 1);
    uint64_t half = 1ull << (shift - 1);
    if (low > half || (low == half && (R != 0 || (m & 1u)))) m++;
    if (m == 0x800u) { /* rounding carried into a new binade */
        m = 0x400u;
        p++;
    }
    int field = p + E - 24 + 15; /* value = m * 2^(p - 10 + E - 24), 1 <= field <= 30 */
    if (field >= 31) return 0x7C00u; /* unreachable for qmax >= 1 and finite amax */
    return (uint16_t)(((uint32_t)field << 10) | (uint32_t)(m & 0x3FFu));
}

/* ------------------------------------------------------------ quantize core */

static void qcore_start(cq_eng_qcore *q, uint16_t x, uint16_t scale, int qmax, int rtl) {
    q->rtl = rtl;
    q->fast = 0;
    q->busy = 1;
    q->done = 0;
    q->phase = 0;
    q->code = 0;
    q->x = x;
    q->s = scale;
    q->qmax = qmax < 1 ? 1 : qmax > 127 ? 127 : qmax; /* sized for qmax 1..127 */
    q->early = 0;
    q->steps = 0;
}

void cq_eng_qcore_start(cq_eng_qcore *q, uint16_t x, uint16_t scale, int qmax) {
    qcore_start(q, x, scale, qmax, 0);
}

void cq_eng_qcore_start_rtl(cq_eng_qcore *q, uint16_t x, uint16_t scale, int qmax) {
    qcore_start(q, x, scale, qmax, 1);
}

/* The published core's early path (v0.2): x is +-0, the scale is 0 (its
 * significand is 0: the outlier channels' slot), or the difference of the
 * biased exponent fields is <= -2 (|x| < s/2 for certain) or >= 9 (far above
 * qmax + 1). Only the latency depends on it; the code is the same either way. */
static int rtl_early(uint16_t x, uint16_t s) {
    int xm = x & 0x7FFF, sm = s & 0x7FFF;
    if (xm == 0 || sm == 0) return 1;
    int d = (xm >> 10) - (sm >> 10);
    return d <= -2 || d >= 9;
}

static void div_step(cq_eng_qcore *q) {
    q->quo <<= 1;
    if (q->rem >= q->sig_s) {
        q->rem -= q->sig_s;
        q->quo |= 1u;
    }
    q->rem <<= 1;
    q->steps++;
}

static void round_clamp(cq_eng_qcore *q) {
    uint32_t n;
    if (q->early == 1) n = 0;
    else if (q->early == 2) n = (uint32_t)q->qmax + 2u;
    else {
        int sh = 19 - q->d; /* bits of quo below the half-unit position of |x|/s */
        uint32_t n2 = q->quo >> sh;
        int sticky = (q->quo & ((1u << sh) - 1u)) != 0 || q->rem != 0;
        n = n2 >> 1;
        if ((n2 & 1u) && (sticky || (n & 1u))) n++;
    }
    uint32_t lim = q->neg ? (uint32_t)q->qmax + 1u : (uint32_t)q->qmax;
    if (n > lim) n = lim;
    q->code = q->neg ? -(int)n : (int)n;
}

void cq_eng_qcore_clock(cq_eng_qcore *q) {
    if (!q->busy) return;
    int ph = q->phase++;
    if (ph == 0) { /* decode operands, normalize, early decisions */
        uint32_t sx, ss;
        int ex, es;
        q->neg = (q->x >> 15) & 1;
        if (q->rtl) q->fast = rtl_early(q->x, q->s);
        f16_unpack((uint16_t)(q->x & 0x7FFFu), &sx, &ex);
        f16_unpack((uint16_t)(q->s & 0x7FFFu), &ss, &es);
        if (sx == 0 || ss == 0) { /* zero input (a zero scale is outside the contract) */
            q->early = 1;
            return;
        }
        while (sx < 0x400u) sx <<= 1, ex--; /* leading-zero normalize (subnormal x) */
        while (ss < 0x400u) ss <<= 1, es--;
        q->sig_x = sx;
        q->sig_s = ss;
        q->d = ex - es; /* |x|/s = (sx/ss) * 2^d with sx/ss in (1/2, 2) */
        if (q->d <= -2) q->early = 1; /* certainly below one half: code 0 */
        else if (q->d >= 40 || (q->d >= 1 && (1ull << (q->d - 1)) >= (uint64_t)q->qmax + 2u))
            q->early = 2; /* certainly above qmax + 1: clamp */
        q->rem = sx;
        q->quo = 0;
        return;
    }
    if (q->rtl && q->fast) { /* the early path: select the code, register, done */
        if (ph == 1) {
            for (int i = 0; i < 21 && !q->early; i++) div_step(q);
            round_clamp(q);
        } else if (ph == CQ_ENG_QCORE_RTL_FAST - 1) {
            q->done = 1;
            q->busy = 0;
        }
        return;
    }
    if (ph <= 21) { /* one restoring step: 1 integer bit, then 20 fraction bits */
        if (!q->early) div_step(q);
        return;
    }
    if (ph == 22) { /* round half to even, then clamp */
        round_clamp(q);
        return;
    }
    /* ph 23 (v0.2: 24; its 23 registers the code) */
    if (ph == (q->rtl ? CQ_ENG_QCORE_RTL_CYCLES : CQ_ENG_QCORE_CYCLES) - 1) {
        q->done = 1;
        q->busy = 0;
    }
}

int cq_eng_quantize_core(uint16_t x, uint16_t scale, int qmax, int *cycles) {
    cq_eng_qcore q;
    cq_eng_qcore_start(&q, x, scale, qmax);
    int n = 0;
    while (!q.done) {
        cq_eng_qcore_clock(&q);
        n++;
    }
    if (cycles) *cycles = n;
    return q.code;
}

/* -------------------------------------------------------- dequantize core */

/* Normalize P * 2^E (P < 2^24, P > 0) into fp32 bits; exact for every product here. */
static uint32_t pack_f32(uint32_t sign, uint32_t P, int E) {
    int p = msb64(P);
    uint32_t expf = (uint32_t)(p + E + 127);
    uint32_t mant = (P << (23 - p)) & 0x7FFFFFu;
    return (sign << 31) | (expf << 23) | mant;
}

uint32_t cq_eng_dequant_core(int code, uint16_t field) {
    uint32_t mag = (uint32_t)(code < 0 ? -code : code); /* |code| <= 128 */
    uint32_t sign = (uint32_t)(code < 0) ^ ((field >> 15) & 1u);
    uint32_t sig;
    int E;
    if (((field >> 10) & 0x1Fu) == 0x1Fu) return (sign << 31) | 0x7FC00000u; /* outside contract */
    f16_unpack((uint16_t)(field & 0x7FFFu), &sig, &E);
    uint32_t P = 0; /* shift-and-add multiplier: |code| <= 128, sig < 2^11 */
    for (int b = 0; b < 8; b++)
        if ((mag >> b) & 1u) P += sig << b;
    if (P == 0) return 0; /* the v0.2 datapath: a zero product is +0.0 */
    return pack_f32(sign, P, E);
}

uint32_t cq_eng_widen_core(uint16_t h) {
    uint32_t sign = (h >> 15) & 1u;
    uint32_t e = (h >> 10) & 0x1Fu, f = h & 0x3FFu;
    if (e == 0x1Fu) return (sign << 31) | 0x7F800000u | (f << 13);
    if (e == 0 && f == 0) return sign << 31; /* -0.0 stays -0.0 */
    uint32_t sig;
    int E;
    f16_unpack((uint16_t)(h & 0x7FFFu), &sig, &E);
    return pack_f32(sign, sig, E);
}
