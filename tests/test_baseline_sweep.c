/* SPDX-License-Identifier: MIT */
/*
 * test_baseline_sweep.c - every TurboQuant / RotorQuant / MegaQuant codec of
 * the registry over a sweep of D and T (T = 0 and 1 included): supported
 * shapes round-trip and decode random bytes without faults (the SAN build
 * makes this a memory-safety check); unsupported D is refused by check() AND
 * by encode/decode called directly, with nothing written.
 */
#include "baseline_common.h"

int main(void) {
    static const uint32_t dims[] = {2, 4, 6, 8, 12, 30, 64, 96, 128, 192, 256, 320, 512};
    static const uint32_t toks[] = {0, 1, 3};
    cq_rng g;
    cq_rng_seed(&g, 123);
    int swept = 0;
    for (size_t i = 0; i < cq_codec_count(); i++) {
        const cq_codec_traits *c = cq_codec_at(i);
        if (c->id < CQ_CODEC_TURBO2) continue; /* the baselines of this sweep: ids 56.. */
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
            for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++) {
                uint32_t D = dims[d], T = toks[t];
                cq_codec_cfg cfg;
                cq_codec_cfg_default(&cfg, D);
                size_t n = (size_t)T * D;
                uint16_t *x = malloc(n * 2 + 2);
                float *out = malloc(n * sizeof *out + 4);
                bl_gauss(x, n, 3.0, D * 7 + T);
                cq_err e;
                if (cq_codec_supports(c, &cfg, CQ_ROLE_KEY) != CQ_OK) {
                    uint8_t buf[64];
                    memset(buf, 0x33, sizeof buf);
                    cq_status st = c->encode(&cfg, CQ_ROLE_KEY, x, T, buf, sizeof buf, &e);
                    int untouched = 1;
                    for (int k = 0; k < 64; k++) untouched &= buf[k] == 0x33;
                    CHECK(st == CQ_ERR_DIM && untouched, "%s D=%u: encode of unsupported D: %d",
                          c->name, D, (int)st);
                    CHECK(c->decode(&cfg, CQ_ROLE_KEY, buf, 0, T, out) == CQ_ERR_DIM,
                          "%s D=%u: decode of unsupported D", c->name, D);
                } else {
                    size_t nb = c->packed_bytes(&cfg, CQ_ROLE_KEY, T);
                    uint8_t *buf = malloc(nb + 1);
                    CHECK(c->encode(&cfg, CQ_ROLE_KEY, x, T, buf, nb, &e) == CQ_OK &&
                              c->decode(&cfg, CQ_ROLE_KEY, buf, nb, T, out) == CQ_OK,
                          "%s D=%u T=%u round trip: %s", c->name, D, T, e.msg);
                    if (T) {
                        double nm = bl_nmse(c, &cfg, CQ_ROLE_VALUE, x, T, NULL);
                        /* every method here keeps at least 2 bits of a Gaussian: NMSE < 1 */
                        CHECK(nm >= 0 && nm < 1.0, "%s D=%u T=%u NMSE %g", c->name, D, T, nm);
                    }
                    for (size_t k = 0; k < nb; k++) buf[k] = (uint8_t)cq_rng_u64(&g);
                    CHECK(c->decode(&cfg, CQ_ROLE_KEY, buf, nb, T, out) == CQ_OK,
                          "%s D=%u T=%u random bytes", c->name, D, T);
                    free(buf);
                    swept++;
                }
                free(x), free(out);
            }
    }
    CHECK(swept > 100, "only %d supported shapes swept", swept);
    return cq_test_done("test_baseline_sweep");
}
