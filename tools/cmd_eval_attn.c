/* SPDX-License-Identifier: MIT */
/*
 * cmd_eval_attn.c - `cq eval attn`: the attention-fidelity protocol of
 * EVAL.md section 1 on Q/K/V arrays from .npy files, for any list of codec
 * pairs, with MegaQuant's case layout as a preset. (Capturing Q/K/V from the
 * built-in runtime is `cq eval capture`, which writes the same .npy files.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"
#include "cq_tool.h"

#define MAX_PAIRS 64

static void attn_usage(FILE *f) {
    fprintf(f,
            "usage: cq eval attn [--q Q.npy --k K.npy --v V.npy | -m MODEL -f TEXT [--tokens N]]\n"
            "                    [--kv LIST] [--preset megaquant] [--layers a,b] [--heads a,b]\n"
            "                    [--positions a,b] [-g G] [--mask FILE | --mask-channels a,b]\n"
            "                    [--csv | --json]\n\n"
            "Attention fidelity (EVAL.md section 1). Q is [layers][q_heads][tokens][D], K and V are\n"
            "[layers][kv_heads][tokens][D] (fp16, fp32 or fp64 .npy; a 3-D array is one layer;\n"
            "`cq eval capture` writes them from the built-in runtime). Without --q/--k/--v, the\n"
            "first --tokens tokens (default 384, at most the model's context) of the text (-f,\n"
            "default $CQ_SHARED/eval/tinystories_val.txt) are run through the model (-m, default\n"
            "tinyqwen-hd64-kbias, self-trained) and Q/K/V captured in memory (K/V post-RoPE).\n"
            "For each case (layer, query head, position p) K and V of tokens 0..p are quantized once\n"
            "per KV head with the codecs (whole block, partial groups flushed) and the query of\n"
            "token p is scored against them: score cosine, attention-output cosine, top-1 and\n"
            "top-5 agreement, key/value NMSE, averaged over cases, with measured bits per value.\n"
            "LIST (--kv, alias --codecs): comma-separated codec names (same codec for K and V) or K/V\n"
            "pairs, e.g. fp16,cq4,cq8/cq4,q4_0 (default: every codec that supports D). --heads are\n"
            "query heads. The bits column is the codec's packed bits per value of each case's block\n"
            "(partial groups flushed). --csv / --json: the table as data on stdout. A case whose\n"
            "metrics are not finite fails the command (exit 1).\n"
            "--preset megaquant: 4 layers x 4 heads (evenly spaced) x positions {96,191,287,383}.\n"
            "Default positions: 4 evenly spaced in [T/4, T-1]. CQ-4+ keys need --mask (a calibrated\n"
            "mask file, per layer and KV head; cq calibrate writes one) or --mask-channels (one\n"
            "channel list applied to every KV head).\n");
}

typedef cq_sel sel;

static int parse_sel(const char *s, sel *out) {
    uint16_t tmp[CQ_MAX_SEL];
    int n = cq_arg_u16_list(s, tmp, CQ_MAX_SEL);
    if (n <= 0) return -1;
    for (int i = 0; i < n; i++) out->v[i] = tmp[i];
    out->n = n;
    return 0;
}

static void linspace_sel(uint32_t lo, uint32_t hi, int n, sel *out) { cq_linspace(lo, hi, n, out); }

/* f32 [n] to fp16 bits, allocated */
static uint16_t *to_f16(const float *x, size_t n) {
    uint16_t *o = malloc(n * 2 + 2);
    if (o)
        for (size_t i = 0; i < n; i++) o[i] = cq_f32_to_f16(x[i]);
    return o;
}

/* Capture Q/K/V from the runtime (the first ntok tokens of the text). */
static int capture_mem(const char *model, const char *text, const char *mask_path, uint8_t **masks, uint32_t ntok, uint16_t **Q, uint16_t **K,
                       uint16_t **V, uint64_t qs[4], uint64_t ks[4], uint64_t vs[4]) {
    cq_tool_model tm;
    int rc = cq_tool_model_load("eval attn", model, NULL, &tm);
    if (rc) return -1;
    char tb[4096];
    if (!text) text = cq_tool_default_text(tb, sizeof tb);
    int32_t *tokens = NULL;
    size_t n = 0;
    float *q = NULL, *k = NULL, *v = NULL;
    rc = -1;
    if (cq_tool_tokenize_file("eval attn", tm.tok, text, &tokens, &n)) goto out;
    const cq_model_config *c = cq_model_get_config(tm.model);
    if (ntok > c->max_seq_len) {
        fprintf(stderr, "cq eval attn: --tokens %u is larger than the model's context of %u\n", ntok,
                c->max_seq_len);
        goto out;
    }
    if (mask_path) {
        cq_tool_opts mo;
        cq_tool_opts_init(&mo);
        mo.mask = mask_path;
        if (cq_tool_load_mask("eval attn", &mo, c, masks)) goto out;
    }
    if (n < ntok) {
        fprintf(stderr, "cq eval attn: %s has %zu tokens, need %u\n", text, n, ntok);
        goto out;
    }
    cq_err e;
    cq_err_clear(&e);
    cq_status st = cq_capture_qkv(tm.model, tokens, ntok, 2, &q, &k, &v, &e);
    if (st) {
        cq_report("eval attn", st, &e);
        goto out;
    }
    qs[0] = ks[0] = c->n_layers;
    qs[1] = c->n_heads;
    ks[1] = c->n_kv_heads;
    qs[2] = ks[2] = ntok;
    qs[3] = ks[3] = c->head_dim;
    memcpy(vs, ks, 4 * sizeof *ks);
    size_t nq = (size_t)qs[0] * qs[1] * qs[2] * qs[3], nk = (size_t)ks[0] * ks[1] * ks[2] * ks[3];
    *Q = to_f16(q, nq);
    *K = to_f16(k, nk);
    *V = to_f16(v, nk);
    if (*Q && *K && *V) rc = 0;
    fprintf(stderr, "cq eval attn: captured %u tokens of %s through %s\n", ntok, text, tm.path);
out:
    free(q);
    free(k);
    free(v);
    free(tokens);
    cq_tool_model_free(&tm);
    return rc;
}

/* load as fp16 bits [L][H][T][D] (3-D arrays get L = 1) */
static int load4(const char *path, uint16_t **data, uint64_t shape[4]) {
    cq_npy a;
    cq_err e;
    cq_status st = cq_npy_load(path, 0, &a, &e);
    if (st) {
        cq_report("eval attn", st, &e);
        return -1;
    }
    if (a.ndim != 3 && a.ndim != 4) {
        fprintf(stderr, "cq eval attn: %s: expected 3 or 4 dimensions, got %u\n", path, a.ndim);
        cq_npy_free(&a);
        return -1;
    }
    shape[0] = a.ndim == 4 ? a.shape[0] : 1;
    for (int i = 0; i < 3; i++) shape[i + 1] = a.shape[a.ndim - 3 + i];
    *data = malloc(a.count * 2 + 2);
    if (!*data) {
        cq_npy_free(&a);
        return -1;
    }
    cq_npy_to_f16(&a, *data);
    cq_npy_free(&a);
    return 0;
}

int cq_eval_attn(int argc, char **argv) {
    const char *qp = NULL, *kp = NULL, *vp = NULL;
    const char *mask_s = NULL;
    cq_tool_opts op;
    cq_tool_opts_init(&op);
    uint32_t ntok = 384;
    int preset_mq = 0;
    sel layers = {{0}, 0}, heads = {{0}, 0}, pos = {{0}, 0};
    uint32_t group = CQ_DEFAULT_GROUP;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cq_is_help(a)) {
            attn_usage(stdout);
            return 0;
        }
        int r = cq_tool_opt("eval attn", &op, CQ_OPT_MODEL | CQ_OPT_FILE | CQ_OPT_KV | CQ_OPT_MASK |
                            CQ_OPT_GROUP | CQ_OPT_OUT, argc, argv, &i);
        if (r == 1) continue;
        if (r == 2) return 2;
#define OPT(name) (!strcmp(a, name) && v && (i++, 1))
        if (OPT("--q")) qp = v;
        else if (OPT("--k")) kp = v;
        else if (OPT("--v")) vp = v;
        else if (OPT("--codecs")) op.kv = v;
        else if (OPT("--mask-channels")) mask_s = v;
        else if (OPT("--tokens")) {
            if (cq_arg_u32(v, 2, 1u << 20, &ntok)) goto bad;
        }
        else if (OPT("--preset")) {
            if (strcmp(v, "megaquant")) {
                fprintf(stderr, "cq eval attn: unknown preset '%s'\n", v);
                return 2;
            }
            preset_mq = 1;
        } else if (OPT("--layers")) {
            if (parse_sel(v, &layers)) goto bad;
        } else if (OPT("--heads")) {
            if (parse_sel(v, &heads)) goto bad;
        } else if (OPT("--positions")) {
            if (parse_sel(v, &pos)) goto bad;
        } else {
            fprintf(stderr, "cq eval attn: unknown or incomplete option '%s'\n", a);
            return 2;
        }
#undef OPT
        continue;
    bad:
        fprintf(stderr, "cq eval attn: bad value '%s' for %s\n", v, a);
        return 2;
    }
    if (cq_tool_opts_check("eval attn", &op)) return 2;
    const char *codecs = op.kv;
    if (op.group) group = op.group;
    int from_model = !qp && !kp && !vp;
    if ((!from_model && (!qp || !kp || !vp)) ||
        (!from_model && (op.seen & (CQ_OPT_MODEL | CQ_OPT_FILE)))) {
        fprintf(stderr, "cq eval attn: give --q, --k and --v together, or none of them (then -m/-f)\n");
        return 2;
    }
    if (op.mask && mask_s) {
        fprintf(stderr, "cq eval attn: --mask and --mask-channels are exclusive\n");
        return 2;
    }
    if (op.mask && !from_model) {
        fprintf(stderr, "cq eval attn: --mask needs the model's shape: use --mask-channels with .npy input\n");
        return 2;
    }
    uint8_t *masks = NULL;
    uint16_t *Q = NULL, *K = NULL, *V = NULL;
    uint64_t qs[4], ks[4], vs[4];
    int rc = 1;
    if (from_model) {
        if (capture_mem(op.model, op.file, op.mask, &masks, ntok, &Q, &K, &V, qs, ks, vs)) goto out;
    } else if (load4(qp, &Q, qs) || load4(kp, &K, ks) || load4(vp, &V, vs))
        goto out;
    if (memcmp(ks, vs, sizeof ks) || qs[0] != ks[0] || qs[2] != ks[2] || qs[3] != ks[3] ||
        ks[1] == 0 || qs[1] % ks[1] || ks[2] == 0) {
        fprintf(stderr, "cq eval attn: shapes disagree: Q [%llu][%llu][%llu][%llu], K/V [%llu][%llu][%llu][%llu] "
                "(need equal layers/tokens/D, q_heads a multiple of kv_heads)\n",
                (unsigned long long)qs[0], (unsigned long long)qs[1], (unsigned long long)qs[2],
                (unsigned long long)qs[3], (unsigned long long)ks[0], (unsigned long long)ks[1],
                (unsigned long long)ks[2], (unsigned long long)ks[3]);
        goto out;
    }
    const uint32_t NL = (uint32_t)ks[0], NKV = (uint32_t)ks[1], T = (uint32_t)ks[2], D = (uint32_t)ks[3];
    const uint32_t NQH = (uint32_t)qs[1], grp = NQH / NKV;
    if (D < CQ_MIN_DIM || D > CQ_MAX_DIM || (D & 1)) {
        fprintf(stderr, "cq eval attn: head_dim %u is outside the codec's range\n", D);
        goto out;
    }
    if (preset_mq) {
        if (T < 384) {
            fprintf(stderr, "cq eval attn: the megaquant preset needs 384 tokens, have %u\n", T);
            goto out;
        }
        linspace_sel(0, NL - 1, NL < 4 ? (int)NL : 4, &layers);
        linspace_sel(0, NQH - 1, NQH < 4 ? (int)NQH : 4, &heads);
        linspace_sel(96, 383, 4, &pos);
    }
    if (!layers.n) linspace_sel(0, NL - 1, NL < CQ_MAX_SEL ? (int)NL : CQ_MAX_SEL, &layers);
    if (!heads.n) linspace_sel(0, NQH - 1, NQH < CQ_MAX_SEL ? (int)NQH : CQ_MAX_SEL, &heads);
    if (!pos.n) linspace_sel(T / 4, T - 1, 4, &pos);
    for (int i = 0; i < layers.n; i++)
        if (layers.v[i] >= NL) { fprintf(stderr, "cq eval attn: layer %u out of range\n", layers.v[i]); goto out; }
    for (int i = 0; i < heads.n; i++)
        if (heads.v[i] >= NQH) { fprintf(stderr, "cq eval attn: head %u out of range\n", heads.v[i]); goto out; }
    for (int i = 0; i < pos.n; i++)
        if (pos.v[i] >= T) { fprintf(stderr, "cq eval attn: position %u out of range\n", pos.v[i]); goto out; }
    uint8_t mask[CQ_MAX_DIM] = {0};
    int have_mask = 0;
    if (mask_s) {
        uint16_t ch[CQ_MAX_DIM];
        int n = cq_arg_u16_list(mask_s, ch, CQ_MAX_DIM);
        if (n <= 0) { fprintf(stderr, "cq eval attn: bad --mask-channels\n"); goto out; }
        for (int i = 0; i < n; i++) {
            if (ch[i] >= D) { fprintf(stderr, "cq eval attn: mask channel %u >= D\n", ch[i]); goto out; }
            mask[ch[i]] = 1;
        }
        have_mask = 1;
    }
    /* codec pairs */
    const cq_codec_traits *pk[MAX_PAIRS], *pv[MAX_PAIRS];
    int np = 0;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cfg.group = group;
    cfg.mask = have_mask ? mask : masks; /* layer 0 head 0's mask for the shape checks */
    if (codecs) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", codecs);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            char *slash = strchr(tok, '/');
            if (slash) *slash = '\0';
            const cq_codec_traits *a = cq_codec_find(tok), *b = slash ? cq_codec_find(slash + 1) : a;
            if (!a || !b || np >= MAX_PAIRS) {
                fprintf(stderr, "cq eval attn: unknown codec in '%s' (see cq codecs)\n", tok);
                goto out;
            }
            pk[np] = a;
            pv[np++] = b;
        }
    } else {
        for (size_t i = 0; i < cq_codec_count() && np < MAX_PAIRS; i++) {
            const cq_codec_traits *c = cq_codec_at(i);
            if (cq_codec_supports(c, &cfg, CQ_ROLE_KEY) == CQ_OK &&
                cq_codec_supports(c, &cfg, CQ_ROLE_VALUE) == CQ_OK && !(c->flags & CQ_CODEC_F_OFFLINE)) {
                pk[np] = c;
                pv[np++] = c;
            }
        }
    }
    FILE *fc = op.csv ? stdout : NULL, *fj = op.json ? stdout : NULL;
    const int table = !fc && !fj;
    uint32_t n_cases = (uint32_t)(layers.n * heads.n * pos.n);
    if (table) {
        printf("# attention fidelity: %u cases (%d layers x %d query heads x %d positions), D=%u, GQA %u\n\n",
               n_cases, layers.n, heads.n, pos.n, D, grp);
        printf("| K codec | V codec | codec bits/value | score cos | output cos | top-1 | top-5 | K NMSE | V NMSE |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    if (fc) fprintf(fc, "key_codec,val_codec,codec_bits_per_value,score_cos,out_cos,top1,top5,k_nmse,v_nmse,cases\n");
    if (fj) fprintf(fj, "{\"cases\": %u, \"dim\": %u, \"results\": [\n", n_cases, D);
    rc = 0;
    cq_qkv_set x = {Q, K, V, NL, NQH, NKV, T, D};
    int first_json = 1, n_ok = 0, n_nonfinite = 0;
    for (int pi = 0; pi < np; pi++) {
        cq_attn_metrics m;
        double bpv = 0;
        cq_err e;
        cq_err_clear(&e);
        cq_status st = cq_attn_pair(pk[pi], pv[pi], &cfg, &x, &layers, &heads, &pos, have_mask ? NULL : masks,
                                    &m, &bpv, &e);
        if (st) {
            if (table) printf("| %s | %s | n/a: %s | | | | | | |\n", pk[pi]->name, pv[pi]->name, e.msg);
            else fprintf(stderr, "cq eval attn: %s/%s: n/a: %s\n", pk[pi]->name, pv[pi]->name, e.msg);
            continue;
        }
        if (table)
            printf("| %s | %s | %.4f | %.6f | %.6f | %.4f | %.4f | %.3e | %.3e |\n", pk[pi]->name, pv[pi]->name,
                   bpv, m.score_cos, m.out_cos, m.top1, m.top5, m.k_nmse, m.v_nmse);
        n_ok++;
        if (!isfinite(m.score_cos) || !isfinite(m.out_cos) || !isfinite(m.top1) ||
            !isfinite(m.top5) || !isfinite(m.k_nmse) || !isfinite(m.v_nmse) || !isfinite(bpv))
            n_nonfinite++;
        if (fc)
            fprintf(fc, "%s,%s,%.6f,%.8f,%.8f,%.6f,%.6f,%.6e,%.6e,%llu\n", pk[pi]->name, pv[pi]->name, bpv,
                    m.score_cos, m.out_cos, m.top1, m.top5, m.k_nmse, m.v_nmse, (unsigned long long)m.n);
        if (fj) {
            fprintf(fj, "%s  {\"key_codec\": \"%s\", \"val_codec\": \"%s\", \"bits_per_value\": %.6f, "
                        "\"score_cos\": %.8f, \"out_cos\": %.8f, \"top1\": %.6f, \"top5\": %.6f, "
                        "\"k_nmse\": %.6e, \"v_nmse\": %.6e, \"cases\": %llu}",
                    first_json ? "" : ",\n", pk[pi]->name, pv[pi]->name, bpv, m.score_cos, m.out_cos, m.top1,
                    m.top5, m.k_nmse, m.v_nmse, (unsigned long long)m.n);
            first_json = 0;
        }
    }
    if (fj) fprintf(fj, "\n]}\n");
    /* a table of n/a rows or of NaN metrics is no result: exit 1 (rows stay printed) */
    if (!n_ok || n_nonfinite) {
        fprintf(stderr, "cq eval attn: %s\n", !n_ok ? "no codec pair could be evaluated (every row n/a)"
                                                   : "non-finite metrics (NaN or Inf) in the table");
        rc = 1;
    }
out:
    free(masks);
    free(Q);
    free(K);
    free(V);
    return rc;
}
