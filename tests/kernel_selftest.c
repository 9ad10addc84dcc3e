/* kernel_selftest.c: the runtime's vector kernels against naive reference loops, in C alone,
 * so that it runs where Python and torch do not (an aarch64 build under qemu-user).
 *
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -fwrapv -pthread -I c_runtime \
 *      tests/kernel_selftest.c c_runtime/[a-z]*.c -lm -o selftest && ./selftest
 *
 * Checks, for shapes that hit every tile and tail: the linear kernels against loops in double
 * (values within a relative 1e-4; NaN, +inf and -inf exactly where the loops have them, with
 * NaN and infinities planted in the inputs); SGD steps against the rule in double; the fused
 * kernels against the unfused ones, bit for bit; the convolutions against loops in double;
 * the same bits for 1 and 3 threads; e^x correctly rounded from exp in double, and log_softmax;
 * a loader's normalised pixels against its table.
 * Prints the vector ISA and "selftest ok", or what differs; exits 1 on a failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hytorch_rt.h"
#include "ht_vec.h" /* HT_HAS_FMA */
#include "selftest.h"

static uint64_t rng_state = 12345;
static float uniform(float lo, float hi) { return lo + (hi - lo) * ht_rng_uniform(&rng_state); }

static float *new_floats(int64_t n, float scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = uniform(-scale, scale);
    return p;
}

static float *copy_of(const float *a, int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(p, a, (size_t)n * sizeof(float));
    return p;
}

/* Plants NaN, +inf and -inf at a few positions of a[n] (when `specials`). */
static void plant_specials(float *a, int64_t n, int specials) {
    const float values[3] = {NAN, INFINITY, -INFINITY};
    for (int s = 0; s < specials; s++)
        a[(int64_t)(ht_rng_next(&rng_state) % (uint64_t)n)] = values[s % 3];
}

static int kind(double v) { return isnan(v) ? 1 : isinf(v) ? (v > 0 ? 2 : 3) : 0; }

/* got[n] against want[n] computed in double: same NaN/inf pattern, finite values close. */
static void expect_close(const char *what, const float *got, const double *want, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (kind(got[i]) != kind(want[i]) ||
            (kind(want[i]) == 0 && fabs(got[i] - want[i]) > 1e-4 * (1.0 + fabs(want[i])))) {
            CHECK(0, "%s[%lld] = %.9g, the reference %.9g", what, (long long)i, got[i], want[i]);
            return;
        }
    }
}

/* The same bits, or NaN in both. */
static void expect_same_bits(const char *what, const float *got, const float *want, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(got + i, want + i, sizeof(float)) != 0 && !(isnan(got[i]) && isnan(want[i]))) {
            CHECK(0, "%s[%lld] = %.9g, unfused or one thread: %.9g", what, (long long)i, got[i],
                  want[i]);
            return;
        }
}

/* ---- linear layers against loops in double ---- */

static void check_linear(int64_t n, int64_t in, int64_t out, int specials) {
    float *x = new_floats(n * in, 1), *W = new_floats(out * in, 0.2f), *b = new_floats(out, 1);
    float *dy = new_floats(n * out, 1);
    plant_specials(x, n * in, specials);
    plant_specials(W, out * in, specials);
    plant_specials(dy, n * out, specials);
    float *y = new_floats(n * out, 1), *dx = new_floats(n * in, 1);
    float *dW = calloc((size_t)(out * in), 4), *db = calloc((size_t)out, 4);
    double *want = malloc((size_t)(n * in + out * in + n * out + out) * sizeof(double));

    ht_linear_fwd(y, x, W, b, n, in, out);
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = b[o];
            for (int64_t p = 0; p < in; p++) s += (double)x[i * in + p] * W[o * in + p];
            want[i * out + o] = s;
        }
    expect_close("linear_fwd y", y, want, n * out);

    ht_linear_bwd_input(dx, dy, W, n, in, out, 0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t p = 0; p < in; p++) {
            double s = 0;
            for (int64_t o = 0; o < out; o++) s += (double)dy[i * out + o] * W[o * in + p];
            want[i * in + p] = s;
        }
    expect_close("linear_bwd_input dx", dx, want, n * in);

    ht_linear_bwd_weight(dW, dy, x, n, in, out);
    for (int64_t o = 0; o < out; o++)
        for (int64_t p = 0; p < in; p++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += (double)dy[i * out + o] * x[i * in + p];
            want[o * in + p] = s;
        }
    expect_close("linear_bwd_weight dW", dW, want, out * in);

    ht_sum_rows(db, dy, n, out);
    for (int64_t o = 0; o < out; o++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += dy[i * out + o];
        want[o] = s;
    }
    expect_close("sum_rows db", db, want, out);
    free(x), free(W), free(b), free(dy), free(y), free(dx), free(dW), free(db), free(want);
}

/* ---- SGD ---- */

typedef struct {
    float lr, momentum, dampening, weight_decay;
    int nesterov;
} sgd_config;

static const sgd_config SGD_CONFIGS[] = {{0.1f, 0, 0, 0, 0},
                                         {0.05f, 0.9f, 0, 0, 0},
                                         {0.05f, 0.9f, 0.3f, 1e-2f, 0},
                                         {0.05f, 0.9f, 0, 1e-2f, 1}};
#define SGD_ARGS(c) (c).lr, (c).momentum, (c).dampening, (c).weight_decay, (c).nesterov

static void check_sgd_step(int64_t numel, sgd_config c) {
    float *w = new_floats(numel, 1), *buf = new_floats(numel, 1);
    double *wd = malloc((size_t)numel * sizeof(double));
    double *bufd = malloc((size_t)numel * sizeof(double));
    for (int64_t i = 0; i < numel; i++) wd[i] = w[i];
    for (int step = 0; step < 3; step++) {
        float *g = new_floats(numel, 1);
        if (step == 1) plant_specials(g, numel, 3);
        ht_sgd_step(w, g, buf, numel, SGD_ARGS(c), step == 0);
        for (int64_t i = 0; i < numel; i++) {
            double gi = c.weight_decay != 0 ? g[i] + c.weight_decay * wd[i] : g[i];
            if (c.momentum != 0) {
                bufd[i] = step == 0 ? gi : c.momentum * bufd[i] + (1 - c.dampening) * gi;
                gi = c.nesterov ? gi + c.momentum * bufd[i] : bufd[i];
            }
            wd[i] -= c.lr * gi;
        }
        expect_close("sgd_step w", w, wd, numel);
        free(g);
    }
    free(w), free(buf), free(wd), free(bufd);
}

/* ht_linear_bwd_weight_sgd(_fwd) and ht_bias_bwd_sgd against the gradient into zeros, then
 * ht_sgd_step (then ht_linear_fwd): the same bits. */
static void check_fused(int64_t n, int64_t in, int64_t out, int64_t n_next, sgd_config c) {
    float *x = new_floats(n * in, 1), *dy = new_floats(n * out, 1);
    float *x_next = new_floats(n_next * in, 1);
    float *W = new_floats(out * in, 0.2f), *buf = new_floats(out * in, 1), *b = new_floats(out, 1);
    float *bbuf = new_floats(out, 1);
    plant_specials(dy, n * out, 1);
    float *W_ref = copy_of(W, out * in), *buf_ref = copy_of(buf, out * in);
    float *b_ref = copy_of(b, out);
    float *bbuf_ref = copy_of(bbuf, out);
    float *y = new_floats(n_next * out, 1), *y_ref = new_floats(n_next * out, 1);
    float *g = calloc((size_t)(out * in), 4), *gb = calloc((size_t)out, 4);
    for (int first = 1; first >= 0; first--) {
        ht_linear_bwd_weight_sgd_fwd(W, buf, dy, x, n, in, out, SGD_ARGS(c), first, y, x_next,
                                     n_next, 1, NULL, NULL);
        ht_bias_bwd_sgd(b, bbuf, dy, n, out, SGD_ARGS(c), first);
        memset(g, 0, (size_t)(out * in) * 4);
        memset(gb, 0, (size_t)out * 4);
        ht_linear_bwd_weight(g, dy, x, n, in, out);
        ht_sum_rows(gb, dy, n, out);
        ht_sgd_step(W_ref, g, buf_ref, out * in, SGD_ARGS(c), first);
        ht_sgd_step(b_ref, gb, bbuf_ref, out, SGD_ARGS(c), first);
        if (n_next > 0) ht_linear_fwd(y_ref, x_next, W_ref, NULL, n_next, in, out);
        expect_same_bits("fused W", W, W_ref, out * in);
        expect_same_bits("fused b", b, b_ref, out);
        if (c.momentum != 0) expect_same_bits("fused momentum", buf, buf_ref, out * in);
        expect_same_bits("fused next forward", y, y_ref, n_next * out);
    }
    free(x), free(dy), free(x_next), free(W), free(buf), free(b), free(bbuf), free(W_ref);
    free(buf_ref), free(b_ref), free(bbuf_ref), free(y), free(y_ref), free(g), free(gb);
}

/* ---- threads ---- */

static void run_layer(const float *x, const float *W0, const float *dy, float *y, float *dx,
                      float *dW, float *W, int64_t n, int64_t in, int64_t out) {
    memcpy(W, W0, (size_t)(out * in) * 4);
    memset(dW, 0, (size_t)(out * in) * 4);
    ht_linear_fwd(y, x, W, NULL, n, in, out);
    ht_linear_bwd_input(dx, dy, W, n, in, out, 0);
    ht_linear_bwd_weight(dW, dy, x, n, in, out);
    ht_linear_bwd_weight_sgd(W, NULL, dy, x, n, in, out, 0.1f, 0, 0, 0, 0, 1);
}

static void check_threads(int64_t n, int64_t in, int64_t out) {
    float *x = new_floats(n * in, 1), *W0 = new_floats(out * in, 0.2f);
    float *dy = new_floats(n * out, 1), *r[2][4];
    for (int v = 0; v < 2; v++) {
        r[v][0] = malloc((size_t)(n * out) * 4), r[v][1] = malloc((size_t)(n * in) * 4);
        r[v][2] = malloc((size_t)(out * in) * 4), r[v][3] = malloc((size_t)(out * in) * 4);
        ht_set_num_threads(v == 0 ? 1 : 3);
        run_layer(x, W0, dy, r[v][0], r[v][1], r[v][2], r[v][3], n, in, out);
    }
    ht_set_num_threads(1);
    expect_same_bits("3 threads y", r[1][0], r[0][0], n * out);
    expect_same_bits("3 threads dx", r[1][1], r[0][1], n * in);
    expect_same_bits("3 threads dW", r[1][2], r[0][2], out * in);
    expect_same_bits("3 threads W", r[1][3], r[0][3], out * in);
    for (int v = 0; v < 2; v++)
        for (int k = 0; k < 4; k++) free(r[v][k]);
    free(x), free(W0), free(dy);
}

/* ---- 2-d convolution against loops in double ---- */

typedef struct {
    int64_t n, c, h, w, oc, kh, kw, sh, sw, ph, pw;
} conv_shape;

/* The input x[s, ci, ih, iw] that output (oh, ow) meets at tap (i, j), or -1 in the padding. */
static int64_t conv_input(const conv_shape *g, int64_t s, int64_t ci, int64_t oh, int64_t ow,
                          int64_t i, int64_t j) {
    const int64_t ih = oh * g->sh - g->ph + i, iw = ow * g->sw - g->pw + j;
    if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) return -1;
    return ((s * g->c + ci) * g->h + ih) * g->w + iw;
}

/* y, dx, dW of conv g (x, W, b, dy) by the kernels, on `threads` threads. */
static void run_conv(const conv_shape *g, const float *x, const float *W, const float *b,
                     const float *dy, float *y, float *dx, float *dW, int threads) {
    float *workspace = malloc((size_t)ht_conv2d_workspace(g->c, g->h, g->w, g->oc, g->kh, g->kw,
                                                          g->sh, g->sw, g->ph, g->pw) * 4);
    ht_set_num_threads(threads);
    ht_conv2d_fwd(y, x, W, b, workspace, g->n, g->c, g->h, g->w, g->oc, g->kh, g->kw, g->sh,
                  g->sw, g->ph, g->pw);
    ht_conv2d_bwd_input(dx, dy, W, workspace, g->n, g->c, g->h, g->w, g->oc, g->kh, g->kw, g->sh,
                        g->sw, g->ph, g->pw, 0);
    memset(dW, 0, (size_t)(g->oc * g->c * g->kh * g->kw) * 4);
    ht_conv2d_bwd_weight(dW, dy, x, workspace, g->n, g->c, g->h, g->w, g->oc, g->kh, g->kw,
                         g->sh, g->sw, g->ph, g->pw);
    ht_set_num_threads(1);
    free(workspace);
}

/* The kernels against loops in double, and the same bits on 3 threads as on one. */
static void check_conv(conv_shape g) {
    const int64_t oh = (g.h + 2 * g.ph - g.kh) / g.sh + 1, ow = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
    const int64_t nx = g.n * g.c * g.h * g.w, ny = g.n * g.oc * oh * ow;
    const int64_t nw = g.oc * g.c * g.kh * g.kw;
    float *x = new_floats(nx, 1), *W = new_floats(nw, 0.3f), *b = new_floats(g.oc, 1);
    float *dy = new_floats(ny, 1), *r[2][3];
    for (int v = 0; v < 2; v++) {
        r[v][0] = malloc((size_t)ny * 4), r[v][1] = malloc((size_t)nx * 4);
        r[v][2] = malloc((size_t)nw * 4);
        run_conv(&g, x, W, b, dy, r[v][0], r[v][1], r[v][2], v == 0 ? 1 : 3);
    }
    double *y = calloc((size_t)ny, 8), *dx = calloc((size_t)nx, 8), *dW = calloc((size_t)nw, 8);
    for (int64_t s = 0; s < g.n; s++)
        for (int64_t o = 0; o < g.oc; o++)
            for (int64_t p = 0; p < oh * ow; p++) {
                const int64_t out = (s * g.oc + o) * oh * ow + p;
                y[out] = b[o];
                for (int64_t ci = 0; ci < g.c; ci++)
                    for (int64_t i = 0; i < g.kh; i++)
                        for (int64_t j = 0; j < g.kw; j++) {
                            const int64_t at = conv_input(&g, s, ci, p / ow, p % ow, i, j);
                            const int64_t tap = ((o * g.c + ci) * g.kh + i) * g.kw + j;
                            if (at < 0) continue;
                            y[out] += (double)W[tap] * x[at];
                            dx[at] += (double)W[tap] * dy[out];
                            dW[tap] += (double)x[at] * dy[out];
                        }
            }
    expect_close("conv y", r[0][0], y, ny);
    expect_close("conv dx", r[0][1], dx, nx);
    expect_close("conv dW", r[0][2], dW, nw);
    expect_same_bits("3 threads conv y", r[1][0], r[0][0], ny);
    expect_same_bits("3 threads conv dx", r[1][1], r[0][1], nx);
    expect_same_bits("3 threads conv dW", r[1][2], r[0][2], nw);
    for (int v = 0; v < 2; v++)
        for (int k = 0; k < 3; k++) free(r[v][k]);
    free(x), free(W), free(b), free(dy), free(y), free(dx), free(dW);
}

/* ---- e^x (ht_vmath.h) against exp in double, and log_softmax, which uses it ---- */

static void check_log_softmax(int64_t rows, int64_t cols) {
    float *logits = new_floats(rows * cols, 8), *lp = malloc(rows * cols * sizeof(float));
    double *want = malloc(rows * cols * sizeof(double));
    for (int64_t r = 0; r < rows; r++) {
        const float *row = logits + r * cols;
        double m = row[0], sum = 0;
        for (int64_t j = 1; j < cols; j++) m = fmax(m, row[j]);
        for (int64_t j = 0; j < cols; j++) sum += exp(row[j] - m);
        for (int64_t j = 0; j < cols; j++) want[r * cols + j] = row[j] - m - log(sum);
    }
    ht_log_softmax_fwd(lp, logits, rows, cols);
    expect_close("log_softmax", lp, want, rows * cols);
    free(logits), free(lp), free(want);
}

static void check_exp(void) {
    enum { N = 4099 }; /* whole vectors and a tail */
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    double *want = malloc(N * sizeof(double));
    for (int i = 0; i < N; i++) x[i] = -110.0f + 200.0f * (float)i / (N - 1); /* both ends */
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = -0.0f;
    for (int i = 0; i < N; i++) want[i] = exp((double)x[i]);
    ht_exp_fwd(y, x, N);
    for (int i = 0; i < N; i++) {
        /* correctly rounded: within half a unit in the last place (tests/test_vector_exp.py) */
        double unit = fmax(fabs((double)nextafterf((float)want[i], INFINITY) - (float)want[i]),
                           0x1p-149);
        int same_kind = kind(y[i]) == kind(want[i] > 0x1.fffffep127 ? INFINITY : want[i]);
        if (!same_kind || (kind(y[i]) == 0 && fabs(y[i] - want[i]) > 0.5001 * unit)) {
            CHECK(0, "exp(%a) = %a, the reference %a", x[i], y[i], want[i]);
            break;
        }
    }
    free(x), free(y), free(want);
}

/* A loader's pixels, normalised by the vector formula (exact for these normalisations where
 * the fused multiply-add is: every build but the plain SSE2 and generic ones), are the
 * table's bits; in images of whole vectors and of a tail. */
static void check_loader_pixels(int64_t rows, int64_t cols, float mean, float std) {
    enum { IMAGES = 16 };
    const int64_t pixels = rows * cols;
    uint8_t *images = malloc((size_t)(IMAGES * pixels)), labels[IMAGES] = {0};
    float *x = malloc((size_t)(IMAGES * pixels) * sizeof(float));
    int64_t y[IMAGES];
    for (int64_t i = 0; i < IMAGES * pixels; i++) images[i] = (uint8_t)(i * 7 + i / 256);
    ht_loader l;
    memset(&l, 0, sizeof l);
    l.images = images, l.labels = labels, l.count = IMAGES, l.rows = rows, l.cols = cols;
    l.batch_size = IMAGES, l.mean = mean, l.std = std;
    CHECK(ht_loader_init(&l) == HT_OK, "loader init: %s", ht_last_error());
    CHECK(l.pixel_formula || !HT_HAS_FMA, "mean %g std %g: the formula missed the table", mean,
          std);
    CHECK(ht_loader_fill(&l, 0, x, y) == IMAGES, "loader fill");
    for (int64_t i = 0; i < IMAGES * pixels; i++)
        if (memcmp(&x[i], &l.pixel_table[images[i]], sizeof(float)) != 0) {
            CHECK(0, "pixel %d normalised to %a, the table has %a", images[i], x[i],
                  l.pixel_table[images[i]]);
            break;
        }
    ht_loader_release(&l);
    free(images), free(x);
}

int main(void) {
    check_exp();
    check_loader_pixels(28, 28, 0.1307f, 0.3081f);
    check_loader_pixels(5, 3, 0.2860f, 0.3530f);
    /* log_softmax's long rows, and short ones (at most a vector: in blocks of 8, and a rest) */
    static const int64_t softmax_shapes[][2] = {{5, 23}, {13, 3}, {19, 10}};
    for (int k = 0; k < 3; k++) check_log_softmax(softmax_shapes[k][0], softmax_shapes[k][1]);
    /* (n, in, out): the MNIST MLP's shapes, then every tail of the tilings. */
    static const int64_t shapes[][3] = {{1, 784, 50}, {1, 50, 10}, {64, 784, 50}, {64, 50, 10},
                                        {1, 37, 5}, {3, 37, 19}, {5, 16, 16}, {7, 1, 1},
                                        {9, 100, 33}, {2, 17, 3}, {13, 49, 8}, {6, 20, 15},
                                        {17, 33, 70}, {1, 3, 40}};
    const int count = sizeof shapes / sizeof shapes[0];
    for (int s = 0; s < count; s++)
        for (int specials = 0; specials <= 3; specials += 3)
            check_linear(shapes[s][0], shapes[s][1], shapes[s][2], specials);
    for (int c = 0; c < 4; c++) {
        for (int64_t numel = 1; numel <= 70; numel += 23) check_sgd_step(numel, SGD_CONFIGS[c]);
        check_sgd_step(784 * 50, SGD_CONFIGS[c]);
        for (int s = 0; s < count; s++)
            for (int64_t n_next = 0; n_next <= 2; n_next++)
                check_fused(shapes[s][0], shapes[s][1], shapes[s][2], n_next, SGD_CONFIGS[c]);
    }
    check_threads(64, 784, 50);
    check_threads(40, 300, 70);
    check_threads(1, 2300, 300); /* a matrix-vector product split over the threads */
    /* the blog CNN's convolutions (stride 1: no columns), padded and strided ones (columns),
     * two blocks of columns a sample, more samples than groups of the weight gradient */
    static const conv_shape convs[] = {{3, 1, 28, 28, 32, 3, 3, 1, 1, 0, 0},
                                       {3, 32, 26, 26, 64, 3, 3, 1, 1, 0, 0},
                                       {2, 3, 9, 40, 5, 3, 5, 2, 1, 1, 2},
                                       {2, 2, 36, 36, 7, 3, 3, 1, 1, 1, 1},
                                       {19, 3, 7, 6, 4, 2, 2, 1, 2, 0, 1},
                                       {2, 5, 6, 6, 3, 1, 1, 1, 1, 0, 0}};
    for (size_t k = 0; k < sizeof convs / sizeof convs[0]; k++) check_conv(convs[k]);
    printf("vector ISA: %s\n", ht_vector_isa());
    if (failures) {
        printf("selftest FAILED: %d failure(s)\n", failures);
        return 1;
    }
    printf("selftest ok\n");
    return 0;
}
