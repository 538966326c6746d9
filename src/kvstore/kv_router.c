/* SPDX-License-Identifier: MIT */
/*
 * kv_router.c - routes a batch of requests (GET, SET NX [EX ttl], DEL, EXISTS) of the
 * Redis tier to the nodes that own their keys and runs them pipelined, one pipeline per
 * node per round. One server: every key goes to it. Redis Cluster: the slot map comes
 * from CLUSTER SLOTS (masters only); a MOVED reply updates the slot's owner, retries
 * there and refreshes the whole map after the round; an ASK reply retries that one
 * request on the named node after ASKING; TRYAGAIN / CLUSTERDOWN are failures (a miss
 * for the caller); a request that failed on a master is retried once the map, fetched
 * again at once, names another master for its slot (a failover); every request takes at
 * most max_redirects hops. A node the cluster
 * announces is used only when it is on a loopback address or on a seed's host.
 * Not here: connections and timeouts (kv_node.c), what the values are (kvstore.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "kvstore_internal.h"

void kv_router_init(kv_router *r, int cluster, const kv_addr *seeds, int n_seeds,
                    const kv_timeouts *t, uint32_t max_redirects, cq_kvstore_stats *st) {
    memset(r, 0, sizeof *r);
    r->cluster = cluster;
    memcpy(r->seeds, seeds, (size_t)n_seeds * sizeof *seeds);
    r->n_seeds = n_seeds;
    r->t = *t;
    r->max_redirects = max_redirects;
    r->st = st;
    for (int i = 0; i < n_seeds && i < KV_MAX_NODES; i++) r->nodes[r->n_nodes++].addr = seeds[i];
    for (int s = 0; s < KV_SLOTS; s++) r->slot_node[s] = -1;
}

void kv_router_close(kv_router *r) {
    for (int i = 0; i < r->n_nodes; i++) kv_node_close(&r->nodes[i]);
}

void kv_req_release(kv_req *q) {
    kv_reply_free(q->owner);
    q->owner = NULL;
    q->data = NULL;
    q->len = 0;
}

/* The node of an address, added if new; -1 when the host is not allowed or the table is
 * full. */
static int node_of(kv_router *r, const kv_addr *a) {
    for (int i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].addr.port == a->port && strcmp(r->nodes[i].addr.host, a->host) == 0) return i;
    int allowed = kv_host_is_loopback(a->host);
    for (int i = 0; i < r->n_seeds && !allowed; i++) allowed = strcmp(r->seeds[i].host, a->host) == 0;
    if (!allowed || r->n_nodes == KV_MAX_NODES) return -1;
    memset(&r->nodes[r->n_nodes], 0, sizeof r->nodes[0]);
    r->nodes[r->n_nodes].addr = *a;
    return r->n_nodes++;
}

/* Parse one CLUSTER SLOTS reply into a new map. 0 or -1 (malformed). */
static int parse_slots(kv_router *r, const redisReply *rep, const kv_addr *asked, int16_t *map) {
    if (rep->type != REDIS_REPLY_ARRAY) return -1;
    for (int s = 0; s < KV_SLOTS; s++) map[s] = -1;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) return -1;
        const redisReply *lo = e->element[0], *hi = e->element[1], *m = e->element[2];
        if (lo->type != REDIS_REPLY_INTEGER || hi->type != REDIS_REPLY_INTEGER ||
            m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
            m->element[0]->type != REDIS_REPLY_STRING || m->element[1]->type != REDIS_REPLY_INTEGER)
            return -1;
        if (lo->integer < 0 || hi->integer >= KV_SLOTS || lo->integer > hi->integer) return -1;
        kv_addr a;
        const redisReply *h = m->element[0];
        if (h->len == 0 || (h->len == 1 && h->str[0] == '?')) {
            /* an empty host: the node that answered */
            snprintf(a.host, sizeof a.host, "%s", asked->host);
        } else {
            char hp[KV_HOST_CAP + 8];
            const int k = snprintf(hp, sizeof hp, "%.*s:%lld", (int)(h->len < KV_HOST_CAP ? h->len : KV_HOST_CAP), h->str,
                                   m->element[1]->integer);
            if (k <= 0 || (size_t)k >= sizeof hp || kv_parse_hostport(hp, (size_t)k, &a) != 0) return -1;
        }
        if (m->element[1]->integer <= 0 || m->element[1]->integer > 65535) return -1;
        a.port = (uint16_t)m->element[1]->integer;
        const int nd = node_of(r, &a);
        for (long long s = lo->integer; s <= hi->integer; s++) map[s] = (int16_t)nd;
    }
    return 0;
}

int kv_router_refresh(kv_router *r) {
    static const char cmd0[] = "CLUSTER", cmd1[] = "SLOTS";
    int16_t *map = malloc(sizeof r->slot_node);
    if (!map) return -1;
    int ok = -1;
    /* known nodes first (the map's own masters), the seeds are among them */
    for (int i = 0; i < r->n_nodes && ok != 0; i++) {
        kv_cmd c = {.argc = 2, .argv = {cmd0, cmd1}, .argvlen = {7, 5}};
        if (kv_node_pipeline(&r->nodes[i], &r->t, &c, 1, r->st) != KV_F_NONE) continue;
        const kv_addr asked = r->nodes[i].addr;
        ok = parse_slots(r, c.reply, &asked, map);
        kv_reply_free(c.reply);
    }
    if (ok == 0) {
        memcpy(r->slot_node, map, sizeof r->slot_node);
        r->map_ok = 1;
        r->map_stale = 0;
        r->st->map_refreshes++;
    }
    free(map);
    return ok;
}

static void fail_req(kv_req *q, kv_fail f) {
    q->res = KV_R_FAIL;
    q->fail = f;
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ...": the slot and the node; -1 if not one. */
static int redirect_of(kv_router *r, const redisReply *e, const char *word, int *slot) {
    const size_t wl = strlen(word);
    if (e->len <= wl + 1 || strncmp(e->str, word, wl) != 0 || e->str[wl] != ' ') return -1;
    const char *p = e->str + wl + 1, *end = e->str + e->len;
    char *sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp) return -1;
    const long s = strtol(p, NULL, 10);
    if (s < 0 || s >= KV_SLOTS) return -1;
    kv_addr a;
    if (kv_parse_hostport(sp + 1, (size_t)(end - sp - 1), &a) != 0) return -1;
    *slot = (int)s;
    return node_of(r, &a);
}

/* One reply for one request: its result, or a redirection (the request stays pending). */
static void take_reply(kv_router *r, kv_req *q, redisReply *rep, int *refresh) {
    q->ask_node = -1;
    switch (rep->type) {
    case REDIS_REPLY_STRING:
        if (q->op != KV_GET) {
            fail_req(q, KV_F_IO);
            break;
        }
        q->res = KV_R_VALUE;
        q->data = (const uint8_t *)rep->str;
        q->len = rep->len;
        q->owner = rep;
        return;
    case REDIS_REPLY_NIL:
        q->res = KV_R_NIL;
        break;
    case REDIS_REPLY_STATUS:
        if (q->op == KV_SETNX) q->res = KV_R_OK;
        else fail_req(q, KV_F_IO);
        break;
    case REDIS_REPLY_INTEGER:
        q->res = KV_R_INT;
        q->ival = rep->integer;
        break;
    case REDIS_REPLY_ERROR: {
        int slot, nd;
        if (r->cluster && strncmp(rep->str, "MOVED ", 6) == 0) {
            r->st->moved++;
            nd = redirect_of(r, rep, "MOVED", &slot);
            if (nd < 0) {
                fail_req(q, KV_F_CLUSTER);
                break;
            }
            r->slot_node[slot] = (int16_t)nd;
            *refresh = 1;
        } else if (r->cluster && strncmp(rep->str, "ASK ", 4) == 0) {
            r->st->ask++;
            nd = redirect_of(r, rep, "ASK", &slot);
            if (nd < 0) {
                fail_req(q, KV_F_CLUSTER);
                break;
            }
            q->ask_node = nd;
        } else if (strncmp(rep->str, "TRYAGAIN", 8) == 0 || strncmp(rep->str, "CLUSTERDOWN", 11) == 0) {
            fail_req(q, KV_F_CLUSTER);
        } else {
            fail_req(q, KV_F_REPLY);
        }
        break;
    }
    default:
        fail_req(q, KV_F_IO);
    }
    kv_reply_free(rep);
}

static int target_of(const kv_router *r, const kv_req *q) {
    if (!r->cluster) return 0;
    if (q->ask_node >= 0) return q->ask_node;
    return r->slot_node[cq_kvstore_key_slot(q->key, q->key_len)];
}

static void build_cmd(const kv_req *q, kv_cmd *c, char *ttl, size_t ttl_cap) {
    static const char get[] = "GET", set[] = "SET", nx[] = "NX", ex[] = "EX", del[] = "DEL",
                      exists[] = "EXISTS";
    memset(c, 0, sizeof *c);
    c->argv[1] = q->key;
    c->argvlen[1] = q->key_len;
    switch (q->op) {
    case KV_GET:
        c->argc = 2;
        c->argv[0] = get;
        break;
    case KV_DEL:
        c->argc = 2;
        c->argv[0] = del;
        break;
    case KV_EXISTS:
        c->argc = 2;
        c->argv[0] = exists;
        break;
    case KV_SETNX:
        c->argc = 4;
        c->argv[0] = set;
        c->argv[2] = (const char *)q->val;
        c->argvlen[2] = q->val_len;
        c->argv[3] = nx;
        if (q->ttl_s) {
            snprintf(ttl, ttl_cap, "%u", q->ttl_s);
            c->argc = 6;
            c->argv[4] = ex;
            c->argv[5] = ttl;
            c->argvlen[5] = strlen(ttl);
        }
        break;
    }
    for (int i = 0; i < c->argc; i++)
        if (!c->argvlen[i] && c->argv[i] != (const char *)q->val) c->argvlen[i] = strlen(c->argv[i]);
}

static void count_fail(cq_kvstore_stats *st, kv_fail f) {
    switch (f) {
    case KV_F_DOWN: st->err_down++; break;
    case KV_F_TIMEOUT: st->err_timeout++; break;
    case KV_F_IO:
    case KV_F_NOMEM: st->err_io++; break;
    case KV_F_REPLY: st->err_reply++; break;
    case KV_F_CLUSTER: st->err_cluster++; break;
    default: break;
    }
}

/* Send the pending requests routed to node nd: one pipeline (ASKING before the ones sent
 * after an ASK). */
static void run_node(kv_router *r, int nd, kv_req *reqs, size_t n, int *refresh) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (reqs[i].res == KV_R_PENDING && target_of(r, &reqs[i]) == nd) m += 1 + (reqs[i].ask_node >= 0);
    if (!m) return;
    kv_cmd *cmds = calloc(m, sizeof *cmds);
    size_t *who = calloc(m, sizeof *who);
    char (*ttl)[16] = calloc(m, sizeof *ttl);
    if (!cmds || !who || !ttl) {
        for (size_t i = 0; i < n; i++)
            if (reqs[i].res == KV_R_PENDING && target_of(r, &reqs[i]) == nd) fail_req(&reqs[i], KV_F_NOMEM);
        free(cmds);
        free(who);
        free(ttl);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].res != KV_R_PENDING || target_of(r, &reqs[i]) != nd) continue;
        if (reqs[i].ask_node >= 0) {
            cmds[k] = (kv_cmd){.argc = 1, .argv = {"ASKING"}, .argvlen = {6}};
            who[k++] = (size_t)-1;
        }
        build_cmd(&reqs[i], &cmds[k], ttl[k], sizeof ttl[k]);
        who[k++] = i;
    }
    const kv_fail f = kv_node_pipeline(&r->nodes[nd], &r->t, cmds, m, r->st);
    for (size_t j = 0; j < m; j++) {
        if (who[j] == (size_t)-1) {
            kv_reply_free(cmds[j].reply);
            continue;
        }
        kv_req *q = &reqs[who[j]];
        q->hops++;
        q->sent_node = nd;
        if (f != KV_F_NONE) fail_req(q, f);
        else take_reply(r, q, cmds[j].reply, refresh);
    }
    if (f != KV_F_NONE) {
        count_fail(r->st, f);
        r->map_stale = 1; /* a master lost: a failover may have moved its slots */
    }
    free(cmds);
    free(who);
    free(ttl);
}

void kv_exec(kv_router *r, kv_req *reqs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        reqs[i].res = KV_R_PENDING;
        reqs[i].fail = KV_F_NONE;
        reqs[i].ask_node = -1;
        reqs[i].hops = 0;
        reqs[i].sent_node = -1;
        reqs[i].owner = NULL;
        reqs[i].data = NULL;
        reqs[i].len = 0;
    }
    if (r->cluster && (!r->map_ok || r->map_stale) && kv_router_refresh(r) != 0 && !r->map_ok) {
        for (size_t i = 0; i < n; i++) fail_req(&reqs[i], KV_F_DOWN);
        r->st->err_down++;
        return;
    }
    for (;;) {
        int pending = 0, refresh = 0;
        for (size_t i = 0; i < n; i++) {
            kv_req *q = &reqs[i];
            if (q->res != KV_R_PENDING) continue;
            if (q->hops > r->max_redirects || target_of(r, q) < 0) {
                fail_req(q, KV_F_CLUSTER);
                r->st->err_cluster++;
                continue;
            }
            pending = 1;
        }
        if (!pending) break;
        for (int nd = 0; nd < r->n_nodes; nd++) run_node(r, nd, reqs, n, &refresh);
        if (r->cluster && r->map_stale) {
            /* a master failed: fetch the map now; a request whose slot has another master
             * since (a failover) is tried there, within its hops */
            if (kv_router_refresh(r) == 0)
                for (size_t i = 0; i < n; i++) {
                    kv_req *q = &reqs[i];
                    if (q->res == KV_R_FAIL && q->fail != KV_F_REPLY && q->fail != KV_F_CLUSTER &&
                        q->fail != KV_F_NOMEM && q->ask_node < 0 && target_of(r, q) >= 0 &&
                        target_of(r, q) != q->sent_node) {
                        q->res = KV_R_PENDING;
                        q->fail = KV_F_NONE;
                    }
                }
        } else if (refresh) {
            kv_router_refresh(r);
        }
    }
}

int kv_router_info_sum(kv_router *r, const char *section, const char *field, uint64_t *sum) {
    *sum = 0;
    if (r->cluster && (!r->map_ok || r->map_stale) && kv_router_refresh(r) != 0 && !r->map_ok) return -1;
    int used[KV_MAX_NODES] = {0};
    if (!r->cluster) used[0] = 1;
    else
        for (int s = 0; s < KV_SLOTS; s++)
            if (r->slot_node[s] >= 0) used[r->slot_node[s]] = 1;
    const size_t fl = strlen(field);
    for (int i = 0; i < r->n_nodes; i++) {
        if (!used[i]) continue;
        kv_cmd c = {.argc = 2, .argv = {"INFO", section}, .argvlen = {4, strlen(section)}};
        const kv_fail f = kv_node_pipeline(&r->nodes[i], &r->t, &c, 1, r->st);
        if (f != KV_F_NONE) return -1;
        const redisReply *rep = c.reply;
        const char *p = NULL;
        if (rep->type == REDIS_REPLY_STRING)
            for (const char *q = rep->str; (q = strstr(q, field)) != NULL; q += fl)
                if ((q == rep->str || q[-1] == '\n') && q[fl] == ':') {
                    p = q + fl + 1;
                    break;
                }
        if (p) *sum += strtoull(p, NULL, 10);
        kv_reply_free(c.reply);
        if (!p) return -1;
    }
    return 0;
}
