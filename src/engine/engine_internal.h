/*
 * engine_internal.h - the private state of the KVCE model, shared by the
 * files of src/engine/ (registers, FSM, SRAM records, cores, driver). Not a
 * public header: software sees only include/cq_engine.h.
 */
#ifndef CQ_ENGINE_INTERNAL_H
#define CQ_ENGINE_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "cq_engine.h"

#define ENG_READ_FIFO 4u        /* v0.3 read queue depth */
#define ENG_DEFAULT_TIMEOUT 64u /* v0.3 READ_TIMEOUT reset value */
#define ENG_MAX_LANES CQ_MAX_DIM

struct cq_engine {
    /* ---- construction parameters */
    cq_engine_rev rev;
    cq_tier tier;
    uint32_t D, G, k, depth, lanes, addr_bits;
    int qmax_k, qmax_v;        /* 7 or 127 */
    unsigned vbits;            /* value (and CQ-8 key) code width: 4 or 8 */
    uint8_t rom_mask[CQ_MAX_DIM]; /* build-time mask (hard reset restores it) */

    /* ---- SRAM geometry (engine_sram.c) */
    uint32_t row_bits, row_words;
    uint32_t key_bits, val_bits; /* content bits of each record kind, tag included */
    uint32_t sets, set_idx_bits; /* v0.3 scale table */
    uint64_t *sram;              /* depth * row_words */
    uint8_t *valid;              /* depth */
    uint16_t *set_scale;         /* sets * D */
    uint8_t *set_mask;           /* sets * D */
    uint32_t next_set, last_set;

    /* ---- registers */
    int enable, auto_inc;
    uint32_t write_addr, read_addr, kv_select, irq_mask, irq_status;
    uint32_t occupancy, read_timeout, err_addr;
    uint32_t mask_shadow[CQ_ENG_MASK_WORDS];
    uint8_t mask[CQ_MAX_DIM]; /* active outlier mask */

    /* ---- FSM */
    cq_engine_state st;
    uint64_t cycle;
    uint64_t st_cycles[CQ_ES_COUNT_];
    uint32_t beat;   /* beats of the current token received */
    int flush_req;   /* v0.3 FLUSH pending */

    /* value path */
    uint16_t vbuf[CQ_MAX_DIM];
    uint16_t vamax, vscale;
    int vcode[CQ_MAX_DIM];
    int v_is_key;      /* CQ-8 key token through the value path */
    uint32_t vaddr;

    /* key path */
    uint16_t *resid;   /* G * D fp16: the residual buffer */
    uint32_t gcount;   /* tokens in the open group */
    uint32_t gbase;    /* base address latched on the first token */
    uint32_t gflush;   /* tokens being emitted */
    uint16_t kamax[CQ_MAX_DIM], kscale[CQ_MAX_DIM];
    int kcode[CQ_MAX_DIM];
    uint32_t emit_tok;

    /* shared sub-phase counters (scale / quantize walkers) */
    uint32_t sub;      /* cycle within the current phase */
    uint32_t chan;     /* next channel to start on the quantize units */
    cq_eng_qcore qc[ENG_MAX_LANES];
    uint32_t qc_chan[ENG_MAX_LANES];
    int qc_n;          /* units busy in this batch */

    /* read path */
    int rd_pending;    /* v0.2 single pending flag */
    uint32_t rd_fifo[ENG_READ_FIFO];
    uint32_t rd_head, rd_count;
    uint32_t raddr;
    uint32_t rwait;    /* cycles spent in RWAIT */
    int rsrc;          /* 0 SRAM, 1 residual row, -1 not answerable */
    uint32_t obuf[CQ_MAX_DIM];
    uint32_t oidx;

    /* beats presented and lost (v0.2 ignores tready) */
    uint64_t beats_lost;

    FILE *trace;
};

/* engine_sram.c */
cq_status eng_sram_init(cq_engine *e, cq_err *err);
void eng_sram_clear(cq_engine *e);
void eng_sram_free(cq_engine *e);
uint64_t eng_get_bits(const uint64_t *row, uint32_t pos, uint32_t n);
void eng_put_bits(uint64_t *row, uint32_t pos, uint32_t n, uint64_t v);
/* Write records (mark valid, count occupancy). addr must be < depth. */
void eng_store_value(cq_engine *e, uint32_t addr, const int *codes, uint16_t scale);
void eng_store_key(cq_engine *e, uint32_t addr, const int *codes, const uint16_t *raw_token,
                   uint32_t set);
/* Decode a stored record into D fp32 beats through the dequantize core. */
void eng_decode_record(const cq_engine *e, uint32_t addr, uint32_t *beats);
void eng_invalidate(cq_engine *e, uint32_t addr);

/* engine_regs.c */
void eng_regs_reset(cq_engine *e);
void eng_soft_reset(cq_engine *e);
uint32_t eng_cr(const cq_engine *e, int key);
void eng_raise(cq_engine *e, uint32_t irq_bit, uint32_t addr);
int eng_idle(const cq_engine *e);
int eng_irq_line(const cq_engine *e);

/* engine_fsm.c */
int eng_read_queue_empty(const cq_engine *e);

#endif
