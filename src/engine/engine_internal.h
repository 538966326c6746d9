/* SPDX-License-Identifier: MIT */
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

/* What differs between the revisions, as data (engine_rev.c): the published
 * block's timing and behaviours (v0.2) against our revision's (v0.3). */
typedef struct eng_traits {
    int rtl_qcore;          /* quantize core latency 25 / 4 (else a flat 24) */
    uint32_t scale_cycles;  /* COMPRESS cycles before the quantize walk */
    uint32_t pack_cycles;   /* COMPRESS cycles after the walk */
    uint32_t store_cycles;  /* STORE cycles (the record is written in the last) */
    uint32_t kfeed_extra;   /* KFEED cycles after the D channel scales */
    uint32_t read_wait;     /* RWAIT cycles before OUTPUT for a present record */
    int waddr_at_store;     /* item 5 / R3: WRITE_ADDR sampled in STORE, not at beat 0 */
    int tlast_shift;        /* item 4: early tlast ends the token, shift-filled (else FRAME) */
    int addr_alias;         /* item 6: address registers clog2(depth) bits wide */
    int cr_k_integer;       /* item 7: INFO_CR_K with the integer (16 D) / G */
    int cq8_no_tag;         /* item 8: CQ-8 rows have no tag bit */
    int tready_in_read;     /* R1: tready high while a read is served, beats dropped */
    int reset_keeps_paths;  /* R2: soft reset leaves the value and key paths running */
    int reset_race;         /* R5: soft reset lost in RLOAD and in KFEED's last cycle */
} eng_traits;
const eng_traits *eng_traits_of(cq_engine_rev rev);

struct cq_engine {
    /* ---- construction parameters */
    cq_engine_rev rev;
    const eng_traits *tr;
    cq_tier tier;
    uint32_t D, G, k, depth, lanes, addr_bits;
    int qmax_k, qmax_v;        /* 7 or 127 */
    unsigned vbits;            /* value (and CQ-8 key) code width: 4 or 8 */
    uint8_t rom_mask[CQ_MAX_DIM]; /* build-time mask (hard reset restores it) */

    /* ---- SRAM geometry (engine_sram.c) */
    uint32_t row_bits, row_words;
    int has_tag;                 /* rows carry the key/value tag bit in bit row_bits - 1 */
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

    /* input collect register: beats shift in at lane D-1 (a short token is
     * shift-filled into the top lanes) */
    uint16_t sreg[CQ_MAX_DIM];

    /* value path */
    uint16_t vbuf[CQ_MAX_DIM];
    int vstale;        /* v0.2 R2: codes of a token aborted by soft reset, still pending */
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
    /* v0.2 R2: a flush aborted by soft reset, written at the next group's base */
    uint32_t kstale_n, kstale_from;
    int8_t *kstale_codes;  /* G * D */
    uint16_t *kstale_rows; /* G * D */
    uint16_t kstale_scale[CQ_MAX_DIM];

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
    uint64_t beats_dropped;   /* v0.2 R1: write beats accepted during a read */
    uint64_t q_total, q_fast; /* quantize-core runs and early paths (v0.2 core) */

    FILE *trace;

    /* replay kit sink (engine_replay.c) */
    cq_engine_replay_files rp;
    int rp_on, rp_tok_open, rp_rd_open;
    uint64_t rp_tok_c0, rp_rd_c0;
    uint32_t rp_tok_idx, rp_tok_rows, rp_rd_idx;
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
                   const uint16_t *scales, uint32_t set);
/* Decode a stored record into D fp32 beats through the dequantize core. */
void eng_decode_record(const cq_engine *e, uint32_t addr, uint32_t *beats);
void eng_invalidate(cq_engine *e, uint32_t addr);

/* engine_regs.c */
uint32_t eng_addr_mask(const cq_engine *e); /* WRITE_ADDR / READ_ADDR register width */
void eng_regs_reset(cq_engine *e);
void eng_soft_reset(cq_engine *e);
uint32_t eng_cr(const cq_engine *e, int key);
void eng_raise(cq_engine *e, uint32_t irq_bit, uint32_t addr);
int eng_idle(const cq_engine *e);
int eng_irq_line(const cq_engine *e);

/* engine_replay.c: events of the replay kit (no-ops unless a replay is set) */
void eng_rp_reg_write(cq_engine *e, uint32_t off, uint32_t val);
void eng_rp_reg_read(cq_engine *e, uint32_t off, uint32_t val);
void eng_rp_cycle(cq_engine *e);   /* start of a cycle: closes a token's span */
void eng_rp_beat_in(cq_engine *e, const cq_engine_in *in, int first);
void eng_rp_beat_out(cq_engine *e, uint32_t data, int last);
void eng_rp_row(cq_engine *e, uint32_t addr); /* a row was stored */

/* engine_fsm.c */
int eng_read_queue_empty(const cq_engine *e);

#endif
