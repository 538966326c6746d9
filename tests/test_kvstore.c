/* SPDX-License-Identifier: MIT */
/*
 * test_kvstore.c - the Redis tier's parts that need no server (include/cq_kvstore.h,
 * src/kvstore/): CRC16/XMODEM and cluster key slots against the Redis Cluster
 * specification's values and hash-tag rules, block key names, URL and seed-list parsing
 * (accepted and refused forms), option checks, and a tier whose server is not there:
 * publish and adopt succeed with nothing moved, the sequence adopts only what its own
 * pool holds, and the failure is counted, not returned. The tests with servers are
 * tests/cli/redis_tier.sh and tests/cli/redis_cluster.sh. Built only with the tier.
 */
#include <stdint.h>
#include <string.h>

#include "channelquant.h"
#include "cq_kvstore.h"
#include "cq_test.h"
#include "kvstore_internal.h"

static void test_crc16_slots(void) {
    CHECK(kv_crc16("123456789", 9) == 0x31C3, "crc16 check value 0x%04x", kv_crc16("123456789", 9));
    CHECK(kv_crc16("", 0) == 0, "crc16 of nothing");
    /* CLUSTER KEYSLOT values of a Redis server */
    CHECK(cq_kvstore_key_slot("foo", 3) == 12182, "foo -> %u", cq_kvstore_key_slot("foo", 3));
    CHECK(cq_kvstore_key_slot("bar", 3) == 5061, "bar -> %u", cq_kvstore_key_slot("bar", 3));
    CHECK(cq_kvstore_key_slot("hello", 5) == 866, "hello -> %u", cq_kvstore_key_slot("hello", 5));
    /* hash tags: the first {...} with something inside */
    const char *a = "{user1000}.following", *b = "{user1000}.followers";
    CHECK(cq_kvstore_key_slot(a, strlen(a)) == cq_kvstore_key_slot(b, strlen(b)), "same tag, same slot");
    CHECK(cq_kvstore_key_slot(a, strlen(a)) == cq_kvstore_key_slot("user1000", 8), "tag hashed alone");
    const char *c = "foo{}{bar}"; /* empty first tag: the whole key */
    CHECK(cq_kvstore_key_slot(c, strlen(c)) == (kv_crc16(c, strlen(c)) & 16383), "empty tag");
    const char *d = "foo{{bar}}zap"; /* the tag is "{bar" */
    CHECK(cq_kvstore_key_slot(d, strlen(d)) == (kv_crc16("{bar", 4) & 16383), "nested brace");
    const char *e = "foo{bar}{zap}"; /* the first tag only */
    CHECK(cq_kvstore_key_slot(e, strlen(e)) == cq_kvstore_key_slot("bar", 3), "first tag");
    const char *f = "foo{bar"; /* no closing brace */
    CHECK(cq_kvstore_key_slot(f, strlen(f)) == (kv_crc16(f, strlen(f)) & 16383), "open tag");
}

static void test_keys(void) {
    char k[64];
    CHECK(cq_kvstore_key(0x1234, 0xabcdef, k, sizeof k) == CQ_OK && !strcmp(k, "cq:v1:0000000000001234:0000000000abcdef"),
          "key %s", k);
    CHECK(cq_kvstore_key(1, 2, k, 39) == CQ_ERR_BUFFER, "short buffer");
    CHECK(cq_kvstore_key(1, 2, NULL, 64) == CQ_ERR_NULL, "NULL buffer");
    /* no hash tag: keys of one prompt spread over the slots */
    uint32_t seen[4] = {0};
    for (uint64_t h = 0; h < 64; h++) {
        cq_kvstore_key(7, h * 0x9E3779B97F4A7C15ull, k, sizeof k);
        seen[cq_kvstore_key_slot(k, strlen(k)) * 4 / 16384]++;
    }
    CHECK(seen[0] && seen[1] && seen[2] && seen[3], "slots spread %u %u %u %u", seen[0], seen[1], seen[2], seen[3]);
}

static int parses(const char *url, int want_cluster, int want_n) {
    kv_addr s[KV_MAX_SEEDS];
    int cl = -1, n = 0;
    char msg[200];
    return kv_parse_url(url, &cl, s, KV_MAX_SEEDS, &n, msg, sizeof msg) == 0 && cl == want_cluster &&
           n == want_n;
}

static void test_urls(void) {
    CHECK(parses("redis://127.0.0.1:6379", 0, 1), "single");
    CHECK(parses("redis://localhost:7000", 0, 1), "localhost");
    CHECK(parses("redis-cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002", 1, 3), "seed list");
    CHECK(parses("redis-cluster://cache-1.example:7000", 1, 1), "a name");
    const char *bad[] = {"", "127.0.0.1:6379", "http://127.0.0.1:1", "redis://127.0.0.1", "redis://127.0.0.1:",
                         "redis://127.0.0.1:0", "redis://127.0.0.1:65536", "redis://127.0.0.1:12x",
                         "redis://user:pw@127.0.0.1:1", "redis://127.0.0.1:1/0", "redis://127.0.0.1:1,127.0.0.1:2",
                         "redis-cluster://", "redis-cluster://127.0.0.1:1,", "redis://[::1]:6379",
                         "redis-cluster://a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10,a:11,a:12,a:13,a:14,a:15,a:16,a:17"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kv_addr s[KV_MAX_SEEDS];
        int cl, n;
        char msg[200] = "";
        CHECK(kv_parse_url(bad[i], &cl, s, KV_MAX_SEEDS, &n, msg, sizeof msg) != 0 && msg[0],
              "'%s' accepted", bad[i]);
    }
    CHECK(kv_host_is_loopback("127.0.0.1") && kv_host_is_loopback("127.1.2.3") && kv_host_is_loopback("localhost"),
          "loopback");
    CHECK(!kv_host_is_loopback("10.0.0.1") && !kv_host_is_loopback("127.0.0.1x") && !kv_host_is_loopback("128.0.0.1"),
          "not loopback");
    kv_addr a;
    CHECK(kv_parse_hostport("127.0.0.1:7001", 14, &a) == 0 && a.port == 7001 && !strcmp(a.host, "127.0.0.1"),
          "host:port");

    cq_kvstore *ks = NULL;
    cq_err e;
    CHECK(cq_kvstore_open("redis://nowhere", NULL, &ks, &e) == CQ_ERR_ARG && !ks && strstr(e.msg, "HOST:PORT"),
          "bad URL: %s", e.msg);
    cq_kvstore_opts o;
    cq_kvstore_opts_default(&o);
    CHECK(o.connect_timeout_ms == 200 && o.command_timeout_ms == 500, "defaults");
    o.retry_min_ms = 5000, o.retry_max_ms = 10;
    CHECK(cq_kvstore_open("redis://127.0.0.1:1", &o, &ks, &e) == CQ_ERR_ARG, "retry min > max");
    CHECK(cq_kvstore_open(NULL, NULL, &ks, &e) == CQ_ERR_NULL, "NULL url");
    cq_kvstore_free(NULL);
}

/* A pool of 1 layer, 2 kv heads, D 32, G 16, CQ-4. */
static cq_kvpool *pool(void) {
    cq_kvpool_config pc;
    memset(&pc, 0, sizeof pc);
    cq_cache_config_default(&pc.cache, 1, 2, 32);
    pc.cache.key_codec = CQ_CODEC_CQ4;
    pc.cache.val_codec = CQ_CODEC_CQ4;
    pc.cache.group = 16;
    pc.budget_bytes = 1u << 24;
    pc.model_hash = 3;
    cq_kvpool *p = NULL;
    CHECK(cq_kvpool_create(&pc, &p, NULL) == CQ_OK, "pool");
    return p;
}

static void fill(cq_seq *s, uint32_t n) {
    uint16_t k[2 * 32], v[2 * 32];
    cq_rng r;
    cq_rng_seed(&r, 5);
    for (uint32_t t = 0; t < n; t++) {
        for (int i = 0; i < 64; i++) k[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
        for (int i = 0; i < 64; i++) v[i] = cq_f32_to_f16((float)cq_rng_normal(&r));
        CHECK(cq_seq_append(s, 0, k, v, 1, NULL) == CQ_OK, "append");
    }
}

static void test_server_absent(void) {
    /* port 1 on loopback: nothing listens (connection refused at once) */
    cq_kvstore_opts o;
    cq_kvstore_opts_default(&o);
    o.retry_min_ms = 1, o.retry_max_ms = 1;
    cq_kvstore *ks = NULL;
    cq_err e;
    CHECK(cq_kvstore_open("redis://127.0.0.1:1", &o, &ks, &e) == CQ_OK, "open: %s", e.msg);
    cq_kvpool *p = pool();
    cq_seq *a = NULL, *b = NULL;
    uint32_t tok[80];
    for (int i = 0; i < 80; i++) tok[i] = (uint32_t)(i * 7 + 1);
    cq_seq_create(p, &a, NULL);
    fill(a, 80);
    CHECK(cq_seq_publish(a, tok, 80, NULL) == CQ_OK, "local publish");
    uint32_t pub = 9;
    CHECK(cq_kvstore_publish(ks, p, tok, 80, &pub, &e) == CQ_OK && pub == 0, "publish: %s", e.msg);
    uint32_t adopted = 9;
    cq_seq_create(p, &b, NULL);
    CHECK(cq_kvstore_adopt(ks, p, b, tok, 80, &adopted, &e) == CQ_OK, "adopt: %s", e.msg);
    CHECK(adopted == 64, "adopted %u (the pool's own 4 blocks of 16)", adopted);
    CHECK(cq_kvstore_adopt(ks, p, b, tok, 80, &adopted, &e) == CQ_ERR_STATE, "a non-empty sequence");
    cq_seq *c = NULL;
    cq_seq_create(p, &c, NULL);
    uint32_t other[80];
    for (int i = 0; i < 80; i++) other[i] = (uint32_t)(i * 11 + 5);
    CHECK(cq_kvstore_adopt(ks, p, c, other, 80, &adopted, &e) == CQ_OK && adopted == 0, "miss, no error");
    cq_kvstore_stats st;
    CHECK(cq_kvstore_stats_get(ks, &st) == CQ_OK, "stats");
    CHECK(st.err_down >= 2 && st.hits == 0 && st.blocks_published == 0 && st.connects == 0,
          "down counted: %llu", (unsigned long long)st.err_down);
    CHECK(st.lookups == 2 && st.misses >= 1, "lookups %llu misses %llu", (unsigned long long)st.lookups,
          (unsigned long long)st.misses);
    uint64_t mem = 0;
    CHECK(cq_kvstore_used_memory(ks, &mem, NULL) == CQ_ERR_IO, "used_memory without a server");
    CHECK(cq_kvstore_adopt(NULL, p, c, other, 80, &adopted, &e) == CQ_ERR_NULL, "NULL store");
    CHECK(cq_kvpool_check(p, NULL) == CQ_OK, "pool consistent");
    cq_seq_free(a);
    cq_seq_free(b);
    cq_seq_free(c);
    cq_kvpool_free(p);
    cq_kvstore_free(ks);
}

int main(void) {
    test_crc16_slots();
    test_keys();
    test_urls();
    test_server_absent();
    return cq_test_done("test_kvstore");
}
