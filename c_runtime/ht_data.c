/* ht_data.c: see ht_data.h. */
#include "ht_data.h"

#include <math.h>
#include <string.h>

#include "ht_parallel.h"
#include "ht_vec.h"

#ifdef __AVX2__
#include <immintrin.h>
#endif

/* Bytes of one element of type `t`. */
static int64_t element_bytes(int t) { return t == HT_UINT8 ? 1 : t == HT_INT64 ? 8 : 4; }

/* Values in a sample's target: one label, or target_size values. */
static int64_t target_values(const ht_loader *l) {
    return l->labels_type == HT_UINT8 ? 1 : l->target_size;
}

static int check_types(const ht_loader *l) {
    if (l->images_type != HT_UINT8 && l->images_type != HT_FLOAT32) {
        ht_set_error("data loader: inputs of element type %d; uint8 pixels (%d) or float32 "
                     "values (%d) are read", l->images_type, HT_UINT8, HT_FLOAT32);
        return HT_ERROR;
    }
    if (l->labels_type != HT_UINT8 && l->labels_type != HT_INT64 && l->labels_type != HT_FLOAT32) {
        ht_set_error("data loader: targets of element type %d; uint8 labels (%d), int64 (%d) or "
                     "float32 (%d) values are read", l->labels_type, HT_UINT8, HT_INT64, HT_FLOAT32);
        return HT_ERROR;
    }
    if (target_values(l) < 1) {
        ht_set_error("data loader: targets of %lld values a sample", (long long)l->target_size);
        return HT_ERROR;
    }
    return HT_OK;
}

/* (p / 255 - mean) / std in vectors: each division a multiplication by the reciprocal and a
 * fused correction of its remainder, which gives the correctly rounded quotient, as the
 * table's float32 divisions do, for most divisors; ht_loader_init uses it only when it gives
 * the table's bits for all 256 bytes (it did for every normalisation tried), else the table. */
typedef struct {
    ht_vf c255, inv255, mean, std, inv_std;
} normalisation;

static normalisation normalisation_of(const ht_loader *l) {
    return (normalisation){ht_vsplat(255.0f), ht_vsplat(1.0f / 255.0f), ht_vsplat(l->mean),
                           ht_vsplat(l->std), ht_vsplat(1.0f / l->std)};
}

HT_INLINE ht_vf normalised(ht_vf p, const normalisation *n) {
    ht_vf q = p * n->inv255;
    q = ht_vfma(ht_vfma(-q, n->c255, p), n->inv255, q);
    ht_vf x = q - n->mean, y = x * n->inv_std;
    return ht_vfma(ht_vfma(-y, n->std, x), n->inv_std, y);
}

/* dst[k] = pixel_table[src[k]]: by the formula when it gives the table's bits (twice as fast
 * as a gather from the table, which is twice as fast as scalar loads; this runs once per
 * image of every step), else with AVX2 8 at a time by a gather. */
static void normalise_pixels(float *dst, const uint8_t *src, int64_t pixels, const ht_loader *l) {
    int64_t k = 0;
    if (l->pixel_formula) {
        const normalisation n = normalisation_of(l);
        for (; k + HT_VL <= pixels; k += HT_VL)
            ht_vstore(dst + k, normalised(ht_vfrom_bytes(src + k), &n));
    }
#ifdef __AVX2__
    for (; k + 8 <= pixels; k += 8) {
        __m128i bytes = _mm_loadl_epi64((const __m128i *)(const void *)(src + k));
        _mm256_storeu_ps(dst + k, _mm256_i32gather_ps(l->pixel_table, _mm256_cvtepu8_epi32(bytes), 4));
    }
#endif
    for (; k < pixels; k++) dst[k] = l->pixel_table[src[k]];
}

/* Whether normalised() gives pixel_table's bits for every byte. */
static int formula_gives_table(const ht_loader *l) {
    uint8_t bytes[256];
    float values[256];
    for (int p = 0; p < 256; p++) bytes[p] = (uint8_t)p;
    const normalisation n = normalisation_of(l);
    for (int p = 0; p < 256; p += HT_VL)
        ht_vstore(values + p, normalised(ht_vfrom_bytes(bytes + p), &n));
    return memcmp(values, l->pixel_table, sizeof values) == 0;
}

int ht_loader_init(ht_loader *l) {
    l->owns_order = 0;
    if (check_types(l) != HT_OK) return HT_ERROR;
    if (l->count < 0 || l->rows < 1 || l->cols < 1) {
        ht_set_error("data loader: bad shape: %lld samples of %lldx%lld", (long long)l->count,
                     (long long)l->rows, (long long)l->cols);
        return HT_ERROR;
    }
    if (l->batch_size < 1) {
        ht_set_error("data loader: batch_size must be at least 1, got %lld", (long long)l->batch_size);
        return HT_ERROR;
    }
    if (l->count > 0 && (!l->images || !l->labels)) {
        ht_set_error("data loader: %lld samples but no %s array", (long long)l->count,
                     l->images ? "labels" : "images");
        return HT_ERROR;
    }
    if (!isfinite(l->mean) || !isfinite(l->std) || l->std == 0.0f) {
        ht_set_error("data loader: normalisation needs a finite mean and a finite, non-zero std; got "
                     "mean=%g std=%g", (double)l->mean, (double)l->std);
        return HT_ERROR;
    }
    /* The same float32 operations as hytorch/data.py's pixel_table, so both give identical bits. */
    for (int p = 0; p < 256; p++) l->pixel_table[p] = ((float)p / 255.0f - l->mean) / l->std;
    l->pixel_formula = formula_gives_table(l);

    if (!l->order) {
        l->order = ht_alloc((size_t)(l->count ? l->count : 1) * sizeof(int64_t));
        if (!l->order) {
            ht_set_error("data loader: out of memory for the order of %lld samples", (long long)l->count);
            return HT_ERROR;
        }
        l->owns_order = 1;
    }
    for (int64_t i = 0; i < l->count; i++) l->order[i] = i;
    return HT_OK;
}

int64_t ht_loader_len(const ht_loader *l) {
    int64_t full = l->count / l->batch_size;
    return full + (!l->drop_last && l->count % l->batch_size != 0);
}

void ht_loader_begin_epoch(ht_loader *l) {
    ht_settle();
    for (int64_t i = 0; i < l->count; i++) l->order[i] = i;
    if (l->shuffle) ht_rng_shuffle(&l->rng, l->order, l->count);
}

/* The number of samples in `batch` (0 past the end). */
static int64_t batch_rows(const ht_loader *l, int64_t batch) {
    if (batch < 0 || batch >= ht_loader_len(l)) return 0;
    int64_t start = batch * l->batch_size;
    return l->count - start < l->batch_size ? l->count - start : l->batch_size;
}

/* Whether `batch` has fewer samples than the others (the last may). */
static int smaller_batch(const ht_loader *l, int64_t batch) {
    return batch_rows(l, batch) < l->batch_size;
}

/* Asks the caches for `bytes` bytes at `start`. Inlined, as prefetch_sample: gcc deems a
 * function that only prefetches pure, and drops calls of it. */
static inline __attribute__((always_inline)) void prefetch_bytes(const void *start, int64_t bytes) {
    const char *p = start;
    for (int64_t at = 0; at < bytes; at += 64) __builtin_prefetch(p + at);
    __builtin_prefetch(p + bytes - 1);
}

/* Asks the caches for a sample that a later fill reads: samples come in a shuffled order that
 * the hardware prefetchers cannot guess (at batch 1, waiting for one image from memory took a
 * tenth of the step). */
static inline __attribute__((always_inline)) void prefetch_sample(const ht_loader *l,
                                                                  int64_t sample) {
    int64_t input = l->rows * l->cols * element_bytes(l->images_type);
    int64_t target = target_values(l) * element_bytes(l->labels_type);
    prefetch_bytes((const char *)l->images + sample * input, input);
    prefetch_bytes((const char *)l->labels + sample * target, target);
}

typedef struct {
    const ht_loader *l;
    int64_t batch, rows, next_rows;
    float *x;
    void *y; /* NULL: the targets are not written (a copy after the first) */
} fill_job;

/* The inputs of rows [from, to) of the job's batch: uint8 pixels through the table, or
 * float32 values copied. */
static void fill_inputs(const fill_job *job, int64_t from, int64_t to) {
    const ht_loader *l = job->l;
    const int64_t values = l->rows * l->cols, first = job->batch * l->batch_size;
    if (l->images_type == HT_UINT8) {
        const uint8_t *images = l->images;
        for (int64_t r = from; r < to; r++)
            normalise_pixels(job->x + r * values, images + l->order[first + r] * values, values, l);
    } else {
        const float *inputs = l->images;
        for (int64_t r = from; r < to; r++)
            memcpy(job->x + r * values, inputs + l->order[first + r] * values,
                   (size_t)values * sizeof(float));
    }
}

/* The targets of rows [from, to): uint8 labels as int64, or int64 / float32 values copied. */
static void fill_targets(const fill_job *job, int64_t from, int64_t to) {
    const ht_loader *l = job->l;
    const int64_t first = job->batch * l->batch_size;
    if (l->labels_type == HT_UINT8) {
        const uint8_t *labels = l->labels;
        int64_t *y = job->y;
        for (int64_t r = from; r < to; r++) y[r] = labels[l->order[first + r]];
    } else {
        const int64_t bytes = target_values(l) * element_bytes(l->labels_type);
        const char *targets = l->labels;
        char *y = job->y;
        for (int64_t r = from; r < to; r++)
            memcpy(y + r * bytes, targets + l->order[first + r] * bytes, (size_t)bytes);
    }
}

/* Rows [from, to) of the job's batch, then a request for the same rows of the next batch. */
static void fill_rows(void *arg, int64_t from, int64_t to) {
    const fill_job *job = arg;
    const ht_loader *l = job->l;
    const int64_t first = job->batch * l->batch_size;
    fill_inputs(job, from, to);
    if (job->y) fill_targets(job, from, to);
    for (int64_t r = from; r < to && r < job->next_rows; r++)
        prefetch_sample(l, l->order[first + l->batch_size + r]);
}

/* A batch is filled by several threads when each gets at least this many samples (a
 * microsecond or more of work; handing out a task costs well under one). */
#define PARALLEL_MIN_ROWS 8

/* Copy t of the job's batch, whole; the targets once. */
static void fill_copy(void *arg, int t, int tasks) {
    fill_job job = *(const fill_job *)arg;
    (void)tasks;
    job.x += t * job.rows * job.l->rows * job.l->cols;
    if (t > 0) job.y = NULL;
    fill_rows(&job, 0, job.rows);
}

int64_t ht_loader_fill_copies(const ht_loader *l, int64_t batch, float *x, void *y, int copies) {
    fill_job job = {l, batch, batch_rows(l, batch), batch_rows(l, batch + 1), x, y};
    if (copies <= 1)
        ht_parallel_range(job.rows, PARALLEL_MIN_ROWS, fill_rows, &job);
    else if (job.rows > 0)
        ht_parallel(copies, fill_copy, &job);
    return job.rows;
}

int64_t ht_loader_fill(const ht_loader *l, int64_t batch, float *x, void *y) {
    return ht_loader_fill_copies(l, batch, x, y, 1);
}

void ht_batches_begin(ht_batches *B, const ht_loader *l, float *xa, float *xb, int copies) {
    ht_settle();
    B->loader = l;
    B->x[0] = xa;
    B->x[1] = xb;
    B->copies = copies;
    B->current = -1;
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < HT_MAX_THREADS; c++) B->held[k][c] = -1;
}

int64_t ht_batches_fill(ht_batches *B, int64_t batch, void *y) {
    ht_settle(); /* any thread may write any copy here */
    int64_t rows = ht_loader_fill_copies(B->loader, batch, B->x[batch % 2], y, B->copies);
    for (int c = 0; c < B->copies; c++) B->held[batch % 2][c] = batch;
    return rows;
}

int64_t ht_batches_next(ht_batches *B, int64_t batch, void *y) {
    B->current = batch - 1;
    /* Copy c of a batch starts c batches' worth of its rows into its buffer: the copies of a
     * smaller batch (the last) overlap other copies of a full one there. So no fill of a full
     * batch, however late its worker, may still write when one of them is filled. */
    if (smaller_batch(B->loader, batch)) ht_settle();
    if (B->copies <= 1) return ht_batches_fill(B, batch, y);
    fill_job job = {B->loader, batch, batch_rows(B->loader, batch), 0, NULL, y};
    fill_targets(&job, 0, job.rows);
    return job.rows;
}

/* Copy c of `batch` (its inputs alone), unless it holds it. */
static void hold(ht_batches *B, int c, int64_t batch) {
    const ht_loader *l = B->loader;
    int64_t *held = &B->held[batch % 2][c];
    if (*held == batch) return;
    fill_job job = {l, batch, batch_rows(l, batch), batch_rows(l, batch + 1), B->x[batch % 2],
                    NULL};
    fill_copy(&job, c, B->copies);
    *held = batch;
}

/* Deferred by ht_batches_ready on worker c, which runs it (so c is ht_thread_index). */
static void fill_ahead(void *arg) {
    ht_batches *B = arg;
    const int c = ht_thread_index();
    hold(B, c, B->ahead[c]);
}

void ht_batches_ready(void *arg, int thread) {
    ht_batches *B = arg;
    const int64_t now = B->current;
    hold(B, thread, now);
    hold(B, thread, now + 1);
    /* A smaller batch (the last) is not filled ahead: its copies would overlap others of the
     * full batch that the other threads may still read (see ht_batches_next). */
    if (thread > 0 && now + 2 < ht_loader_len(B->loader) && !smaller_batch(B->loader, now + 2)) {
        B->ahead[thread] = now + 2;
        ht_defer(fill_ahead, B);
    }
}

void ht_loader_release(ht_loader *l) {
    ht_settle();
    if (l->owns_order) ht_free(l->order);
    l->order = NULL;
    l->owns_order = 0;
}

int ht_loader_bind(ht_loader *l, const void *images, const void *labels, int64_t count,
                   int64_t rows, int64_t cols, int64_t batch_size, int shuffle, int drop_last,
                   float mean, float std, uint64_t rng) {
    ht_loader_release(l);
    l->images = images;
    l->labels = labels;
    l->count = count;
    l->rows = rows;
    l->cols = cols;
    l->batch_size = batch_size;
    l->shuffle = shuffle;
    l->drop_last = drop_last;
    l->mean = mean;
    l->std = std;
    l->rng = rng;
    return ht_loader_init(l);
}
