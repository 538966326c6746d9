/* SPDX-License-Identifier: MIT */
/*
 * tokenizer.c - the two tokenizer families of Llama-family checkpoints:
 *   SentencePiece-style (llama2.c tokenizer.bin, GGUF "llama"): the text (with
 *     a space prefix, spaces as U+2581 in GGUF vocabularies) is split into
 *     code points, then the adjacent pair whose concatenation is the
 *     highest-scoring vocabulary piece is merged until none is left (ties: the
 *     leftmost); unknown code points fall back to <0xXX> byte tokens.
 *   byte-level BPE (GGUF "gpt2", e.g. Qwen2): the text is pre-split into words
 *     (GPT-2's or Qwen2's pattern, with an ASCII-exact, Unicode-approximate
 *     letter/number classification), each byte mapped to a printable code point,
 *     then the lowest-ranked merge is applied until none is left.
 * Both merge loops use a heap, so encoding is O(n log n) in the text length.
 * Loading the llama2.c file lives here; the GGUF vocabulary is read in gguf.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_file.h"
#include "model_internal.h"

#define TOKENIZER_FILE_MAX ((size_t)1 << 30) /* bytes of a tokenizer file accepted */

/* ------------------------------------------------------------------ hash */

static uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static const char *piece(const cq_tokenizer *t, uint32_t id) { return t->strings + t->offs[id]; }

/* id of the piece s[0..n), or -1 */
static int32_t lookup(const cq_tokenizer *t, const char *s, size_t n) {
    uint32_t mask = t->hash_cap - 1;
    for (uint32_t h = fnv1a(s, n) & mask;; h = (h + 1) & mask) {
        uint32_t v = t->hash[h];
        if (!v) return -1;
        uint32_t id = v - 1;
        if (t->lens[id] == n && memcmp(piece(t, id), s, n) == 0) return (int32_t)id;
    }
}

/* rank of merge "a b" given as a[0..na) and b[0..nb), or -1 */
static int32_t merge_rank(const cq_tokenizer *t, const char *a, size_t na, const char *b,
                          size_t nb, char *tmp) {
    if (!t->n_merges) return -1;
    size_t n = na + 1 + nb;
    memcpy(tmp, a, na);
    tmp[na] = ' ';
    memcpy(tmp + na + 1, b, nb);
    uint32_t mask = t->merge_hash_cap - 1;
    for (uint32_t h = fnv1a(tmp, n) & mask;; h = (h + 1) & mask) {
        uint32_t v = t->merge_hash[h];
        if (!v) return -1;
        uint32_t r = v - 1;
        if (t->merge_lens[r] == n && memcmp(t->merge_strings + t->merge_offs[r], tmp, n) == 0)
            return (int32_t)r;
    }
}

/* --------------------------------------------------------- byte mapping */

/* GPT-2's printable image of byte b (a code point < 324). */
static uint32_t byte_to_cp(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    uint32_t n = 0; /* index of b among the bytes that are not printable */
    for (uint32_t x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) n++;
    return 256 + n;
}

static int put_utf8(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the UTF-8 sequence at s (1 for an invalid lead or truncated sequence)
 * and its code point. */
static size_t utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (k == 0 || k > n) { *cp = c; return 1; }
    uint32_t v = k == 1 ? c : k == 2 ? (c & 0x1Fu) : k == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) { *cp = c; return 1; }
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    *cp = v;
    return k;
}

/* ----------------------------------------------------------------- build */

void cq_tokenizer_free(cq_tokenizer *t) {
    if (!t) return;
    free(t->strings);
    free(t->offs);
    free(t->lens);
    free(t->scores);
    free(t->types);
    free(t->hash);
    free(t->merge_strings);
    free(t->merge_offs);
    free(t->merge_lens);
    free(t->merge_hash);
    free(t);
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

cq_status cq_tokenizer_build(cq_tok_kind kind, uint32_t n_vocab, const char *const *pieces,
                             const uint32_t *lens, const float *scores, const int32_t *types,
                             const char *const *merges, const uint32_t *merge_lens,
                             uint32_t n_merges, cq_tokenizer **out, cq_err *err) {
    *out = NULL;
    if (n_vocab == 0 || n_vocab > (1u << 24) || n_merges > (1u << 24))
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "tokenizer: %u tokens", n_vocab);
    cq_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->bos = t->eos = t->unk = -1;
    t->add_space_prefix = kind == CQ_TOK_SPM;
    t->add_bos = kind == CQ_TOK_SPM; /* llama convention; GPT-2-style BPE models do not */
    t->space_is_u2581 = 1;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n_vocab; i++) total += (uint64_t)lens[i] + 1;
    uint64_t mtotal = 0;
    for (uint32_t i = 0; i < n_merges; i++) mtotal += (uint64_t)merge_lens[i] + 1;
    if (total > (1ull << 31) || mtotal > (1ull << 31)) {
        cq_tokenizer_free(t);
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "tokenizer: vocabulary too large");
    }
    t->hash_cap = pow2_at_least(2ull * n_vocab);
    t->strings = malloc((size_t)total);
    t->offs = malloc(n_vocab * sizeof *t->offs);
    t->lens = malloc(n_vocab * sizeof *t->lens);
    t->scores = calloc(n_vocab, sizeof *t->scores);
    t->hash = calloc(t->hash_cap, sizeof *t->hash);
    if (types) t->types = malloc(n_vocab * sizeof *t->types);
    if (!t->strings || !t->offs || !t->lens || !t->scores || !t->hash || (types && !t->types)) {
        cq_tokenizer_free(t);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    uint32_t off = 0;
    for (uint32_t i = 0; i < n_vocab; i++) {
        memcpy(t->strings + off, pieces[i], lens[i]);
        t->strings[off + lens[i]] = '\0';
        t->offs[i] = off;
        t->lens[i] = lens[i];
        off += lens[i] + 1;
        if (scores) t->scores[i] = scores[i];
        if (types) t->types[i] = types[i];
        /* first occurrence wins on duplicates */
        if (lookup(t, pieces[i], lens[i]) >= 0) continue;
        uint32_t mask = t->hash_cap - 1, h = fnv1a(pieces[i], lens[i]) & mask;
        while (t->hash[h]) h = (h + 1) & mask;
        t->hash[h] = i + 1;
    }
    if (n_merges) {
        t->merge_hash_cap = pow2_at_least(2ull * n_merges);
        t->merge_strings = malloc((size_t)mtotal);
        t->merge_offs = malloc(n_merges * sizeof *t->merge_offs);
        t->merge_lens = malloc(n_merges * sizeof *t->merge_lens);
        t->merge_hash = calloc(t->merge_hash_cap, sizeof *t->merge_hash);
        if (!t->merge_strings || !t->merge_offs || !t->merge_lens || !t->merge_hash) {
            cq_tokenizer_free(t);
            return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        }
        off = 0;
        for (uint32_t i = 0; i < n_merges; i++) {
            memcpy(t->merge_strings + off, merges[i], merge_lens[i]);
            t->merge_strings[off + merge_lens[i]] = '\0';
            t->merge_offs[i] = off;
            t->merge_lens[i] = merge_lens[i];
            off += merge_lens[i] + 1;
            uint32_t mask = t->merge_hash_cap - 1, h = fnv1a(merges[i], merge_lens[i]) & mask;
            int dup = 0;
            for (; t->merge_hash[h]; h = (h + 1) & mask) {
                uint32_t r = t->merge_hash[h] - 1;
                if (t->merge_lens[r] == merge_lens[i] &&
                    !memcmp(t->merge_strings + t->merge_offs[r], merges[i], merge_lens[i]))
                    dup = 1;
            }
            if (!dup) t->merge_hash[h] = i + 1;
        }
        t->n_merges = n_merges;
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        int n;
        if (kind == CQ_TOK_SPM) n = snprintf(s, sizeof s, "<0x%02X>", b);
        else n = put_utf8(byte_to_cp((uint8_t)b), s);
        t->byte_tok[b] = lookup(t, s, (size_t)n);
    }
    *out = t;
    return CQ_OK;
}

cq_status cq_tokenizer_llama2c_mem(const void *buf, size_t len, uint32_t vocab_size,
                                   cq_tokenizer **out, cq_err *err) {
    if (!out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "out is NULL");
    *out = NULL;
    if (!buf) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "tokenizer buffer is NULL");
    if (vocab_size == 0 || vocab_size > (1u << 24))
        return cq_err_set(err, CQ_ERR_ARG, -1, -1, "tokenizer: vocab_size %u", vocab_size);
    const uint8_t *b = buf;
    if (len < 4) return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "tokenizer.bin: truncated header");
    int32_t max_len;
    memcpy(&max_len, b, 4);
    if (max_len <= 0 || max_len > 65536)
        return cq_err_set(err, CQ_ERR_FORMAT, -1, -1, "tokenizer.bin: max_token_length %d", max_len);
    const char **pieces = malloc(vocab_size * sizeof *pieces);
    uint32_t *lens = malloc(vocab_size * sizeof *lens);
    float *scores = malloc(vocab_size * sizeof *scores);
    cq_status st = CQ_OK;
    if (!pieces || !lens || !scores) {
        st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        goto done;
    }
    size_t pos = 4;
    for (uint32_t i = 0; i < vocab_size; i++) {
        int32_t n;
        if (len - pos < 8) {
            st = cq_err_set(err, CQ_ERR_FORMAT, (int64_t)i, -1,
                            "tokenizer.bin: truncated at token %u of %u", i, vocab_size);
            goto done;
        }
        memcpy(&scores[i], b + pos, 4);
        memcpy(&n, b + pos + 4, 4);
        pos += 8;
        if (n < 0 || n > max_len || (size_t)n > len - pos) {
            st = cq_err_set(err, CQ_ERR_FORMAT, (int64_t)i, -1,
                            "tokenizer.bin: token %u has length %d (%zu bytes left)", i, n,
                            len - pos);
            goto done;
        }
        pieces[i] = (const char *)b + pos;
        lens[i] = (uint32_t)n;
        pos += (size_t)n;
    }
    if ((st = cq_tokenizer_build(CQ_TOK_SPM, vocab_size, pieces, lens, scores, NULL, NULL, NULL, 0,
                                 out, err)))
        goto done;
    /* llama2.c conventions: 0 <unk>, 1 <s>, 2 </s>; pieces carry plain spaces */
    (*out)->unk = 0;
    (*out)->bos = vocab_size > 1 ? 1 : -1;
    (*out)->eos = vocab_size > 2 ? 2 : -1;
    (*out)->space_is_u2581 = 0;
done:
    free(pieces);
    free(lens);
    free(scores);
    return st;
}

cq_status cq_tokenizer_load_llama2c(const char *path, uint32_t vocab_size, cq_tokenizer **out,
                                    cq_err *err) {
    if (!path || !out) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "path or out is NULL");
    *out = NULL;
    char *buf;
    size_t n;
    cq_status st = cq_read_file(path, TOKENIZER_FILE_MAX, &buf, &n, err);
    if (st) return st;
    st = cq_tokenizer_llama2c_mem((const uint8_t *)buf, n, vocab_size, out, err);
    free(buf);
    return st;
}

cq_tok_kind cq_tokenizer_kind(const cq_tokenizer *t) { return t->kind; }
uint32_t cq_tokenizer_vocab(const cq_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t cq_tokenizer_bos(const cq_tokenizer *t) { return t ? t->bos : -1; }
int32_t cq_tokenizer_eos(const cq_tokenizer *t) { return t ? t->eos : -1; }
int cq_tokenizer_add_bos(const cq_tokenizer *t) { return t && t->bos >= 0 && t->add_bos; }

/* ------------------------------------------------------------ merge heap */

typedef struct sym {
    uint32_t start, len;
    int32_t prev, next;
    int32_t id; /* SPM: vocabulary id or -1 (byte fallback) */
} sym;

typedef struct cand {
    double prio; /* lower first */
    uint32_t left, right, len;
} cand;

typedef struct heap {
    cand *a;
    size_t n, cap;
} heap;

static int cand_before(const cand *x, const cand *y) {
    return x->prio < y->prio || (x->prio == y->prio && x->left < y->left);
}

static int heap_push(heap *h, cand c) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? 2 * h->cap : 64;
        cand *na = realloc(h->a, nc * sizeof *na);
        if (!na) return -1;
        h->a = na;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i && cand_before(&c, &h->a[(i - 1) / 2])) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = c;
    return 0;
}

static cand heap_pop(heap *h) {
    cand top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < h->n && cand_before(&h->a[l], best)) { m = l; best = &h->a[l]; }
        if (r < h->n && cand_before(&h->a[r], best)) m = r;
        if (m == i) break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (h->n) h->a[i] = last;
    return top;
}

typedef struct enc {
    const cq_tokenizer *t;
    const char *s; /* the (normalized / mapped) text being merged */
    sym *sy;
    heap h;
    char *tmp; /* scratch for merge keys */
    int32_t *out;
    size_t cap, n;
} enc;

/* Queue the pair (a, a.next) if it can merge. */
static int try_pair(enc *e, int32_t a) {
    if (a < 0) return 0;
    int32_t b = e->sy[a].next;
    if (b < 0) return 0;
    const sym *x = &e->sy[a], *y = &e->sy[b];
    cand c = {0, (uint32_t)a, (uint32_t)b, x->len + y->len};
    if (e->t->kind == CQ_TOK_SPM) {
        if (x->id < 0 || y->id < 0) return 0;
        int32_t id = lookup(e->t, e->s + x->start, x->len + y->len);
        if (id < 0) return 0;
        c.prio = -(double)e->t->scores[id];
    } else {
        int32_t r = merge_rank(e->t, e->s + x->start, x->len, e->s + y->start, y->len, e->tmp);
        if (r < 0) return 0;
        c.prio = r;
    }
    return heap_push(&e->h, c);
}

static void emit(enc *e, int32_t id) {
    if (e->n < e->cap) e->out[e->n] = id;
    e->n++;
}

/* Merge the symbols of e->s[0..n) (already split into e->sy[0..ns)) and emit tokens. */
static cq_status merge_and_emit(enc *e, uint32_t ns) {
    e->h.n = 0;
    for (uint32_t i = 0; i + 1 < ns; i++)
        if (try_pair(e, (int32_t)i)) return CQ_ERR_NOMEM;
    while (e->h.n) {
        cand c = heap_pop(&e->h);
        sym *x = &e->sy[c.left], *y = &e->sy[c.right];
        if (x->len == 0 || y->len == 0 || x->next != (int32_t)c.right || x->len + y->len != c.len)
            continue; /* stale */
        x->len += y->len;
        y->len = 0;
        x->next = y->next;
        if (y->next >= 0) e->sy[y->next].prev = (int32_t)c.left;
        if (e->t->kind == CQ_TOK_SPM) x->id = lookup(e->t, e->s + x->start, x->len);
        if (try_pair(e, x->prev) || try_pair(e, (int32_t)c.left)) return CQ_ERR_NOMEM;
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = e->sy[i].next) {
        const sym *x = &e->sy[i];
        int32_t id = e->t->kind == CQ_TOK_SPM ? x->id : lookup(e->t, e->s + x->start, x->len);
        if (id >= 0) {
            emit(e, id);
            continue;
        }
        if (e->t->kind == CQ_TOK_SPM) {
            for (uint32_t k = 0; k < x->len; k++) {
                int32_t b = e->t->byte_tok[(uint8_t)e->s[x->start + k]];
                emit(e, b >= 0 ? b : e->t->unk >= 0 ? e->t->unk : 0);
            }
        } else { /* per mapped character */
            for (uint32_t k = 0; k < x->len;) {
                uint32_t cp;
                size_t l = utf8_next((const uint8_t *)e->s + x->start + k, x->len - k, &cp);
                int32_t cid = lookup(e->t, e->s + x->start + k, l);
                emit(e, cid >= 0 ? cid : e->t->unk >= 0 ? e->t->unk : 0);
                k += (uint32_t)l;
            }
        }
    }
    return CQ_OK;
}

/* Split s[0..n) into code-point symbols (SPM ids looked up). Returns count. */
static uint32_t split_symbols(enc *e, const char *s, size_t n) {
    uint32_t ns = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_next((const uint8_t *)s + i, n - i, &cp);
        sym *y = &e->sy[ns];
        y->start = (uint32_t)i;
        y->len = (uint32_t)l;
        y->prev = (int32_t)ns - 1;
        y->next = i + l < n ? (int32_t)ns + 1 : -1;
        y->id = e->t->kind == CQ_TOK_SPM ? lookup(e->t, s + i, l) : 0;
        ns++;
        i += l;
    }
    return ns;
}

/* ------------------------------------------------------- pre-tokenizer */

static int is_space_cp(uint32_t c) {
    return c == ' ' || (c >= 9 && c <= 13) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}
static int is_digit_cp(uint32_t c) { return c >= '0' && c <= '9'; }
/* Letters: ASCII exactly; beyond ASCII every code point that is not a space or
 * in the common punctuation/symbol blocks (an approximation of \p{L}). */
static int is_letter_cp(uint32_t c) {
    if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
    if (is_space_cp(c)) return 0;
    if (c < 0xC0) return c == 0xAA || c == 0xB5 || c == 0xBA;
    if (c == 0xD7 || c == 0xF7) return 0;
    if ((c >= 0x2000 && c <= 0x2BFF) || (c >= 0x3000 && c <= 0x303F) ||
        (c >= 0xFF00 && c <= 0xFF0F) || (c >= 0x1F000 && c <= 0x1FAFF))
        return 0;
    return 1;
}

typedef struct cpv {
    const uint8_t *s;
    size_t n;
} cpv;

static uint32_t cp_at(const cpv *v, size_t i, size_t *l) {
    uint32_t cp;
    *l = utf8_next(v->s + i, v->n - i, &cp);
    return cp;
}

/* Length in bytes of the pre-token starting at i. */
static size_t pretoken_len(const cpv *v, size_t i, int qwen2) {
    size_t l, l2, j;
    uint32_t c = cp_at(v, i, &l);
    /* contractions 's 't 're 've 'm 'll 'd (Qwen2: any case) */
    if (c == '\'' && i + 1 < v->n) {
        char a = (char)v->s[i + 1], b = i + 2 < v->n ? (char)v->s[i + 2] : 0;
        if (qwen2) { a = (char)(a | (a >= 'A' && a <= 'Z' ? 32 : 0)); b = (char)(b | (b >= 'A' && b <= 'Z' ? 32 : 0)); }
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    }
    /* letters, with one optional prefix character */
    j = i;
    if (qwen2 ? (c != '\r' && c != '\n' && !is_letter_cp(c) && !is_digit_cp(c)) : c == ' ') j += l;
    if (j < v->n && is_letter_cp(cp_at(v, j, &l2))) {
        while (j < v->n && is_letter_cp(cp_at(v, j, &l2))) j += l2;
        return j - i;
    }
    if (qwen2 && is_letter_cp(c)) {
        for (j = i; j < v->n && is_letter_cp(cp_at(v, j, &l2));) j += l2;
        return j - i;
    }
    /* numbers: GPT-2 ' ?\p{N}+', Qwen2 one digit */
    if (qwen2) {
        if (is_digit_cp(c)) return l;
    } else {
        j = i + (c == ' ' ? l : 0);
        if (j < v->n && is_digit_cp(cp_at(v, j, &l2))) {
            while (j < v->n && is_digit_cp(cp_at(v, j, &l2))) j += l2;
            return j - i;
        }
    }
    /* ' ?[^\s\p{L}\p{N}]+' (Qwen2: then [\r\n]*) */
    j = i + (c == ' ' ? l : 0);
    if (j < v->n) {
        uint32_t d = cp_at(v, j, &l2);
        if (!is_space_cp(d) && !is_letter_cp(d) && !is_digit_cp(d)) {
            while (j < v->n) {
                d = cp_at(v, j, &l2);
                if (is_space_cp(d) || is_letter_cp(d) || is_digit_cp(d)) break;
                j += l2;
            }
            if (qwen2)
                while (j < v->n && (v->s[j] == '\r' || v->s[j] == '\n')) j++;
            return j - i;
        }
    }
    /* whitespace runs */
    if (is_space_cp(c)) {
        size_t end = i, last = i, last_nl = 0;
        int has_nl = 0;
        while (end < v->n) {
            uint32_t d = cp_at(v, end, &l2);
            if (!is_space_cp(d)) break;
            last = end;
            if (d == '\r' || d == '\n') { has_nl = 1; last_nl = end + l2; }
            end += l2;
        }
        if (qwen2 && has_nl) return last_nl - i;      /* \s*[\r\n]+ */
        if (end == v->n || last == i) return end - i; /* \s+ at the end, or a single space */
        return last - i;                              /* \s+(?!\S): leave one for the next word */
    }
    return l; /* anything else: one code point */
}

/* ---------------------------------------------------------------- encode */

cq_status cq_tokenizer_encode(const cq_tokenizer *t, const char *text, size_t len, int bos,
                              int32_t *tokens, size_t cap, size_t *n_out, cq_err *err) {
    if (!t || (!text && len) || !n_out || (!tokens && cap))
        return cq_err_set(err, CQ_ERR_NULL, -1, -1, "tokenizer encode: NULL argument");
    *n_out = 0;
    if (len > (1u << 30)) return cq_err_set(err, CQ_ERR_RANGE, -1, -1, "text too long");
    enc e = {0};
    e.t = t;
    e.out = tokens;
    e.cap = cap;
    cq_status st = CQ_OK;
    if (bos && t->bos >= 0) emit(&e, t->bos);
    if (t->kind == CQ_TOK_SPM) {
        /* normalized text: optional space prefix, spaces as U+2581 when the vocabulary uses it */
        size_t spaces = 0;
        for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
        size_t nlen = len + (t->space_is_u2581 ? 2 * spaces : 0) + 3 + 1;
        char *norm = malloc(nlen);
        e.sy = malloc((nlen + 1) * sizeof *e.sy);
        if (!norm || !e.sy) {
            free(norm);
            free(e.sy);
            return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        }
        size_t k = 0;
        const char *sp = t->space_is_u2581 ? "\xE2\x96\x81" : " ";
        size_t spl = strlen(sp);
        if (t->add_space_prefix && len) { memcpy(norm + k, sp, spl); k += spl; }
        for (size_t i = 0; i < len; i++) {
            if (text[i] == ' ') { memcpy(norm + k, sp, spl); k += spl; }
            else norm[k++] = text[i];
        }
        e.s = norm;
        if (k) st = merge_and_emit(&e, split_symbols(&e, norm, k));
        free(norm);
        free(e.sy);
    } else {
        /* each pre-token is mapped byte by byte (<= 2 UTF-8 bytes each) and merged alone */
        char *word = malloc(2 * len + 1);
        e.sy = malloc((len + 1) * sizeof *e.sy);
        e.tmp = malloc(4 * len + 8);
        if (!word || !e.sy || !e.tmp) st = cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
        cpv v = {(const uint8_t *)text, len};
        for (size_t i = 0; !st && i < len;) {
            size_t pl = pretoken_len(&v, i, t->qwen2_pre);
            size_t k = 0;
            for (size_t b = 0; b < pl; b++) k += (size_t)put_utf8(byte_to_cp((uint8_t)text[i + b]), word + k);
            e.s = word;
            st = merge_and_emit(&e, split_symbols(&e, word, k));
            i += pl;
        }
        free(word);
        free(e.sy);
        free(e.tmp);
    }
    free(e.h.a);
    if (st == CQ_ERR_NOMEM) return cq_err_set(err, st, -1, -1, "out of memory");
    if (st) return st;
    *n_out = e.n;
    if (e.n > cap)
        return cq_err_set(err, CQ_ERR_BUFFER, -1, -1, "text needs %zu tokens, buffer holds %zu",
                          e.n, cap);
    return CQ_OK;
}

/* ---------------------------------------------------------------- decode */

int cq_tokenizer_decode(const cq_tokenizer *t, int32_t prev, int32_t token, char *buf, size_t cap) {
    if (!t || token < 0 || (uint32_t)token >= t->n_vocab || (!buf && cap)) return -1;
    if (t->types && (t->types[token] == 3 || t->types[token] == 5)) return 0; /* control, unused */
    if (token == t->bos || token == t->eos) return 0;
    const char *p = piece(t, (uint32_t)token);
    uint32_t n = t->lens[token];
    size_t k = 0;
    if (t->kind == CQ_TOK_SPM) {
        unsigned byte;
        if (n == 6 && sscanf(p, "<0x%02X>", &byte) == 1 && p[5] == '>') {
            if (cap < 1) return -1;
            buf[0] = (char)byte;
            return 1;
        }
        for (uint32_t i = 0; i < n;) {
            char c;
            if (t->space_is_u2581 && n - i >= 3 && !memcmp(p + i, "\xE2\x96\x81", 3)) {
                c = ' ';
                i += 3;
            } else {
                c = p[i++];
            }
            if (k == 0 && c == ' ' && (prev < 0 || prev == t->bos) && i <= 3) continue;
            if (k >= cap) return -1;
            buf[k++] = c;
        }
        return (int)k;
    }
    for (uint32_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_next((const uint8_t *)p + i, n - i, &cp);
        int byte = -1;
        if (cp < 324)
            for (int b = 0; b < 256; b++)
                if (byte_to_cp((uint8_t)b) == cp) { byte = b; break; }
        if (byte < 0) { /* not a mapped byte: copy the character */
            if (k + l > cap) return -1;
            memcpy(buf + k, p + i, l);
            k += l;
        } else {
            if (k >= cap) return -1;
            buf[k++] = (char)byte;
        }
        i += (uint32_t)l;
    }
    return (int)k;
}
