/* ht_int_ops.c: see ht_int_ops.h. */
#include "ht_int_ops.h"

void ht_eq_i64(int64_t *y, const int64_t *a, const int64_t *b, int64_t numel) {
    for (int64_t i = 0; i < numel; i++) y[i] = a[i] == b[i];
}

void ht_sum_all_i64(int64_t *out, const int64_t *x, int64_t numel) {
    int64_t s = 0;
    for (int64_t i = 0; i < numel; i++) s += x[i];
    *out = s;
}
