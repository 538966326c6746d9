/*
 * cq_tool.h - shared helpers of the `cq` command-line tool: the subcommand
 * table and small, strict argument parsers. Tools may exit; the library may not.
 */
#ifndef CQ_TOOL_H
#define CQ_TOOL_H

#include <stdint.h>
#include <stdio.h>

#include "channelquant.h"

typedef struct cq_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} cq_command;

/* Subcommands (one file each under tools/). */
int cq_cmd_vectors(int argc, char **argv);
int cq_cmd_codecs(int argc, char **argv);
int cq_cmd_run(int argc, char **argv);
int cq_eval_attn(int argc, char **argv); /* `cq eval attn` */
int cq_cmd_engine(int argc, char **argv);
int cq_cmd_generate(int argc, char **argv);
int cq_cmd_eval(int argc, char **argv);
int cq_cmd_bench(int argc, char **argv);

/* Strict number parsing: whole string, range checked. Return 0 on success. */
int cq_arg_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);
int cq_arg_u64(const char *s, uint64_t *out);
int cq_arg_f64(const char *s, double *out);
/* Parse "a,b,c" into ascending-checked list; returns count or -1. */
int cq_arg_u16_list(const char *s, uint16_t *out, int max);

/* Report an error record (or a bare status) on stderr as "cq: <cmd>: NAME: msg". */
void cq_report(const char *cmd, cq_status st, const cq_err *e);

int cq_is_help(const char *s);

/* Model loading shared by generate and eval (tools/model_common.c). */
#include "cq_model.h"
typedef struct cq_tool_model {
    cq_model *model;
    cq_tokenizer *own_tok;  /* loaded beside a llama2.c checkpoint */
    const cq_tokenizer *tok; /* the one to use (embedded or own_tok) */
    char path[4096];
} cq_tool_model;
/* model_path NULL: $CQ_SHARED/models/stories260K (default ../shared). A llama2.c
 * checkpoint takes tok_path, else tokenizer.bin or tok512.bin beside it.
 * Returns 0, or prints the error and returns the exit code. */
int cq_tool_model_load(const char *cmd, const char *model_path, const char *tok_path,
                       cq_tool_model *tm);
void cq_tool_model_free(cq_tool_model *tm);
/* Parse "first,last" / "first" / "last" / "none" for --fp16-layers. Returns 0 or -1. */
int cq_tool_fp16_layers(const char *s, int *first, int *last);

#endif
