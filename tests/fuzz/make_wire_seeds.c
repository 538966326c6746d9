/* SPDX-License-Identifier: MIT */
/*
 * make_wire_seeds.c - writes the seed corpus of fuzz_block_wire.c: every cached block of
 * every pool of wire_pools.h in the wire form (positions 0 .. WP_BLOCKS - 1), and per pool
 * a sibling block (one token changed, chain hash and CRC recomputed: a valid block that
 * inserts), a block one past the chain (its parent cached), a wrong version, a forged
 * model hash (valid CRC) and a truncated block. Not part of the test suite; rebuild the
 * corpus with (from the repo root, after `make`):
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude -Itests/fuzz tests/fuzz/make_wire_seeds.c \
 *     build/libchannelquant.a -lm -pthread -o build/make_wire_seeds
 *   build/make_wire_seeds tests/fuzz/corpus/fuzz_block_wire
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire_pools.h"

static int put(const char *dir, const char *name, int pool, const uint8_t *b, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/seed_p%d_%s", dir, pool, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n) {
        fprintf(stderr, "%s: cannot write\n", path);
        if (f) fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}
static void fix_crc(uint8_t *b, size_t n) { put32(b + n - 4, cq_crc32c(0, b, n - 4)); }

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_wire_seeds DIR\n");
        return 2;
    }
    int rc = 0;
    for (int i = 0; i < WP_POOLS; i++) {
        const wp_spec *s = &WP_SPECS[i];
        cq_kvpool *p = wp_make(i, "scalar");
        if (!p) {
            fprintf(stderr, "pool %d\n", i);
            return 1;
        }
        const uint32_t n = wp_prompt_len(i);
        uint32_t *tok = malloc((n + s->G) * sizeof *tok);
        for (uint32_t t = 0; t < n + s->G; t++) tok[t] = wp_token(i, t);
        uint64_t h[WP_BLOCKS + 1];
        uint32_t nb = 0;
        rc |= cq_kvpool_chain_hashes(p, tok, n, h, WP_BLOCKS, &nb, NULL) != CQ_OK || nb != WP_BLOCKS;
        const size_t cap = cq_kvpool_block_wire_size(p);
        uint8_t *b = malloc(cap);
        const size_t tofs = 80 + 16 * (size_t)s->NL * (2 * s->H + 2);
        for (uint32_t k = 0; k < nb; k++) {
            size_t len = 0;
            char name[32];
            rc |= cq_kvpool_block_encode(p, h[k], b, cap, &len, NULL) != CQ_OK;
            snprintf(name, sizeof name, "block%u", k);
            rc |= put(argv[1], name, i, b, len);
            /* a sibling: token 0 of the block changed, chain hash and CRC recomputed */
            const uint32_t t0 = k ? s->S + k * s->G : 0, cnt = k ? s->G : s->S + s->G;
            uint32_t *alt = malloc(cnt * sizeof *alt);
            memcpy(alt, tok + t0, cnt * sizeof *alt);
            alt[0] ^= 0x40u;
            put32(b + tofs, alt[0]);
            put64(b + 64, cq_prefix_chain_hash(cq_kvpool_config_hash(p), k ? h[k - 1] : 0, alt, cnt));
            fix_crc(b, len);
            snprintf(name, sizeof name, "sibling%u", k);
            rc |= put(argv[1], name, i, b, len);
            free(alt);
            if (k + 1 < nb) continue;
            /* the block after the chain: block k's bytes as position k + 1 (its tokens
             * shifted by G), parent h[k] */
            if (cnt == s->G) {
                rc |= cq_kvpool_block_encode(p, h[k], b, cap, &len, NULL) != CQ_OK;
                put32(b + 48, k + 1);
                put64(b + 56, h[k]);
                put64(b + 64, cq_prefix_chain_hash(cq_kvpool_config_hash(p), h[k], tok + t0 + s->G, s->G));
                for (uint32_t t = 0; t < s->G; t++) put32(b + tofs + 4 * t, tok[t0 + s->G + t]);
                fix_crc(b, len);
                rc |= put(argv[1], "next", i, b, len);
            }
            rc |= cq_kvpool_block_encode(p, h[0], b, cap, &len, NULL) != CQ_OK;
            put32(b + 4, 2);
            fix_crc(b, len);
            rc |= put(argv[1], "version2", i, b, len);
            put32(b + 4, 1);
            put64(b + 16, 0x1234);
            fix_crc(b, len);
            rc |= put(argv[1], "model", i, b, len);
            put64(b + 16, 0x5eed0000u + (uint32_t)i);
            fix_crc(b, len);
            rc |= put(argv[1], "truncated", i, b, len / 2);
        }
        free(b);
        free(tok);
        cq_kvpool_free(p);
    }
    return rc;
}
