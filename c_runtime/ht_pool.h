/* ht_pool.h: what ht_pool.c lends the other kernels (not exported). */
#ifndef HT_POOL_H
#define HT_POOL_H

#include <stdint.h>

/* ht_relu_max_pool2d_bwd(dx, dy, y, idx, planes, ..., 0) on the calling thread */
__attribute__((visibility("hidden"))) void ht_relu_max_pool2d_bwd_planes(
    float *dx, const float *dy, const float *y, const int64_t *idx, int64_t planes, int64_t h,
    int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw);

#endif
