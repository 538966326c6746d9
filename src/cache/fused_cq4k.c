/* SPDX-License-Identifier: MIT */
/*
 * fused_cq4k.c - the CQ-4 / CQ-4+ key store of the cache (fused.h): key groups of G
 * tokens, each a slot of payload (INT4 codes of the kept channels) | per-channel fp16
 * scales | fp16 outlier sidecar (CQ-4+), coded by cq_encode_key_group once the fp16
 * in-flight group fills. The payload is held as key tiles (cq_tiles.h) when G is a
 * multiple of CQ_KT_TOK, else in the contract's token-major form: a function of the
 * shape only. Attention folds the group's scales into the query once per run (fold_q,
 * or fold_quant_q8 with the FAST precision), dots the codes (dot_i4[t][q]) and adds the
 * outlier lane (side_dot). A FAST run whose 8-bit query blocks could move a score by more
 * than CQ_FAST_KEY_DELTA takes the EXACT dot (fast_keys_ok).
 */
#include <stdlib.h>
#include <string.h>

#include "../core/cq_le.h"
#include "fused.h"

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static void layout(cq_store *s, uint32_t P) {
    (void)P;
    const cq_params *kp = s->params;
    s->unit = kp->group;
    s->off_scales = round_up(cq_key_group_bytes(kp, kp->group), 2);
    s->off_sidecar = s->off_scales + 2 * (size_t)kp->kept;
    /* + 8: the INT4 dot kernel may read 7 bytes past the last token's codes */
    s->slot_bytes = round_up(s->off_sidecar + 2 * (size_t)kp->group * kp->k + 8, 32);
    /* whole tiles: the same bytes, permuted */
    s->tiled = kp->group % CQ_KT_TOK == 0;
}

static cq_status params_init(cq_params *p, cq_codec_id id, uint32_t D, uint32_t G,
                             const uint8_t *mask, cq_err *err) {
    return id == CQ_CODEC_CQ4P ? cq_params_init_mask(p, CQ_TIER_CQ4P, D, G, mask, err)
                               : cq_params_init(p, CQ_TIER_CQ4, D, G, NULL, 0, err);
}

static void put_unit(const cq_kernels *k, cq_store *s, uint8_t *slot, const uint16_t *x,
                     uint32_t g) {
    k->enc_key_group(s->params, x, g, slot, (uint16_t *)(slot + s->off_scales),
                     (uint16_t *)(slot + s->off_sidecar));
    cq_store_key_committed(s, slot, g);
}

static uint64_t account_unit(const cq_store *s, uint32_t g, cq_cache_mem *m) {
    uint64_t pay = cq_key_group_bytes(s->params, g);
    uint64_t sc = 2ull * s->params->kept, side = 2ull * g * s->params->k;
    m->payload += pay;
    m->scales += sc;
    m->sidecar += side;
    return pay + sc + side;
}

static cq_status read(const cq_store *s, const cq_kernels *k, uint32_t t0, uint32_t t1,
                      float *out) {
    (void)k;
    const cq_params *p = s->params;
    const uint32_t D = s->D;
    for (uint32_t t = t0; t < t1;) {
        uint32_t u = t / s->unit, g = cq_store_unit_len(s, u), a = t - u * s->unit;
        uint32_t b = t1 - u * s->unit < g ? t1 - u * s->unit : g;
        const uint8_t *slot = cq_store_slot(s, u);
        const uint16_t *scl = (const uint16_t *)(slot + s->off_scales),
                       *side = (const uint16_t *)(slot + s->off_sidecar);
        if (s->tiled) { /* rows [a, b) back to the canonical nibble stream first */
            uint8_t *rows = malloc(((size_t)(b - a) * p->kept + 1) / 2);
            if (!rows) return CQ_ERR_NOMEM;
            cq_kt_unpack(slot, p->kept, a, b, rows);
            cq_decode_key_group_rows(p, rows, scl, side + (size_t)a * p->k, b - a, 0, b - a,
                                     out + (size_t)(t - t0) * D);
            free(rows);
        } else {
            cq_decode_key_group_rows(p, slot, scl, side, g, a, b, out + (size_t)(t - t0) * D);
        }
        t = u * s->unit + b;
    }
    return CQ_OK;
}

/* payload of every group, then every group's scales, then the sidecar */
static size_t payload_len(const cq_store *s, uint32_t nu) {
    size_t pay = 0;
    for (uint32_t u = 0; u < nu; u++) pay += cq_key_group_bytes(s->params, cq_store_unit_len(s, u));
    return pay;
}

static size_t export_len(const cq_store *s) {
    const uint32_t nu = (s->n_done + s->unit - 1) / s->unit;
    return payload_len(s, nu) + (size_t)nu * s->params->kept * 2 +
           (size_t)s->n_done * s->params->k * 2;
}

static void export(const cq_store *s, uint8_t *dst) {
    const cq_params *p = s->params;
    const uint32_t nu = (s->n_done + s->unit - 1) / s->unit;
    const size_t pay = payload_len(s, nu), sc = (size_t)nu * p->kept * 2;
    size_t po = 0;
    for (uint32_t u = 0; u < nu; u++) {
        uint32_t g = cq_store_unit_len(s, u);
        const uint8_t *slot = cq_store_slot(s, u);
        if (s->tiled) cq_kt_unpack(slot, p->kept, 0, g, dst + po);
        else memcpy(dst + po, slot, cq_key_group_bytes(p, g));
        po += cq_key_group_bytes(p, g);
        cq_put_u16le_n(dst + pay + (size_t)u * p->kept * 2, (const uint16_t *)(slot + s->off_scales),
                 p->kept);
        cq_put_u16le_n(dst + pay + sc + (size_t)u * p->group * p->k * 2,
                 (const uint16_t *)(slot + s->off_sidecar), (size_t)g * p->k);
    }
}

/* persistence: the packed form's length (< 2^32 units x < 2^25 bytes: no overflow) */
static uint64_t data_len(const cq_store *s, uint32_t n_done, uint32_t tail_g) {
    const cq_params *p = s->params;
    uint64_t nu = ((uint64_t)n_done + s->unit - 1) / s->unit, full = nu - (tail_g ? 1 : 0);
    uint64_t per = cq_key_group_bytes(p, s->unit) + 2ull * p->kept + 2ull * s->unit * p->k;
    uint64_t b = full * per;
    if (tail_g) b += cq_key_group_bytes(p, tail_g) + 2ull * p->kept + 2ull * tail_g * p->k;
    return b;
}

/* zero pad nibbles, positive normal scales, finite outliers */
static cq_status check(const cq_store *s, const uint8_t *d, uint32_t n_done, uint32_t tail_g,
                       const char *where, cq_err *err) {
    const cq_params *p = s->params;
    const uint32_t nu = (n_done + s->unit - 1) / s->unit;
    size_t pay = 0;
    for (uint32_t u = 0; u < nu; u++) {
        uint32_t g = (tail_g && u + 1 == nu) ? tail_g : s->unit;
        size_t gb = cq_key_group_bytes(p, g);
        if (((size_t)g * p->kept) & 1 && (d[pay + gb - 1] & 0xF0))
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                              "%s: key group %u: nonzero pad nibble", where, u);
        pay += gb;
    }
    const uint8_t *sc = d + pay;
    for (size_t i = 0; i < (size_t)nu * p->kept; i++)
        if (!cq_fused_is_scale(cq_get_u16le(sc + 2 * i)))
            return cq_err_set(err, CQ_ERR_FORMAT, -1, -1,
                              "%s: key group %zu: channel scale 0x%04x is not a positive "
                              "normal fp16", where, i / p->kept, cq_get_u16le(sc + 2 * i));
    if (!cq_fused_all_finite(sc + (size_t)nu * p->kept * 2, (size_t)n_done * p->k))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "%s: non-finite fp16 outlier", where);
    return CQ_OK;
}

static void import(cq_store *s, const uint8_t *d) {
    const uint32_t T = s->n_done, nu = (T + s->unit - 1) / s->unit;
    const cq_params *p = s->params;
    size_t pay = 0;
    for (uint32_t u = 0; u < nu; u++) pay += cq_key_group_bytes(p, cq_store_unit_len(s, u));
    const uint8_t *sc = d + pay, *side = sc + (size_t)nu * p->kept * 2;
    size_t po = 0;
    for (uint32_t u = 0; u < nu; u++) {
        uint32_t g = cq_store_unit_len(s, u);
        uint8_t *slot = cq_store_slot(s, u);
        memcpy(slot, d + po, cq_key_group_bytes(p, g));
        cq_store_key_committed(s, slot, g);
        po += cq_key_group_bytes(p, g);
        cq_get_u16le_n((uint16_t *)(slot + s->off_scales), sc + (size_t)u * p->kept * 2, p->kept);
        cq_get_u16le_n((uint16_t *)(slot + s->off_sidecar), side + (size_t)u * s->unit * p->k * 2,
                       (size_t)g * p->k);
    }
}

/* CQ-4+: the query split by channel kind, once per call (sc->qg kept, sc->qo outliers) */
static void prep_query(const cq_store *s, const float *q, uint32_t nh, run_scratch *sc) {
    const cq_params *p = s->params;
    if (!p->k) return;
    for (uint32_t h = 0; h < nh; h++) {
        for (uint32_t j = 0; j < p->kept; j++)
            sc->qg[(size_t)h * p->kept + j] = q[(size_t)h * s->D + p->kept_idx[j]];
        for (uint32_t o = 0; o < p->k; o++)
            sc->qo[(size_t)h * p->k + o] = q[(size_t)h * s->D + p->outlier[o]];
    }
}

/* FAST's key guard (docs/CACHE.md, "Tolerance"): 1 when every query head's 8-bit blocks keep
 * each score of the run within CQ_FAST_KEY_DELTA of the exact dot of the codes with the folded
 * query, for any codes. Block b (n_b channels, step d_b = qs 2^sh[b]) moves a score by at most
 * (d_b / 2) * 8 per channel (|code| <= 8), so the bound is 4 qs sum_b n_b 2^sh[b]. The sum is
 * an exact integer of at most 512 * 2^11 = 2^20 and qs is quant_q8's, which every kernel table
 * computes to the same bits, so every table makes the same choice. A non-finite qs fails. */
static int fast_keys_ok(const run_scratch *sc, uint32_t nh, uint32_t kept) {
    const uint32_t nb = (kept + CQ_Q8_BLOCK - 1) / CQ_Q8_BLOCK;
    for (uint32_t h = 0; h < nh; h++) {
        uint32_t w = 0;
        for (uint32_t b = 0; b < nb; b++) {
            const uint32_t n_b = b + 1 < nb ? CQ_Q8_BLOCK : kept - b * CQ_Q8_BLOCK;
            w += n_b << sc->qsh[(size_t)h * nb + b];
        }
        if (!((float)w * sc->qsc[h] <= CQ_FAST_KEY_DELTA / 4.0f)) return 0;
    }
    return 1;
}

/* rows decoded for the exact fp32 dot when tokens start mid-byte (odd kept, not tiled) */
static uint32_t scratch_rows(const cq_store *s) {
    return !s->tiled && (s->params->kept & 1) ? BLK : 0;
}

static void scores(const cq_kernels *k, const cq_store *s, uint32_t u, uint32_t n, const float *q,
                   uint32_t nh, run_scratch *sc) {
    const cq_params *p = s->params;
    const uint32_t D = s->D, uu = u / s->unit, r0 = u - uu * s->unit, kept = p->kept;
    const uint8_t *slot = cq_store_slot(s, uu);
    const uint16_t *scl = (const uint16_t *)(slot + s->off_scales);
    const uint16_t *side = (const uint16_t *)(slot + s->off_sidecar);
    const uint8_t *pay = slot + (size_t)r0 * kept / 2; /* row r0 (kept even) */
    if (kept & 1 && !s->tiled) { /* rows start mid-byte: decode, exact fp32 dot */
        cq_decode_key_group_rows(p, slot, scl, side, cq_store_unit_len(s, uu), r0, r0 + n, sc->ku);
        k->dot_f32(q, nh, sc->ku, n, D, sc->s, BLK);
        return;
    }
    if ((uu + 1) * s->unit < s->n_done) { /* the next group's scales, ahead of time:
                                            the payload stream does not reach them */
        const uint8_t *nx = cq_store_slot(s, uu + 1) + s->off_scales;
        for (size_t o = 0; o < (size_t)kept * 2; o += 64) __builtin_prefetch(nx + o);
    }
    /* CQ-4+: the query at the kept channels (prep_query), folded like a plain row: the
     * same products as fold_q through kept_idx */
    const float *qk = p->k ? sc->qg : q;
    const uint32_t qstride = p->k ? kept : D;
    int fast = 0;
    if (sc->prec == CQ_ATTN_FAST) { /* folded and rounded to 8-bit blocks in one pass */
        k->fold_quant_q8(qk, nh, qstride, scl, kept, sc->q8, sc->qsh, sc->qsc);
        fast = fast_keys_ok(sc, nh, kept); /* else the run takes the EXACT dot */
    }
    if (fast) {
        if (s->tiled) k->dot_i4tq(sc->q8, sc->qsh, sc->qsc, nh, slot, r0, n, kept, sc->s, BLK);
        else k->dot_i4q(sc->q8, sc->qsh, sc->qsc, nh, pay, n, kept, sc->s, BLK);
    } else {
        k->fold_q(qk, nh, qstride, NULL, scl, kept, sc->qp);
        if (s->tiled) k->dot_i4t(sc->qp, nh, slot, r0, n, kept, sc->s, BLK);
        else k->dot_i4(sc->qp, nh, pay, n, kept, sc->s, BLK);
    }
    if (p->k) /* outlier lane: raw fp16 sidecar */
        k->side_dot(sc->qo, nh, side + (size_t)r0 * p->k, n, p->k, sc->s, BLK);
}

const cq_fused_ops cq_fused_cq4k = {
    .name = "cq4 keys",
    .kind = ST_I4K,
    .per_token = 0,
    .layout = layout,
    .params_init = params_init,
    .put_unit = put_unit,
    .account_unit = account_unit,
    .read = read,
    .export_len = export_len,
    .export = export,
    .data_len = data_len,
    .check = check,
    .import = import,
    .prep_query = prep_query,
    .scratch_rows = scratch_rows,
    .scores = scores,
};
