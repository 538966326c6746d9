/* SPDX-License-Identifier: MIT */
/*
 * opts.c - the options every model command spells the same way (cq_tool.h):
 * -m/--model, -f/--file, --kv, --mask, -c/--ctx, -t/--threads, -g/--group,
 * --sinks, --fp16-layers, --page-tokens, --json/--csv, with the older
 * spellings (--text, --formats) as aliases; and the warnings every command
 * prints the same way.
 */
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

const char *cq_tool_default_model(char *buf, size_t cap) {
    const char *sh = getenv("CQ_SHARED");
    snprintf(buf, cap, "%.4000s/models/tinyqwen-hd64/tinyqwen-hd64-kbias.gguf",
             sh && *sh ? sh : "../shared");
    return buf;
}

void cq_tool_opts_init(cq_tool_opts *o) {
    memset(o, 0, sizeof *o);
    o->threads = 2;
}

static int is(const char *a, const char *s1, const char *s2) {
    return !strcmp(a, s1) || (s2 && !strcmp(a, s2));
}

int cq_tool_opt(const char *cmd, cq_tool_opts *o, unsigned accept, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    int has = *i + 1 < argc;
    const char *v = has ? argv[*i + 1] : NULL;
    unsigned bit = 0;
    int ok = 1;
    if (is(a, "-m", "--model")) bit = CQ_OPT_MODEL, o->model = v;
    else if (is(a, "--tokenizer", NULL)) bit = CQ_OPT_TOK, o->tokenizer = v;
    else if (is(a, "-f", "--file") || is(a, "--text", NULL)) bit = CQ_OPT_FILE, o->file = v;
    else if (is(a, "--kv", "--formats")) bit = CQ_OPT_KV, o->kv = v;
    else if (is(a, "--mask", NULL)) bit = CQ_OPT_MASK, o->mask = v;
    else if (is(a, "-c", "--ctx")) bit = CQ_OPT_CTX, ok = v && !cq_arg_u32(v, 4, 1u << 24, &o->ctx);
    else if (is(a, "-t", "--threads")) bit = CQ_OPT_THREADS, ok = v && !cq_arg_u32(v, 1, 64, &o->threads);
    else if (is(a, "-g", "--group")) bit = CQ_OPT_GROUP, ok = v && !cq_arg_u32(v, 1, 65536, &o->group);
    else if (is(a, "--sinks", NULL)) bit = CQ_OPT_SINKS, ok = v && !cq_arg_u32(v, 0, 1u << 20, &o->sinks);
    else if (is(a, "--fp16-layers", NULL))
        bit = CQ_OPT_FP16L, ok = v && !cq_tool_fp16_layers(v, &o->fp16_first, &o->fp16_last);
    else if (is(a, "--page-tokens", NULL))
        bit = CQ_OPT_PAGES, ok = v && !cq_arg_u32(v, 1, 1u << 24, &o->page_tokens);
    else if (is(a, "--json", NULL) && (accept & CQ_OPT_OUT)) {
        o->json = 1, o->seen |= CQ_OPT_OUT;
        return 1;
    } else if (is(a, "--csv", NULL) && (accept & CQ_OPT_OUT)) {
        o->csv = 1, o->seen |= CQ_OPT_OUT;
        return 1;
    }
    if (!bit || !(accept & bit)) return 0;
    if (!has || !ok) {
        fprintf(stderr, "cq %s: %s value for %s%s%s\n", cmd, has ? "bad" : "missing", a,
                has ? ": " : "", has ? v : "");
        return 2;
    }
    o->seen |= bit;
    (*i)++;
    return 1;
}

int cq_tool_opts_check(const char *cmd, const cq_tool_opts *o) {
    if (o->json && o->csv) {
        fprintf(stderr, "cq %s: --json and --csv are exclusive\n", cmd);
        return 2;
    }
    return 0;
}

void cq_tool_opts_help(FILE *f, unsigned accept) {
    static const struct {
        unsigned bit;
        const char *text;
    } lines[] = {
        {CQ_OPT_MODEL, "-m, --model FILE|DIR   a GGUF (llama, qwen2) or llama2.c model; default\n"
                       "                       $CQ_SHARED/models/tinyqwen-hd64/tinyqwen-hd64-kbias.gguf\n"
                       "                       (self-trained; CQ_SHARED defaults to ../shared)"},
        {CQ_OPT_TOK, "--tokenizer FILE       llama2.c tokenizer.bin (default: beside the model;\n"
                     "                       GGUF files carry their own)"},
        {CQ_OPT_FILE, "-f, --file FILE        the text (alias --text); default\n"
                      "                       $CQ_SHARED/eval/tinystories_val.txt"},
        {CQ_OPT_KV, "--kv K/V[,K/V...]      cache formats by registry codec name, e.g. fp16/fp16,\n"
                    "                       cq8/cq8, cq4/cq4, cq4+/cq4 (needs a mask), q4_0/q4_0; one\n"
                    "                       name means both roles; fp32 = the fp32 reference path\n"
                    "                       (alias --formats; `cq codecs` lists the names); a\n"
                    "                       suffix @exact or @fast sets a cache format's attention\n"
                    "                       precision (default: the library's, fast)"},
        {CQ_OPT_MASK, "--mask FILE            CQ-4+ key outlier mask (format of ../shared/vectors/masks)"},
        {CQ_OPT_CTX, "-c, --ctx N            context in tokens (more than the model's: an error)"},
        {CQ_OPT_THREADS, "-t, --threads N        worker threads (default 2)"},
        {CQ_OPT_GROUP, "-g, --group G          CQ-4 key group G (default 128)"},
        {CQ_OPT_SINKS, "--sinks S              keep the first S tokens of every head in fp16"},
        {CQ_OPT_FP16L, "--fp16-layers L        first, last or first,last: those layers' K and V in fp16"},
        {CQ_OPT_PAGES, "--page-tokens P        cache page size (default: the context)"},
        {CQ_OPT_OUT, "--json | --csv         machine-readable output on stdout (tables otherwise)"},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        if (accept & lines[i].bit) fprintf(f, "  %s\n", lines[i].text);
}

void cq_tool_kv_setup(const cq_tool_opts *o, const uint8_t *masks, cq_kv_setup *s) {
    memset(s, 0, sizeof *s);
    s->group = o->group;
    s->n_sinks = o->sinks;
    s->fp16_first = o->fp16_first;
    s->fp16_last = o->fp16_last;
    s->masks = masks;
    s->page_tokens = o->page_tokens;
}

int cq_tool_load_mask(const char *cmd, const cq_tool_opts *o, const cq_model_config *c,
                      uint8_t **masks) {
    *masks = NULL;
    if (!o->mask) return 0;
    uint8_t *m = calloc((size_t)c->n_layers * c->n_kv_heads * c->head_dim, 1);
    cq_err e;
    cq_err_clear(&e);
    cq_status st = m ? cq_mask_load(o->mask, c->n_layers, c->n_kv_heads, c->head_dim, m, &e)
                     : CQ_ERR_NOMEM;
    if (st) {
        free(m);
        cq_report(cmd, st, &e);
        return 1;
    }
    *masks = m;
    return 0;
}

void cq_tool_warn(const char *cmd, const char *what, uint32_t warnings) {
    for (uint32_t b = 0; b < CQ_WARN_COUNT; b++)
        if (warnings & (1u << b))
            fprintf(stderr, "cq %s: warning: %s: %s\n", cmd, what, cq_warn_text(b));
}

void cq_tool_json_warnings(FILE *f, uint32_t warnings) {
    fprintf(f, "[");
    int first = 1;
    for (uint32_t b = 0; b < CQ_WARN_COUNT; b++)
        if (warnings & (1u << b)) {
            fprintf(f, "%s{\"id\": \"%s\", \"text\": \"%s\"}", first ? "" : ", ", cq_warn_name(b),
                    cq_warn_text(b));
            first = 0;
        }
    fprintf(f, "]");
}

void cq_tool_json_str(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; s && i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}
