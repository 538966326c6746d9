/* SPDX-License-Identifier: MIT */
/*
 * test_calibrate.c - outlier calibration: top-k with ties to the lower index,
 * concentration, the batch-stability figure on a constructed case with a
 * known answer, and the text-mask / ROM outputs.
 */
#include <math.h>

#include "channelquant.h"
#include "cq_eval.h"
#include "cq_test.h"
#include <unistd.h>

int main(void) {
    const uint32_t L = 2, H = 2, D = 8, B = 4;
    cq_calib *c;
    cq_err e;
    CHECK(cq_calib_create(L, H, D, B, &c, &e) == CQ_OK, "create");
    /* base magnitude 1 everywhere; (l,h) hot channels: (0,0) {6, 2}; (0,1) {1, 3} tie at 5.0;
     * layer 1: channel 7 hot in all batches, channel 4 hot only in batch 3 (bigger there). */
    float k[2 * 8];
    for (uint32_t b = 0; b < B; b++)
        for (uint32_t l = 0; l < L; l++) {
            for (uint32_t i = 0; i < H * D; i++) k[i] = (i % 2) ? -1.0f : 1.0f;
            if (l == 0) {
                k[6] = -9.0f, k[2] = 4.0f;            /* head 0 */
                k[8 + 1] = 5.0f, k[8 + 3] = -5.0f;    /* head 1: exact tie */
                k[8 + 0] = 4.5f;
            } else {
                k[7] = 8.0f, k[8 + 7] = 8.0f;
                k[5] = 3.0f, k[8 + 5] = 3.0f;
                if (b == 3) k[4] = 20.0f, k[8 + 4] = 20.0f;
            }
            CHECK(cq_calib_observe(c, b, l, k, 1) == CQ_OK, "observe");
        }
    CHECK(cq_calib_tokens(c, -1) == 4 && cq_calib_tokens(c, 2) == 1, "token counts");
    uint16_t ch[2 * 2 * 2];
    CHECK(cq_calib_topk(c, -1, 2, ch) == CQ_OK, "topk");
    CHECK(ch[0] == 2 && ch[1] == 6, "(0,0) = {2,6} ascending: %u %u", ch[0], ch[1]);
    CHECK(ch[2] == 1 && ch[3] == 3, "(0,1) tie resolves to the lower index set: %u %u", ch[2], ch[3]);
    CHECK(ch[4] == 4 && ch[5] == 7, "(1,0) all data = {4,7}: %u %u", ch[4], ch[5]);
    CHECK(cq_calib_topk(c, 0, 2, ch) == CQ_OK && ch[4] == 5 && ch[5] == 7, "batch 0 of (1,0) = {5,7}");
    CHECK(cq_calib_topk(c, -1, 8, ch) == CQ_ERR_OUTLIERS && cq_calib_topk(c, 9, 2, ch) == CQ_ERR_RANGE,
          "bad k / batch refused");
    double per[4], all, l0, rest;
    CHECK(cq_calib_stability(c, 2, per, &all, &l0, &rest) == CQ_OK, "stability");
    /* layer 0: identical in every batch -> 1.0; layer 1: batches 0-2 overlap {5,7} vs {4,7} = 1/2,
     * batch 3 = 1 -> (0.5*3 + 1)/4 = 0.625 */
    CHECK(per[0] == 1.0 && per[1] == 1.0 && fabs(per[2] - 0.625) < 1e-12 && fabs(per[3] - 0.625) < 1e-12,
          "per (l,h): %g %g %g %g", per[0], per[1], per[2], per[3]);
    CHECK(fabs(all - 0.8125) < 1e-12 && l0 == 1.0 && fabs(rest - 0.625) < 1e-12, "means %g %g %g", all, l0, rest);
    double conc[4];
    CHECK(cq_calib_concentration(c, conc) == CQ_OK, "concentration");
    CHECK(fabs(conc[0] - 9.0) < 1e-6 && fabs(conc[2] - 20.0) < 1e-6, "conc %g %g", conc[0], conc[2]);
    char path[] = "/tmp/cq_calib_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "tmp");
    if (fd >= 0) close(fd);
    CHECK(cq_calib_write_mask(c, 2, path, "unit test", &e) == CQ_OK, "write mask: %s", e.msg);
    char *buf;
    size_t len;
    CHECK(cq_read_file(path, 1 << 20, &buf, &len, &e) == CQ_OK, "read back");
    CHECK(strstr(buf, "\n0 0 2 6\n0 1 1 3\n1 0 4 7\n1 1 4 7\n") != NULL, "mask text:\n%s", buf);
    free(buf);
    CHECK(cq_calib_write_rom(c, 2, path, &e) == CQ_OK, "write rom");
    CHECK(cq_read_file(path, 1 << 20, &buf, &len, &e) == CQ_OK, "read rom");
    /* (0,0) bits 2,6 = 0x44; (0,1) bits 1,3 = 0x0a; layer 1 bits 4,7 = 0x90 */
    CHECK(!strcmp(buf, "44\n0a\n90\n90\n"), "rom:\n%s", buf);
    free(buf);
    unlink(path);
    float nan_k[16];
    for (int i = 0; i < 16; i++) nan_k[i] = NAN;
    CHECK(cq_calib_observe(c, 0, 0, nan_k, 1) == CQ_ERR_NONFINITE, "NaN keys refused");
    cq_calib_free(c);
    CHECK(cq_calib_create(0, 1, 8, 1, &c, &e) == CQ_ERR_SHAPE, "bad shape refused");
    return cq_test_done("test_calibrate");
}
