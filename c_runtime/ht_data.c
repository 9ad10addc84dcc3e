/* ht_data.c: see ht_data.h. */
#include "ht_data.h"

#include <math.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

int ht_loader_init(ht_loader *l) {
    l->owns_order = 0;
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
    for (int64_t i = 0; i < l->count; i++) l->order[i] = i;
    if (l->shuffle) ht_rng_shuffle(&l->rng, l->order, l->count);
}

/* dst[k] = pixel_table[src[k]]. With AVX-512 the table's own float32 operations are done
 * 16 pixels at a time instead of looked up: IEEE operations give the same bits, and it is
 * several times faster than 16 scalar loads (this runs once per image of every step). */
static void normalise_pixels(float *dst, const uint8_t *src, int64_t pixels, const ht_loader *l) {
    int64_t k = 0;
#ifdef __AVX512F__
    const __m512 scale = _mm512_set1_ps(255.0f), mean = _mm512_set1_ps(l->mean),
                 std = _mm512_set1_ps(l->std);
    for (; k + 16 <= pixels; k += 16) {
        __m512 p = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(src + k))));
        _mm512_storeu_ps(dst + k, _mm512_div_ps(_mm512_sub_ps(_mm512_div_ps(p, scale), mean), std));
    }
#endif
    for (; k < pixels; k++) dst[k] = l->pixel_table[src[k]];
}

int64_t ht_loader_fill(const ht_loader *l, int64_t batch, float *x, int64_t *y) {
    if (batch < 0 || batch >= ht_loader_len(l)) return 0;
    int64_t start = batch * l->batch_size;
    int64_t n = l->count - start < l->batch_size ? l->count - start : l->batch_size;
    int64_t pixels = l->rows * l->cols;
    for (int64_t r = 0; r < n; r++) {
        int64_t sample = l->order[start + r];
        normalise_pixels(x + r * pixels, l->images + sample * pixels, pixels, l);
        y[r] = l->labels[sample];
    }
    return n;
}

void ht_loader_release(ht_loader *l) {
    if (l->owns_order) ht_free(l->order);
    l->order = NULL;
    l->owns_order = 0;
}

int ht_loader_bind(ht_loader *l, const uint8_t *images, const uint8_t *labels, int64_t count,
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
