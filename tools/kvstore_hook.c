/* SPDX-License-Identifier: MIT */
/*
 * kvstore_hook.c - the Redis tier as the tool's commands use it (`--kv-store URL` of
 * `cq batch`): open, adopt before a prefill, publish after cq_seq_publish, report the
 * counters. Compiled in every build: without the tier (HIREDIS=0) opening refuses with
 * a message and the other calls do nothing, so a command needs no #ifdef of its own.
 * `cq kvstore publish` / `adopt` open the tier and print their summary line through it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cq_tool.h"

#ifdef CQ_HAVE_KVSTORE

struct cq_tool_kvstore {
    cq_kvstore *ks;
};

int cq_tool_kvstore_open(const char *cmd, const char *url, const cq_kvstore_opts *o,
                         cq_tool_kvstore **out) {
    *out = NULL;
    cq_tool_kvstore *t = calloc(1, sizeof *t);
    cq_err e;
    if (!t) {
        fprintf(stderr, "cq: %s: out of memory\n", cmd);
        return 1;
    }
    if (cq_kvstore_open(url, o, &t->ks, &e) != CQ_OK) {
        cq_report(cmd, e.code, &e);
        free(t);
        return 2;
    }
    *out = t;
    return 0;
}

uint32_t cq_tool_kvstore_adopt(cq_tool_kvstore *t, cq_kvpool *p, cq_seq *s, const uint32_t *tokens,
                               uint32_t n) {
    uint32_t adopted = 0;
    if (t && cq_kvstore_adopt(t->ks, p, s, tokens, n, &adopted, NULL) != CQ_OK) adopted = 0;
    return adopted;
}

void cq_tool_kvstore_publish(cq_tool_kvstore *t, const cq_kvpool *p, const uint32_t *tokens, uint32_t n) {
    if (t) cq_kvstore_publish(t->ks, p, tokens, n, NULL, NULL);
}

void cq_tool_kvstore_report(FILE *f, const cq_tool_kvstore *t, int json) {
    cq_kvstore_stats s;
    if (!t || cq_kvstore_stats_get(t->ks, &s) != CQ_OK) return;
    const unsigned long long errors = s.err_down + s.err_timeout + s.err_io + s.err_reply + s.err_cluster;
    if (json)
        fprintf(f,
                "\"kv_store\": {\"lookups\": %llu, \"hits\": %llu, \"misses\": %llu, \"tokens_adopted\": %llu, "
                "\"bytes_fetched\": %llu, \"blocks_published\": %llu, \"bytes_published\": %llu, "
                "\"corrupt\": %llu, \"errors\": %llu, \"seconds_adopt\": %.6f, \"seconds_publish\": %.6f}",
                (unsigned long long)s.lookups, (unsigned long long)s.hits, (unsigned long long)s.misses,
                (unsigned long long)s.tokens_adopted, (unsigned long long)s.bytes_fetched,
                (unsigned long long)s.blocks_published, (unsigned long long)s.bytes_published,
                (unsigned long long)s.corrupt, errors, s.seconds_adopt, s.seconds_publish);
    else
        fprintf(f,
                "kv-store: lookups %llu, hits %llu, misses %llu, tokens adopted %llu, fetched %llu bytes, "
                "published %llu blocks (%llu bytes), corrupt %llu, errors %llu, %.3f s adopting, %.3f s "
                "publishing\n",
                (unsigned long long)s.lookups, (unsigned long long)s.hits, (unsigned long long)s.misses,
                (unsigned long long)s.tokens_adopted, (unsigned long long)s.bytes_fetched,
                (unsigned long long)s.blocks_published, (unsigned long long)s.bytes_published,
                (unsigned long long)s.corrupt, errors, s.seconds_adopt, s.seconds_publish);
}

cq_kvstore *cq_tool_kvstore_handle(cq_tool_kvstore *t) {
    return t ? t->ks : NULL;
}
cq_status cq_tool_kvstore_batch_adopt(void *t, cq_kvpool *p, cq_seq *s, const uint32_t *tokens,
                                      uint32_t n, uint32_t *adopted) {
    return cq_kvstore_adopt(((cq_tool_kvstore *)t)->ks, p, s, tokens, n, adopted, NULL);
}
void cq_tool_kvstore_batch_published(void *t, const cq_kvpool *p, const uint32_t *tokens, uint32_t n) {
    cq_kvstore_publish(((cq_tool_kvstore *)t)->ks, p, tokens, n, NULL, NULL);
}

void cq_tool_kvstore_free(cq_tool_kvstore *t) {
    if (!t) return;
    cq_kvstore_free(t->ks);
    free(t);
}

#else /* built without the tier */

int cq_tool_kvstore_open(const char *cmd, const char *url, const cq_kvstore_opts *o,
                         cq_tool_kvstore **out) {
    (void)url;
    (void)o;
    *out = NULL;
    fprintf(stderr, "cq: %s: --kv-store: this cq was built without the Redis tier (hiredis was not "
                    "found at build time, or HIREDIS=0); install libhiredis-dev and rebuild\n", cmd);
    return 2;
}
uint32_t cq_tool_kvstore_adopt(cq_tool_kvstore *t, cq_kvpool *p, cq_seq *s, const uint32_t *tokens,
                               uint32_t n) {
    (void)t, (void)p, (void)s, (void)tokens, (void)n;
    return 0;
}
void cq_tool_kvstore_publish(cq_tool_kvstore *t, const cq_kvpool *p, const uint32_t *tokens, uint32_t n) {
    (void)t, (void)p, (void)tokens, (void)n;
}
void cq_tool_kvstore_report(FILE *f, const cq_tool_kvstore *t, int json) {
    (void)f, (void)t, (void)json;
}
cq_kvstore *cq_tool_kvstore_handle(cq_tool_kvstore *t) {
    (void)t;
    return NULL;
}
cq_status cq_tool_kvstore_batch_adopt(void *t, cq_kvpool *p, cq_seq *s, const uint32_t *tokens,
                                      uint32_t n, uint32_t *adopted) {
    (void)t, (void)p, (void)s, (void)tokens, (void)n;
    *adopted = 0;
    return CQ_ERR_UNSUPPORTED;
}
void cq_tool_kvstore_batch_published(void *t, const cq_kvpool *p, const uint32_t *tokens, uint32_t n) {
    (void)t, (void)p, (void)tokens, (void)n;
}
void cq_tool_kvstore_free(cq_tool_kvstore *t) {
    (void)t;
}
#endif
