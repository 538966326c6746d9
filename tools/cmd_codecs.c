/*
 * cmd_codecs.c - `cq codecs`: list the codec registry (id, name, bits, layout).
 */
#include <stdio.h>
#include <string.h>

#include "cq_tool.h"

int cq_cmd_codecs(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (cq_is_help(argv[i])) {
            printf("usage: cq codecs [--json]\n\nList every codec of the registry: stable id, "
                   "name, family, nominal code bits, roles, layout.\n");
            return 0;
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "cq codecs: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (json) printf("[\n");
    else printf("| id | name | family | bits | roles | layout |\n|---:|---|---|---:|---|---|\n");
    for (size_t i = 0; i < cq_codec_count(); i++) {
        const cq_codec_traits *c = cq_codec_at(i);
        const char *roles = (c->flags & CQ_CODEC_F_KEYS) && (c->flags & CQ_CODEC_F_VALUES) ? "K,V"
                            : (c->flags & CQ_CODEC_F_KEYS)                                ? "K"
                                                                                          : "V";
        if (json)
            printf("  {\"id\": %d, \"name\": \"%s\", \"family\": \"%s\", \"bits\": %g, "
                   "\"roles\": \"%s\", \"layout\": \"%s\"}%s\n",
                   (int)c->id, c->name, c->family, c->bits, roles, c->layout,
                   i + 1 < cq_codec_count() ? "," : "");
        else
            printf("| %d | %s | %s | %g | %s | %s |\n", (int)c->id, c->name, c->family, c->bits,
                   roles, c->layout);
    }
    if (json) printf("]\n");
    return 0;
}
