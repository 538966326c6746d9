/* SPDX-License-Identifier: MIT */
/*
 * engine_fsm.c - the KVCE clock: one call of cq_engine_step is one cycle.
 * Combinational outputs (s_tready, the read beat, irq) are computed from the
 * state at the start of the cycle, the stream handshakes happen, then the
 * state machine of ENGINE.md section 5 advances:
 *
 *   value path  IDLE -(beat 0)-> COLLECT (D-1 beats) -> COMPRESS (scale, the
 *               quantize walk, pack) -> STORE -> IDLE
 *   key path    IDLE -(beat 0)-> KCOLLECT (D-1 beats) -> KACCEPT (2) ->
 *               [G-th token] KFEED (D scale cycles, + drain) -> KEMIT (per token
 *               the quantize walk + 1 record write) -> IDLE
 *   read path   IDLE (pending read) -> RLOAD (1) -> RWAIT (SRAM read; v0.2 forever
 *               on an unwritten address, v0.3 up to READ_TIMEOUT) -> OUTPUT (D beats)
 *
 * The cycles of each phase and the behaviours that differ between v0.2 (the
 * published RTL) and v0.3 come from the revision's row of engine_rev.c. Beats
 * shift into a collect register at lane D-1, so a token ended early by tlast
 * (v0.2) is compressed shift-filled into the top lanes. v0.2 keeps KCOLLECT
 * between the tokens of a group (so tuser is ignored and READ_ADDR writes are
 * lost until the group completes); v0.3 returns to IDLE between tokens with the
 * group held open. Cycle counts are not formulas: they come out of this
 * execution (cq_engine_state_cycles, CYCLE_COUNT).
 * Registers are in engine_regs.c, record layouts in engine_sram.c.
 */
#include <string.h>

#include "engine_internal.h"

static const char *const state_names[CQ_ES_COUNT_] = {
    "IDLE", "COLLECT", "COMPRESS", "STORE", "KCOLLECT", "KFEED",
    "KACCEPT", "KEMIT", "RLOAD", "RWAIT", "OUTPUT"};

const char *cq_engine_state_name(cq_engine_state s) {
    return (unsigned)s < CQ_ES_COUNT_ ? state_names[s] : "?";
}
cq_engine_state cq_engine_get_state(const cq_engine *e) { return e->st; }
uint64_t cq_engine_cycles(const cq_engine *e) { return e->cycle; }
void cq_engine_state_cycles(const cq_engine *e, uint64_t out[CQ_ES_COUNT_]) {
    memcpy(out, e->st_cycles, sizeof e->st_cycles);
}

int eng_read_queue_empty(const cq_engine *e) {
    return e->rev == CQ_ENGINE_V02 ? !e->rd_pending : e->rd_count == 0;
}

static int in_read(const cq_engine *e) {
    return e->st == CQ_ES_RLOAD || e->st == CQ_ES_RWAIT || e->st == CQ_ES_OUTPUT;
}

/* Can the write port take a beat this cycle? (v0.2, R1: also while a read is
 * served, and those beats are dropped) */
static int s_ready(const cq_engine *e) {
    if (!e->enable) return 0;
    switch (e->st) {
    case CQ_ES_IDLE:
        /* a pending read (and in v0.3 a pending flush) has priority over a new token */
        return eng_read_queue_empty(e) && !e->flush_req;
    case CQ_ES_COLLECT:
    case CQ_ES_KCOLLECT: return 1;
    default: return in_read(e) && e->tr->tready_in_read;
    }
}

int cq_engine_token_ready(const cq_engine *e) {
    return s_ready(e) && e->beat == 0 && e->st != CQ_ES_COLLECT;
}

/* ---------------------------------------------------- quantize walker */

/* Start up to `lanes` quantize units on the next channels of row. */
static void walk_start(cq_engine *e, const uint16_t *row, int key) {
    uint32_t n = 0;
    while (n < e->lanes && e->chan < e->D) {
        uint32_t c = e->chan++;
        /* an outlier channel still occupies its slot with its scale of 0; its
         * code is unused */
        uint16_t s = key ? e->kscale[c] : e->vscale;
        int qmax = key ? e->qmax_k : e->qmax_v;
        if (e->tr->rtl_qcore) cq_eng_qcore_start_rtl(&e->qc[n], row[c], s, qmax);
        else cq_eng_qcore_start(&e->qc[n], row[c], s, qmax);
        e->qc_chan[n++] = c;
    }
    e->qc_n = (int)n;
}

/* Clock the busy units; when the batch is done collect the codes and start the
 * next one. Returns 1 when every channel has its code. */
static int walk_clock(cq_engine *e, const uint16_t *row, int key, int *codes) {
    int done = 1;
    for (int i = 0; i < e->qc_n; i++) {
        cq_eng_qcore_clock(&e->qc[i]);
        done &= e->qc[i].done;
    }
    if (!done) return 0; /* a batch ends when its slowest unit is done */
    for (int i = 0; i < e->qc_n; i++) {
        codes[e->qc_chan[i]] = e->qc[i].code;
        e->q_total++;
        e->q_fast += (uint64_t)e->qc[i].fast;
    }
    if (e->chan >= e->D) return 1;
    walk_start(e, row, key);
    return 0;
}

/* ------------------------------------------------------------ helpers */

static uint16_t mag16(uint16_t h) { return (uint16_t)(h & 0x7FFFu); }

static void frame_error(cq_engine *e) {
    eng_raise(e, CQ_ENG_IRQ_FRAME, e->write_addr);
    e->beat = 0;
    e->st = CQ_ES_IDLE;
}

/* A beat enters the collect register at lane D-1; the lanes below shift down. */
static void shift_in(cq_engine *e, uint16_t x) {
    memmove(e->sreg, e->sreg + 1, (e->D - 1u) * sizeof(uint16_t));
    e->sreg[e->D - 1u] = x;
}

/* v0.2 R2: the key records of a flush aborted by soft reset are written at the
 * base of the next group, latched by its first token. */
static void write_stale_keys(cq_engine *e) {
    int codes[CQ_MAX_DIM];
    for (uint32_t i = e->kstale_from; i < e->kstale_n; i++) {
        uint32_t a = (e->gbase + i) & eng_addr_mask(e);
        for (uint32_t c = 0; c < e->D; c++) codes[c] = e->kstale_codes[(size_t)i * e->D + c];
        if (a < e->depth)
            eng_store_key(e, a, codes, e->kstale_rows + (size_t)i * e->D, e->kstale_scale, 0);
    }
    e->kstale_n = 0;
}

/* The token's beats are in: D of them, or fewer when v0.2 saw an early tlast. */
static void end_token(cq_engine *e, int key) {
    e->beat = 0;
    e->sub = 0;
    if (key) {
        memcpy(e->resid + (size_t)e->gcount * e->D, e->sreg, e->D * sizeof(uint16_t));
        e->st = CQ_ES_KACCEPT;
        return;
    }
    if (e->vstale) { /* v0.2 R2: this token is lost; the aborted one is stored */
        e->vstale = 0;
        e->st = CQ_ES_STORE;
        return;
    }
    memcpy(e->vbuf, e->sreg, e->D * sizeof(uint16_t));
    e->vamax = 0;
    for (uint32_t c = 0; c < e->D; c++)
        if (mag16(e->vbuf[c]) > e->vamax) e->vamax = mag16(e->vbuf[c]);
    e->st = CQ_ES_COMPRESS;
}

/* One accepted beat of the current token (beat 0 included). */
static void take_beat(cq_engine *e, const cq_engine_in *in, int key) {
    shift_in(e, in->s_tdata);
    if (++e->beat == e->D || (e->tr->tlast_shift && in->s_tlast)) end_token(e, key);
}

/* First beat of a token, taken in IDLE. */
static void first_beat(cq_engine *e, const cq_engine_in *in) {
    int is_value = in->s_tuser != 0;
    if (e->rev == CQ_ENGINE_V03 && (e->kv_select & 2u)) is_value = (int)(e->kv_select & 1u);
    if (!e->tr->tlast_shift && in->s_tlast && e->D > 1) { /* early tlast: FRAME */
        frame_error(e);
        return;
    }
    e->beat = 0;
    if (e->tier == CQ_TIER_CQ8 || is_value) {
        e->v_is_key = !is_value;
        if (!e->tr->waddr_at_store) e->vaddr = e->write_addr;
        e->st = CQ_ES_COLLECT;
        take_beat(e, in, 0);
    } else {
        if (e->gcount == 0) {
            e->gbase = e->write_addr;
            if (e->kstale_n) write_stale_keys(e);
        }
        e->st = CQ_ES_KCOLLECT;
        take_beat(e, in, 1);
    }
}

static void start_read(cq_engine *e) {
    if (e->rev == CQ_ENGINE_V02) {
        e->raddr = e->read_addr;
        e->rd_pending = 0;
    } else {
        e->raddr = e->rd_fifo[e->rd_head];
        e->rd_head = (e->rd_head + 1u) % ENG_READ_FIFO;
        e->rd_count--;
    }
    e->st = CQ_ES_RLOAD;
}

/* Scale-table entry for the group being flushed (v0.3). */
static void write_scale_set(cq_engine *e) {
    if (e->rev != CQ_ENGINE_V03 || !e->sets) return;
    uint32_t s = e->next_set;
    e->next_set = (e->next_set + 1u) % e->sets;
    e->last_set = s;
    for (uint32_t c = 0; c < e->D; c++) {
        e->set_scale[(size_t)s * e->D + c] = e->mask[c] ? 0 : e->kscale[c];
        e->set_mask[(size_t)s * e->D + c] = e->mask[c];
    }
}

/* Record address of token i of the group: v0.2 wraps at the address width and
 * drops silently past SRAM_DEPTH; v0.3 does not wrap and reports. */
static void emit_record(cq_engine *e) {
    uint32_t i = e->emit_tok;
    const uint16_t *row = e->resid + (size_t)i * e->D;
    if (e->rev == CQ_ENGINE_V02) {
        uint32_t a = (e->gbase + i) & eng_addr_mask(e);
        if (a < e->depth) eng_store_key(e, a, e->kcode, row, e->kscale, 0);
    } else {
        uint32_t a = e->gbase + i;
        if (a < e->depth) eng_store_key(e, a, e->kcode, row, e->kscale, e->last_set);
        else eng_raise(e, CQ_ENG_IRQ_WR_RANGE, a);
    }
}

/* ------------------------------------------------------------- the FSM */

static void advance(cq_engine *e, const cq_engine_in *in, int s_fire, int m_fire) {
    uint32_t D = e->D;
    switch (e->st) {
    case CQ_ES_IDLE:
        if (!e->enable) break;
        if (!eng_read_queue_empty(e)) {
            start_read(e);
            break;
        }
        if (e->flush_req) {
            e->flush_req = 0;
            if (e->gcount > 0) {
                e->gflush = e->gcount;
                e->sub = 0;
                e->st = CQ_ES_KFEED;
            }
            break;
        }
        if (s_fire) first_beat(e, in);
        break;

    case CQ_ES_COLLECT:
        if (!s_fire) break;
        if (!e->tr->tlast_shift && in->s_tlast && e->beat != D - 1u) {
            frame_error(e);
            break;
        }
        take_beat(e, in, 0);
        break;

    case CQ_ES_COMPRESS: {
        /* sub 0 .. scale_cycles-1: the scale core (and its register); then the
         * quantize walk; then pack_cycles */
        uint32_t sc = e->tr->scale_cycles;
        if (e->sub < sc) {
            if (e->sub == 0) e->vscale = cq_eng_scale_core(e->vamax, e->qmax_v);
            if (++e->sub == sc) {
                e->chan = 0;
                walk_start(e, e->vbuf, 0);
            }
            break;
        }
        if (e->sub == sc) {
            if (walk_clock(e, e->vbuf, 0, e->vcode)) e->sub++;
            else break;
            if (e->tr->pack_cycles) break;
        } else if (++e->sub <= sc + e->tr->pack_cycles) {
            break;
        }
        e->sub = 0;
        e->st = CQ_ES_STORE;
        break;
    }

    case CQ_ES_STORE:
        if (e->sub == 0 && e->tr->waddr_at_store) e->vaddr = e->write_addr; /* item 5, R3 */
        if (++e->sub < e->tr->store_cycles) break;
        e->sub = 0;
        if (e->vaddr < e->depth) eng_store_value(e, e->vaddr, e->vcode, e->vscale);
        else eng_raise(e, CQ_ENG_IRQ_WR_RANGE, e->vaddr); /* v0.2: dropped silently */
        if (e->rev == CQ_ENGINE_V03 && e->auto_inc) e->write_addr = (e->write_addr + 1u) & 0xFFFFu;
        e->st = CQ_ES_IDLE;
        break;

    case CQ_ES_KCOLLECT:
        if (!s_fire) break;
        /* beat 0 in v0.2: the next token of the open group, whatever its tuser */
        if (e->beat != 0 && !e->tr->tlast_shift && in->s_tlast && e->beat != D - 1u) {
            frame_error(e); /* the token is dropped; the group keeps its earlier tokens */
            break;
        }
        take_beat(e, in, 1);
        break;

    case CQ_ES_KACCEPT:
        if (e->sub++ == 0) break; /* cycle 1: residual-buffer write */
        /* cycle 2: channel amax update and group count; the group's first token
         * restarts the amax (item 3: abandoned tokens never reach a new group) */
        for (uint32_t c = 0; c < D; c++) {
            uint16_t a = mag16(e->resid[(size_t)e->gcount * D + c]);
            if (e->gcount == 0 || a > e->kamax[c]) e->kamax[c] = a;
        }
        e->gcount++;
        e->sub = 0;
        if (e->gcount == e->G) {
            e->gflush = e->G;
            e->st = CQ_ES_KFEED;
        } else {
            e->st = e->rev == CQ_ENGINE_V02 ? CQ_ES_KCOLLECT : CQ_ES_IDLE;
        }
        break;

    case CQ_ES_KFEED: { /* one channel scale per cycle through the scale core, then drain */
        uint32_t c = e->sub++;
        if (c < D) e->kscale[c] = e->mask[c] ? 0 : cq_eng_scale_core(e->kamax[c], e->qmax_k);
        if (e->sub == D + e->tr->kfeed_extra) {
            write_scale_set(e);
            e->emit_tok = 0;
            e->chan = 0;
            e->sub = 0;
            walk_start(e, e->resid, 1);
            e->st = CQ_ES_KEMIT;
        }
        break;
    }

    case CQ_ES_KEMIT: {
        const uint16_t *row = e->resid + (size_t)e->emit_tok * D;
        if (e->sub == 0) {
            if (walk_clock(e, row, 1, e->kcode)) e->sub = 1;
            break;
        }
        emit_record(e); /* the record-write cycle */
        e->sub = 0;
        if (++e->emit_tok < e->gflush) {
            e->chan = 0;
            walk_start(e, e->resid + (size_t)e->emit_tok * D, 1);
            break;
        }
        memset(e->kamax, 0, sizeof e->kamax);
        if (e->rev == CQ_ENGINE_V03 && e->auto_inc)
            e->write_addr = (e->gbase + e->gflush) & 0xFFFFu;
        e->gcount = 0;
        e->st = CQ_ES_IDLE;
        break;
    }

    case CQ_ES_RLOAD: {
        uint32_t a = e->raddr;
        if (e->rev == CQ_ENGINE_V03 && e->gcount > 0 && a >= e->gbase && a - e->gbase < e->gcount)
            e->rsrc = 1; /* in-flight group: the residual buffer answers */
        else if (a < e->depth && e->valid[a]) e->rsrc = 0;
        else e->rsrc = -1;
        e->rwait = 0;
        e->st = CQ_ES_RWAIT;
        break;
    }

    case CQ_ES_RWAIT:
        if (e->rsrc >= 0 && ++e->rwait < e->tr->read_wait) break; /* registered SRAM read */
        if (e->rsrc == 0) {
            eng_decode_record(e, e->raddr, e->obuf);
        } else if (e->rsrc == 1) {
            const uint16_t *row = e->resid + (size_t)(e->raddr - e->gbase) * D;
            for (uint32_t c = 0; c < D; c++) e->obuf[c] = cq_eng_widen_core(row[c]);
        } else {
            /* v0.2 (gap 3): waits for a record that never comes, until soft reset */
            e->rwait++;
            if (e->rev == CQ_ENGINE_V03 && e->rwait >= e->read_timeout) {
                eng_raise(e, CQ_ENG_IRQ_RD_ERR, e->raddr);
                e->st = CQ_ES_IDLE;
            }
            break;
        }
        e->oidx = 0;
        e->st = CQ_ES_OUTPUT;
        break;

    case CQ_ES_OUTPUT:
        if (!m_fire) break;
        if (++e->oidx == D) {
            e->oidx = 0;
            e->st = CQ_ES_IDLE;
        }
        break;

    default: e->st = CQ_ES_IDLE; break;
    }
}

void cq_engine_step(cq_engine *e, const cq_engine_in *in, cq_engine_out *out) {
    static const cq_engine_in none = {0, 0, 0, 0, 1};
    if (!e) return;
    if (!in) in = &none;
    cq_engine_out o;
    memset(&o, 0, sizeof o);
    o.cycle = e->cycle;
    eng_rp_cycle(e);
    o.s_tready = s_ready(e);
    o.s_fire = in->s_tvalid && o.s_tready;
    if (e->st == CQ_ES_OUTPUT) {
        o.m_tvalid = 1;
        o.m_tdata = e->obuf[e->oidx];
        o.m_tlast = e->oidx == e->D - 1u;
        /* v0.2 (gap 6) ignores tready: the beat leaves whether or not it is taken */
        o.m_fire = in->m_tready || e->rev == CQ_ENGINE_V02;
        o.m_lost = !in->m_tready && e->rev == CQ_ENGINE_V02;
        if (o.m_lost) e->beats_lost++;
    }
    o.irq = eng_irq_line(e);
    if (o.s_fire && in_read(e)) { /* v0.2 R1: accepted while a read is served, dropped */
        o.s_dropped = 1;
        e->beats_dropped++;
    }
    if (e->trace) {
        if (o.s_fire)
            fprintf(e->trace, "%c %llu %04x %d %d\n", o.s_dropped ? 'X' : 'S',
                    (unsigned long long)e->cycle, in->s_tdata, in->s_tuser ? 1 : 0,
                    in->s_tlast ? 1 : 0);
        if (o.m_tvalid && o.m_fire)
            fprintf(e->trace, "%c %llu %08x %d\n", o.m_lost ? 'L' : 'M',
                    (unsigned long long)e->cycle, o.m_tdata, o.m_tlast);
    }
    if (o.s_fire && !o.s_dropped)
        eng_rp_beat_in(e, in, e->st == CQ_ES_IDLE || (e->st == CQ_ES_KCOLLECT && e->beat == 0));
    if (o.m_tvalid && o.m_fire && !o.m_lost) eng_rp_beat_out(e, o.m_tdata, o.m_tlast);
    e->st_cycles[e->st]++;
    advance(e, in, o.s_fire, o.m_tvalid && o.m_fire);
    e->cycle++;
    if (out) *out = o;
}
