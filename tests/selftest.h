/* selftest.h: what the C self-tests (kernel_selftest.c, pool_selftest.c) share: CHECK, which
 * prints the first 20 failures with their place, and the count that main() reports. */
#ifndef SELFTEST_H
#define SELFTEST_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond) && failures++ < 20) {                                                     \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                       \
            printf(__VA_ARGS__);                                                              \
            printf("\n");                                                                     \
        }                                                                                     \
    } while (0)

#endif
