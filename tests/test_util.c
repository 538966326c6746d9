/* SPDX-License-Identifier: MIT */
/*
 * test_util.c - shared utilities: CRC-32C check values and chunking, the RNG's
 * reproducibility and range, the Walsh-Hadamard transforms' orthonormality,
 * and the .npy reader/writer (round trip, and refusal of malformed headers).
 */
#include <math.h>
#include <unistd.h>

#include "channelquant.h"
#include "cq_test.h"

/* bitwise CRC-32C, the definition, to check the table version against */
static uint32_t crc_bitwise(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static void test_crc(void) {
    CHECK(cq_crc32c(0, "123456789", 9) == 0xE3069283u, "check value %08x", cq_crc32c(0, "123456789", 9));
    unsigned char z[32] = {0};
    CHECK(cq_crc32c(0, z, 32) == 0x8A9136AAu, "32 zero bytes (RFC 3720 B.4): %08x", cq_crc32c(0, z, 32));
    unsigned char buf[1000];
    cq_rng r;
    cq_rng_seed(&r, 11);
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)cq_rng_u64(&r);
    int bad = 0;
    for (size_t n = 0; n < sizeof buf; n += 37) {
        uint32_t whole = cq_crc32c(0, buf, n), ref = crc_bitwise(buf, n);
        uint32_t split = cq_crc32c(cq_crc32c(0, buf, n / 3), buf + n / 3, n - n / 3);
        bad += whole != ref || split != ref;
    }
    CHECK(bad == 0, "table CRC == bitwise CRC, chunked == whole (%d bad)", bad);
}

static void test_rng(void) {
    cq_rng a, b;
    cq_rng_seed(&a, 5);
    cq_rng_seed(&b, 5);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= cq_rng_u64(&a) == cq_rng_u64(&b);
    CHECK(same, "same seed, same sequence");
    cq_rng_seed(&a, 0);
    CHECK(cq_rng_u64(&a) == 0xE220A8397B1DCDAFull, "splitmix64(0) first output");
    uint32_t hist[7] = {0};
    double s = 0, s2 = 0;
    for (int i = 0; i < 70000; i++) {
        uint32_t v = cq_rng_below(&a, 7);
        if (v < 7) hist[v]++;
        double x = cq_rng_normal(&a);
        s += x;
        s2 += x * x;
    }
    int ok = 1;
    for (int i = 0; i < 7; i++) ok &= hist[i] > 9500 && hist[i] < 10500;
    CHECK(ok, "below(7) roughly uniform");
    CHECK(fabs(s / 70000) < 0.02 && fabs(s2 / 70000 - 1) < 0.03, "normal mean %g var %g", s / 70000, s2 / 70000);
}

static void test_wht(void) {
    for (uint32_t n = 1; n <= 512; n *= 2) {
        float x[512], y[512];
        cq_rng r;
        cq_rng_seed(&r, n);
        double e = 0, ex = 0, ey = 0;
        for (uint32_t i = 0; i < n; i++) x[i] = y[i] = (float)cq_rng_normal(&r);
        cq_fwht_orthonormal_f32(y, n);
        for (uint32_t i = 0; i < n; i++) ex += (double)x[i] * x[i], ey += (double)y[i] * y[i];
        cq_fwht_orthonormal_f32(y, n);
        for (uint32_t i = 0; i < n; i++) e = fmax(e, fabs((double)y[i] - x[i]));
        CHECK(e < 1e-6, "n=%u: inverse restores within 1e-6 (max err %g)", n, e);
        CHECK(fabs(ex - ey) <= 1e-5 * ex, "n=%u: norm preserved", n);
    }
    float v[4] = {1, 2, 3, 4};
    cq_fwht_f32(v, 4);
    CHECK(v[0] == 10 && v[1] == -2 && v[2] == -4 && v[3] == 0, "H4 * [1 2 3 4] = [10 -2 -4 0]");
}

static void test_npy(void) {
    char path[] = "/tmp/cq_npy_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "tmp file");
    close(fd);
    float data[6] = {1, -2, 3.5f, 0, -0.0f, 1e-3f};
    uint64_t shape[2] = {2, 3};
    cq_err e;
    CHECK(cq_npy_save(path, CQ_NPY_F32, shape, 2, data, &e) == CQ_OK, "save: %s", e.msg);
    cq_npy a;
    CHECK(cq_npy_load(path, 0, &a, &e) == CQ_OK, "load: %s", e.msg);
    CHECK(a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3 && a.dtype == CQ_NPY_F32, "shape");
    CHECK(a.count == 6 && !memcmp(a.data, data, sizeof data), "data bit-exact");
    uint16_t h[6];
    cq_npy_to_f16(&a, h);
    CHECK(h[0] == 0x3C00 && h[1] == 0xC000 && h[4] == 0x8000, "to_f16");
    cq_npy_free(&a);
    unlink(path);
    /* hand-made files: header text, then malformed variants */
    static const char *hdrs[] = {
        "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }",     /* ok: 4 bytes */
        "{'descr': '>f2', 'fortran_order': False, 'shape': (2,), }",     /* big-endian */
        "{'descr': '<f2', 'fortran_order': True, 'shape': (2,), }",      /* fortran */
        "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }",     /* int */
        "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }",     /* too little data */
        "{'descr': '<f2', 'shape': (2,), }",                             /* missing key */
        "{'descr': '<f2', 'fortran_order': False, 'shape': (99999999999999,), }",
        "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), 'x': 1}",
    };
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        unsigned char buf[256];
        size_t hl = strlen(hdrs[i]);
        memcpy(buf, "\x93NUMPY\x01\x00", 8);
        buf[8] = (unsigned char)(hl + 1);
        buf[9] = 0;
        memcpy(buf + 10, hdrs[i], hl);
        buf[10 + hl] = '\n';
        memset(buf + 11 + hl, 0, 4);
        cq_status st = cq_npy_parse(buf, 11 + hl + 4, 0, &a, &e);
        if (i == 0) {
            CHECK(st == CQ_OK && a.count == 2, "valid hand-made npy: %s", e.msg);
            cq_npy_free(&a);
        } else {
            CHECK(st != CQ_OK, "malformed npy %zu refused", i);
        }
        /* every truncation is refused, never a crash */
        int trunc_ok = 1;
        for (size_t cut = 0; cut < 11 + hl + 4; cut++) {
            st = cq_npy_parse(buf, cut, 0, &a, &e);
            if (st == CQ_OK) {
                trunc_ok = 0;
                cq_npy_free(&a);
            }
        }
        CHECK(trunc_ok, "truncations of header %zu refused", i);
    }
}

int main(void) {
    test_crc();
    test_rng();
    test_wht();
    test_npy();
    return cq_test_done("test_util");
}
