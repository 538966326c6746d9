/* SPDX-License-Identifier: MIT */
/*
 * cq_kvstore.h - the Redis tier of the serving pool (docs/SERVING.md, "The Redis tier"):
 * committed prefix blocks of a cq_kvpool shared by many processes through Redis or a
 * Redis Cluster, keyed by their chain hash, in the block wire format of
 * cq_kvpool_block_encode.
 *
 * Not part of libchannelquant: the tier is libchannelquant_redis.a (src/kvstore/, built
 * on hiredis when the build finds it; `make HIREDIS=0` leaves it out). Link it before
 * libchannelquant.a and add -lhiredis. This header does not include hiredis.
 *
 * Faults never give a wrong answer and are never an error of publish / adopt: Redis
 * down, slow (every network wait is bounded by the timeouts below), restarted, a value
 * corrupted, truncated, of another wire version or of another pool configuration: the
 * block is a miss (a damaged value is deleted), the sequence prefills it locally.
 * publish / adopt return an error status only for bad arguments or a failure of the
 * pool itself (CQ_ERR_NOMEM, CQ_ERR_STATE of a non-empty sequence).
 *
 * Threading: a cq_kvstore is used by one thread at a time (it holds its connections);
 * open one per thread. The pool calls it makes take the pool's mutex as usual.
 *
 * Tier: TOOL-GRADE (docs/EMBEDDING.md): may change in any minor version.
 */
#ifndef CQ_KVSTORE_H
#define CQ_KVSTORE_H

#include "cq_api.h"
#include <stddef.h>
#include <stdint.h>

#include "cq_error.h"
#include "cq_serve.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cq_kvstore cq_kvstore;

typedef struct cq_kvstore_opts {
    uint32_t connect_timeout_ms; /* one TCP connect (default 200) */
    uint32_t command_timeout_ms; /* one send or receive of a pipeline (default 500) */
    uint32_t retry_min_ms;       /* a node that failed is left alone this long, doubling */
    uint32_t retry_max_ms;       /*   up to retry_max_ms (defaults 100 / 2000) */
    uint32_t ttl_s;              /* expiry of published blocks; 0: none (Redis evicts) */
    uint32_t max_redirects;      /* MOVED / ASK hops per key (default 5) */
    uint32_t window_blocks;      /* blocks per pipeline of adopt / publish (default 16) */
} cq_kvstore_opts;

/* The defaults above. */
CQ_API void cq_kvstore_opts_default(cq_kvstore_opts *o);

/* url: "redis://HOST:PORT" (one server) or "redis-cluster://HOST:PORT[,HOST:PORT...]" (a
 * seed list of one Redis Cluster, at most 16). HOST: a name or an IPv4 address; every
 * node the cluster announces must be on a loopback address or on a host of the seed
 * list (others are refused: a redirection there is a miss). No connection is made
 * here: a server that is down is a miss at each use, not an error (CQ_ERR_ARG is a bad
 * URL or option). o NULL: the defaults; a field 0: its default (ttl_s 0: no expiry). */
CQ_API cq_status cq_kvstore_open(const char *url, const cq_kvstore_opts *o, cq_kvstore **out,
                                 cq_err *err);
/* Closes the connections (accepts NULL). */
CQ_API void cq_kvstore_free(cq_kvstore *ks);

/* After cq_seq_publish(s, tokens, n): puts the pool's cached full blocks spelling
 * tokens[0, n) into Redis (SET NX: write-once; a block there already is skipped; a
 * concurrent publisher of the same block is harmless). Stops at the first block the
 * pool does not hold. *published (may be NULL): blocks written by this call. */
CQ_API cq_status cq_kvstore_publish(cq_kvstore *ks, const cq_kvpool *p, const uint32_t *tokens,
                                    uint32_t n, uint32_t *published, cq_err *err);

/* For an empty sequence s of pool p about to prefill tokens[0, n): fetches the blocks of
 * the prompt's chain that the pool does not hold from Redis (pipelined, in chain order,
 * stopping at the first miss), checks and inserts them into the pool, then adopts the
 * longest cached run (cq_seq_adopt_prefix, leaving at least one token). *adopted: the
 * tokens the sequence now holds; the caller prefills tokens[*adopted, n). */
CQ_API cq_status cq_kvstore_adopt(cq_kvstore *ks, cq_kvpool *p, cq_seq *s, const uint32_t *tokens,
                                  uint32_t n, uint32_t *adopted, cq_err *err);

typedef struct cq_kvstore_stats {
    uint64_t lookups;          /* adopt calls */
    uint64_t blocks_wanted;    /* blocks adopt looked for in Redis */
    uint64_t hits, misses;     /* blocks found and inserted / not found (missing or unusable) */
    uint64_t tokens_adopted;   /* tokens the sequences adopted (from the pool, after fetching) */
    uint64_t bytes_fetched;    /* value bytes received */
    uint64_t blocks_published; /* blocks written (SET NX succeeded) */
    uint64_t blocks_present;   /* blocks publish found there already */
    uint64_t bytes_published;  /* value bytes written */
    uint64_t corrupt;          /* values refused as checksum / format / version / key errors (deleted) */
    uint64_t other_config;     /* values of another configuration (miss, kept) */
    uint64_t refused;          /* blocks the pool could not take (budget, parent gone) */
    uint64_t err_down;         /* a node unreachable (refused, or left alone after a failure) */
    uint64_t err_timeout;      /* a connect, send or receive that ran out of time */
    uint64_t err_io;           /* a connection lost or a protocol error */
    uint64_t err_reply;        /* a Redis error reply (OOM, wrong type, ...) */
    uint64_t err_cluster;      /* TRYAGAIN, CLUSTERDOWN, a slot without a master, too many hops */
    uint64_t moved, ask;       /* redirections followed */
    uint64_t map_refreshes;    /* CLUSTER SLOTS fetched */
    uint64_t connects;         /* connections made (the first and every reconnect) */
    double seconds_adopt;      /* wall time inside cq_kvstore_adopt */
    double seconds_publish;    /* wall time inside cq_kvstore_publish */
} cq_kvstore_stats;

CQ_API cq_status cq_kvstore_stats_get(const cq_kvstore *ks, cq_kvstore_stats *out);
/* Redis's own memory use: the sum of INFO memory used_memory over the server or the
 * cluster's masters (the tier's footprint is its growth). CQ_ERR_IO when a node does not
 * answer. */
CQ_API cq_status cq_kvstore_used_memory(cq_kvstore *ks, uint64_t *bytes, cq_err *err);
/* The Redis key of a block: "cq:v1:<configuration hash, 16 hex>:<chain hash, 16 hex>"
 * (no hash tag: the blocks spread over the cluster's slots). cap >= 40. */
CQ_API cq_status cq_kvstore_key(uint64_t config_hash, uint64_t chain_hash, char *buf, size_t cap);
/* The cluster slot of a key: CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384. */
CQ_API uint32_t cq_kvstore_key_slot(const char *key, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* CQ_KVSTORE_H */
