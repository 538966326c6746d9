/* SPDX-License-Identifier: MIT */
/*
 * cq_engine.h - register- and beat-level C model of the KV Cache Engine (KVCE),
 * the silicon block of ../shared/docs/ENGINE.md.
 *
 * Software drives the model the way it drives the chip:
 *   - AXI-Lite: cq_engine_reg_read / cq_engine_reg_write (byte offsets below);
 *   - clock:    cq_engine_step advances exactly one cycle, sampling the input
 *               pins (write stream beat with tvalid, read stream tready) and
 *               reporting the output pins (tready, read beat, irq) of that cycle;
 *   - SRAM:     records laid out bit for bit (cq_engine_record_bits is a
 *               backdoor for RTL comparison and tests).
 * Two revisions are selected at construction: CQ_ENGINE_V02 reproduces the
 * published block with every gap of ENGINE.md section 7; CQ_ENGINE_V03 keeps
 * every v0.2 register and fixes them (docs/ENGINE_V03.md is the register map).
 *
 * Also here: the integer compute cores (scale / quantize / dequantize), exposed
 * so tests can prove them against the codec core, and a small driver API.
 * The model is deterministic; errors are values (cq_status).
 *
 * Tier: TOOL-GRADE - exported for the cq tool, tests and research; may change in any
 * minor version (docs/EMBEDDING.md).
 */
#ifndef CQ_ENGINE_H
#define CQ_ENGINE_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cq_codec.h"
#include "cq_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ registers */

#define CQ_ENG_CTRL 0x00u
#define CQ_ENG_STATUS 0x04u
#define CQ_ENG_INFO_DIM 0x08u
#define CQ_ENG_INFO_TIER 0x0Cu
#define CQ_ENG_INFO_GROUP 0x10u
#define CQ_ENG_INFO_SRAM_DEPTH 0x14u
#define CQ_ENG_INFO_CR_K 0x18u
#define CQ_ENG_INFO_CR_V 0x1Cu
#define CQ_ENG_INFO_VERSION 0x20u
#define CQ_ENG_OCCUPANCY 0x24u
#define CQ_ENG_WRITE_ADDR 0x28u
#define CQ_ENG_READ_ADDR 0x2Cu
#define CQ_ENG_KV_SELECT 0x30u
#define CQ_ENG_IRQ_MASK 0x34u
#define CQ_ENG_IRQ_STATUS 0x38u
#define CQ_ENG_INFO_OUTLIER_K 0x3Cu
#define CQ_ENG_INFO_SCALE_DEPTH 0x40u
#define CQ_ENG_INFO_RESID_DEPTH 0x44u
/* v0.3 additions (read 0xDEADBEEF in v0.2) */
#define CQ_ENG_GROUP_COUNT 0x48u     /* R: tokens held in the open key group */
#define CQ_ENG_GROUP_BASE 0x4Cu      /* R: base address of the open key group */
#define CQ_ENG_READ_TIMEOUT 0x50u    /* RW: cycles a read may wait before RD_ERR */
#define CQ_ENG_ERR_ADDR 0x54u        /* R: record address of the last error */
#define CQ_ENG_INFO_SCALE_SETS 0x58u /* R: entries of the per-group scale table */
#define CQ_ENG_INVALIDATE 0x5Cu      /* W: free a record (OCCUPANCY decrements); reads 0 */
#define CQ_ENG_INFO_LANES 0x60u      /* R: quantize units */
#define CQ_ENG_INFO_RECORD_BITS 0x64u /* R: SRAM row width in bits (tag included) */
#define CQ_ENG_CYCLE_COUNT 0x68u     /* R: free-running cycle counter, low 32 bits */
#define CQ_ENG_LAST_SCALE_SET 0x6Cu  /* R: scale-table entry of the last flushed group */
#define CQ_ENG_MASK_SHADOW 0x80u     /* RW x16: outlier-mask staging words (bit c%32 of word c/32) */
#define CQ_ENG_MASK_ACTIVE 0xC0u     /* R x16: the outlier mask in use */
#define CQ_ENG_MASK_WORDS 16u

/* CTRL bits */
#define CQ_ENG_CTRL_SOFT_RESET 0x01u /* W, self-clearing pulse */
#define CQ_ENG_CTRL_ENABLE 0x02u     /* RW */
#define CQ_ENG_CTRL_FLUSH 0x04u      /* v0.3 W, self-clearing: flush a partial key group */
#define CQ_ENG_CTRL_MASK_LOAD 0x08u  /* v0.3 W, self-clearing: shadow mask -> active */
#define CQ_ENG_CTRL_AUTO_INC 0x10u   /* v0.3 RW: WRITE_ADDR advances after every store */

/* STATUS bits */
#define CQ_ENG_ST_IDLE 0x01u       /* nothing in progress or pending */
#define CQ_ENG_ST_GROUP_OPEN 0x02u /* v0.3: a key group holds tokens */
#define CQ_ENG_ST_READ_BUSY 0x04u  /* v0.3: a read is pending or in progress */
#define CQ_ENG_ST_SRAM_FULL 0x08u  /* occupancy >= SRAM_DEPTH */
#define CQ_ENG_ST_ERROR 0x10u      /* v0.3: some IRQ_STATUS bit is set */
#define CQ_ENG_ST_IRQ 0x20u        /* v0.3: the interrupt line */

/* IRQ_STATUS / IRQ_MASK bits (v0.3 sources; nothing sets them in v0.2) */
#define CQ_ENG_IRQ_RD_ERR 0x01u   /* read of an unwritten / out-of-range record timed out */
#define CQ_ENG_IRQ_WR_RANGE 0x02u /* a record address was >= SRAM_DEPTH: record dropped */
#define CQ_ENG_IRQ_FRAME 0x04u    /* early tlast: token discarded */
#define CQ_ENG_IRQ_MASK_ERR 0x08u /* MASK_LOAD refused (popcount != k, bit >= D, group open) */
#define CQ_ENG_IRQ_RD_OVR 0x10u   /* v0.3: read queue full, READ_ADDR write dropped */

#define CQ_ENG_UNMAPPED 0xDEADBEEFu
#define CQ_ENG_VERSION_V02 0x00020000u
#define CQ_ENG_VERSION_V03 0x00030000u

/* ---------------------------------------------------------- construction */

typedef enum cq_engine_rev { CQ_ENGINE_V02 = 2, CQ_ENGINE_V03 = 3 } cq_engine_rev;

typedef struct cq_engine_config {
    cq_engine_rev rev;
    cq_tier tier;
    uint32_t dim;        /* D: even, 2..512 */
    uint32_t group;      /* G >= 1 (key tiers CQ-4 / CQ-4+) */
    uint32_t sram_depth; /* records, 1..65536 */
    uint32_t lanes;      /* parallel quantize units, 1..D (1 = the published block) */
    uint8_t mask[CQ_MAX_DIM]; /* build-time outlier mask, D bytes (CQ-4+: exactly k set) */
} cq_engine_config;

/* Defaults: v0.3, CQ-4, D=64, G=128, 1024 records, 1 lane, no outliers. */
CQ_API void cq_engine_config_default(cq_engine_config *c);

typedef struct cq_engine cq_engine;

CQ_API cq_status cq_engine_create(const cq_engine_config *c, cq_engine **out, cq_err *err);
CQ_API void cq_engine_free(cq_engine *e); /* accepts NULL */
/* Power-on reset: registers, FSM, SRAM (contents and valid bits) cleared. */
CQ_API void cq_engine_hard_reset(cq_engine *e);

/* --------------------------------------------------------------- AXI-Lite */

CQ_API uint32_t cq_engine_reg_read(cq_engine *e, uint32_t off);
CQ_API void cq_engine_reg_write(cq_engine *e, uint32_t off, uint32_t val);

/* ------------------------------------------------------------ clock/pins */

typedef struct cq_engine_in {
    int s_tvalid;     /* write stream */
    uint16_t s_tdata; /* fp16 element */
    int s_tuser;      /* 0 key, 1 value (sampled on the first beat of a token) */
    int s_tlast;
    int m_tready;     /* read stream consumer ready */
} cq_engine_in;

typedef struct cq_engine_out {
    int s_tready;     /* engine could take a beat this cycle */
    int s_fire;       /* a write beat was transferred */
    int m_tvalid;     /* a read beat was presented */
    uint32_t m_tdata; /* fp32 bits */
    int m_tlast;
    int m_fire;       /* read beat transferred (v0.2: also when m_tready was low: the beat is lost) */
    int m_lost;       /* v0.2 only: beat presented while m_tready low, gone */
    int irq;
    uint64_t cycle;   /* index of this cycle */
    int s_dropped;    /* v0.2 only (R1): a write beat was accepted during a read and dropped */
} cq_engine_out;

/* Advance one clock cycle. in may be NULL (no beat, m_tready 1); out may be NULL. */
CQ_API void cq_engine_step(cq_engine *e, const cq_engine_in *in, cq_engine_out *out);

/* FSM states (ENGINE.md section 5). */
typedef enum cq_engine_state {
    CQ_ES_IDLE, CQ_ES_COLLECT, CQ_ES_COMPRESS, CQ_ES_STORE,
    CQ_ES_KCOLLECT, CQ_ES_KFEED, CQ_ES_KACCEPT, CQ_ES_KEMIT,
    CQ_ES_RLOAD, CQ_ES_RWAIT, CQ_ES_OUTPUT, CQ_ES_COUNT_
} cq_engine_state;
CQ_API const char *cq_engine_state_name(cq_engine_state s);
CQ_API cq_engine_state cq_engine_get_state(const cq_engine *e);
/* 1 when the write port could take the first beat of a new token this cycle. */
CQ_API int cq_engine_token_ready(const cq_engine *e);
CQ_API uint64_t cq_engine_cycles(const cq_engine *e);
/* Cycles spent in each state since the last hard reset. */
CQ_API void cq_engine_state_cycles(const cq_engine *e, uint64_t out[CQ_ES_COUNT_]);

/* ------------------------------------------------------------- inspection */

typedef struct cq_engine_info {
    cq_engine_rev rev;
    cq_tier tier;
    uint32_t dim, group, k, sram_depth, lanes, addr_bits;
    uint32_t record_bits;      /* row width, tag included */
    uint32_t key_record_bits;  /* bits a key record uses (tag included) */
    uint32_t val_record_bits;  /* bits a value record uses (tag included) */
    uint32_t scale_sets;       /* v0.3 scale table entries (0 in v0.2) */
    uint32_t scale_set_bits;   /* bits of one scale-table entry */
} cq_engine_info;
CQ_API void cq_engine_get_info(const cq_engine *e, cq_engine_info *info);

/* Raw SRAM row (backdoor): words[i] holds bits 64i..64i+63, LSB first.
 * nwords >= ceil(record_bits / 64). valid receives the written bit. */
CQ_API cq_status cq_engine_record_bits(const cq_engine *e, uint32_t addr, uint64_t *words, size_t nwords,
                                int *valid);
/* v0.3 scale table entry (D fp16 scales, D mask bytes). */
CQ_API cq_status cq_engine_scale_set(const cq_engine *e, uint32_t set, uint16_t *scales, uint8_t *mask);

/* Beat-level trace (text, one beat or bus access per line; docs/ENGINE_V03.md). NULL stops. */
CQ_API void cq_engine_set_trace(cq_engine *e, FILE *f);

/* Replay kit (docs/ENGINE_REPLAY.md): while set, the model writes a $readmemh
 * stimulus image of what the pins see (register accesses, write beats, expected
 * read beats; one 64-bit word per line), its own per-token / per-read spans and,
 * at cq_engine_replay_finish, its valid SRAM rows; and the two files the
 * behavioural stand-in block of hw/ replays (per-token span and row count, the
 * rows in store order). Any FILE may be NULL. */
typedef struct cq_engine_replay_files {
    FILE *image;          /* stimulus and expected beats (hex words) */
    FILE *model_spans;    /* "T <i> <cycles>" per token, "R <i> <cycles>" per read */
    FILE *model_rows;     /* "<addr hex> <row hex>" per valid row, at finish */
    FILE *standin_tokens; /* per token: {rows stored[63:32], span[31:0]} (hex) */
    FILE *standin_rows;   /* every stored row, in store order (hex, MSB first) */
} cq_engine_replay_files;
CQ_API void cq_engine_set_replay(cq_engine *e, const cq_engine_replay_files *f); /* NULL stops */
/* Write the model's valid rows and the image's END word. */
CQ_API void cq_engine_replay_finish(cq_engine *e);

/* ---------------------------------------------------------- integer cores */

/* scale = fp16_RNE(max(amax/qmax, 2^-14)) by integer division, sticky, RNE.
 * The cores are sized for qmax 1..127 (7 and 127 are used); other values are clamped. */
CQ_API uint16_t cq_eng_scale_core(uint16_t amax, int qmax);
/* The serialized quantize core: start, 21 restoring division steps, round, done.
 * Two latencies (the codes are the same): the v0.3 core takes CQ_ENG_QCORE_CYCLES
 * whatever the data; the v0.2 (published RTL) core takes CQ_ENG_QCORE_RTL_CYCLES, or
 * CQ_ENG_QCORE_RTL_FAST when it takes its early path (docs/ENGINE_V03.md section 4). */
typedef struct cq_eng_qcore {
    int busy, done, phase, code;
    uint16_t x, s;       /* latched operands */
    int early;           /* 0 none, 1 early zero, 2 early clamp */
    uint32_t sig_x, sig_s, rem, quo;
    int d, neg, qmax, steps;
    int rtl;             /* 1: the v0.2 data-dependent latency */
    int fast;            /* rtl: the early path was taken (4 cycles) */
} cq_eng_qcore;
CQ_API void cq_eng_qcore_start(cq_eng_qcore *q, uint16_t x, uint16_t scale, int qmax);
CQ_API void cq_eng_qcore_start_rtl(cq_eng_qcore *q, uint16_t x, uint16_t scale, int qmax);
CQ_API void cq_eng_qcore_clock(cq_eng_qcore *q); /* one cycle; sets done and code when finished */
#define CQ_ENG_QCORE_CYCLES 24
#define CQ_ENG_QCORE_RTL_CYCLES 25
#define CQ_ENG_QCORE_RTL_FAST 4
/* Run a core to completion; *cycles (may be NULL) receives the cycles it took. */
CQ_API int cq_eng_quantize_core(uint16_t x, uint16_t scale, int qmax, int *cycles);
/* code x fp16 field -> fp32 bits: |code| x significand, normalized; a zero product is +0.0. */
CQ_API uint32_t cq_eng_dequant_core(int code, uint16_t field);
/* Exact fp16 -> fp32 widening in integers (v0.3 outlier lane and residual reads). */
CQ_API uint32_t cq_eng_widen_core(uint16_t h);

/* ------------------------------------------------------------------ driver */

typedef struct cq_engine_drv_stats {
    uint64_t key_tokens, val_tokens, reads;
    uint64_t key_cycles, val_cycles, read_cycles; /* cycles spent in pushes / reads */
    uint64_t records_written;
    /* per-token spans (push_kv): min and max of one key / value push (0 when none) */
    uint64_t key_min, key_max, val_min, val_max;
} cq_engine_drv_stats;

/* Soft reset, enable, check INFO registers against the construction. */
CQ_API cq_status cq_engine_drv_init(cq_engine *e, cq_err *err);
/* Push one token of D fp16 (is_value selects tuser) with record address addr:
 * programs WRITE_ADDR when write_addr is set (value tokens and the first key of a
 * group), streams D beats with tlast on the last, and clocks until the write
 * port can take the next token. *cycles receives the cycles it took. */
CQ_API cq_status cq_engine_drv_push_token(cq_engine *e, const uint16_t *x, int is_value, int write_addr,
                                   uint32_t addr, uint64_t *cycles, cq_err *err);
/* v0.3: flush a partial key group (CTRL.FLUSH) and wait for idle. */
CQ_API cq_status cq_engine_drv_flush(cq_engine *e, uint64_t *cycles, cq_err *err);
/* Push a [T][D] K and V tensor: values at vbase+t, keys at kbase+t. v0.3 interleaves
 * K and V per token and flushes the last partial group; v0.2 streams each key group
 * whole, then its values, and stops keys at the last whole group (*keys_stored). */
CQ_API cq_status cq_engine_drv_push_kv(cq_engine *e, const uint16_t *K, const uint16_t *V, uint32_t T,
                                uint32_t kbase, uint32_t vbase, uint32_t *keys_stored,
                                cq_engine_drv_stats *st, cq_err *err);
/* Read one record: D fp32 beats into out (bits). max_wait bounds the cycles the
 * driver waits (0 = 4096 + 4D): a v0.2 read that never answers returns
 * CQ_ERR_STATE ("still waiting"); a v0.3 RD_ERR returns CQ_ERR_RANGE. */
CQ_API cq_status cq_engine_drv_read(cq_engine *e, uint32_t addr, uint32_t *out, uint64_t max_wait,
                             uint64_t *cycles, cq_err *err);
/* Clock until STATUS.idle (at most max_cycles). */
CQ_API cq_status cq_engine_drv_wait_idle(cq_engine *e, uint64_t max_cycles, cq_err *err);

/* ------------------------------------------------------------- run + check */

/* One end-to-end run: push [T][D] K and V through a fresh engine (values at
 * records 0..T-1, keys at T..2T-1), read every stored record back, and check
 * every output beat against the codec core (and against golden K_hat / V_hat
 * when given). v0.2 stores keys only for whole groups (keys_stored). */
typedef struct cq_engine_report {
    uint32_t T, D, keys_stored;
    uint64_t key_tokens, val_tokens, key_cycles, val_cycles;  /* compress */
    uint64_t key_reads, val_reads, key_read_cycles, val_read_cycles; /* decompress */
    uint64_t key_min, key_max, val_min, val_max;   /* per-token compress spans */
    uint64_t read_min, read_max;                   /* per-record read spans */
    uint64_t q_total, q_fast; /* quantize-core runs, and those that took the early path */
    uint64_t beats_checked;   /* beats compared (against each reference) */
    uint64_t mismatches;      /* beats that differ from the contract */
    uint64_t negzero_outliers;/* v0.2 gap 8: outlier -0.0 read back as +0.0 (not counted above) */
    int64_t first_token;      /* first mismatch (-1 if none) */
    int32_t first_channel;
    int first_is_key;
    uint32_t first_expected, first_got;
    uint32_t occupancy, record_bits, key_record_bits, val_record_bits;
    uint64_t scale_sets_used, scale_set_bits;
    uint64_t sram_bits_key, sram_bits_val;        /* rows x row width (+ scale table) */
    uint64_t content_bits_key, content_bits_val;  /* bits the records really use */
    uint64_t canon_bits_key, canon_bits_val;      /* CONTRACT.md section 5 streams */
    uint64_t state_cycles[CQ_ES_COUNT_];
    uint64_t total_cycles;
} cq_engine_report;

CQ_API cq_status cq_engine_run_check(const cq_engine_config *cfg, const uint16_t *K, const uint16_t *V,
                              uint32_t T, const uint32_t *golden_k_hat,
                              const uint32_t *golden_v_hat, FILE *trace, cq_engine_report *rep,
                              cq_err *err);
/* The same run, also writing the replay kit's files (replay may be NULL). */
CQ_API cq_status cq_engine_run_check_replay(const cq_engine_config *cfg, const uint16_t *K,
                                     const uint16_t *V, uint32_t T,
                                     const uint32_t *golden_k_hat, const uint32_t *golden_v_hat,
                                     FILE *trace, const cq_engine_replay_files *replay,
                                     cq_engine_report *rep, cq_err *err);

#ifdef __cplusplus
}
#endif
#endif /* CQ_ENGINE_H */
