/* SPDX-License-Identifier: MIT */
/*
 * kv_names.c - how the Redis tier names things: the tier URL and its seed list, host
 * policy (loopback), block keys, and the Redis Cluster key slot (CRC16/XMODEM of the
 * key or of its {hash tag}, mod 16384, as the Redis Cluster specification defines).
 * No hiredis here: the unit tests of tests/test_kvstore.c reach all of it.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kvstore_internal.h"

double kv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection, no final xor.
 * Check value: "123456789" -> 0x31C3. */
uint16_t kv_crc16(const void *data, size_t n) {
    const uint8_t *p = data;
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)((uint16_t)p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* The hash tag rule: the bytes between the first '{' and the first '}' after it, when
 * that is not empty; else the whole key. */
uint32_t cq_kvstore_key_slot(const char *key, size_t len) {
    if (!key) return 0;
    for (size_t s = 0; s < len; s++) {
        if (key[s] != '{') continue;
        for (size_t e = s + 1; e < len; e++)
            if (key[e] == '}') {
                if (e > s + 1) return kv_crc16(key + s + 1, e - s - 1) & (KV_SLOTS - 1);
                break;
            }
        break;
    }
    return kv_crc16(key, len) & (KV_SLOTS - 1);
}

cq_status cq_kvstore_key(uint64_t config_hash, uint64_t chain_hash, char *buf, size_t cap) {
    if (!buf) return CQ_ERR_NULL;
    if (cap < 40) return CQ_ERR_BUFFER;
    snprintf(buf, cap, "cq:v1:%016llx:%016llx", (unsigned long long)config_hash,
             (unsigned long long)chain_hash);
    return CQ_OK;
}

int kv_host_is_loopback(const char *h) {
    if (strcmp(h, "localhost") == 0) return 1;
    /* 127.0.0.0/8 in dotted form */
    unsigned a, b, c, d;
    char tail;
    return sscanf(h, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
           c < 256 && d < 256;
}

static int host_ok(const char *h, size_t n) {
    if (n == 0 || n >= KV_HOST_CAP) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-') return 0;
    return 1;
}

int kv_parse_hostport(const char *s, size_t len, kv_addr *a) {
    size_t colon = len;
    for (size_t i = len; i > 0; i--)
        if (s[i - 1] == ':') {
            colon = i - 1;
            break;
        }
    if (colon == len || !host_ok(s, colon)) return -1;
    size_t np = len - colon - 1;
    if (np == 0 || np > 5) return -1;
    unsigned port = 0;
    for (size_t i = colon + 1; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        port = port * 10 + (unsigned)(s[i] - '0');
    }
    if (port == 0 || port > 65535) return -1;
    memcpy(a->host, s, colon);
    a->host[colon] = 0;
    a->port = (uint16_t)port;
    return 0;
}

int kv_parse_url(const char *url, int *cluster, kv_addr *seeds, int cap, int *n, char *msg,
                 size_t msgcap) {
    static const char single[] = "redis://", multi[] = "redis-cluster://";
    const char *rest;
    *n = 0;
    if (strncmp(url, single, sizeof single - 1) == 0) {
        *cluster = 0;
        rest = url + sizeof single - 1;
    } else if (strncmp(url, multi, sizeof multi - 1) == 0) {
        *cluster = 1;
        rest = url + sizeof multi - 1;
    } else {
        snprintf(msg, msgcap, "'%.64s': expected redis://HOST:PORT or redis-cluster://HOST:PORT[,...]",
                 url);
        return -1;
    }
    for (;;) {
        const char *end = strchr(rest, ',');
        size_t len = end ? (size_t)(end - rest) : strlen(rest);
        if (*n == cap || (!*cluster && end)) {
            snprintf(msg, msgcap, "'%.64s': %s", url,
                     *cluster ? "more than 16 seeds" : "one HOST:PORT (a seed list is redis-cluster://)");
            return -1;
        }
        if (kv_parse_hostport(rest, len, &seeds[*n]) != 0) {
            snprintf(msg, msgcap,
                     "'%.*s' is not HOST:PORT (a name or IPv4 address, a port 1..65535; no "
                     "user, password, database or path)",
                     (int)(len > 64 ? 64 : len), rest);
            return -1;
        }
        if (strcmp(seeds[*n].host, "localhost") == 0) strcpy(seeds[*n].host, "127.0.0.1");
        (*n)++;
        if (!end) break;
        rest = end + 1;
    }
    return 0;
}
