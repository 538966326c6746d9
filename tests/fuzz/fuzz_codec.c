/* SPDX-License-Identifier: MIT */
/*
 * fuzz_codec.c - every registry codec's decode on arbitrary bytes, and its
 * encode on arbitrary fp16 input followed by a decode of what it wrote.
 * Header (8 bytes): codec index, role, D (2 bytes), G, T, mask seed, flags;
 * the rest is the packed stream (decode) or the fp16 block (encode).
 * Invariants: decode of a stream of the exact packed size never fails except
 * with CQ_ERR_OVERFLOW (CQ-3-rot's fp16 rotation of crafted codes) or
 * CQ_ERR_FORMAT (a header the codec validates, e.g. outlier-top2); a wrong
 * length is refused; encode succeeds or refuses with NONFINITE / OVERFLOW,
 * and what it wrote decodes; exact codecs give back their input.
 */
#include <string.h>

#include "cq_codec.h"
#include "cq_registry.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    const cq_codec_traits *c = cq_codec_at(data[0] % cq_codec_count());
    cq_role role = (cq_role)(data[1] & 1);
    uint32_t D = 2u * (1u + ((uint32_t)data[2] | ((uint32_t)(data[3] & 1) << 8)) % 256u); /* 2..512 */
    uint32_t T = data[5] % 80u;
    uint8_t mask[CQ_MAX_DIM] = {0};
    for (uint32_t i = 0; i < D; i++) mask[i] = (uint8_t)(((i * 131u + data[6]) % 23u) == 0);
    if (data[7] & 2) mask[0] = 1;
    if (data[7] & 4) mask[D - 1] = 1;
    cq_codec_cfg cfg;
    cq_codec_cfg_default(&cfg, D);
    cfg.group = 1u + data[4] % 160u;
    cfg.mask = mask;
    cfg.seed = data[6];
    if (cq_codec_supports(c, &cfg, role) != CQ_OK) return 0;
    const uint8_t *src = data + 8;
    size_t len = size - 8, td = (size_t)T * D;
    size_t n = c->packed_bytes(&cfg, role, T);
    float *out = malloc(td * sizeof(float) + 1);
    if (!out) return 0;
    if (!(data[7] & 1)) {
        /* decode arbitrary bytes */
        if (len >= n) {
            cq_status st = c->decode(&cfg, role, src, n, T, out);
            /* a decoder may refuse a malformed stream (e.g. outlier-top2's channel header) */
            if (st != CQ_OK && st != CQ_ERR_OVERFLOW && st != CQ_ERR_FORMAT)
                fuzz_fail("%s decode of %zu bytes: %s", c->name, n, cq_status_name(st));
        }
        if (len != n && c->decode(&cfg, role, src, len, T, out) == CQ_OK)
            fuzz_fail("%s decoded %zu bytes, expected %zu", c->name, len, n);
    } else if (len >= td * 2) {
        /* encode arbitrary fp16, then decode it */
        uint16_t *x = malloc(td * 2 + 1);
        uint8_t *dst = malloc(n + 1);
        if (x && dst) {
            for (size_t i = 0; i < td; i++) x[i] = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            cq_err e;
            cq_status st = c->encode(&cfg, role, x, T, dst, n, &e);
            if (st == CQ_OK) {
                st = c->decode(&cfg, role, dst, n, T, out);
                if (st != CQ_OK) fuzz_fail("%s: decode of its own stream: %s", c->name, cq_status_name(st));
                if (c->flags & CQ_CODEC_F_EXACT)
                    for (size_t i = 0; i < td; i++)
                        if (cq_f32_bits(out[i]) != cq_f32_bits(cq_f16_to_f32(x[i])))
                            fuzz_fail("%s: lossless codec changed element %zu", c->name, i);
            } else if (st != CQ_ERR_NONFINITE && st != CQ_ERR_OVERFLOW) {
                fuzz_fail("%s encode: %s (%s)", c->name, cq_status_name(st), e.msg);
            } else if (e.code != st) {
                fuzz_fail("%s encode: error record not filled", c->name);
            }
        }
        free(x);
        free(dst);
    }
    free(out);
    return 0;
}
