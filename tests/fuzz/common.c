/* SPDX-License-Identifier: MIT */
/*
 * common.c - helpers shared by the fuzz targets: input splitting and a
 * private scratch directory for the loaders that read files; the checks
 * shared by the model and tokenizer targets.
 */
#include "fuzz.h"

#include "cq_cache.h"
#include "cq_model.h"
#include "cq_util.h"

#include <dirent.h>
#include <string.h>
#include <unistd.h>

size_t fuzz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len, size_t max) {
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= size && n < max; i++) {
        if (i == size || data[i] == 0xFF) {
            part[n] = data + start;
            len[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    return n;
}

static char scratch[64];

/* Remove the scratch tree (two levels: files and one level of directories). */
static void remove_tree(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char path[512];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) != 0 && depth < 2) remove_tree(path, depth + 1);
    }
    closedir(d);
    rmdir(dir);
}

static void cleanup(void) {
    if (scratch[0]) remove_tree(scratch, 0);
}

const char *fuzz_scratch_dir(void) {
    if (!scratch[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%.32s/cq-fuzz-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(scratch)) {
            perror("mkdtemp");
            abort();
        }
        atexit(cleanup);
    }
    return scratch;
}

int fuzz_write(const char *dir, const char *name, const uint8_t *data, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    int bad = fclose(f) != 0 || w != len;
    return bad ? -1 : 0;
}

/* ------------------------------------------------------ tokenizer and model */

void fuzz_exercise_tokenizer(const cq_tokenizer *t) {
    static const char *texts[] = {"", "Hello world", " the abc\n\t\xC3\xA9\xE2\x96\x81 x<0x41>",
                                  "\xFF\xFE broken utf-8 \xC3"};
    uint32_t nv = cq_tokenizer_vocab(t);
    int32_t bos = cq_tokenizer_bos(t), eos = cq_tokenizer_eos(t);
    if (nv == 0) fuzz_fail("tokenizer with an empty vocabulary");
    if (bos >= (int32_t)nv || eos >= (int32_t)nv || bos < -1 || eos < -1)
        fuzz_fail("bos %d / eos %d outside vocab %u", bos, eos, nv);
    int32_t tok[256];
    char piece[512];
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (int b = 0; b < 2; b++) {
            size_t len = strlen(texts[i]), n = 0, n2 = 0;
            cq_err e;
            cq_status st = cq_tokenizer_encode(t, texts[i], len, b, tok, 256, &n, &e);
            if (st != CQ_OK) {
                /* SentencePiece without byte fallback may be unable to spell a byte */
                if (e.code != st || !e.msg[0]) fuzz_fail("encode failed without a message");
                continue;
            }
            if (n > 256) fuzz_fail("encode wrote %zu tokens into 256", n);
            if (b && bos >= 0 && (n == 0 || tok[0] != bos)) fuzz_fail("BOS requested, not first");
            for (size_t k = 0; k < n; k++) {
                if (tok[k] < 0 || (uint32_t)tok[k] >= nv) fuzz_fail("token %d outside vocab %u", tok[k], nv);
                int r = cq_tokenizer_decode(t, k ? tok[k - 1] : -1, tok[k], piece, sizeof piece);
                if (r < -1 || r > (int)sizeof piece) fuzz_fail("decode returned %d", r);
            }
            if (n > 0) {
                /* a too-small buffer reports the count it needs */
                st = cq_tokenizer_encode(t, texts[i], len, b, tok, n - 1, &n2, &e);
                if (st != CQ_ERR_BUFFER || n2 != n)
                    fuzz_fail("encode with cap %zu: %s, needs %zu (full: %zu)", n - 1,
                              cq_status_name(st), n2, n);
            }
        }
    }
    /* decode of out-of-range tokens is refused; of any id, bounded */
    if (cq_tokenizer_decode(t, -1, (int32_t)nv, piece, sizeof piece) != -1 ||
        cq_tokenizer_decode(t, -1, -5, piece, sizeof piece) != -1)
        fuzz_fail("decode of an out-of-range token not refused");
    for (uint32_t id = 0; id < nv && id < 512; id++) {
        int r = cq_tokenizer_decode(t, (int32_t)id - 1, (int32_t)id, piece, 8);
        if (r < -1 || r > 8) fuzz_fail("decode of %u into 8 bytes returned %d", id, r);
    }
}

uint32_t fuzz_selector(const uint8_t *data, size_t size) { return cq_crc32c(0, data, size); }

const char *fuzz_pick_kernels(uint32_t sel) {
    static const char *all[] = {"scalar", "avx2", "avx512"};
    static const char *have[3];
    static unsigned n;
    if (!n) /* once: the tables a cache can be created with here */
        for (unsigned i = 0; i < 3; i++) {
            cq_cache_config cfg;
            cq_cache_config_default(&cfg, 1, 1, 2);
            cfg.kernels = all[i];
            cq_cache *c = NULL;
            if (cq_cache_create(&cfg, &c, NULL) == CQ_OK) have[n++] = all[i];
            cq_cache_free(c);
        }
    return n ? have[sel % n] : "scalar";
}

void fuzz_exercise_model(const cq_model *m, uint64_t max_weight_bytes, uint32_t sel) {
    const cq_model_config *c = cq_model_get_config(m);
    if (!c || !c->dim || !c->n_layers || !c->n_heads || !c->n_kv_heads || !c->head_dim ||
        !c->vocab_size || !c->hidden_dim || !c->max_seq_len)
        fuzz_fail("loaded model with a zero dimension");
    if (c->n_heads % c->n_kv_heads) fuzz_fail("n_heads %u not a multiple of n_kv_heads %u", c->n_heads, c->n_kv_heads);
    const cq_tokenizer *t = cq_model_tokenizer(m);
    if (t) fuzz_exercise_tokenizer(t);
    uint64_t wb = cq_model_weight_bytes(m);
    /* forward cost ~ weights; logits and activations ~ vocab, dim, hidden */
    if (wb > max_weight_bytes || c->vocab_size > (1u << 16) || c->hidden_dim > (1u << 16) ||
        c->dim > (1u << 14) || (uint64_t)c->n_heads * c->head_dim > (1u << 14))
        return;
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    if (!logits) return;
    for (int mode = 0; mode < 2; mode++) {
        cq_session_opts o;
        cq_session_opts_default(&o);
        o.mode = mode ? CQ_KV_CACHE : CQ_KV_REFERENCE;
        o.max_tokens = 4;
        /* the cache: fp16, CQ-8 or CQ-4 keys and values, on a kernel table of the input's choice */
        static const cq_codec_id kv[] = {CQ_CODEC_FP16, CQ_CODEC_CQ8, CQ_CODEC_CQ4};
        cq_cache_config cc;
        cq_cache_config_default(&cc, c->n_layers, c->n_kv_heads, c->head_dim);
        cc.key_codec = kv[(sel >> 8) % 3];
        cc.val_codec = kv[(sel >> 12) % 3];
        cc.group = 1u + (sel >> 16) % 8;
        cc.kernels = fuzz_pick_kernels(sel);
        if (mode) o.cache = &cc;
        cq_session *s = NULL;
        cq_err e;
        cq_status st = cq_session_create(m, &o, &s, &e);
        if (st != CQ_OK) {
            /* the cache refuses some head_dim (e.g. odd or above its maximum) */
            if (mode && (st == CQ_ERR_DIM || st == CQ_ERR_ARG)) continue;
            fuzz_fail("session (mode %d) on a loaded model: %s", mode, e.msg);
        }
        int32_t tok = t && cq_tokenizer_bos(t) >= 0 ? cq_tokenizer_bos(t) : 0;
        if ((uint32_t)tok >= c->vocab_size) tok = 0;
        st = cq_session_forward(s, &tok, 1, logits, 1, &e);
        if (st == CQ_OK) {
            if (cq_session_pos(s) != 1) fuzz_fail("position %u after one token", cq_session_pos(s));
        } else if ((st == CQ_ERR_NONFINITE || st == CQ_ERR_OVERFLOW) && e.code == st) {
            /* extreme or NaN weights give non-finite K/V (or past fp16 in the cache): both
             * KV stores refuse them, and nothing is appended */
            if (cq_session_pos(s) != 0) fuzz_fail("refused forward moved to %u", cq_session_pos(s));
        } else {
            fuzz_fail("forward (mode %d) on a loaded model: %s: %s", mode, cq_status_name(st), e.msg);
        }
        cq_session_free(s);
    }
    free(logits);
}

void fuzz_load_model(fuzz_model_loader load, const uint8_t *data, size_t size) {
    cq_model *m = (cq_model *)(uintptr_t)1;
    cq_err e;
    cq_status st = load(data, size, &m, &e);
    if (st != CQ_OK) {
        if (m != NULL || e.code != st || !e.msg[0]) fuzz_fail("failed load left state");
        return;
    }
    fuzz_exercise_model(m, 4u << 20, fuzz_selector(data, size));
    cq_model_free(m);
}
