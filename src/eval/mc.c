/* SPDX-License-Identifier: MIT */
/*
 * mc.c - multiple-choice item sets: HellaSwag jsonl (a small strict JSON
 * reader, depth-limited, hostile-input safe) and a cloze set built from plain
 * text. Scoring lives with the model runtime; this file only builds items.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_eval.h"
#include "cq_util.h"
#include "cq_vectors.h"

void cq_mc_free(cq_mc_set *set) {
    if (!set) return;
    for (size_t i = 0; i < set->n; i++) {
        free(set->items[i].context);
        for (uint32_t j = 0; j < set->items[i].n_endings; j++) free(set->items[i].endings[j]);
    }
    free(set->items);
    set->items = NULL;
    set->n = 0;
}

/* ------------------------------------------------------------ tiny JSON */

typedef struct jp {
    const char *p, *end;
    int depth;
} jp;

static void ws(jp *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n')) j->p++;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int c = (unsigned char)p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Parse a string; *out receives a malloc'd UTF-8 copy when out != NULL. */
static int jstring(jp *j, char **out) {
    if (j->p >= j->end || *j->p != '"') return 0;
    const char *s = ++j->p;
    size_t cap = 0;
    /* worst case the decoded string is no longer than the raw one (+4 for a \u) */
    const char *q = s;
    while (q < j->end && *q != '"') {
        if (*q == '\\') q++;
        q++;
    }
    if (q >= j->end) return 0;
    cap = (size_t)(q - s) + 8;
    char *o = out ? malloc(cap) : NULL;
    if (out && !o) return 0;
    size_t n = 0;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        if (c < 0x20) goto fail;
        if (c != '\\') {
            if (o) o[n++] = (char)c;
            continue;
        }
        if (j->p >= j->end) goto fail;
        char e = *j->p++;
        unsigned cp;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = 8; break;
        case 'f': cp = 12; break;
        case 'n': cp = 10; break;
        case 'r': cp = 13; break;
        case 't': cp = 9; break;
        case 'u':
            if (j->end - j->p < 4 || !hex4(j->p, &cp)) goto fail;
            j->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                unsigned lo;
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || !hex4(j->p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    goto fail;
                j->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) goto fail;
            break;
        default: goto fail;
        }
        if (o) {
            if (n + 4 >= cap) goto fail;
            n += put_utf8(o + n, cp);
        }
    }
    if (j->p >= j->end) goto fail;
    j->p++;
    if (o) {
        o[n] = '\0';
        *out = o;
    }
    return 1;
fail:
    free(o);
    return 0;
}

static int jvalue(jp *j); /* skip any value */

static int jnumber(jp *j, double *v) {
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-') j->p++;
    if (j->p >= j->end || !isdigit((unsigned char)*j->p)) return 0;
    while (j->p < j->end && (isdigit((unsigned char)*j->p) || *j->p == '.' || *j->p == 'e' ||
                             *j->p == 'E' || *j->p == '+' || *j->p == '-'))
        j->p++;
    char buf[64];
    size_t l = (size_t)(j->p - s);
    if (l >= sizeof buf) return 0;
    memcpy(buf, s, l);
    buf[l] = '\0';
    char *e;
    double d = strtod(buf, &e);
    if (*e) return 0;
    if (v) *v = d;
    return 1;
}

static int jcontainer(jp *j, char open, char close) {
    if (++j->depth > 64) return 0;
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return 1;
    }
    for (;;) {
        ws(j);
        if (open == '{') {
            if (!jstring(j, NULL)) return 0;
            ws(j);
            if (j->p >= j->end || *j->p++ != ':') return 0;
            ws(j);
        }
        if (!jvalue(j)) return 0;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            j->depth--;
            return 1;
        }
        return 0;
    }
}

static int jvalue(jp *j) {
    ws(j);
    if (j->p >= j->end) return 0;
    char c = *j->p;
    if (c == '"') return jstring(j, NULL);
    if (c == '{') return jcontainer(j, '{', '}');
    if (c == '[') return jcontainer(j, '[', ']');
    if (c == '-' || isdigit((unsigned char)c)) return jnumber(j, NULL);
    static const char *lit[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(lit[i]);
        if ((size_t)(j->end - j->p) >= l && !strncmp(j->p, lit[i], l)) {
            j->p += l;
            return 1;
        }
    }
    return 0;
}

/* Parse one HellaSwag object into *it. Returns 0 on success, else a static reason. */
static const char *parse_item(jp *j, cq_mc_item *it) {
    char *ctx = NULL, *ctx_a = NULL, *ctx_b = NULL;
    long label = -1;
    const char *why = NULL;
    memset(it, 0, sizeof *it);
    ws(j);
    if (j->p >= j->end || *j->p != '{') return "not a JSON object";
    j->p++;
    j->depth = 1;
    ws(j);
    int first = 1;
    while (j->p < j->end && *j->p != '}') {
        if (!first) {
            if (*j->p != ',') { why = "expected ','"; goto out; }
            j->p++;
            ws(j);
        }
        first = 0;
        char *key = NULL;
        if (!jstring(j, &key)) { why = "bad key"; goto out; }
        ws(j);
        if (j->p >= j->end || *j->p++ != ':') { free(key); why = "expected ':'"; goto out; }
        ws(j);
        int ok = 1;
        if (!strcmp(key, "ctx") || !strcmp(key, "ctx_a") || !strcmp(key, "ctx_b")) {
            char **dst = !strcmp(key, "ctx") ? &ctx : !strcmp(key, "ctx_a") ? &ctx_a : &ctx_b;
            free(*dst);
            *dst = NULL;
            ok = jstring(j, dst);
        } else if (!strcmp(key, "endings")) {
            for (uint32_t e = 0; e < it->n_endings; e++) free(it->endings[e]);
            it->n_endings = 0;
            if (j->p >= j->end || *j->p != '[') ok = 0;
            else {
                j->p++;
                ws(j);
                while (ok && j->p < j->end && *j->p != ']') {
                    if (it->n_endings && (*j->p != ',' || (j->p++, ws(j), 0))) { ok = 0; break; }
                    if (it->n_endings >= CQ_MC_MAX_ENDINGS) { ok = 0; break; }
                    ok = jstring(j, &it->endings[it->n_endings]);
                    if (ok) it->n_endings++;
                    ws(j);
                }
                if (ok && j->p < j->end && *j->p == ']') j->p++;
                else ok = 0;
            }
        } else if (!strcmp(key, "label")) {
            double v;
            if (j->p < j->end && *j->p == '"') {
                char *s = NULL;
                ok = jstring(j, &s);
                if (ok) {
                    char *e;
                    label = strtol(s, &e, 10);
                    if (!*s || *e) ok = 0;
                }
                free(s);
            } else {
                ok = jnumber(j, &v) && v >= 0 && v < 64 && v == (double)(long)v;
                if (ok) label = (long)v;
            }
        } else {
            ok = jvalue(j);
        }
        free(key);
        if (!ok) { why = "bad value"; goto out; }
        ws(j);
    }
    if (j->p >= j->end) { why = "unterminated object"; goto out; }
    j->p++;
    if (!ctx) {
        if (!ctx_a) { why = "no ctx or ctx_a"; goto out; }
        size_t la = strlen(ctx_a), lb = ctx_b ? strlen(ctx_b) : 0;
        ctx = malloc(la + lb + 2);
        if (!ctx) { why = "out of memory"; goto out; }
        memcpy(ctx, ctx_a, la);
        size_t n = la;
        if (lb) {
            ctx[n++] = ' ';
            memcpy(ctx + n, ctx_b, lb);
            ctx[n] = (char)toupper((unsigned char)ctx[n]);
            n += lb;
        }
        ctx[n] = '\0';
    }
    if (it->n_endings < 2) { why = "fewer than 2 endings"; goto out; }
    if (label < 0 || (uint32_t)label >= it->n_endings) { why = "label missing or out of range"; goto out; }
    it->context = ctx;
    ctx = NULL;
    it->label = (uint32_t)label;
out:
    free(ctx);
    free(ctx_a);
    free(ctx_b);
    if (why) {
        for (uint32_t e = 0; e < it->n_endings; e++) free(it->endings[e]);
        it->n_endings = 0;
    }
    return why;
}

cq_status cq_mc_parse_hellaswag(const char *text, size_t len, size_t max_items, cq_mc_set *set,
                                cq_err *err) {
    cq_err_clear(err);
    if (!set || (len && !text)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    memset(set, 0, sizeof *set);
    size_t cap = 0, line = 0;
    const char *p = text, *end = text + len;
    while (p < end && (!max_items || set->n < max_items)) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        jp j = {p, le, 0};
        ws(&j);
        if (j.p < le) {
            if (set->n == cap) {
                size_t nc = cap ? 2 * cap : 64;
                cq_mc_item *ni = realloc(set->items, nc * sizeof *ni);
                if (!ni) {
                    cq_mc_free(set);
                    return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
                }
                set->items = ni;
                cap = nc;
            }
            const char *why = parse_item(&j, &set->items[set->n]);
            if (!why) {
                ws(&j);
                if (j.p < le) why = "trailing characters";
                else set->n++;
                if (why) {
                    set->n++;
                }
            }
            if (why) {
                cq_mc_free(set);
                return cq_err_set(err, CQ_ERR_FORMAT, (int64_t)line, -1, "jsonl line %zu: %s", line, why);
            }
        }
        p = nl ? nl + 1 : end;
    }
    return CQ_OK;
}

cq_status cq_mc_load_hellaswag(const char *path, size_t max_items, cq_mc_set *set, cq_err *err) {
    char *buf;
    size_t len;
    cq_status st = cq_read_file(path, (size_t)1 << 30, &buf, &len, err);
    if (st) return st;
    st = cq_mc_parse_hellaswag(buf, len, max_items, set, err);
    free(buf);
    return st;
}

/* ------------------------------------------------------------------ cloze */

typedef struct span {
    const char *p;
    size_t n;
} span;

/* Split a paragraph into sentences ending at . ! ? (with a closing quote kept). */
static size_t split_sentences(const char *p, size_t n, span *out, size_t max) {
    size_t k = 0, i = 0;
    while (i < n && k < max) {
        while (i < n && p[i] == ' ') i++;
        size_t s = i;
        while (i < n && p[i] != '.' && p[i] != '!' && p[i] != '?') i++;
        if (i >= n) break; /* a trailing fragment without terminator is not a sentence */
        i++;
        while (i < n && (p[i] == '"' || p[i] == '\'')) i++;
        out[k].p = p + s;
        out[k].n = i - s;
        k++;
    }
    return k;
}

static char *dup_span(const char *p, size_t n, int lead_space) {
    char *s = malloc(n + 2);
    if (!s) return NULL;
    size_t o = 0;
    if (lead_space) s[o++] = ' ';
    memcpy(s + o, p, n);
    s[o + n] = '\0';
    return s;
}

cq_status cq_mc_build_cloze(const char *text, size_t len, size_t max_items, uint64_t seed,
                            cq_mc_set *set, cq_err *err) {
    cq_err_clear(err);
    if (!set || (len && !text)) return cq_err_set(err, CQ_ERR_NULL, -1, -1, "NULL argument");
    memset(set, 0, sizeof *set);
    /* collect eligible paragraphs: (context span, 4th sentence span) */
    size_t cap = 256, np = 0;
    span *ctx = malloc(cap * sizeof *ctx), *fourth = malloc(cap * sizeof *fourth);
    if (!ctx || !fourth) {
        free(ctx);
        free(fourth);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        while (n && (p[n - 1] == '\r' || p[n - 1] == ' ')) n--;
        span s[5];
        if (n && split_sentences(p, n, s, 5) >= 4) {
            if (np == cap) {
                cap *= 2;
                span *a = realloc(ctx, cap * sizeof *a), *b = a ? realloc(fourth, cap * sizeof *b) : NULL;
                if (a) ctx = a;
                if (b) fourth = b;
                if (!a || !b) {
                    free(ctx);
                    free(fourth);
                    return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
                }
            }
            ctx[np].p = s[0].p;
            ctx[np].n = (size_t)(s[2].p + s[2].n - s[0].p);
            fourth[np] = s[3];
            np++;
        }
        p = nl ? nl + 1 : end;
    }
    if (np < 4) {
        free(ctx);
        free(fourth);
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1,
                          "cloze: %zu paragraphs with 4 or more sentences; need at least 4", np);
    }
    size_t n_items = max_items && max_items < np ? max_items : np;
    set->items = calloc(n_items, sizeof *set->items);
    if (!set->items) {
        free(ctx);
        free(fourth);
        return cq_err_set(err, CQ_ERR_NOMEM, -1, -1, "out of memory");
    }
    cq_rng r;
    cq_rng_seed(&r, seed);
    cq_status st = CQ_OK;
    size_t n_out = 0;
    for (size_t i = 0; i < np && n_out < n_items && !st; i++) {
        /* A paragraph needs 3 others whose 4th sentence differs in text from its own;
         * without them the draw below would never end (found by fuzz_jsonl), so such a
         * paragraph gives no item. Stops counting at 3: O(1) on real text. */
        size_t usable = 0;
        for (size_t o = 0; o < np && usable < 3; o++)
            usable += o != i && !(fourth[o].n == fourth[i].n &&
                                  !memcmp(fourth[o].p, fourth[i].p, fourth[i].n));
        if (usable < 3) continue;
        cq_mc_item *it = &set->items[n_out];
        size_t others[3];
        for (int k = 0; k < 3; k++) {
            size_t o;
            int dup;
            do {
                o = cq_rng_below(&r, (uint32_t)np);
                dup = o == i;
                for (int m = 0; m < k; m++) dup |= others[m] == o;
                /* distractors must differ in text from the true ending */
                dup |= fourth[o].n == fourth[i].n && !memcmp(fourth[o].p, fourth[i].p, fourth[i].n);
            } while (dup);
            others[k] = o;
        }
        it->label = cq_rng_below(&r, 4);
        it->n_endings = 4;
        it->context = dup_span(ctx[i].p, ctx[i].n, 0);
        for (uint32_t e = 0, k = 0; e < 4; e++) {
            const span *sp = e == it->label ? &fourth[i] : &fourth[others[k++]];
            it->endings[e] = dup_span(sp->p, sp->n, 1);
        }
        set->n = ++n_out;
        if (!it->context) st = CQ_ERR_NOMEM;
        for (uint32_t e = 0; e < 4; e++)
            if (!it->endings[e]) st = CQ_ERR_NOMEM;
    }
    if (!st && n_out == 0) {
        free(ctx);
        free(fourth);
        cq_mc_free(set);
        return cq_err_set(err, CQ_ERR_SHAPE, -1, -1,
                          "cloze: no paragraph has 3 others with a different 4th sentence");
    }
    free(ctx);
    free(fourth);
    if (st) {
        cq_mc_free(set);
        return cq_err_set(err, st, -1, -1, "out of memory");
    }
    return CQ_OK;
}
