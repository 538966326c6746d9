/* SPDX-License-Identifier: MIT */
/*
 * kv_node.c - one Redis node's connection for the Redis tier, on hiredis's blocking
 * API: connect with a connect timeout, a send / receive timeout on every command,
 * pipelines (redisAppendCommandArgv, then one redisGetReply per command), a stale
 * connection (server restarted) reopened once, and after a failure a backoff that
 * doubles from retry_min_ms to retry_max_ms during which the node is "down" without
 * a network wait. SIGPIPE of a write to a closed socket is blocked in the calling
 * thread and consumed, never delivered to the process.
 * Not here: routing, redirections (kv_router.c).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "kvstore_internal.h"

static struct timeval ms_tv(uint32_t ms) {
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
    return tv;
}

static void rest(kv_node *nd, const kv_timeouts *t) {
    uint32_t b = nd->backoff_ms ? nd->backoff_ms * 2 : t->retry_min_ms;
    if (b > t->retry_max_ms) b = t->retry_max_ms;
    nd->backoff_ms = b;
    nd->retry_at = kv_now() + b / 1000.0;
}

void kv_node_close(kv_node *nd) {
    if (nd->ctx) redisFree((redisContext *)nd->ctx);
    nd->ctx = NULL;
}

void kv_reply_free(void *reply) {
    if (reply) freeReplyObject(reply);
}

static kv_fail node_connect(kv_node *nd, const kv_timeouts *t, cq_kvstore_stats *st) {
    if (nd->ctx) return KV_F_NONE;
    if (kv_now() < nd->retry_at) return KV_F_DOWN;
    redisContext *c = redisConnectWithTimeout(nd->addr.host, nd->addr.port, ms_tv(t->connect_ms));
    if (!c) {
        rest(nd, t);
        return KV_F_NOMEM;
    }
    if (c->err) {
        const kv_fail f = strstr(c->errstr, "timed out") ? KV_F_TIMEOUT : KV_F_DOWN;
        redisFree(c);
        rest(nd, t);
        return f;
    }
    if (redisSetTimeout(c, ms_tv(t->command_ms)) != REDIS_OK) {
        redisFree(c);
        rest(nd, t);
        return KV_F_IO;
    }
    nd->ctx = c;
    nd->backoff_ms = 0;
    st->connects++;
    return KV_F_NONE;
}

static kv_fail pipeline_once(kv_node *nd, kv_cmd *cmds, size_t n, int *stale) {
    redisContext *c = nd->ctx;
    *stale = 0;
    for (size_t i = 0; i < n; i++)
        if (redisAppendCommandArgv(c, cmds[i].argc, cmds[i].argv, cmds[i].argvlen) != REDIS_OK) {
            kv_node_close(nd);
            return KV_F_NOMEM;
        }
    size_t got = 0;
    int e = 0;
    for (; got < n; got++) {
        void *r = NULL;
        errno = 0;
        if (redisGetReply(c, &r) != REDIS_OK || !r) {
            e = errno;
            break;
        }
        cmds[got].reply = r;
    }
    if (got == n) return KV_F_NONE;
    const int cerr = c->err;
    for (size_t i = 0; i < got; i++) {
        freeReplyObject(cmds[i].reply);
        cmds[i].reply = NULL;
    }
    kv_node_close(nd);
    if (cerr == REDIS_ERR_IO && (e == EAGAIN || e == EWOULDBLOCK)) return KV_F_TIMEOUT;
    *stale = got == 0 && (cerr == REDIS_ERR_EOF || cerr == REDIS_ERR_IO);
    return KV_F_IO;
}

kv_fail kv_node_pipeline(kv_node *nd, const kv_timeouts *t, kv_cmd *cmds, size_t n,
                         cq_kvstore_stats *st) {
    for (size_t i = 0; i < n; i++) cmds[i].reply = NULL;
    if (!n) return KV_F_NONE;
    sigset_t pipe_set, old, pend;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pend);
    const int was_pending = sigismember(&pend, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    kv_fail f = KV_F_NONE;
    for (int attempt = 0; attempt < 2; attempt++) {
        const int reused = nd->ctx != NULL;
        f = node_connect(nd, t, st);
        if (f != KV_F_NONE) break;
        int stale = 0;
        f = pipeline_once(nd, cmds, n, &stale);
        if (f == KV_F_NONE) break;
        if (!(reused && stale && attempt == 0)) {
            rest(nd, t);
            break;
        }
        /* a reused connection the server had closed (restart, idle timeout): reopen once */
    }
    sigpending(&pend);
    if (!was_pending && sigismember(&pend, SIGPIPE)) {
        const struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return f;
}
