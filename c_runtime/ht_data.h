/* ht_data.h: the batch loader of compiled training loops, bit for bit hytorch/data.py's loaders.
 * Its source of samples is MNIST-format data (uint8 pixels, normalised, and uint8 labels: the
 * zero value of the element types) or the user's arrays (float32 inputs, int64 or float32
 * targets), both in memory; the order of the samples, shuffled or not, is the loader's.
 *
 *     ht_loader l = {.images = px, .labels = lb, .count = 60000, .rows = 28, .cols = 28,
 *                    .batch_size = 64, .shuffle = 1, .mean = 0.1307f, .std = 0.3081f, .rng = seed};
 *     if (ht_loader_init(&l) != HT_OK) return HT_ERROR;          // message in ht_last_error()
 *     for (int epoch = 0; epoch < epochs; epoch++) {
 *         ht_loader_begin_epoch(&l);
 *         for (int64_t b = 0; b < ht_loader_len(&l); b++) {
 *             int64_t n = ht_loader_fill(&l, b, x, y);           // x: [n,rows,cols], y: [n]
 *             ...
 *         }
 *     }
 *     ht_loader_release(&l);
 */
#ifndef HT_DATA_H
#define HT_DATA_H

#include <stdint.h>

#include "ht_core.h"
#include "ht_machine.h"

/* The element types of a loader's source. */
typedef enum { HT_UINT8 = 0, HT_INT64 = 1, HT_FLOAT32 = 2 } ht_element;

typedef struct {
    /* What the source's elements are, fixed for a compiled program (all zero: MNIST's).
     * images_type: HT_UINT8 pixels, normalised through pixel_table, or HT_FLOAT32 values.
     * labels_type: HT_UINT8 labels, written as int64, or HT_INT64 / HT_FLOAT32 values,
     * target_size of them a sample (a label is one). */
    int images_type, labels_type;
    int64_t target_size;
    const void *images; /* the inputs: [count, rows, cols] of images_type (an array's: rows 1) */
    const void *labels; /* the targets: [count] labels, or [count, target_size] values */
    int64_t count, rows, cols, batch_size;
    int shuffle, drop_last;
    float mean, std;
    uint64_t rng;   /* splitmix64 state, advanced by each shuffled epoch */
    int64_t *order; /* [count] current permutation: the caller's, or allocated by ht_loader_init */
    /* Set by ht_loader_init: */
    int owns_order;
    float pixel_table[256]; /* (p / 255.0f - mean) / std for every byte p */
    int pixel_formula;      /* whether ht_data.c's vector formula gives the table's bits */
} ht_loader;

/* Checks the fields, fills pixel_table, allocates `order` when NULL and sets it to 0..count-1.
 * HT_ERROR with a message on bad input or out of memory. */
int ht_loader_init(ht_loader *l);
/* Number of batches of an epoch: ceil(count / batch_size), or floor with drop_last. */
int64_t ht_loader_len(const ht_loader *l);
/* Starts an epoch: order = 0..count-1, then shuffled with l->rng when l->shuffle (after
 * ht_settle: no deferred fill reads the order any more). */
void ht_loader_begin_epoch(ht_loader *l);
/* Writes batch `batch` of the epoch into x (float [batch_size*rows*cols]) and y (int64_t
 * [batch_size] for labels, else [batch_size*target_size] of labels_type);
 * returns the number of samples written (batch_size, fewer for a last partial batch,
 * 0 when `batch` is out of range). Asks the caches for the next batch's samples. A batch of
 * 16 samples or more is split over the runtime's threads (ht_machine.h): the same values. */
int64_t ht_loader_fill(const ht_loader *l, int64_t batch, float *x, void *y);
/* ht_loader_fill, with `copies` copies of the inputs one after the other in x (copy c at
 * x + c*n*rows*cols for the n samples written), each written whole by task c on the runtime's
 * threads (ht_parallel.h: thread c, unless another takes it over), for kernels whose threads
 * each read all of the batch (ht_linear_bwd_weight_sgd_fwd). 1: ht_loader_fill. */
int64_t ht_loader_fill_copies(const ht_loader *l, int64_t batch, float *x, void *y, int copies);
/* The batches of a pipelined training loop (backend/c_data.hy): batch b in x[b % 2], in
 * `copies` copies (copy c at x[b % 2] + c*n*rows*cols for its n samples), one for each thread
 * of the fused first-layer step (ht_linear_bwd_weight_sgd_fwd), and which batch each
 * copy holds. The step's thread c fills its copies of the batch it trains on and of the next
 * one if they do not hold them (ht_batches_ready); a worker then fills its copy of the batch
 * after the next, while the caller runs the rest of the next step (ht_defer), so that only the
 * caller's copy is filled during the step's pass over W. Each copy is written by its thread
 * alone. */
typedef struct {
    const ht_loader *loader;
    float *x[2];
    int copies;
    int64_t current;                 /* the batch of the step (ht_batches_next) */
    int64_t held[2][HT_MAX_THREADS]; /* the batch in copy c of x[k]; -1: none */
    int64_t ahead[HT_MAX_THREADS];   /* the batch worker c fills after its part of the step */
} ht_batches;
/* Starts an epoch's batches (after ht_loader_begin_epoch): no copy holds one. */
void ht_batches_begin(ht_batches *B, const ht_loader *l, float *xa, float *xb, int copies);
/* Fills every copy of `batch` (as ht_loader_fill_copies) and its targets into y; returns its
 * number of samples. */
int64_t ht_batches_fill(ht_batches *B, int64_t batch, void *y);
/* Before the fused step of batch - 1: writes the targets of `batch` into y and returns its
 * number of samples; its inputs are filled by the step's threads (ht_batches_ready), or now
 * when there is one copy. */
int64_t ht_batches_next(ht_batches *B, int64_t batch, void *y);
/* ht_copy_ready (ht_kernels.h) of the fused step for B (an ht_batches *) on thread `thread`. */
void ht_batches_ready(void *B, int thread);
/* Frees `order` if ht_loader_init allocated it. */
void ht_loader_release(ht_loader *l);
/* Points l at a data set (releasing what it held) and initialises it; used by Python to
 * give a compiled program its loader's data and random state before a call. The element
 * types and target_size stay: they are the compiled program's. */
int ht_loader_bind(ht_loader *l, const void *images, const void *labels, int64_t count,
                   int64_t rows, int64_t cols, int64_t batch_size, int shuffle, int drop_last,
                   float mean, float std, uint64_t rng);

#endif
