/* SPDX-License-Identifier: MIT */
/*
 * cq_test.h - the minimal test harness: CHECK counts a pass or prints the
 * failure with file and line; each test binary ends with cq_test_done(),
 * which prints "NAME: N passed, M failed" and returns the exit code.
 * Exhaustive loops count their mismatches and make one CHECK at the end.
 */
#ifndef CQ_TEST_H
#define CQ_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cq_test_pass_, cq_test_fail_;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            cq_test_pass_++;                                                                       \
        } else {                                                                                   \
            cq_test_fail_++;                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static inline int cq_test_done(const char *name) {
    printf("%s: %d passed, %d failed\n", name, cq_test_pass_, cq_test_fail_);
    return cq_test_fail_ ? 1 : 0;
}

/* Where ../shared is: $CQ_SHARED, else ../shared relative to the repo root
 * (tests run from the root). */
static inline const char *cq_test_shared(void) {
    const char *s = getenv("CQ_SHARED");
    return s && *s ? s : "../shared";
}

#endif
