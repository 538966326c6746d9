/* SPDX-License-Identifier: MIT */
/*
 * test_model_stories.c - the model runtime on a real checkpoint: stories260K
 * (llama2.c format, ../shared/models). Pins the greedy continuation of a fixed
 * prompt, checks fp16-cache perplexity on TinyStories validation text against
 * the model's published validation loss, the SentencePiece encoder against a
 * plain quadratic re-implementation of llama2.c's algorithm, batch/thread
 * invariance, the untied-classifier layout, and clean refusal of damaged files.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_model.h"
#include "cq_eval.h"
#include "cq_test.h"

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* ---------------------------------------------------------- reference encoder */

/* llama2.c's encode, as plainly as possible: O(n^2), linear vocabulary search. */
typedef struct vocab_copy {
    char **piece;
    int *len;
    float *score;
    uint32_t n;
} vocab_copy;

static vocab_copy read_vocab(const uint8_t *b, size_t len, uint32_t n) {
    vocab_copy v = {calloc(n, sizeof(char *)), calloc(n, sizeof(int)), calloc(n, sizeof(float)), n};
    size_t p = 4;
    for (uint32_t i = 0; i < n && p + 8 <= len; i++) {
        memcpy(&v.score[i], b + p, 4);
        memcpy(&v.len[i], b + p + 4, 4);
        p += 8;
        v.piece[i] = malloc((size_t)v.len[i] + 1);
        memcpy(v.piece[i], b + p, (size_t)v.len[i]);
        v.piece[i][v.len[i]] = 0;
        p += (size_t)v.len[i];
    }
    return v;
}

static int vfind(const vocab_copy *v, const char *s) {
    for (uint32_t i = 0; i < v->n; i++)
        if (!strcmp(v->piece[i], s)) return (int)i;
    return -1;
}

static size_t ref_encode(const vocab_copy *v, const char *text, int32_t *out) {
    size_t n = 0;
    out[n++] = 1; /* BOS */
    char buf[64];
    if (text[0]) out[n++] = vfind(v, " ");
    for (const char *c = text; *c;) {
        size_t l = 1;
        while ((c[l] & 0xC0) == 0x80 && l < 4) l++;
        memcpy(buf, c, l);
        buf[l] = 0;
        int id = vfind(v, buf);
        if (id >= 0) out[n++] = id;
        else
            for (size_t i = 0; i < l; i++) out[n++] = (uint8_t)c[i] + 3;
        c += l;
    }
    for (;;) {
        float best = -1e10f;
        int best_id = -1;
        size_t best_i = 0;
        for (size_t i = 1; i + 1 < n; i++) {
            char cat[256];
            snprintf(cat, sizeof cat, "%s%s", v->piece[out[i]], v->piece[out[i + 1]]);
            int id = vfind(v, cat);
            if (id >= 0 && v->score[id] > best) {
                best = v->score[id];
                best_id = id;
                best_i = i;
            }
        }
        if (best_id < 0) break;
        out[best_i] = best_id;
        memmove(out + best_i + 1, out + best_i + 2, (n - best_i - 2) * sizeof *out);
        n--;
    }
    return n;
}

/* -------------------------------------------------------------------- tests */

static char *generate(const cq_model *m, const cq_tokenizer *tok, const cq_session_opts *so,
                      const char *prompt, int n_gen, int32_t *ids_out) {
    cq_session *s = NULL;
    cq_err e;
    if (cq_session_create(m, so, &s, &e)) {
        fprintf(stderr, "session: %s\n", e.msg);
        return NULL;
    }
    int32_t toks[256];
    size_t n = 0;
    cq_tokenizer_encode(tok, prompt, strlen(prompt), 1, toks, 256, &n, &e);
    uint32_t V = cq_model_get_config(m)->vocab_size;
    float *logits = malloc(V * sizeof(float));
    char *text = calloc(4096, 1);
    size_t tl = 0;
    cq_status st = cq_session_forward(s, toks, (uint32_t)n, logits, 1, &e);
    int32_t prev = toks[n - 1];
    for (int i = 0; !st && i < n_gen; i++) {
        int32_t next = 0;
        for (uint32_t v = 1; v < V; v++)
            if (logits[v] > logits[next]) next = (int32_t)v;
        if (ids_out) ids_out[i] = next;
        int l = cq_tokenizer_decode(tok, prev, next, text + tl, 4095 - tl);
        if (l > 0) tl += (size_t)l;
        prev = next;
        st = cq_session_forward(s, &next, 1, logits, 1, &e);
    }
    if (st) fprintf(stderr, "forward: %s\n", e.msg);
    free(logits);
    cq_session_free(s);
    if (st) {
        free(text);
        return NULL;
    }
    return text;
}

int main(void) {
    char mpath[1024], tpath[1024], vpath[1024];
    snprintf(mpath, sizeof mpath, "%s/models/stories260K/stories260K.bin", cq_test_shared());
    snprintf(tpath, sizeof tpath, "%s/models/stories260K/tok512.bin", cq_test_shared());
    snprintf(vpath, sizeof vpath, "%s/eval/tinystories_val.txt", cq_test_shared());
    cq_model *m = NULL;
    cq_tokenizer *tok = NULL;
    cq_err e;
    CHECK(cq_model_load(mpath, &m, &e) == CQ_OK, "load %s: %s", mpath, e.msg);
    CHECK(cq_tokenizer_load_llama2c(tpath, 512, &tok, &e) == CQ_OK, "tokenizer: %s", e.msg);
    if (!m || !tok) return cq_test_done("test_model_stories");
    const cq_model_config *c = cq_model_get_config(m);
    CHECK(c->dim == 64 && c->n_layers == 5 && c->n_heads == 8 && c->n_kv_heads == 4 &&
              c->head_dim == 8 && c->vocab_size == 512 && c->max_seq_len == 512 && c->tied_output,
          "config %u %u %u %u %u", c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim);

    /* --- greedy generation, fp32 oracle path: the pinned story */
    static const char *want =
        ", there was a little girl named Lily. She loved to play outside in the park. One day, "
        "she saw a big, red ball. She wanted to play with it, but it was too high.";
    cq_session_opts so;
    cq_session_opts_default(&so);
    so.n_threads = 2;
    int32_t ids[64];
    char *txt = generate(m, tok, &so, "Once upon a time", 64, ids);
    CHECK(txt && !strncmp(txt, want, strlen(want)), "greedy text: '%s'", txt ? txt : "(null)");
    /* first tokens as ids too (decoded above: ',' ' there' ' was' ' a' ...) */
    int32_t again[64];
    char *txt2 = generate(m, tok, &so, "Once upon a time", 64, again);
    CHECK(txt2 && !memcmp(ids, again, sizeof(int32_t) * 64), "generation not deterministic");
    free(txt2);
    /* the same through the fp16 cache */
    cq_session_opts sc = so;
    sc.mode = CQ_KV_CACHE;
    char *txtc = generate(m, tok, &sc, "Once upon a time", 64, again);
    CHECK(txtc && !strncmp(txtc, want, strlen(want)), "greedy text via fp16 cache: '%s'",
          txtc ? txtc : "(null: cache path failed)");
    free(txtc);
    free(txt);

    /* --- tokenizer: heap encoder == quadratic llama2.c encoder; round trip */
    size_t tlen, vlen;
    uint8_t *tokbin = read_file(tpath, &tlen);
    uint8_t *val = read_file(vpath, &vlen);
    CHECK(tokbin && val, "cannot read shared files");
    if (tokbin && val) {
        vocab_copy vc = read_vocab(tokbin, tlen, 512);
        const char *samples[] = {"Once upon a time", "", "a", "Hello  world!\n\nTwo spaces,   three.",
                                 "caf\xC3\xA9 na\xC3\xAFve \xE2\x82\xAC 100 \xF0\x9F\x98\x80 tab\there"};
        int mismatch = 0, roundtrip_bad = 0;
        char para[700];
        for (int k = 0; k < 5 + 6; k++) {
            const char *s;
            if (k < 5) s = samples[k];
            else { /* paragraphs of the validation text */
                size_t off = (size_t)(k - 5) * 97531 % (vlen - 700);
                memcpy(para, val + off, 699);
                para[699] = 0;
                /* cut at a clean UTF-8 boundary */
                size_t l = strlen(para);
                while (l && ((uint8_t)para[l - 1] & 0xC0) == 0x80) para[--l] = 0;
                if (l && (uint8_t)para[l - 1] >= 0xC0) para[--l] = 0;
                s = para;
            }
            int32_t a[2048], b[2048];
            size_t na = 0;
            cq_status st = cq_tokenizer_encode(tok, s, strlen(s), 1, a, 2048, &na, &e);
            size_t nb = ref_encode(&vc, s, b);
            if (st || na != nb || memcmp(a, b, na * sizeof *a)) mismatch++;
            char out[4096];
            size_t ol = 0;
            for (size_t i = 1; i < na; i++) {
                int l = cq_tokenizer_decode(tok, a[i - 1], a[i], out + ol, sizeof out - ol);
                if (l > 0) ol += (size_t)l;
            }
            if (ol != strlen(s) || memcmp(out, s, ol)) roundtrip_bad++;
        }
        CHECK(mismatch == 0, "%d texts encode differently from the quadratic reference", mismatch);
        CHECK(roundtrip_bad == 0, "%d texts do not round-trip", roundtrip_bad);
        size_t need = 0;
        CHECK(cq_tokenizer_encode(tok, "Once upon a time", 16, 1, ids, 2, &need, &e) == CQ_ERR_BUFFER &&
                  need > 2, "small buffer not refused");
        for (uint32_t i = 0; i < vc.n; i++) free(vc.piece[i]);
        free(vc.piece);
        free(vc.len);
        free(vc.score);
    }

    /* --- perplexity on TinyStories validation text vs the published loss (~1.30 nats) */
    if (val) {
        size_t cap = vlen + 16, n = 0;
        int32_t *all = malloc(cap * sizeof *all);
        CHECK(cq_tokenizer_encode(tok, (const char *)val, vlen, 1, all, cap, &n, &e) == CQ_OK,
              "encode val: %s", e.msg);
        cq_ppl_opts po;
        memset(&po, 0, sizeof po);
        po.n_ctx = 512;
        po.max_chunks = 6;
        po.n_threads = 2;
        cq_kv_format f[2];
        cq_kv_format_parse("fp32", &f[0], &e);
        CHECK(cq_kv_format_parse("fp16/fp16", &f[1], &e) == CQ_OK, "parse");
        cq_ppl_result r[2], ref;
        /* reference = the fp16/fp16 cache; fp32 = the oracle path with fp32 K/V */
        cq_status st = cq_eval_ppl(m, all, n, cq_tokenizer_bos(tok), &po, f, 1, r, &ref, &e);
        CHECK(st == CQ_OK, "eval: %s", e.msg);
        /* the published figure (about 1.30 nats) averages every position of stories that
         * each start with BOS; this text has no BOS between stories: allow 0.08 */
        CHECK(fabs(ref.nll_mean - 1.30) < 0.08, "fp16-cache NLL %.4f nats, published 1.30", ref.nll_mean);
        CHECK(ref.n_scored == 6 * 255, "scored %llu", (unsigned long long)ref.n_scored);
        CHECK(r[0].kld_mean < 1e-4 && r[0].same_top1 > 0.99, "fp32 vs fp16 cache: KLD %.3g top1 %.4f",
              r[0].kld_mean, r[0].same_top1);
        /* the fp16 cache against the oracle with K/V rounded to fp16 (ref_oracle) */
        po.ref_oracle = 1;
        po.max_chunks = 2;
        st = cq_eval_ppl(m, all, n, cq_tokenizer_bos(tok), &po, &f[1], 1, r, &ref, &e);
        CHECK(st == CQ_OK, "fp16 cache eval: %s", e.msg);
        /* The cache attends in fp32, the oracle in double. A wiring error (head map,
         * position, scale, codec) moves the distributions at least as much as rounding K/V
         * to fp16 does (r32, same chunks); fp32 accumulation noise stays well below it
         * (measured: 29x below with the AVX2 kernels, 9x with the scalar ones). */
        cq_ppl_result r32[1];
        CHECK(cq_eval_ppl(m, all, n, cq_tokenizer_bos(tok), &po, &f[0], 1, r32, &ref, &e) == CQ_OK, "%s", e.msg);
        if (st == CQ_OK)
            CHECK(r[0].kld_max < r32[0].kld_max / 5 && r[0].same_top1 == 1.0 &&
                      r[0].bits_per_value > 16 && r[0].bits_per_value < 17, /* fp16 + bookkeeping */
                  "fp16 cache vs oracle: KLD max %.3g (fp16 rounding %.3g), top1 %.4f, bits %.3f",
                  r[0].kld_max, r32[0].kld_max, r[0].same_top1, r[0].bits_per_value);

        /* --- batch and thread invariance of the oracle path (bit for bit) */
        const uint32_t T = 100, V = 512;
        float *l1 = malloc((size_t)T * V * 4), *l2 = malloc((size_t)T * V * 4);
        cq_session *s1 = NULL, *s2 = NULL;
        cq_session_opts o1, o2;
        cq_session_opts_default(&o1);
        o1.batch = 64;
        o1.n_threads = 1;
        o2 = o1;
        o2.batch = 7;
        o2.n_threads = 2;
        cq_session_create(m, &o1, &s1, &e);
        cq_session_create(m, &o2, &s2, &e);
        CHECK(cq_session_forward(s1, all, T, l1, 0, &e) == CQ_OK, "%s", e.msg);
        for (uint32_t i = 0; i < T; i += 13) {
            uint32_t k = T - i < 13 ? T - i : 13;
            CHECK(cq_session_forward(s2, all + i, k, l2 + (size_t)i * V, 0, &e) == CQ_OK, "%s", e.msg);
        }
        CHECK(!memcmp(l1, l2, (size_t)T * V * 4), "batching/threads change the logits");
        /* last_only: the classifier on the last token alone gives that row, bit for bit */
        cq_session_reset(s1);
        float *last = malloc((size_t)V * 4);
        CHECK(cq_session_forward(s1, all, T, last, 1, &e) == CQ_OK, "%s", e.msg);
        CHECK(!memcmp(last, l1 + (size_t)(T - 1) * V, (size_t)V * 4), "last_only logits differ");
        free(last);
        /* context overflow is refused */
        cq_session_reset(s1);
        CHECK(cq_session_forward(s1, all, 513, NULL, 0, &e) == CQ_ERR_RANGE, "overflow accepted");
        int32_t badtok = 512;
        CHECK(cq_session_forward(s1, &badtok, 1, NULL, 0, &e) == CQ_ERR_RANGE, "bad token accepted");
        cq_session_free(s1);
        cq_session_free(s2);

        /* --- untied classifier layout (negative vocab_size): same logits */
        size_t mlen;
        uint8_t *mb = read_file(mpath, &mlen);
        size_t embd = (size_t)512 * 64 * 4;
        uint8_t *ub = malloc(mlen + embd);
        memcpy(ub, mb, mlen);
        memcpy(ub + mlen, mb + 28, embd);
        int32_t neg = -512;
        memcpy(ub + 20, &neg, 4);
        cq_model *mu = NULL;
        CHECK(cq_model_load_llama2c_mem(ub, mlen + embd, &mu, &e) == CQ_OK, "untied: %s", e.msg);
        if (mu) {
            CHECK(!cq_model_get_config(mu)->tied_output, "untied flag");
            cq_session *su = NULL;
            cq_session_create(mu, &o1, &su, &e);
            CHECK(cq_session_forward(su, all, T, l2, 0, &e) == CQ_OK, "%s", e.msg);
            CHECK(!memcmp(l1, l2, (size_t)T * V * 4), "untied logits differ");
            cq_session_free(su);
            cq_model_free(mu);
        }
        /* --- damaged checkpoints are refused cleanly */
        int accepted = 0;
        size_t cuts[] = {0, 3, 27, 28, 100, mlen / 2, mlen - 4, mlen - 1, mlen + 4};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            cq_model *bad = NULL;
            size_t l = cuts[i] <= mlen ? cuts[i] : mlen;
            uint8_t *buf = ub; /* ub holds mb's bytes plus more: mlen+4 is 'too long' */
            memcpy(buf, mb, mlen);
            if (cuts[i] > mlen) l = cuts[i];
            if (cq_model_load_llama2c_mem(buf, l, &bad, &e) == CQ_OK) accepted++;
            cq_model_free(bad);
        }
        CHECK(accepted == 0, "%d damaged checkpoints accepted", accepted);
        int32_t hdr[7];
        const int32_t bads[][7] = {{64, 172, 5, 8, 3, 512, 512},  /* kv heads do not divide */
                                   {64, 172, 5, 7, 7, 512, 512},  /* dim % heads */
                                   {64, 172, 0, 8, 4, 512, 512},  /* no layers */
                                   {64, 172, 5, 8, 4, 0, 512},    /* no vocab */
                                   {0x7fffffff, 0x7fffffff, 0x7fffffff, 1, 1, 0x7fffffff, 0x7fffffff}};
        for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
            memcpy(ub, mb, mlen);
            memcpy(hdr, bads[i], sizeof hdr);
            memcpy(ub, hdr, sizeof hdr);
            cq_model *bad = NULL;
            cq_status bst = cq_model_load_llama2c_mem(ub, mlen, &bad, &e);
            CHECK(bst != CQ_OK && e.msg[0], "bad header %zu accepted", i);
            cq_model_free(bad);
        }
        /* a NaN weight is refused */
        memcpy(ub, mb, mlen);
        float nan = NAN;
        memcpy(ub + 28 + 4 * 1000, &nan, 4);
        cq_model *bad = NULL;
        CHECK(cq_model_load_llama2c_mem(ub, mlen, &bad, &e) == CQ_ERR_NONFINITE, "NaN accepted");
        cq_model_free(bad);
        CHECK(cq_model_load("/nonexistent/model.bin", &bad, &e) == CQ_ERR_IO, "missing file");
        /* damaged tokenizer files */
        cq_tokenizer *bt = NULL;
        CHECK(cq_tokenizer_llama2c_mem(tokbin, tlen / 2, 512, &bt, &e) == CQ_ERR_FORMAT, "tok cut");
        CHECK(cq_tokenizer_llama2c_mem(tokbin, 2, 512, &bt, &e) == CQ_ERR_FORMAT, "tok hdr");
        CHECK(bt == NULL, "tokenizer returned on error");
        free(ub);
        free(mb);
        free(l1);
        free(l2);
        free(all);
    }
    free(tokbin);
    free(val);
    cq_tokenizer_free(tok);
    cq_model_free(m);
    return cq_test_done("test_model_stories");
}
