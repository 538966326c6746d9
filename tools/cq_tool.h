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

#endif
