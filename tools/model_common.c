/* SPDX-License-Identifier: MIT */
/*
 * model_common.c - what `cq generate` and `cq eval` share: finding and loading
 * a model and its tokenizer (the default is tinyqwen-hd64-kbias under
 * ../shared), naming it in reports, and small option parsers of the model
 * commands.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cq_tool.h"

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}
static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int cq_tool_model_load(const char *cmd, const char *model_path, const char *tok_path,
                       cq_tool_model *tm) {
    memset(tm, 0, sizeof *tm);
    char dir[4096];
    if (!model_path) model_path = cq_tool_default_model(dir, sizeof dir);
    if (strlen(model_path) > 4000) {
        fprintf(stderr, "cq %s: model path too long\n", cmd);
        return 2;
    }
    if (is_dir(model_path)) { /* a directory: its stories260K.bin, model.bin or model.gguf */
        const char *cands[] = {"stories260K.bin", "model.bin", "model.gguf"};
        int found = 0;
        for (size_t i = 0; i < 3 && !found; i++) {
            int w = snprintf(tm->path, sizeof tm->path, "%.4000s/%s", model_path, cands[i]);
            if (w < 0 || (size_t)w >= sizeof tm->path) break;
            found = is_file(tm->path);
        }
        if (!found) {
            fprintf(stderr, "cq %s: no model in directory %s (give --model FILE)\n", cmd, model_path);
            return 1;
        }
    } else {
        snprintf(tm->path, sizeof tm->path, "%s", model_path);
    }
    cq_err e;
    cq_err_clear(&e);
    cq_status st = cq_model_load(tm->path, &tm->model, &e);
    if (st) {
        cq_report(cmd, st, &e);
        return 1;
    }
    tm->tok = cq_model_tokenizer(tm->model);
    if (!tm->tok || tok_path) {
        char tp[4096 + 32];
        if (!tok_path) {
            char base[4096];
            snprintf(base, sizeof base, "%s", tm->path);
            char *sl = strrchr(base, '/');
            if (sl) sl[1] = '\0';
            else strcpy(base, "./");
            snprintf(tp, sizeof tp, "%stokenizer.bin", base);
            if (!is_file(tp)) snprintf(tp, sizeof tp, "%stok512.bin", base);
            tok_path = tp;
        }
        st = cq_tokenizer_load_llama2c(tok_path, cq_model_get_config(tm->model)->vocab_size,
                                       &tm->own_tok, &e);
        if (st) {
            cq_report(cmd, st, &e);
            cq_tool_model_free(tm);
            return 1;
        }
        tm->tok = tm->own_tok;
    }
    return 0;
}

void cq_tool_model_free(cq_tool_model *tm) {
    cq_tokenizer_free(tm->own_tok);
    cq_model_free(tm->model);
    memset(tm, 0, sizeof *tm);
}

int cq_tool_fp16_layers(const char *s, int *first, int *last) {
    *first = *last = 0;
    if (!strcmp(s, "none")) return 0;
    char buf[64];
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "first")) *first = 1;
        else if (!strcmp(tok, "last")) *last = 1;
        else return -1;
    }
    return 0;
}

const char *cq_tool_model_label(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    if (!strncmp(b, "tinyqwen-hd64-kbias", 19))
        return "tinyqwen-hd64-kbias: self-trained Qwen2-shaped GQA model (head_dim 64) with Qwen2-like "
               "key outliers; not a public checkpoint";
    if (!strncmp(b, "tinyqwen-hd64", 13))
        return "tinyqwen-hd64: self-trained Qwen2-shaped GQA model (head_dim 64), mild key outliers; "
               "not a public checkpoint";
    if (strstr(path, "stories260K"))
        return "stories260K: llama2.c TinyStories model (head_dim 8)";
    return "";
}
