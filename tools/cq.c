/* SPDX-License-Identifier: MIT */
/*
 * cq.c - entry point of the `cq` command-line tool: the subcommand table.
 * Each subcommand lives in its own tools/cmd_*.c file.
 */
#include <stdio.h>
#include <string.h>

#include "cq_tool.h"

static const cq_command commands[] = {
    {"run", "the main job: a short end-to-end demonstration on built-in data", cq_cmd_run},
    {"vectors", "golden vectors: check, generate, replay real-model slices", cq_cmd_vectors},
    {"codecs", "list the codec registry", cq_cmd_codecs},
    {"engine", "the KV Cache Engine model: stream data through it, check, measure", cq_cmd_engine},
    {"generate", "run the built-in model runtime: text generation through the cache", cq_cmd_generate},
    {"batch", "many prompts through the serving pool: continuous batching, prefix caching", cq_cmd_batch},
    {"eval", "model quality with a compressed cache: ppl/KLD, multiple choice, attention, capture", cq_cmd_eval},
    {"calibrate", "outlier-channel calibration: mask, ROM image, concentration, stability", cq_cmd_calibrate},
    {"sweep", "group size x tier and the codec zoo: bits per value vs KLD and attention cosine", cq_cmd_sweep},
    {"bench", "streaming-cache benchmark: append GB/s, decode attention vs read bandwidth", cq_cmd_bench},
    {"kvstore", "the Redis tier: prefix blocks shared by processes (publish, adopt, bench)", cq_cmd_kvstore},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: cq <command> [options]     (cq <command> --help for details)\n\n"
            "ChannelQuant %s: a bit-exact streaming KV-cache codec (KIVI/KVQuant recipe).\n\n"
            "commands:\n",
            CQ_VERSION_STRING);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (cq_is_help(argv[1])) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("cq %s\n", CQ_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cq: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
