/* ht_pool.c: max and average pooling over the planes of NCHW tensors (no padding). Each
 * plane is independent; each window is read in row-major order, as torch's CPU kernels do,
 * for HT_VL outputs of a row at a time (lanes are outputs: no dependency from one window
 * element to the next holds up the others). */
#include "ht_kernels.h"
#include "ht_pool.h"

#include <math.h>
#include <string.h>

#include "ht_parallel.h"
#include "ht_vec.h"

typedef struct {
    int64_t h, w, kh, kw, sh, sw; /* as the kernels' arguments */
    int64_t oh, ow;               /* output height and width */
} pool_geometry;

static pool_geometry geometry(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                              int64_t sw) {
    return (pool_geometry){h, w, kh, kw, sh, sw, (h - kh) / sh + 1, (w - kw) / sw + 1};
}

#if HT_VL == 16
#define EVEN_LANES 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define LANE_NUMBERS 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
#elif HT_VL == 8
#define EVEN_LANES 0, 2, 4, 6, 8, 10, 12, 14
#define LANE_NUMBERS 0, 1, 2, 3, 4, 5, 6, 7
#else
#define EVEN_LANES 0, 2, 4, 6
#define LANE_NUMBERS 0, 1, 2, 3
#endif

/* HT_VL indices, at any int64_t address. */
typedef int64_t index_vec __attribute__((vector_size(2 * HT_VEC_BYTES), aligned(8), may_alias));

/* Lane l < count = p[l * stride], later lanes 0 (nothing read past the last). */
HT_INLINE ht_vf load_strided(const float *p, int64_t stride, int64_t count) {
    if (stride == 1) return count == HT_VL ? ht_vload(p) : ht_vload_first(p, count);
    if (stride == 2) { /* the even lanes of two vectors */
        const int64_t span = 2 * count - 1;
        const ht_vf lo = span >= HT_VL ? ht_vload(p) : ht_vload_first(p, span);
        const ht_vf hi = span > HT_VL ? ht_vload_first(p + HT_VL, span - HT_VL) : ht_vzero();
        return HT_SHUFFLE2(lo, hi, EVEN_LANES);
    }
    ht_vf v = ht_vzero();
    for (int l = 0; l < count; l++) v[l] = p[l * stride];
    return v;
}

HT_INLINE void store_first(float *p, ht_vf v, int64_t count) {
    if (count == HT_VL)
        ht_vstore(p, v);
    else
        ht_vstore_first(p, v, count);
}

/* Lane-wise `take ? a : b`. */
HT_INLINE ht_vf select_f(ht_vi take, ht_vf a, ht_vf b) {
    return (ht_vf)((take & (ht_vi)a) | (~take & (ht_vi)b));
}
HT_INLINE ht_vi select_i(ht_vi take, ht_vi a, ht_vi b) { return (take & a) | (~take & b); }

static void clear_planes(float *dx, int64_t floats, int accumulate) {
    if (!accumulate) memset(dx, 0, (size_t)floats * sizeof(float));
}

/* ---- max ----
 * torch's rule: a value replaces the maximum when greater or NaN, so the last NaN wins; the
 * maximum starts at -inf at the window's first index (an all -inf window gives that index). */

/* Outputs [ow, ow + count) of row oh, count <= HT_VL: y[ow...], idx[ow...] of the output row.
 * The lanes track the maximum's offset in its window, i * w + j (an int32: kh * w < 2^31).
 * With `room`, whole vectors are stored: the lanes past `count` land on outputs after these
 * (of the same task), which are written later. */
static void max_outputs(float *y, int64_t *idx, const float *plane, const pool_geometry *g,
                        int64_t oh, int64_t ow, int64_t count, int room) {
    const int64_t start = oh * g->sh * g->w + ow * g->sw;
    ht_vi best = (ht_vi){0};
    ht_vf max = ht_vsplat(-INFINITY);
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++) {
            const int64_t offset = i * g->w + j;
            const ht_vf v = load_strided(plane + start + offset, g->sw, count);
            const ht_vi take = (v > max) | (v != v);
            best = select_i(take, (ht_vi){0} + (int32_t)offset, best);
            max = select_f(take, v, max);
        }
    const index_vec at = __builtin_convertvector(best, index_vec) + start +
                         __builtin_convertvector((ht_vi){LANE_NUMBERS}, index_vec) * g->sw;
    if (room) {
        ht_vstore(y + ow, max);
        *(index_vec *)(idx + ow) = at;
    } else {
        store_first(y + ow, max, count);
        for (int l = 0; l < count; l++) idx[ow + l] = at[l];
    }
}

/* A max pooling's arrays, its planes split over threads (ht_parallel_range). */
typedef struct {
    pool_geometry g;
    float *out;      /* y or dx */
    int64_t *idx;    /* the forward's; the backward reads it */
    const float *in; /* x or dy */
    const float *y;  /* the backward of relu_max_pool2d: its pooled, relu'd outputs */
    int accumulate;
} max_pool_job;

/* The planes each thread takes at least: their inputs are worth a thread. */
static int64_t min_planes(const pool_geometry *g) {
    return HT_PARALLEL_MIN_ELEMENTS / (g->h * g->w) + 1;
}

static void max_pool_planes(void *arg, int64_t from, int64_t to) {
    const max_pool_job *M = arg;
    const pool_geometry *g = &M->g;
    const int64_t end = to * g->oh * g->ow; /* past this task's last output */
    for (int64_t s = from; s < to; s++)
        for (int64_t oh = 0; oh < g->oh; oh++) {
            const int64_t out = (s * g->oh + oh) * g->ow;
            for (int64_t ow = 0; ow < g->ow; ow += HT_VL)
                max_outputs(M->out + out, M->idx + out, M->in + s * g->h * g->w, g, oh, ow,
                            g->ow - ow < HT_VL ? g->ow - ow : HT_VL, out + ow + HT_VL <= end);
        }
}

void ht_max_pool2d_fwd(float *y, int64_t *idx, const float *x, int64_t planes, int64_t h,
                       int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw) {
    max_pool_job M = {geometry(h, w, kh, kw, sh, sw), y, idx, x, NULL, 0};
    ht_parallel_range(planes, min_planes(&M.g), max_pool_planes, &M);
}

/* Each plane cleared (unless accumulating) just before its gradients are added in, so that
 * it is still in cache for them; relu_grad's rule (y <= 0 ? 0 : dy, as ht_relu_bwd) applied
 * to each gradient first when M->y is not NULL. */
static void max_pool_bwd_planes(void *arg, int64_t from, int64_t to) {
    const max_pool_job *M = arg;
    const int64_t outputs = M->g.oh * M->g.ow, floats = M->g.h * M->g.w;
    for (int64_t s = from; s < to; s++) {
        float *plane = M->out + s * floats;
        const int64_t *idx = M->idx + s * outputs;
        const float *dy = M->in + s * outputs;
        clear_planes(plane, floats, M->accumulate);
        if (M->y) {
            const float *y = M->y + s * outputs;
            for (int64_t q = 0; q < outputs; q++) plane[idx[q]] += y[q] <= 0.0f ? 0.0f : dy[q];
        } else {
            for (int64_t q = 0; q < outputs; q++) plane[idx[q]] += dy[q];
        }
    }
}

void ht_max_pool2d_bwd(float *dx, const float *dy, const int64_t *idx, int64_t planes, int64_t h,
                       int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int accumulate) {
    max_pool_job M = {geometry(h, w, kh, kw, sh, sw), dx, (int64_t *)idx, dy, NULL, accumulate};
    ht_parallel_range(planes, min_planes(&M.g), max_pool_bwd_planes, &M);
}

void ht_relu_max_pool2d_bwd_planes(float *dx, const float *dy, const float *y,
                                   const int64_t *idx, int64_t planes, int64_t h, int64_t w,
                                   int64_t kh, int64_t kw, int64_t sh, int64_t sw) {
    max_pool_job M = {geometry(h, w, kh, kw, sh, sw), dx, (int64_t *)idx, dy, y, 0};
    max_pool_bwd_planes(&M, 0, planes);
}

void ht_relu_max_pool2d_bwd(float *dx, const float *dy, const float *y, const int64_t *idx,
                            int64_t planes, int64_t h, int64_t w, int64_t kh, int64_t kw,
                            int64_t sh, int64_t sw, int accumulate) {
    max_pool_job M = {geometry(h, w, kh, kw, sh, sw), dx, (int64_t *)idx, dy, y, accumulate};
    ht_parallel_range(planes, min_planes(&M.g), max_pool_bwd_planes, &M);
}

/* ---- average ---- */

void ht_avg_pool2d_fwd(float *y, const float *x, int64_t planes, int64_t h, int64_t w,
                       int64_t kh, int64_t kw, int64_t sh, int64_t sw) {
    pool_geometry g = geometry(h, w, kh, kw, sh, sw);
    const float count = (float)(kh * kw);
    for (int64_t s = 0; s < planes; s++)
        for (int64_t oh = 0; oh < g.oh; oh++) {
            const float *top = x + s * h * w + oh * sh * w;
            float *out = y + (s * g.oh + oh) * g.ow;
            for (int64_t ow = 0; ow < g.ow; ow += HT_VL) {
                const int64_t lanes = g.ow - ow < HT_VL ? g.ow - ow : HT_VL;
                ht_vf sum = ht_vzero();
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t j = 0; j < kw; j++)
                        sum += load_strided(top + ow * sw + i * w + j, sw, lanes);
                store_first(out + ow, sum / ht_vsplat(count), lanes);
            }
        }
}

void ht_avg_pool2d_bwd(float *dx, const float *dy, int64_t planes, int64_t h, int64_t w,
                       int64_t kh, int64_t kw, int64_t sh, int64_t sw, int accumulate) {
    pool_geometry g = geometry(h, w, kh, kw, sh, sw);
    const float count = (float)(kh * kw);
    clear_planes(dx, planes * h * w, accumulate);
    for (int64_t s = 0; s < planes; s++) {
        float *plane = dx + s * h * w;
        for (int64_t oh = 0; oh < g.oh; oh++)
            for (int64_t ow = 0; ow < g.ow; ow++) {
                float *window = plane + oh * sh * w + ow * sw;
                const float share = dy[(s * g.oh + oh) * g.ow + ow] / count;
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t j = 0; j < kw; j++) window[i * w + j] += share;
            }
    }
}
