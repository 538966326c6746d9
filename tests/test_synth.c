/* SPDX-License-Identifier: MIT */
/*
 * test_synth.c - the built-in Qwen2-like KV generator: reproducible, finite,
 * the planted hot key channels are where the mask says and dominate, values
 * are smaller and free of hot channels, bad configurations are refused.
 */
#include <math.h>

#include "channelquant.h"
#include "cq_test.h"

int main(void) {
    const uint32_t D = 64, T = 300;
    cq_synth_cfg c;
    cq_synth_cfg_default(&c, D, T, 7);
    uint16_t *K = malloc((size_t)T * D * 2), *V = malloc((size_t)T * D * 2);
    uint16_t *K2 = malloc((size_t)T * D * 2);
    uint8_t m[64], m2[64];
    cq_err e;
    CHECK(cq_synth_kv(&c, K, V, m, &e) == CQ_OK, "synth: %s", e.msg);
    CHECK(cq_synth_kv(&c, K2, NULL, m2, &e) == CQ_OK, "synth K only");
    CHECK(memcmp(K, K2, (size_t)T * D * 2) == 0 && memcmp(m, m2, D) == 0, "not reproducible");
    uint32_t bt, bc;
    CHECK(!cq_find_nonfinite(K, T, D, &bt, &bc) && !cq_find_nonfinite(V, T, D, &bt, &bc), "non-finite");
    int hot = 0;
    double kmax_hot = 1e9, kmax_cold = 0, vmax = 0, vrms = 0, krms_cold = 0;
    for (uint32_t ch = 0; ch < D; ch++) {
        double amax = 0, s2 = 0, v2 = 0;
        for (uint32_t t = 0; t < T; t++) {
            double k = cq_f16_to_f32(K[t * D + ch]), v = cq_f16_to_f32(V[t * D + ch]);
            amax = fmax(amax, fabs(k)), s2 += k * k, v2 += v * v;
            vmax = fmax(vmax, fabs(v));
        }
        hot += m[ch] != 0;
        if (m[ch]) kmax_hot = fmin(kmax_hot, amax);
        else kmax_cold = fmax(kmax_cold, amax), krms_cold += s2;
        vrms += v2;
    }
    krms_cold = sqrt(krms_cold / ((double)T * (D - 2)));
    vrms = sqrt(vrms / ((double)T * D));
    CHECK(hot == 2, "hot channels %d", hot);
    /* a hot channel's max |K| beats every ordinary channel's (gain 12) */
    CHECK(kmax_hot > kmax_cold, "hot %.2f vs cold max %.2f", kmax_hot, kmax_cold);
    CHECK(vrms > 0.25 && vrms < 0.35, "value rms %.3f (std 0.3)", vrms);
    CHECK(krms_cold > 2 * vrms, "keys %.3f not larger than values %.3f", krms_cold, vrms);
    c.seed = 8;
    CHECK(cq_synth_kv(&c, K2, NULL, m2, &e) == CQ_OK && memcmp(K, K2, (size_t)T * D * 2) != 0,
          "seed ignored");
    c.hot = D;
    CHECK(cq_synth_kv(&c, K, V, m, &e) == CQ_ERR_OUTLIERS, "hot >= D accepted");
    cq_synth_cfg_default(&c, 0, T, 1);
    CHECK(cq_synth_kv(&c, K, V, m, &e) == CQ_ERR_DIM, "D=0 accepted");
    cq_synth_cfg_default(&c, D, 0, 1);
    CHECK(cq_synth_kv(&c, K, V, m, &e) == CQ_ERR_SHAPE, "T=0 accepted");
    free(K), free(V), free(K2);
    return cq_test_done("test_synth");
}
