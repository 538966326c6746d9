/* SPDX-License-Identifier: MIT */
/*
 * test_engine_golden.c - all 9 golden vectors (CONTRACT.md section 7) through
 * the KVCE model in both revisions: every read beat compared bit for bit with
 * the golden K_hat / V_hat and with the codec core. v0.2 only stores keys of
 * whole groups (streamed back to back, gap 1), so for d64_T70_G64 it checks
 * keys 0..63 and for d128_T100_G128 no CQ-4 keys at all; v0.3 checks every
 * token. The record layout is checked too: each value record's scale field and
 * nibbles equal the golden canonical stream.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "channelquant.h"
#include "cq_engine.h"
#include "cq_test.h"

static uint32_t pow2_at_least(uint32_t n) {
    uint32_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

static void run_vector(const char *dir) {
    cq_golden g;
    cq_err e;
    cq_status st = cq_golden_load(dir, &g, &e);
    CHECK(st == CQ_OK, "load %s: %s", dir, e.msg);
    if (st) return;
    for (int rev = 2; rev <= 3; rev++) {
        cq_engine_config cfg;
        cq_engine_config_default(&cfg);
        cfg.rev = (cq_engine_rev)rev;
        cfg.tier = g.tier;
        cfg.dim = g.D;
        cfg.group = g.G ? g.G : 1;
        cfg.sram_depth = pow2_at_least(2 * g.T);
        memcpy(cfg.mask, g.mask, g.D);
        cq_engine_report r;
        st = cq_engine_run_check(&cfg, g.input_k, g.input_v, g.T, g.k_hat, g.v_hat, NULL, &r, &e);
        CHECK(st == CQ_OK, "%s v0.%d: %s: %s", dir, rev, cq_status_name(st), e.msg);
        uint32_t want_keys = g.T;
        if (rev == 2 && g.tier != CQ_TIER_CQ8) want_keys = g.T / g.G * g.G;
        CHECK(r.keys_stored == want_keys, "%s v0.%d: %u keys stored, want %u", dir, rev,
              r.keys_stored, want_keys);
        /* each beat compared with the codec core and with the golden file */
        CHECK(r.beats_checked == 2ull * g.D * (g.T + want_keys), "%s: %llu beats checked", dir,
              (unsigned long long)r.beats_checked);
        CHECK(r.mismatches == 0 && r.negzero_outliers == 0, "%s v0.%d: %llu mismatches", dir, rev,
              (unsigned long long)r.mismatches);
        CHECK(r.occupancy == g.T + want_keys, "%s v0.%d: occupancy %u", dir, rev, r.occupancy);
        printf("  v0.%d %-28s keys %3u/%3u values %3u: %llu beats bit-identical\n", rev,
               strrchr(dir, '/') + 1, r.keys_stored, g.T, g.T,
               (unsigned long long)r.beats_checked);
    }

    /* record layout against the canonical value stream (v0.3 and v0.2 agree here) */
    cq_engine_config cfg;
    cq_engine_config_default(&cfg);
    cfg.tier = g.tier;
    cfg.dim = g.D;
    cfg.group = g.G ? g.G : 1;
    cfg.sram_depth = pow2_at_least(2 * g.T);
    memcpy(cfg.mask, g.mask, g.D);
    cq_engine *eng;
    if (cq_engine_create(&cfg, &eng, &e) == CQ_OK) {
        cq_engine_drv_init(eng, &e);
        cq_engine_info info;
        cq_engine_get_info(eng, &info);
        uint64_t row[160];
        long bad = 0;
        unsigned bits = g.tier == CQ_TIER_CQ8 ? 8 : 4;
        size_t tb = cq_token_bytes(g.D, bits);
        for (uint32_t t = 0; t < g.T; t++) {
            cq_engine_drv_push_token(eng, g.input_v + (size_t)t * g.D, 1, 1, t, NULL, &e);
            int valid = 0;
            cq_engine_record_bits(eng, t, row, 160, &valid);
            const uint8_t *pay = g.val_payload + (size_t)t * tb;
            for (size_t b = 0; b < tb; b++)
                if (((row[b / 8] >> (8 * (b % 8))) & 0xFFu) != pay[b]) bad++;
            uint32_t sp = g.D * bits;
            uint32_t sc = (uint32_t)((row[sp / 64] >> (sp % 64)) & 0xFFFFu);
            if (sc != g.val_scales[t] || !valid) bad++;
            if ((row[(info.record_bits - 1) / 64] >> ((info.record_bits - 1) % 64)) & 1u) bad++;
        }
        CHECK(bad == 0, "%s: %ld value-record fields differ from the canonical stream", dir, bad);
        cq_engine_free(eng);
    }
    cq_golden_free(&g);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(void) {
    char base[1024];
    snprintf(base, sizeof base, "%s/vectors/channelquant", cq_test_shared());
    DIR *d = opendir(base);
    CHECK(d != NULL, "cannot open %s (set CQ_SHARED)", base);
    if (!d) return cq_test_done("test_engine_golden");
    char *names[64];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 64)
        if (de->d_name[0] == 'd' && strstr(de->d_name, "__")) {
            char *p = malloc(strlen(base) + strlen(de->d_name) + 2);
            sprintf(p, "%s/%s", base, de->d_name);
            names[n++] = p;
        }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    CHECK(n == 9, "expected 9 golden vectors, found %d", n);
    for (int i = 0; i < n; i++) {
        run_vector(names[i]);
        free(names[i]);
    }
    return cq_test_done("test_engine_golden");
}
