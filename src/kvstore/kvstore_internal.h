/* SPDX-License-Identifier: MIT */
/*
 * kvstore_internal.h - the pieces of the Redis tier (include/cq_kvstore.h) below its
 * public API: addresses and URLs, key slots (kv_names.c), one node's connection with
 * timeouts and reconnect backoff (kv_node.c, the only file that speaks hiredis besides
 * kv_router.c), and the router that sends a batch of requests to the right nodes,
 * pipelined, following MOVED / ASK (kv_router.c). Not installed.
 */
#ifndef CQ_KVSTORE_INTERNAL_H
#define CQ_KVSTORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cq_kvstore.h"

#define KV_MAX_SEEDS 16
#define KV_MAX_NODES 64
#define KV_SLOTS 16384
#define KV_HOST_CAP 256
#define KV_KEY_CAP 48

typedef struct kv_addr {
    char host[KV_HOST_CAP];
    uint16_t port;
} kv_addr;

/* ---- kv_names.c (no hiredis) */
/* Parse a tier URL (include/cq_kvstore.h). Returns 0, or -1 with a message in msg. */
int kv_parse_url(const char *url, int *cluster, kv_addr *seeds, int cap, int *n, char *msg,
                 size_t msgcap);
/* "host:port" (an address of a MOVED / ASK reply or of CLUSTER SLOTS). 0 or -1. */
int kv_parse_hostport(const char *s, size_t len, kv_addr *a);
int kv_host_is_loopback(const char *host);
uint16_t kv_crc16(const void *data, size_t n);
double kv_now(void); /* monotonic seconds */

/* ---- kv_node.c: one connection */
typedef struct kv_timeouts {
    uint32_t connect_ms, command_ms, retry_min_ms, retry_max_ms;
} kv_timeouts;

typedef enum kv_fail {
    KV_F_NONE = 0,
    KV_F_DOWN,    /* refused / unreachable, or still in its backoff */
    KV_F_TIMEOUT, /* a connect, send or receive ran out of time */
    KV_F_IO,      /* connection lost, protocol error */
    KV_F_REPLY,   /* an error reply */
    KV_F_CLUSTER, /* TRYAGAIN, CLUSTERDOWN, no master for the slot, too many hops, host refused */
    KV_F_NOMEM
} kv_fail;

typedef struct kv_node {
    kv_addr addr;
    void *ctx;          /* redisContext, NULL while not connected */
    double retry_at;    /* kv_now() before which no connect is tried */
    uint32_t backoff_ms;
} kv_node;

/* One command of a pipeline: argv with lengths; the reply (a redisReply) is owned by
 * the caller after kv_node_pipeline succeeds. */
typedef struct kv_cmd {
    int argc;
    const char *argv[6];
    size_t argvlen[6];
    void *reply;
} kv_cmd;

/* Send cmds[0, n) in one pipeline and read every reply. On failure (return != KV_F_NONE)
 * no reply is kept and the connection is closed (the node rests for its backoff). A
 * connection found dead at the first write of a reused context is reopened once. */
kv_fail kv_node_pipeline(kv_node *nd, const kv_timeouts *t, kv_cmd *cmds, size_t n,
                         cq_kvstore_stats *st);
void kv_node_close(kv_node *nd);
void kv_reply_free(void *reply);

/* ---- kv_router.c: requests routed to nodes */
typedef enum kv_op { KV_GET, KV_SETNX, KV_DEL, KV_EXISTS } kv_op;
typedef enum kv_res {
    KV_R_PENDING = 0,
    KV_R_VALUE, /* GET: data / len */
    KV_R_NIL,   /* GET: no such key; SET NX: not set (exists) */
    KV_R_OK,    /* SET NX: set */
    KV_R_INT,   /* DEL / EXISTS: ival */
    KV_R_FAIL   /* fail says why */
} kv_res;

typedef struct kv_req {
    kv_op op;
    char key[KV_KEY_CAP];
    size_t key_len;
    const uint8_t *val; /* SET NX */
    size_t val_len;
    uint32_t ttl_s;
    /* routing */
    int ask_node; /* >= 0: the next try goes to this node with ASKING */
    uint32_t hops;
    int sent_node; /* the node of the last try (-1: none) */
    /* result */
    kv_res res;
    kv_fail fail;
    long long ival;
    const uint8_t *data;
    size_t len;
    void *owner; /* the reply that holds data */
} kv_req;

typedef struct kv_router {
    int cluster;
    kv_addr seeds[KV_MAX_SEEDS];
    int n_seeds;
    kv_node nodes[KV_MAX_NODES];
    int n_nodes;
    int16_t slot_node[KV_SLOTS]; /* cluster: master of each slot, -1 unknown */
    int map_ok, map_stale;
    kv_timeouts t;
    uint32_t max_redirects;
    cq_kvstore_stats *st;
} kv_router;

void kv_router_init(kv_router *r, int cluster, const kv_addr *seeds, int n_seeds,
                    const kv_timeouts *t, uint32_t max_redirects, cq_kvstore_stats *st);
void kv_router_close(kv_router *r);
/* Run every request (results in the requests; never fails as a whole). */
void kv_exec(kv_router *r, kv_req *reqs, size_t n);
void kv_req_release(kv_req *q);
/* Fetch the slot map (CLUSTER SLOTS) from the first node that answers. 0 or -1. */
int kv_router_refresh(kv_router *r);
/* The sum over the masters (or the one server) of an INFO field. 0 or -1. */
int kv_router_info_sum(kv_router *r, const char *section, const char *field, uint64_t *sum);

#endif
