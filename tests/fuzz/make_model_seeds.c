/* SPDX-License-Identifier: MIT */
/*
 * make_model_seeds.c - writes the seed corpora of fuzz_gguf, fuzz_llama2c and
 * fuzz_tokenizer: tiny models (dim 32 or 16, one layer, vocabularies of 24-40
 * tokens) built with the GGUF and llama2.c writers of tests/test_model_gguf.c
 * (included here, its main renamed), and llama2.c tokenizer.bin files. Not
 * part of the test suite; rebuild the corpora with (from the repo root, after
 * `make`):
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude -Itests tests/fuzz/make_model_seeds.c \
 *     build/libchannelquant.a -lm -pthread -o build/make_model_seeds
 *   build/make_model_seeds tests/fuzz/corpus
 */
#define main test_model_gguf_main
#include "../test_model_gguf.c"
#undef main

int main(int argc, char **argv);

static void save(const char *dir, const char *target, const char *name, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    printf("%s: %zu bytes\n", path, n);
}

/* A small vocabulary: SentencePiece (control tokens, a few byte tokens, pieces)
 * or byte-level BPE (printable bytes only, a few merges, end-of-text). */
static void small_vocab(int bpe, uint32_t n, vocab *v) {
    memset(v, 0, sizeof *v);
    if (!bpe) {
        strcpy(v->tok[0], "<unk>"), v->type[0] = 2;
        strcpy(v->tok[1], "<s>"), v->type[1] = 3;
        strcpy(v->tok[2], "</s>"), v->type[2] = 3;
        v->n = 3;
        for (int b = 0x20; b < 0x24; b++) snprintf(v->tok[v->n], 24, "<0x%02X>", b), v->type[v->n++] = 6;
        for (size_t i = 0; i < sizeof spm_extra / sizeof spm_extra[0] && v->n < n; i++) {
            strcpy(v->tok[v->n], spm_extra[i]);
            v->score[v->n] = spm_score[i];
            v->type[v->n++] = 1;
        }
        while (v->n < n) snprintf(v->tok[v->n], 24, "x%u", v->n), v->score[v->n] = -9, v->type[v->n++] = 1;
    } else {
        static const char *m[] = {"\xC4\xA0 t", "h e", "a b"};
        static const char *t[] = {"\xC4\xA0t", "he", "ab"};
        const char *base = "abcehlort \n";
        for (const char *p = base; *p; p++) {
            int l = utf8(byte_cp((unsigned char)*p), v->tok[v->n]);
            v->tok[v->n][l] = 0;
            v->type[v->n++] = 1;
        }
        for (int i = 0; i < 3; i++) {
            v->merges[i] = m[i];
            strcpy(v->tok[v->n], t[i]);
            v->type[v->n++] = 1;
        }
        v->n_merges = 3;
        while (v->n + 1 < n) snprintf(v->tok[v->n], 24, "y%u", v->n), v->type[v->n++] = 1;
        strcpy(v->tok[v->n], "<|endoftext|>");
        v->type[v->n++] = 3;
    }
}

/* llama2.c tokenizer.bin for fuzz_tokenizer: 2-byte vocab_size - 1 header first. */
static buf tokenizer_bin(const vocab *v) {
    buf b = {0};
    uint16_t nv = (uint16_t)(v->n - 1);
    put(&b, &nv, 2);
    int32_t maxlen = 24;
    put(&b, &maxlen, 4);
    for (uint32_t i = 0; i < v->n; i++) {
        const char *s = v->tok[i];
        /* llama2.c spells the SentencePiece space as a plain space */
        if (!strncmp(s, "\xE2\x96\x81", 3)) {
            char tmp[24];
            snprintf(tmp, sizeof tmp, " %s", s + 3);
            s = tmp;
            int32_t l = (int32_t)strlen(s);
            put_f32(&b, v->score[i]), put(&b, &l, 4), put(&b, s, (size_t)l);
            continue;
        }
        int32_t l = (int32_t)strlen(s);
        put_f32(&b, v->score[i]), put(&b, &l, 4), put(&b, s, (size_t)l);
    }
    return b;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    const cfg cases[] = {
        {"llama", 32, 32, 1, 2, 1, 24, 16, 10000.0f, 1e-5f, 1, 0, {T_Q8_0, T_F16, T_Q8_0, T_F32}},
        {"llama", 32, 32, 1, 2, 2, 24, 16, 10000.0f, 1e-5f, 0, 0, {T_F16, T_Q8_0, T_Q8_0, T_Q8_0}},
        {"qwen2", 32, 32, 1, 2, 1, 24, 16, 1000000.0f, 1e-6f, 1, 1, {T_BF16, T_Q8_0, T_Q8_0, T_Q8_0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const cfg *c = &cases[i];
        wts w;
        memset(&w, 0, sizeof w);
        make_weights(c, 500 + i, &w);
        vocab v;
        small_vocab(c->bpe, c->vocab, &v);
        gguf_pos pos;
        buf g = write_gguf(c, &w, &v, &pos);
        char name[64];
        snprintf(name, sizeof name, "%s_%zu.gguf", c->arch, i);
        save(dir, "fuzz_gguf", name, g.p, g.n);
        free(g.p);
        if (!c->bpe) {
            buf t = tokenizer_bin(&v);
            snprintf(name, sizeof name, "spm_%zu.bin", i);
            save(dir, "fuzz_tokenizer", name, t.p, t.n);
            free(t.p);
        }
        free_weights(c, &w);
    }
    /* llama2.c checkpoints: dim 16, 2 heads (D 8), 1 kv head, vocab 16, ctx 8; tied and untied */
    for (int tied = 0; tied < 2; tied++) {
        cfg c = {"llama", 16, 16, 1, 2, 1, 16, 8, 10000.0f, 1e-5f, tied, 0, {T_F32, T_F32, T_F32, T_F32}};
        wts w;
        memset(&w, 0, sizeof w);
        make_weights(&c, 600u + (unsigned)tied, &w);
        buf l2 = write_llama2c(&c, &w);
        char name[64];
        snprintf(name, sizeof name, "tiny_%s.bin", tied ? "tied" : "untied");
        save(dir, "fuzz_llama2c", name, l2.p, l2.n);
        free(l2.p);
        free_weights(&c, &w);
    }
    /* a BPE-ish vocabulary through the llama2.c tokenizer format too */
    vocab v;
    small_vocab(1, 20, &v);
    buf t = tokenizer_bin(&v);
    save(dir, "fuzz_tokenizer", "bpe_words.bin", t.p, t.n);
    free(t.p);
    return 0;
}
