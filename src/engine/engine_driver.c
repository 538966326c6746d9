/* SPDX-License-Identifier: MIT */
/*
 * engine_driver.c - a small driver for the KVCE model, written the way
 * firmware drives the chip: register writes, one beat per clock on the write
 * port, beats collected from the read port. It only looks at what the pins and
 * registers show: token_ready is s_tready at a token boundary, and waiting for
 * idle reads STATUS.IDLE without a bus access (so the trace is not flooded
 * with polling). What is not here: the model itself
 * (engine_fsm.c, engine_regs.c) and the command line (tools/cmd_engine.c).
 */
#include <string.h>

#include "engine_internal.h"

/* Generous bound on the cycles any single operation may take. */
static uint64_t op_limit(const cq_engine *e) {
    uint64_t per_tok = (uint64_t)e->D + 8u + CQ_ENG_QCORE_RTL_CYCLES * (uint64_t)e->D + 1u;
    return 4096u + 2u * per_tok * (uint64_t)(e->G + 1u) + 4u * e->D;
}

cq_status cq_engine_drv_wait_idle(cq_engine *e, uint64_t max_cycles, cq_err *err) {
    if (!e) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "engine is NULL");
    if (!max_cycles) max_cycles = op_limit(e);
    for (uint64_t n = 0; !eng_idle(e); n++) {
        if (n >= max_cycles)
            return cq_err_set(err, CQ_ERR_STATE, -1, -1, "engine not idle after %llu cycles (%s)",
                              (unsigned long long)n, cq_engine_state_name(e->st));
        cq_engine_step(e, NULL, NULL);
    }
    return CQ_OK;
}

cq_status cq_engine_drv_init(cq_engine *e, cq_err *err) {
    if (!e) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "engine is NULL");
    cq_engine_reg_write(e, CQ_ENG_CTRL, CQ_ENG_CTRL_SOFT_RESET | CQ_ENG_CTRL_ENABLE);
    uint32_t ver = cq_engine_reg_read(e, CQ_ENG_INFO_VERSION);
    uint32_t want = e->rev == CQ_ENGINE_V03 ? CQ_ENG_VERSION_V03 : CQ_ENG_VERSION_V02;
    if (ver != want || cq_engine_reg_read(e, CQ_ENG_INFO_DIM) != e->D ||
        cq_engine_reg_read(e, CQ_ENG_INFO_TIER) != (uint32_t)e->tier)
        return cq_err_set(err, CQ_ERR_STATE, -1, -1, "INFO registers disagree with the instance");
    if (e->rev == CQ_ENGINE_V03) cq_engine_reg_write(e, CQ_ENG_IRQ_MASK, 0x1Fu);
    return CQ_OK;
}

static cq_status wait_token_ready(cq_engine *e, cq_err *err) {
    uint64_t lim = op_limit(e);
    for (uint64_t n = 0; !cq_engine_token_ready(e); n++) {
        if (n >= lim)
            return cq_err_set(err, CQ_ERR_STATE, -1, -1,
                              "write port not ready after %llu cycles (%s, enable=%d)",
                              (unsigned long long)n, cq_engine_state_name(e->st), e->enable);
        cq_engine_step(e, NULL, NULL);
    }
    return CQ_OK;
}

cq_status cq_engine_drv_push_token(cq_engine *e, const uint16_t *x, int is_value, int write_addr,
                                   uint32_t addr, uint64_t *cycles, cq_err *err) {
    if (!e || !x) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "engine or token is NULL");
    uint64_t c0 = e->cycle;
    cq_status st = wait_token_ready(e, err);
    if (st) return st;
    if (write_addr) cq_engine_reg_write(e, CQ_ENG_WRITE_ADDR, addr);
    uint64_t lim = op_limit(e), n = 0;
    for (uint32_t b = 0; b < e->D;) {
        cq_engine_in in = {1, x[b], is_value, b == e->D - 1u, 1};
        cq_engine_out o;
        cq_engine_step(e, &in, &o);
        if (o.s_fire) b++;
        if (++n >= lim)
            return cq_err_set(err, CQ_ERR_STATE, -1, (int32_t)b, "beat %u never accepted", b);
    }
    st = wait_token_ready(e, err);
    if (cycles) *cycles = e->cycle - c0;
    return st;
}

cq_status cq_engine_drv_flush(cq_engine *e, uint64_t *cycles, cq_err *err) {
    if (!e) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "engine is NULL");
    if (e->rev != CQ_ENGINE_V03)
        return cq_err_set(err, CQ_ERR_UNSUPPORTED, -1, -1,
                          "v0.2 has no flush: a partial key group never completes");
    uint64_t c0 = e->cycle;
    uint32_t ctrl = cq_engine_reg_read(e, CQ_ENG_CTRL) & (CQ_ENG_CTRL_ENABLE | CQ_ENG_CTRL_AUTO_INC);
    cq_engine_reg_write(e, CQ_ENG_CTRL, ctrl | CQ_ENG_CTRL_FLUSH);
    cq_status st = cq_engine_drv_wait_idle(e, 0, err);
    if (cycles) *cycles = e->cycle - c0;
    return st;
}

/* Fold one span into a min / max pair (n spans folded before). */
static void span(uint64_t *mn, uint64_t *mx, uint64_t n, uint64_t v) {
    if (n == 0 || v < *mn) *mn = v;
    if (n == 0 || v > *mx) *mx = v;
}

cq_status cq_engine_drv_push_kv(cq_engine *e, const uint16_t *K, const uint16_t *V, uint32_t T,
                                uint32_t kbase, uint32_t vbase, uint32_t *keys_stored,
                                cq_engine_drv_stats *stats, cq_err *err) {
    if (!e || !K || !V) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "engine or tensor is NULL");
    cq_engine_drv_stats local;
    cq_engine_drv_stats *s = stats ? stats : &local;
    uint32_t D = e->D, G = e->G;
    int grouped = e->tier != CQ_TIER_CQ8;
    cq_status st = CQ_OK;
    uint64_t cyc;
    uint32_t kstored = 0;
#define PUSH(ptr, isv, wa, addr, kind)                                                         \
    do {                                                                                           \
        st = cq_engine_drv_push_token(e, ptr, isv, wa, addr, &cyc, err);                           \
        if (st) goto done;                                                                         \
        s->kind##_cycles += cyc;                                                                   \
        span(&s->kind##_min, &s->kind##_max, s->kind##_tokens++, cyc);                             \
    } while (0)
    if (!grouped) {
        for (uint32_t t = 0; t < T; t++) {
            PUSH(K + (size_t)t * D, 0, 1, kbase + t, key);
            PUSH(V + (size_t)t * D, 1, 1, vbase + t, val);
        }
        kstored = T;
    } else if (e->rev == CQ_ENGINE_V03) {
        for (uint32_t t = 0; t < T; t++) {
            PUSH(K + (size_t)t * D, 0, t % G == 0, kbase + t, key);
            PUSH(V + (size_t)t * D, 1, 1, vbase + t, val);
        }
        if (T % G) {
            st = cq_engine_drv_flush(e, &cyc, err);
            if (st) goto done;
            s->key_cycles += cyc;
        }
        kstored = T;
    } else {
        /* v0.2: keys must come as whole groups, back to back (gap 1) */
        uint32_t full = T / G * G;
        for (uint32_t g0 = 0; g0 < full; g0 += G) {
            for (uint32_t t = g0; t < g0 + G; t++)
                PUSH(K + (size_t)t * D, 0, t == g0, kbase + t, key);
            for (uint32_t t = g0; t < g0 + G; t++)
                PUSH(V + (size_t)t * D, 1, 1, vbase + t, val);
        }
        for (uint32_t t = full; t < T; t++)
            PUSH(V + (size_t)t * D, 1, 1, vbase + t, val);
        kstored = full;
    }
#undef PUSH
done:
    if (keys_stored) *keys_stored = kstored;
    return st;
}

cq_status cq_engine_drv_read(cq_engine *e, uint32_t addr, uint32_t *out, uint64_t max_wait,
                             uint64_t *cycles, cq_err *err) {
    if (!e || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "engine or output is NULL");
    if (!max_wait) max_wait = 4096u + 4u * (uint64_t)e->D;
    uint64_t c0 = e->cycle;
    cq_engine_reg_write(e, CQ_ENG_READ_ADDR, addr);
    uint32_t got = 0;
    for (uint64_t n = 0; got < e->D; n++) {
        if (n >= max_wait)
            return cq_err_set(err, CQ_ERR_STATE, -1, -1,
                              "read of record %u: %u of %u beats after %llu cycles, engine still "
                              "in %s",
                              addr, got, e->D, (unsigned long long)n,
                              cq_engine_state_name(e->st));
        cq_engine_out o;
        cq_engine_step(e, NULL, &o);
        if (o.m_tvalid && o.m_fire) {
            out[got++] = o.m_tdata;
            if (o.m_tlast != (got == e->D))
                return cq_err_set(err, CQ_ERR_FORMAT, -1, (int32_t)got, "tlast on beat %u", got);
        }
        if (o.irq) {
            uint32_t irq = cq_engine_reg_read(e, CQ_ENG_IRQ_STATUS);
            if (irq & CQ_ENG_IRQ_RD_ERR) {
                cq_engine_reg_write(e, CQ_ENG_IRQ_STATUS, CQ_ENG_IRQ_RD_ERR);
                return cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                                  "read of record %u: RD_ERR (unwritten or out of range)", addr);
            }
        }
    }
    if (cycles) *cycles = e->cycle - c0;
    return CQ_OK;
}
