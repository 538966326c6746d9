/* SPDX-License-Identifier: MIT */
/*
 * engine_replay.c - the model's side of the replay kit (docs/ENGINE_REPLAY.md):
 * what the pins see, as a $readmemh image of 64-bit words (register writes and
 * reads, write-stream beats, expected read beats), the model's own spans, its
 * SRAM rows, and the two files the behavioural stand-in of hw/ replays. The
 * FSM and the register file call the eng_rp_* hooks; they do nothing unless a
 * replay is set. The testbench that consumes the image is hw/tb/kvce_tb.sv.
 */
#include <string.h>

#include "engine_internal.h"

/* image opcodes (bits 63..56) */
#define RP_HEADER 0x01u
#define RP_HEADER2 0x02u
#define RP_WRITE 0x10u
#define RP_READREG 0x11u
#define RP_BEAT 0x20u
#define RP_EXPECT 0x31u
#define RP_END 0xFFu

static void word(cq_engine *e, uint64_t w) {
    if (e->rp.image) fprintf(e->rp.image, "%016llx\n", (unsigned long long)w);
}

static uint64_t op(uint32_t code) { return (uint64_t)code << 56; }

/* A row as ceil(W/4) hex digits, most significant first. */
static void put_row(FILE *f, const cq_engine *e, uint32_t addr) {
    uint64_t row[CQ_MAX_DIM * 20 / 64 + 2];
    cq_engine_record_bits(e, addr, row, sizeof row / sizeof row[0], NULL);
    for (int d = (int)((e->row_bits + 3u) / 4u) - 1; d >= 0; d--) {
        uint32_t b = (uint32_t)d * 4u;
        fputc("0123456789abcdef"[(row[b / 64u] >> (b % 64u)) & 0xFu], f);
    }
}

void cq_engine_set_replay(cq_engine *e, const cq_engine_replay_files *f) {
    if (!e) return;
    memset(&e->rp, 0, sizeof e->rp);
    e->rp_on = f != NULL;
    e->rp_tok_open = e->rp_rd_open = 0;
    e->rp_tok_idx = e->rp_rd_idx = e->rp_tok_rows = 0;
    if (!f) return;
    e->rp = *f;
    word(e, op(RP_HEADER) | (uint64_t)e->rev << 48 | (uint64_t)e->tier << 40 |
                (uint64_t)(e->D & 0xFFFFu) << 24 | (e->G & 0xFFFFFFu));
    word(e, op(RP_HEADER2) | (uint64_t)e->k << 48 | (uint64_t)(e->depth & 0xFFFFFFu) << 24 |
                (e->row_bits & 0xFFFFFFu));
}

void cq_engine_replay_finish(cq_engine *e) {
    if (!e || !e->rp_on) return;
    if (e->rp.model_rows)
        for (uint32_t a = 0; a < e->depth; a++) {
            if (!e->valid[a]) continue;
            fprintf(e->rp.model_rows, "%04x ", a);
            put_row(e->rp.model_rows, e, a);
            fputc('\n', e->rp.model_rows);
        }
    word(e, op(RP_END));
}

void eng_rp_reg_write(cq_engine *e, uint32_t off, uint32_t val) {
    if (!e->rp_on) return;
    word(e, op(RP_WRITE) | (uint64_t)(off & 0xFFFFu) << 32 | val);
    if (off == CQ_ENG_READ_ADDR) {
        e->rp_rd_open = 1;
        e->rp_rd_c0 = e->cycle;
    }
}

void eng_rp_reg_read(cq_engine *e, uint32_t off, uint32_t val) {
    if (e->rp_on) word(e, op(RP_READREG) | (uint64_t)(off & 0xFFFFu) << 32 | val);
}

void eng_rp_cycle(cq_engine *e) {
    if (!e->rp_on || !e->rp_tok_open || !cq_engine_token_ready(e)) return;
    uint64_t span = e->cycle - e->rp_tok_c0;
    if (e->rp.model_spans)
        fprintf(e->rp.model_spans, "T %u %llu\n", e->rp_tok_idx, (unsigned long long)span);
    if (e->rp.standin_tokens)
        fprintf(e->rp.standin_tokens, "%016llx\n",
                (unsigned long long)((uint64_t)e->rp_tok_rows << 32 | (span & 0xFFFFFFFFu)));
    e->rp_tok_idx++;
    e->rp_tok_open = 0;
}

void eng_rp_beat_in(cq_engine *e, const cq_engine_in *in, int first) {
    if (!e->rp_on) return;
    word(e, op(RP_BEAT) | (uint64_t)(in->s_tlast ? 1u : 0u) << 33 |
                (uint64_t)(in->s_tuser ? 1u : 0u) << 32 | in->s_tdata);
    if (first) {
        e->rp_tok_open = 1;
        e->rp_tok_c0 = e->cycle;
        e->rp_tok_rows = 0;
    }
}

void eng_rp_beat_out(cq_engine *e, uint32_t data, int last) {
    if (!e->rp_on) return;
    word(e, op(RP_EXPECT) | (uint64_t)(last ? 1u : 0u) << 32 | data);
    if (last && e->rp_rd_open) {
        if (e->rp.model_spans)
            fprintf(e->rp.model_spans, "R %u %llu\n", e->rp_rd_idx,
                    (unsigned long long)(e->cycle - e->rp_rd_c0 + 1u));
        e->rp_rd_idx++;
        e->rp_rd_open = 0;
    }
}

void eng_rp_row(cq_engine *e, uint32_t addr) {
    if (!e->rp_on) return;
    e->rp_tok_rows++;
    if (e->rp.standin_rows) {
        put_row(e->rp.standin_rows, e, addr);
        fputc('\n', e->rp.standin_rows);
    }
}
