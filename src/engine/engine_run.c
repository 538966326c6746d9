/* SPDX-License-Identifier: MIT */
/*
 * engine_run.c - one end-to-end run of the KVCE model with a check of every
 * output beat: what `cq engine run` and the golden-vector tests share.
 * The expected beats come from the codec core (cq_encode_* / cq_decode_*),
 * optionally also from golden files; storage figures come from the model's
 * record geometry and from the canonical stream sizes. Cycle figures are the
 * model's own counts (the driver's measured spans), never formulas.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

/* Codec-core reference: K_hat and V_hat [T][D] as fp32 bits, canonical bits. */
static cq_status reference(const cq_engine *e, const uint16_t *K, const uint16_t *V, uint32_t T,
                           uint32_t Tk, uint32_t *khat, uint32_t *vhat, uint64_t *cbk,
                           uint64_t *cbv, cq_err *err) {
    cq_params p;
    cq_status st = cq_params_init_mask(&p, e->tier, e->D, e->G, e->rom_mask, err);
    if (st) return st;
    cq_stream_sizes sk, sv;
    if ((st = cq_stream_sizes_of(&p, Tk, &sk)) || (st = cq_stream_sizes_of(&p, T, &sv)))
        return cq_err_set(err, st, -1, -1, "stream sizes");
    uint8_t *kp = malloc(sk.key_payload + 1), *vp = malloc(sv.val_payload + 1);
    uint16_t *ks = malloc((sk.key_scales + 1) * 2), *sc = malloc((sk.sidecar + 1) * 2);
    uint16_t *vs = malloc((sv.val_scales + 1) * 2);
    float *f = malloc(((size_t)T * e->D + 1) * sizeof(float));
    if (!kp || !vp || !ks || !sc || !vs || !f) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "reference buffers");
        goto out;
    }
    cq_key_stream kst = {kp, ks, sc};
    cq_val_stream vst = {vp, vs};
    if (Tk) {
        if ((st = cq_encode_keys(&p, K, Tk, &kst, err))) goto out;
        if ((st = cq_decode_keys(&p, kp, ks, sc, Tk, f))) goto out;
        for (size_t i = 0; i < (size_t)Tk * e->D; i++) khat[i] = cq_f32_bits(f[i]);
    }
    if ((st = cq_encode_values(&p, V, T, &vst, err))) goto out;
    if ((st = cq_decode_values(&p, vp, vs, T, f))) goto out;
    for (size_t i = 0; i < (size_t)T * e->D; i++) vhat[i] = cq_f32_bits(f[i]);
    *cbk = (uint64_t)sk.key_payload * 8u + 16u * ((uint64_t)sk.key_scales + sk.sidecar);
    *cbv = (uint64_t)sv.val_payload * 8u + 16u * (uint64_t)sv.val_scales;
out:
    free(kp);
    free(vp);
    free(ks);
    free(sc);
    free(vs);
    free(f);
    return st;
}

static void compare(cq_engine_report *r, const cq_engine *e, const uint32_t *got,
                    const uint32_t *want, uint32_t t, int is_key) {
    for (uint32_t c = 0; c < e->D; c++) {
        r->beats_checked++;
        if (got[c] == want[c]) continue;
        /* gap 8 (v0.2): the outlier lane returns -0.0 as +0.0 */
        if (is_key && e->rev == CQ_ENGINE_V02 && e->rom_mask[c] && want[c] == 0x80000000u &&
            got[c] == 0u) {
            r->negzero_outliers++;
            continue;
        }
        if (r->mismatches++ == 0) {
            r->first_token = t;
            r->first_channel = (int32_t)c;
            r->first_is_key = is_key;
            r->first_expected = want[c];
            r->first_got = got[c];
        }
    }
}

static void read_span(cq_engine_report *r, uint64_t cyc) {
    uint64_t n = r->key_reads + r->val_reads;
    if (n == 0 || cyc < r->read_min) r->read_min = cyc;
    if (n == 0 || cyc > r->read_max) r->read_max = cyc;
}

cq_status cq_engine_run_check(const cq_engine_config *cfg, const uint16_t *K, const uint16_t *V,
                              uint32_t T, const uint32_t *golden_k_hat,
                              const uint32_t *golden_v_hat, FILE *trace, cq_engine_report *rep,
                              cq_err *err) {
    return cq_engine_run_check_replay(cfg, K, V, T, golden_k_hat, golden_v_hat, trace, NULL, rep,
                                      err);
}

cq_status cq_engine_run_check_replay(const cq_engine_config *cfg, const uint16_t *K,
                                     const uint16_t *V, uint32_t T,
                                     const uint32_t *golden_k_hat, const uint32_t *golden_v_hat,
                                     FILE *trace, const cq_engine_replay_files *replay,
                                     cq_engine_report *rep, cq_err *err) {
    cq_err_clear(err);
    if (!cfg || !K || !V || !rep) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    memset(rep, 0, sizeof *rep);
    rep->first_token = -1;
    rep->first_channel = -1;
    if (T == 0) return cq_err_set(err, CQ_ERR_SHAPE, -1, -1, "no tokens");
    if ((uint64_t)2u * T > cfg->sram_depth)
        return cq_err_set(err, CQ_ERR_RANGE, -1, -1,
                          "SRAM depth %u cannot hold %u value + %u key records", cfg->sram_depth,
                          T, T);
    uint32_t t0, c0;
    if (cq_find_nonfinite(K, T, cfg->dim, &t0, &c0) || cq_find_nonfinite(V, T, cfg->dim, &t0, &c0))
        return cq_err_set(err, CQ_ERR_NONFINITE, t0, (int32_t)c0,
                          "non-finite input at token %u channel %u", t0, c0);
    cq_engine *e = NULL;
    cq_status st = cq_engine_create(cfg, &e, err);
    if (st) return st;
    uint32_t D = e->D;
    uint32_t *khat = calloc((size_t)T * D, 4), *vhat = calloc((size_t)T * D, 4);
    uint32_t *beats = calloc(D, 4);
    if (!khat || !vhat || !beats) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "run buffers");
        goto out;
    }
    if (trace) cq_engine_set_trace(e, trace);
    if (replay) cq_engine_set_replay(e, replay);
    if ((st = cq_engine_drv_init(e, err))) goto out;
    cq_engine_drv_stats ds;
    memset(&ds, 0, sizeof ds);
    uint32_t kst = 0;
    if ((st = cq_engine_drv_push_kv(e, K, V, T, T, 0, &kst, &ds, err))) goto out;
    rep->T = T;
    rep->D = D;
    rep->keys_stored = kst;
    rep->key_tokens = ds.key_tokens;
    rep->val_tokens = ds.val_tokens;
    rep->key_cycles = ds.key_cycles;
    rep->val_cycles = ds.val_cycles;
    rep->key_min = ds.key_min;
    rep->key_max = ds.key_max;
    rep->val_min = ds.val_min;
    rep->val_max = ds.val_max;
    if ((st = reference(e, K, V, T, kst, khat, vhat, &rep->canon_bits_key, &rep->canon_bits_val,
                        err)))
        goto out;
    for (uint32_t t = 0; t < T; t++) { /* values: records 0..T-1 */
        uint64_t cyc;
        if ((st = cq_engine_drv_read(e, t, beats, 0, &cyc, err))) goto out;
        read_span(rep, cyc);
        rep->val_reads++;
        rep->val_read_cycles += cyc;
        compare(rep, e, beats, vhat + (size_t)t * D, t, 0);
        if (golden_v_hat) compare(rep, e, beats, golden_v_hat + (size_t)t * D, t, 0);
    }
    for (uint32_t t = 0; t < kst; t++) { /* keys: records T..2T-1 */
        uint64_t cyc;
        if ((st = cq_engine_drv_read(e, T + t, beats, 0, &cyc, err))) goto out;
        read_span(rep, cyc);
        rep->key_reads++;
        rep->key_read_cycles += cyc;
        compare(rep, e, beats, khat + (size_t)t * D, t, 1);
        if (golden_k_hat) compare(rep, e, beats, golden_k_hat + (size_t)t * D, t, 1);
    }
    rep->q_total = e->q_total;
    rep->q_fast = e->q_fast;
    rep->occupancy = e->occupancy;
    rep->record_bits = e->row_bits;
    rep->key_record_bits = e->key_bits;
    rep->val_record_bits = e->val_bits;
    rep->scale_set_bits = e->sets ? 17u * (uint64_t)D : 0u;
    rep->scale_sets_used = e->sets ? (kst + e->G - 1u) / e->G : 0u;
    rep->sram_bits_key = (uint64_t)kst * e->row_bits + rep->scale_sets_used * rep->scale_set_bits;
    rep->sram_bits_val = (uint64_t)T * e->row_bits;
    rep->content_bits_key = (uint64_t)kst * e->key_bits + rep->scale_sets_used * rep->scale_set_bits;
    rep->content_bits_val = (uint64_t)T * e->val_bits;
    cq_engine_replay_finish(e);
    cq_engine_state_cycles(e, rep->state_cycles);
    rep->total_cycles = e->cycle;
    if (rep->mismatches)
        st = cq_err_set(err, CQ_ERR_MISMATCH, rep->first_token, rep->first_channel,
                        "%s token %lld channel %d: expected %08x, engine beat %08x",
                        rep->first_is_key ? "key" : "value", (long long)rep->first_token,
                        rep->first_channel, rep->first_expected, rep->first_got);
out:
    free(khat);
    free(vhat);
    free(beats);
    cq_engine_free(e);
    return st;
}
