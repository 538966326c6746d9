/* SPDX-License-Identifier: MIT */
/*
 * attn_fidelity.c - the attention-fidelity protocol of EVAL.md section 1,
 * made exact: K and V of one KV head are quantized once with the codecs under
 * test (whole block through the registry, partial groups flushed), each query
 * of the GQA group is scored in double precision against both, and the
 * score cosine, output cosine, top-1/top-5 agreement and NMSE accumulate.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"
#include "cq_fp16.h"

void cq_attn_metrics_clear(cq_attn_metrics *m) { memset(m, 0, sizeof *m); }

void cq_attn_metrics_mean(const cq_attn_metrics *s, cq_attn_metrics *m) {
    double n = s->n ? (double)s->n : 1.0;
    m->score_cos = s->score_cos / n;
    m->out_cos = s->out_cos / n;
    m->top1 = s->top1 / n;
    m->top5 = s->top5 / n;
    m->k_nmse = s->k_nmse / n;
    m->v_nmse = s->v_nmse / n;
    m->n = s->n;
}

static cq_status roundtrip(const cq_codec_traits *c, const cq_codec_cfg *cfg, cq_role role,
                           const uint16_t *x, uint32_t L, float *out, cq_err *err) {
    cq_status st = cq_codec_supports(c, cfg, role);
    if (st)
        return cq_err_set(err, st, -1, -1, "codec %s cannot code %s at D=%u", c->name,
                          role == CQ_ROLE_KEY ? "keys" : "values", cfg->dim);
    size_t nb = c->packed_bytes(cfg, role, L);
    uint8_t *buf = malloc(nb ? nb : 1);
    if (!buf) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    st = c->encode(cfg, role, x, L, buf, nb, err);
    if (!st) {
        st = c->decode(cfg, role, buf, nb, L, out);
        if (st) cq_err_set(err, st, -1, -1, "codec %s: decode failed", c->name);
    }
    free(buf);
    return st;
}

static double cosine(const double *a, const double *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += a[i] * b[i];
        aa += a[i] * a[i];
        bb += b[i] * b[i];
    }
    if (aa == 0 && bb == 0) return 1.0;
    if (aa == 0 || bb == 0) return 0.0;
    return ab / sqrt(aa * bb);
}

/* indices of the k largest entries (ties to the lower index) */
static void topk(const double *s, uint32_t L, uint32_t k, uint32_t *idx) {
    for (uint32_t j = 0; j < k; j++) {
        uint32_t best = UINT32_MAX;
        for (uint32_t t = 0; t < L; t++) {
            int used = 0;
            for (uint32_t m = 0; m < j; m++) used |= idx[m] == t;
            if (!used && (best == UINT32_MAX || s[t] > s[best])) best = t;
        }
        idx[j] = best;
    }
}

static void attend(const double *score, const float *V, uint32_t L, uint32_t D, double *out) {
    double mx = -INFINITY, sum = 0;
    for (uint32_t t = 0; t < L; t++) mx = score[t] > mx ? score[t] : mx;
    memset(out, 0, D * sizeof *out);
    for (uint32_t t = 0; t < L; t++) {
        double p = exp(score[t] - mx);
        sum += p;
        for (uint32_t c = 0; c < D; c++) out[c] += p * V[(size_t)t * D + c];
    }
    for (uint32_t c = 0; c < D; c++) out[c] /= sum;
}

cq_status cq_attn_fidelity_case(const cq_codec_traits *kc, const cq_codec_traits *vc,
                                const cq_codec_cfg *cfg, const uint16_t *K, const uint16_t *V,
                                uint32_t L, const float *q, uint32_t n_q, cq_attn_metrics *acc,
                                cq_err *err) {
    cq_err_clear(err);
    if (!kc || !vc || !cfg || !K || !V || !q || !acc || L == 0)
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument or empty case");
    const uint32_t D = cfg->dim;
    size_t n = (size_t)L * D;
    float *kr = malloc(n * 4), *vr = malloc(n * 4), *kh = malloc(n * 4), *vh = malloc(n * 4);
    double *s0 = malloc(L * 8), *s1 = malloc(L * 8), *o0 = malloc(D * 8), *o1 = malloc(D * 8);
    cq_status st = CQ_OK;
    if (!kr || !vr || !kh || !vh || !s0 || !s1 || !o0 || !o1) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto done;
    }
    cq_f16_to_f32_n(K, kr, n);
    cq_f16_to_f32_n(V, vr, n);
    if ((st = roundtrip(kc, cfg, CQ_ROLE_KEY, K, L, kh, err))) goto done;
    if ((st = roundtrip(vc, cfg, CQ_ROLE_VALUE, V, L, vh, err))) goto done;
    double kn = 0, kd = 0, vn = 0, vd = 0;
    for (size_t i = 0; i < n; i++) {
        double dk = (double)kh[i] - kr[i], dv = (double)vh[i] - vr[i];
        kn += dk * dk;
        kd += (double)kr[i] * kr[i];
        vn += dv * dv;
        vd += (double)vr[i] * vr[i];
    }
    const double scale = 1.0 / sqrt((double)D);
    for (uint32_t h = 0; h < n_q; h++) {
        const float *qh = q + (size_t)h * D;
        for (uint32_t t = 0; t < L; t++) {
            double a = 0, b = 0;
            for (uint32_t c = 0; c < D; c++) {
                a += (double)qh[c] * kr[(size_t)t * D + c];
                b += (double)qh[c] * kh[(size_t)t * D + c];
            }
            s0[t] = a * scale;
            s1[t] = b * scale;
        }
        attend(s0, vr, L, D, o0);
        attend(s1, vh, L, D, o1);
        uint32_t k5 = L < 5 ? L : 5, i0[5], i1[5];
        topk(s0, L, k5, i0);
        topk(s1, L, k5, i1);
        uint32_t inter = 0;
        for (uint32_t a = 0; a < k5; a++)
            for (uint32_t b = 0; b < k5; b++) inter += i0[a] == i1[b];
        acc->score_cos += cosine(s0, s1, L);
        acc->out_cos += cosine(o0, o1, D);
        acc->top1 += i0[0] == i1[0];
        acc->top5 += (double)inter / k5;
        acc->k_nmse += kd > 0 ? kn / kd : 0.0;
        acc->v_nmse += vd > 0 ? vn / vd : 0.0;
        acc->n++;
    }
done:
    free(kr);
    free(vr);
    free(kh);
    free(vh);
    free(s0);
    free(s1);
    free(o0);
    free(o1);
    return st;
}

/* ------------------------------------- the protocol over layers, heads, positions */

void cq_linspace(uint32_t lo, uint32_t hi, int n, cq_sel *out) {
    out->n = 0;
    for (int i = 0; i < n && i < CQ_MAX_SEL; i++) {
        uint32_t v = n == 1 ? lo : (uint32_t)(lo + (double)(hi - lo) * i / (n - 1)); /* int() */
        if (out->n && out->v[out->n - 1] == v) continue;
        out->v[out->n++] = v;
    }
}

cq_status cq_attn_pair(const cq_codec_traits *kc, const cq_codec_traits *vc,
                            const cq_codec_cfg *cfg, const cq_qkv_set *x,
                            const cq_sel *layers, const cq_sel *heads,
                            const cq_sel *pos, const uint8_t *masks, cq_attn_metrics *mean,
                            double *bpv, cq_err *err) {
    const uint32_t D = x->D, grp = x->NQH / x->NKV;
    float *qbuf = malloc((size_t)grp * D * sizeof(float));
    if (!qbuf) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    cq_attn_metrics acc;
    cq_attn_metrics_clear(&acc);
    cq_codec_cfg hc = *cfg;
    double bits = 0, vals = 0;
    cq_status st = CQ_OK;
    for (int li = 0; li < layers->n && !st; li++)
        for (int pj = 0; pj < pos->n && !st; pj++) {
            uint32_t L = pos->v[pj] + 1;
            for (uint32_t kv = 0; kv < x->NKV && !st; kv++) {
                /* the selected query heads of this kv head, query of token p */
                uint32_t nq = 0;
                for (int hi = 0; hi < heads->n; hi++) {
                    uint32_t h = heads->v[hi];
                    if (h / grp != kv) continue;
                    const uint16_t *src =
                        x->Q + (((size_t)layers->v[li] * x->NQH + h) * x->T + pos->v[pj]) * D;
                    for (uint32_t c = 0; c < D; c++) qbuf[(size_t)nq * D + c] = cq_f16_to_f32(src[c]);
                    nq++;
                }
                if (!nq) continue;
                size_t base = ((size_t)layers->v[li] * x->NKV + kv) * x->T * D;
                if (masks) hc.mask = masks + ((size_t)layers->v[li] * x->NKV + kv) * D;
                st = cq_attn_fidelity_case(kc, vc, &hc, x->K + base, x->V + base, L, qbuf, nq, &acc,
                                           err);
                if (!st) {
                    bits += 8.0 * (double)(kc->packed_bytes(&hc, CQ_ROLE_KEY, L) +
                                           vc->packed_bytes(&hc, CQ_ROLE_VALUE, L));
                    vals += 2.0 * L * D;
                }
            }
        }
    free(qbuf);
    if (st) return st;
    cq_attn_metrics_mean(&acc, mean);
    *bpv = vals > 0 ? bits / vals : NAN;
    return CQ_OK;
}
