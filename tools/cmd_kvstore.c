/* SPDX-License-Identifier: MIT */
/*
 * cmd_kvstore.c - `cq kvstore`: the Redis tier of the serving pool (include/cq_kvstore.h)
 * driven by synthetic pools and prompts, one process per call, so that several
 * processes share blocks through one Redis or Redis Cluster:
 *   publish  prefill a prompt into a pool, publish its blocks locally and to Redis
 *   adopt    adopt the prompt's blocks from Redis into a fresh pool, prefill the rest,
 *            and (--check) compare with a full local prefill bit for bit
 *   keys     the Redis keys of the prompt's blocks, in chain order
 *   encode   one block's wire bytes to a file (optionally damaged: the fault tests)
 *   bench    bytes moved per token, Redis memory, adopt vs local prefill time (kvstore_bench.c)
 * A cq built without the tier (HIREDIS=0, or no hiredis at build time) refuses it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cq_tool.h"

#ifndef CQ_HAVE_KVSTORE

int cq_cmd_kvstore(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "cq: kvstore: this cq was built without the Redis tier (hiredis was not found "
                    "at build time, or HIREDIS=0); install libhiredis-dev and rebuild\n");
    return 2;
}

#else

#include <time.h>
#include <unistd.h>

#include "kvstore_tool.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: cq kvstore publish|adopt|keys|encode|bench --kv-store URL [options]\n"
            "  URL: redis://HOST:PORT or redis-cluster://HOST:PORT[,HOST:PORT...]\n"
            "pool and prompt (every process of one test must agree):\n"
            "  --prompt SEED:COUNT[,SEED:COUNT...]  synthetic token ids, segment by segment\n"
            "  --kv K/V (cq4/cq4)  --layers N (2)  --kv-heads N (4)  --head-dim D (64)\n"
            "  -g, --group G (32)  --sinks S (0)  --model-id N (1)  --budget MiB (256)\n"
            "tier:\n"
            "  --connect-timeout MS (200)  --timeout MS (500)  --retry MS (100)  --ttl S (0)\n"
            "adopt: --check (compare with a full local prefill; exit 1 on a difference)\n"
            "       --rounds N (1; a fresh pool each)  --pause FILE (between rounds: print\n"
            "       'paused', wait for FILE, delete it)  --stats (every counter)\n"
            "encode: --block K --out FILE [--wire-version V] [--flip OFFSET] [--truncate LEN]\n"
            "bench: --prompt as above (default 1:4096); formats cq4/cq4 and fp16/fp16\n");
}

/* splitmix64 of (seed, i): the synthetic token ids */
static uint32_t token_of(uint64_t seed, uint64_t i) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) % 50000u);
}

static int parse_prompt(const char *s, kvt_opts *o) {
    uint32_t n = 0, cap = 0;
    uint32_t *t = NULL;
    while (*s) {
        char *end;
        const unsigned long long seed = strtoull(s, &end, 10);
        if (end == s || *end != ':') goto bad;
        s = end + 1;
        const unsigned long long cnt = strtoull(s, &end, 10);
        if (end == s || cnt == 0 || cnt > (1u << 20) || n + cnt > (1u << 20)) goto bad;
        if (n + cnt > cap) {
            cap = (uint32_t)(n + cnt);
            uint32_t *nt = realloc(t, (size_t)cap * sizeof *t);
            if (!nt) goto bad;
            t = nt;
        }
        for (uint32_t i = 0; i < cnt; i++) t[n + i] = token_of(seed, i);
        n += (uint32_t)cnt;
        s = end;
        if (*s == ',') s++;
        else if (*s) goto bad;
    }
    if (!n) goto bad;
    free(o->tokens);
    o->tokens = t;
    o->n_tokens = n;
    return 0;
bad:
    free(t);
    return -1;
}

static int parse(const char *cmd, int argc, char **argv, kvt_opts *o) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        uint32_t u = 0;
        if (cq_is_help(a)) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--check")) o->check = 1;
        else if (!strcmp(a, "--stats")) o->stats = 1;
        else if (!v) {
            fprintf(stderr, "cq: kvstore %s: %s needs a value (or is unknown)\n", cmd, a);
            return 2;
        } else if (!strcmp(a, "--kv-store")) o->url = v, i++;
        else if (!strcmp(a, "--prompt")) bad = parse_prompt(v, o), i++;
        else if (!strcmp(a, "--kv")) {
            cq_err e;
            bad = cq_kv_format_parse(v, &o->fmt, &e) != CQ_OK || o->fmt.reference, i++;
        } else if (!strcmp(a, "--layers")) bad = cq_arg_u32(v, 1, 64, &o->layers), i++;
        else if (!strcmp(a, "--kv-heads")) bad = cq_arg_u32(v, 1, 64, &o->heads), i++;
        else if (!strcmp(a, "--head-dim")) bad = cq_arg_u32(v, 2, 512, &o->dim), i++;
        else if (!strcmp(a, "-g") || !strcmp(a, "--group")) bad = cq_arg_u32(v, 1, 4096, &o->group), i++;
        else if (!strcmp(a, "--sinks")) bad = cq_arg_u32(v, 0, 4096, &o->sinks), i++;
        else if (!strcmp(a, "--model-id")) bad = cq_arg_u64(v, &o->model_id), i++;
        else if (!strcmp(a, "--budget")) {
            bad = cq_arg_u32(v, 1, 1u << 20, &u), i++;
            o->budget = (uint64_t)u << 20;
        } else if (!strcmp(a, "--connect-timeout")) bad = cq_arg_u32(v, 1, 600000, &o->ko.connect_timeout_ms), i++;
        else if (!strcmp(a, "--timeout")) bad = cq_arg_u32(v, 1, 600000, &o->ko.command_timeout_ms), i++;
        else if (!strcmp(a, "--retry")) {
            bad = cq_arg_u32(v, 1, 600000, &o->ko.retry_min_ms), i++;
            if (o->ko.retry_max_ms < o->ko.retry_min_ms) o->ko.retry_max_ms = o->ko.retry_min_ms;
        } else if (!strcmp(a, "--ttl")) bad = cq_arg_u32(v, 0, 1u << 30, &o->ko.ttl_s), i++;
        else if (!strcmp(a, "--rounds")) bad = cq_arg_u32(v, 1, 1000, &o->rounds), i++;
        else if (!strcmp(a, "--pause")) o->pause = v, i++;
        else if (!strcmp(a, "--block")) bad = cq_arg_u32(v, 0, 1u << 20, &o->block), i++;
        else if (!strcmp(a, "--out")) o->out = v, i++;
        else if (!strcmp(a, "--wire-version")) bad = cq_arg_u32(v, 0, 65535, &o->wire_version), i++;
        else if (!strcmp(a, "--flip")) bad = cq_arg_u32(v, 0, 1u << 30, &o->flip), o->has_flip = 1, i++;
        else if (!strcmp(a, "--truncate")) bad = cq_arg_u32(v, 0, 1u << 30, &o->truncate), o->has_truncate = 1, i++;
        else {
            fprintf(stderr, "cq: kvstore %s: unknown option '%s'\n", cmd, a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "cq: kvstore %s: bad value '%s' for %s\n", cmd, v, a);
            return 2;
        }
    }
    if (!o->url && strcmp(cmd, "keys") != 0 && strcmp(cmd, "encode") != 0) {
        fprintf(stderr, "cq: kvstore %s: --kv-store URL is required\n", cmd);
        return 2;
    }
    if (o->fmt.key == CQ_CODEC_CQ4P) {
        fprintf(stderr, "cq: kvstore %s: cq4+ needs outlier masks, which the synthetic pool has not\n", cmd);
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------ pools */

int kvt_pool(const char *cmd, const kvt_opts *o, cq_kvpool **p) {
    cq_kvpool_config pc;
    memset(&pc, 0, sizeof pc);
    cq_cache_config_default(&pc.cache, o->layers, o->heads, o->dim);
    pc.cache.key_codec = o->fmt.key;
    pc.cache.val_codec = o->fmt.val;
    pc.cache.group = o->group;
    pc.cache.n_sinks = o->sinks;
    pc.budget_bytes = o->budget;
    pc.model_hash = o->model_id;
    cq_err e;
    if (cq_kvpool_create(&pc, p, &e) != CQ_OK) {
        cq_report(cmd, e.code, &e);
        return 1;
    }
    return 0;
}

int kvt_ref_cache(const char *cmd, const kvt_opts *o, cq_cache **c) {
    cq_cache_config cc;
    cq_cache_config_default(&cc, o->layers, o->heads, o->dim);
    cc.key_codec = o->fmt.key;
    cc.val_codec = o->fmt.val;
    cc.group = o->group;
    cc.n_sinks = o->sinks;
    cc.page_tokens = o->group;
    cq_err e;
    if (cq_cache_create(&cc, c, &e) != CQ_OK) {
        cq_report(cmd, e.code, &e);
        return 1;
    }
    return 0;
}

/* The K and V a stand-in model computes for token `tok` at position `pos` of layer L
 * (the same token at the same position gives the same rows): fp16 of a normal draw. */
static void kv_of(const kvt_opts *o, uint32_t L, uint32_t pos, uint32_t tok, uint16_t *k, uint16_t *v) {
    cq_rng r;
    cq_rng_seed(&r, ((uint64_t)tok << 32) ^ ((uint64_t)pos << 8) ^ L ^ (o->model_id << 56) ^ 0x5eedull);
    const size_t m = (size_t)o->heads * o->dim;
    for (size_t i = 0; i < m; i++) k[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
    for (size_t i = 0; i < m; i++) v[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
}

void kvt_rows(const kvt_opts *o, uint32_t L, uint32_t t0, uint32_t n, uint16_t *K, uint16_t *V) {
    const size_t row = (size_t)o->heads * o->dim;
    for (uint32_t i = 0; i < n; i++) kv_of(o, L, t0 + i, o->tokens[t0 + i], K + i * row, V + i * row);
}

cq_status kvt_prefill(const kvt_opts *o, cq_seq *s, cq_cache *c, uint32_t t0, uint32_t t1) {
    const uint32_t step = 256;
    const size_t row = (size_t)o->heads * o->dim;
    uint16_t *k = malloc(step * row * 2), *v = malloc(step * row * 2);
    cq_status st = k && v ? CQ_OK : CQ_ERR_NOMEM;
    /* one call per layer and chunk: every layer gets the same tokens */
    for (uint32_t a = t0; a < t1 && !st; a += step) {
        const uint32_t n = t1 - a < step ? t1 - a : step;
        for (uint32_t L = 0; L < o->layers && !st; L++) {
            kvt_rows(o, L, a, n, k, v);
            if (s) st = cq_seq_append(s, L, k, v, n, NULL);
            if (!st && c) st = cq_cache_append(c, L, k, v, n, NULL);
        }
    }
    free(k);
    free(v);
    return st;
}

uint32_t kvt_compare(const kvt_opts *o, const cq_seq *s, const cq_cache *c) {
    uint32_t bad = 0;
    const uint32_t D = o->dim, QH = 2 * o->heads;
    cq_rng r;
    cq_rng_seed(&r, 4242);
    for (uint32_t L = 0; L < o->layers; L++) {
        const uint32_t T = cq_cache_tokens(c, L);
        if (cq_seq_tokens(s, L) != T) return bad + 1;
        float *a = malloc((size_t)T * D * 8 + 8), *b = malloc((size_t)T * D * 8 + 8);
        for (uint32_t h = 0; h < o->heads; h++) {
            bad += cq_seq_read(s, L, h, 0, T, a, a + (size_t)T * D, NULL) != CQ_OK;
            bad += cq_cache_read(c, L, h, 0, T, b, b + (size_t)T * D, NULL) != CQ_OK;
            bad += memcmp(a, b, (size_t)T * D * 8) != 0;
            for (int role = 0; role < 2; role++) {
                size_t la = 0, lb = 0;
                cq_seq_export(s, L, h, (cq_role)role, NULL, 0, &la, NULL);
                cq_cache_export(c, L, h, (cq_role)role, NULL, 0, &lb, NULL);
                uint8_t *ea = malloc(la + 1), *eb = malloc(lb + 1);
                bad += cq_seq_export(s, L, h, (cq_role)role, ea, la, &la, NULL) != CQ_OK;
                bad += cq_cache_export(c, L, h, (cq_role)role, eb, lb, &lb, NULL) != CQ_OK;
                bad += la != lb || memcmp(ea, eb, la) != 0;
                free(ea);
                free(eb);
            }
        }
        free(a);
        free(b);
        const uint32_t nq = T < 4 ? T : 4;
        float *q = malloc((size_t)nq * QH * D * 4 + 4), *oa = malloc((size_t)nq * QH * D * 4 + 4),
              *ob = malloc((size_t)nq * QH * D * 4 + 4);
        for (size_t i = 0; i < (size_t)nq * QH * D; i++) q[i] = (float)cq_rng_normal(&r);
        for (uint32_t prec = CQ_ATTN_EXACT; prec <= CQ_ATTN_FAST && nq; prec++) {
            cq_attn_opts ao = {.n_threads = 1, .precision = prec};
            bad += cq_seq_attend(s, L, q, QH, oa, &ao, NULL) != CQ_OK;
            bad += cq_cache_attend(c, L, q, QH, ob, &ao, NULL) != CQ_OK;
            bad += memcmp(oa, ob, (size_t)QH * D * 4) != 0;
            bad += cq_seq_attend_prefill(s, L, q, nq, T - nq, QH, oa, &ao, NULL) != CQ_OK;
            bad += cq_cache_attend_prefill(c, L, q, nq, T - nq, QH, ob, &ao, NULL) != CQ_OK;
            bad += memcmp(oa, ob, (size_t)nq * QH * D * 4) != 0;
        }
        free(q);
        free(oa);
        free(ob);
    }
    return bad;
}

void kvt_print_stats(FILE *f, const cq_kvstore_stats *s) {
    fprintf(f,
            "lookups %llu\nblocks_wanted %llu\nhits %llu\nmisses %llu\ntokens_adopted %llu\n"
            "bytes_fetched %llu\nblocks_published %llu\nblocks_present %llu\nbytes_published %llu\n"
            "corrupt %llu\nother_config %llu\nrefused %llu\nerr_down %llu\nerr_timeout %llu\n"
            "err_io %llu\nerr_reply %llu\nerr_cluster %llu\nmoved %llu\nask %llu\n"
            "map_refreshes %llu\nconnects %llu\nseconds_adopt %.6f\nseconds_publish %.6f\n",
            (unsigned long long)s->lookups, (unsigned long long)s->blocks_wanted,
            (unsigned long long)s->hits, (unsigned long long)s->misses,
            (unsigned long long)s->tokens_adopted, (unsigned long long)s->bytes_fetched,
            (unsigned long long)s->blocks_published, (unsigned long long)s->blocks_present,
            (unsigned long long)s->bytes_published, (unsigned long long)s->corrupt,
            (unsigned long long)s->other_config, (unsigned long long)s->refused,
            (unsigned long long)s->err_down, (unsigned long long)s->err_timeout,
            (unsigned long long)s->err_io, (unsigned long long)s->err_reply,
            (unsigned long long)s->err_cluster, (unsigned long long)s->moved,
            (unsigned long long)s->ask, (unsigned long long)s->map_refreshes,
            (unsigned long long)s->connects, s->seconds_adopt, s->seconds_publish);
}

/* ------------------------------------------------------------ subcommands */

static int do_publish(const kvt_opts *o) {
    cq_kvpool *p = NULL;
    cq_tool_kvstore *t = NULL;
    cq_seq *s = NULL;
    int rc = kvt_pool("kvstore publish", o, &p);
    if (!rc) rc = cq_tool_kvstore_open("kvstore publish", o->url, &o->ko, &t);
    cq_kvstore *ks = cq_tool_kvstore_handle(t);
    cq_err e;
    cq_status st = CQ_OK;
    if (!rc) st = cq_seq_create(p, &s, &e);
    if (!rc && !st) st = kvt_prefill(o, s, NULL, 0, o->n_tokens);
    if (!rc && !st) st = cq_seq_publish(s, o->tokens, o->n_tokens, &e);
    uint32_t published = 0;
    if (!rc && !st) st = cq_kvstore_publish(ks, p, o->tokens, o->n_tokens, &published, &e);
    if (!rc && st) {
        cq_report("kvstore publish", st, &e);
        rc = 1;
    }
    if (!rc) {
        cq_kvstore_stats ss;
        cq_kvstore_stats_get(ks, &ss);
        printf("published %u blocks (%llu there already, %llu bytes) of a %u-token prompt\n", published,
               (unsigned long long)ss.blocks_present, (unsigned long long)ss.bytes_published,
               o->n_tokens);
        if (o->stats) kvt_print_stats(stdout, &ss);
        cq_tool_kvstore_report(stdout, t, 0);
    }
    cq_seq_free(s);
    cq_tool_kvstore_free(t);
    cq_kvpool_free(p);
    return rc;
}

static void wait_file(const char *path) {
    printf("paused\n");
    fflush(stdout);
    for (int i = 0; i < 6000 && access(path, F_OK) != 0; i++) {
        const struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    unlink(path);
}

static int do_adopt(const kvt_opts *o) {
    cq_tool_kvstore *t = NULL;
    int rc = cq_tool_kvstore_open("kvstore adopt", o->url, &o->ko, &t);
    cq_kvstore *ks = cq_tool_kvstore_handle(t);
    for (uint32_t r = 0; r < o->rounds && !rc; r++) {
        if (r && o->pause) wait_file(o->pause);
        cq_kvpool *p = NULL;
        cq_seq *s = NULL;
        cq_cache *c = NULL;
        cq_err e;
        rc = kvt_pool("kvstore adopt", o, &p);
        cq_status st = rc ? CQ_OK : cq_seq_create(p, &s, &e);
        uint32_t adopted = 0;
        cq_kvstore_stats before, after;
        cq_kvstore_stats_get(ks, &before);
        const double t0 = cq_tool_now();
        /* as a command's --kv-store does it: never an error, a failure adopts nothing more */
        if (!rc && !st) adopted = cq_tool_kvstore_adopt(t, p, s, o->tokens, o->n_tokens);
        const double t1 = cq_tool_now();
        cq_kvstore_stats_get(ks, &after);
        if (!rc && !st) st = kvt_prefill(o, s, NULL, adopted, o->n_tokens);
        if (!rc && st) {
            cq_report("kvstore adopt", st, &e);
            rc = 1;
        }
        if (!rc) {
            printf("round %u: adopted %u of %u tokens (hits %llu, misses %llu) in %.1f ms", r + 1, adopted,
                   o->n_tokens, (unsigned long long)(after.hits - before.hits),
                   (unsigned long long)(after.misses - before.misses), 1e3 * (t1 - t0));
            if (o->check) {
                rc = kvt_ref_cache("kvstore adopt", o, &c);
                if (!rc && kvt_prefill(o, NULL, c, 0, o->n_tokens) != CQ_OK) rc = 1;
                const uint32_t bad = rc ? 1 : kvt_compare(o, s, c);
                const int ok = !rc && !bad && cq_kvpool_check(p, NULL) == CQ_OK;
                printf("; check: %s", ok ? "equal to a full prefill" : "DIFFERENT from a full prefill");
                if (!ok) rc = 1;
            }
            printf("\n");
            fflush(stdout);
        }
        cq_cache_free(c);
        cq_seq_free(s);
        cq_kvpool_free(p);
    }
    if (!rc && o->stats) {
        cq_kvstore_stats ss;
        cq_kvstore_stats_get(ks, &ss);
        kvt_print_stats(stdout, &ss);
    }
    if (!rc) cq_tool_kvstore_report(stdout, t, 0);
    cq_tool_kvstore_free(t);
    return rc;
}

static int do_keys(const kvt_opts *o) {
    cq_kvpool *p = NULL;
    int rc = kvt_pool("kvstore keys", o, &p);
    if (rc) return rc;
    uint64_t *h = malloc((size_t)o->n_tokens * sizeof *h);
    uint32_t nb = 0;
    cq_err e;
    if (!h || cq_kvpool_chain_hashes(p, o->tokens, o->n_tokens, h, o->n_tokens, &nb, &e) != CQ_OK) rc = 1;
    for (uint32_t i = 0; i < nb && !rc; i++) {
        char key[64];
        cq_kvstore_key(cq_kvpool_config_hash(p), h[i], key, sizeof key);
        printf("%s\n", key);
    }
    free(h);
    cq_kvpool_free(p);
    return rc;
}

/* The wire version field: a little-endian u32 after the 4-byte magic, the CRC-32C of
 * everything before it in the last 4 bytes (docs/SERVING.md, "Blocks on the wire"). */
static void set_wire_version(uint8_t *b, size_t len, uint32_t v) {
    for (int i = 0; i < 4; i++) b[4 + i] = (uint8_t)(v >> (8 * i));
    const uint32_t crc = cq_crc32c(0, b, len - 4);
    for (int i = 0; i < 4; i++) b[len - 4 + i] = (uint8_t)(crc >> (8 * i));
}

static int do_encode(const kvt_opts *o) {
    if (!o->out) {
        fprintf(stderr, "cq: kvstore encode: --out FILE is required\n");
        return 2;
    }
    cq_kvpool *p = NULL;
    cq_seq *s = NULL;
    int rc = kvt_pool("kvstore encode", o, &p);
    cq_err e;
    cq_status st = rc ? CQ_OK : cq_seq_create(p, &s, &e);
    if (!rc && !st) st = kvt_prefill(o, s, NULL, 0, o->n_tokens);
    if (!rc && !st) st = cq_seq_publish(s, o->tokens, o->n_tokens, &e);
    uint64_t *h = rc ? NULL : malloc((size_t)o->n_tokens * sizeof *h);
    uint32_t nb = 0;
    if (!rc && !st) st = h ? cq_kvpool_chain_hashes(p, o->tokens, o->n_tokens, h, o->n_tokens, &nb, &e) : CQ_ERR_NOMEM;
    if (!rc && !st && o->block >= nb)
        st = cq_err_set(&e, CQ_ERR_RANGE, -1, -1, "--block %u: the prompt has %u full blocks", o->block, nb);
    const size_t cap = rc ? 0 : cq_kvpool_block_wire_size(p);
    uint8_t *buf = rc ? NULL : malloc(cap);
    size_t len = 0;
    if (!rc && !st) st = buf ? cq_kvpool_block_encode(p, h[o->block], buf, cap, &len, &e) : CQ_ERR_NOMEM;
    if (!rc && st) {
        cq_report("kvstore encode", st, &e);
        rc = 1;
    }
    if (!rc) {
        if (o->wire_version) set_wire_version(buf, len, o->wire_version);
        if (o->has_flip && o->flip < len) buf[o->flip] ^= 0x10;
        if (o->has_truncate && o->truncate < len) len = o->truncate;
        FILE *f = fopen(o->out, "wb");
        if (!f || fwrite(buf, 1, len, f) != len) {
            fprintf(stderr, "cq: kvstore encode: cannot write %s\n", o->out);
            rc = 1;
        }
        if (f && fclose(f) != 0) rc = 1;
        char key[64];
        cq_kvstore_key(cq_kvpool_config_hash(p), h[o->block], key, sizeof key);
        if (!rc) printf("%s %zu\n", key, len);
    }
    free(buf);
    free(h);
    cq_seq_free(s);
    cq_kvpool_free(p);
    return rc;
}

int cq_cmd_kvstore(int argc, char **argv) {
    if (argc < 2 || cq_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    kvt_opts o;
    memset(&o, 0, sizeof o);
    cq_kvstore_opts_default(&o.ko);
    o.layers = 2, o.heads = 4, o.dim = 64, o.group = 32, o.model_id = 1;
    o.budget = 256ull << 20;
    o.rounds = 1;
    cq_kv_format_parse("cq4/cq4", &o.fmt, NULL);
    int rc = parse(cmd, argc, argv, &o);
    if (!rc && !o.tokens && strcmp(cmd, "bench") != 0) {
        fprintf(stderr, "cq: kvstore %s: --prompt SEED:COUNT[,...] is required\n", cmd);
        rc = 2;
    }
    if (!rc) {
        if (!strcmp(cmd, "publish")) rc = do_publish(&o);
        else if (!strcmp(cmd, "adopt")) rc = do_adopt(&o);
        else if (!strcmp(cmd, "keys")) rc = do_keys(&o);
        else if (!strcmp(cmd, "encode")) rc = do_encode(&o);
        else if (!strcmp(cmd, "bench")) rc = kvt_bench(&o);
        else {
            fprintf(stderr, "cq: kvstore: unknown subcommand '%s'\n", cmd);
            usage(stderr);
            rc = 2;
        }
    }
    free(o.tokens);
    return rc;
}

#endif /* CQ_HAVE_KVSTORE */
