/* SPDX-License-Identifier: MIT */
/*
 * fuzz_block_wire.c - libFuzzer target for the serving pool's block wire form
 * (cq_kvpool_block_check / cq_kvpool_block_insert, docs/SERVING.md "Blocks on the
 * wire"). Each input goes to every pool of wire_pools.h (each holding a published chain
 * of blocks). Invariants: a refusal fills the error record and leaves the pool as it was
 * (its consistency check, block count and allocation unchanged); check and insert agree
 * (insert refuses what check refuses, with the same code, and adds only STATE / BUDGET /
 * NOMEM of its own); an inserted block passes the pool check, re-encodes to the input's
 * bytes (all of them in an ordinary build; all but the CRC in a fuzzing build, which
 * skips the CRC) and is adopted by a sequence that then reads and attends (finite
 * output, or CQ_ERR_OVERFLOW for scores beyond fp32).
 *
 * Run: `make fuzz FUZZ_TARGETS=fuzz_block_wire`; the corpus (tests/fuzz/corpus/
 * fuzz_block_wire/, written by make_wire_seeds.c) is replayed by `make test`.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "wire_pools.h"

/* The adopted sequence of an inserted block reads and attends. */
static void exercise(cq_kvpool *p, int pool, const cq_block_wire_info *in, const uint8_t *data) {
    const wp_spec *s = &WP_SPECS[pool];
    /* the prompt: the pool's own tokens before the block, then the block's, then one more */
    const uint32_t t0 = in->pos ? s->S + in->pos * s->G : 0, n = t0 + in->n_tokens + 1;
    uint32_t *tok = malloc(n * sizeof *tok);
    if (!tok) return;
    for (uint32_t i = 0; i < t0; i++) tok[i] = wp_token(pool, i);
    const size_t tofs = 80 + 16 * (size_t)s->NL * (2 * s->H + 2);
    for (uint32_t i = 0; i < in->n_tokens; i++) {
        const uint8_t *q = data + tofs + 4 * (size_t)i;
        tok[t0 + i] = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                      (uint32_t)q[3] << 24;
    }
    tok[n - 1] = 1;
    cq_seq *q = NULL;
    uint32_t got = 0;
    if (cq_seq_create(p, &q, NULL)) fuzz_fail("sequence create");
    if (cq_seq_adopt_prefix(q, tok, n, &got, NULL) || got != n - 1)
        fuzz_fail("an inserted block at position %u is not adopted (%u of %u tokens)", in->pos,
                  got, n - 1);
    const uint32_t w = s->H * s->D;
    float *qv = calloc((size_t)w * 2, sizeof *qv), *o = calloc((size_t)w * 2, sizeof *o);
    float *kv = malloc((size_t)got * s->D * 2 * sizeof *kv);
    for (uint32_t i = 0; qv && i < w * 2; i++) qv[i] = (float)((i * 37u) % 11u) * 0.125f - 0.5f;
    for (uint32_t L = 0; qv && o && kv && L < s->NL; L++) {
        for (uint32_t h = 0; h < s->H; h++)
            if (cq_seq_read(q, L, h, 0, got, kv, kv + (size_t)got * s->D, NULL))
                fuzz_fail("read of an adopted block");
        cq_attn_opts ao = {.n_threads = 1, .precision = CQ_ATTN_EXACT};
        cq_status st = cq_seq_attend(q, L, qv, 2 * s->H, o, &ao, NULL);
        if (st != CQ_OK && st != CQ_ERR_OVERFLOW) fuzz_fail("attend: %s", cq_status_name(st));
        for (uint32_t i = 0; !st && i < w * 2; i++)
            if (!isfinite(o[i])) fuzz_fail("attend CQ_OK with a non-finite output");
    }
    cq_seq_free(q);
    free(qv);
    free(o);
    free(kv);
    free(tok);
}

static void one_pool(int pool, const uint8_t *data, size_t size) {
    cq_kvpool *p = wp_make(pool, NULL);
    if (!p) fuzz_fail("pool %d cannot be built", pool);
    cq_kvpool_mem m0, m1;
    cq_kvpool_memory(p, &m0);
    const uint64_t a0 = cq_kvpool_allocated_bytes(p);
    cq_block_wire_info in;
    cq_err e, e2;
    int ins = -1;
    const cq_status sc = cq_kvpool_block_check(p, data, size, &in, &e);
    if (sc && (e.code != sc || !e.msg[0])) fuzz_fail("check: a refusal without its error record");
    const cq_status si = cq_kvpool_block_insert(p, data, size, &ins, &e2);
    if (si && (e2.code != si || !e2.msg[0])) fuzz_fail("insert: a refusal without its error record");
    if (sc && si != sc) fuzz_fail("check says %s, insert %s", cq_status_name(sc), cq_status_name(si));
    if (!sc && si && si != CQ_ERR_STATE && si != CQ_ERR_BUDGET && si != CQ_ERR_NOMEM)
        fuzz_fail("check passes, insert says %s", cq_status_name(si));
    if (cq_kvpool_check(p, &e)) fuzz_fail("pool check after insert: %s", e.msg);
    cq_kvpool_memory(p, &m1);
    if (si || !ins) {
        if (si && ins) fuzz_fail("a refused insert says inserted");
        if (m1.prefix.live_blocks != m0.prefix.live_blocks ||
            m1.prefix.commits != m0.prefix.commits || cq_kvpool_allocated_bytes(p) != a0)
            fuzz_fail("a refused or duplicate insert changed the pool");
    } else {
        if (m1.prefix.cached_blocks != m0.prefix.cached_blocks + 1)
            fuzz_fail("an inserted block is not cached");
        size_t len = 0;
        uint8_t *re = malloc(size);
        if (!re || cq_kvpool_block_encode(p, in.chain_hash, re, size, &len, NULL) || len != size)
            fuzz_fail("an inserted block does not re-encode to its size");
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
        if (memcmp(re, data, size - 4)) fuzz_fail("an inserted block re-encodes to other bytes");
#else
        if (memcmp(re, data, size)) fuzz_fail("an inserted block re-encodes to other bytes");
#endif
        free(re);
        exercise(p, pool, &in, data);
        if (cq_kvpool_check(p, &e)) fuzz_fail("pool check after adoption: %s", e.msg);
    }
    cq_kvpool_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    for (int i = 0; i < WP_POOLS; i++) one_pool(i, data, size);
    return 0;
}
