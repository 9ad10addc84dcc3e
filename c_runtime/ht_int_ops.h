/* ht_int_ops.h: kernels on int64 tensors (labels, predictions) for evaluation. */
#ifndef HT_INT_OPS_H
#define HT_INT_OPS_H

#include <stdint.h>

/* y[numel] = (a == b) */
void ht_eq_i64(int64_t *y, const int64_t *a, const int64_t *b, int64_t numel);
/* *out = sum(x[numel]) */
void ht_sum_all_i64(int64_t *out, const int64_t *x, int64_t numel);

#endif
