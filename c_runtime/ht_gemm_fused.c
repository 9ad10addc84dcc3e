/* ht_gemm_fused.c: a training step's update of W fused with the next step's forward through
 * W, in one pass over W (ht_gemm_sgd_then_nt, ht_gemm_rank1_sgd_then_nt); see
 * ht_gemm_impl.h. */
#include <math.h>
#include <stdatomic.h>

#include "ht_gemm_impl.h"

/* ---- a step of a batch: W <- SGD(W, dy^T x), then y = x_next W^T ---- */

/* Rows of W updated, then the columns of y that need only those rows, a group at a time: the
 * group is still in cache when the forward reads it, and the threads need no barrier between
 * the update and the forward. Each thread's share of the rows is dealt to it as a block of
 * groups (ht_parallel.h), so that its rows stay in its cache from step to step, and a thread
 * that is done takes the groups another has not reached: groups of GROUP_ROWS rows for that
 * (more on one thread: each group's forward reads all of x_next), and never more groups than
 * a job is dealt in. */
#define GROUP_ROWS (NN_ROWS + NN_ROWS / 2)

/* The caller's share is balanced against the workers' from step to step. In a pipelined loop
 * the caller fills its copy of the next batch inside its share (the workers filled theirs
 * while it ran the rest of the step), so with equal shares the workers wait, or take the
 * caller's last groups, whose rows of W then move to their cores and back at every step.
 * Each W (by address, in a small table shared by threads: a lost or mistaken entry only
 * costs balance) keeps how many rows the caller gives up to the workers. After a step in
 * which the workers took rows of the caller's share (net of those it took of theirs), it
 * gives up half that many more (or takes half back); after one in which no share was taken
 * from, one more if the caller finished more than a row's time after the last worker, one
 * fewer if a worker finished that much after the caller. Which thread updates a row changes
 * no result. */
#define BALANCE_SLOT_BITS 6
#define BALANCE_KEY_BITS 48
static _Atomic uint64_t balances[1 << BALANCE_SLOT_BITS]; /* W's address, then rows given up */

static uint64_t balance_key(const float *W) {
    return (uint64_t)(uintptr_t)W & ((UINT64_C(1) << BALANCE_KEY_BITS) - 1);
}

static int rows_given_up(const float *W) {
    uint64_t entry = atomic_load_explicit(&balances[address_slot(W, BALANCE_SLOT_BITS)],
                                          memory_order_relaxed);
    return entry >> (64 - BALANCE_KEY_BITS) == balance_key(W) ? (int16_t)(uint16_t)entry : 0;
}

static void remember_rows_given_up(const float *W, int rows) {
    rows = rows > INT16_MAX ? INT16_MAX : rows < -INT16_MAX ? -INT16_MAX : rows;
    uint64_t entry = balance_key(W) << (64 - BALANCE_KEY_BITS) | (uint16_t)(int16_t)rows;
    atomic_store_explicit(&balances[address_slot(W, BALANCE_SLOT_BITS)], entry,
                          memory_order_relaxed);
}

typedef struct {
    nn_product update;
    nt_product forward;
    int threads, groups;  /* the threads' shares of W's rows, each in this many groups */
    int64_t caller_rows;  /* share 0; the workers' shares split the rest near-equally */
    int copies;           /* of x and x_next */
    ht_copy_ready ready;  /* or NULL */
    void *ready_arg;
    char readied[HT_MAX_THREADS];  /* whether thread h has called ready, each its own */
    int64_t ended[HT_MAX_THREADS]; /* when thread h's last task ended (ht_now_ns), or 0 */
    _Atomic int64_t taken_from_caller, taken_by_caller; /* rows of one's share the other ran */
} update_then_forward;

/* Rows [from, to) of share s. */
static ht_share rows_of_share(const update_then_forward *job, int s) {
    if (s == 0) return (ht_share){0, job->caller_rows};
    ht_share w = ht_task_share(job->update.m - job->caller_rows, s - 1, job->threads - 1);
    return (ht_share){job->caller_rows + w.from, job->caller_rows + w.to};
}

/* Group t % groups of share t / groups. It reads the copy of the batches that the thread
 * running it reads (ht_thread_index), whichever thread's share the group is in, after the
 * thread's first group has called `ready` for it. */
static void update_then_forward_task(void *arg, int t, int tasks) {
    (void)tasks;
    update_then_forward *job = arg;
    const int thread = ht_thread_index();
    if (job->ready && !job->readied[thread]) {
        job->readied[thread] = 1;
        job->ready(job->ready_arg, thread);
    }
    const int64_t copy = thread % job->copies;
    nn_product update = job->update; /* on this thread's copies */
    nt_product forward = job->forward;
    update.B += copy * update.k * update.n;
    forward.A += copy * forward.m * forward.k;
    ht_share share = rows_of_share(job, t / job->groups);
    split groups = split_in(share.to - share.from, job->groups);
    const int64_t i0 = share.from + part_start(groups, t % job->groups);
    const int64_t i1 = i0 + part_size(groups, t % job->groups);
    if (i0 < i1) {
        ht_gemm_nn_block(&update, i0, i1, 0, (update.n + HT_VL - 1) / HT_VL);
        ht_gemm_nt_block(&forward, 0, forward.m, i0, i1);
    }
    if (job->threads > 1) { /* what rebalanced() reads */
        if ((t / job->groups == 0) != (thread == 0) && i0 < i1)
            atomic_fetch_add_explicit(thread == 0 ? &job->taken_by_caller
                                                  : &job->taken_from_caller,
                                      i1 - i0, memory_order_relaxed);
        job->ended[thread] = ht_now_ns();
    }
}

/* The rows the caller gives up after a step that began at `began` (see balances); the same
 * when the caller or every worker took no part (the pool ran the job on one thread). */
static int rebalanced(update_then_forward *job, int given_up, int64_t began) {
    int64_t caller = job->ended[0], worker = 0;
    for (int h = 1; h < job->threads; h++)
        if (job->ended[h] > worker) worker = job->ended[h];
    if (caller == 0 || worker == 0) return given_up;
    /* Rows are only taken from a share that has them: the caller keeps between 0 and m. */
    const int64_t taken = atomic_load(&job->taken_from_caller) - atomic_load(&job->taken_by_caller);
    if (taken != 0) return given_up + (int)(taken > 0 ? (taken + 1) / 2 : -((1 - taken) / 2));
    const int64_t m = job->update.m;
    const int64_t row = ((caller > worker ? caller : worker) - began) * job->threads / m;
    if (caller - worker > row && job->caller_rows > 0) return given_up + 1;
    if (worker - caller > row && job->caller_rows < m) return given_up - 1;
    return given_up;
}

int ht_gemm_sgd_then_nt_threads(int64_t m, int64_t n, int64_t k, int64_t k_next) {
    return m > 1 ? (int)min64(threads_for(k, (k + k_next) * m * n), m) : 1;
}

/* The caller's share of W's m rows on `threads` threads, and the rows it gives up for it. */
static int64_t balanced_caller_rows(const float *W, int64_t m, int threads, int *given_up) {
    *given_up = 0;
    if (threads <= 1) return m;
    const int64_t even = ht_task_share(m, 0, threads).to;
    *given_up = rows_given_up(W);
    if (*given_up > even || *given_up < even - m) *given_up = 0; /* another W's, or shape's */
    return even - *given_up;
}

int64_t ht_gemm_sgd_then_nt_caller_rows(const float *W, int64_t m, int threads) {
    int given_up;
    return balanced_caller_rows(W, m, threads, &given_up);
}

void ht_gemm_sgd_then_nt(float *W, float *buf, const float *dy, const float *x, int64_t m,
                         int64_t n, int64_t k, ht_sgd_params sgd, float *y, const float *x_next,
                         int64_t k_next, int copies, ht_copy_ready ready, void *ready_arg) {
    int threads = ht_gemm_sgd_then_nt_threads(m, n, k, k_next);
    if (ready && threads > copies) /* a thread past them would share a copy */
        threads = copies > 1 ? copies : 1;
    int given_up;
    update_then_forward S = {{W, buf, dy, x, 1, m, m, n, k, HT_EPI_SGD, sgd, 0, NULL},
                             {y, x_next, W, NULL, k_next, m, n, 1},
                             threads, 1, balanced_caller_rows(W, m, threads, &given_up),
                             copies > 1 ? copies : 1, ready, ready_arg, {0}, {0}, 0, 0};
    const int64_t group_rows = threads > 1 ? GROUP_ROWS : 2 * NN_ROWS;
    int64_t largest_share = 0;
    for (int s = 0; s < threads; s++) {
        ht_share share = rows_of_share(&S, s);
        if (share.to - share.from > largest_share) largest_share = share.to - share.from;
    }
    S.groups = (int)min64((largest_share + group_rows - 1) / group_rows, HT_MOST_TASKS / threads);
    if (S.groups < 1) S.groups = 1; /* no rows: one task of none */
    const int64_t began = threads > 1 ? ht_now_ns() : 0;
    ht_parallel_on(threads, threads * S.groups, update_then_forward_task, &S);
    if (threads > 1) remember_rows_given_up(W, rebalanced(&S, given_up, began));
}

/* ---- the batch-1 step: W <- SGD(W, dy x^T), then y = W x_next ---- */

/* The sweep updates this many rows of W side by side: each row's product is a chain of
 * dependent multiply-adds, and one chain alone would wait on each. */
#define FUSED_ROWS 4

/* Rows r .. r+Q-1 of W side by side (Q <= FUSED_ROWS): each element updated as ht_gemm_nn's
 * rank-1 update does, each row's product accumulated into acc[q] as ht_gemm_nt's tiles do
 * (same chunks, multiply-adds and order; the lanes past the end of a row zeroed, as the
 * zero-padded chunks there are). The rows whose bit is set in `kept` (a constant) are those
 * that the update leaves as they are (see leaves_zero_dy_rows): only read, nothing stored, so
 * that their cache lines stay clean and are never written back (a sweep that only reads rows
 * takes about a third of the time of one that writes them), unless one holds a NaN: its
 * product is NaN, and sweep_block redoes the row. */
HT_INLINE void sweep_rows(float *W, float *buf, const float *dy, const float *x, int64_t n,
                          ht_sgd_params sgd, const int sgd_variant, const float *x_next,
                          ht_vf *acc, const int Q, const int kept) {
    ht_vf d[FUSED_ROWS], a[FUSED_ROWS];
    HT_UNROLL(4)
    for (int q = 0; q < Q; q++) {
        d[q] = ht_vsplat(dy[q]);
        a[q] = ht_vzero();
    }
    int64_t j = 0;
    for (; j + HT_VL <= n; j += HT_VL) {
        ht_vf xv = ht_vload(x + j), xn = ht_vload(x_next + j);
        HT_UNROLL(4)
        for (int q = 0; q < Q; q++) {
            float *w = W + q * n + j;
            ht_vf updated = kept >> q & 1 ? ht_vload(w)
                                          : ht_sgd_rule_v(w, buf ? buf + q * n + j : NULL,
                                                          ht_vfma(d[q], xv, ht_vzero()), HT_VL, sgd,
                                                          sgd_variant);
            a[q] = ht_vfma(xn, updated, a[q]);
        }
    }
    if (j < n) {
        int64_t count = n - j;
        ht_vf xv = ht_vload_first(x + j, count), xn = ht_vload_first(x_next + j, count);
        HT_UNROLL(4)
        for (int q = 0; q < Q; q++) {
            float *w = W + q * n + j;
            /* Lanes past the row hold the rule applied to zeros, NaN when dy is infinite. */
            ht_vf updated = kept >> q & 1
                                ? ht_vload_first(w, count)
                                : ht_vkeep_first(ht_sgd_rule_v(w, buf ? buf + q * n + j : NULL,
                                                               ht_vfma(d[q], xv, ht_vzero()),
                                                               count, sgd, sgd_variant),
                                                 count);
            a[q] = ht_vfma(xn, updated, a[q]);
        }
    }
    HT_UNROLL(4)
    for (int q = 0; q < Q; q++) acc[q] = a[q];
}

/* sweep_rows on Q rows from row r, `kept` being the rows whose dy is zero when
 * `zero_dy_unchanged` (with plain SGD only: no such code in the other variants); a kept row
 * whose product is NaN is redone, updated. */
HT_INLINE void sweep_block(float *W, float *buf, const float *dy, const float *x, int64_t r,
                           int64_t n, ht_sgd_params sgd, const int sgd_variant,
                           const float *x_next, ht_vf *acc, const int Q, int zero_dy_unchanged) {
    float *Wr = W + r * n, *bufr = buf ? buf + r * n : NULL;
    int kept = 0;
    for (int q = 0; q < Q && sgd_variant == 0 && zero_dy_unchanged; q++)
        kept |= (dy[r + q] == 0.0f) << q;
    switch (kept) {
#define HT_SWEEP_KEEPING(K)                                                                   \
    case K:                                                                                   \
        if (K >> Q == 0) /* (only for the sets of rows a block of Q has) */                  \
            sweep_rows(Wr, bufr, dy + r, x, n, sgd, sgd_variant, x_next, acc + r, Q, K);      \
        break;
        HT_SWEEP_KEEPING(0) HT_SWEEP_KEEPING(1) HT_SWEEP_KEEPING(2) HT_SWEEP_KEEPING(3)
        HT_SWEEP_KEEPING(4) HT_SWEEP_KEEPING(5) HT_SWEEP_KEEPING(6) HT_SWEEP_KEEPING(7)
        HT_SWEEP_KEEPING(8) HT_SWEEP_KEEPING(9) HT_SWEEP_KEEPING(10) HT_SWEEP_KEEPING(11)
        HT_SWEEP_KEEPING(12) HT_SWEEP_KEEPING(13) HT_SWEEP_KEEPING(14) HT_SWEEP_KEEPING(15)
#undef HT_SWEEP_KEEPING
    }
    for (int q = 0; q < Q; q++)
        if (kept >> q & 1 && ht_vany_nan(acc[r + q]))
            sweep_rows(Wr + q * n, bufr ? bufr + q * n : NULL, dy + r + q, x, n, sgd, sgd_variant,
                       x_next, acc + r + q, 1, 0);
}

/* One group of HT_VL rows (their products summed by one tree), `rows` of them from row i0:
 * blocks of FUSED_ROWS, then single rows; last to first when `backwards`. */
HT_INLINE void sweep_group(float *W, float *buf, const float *dy, const float *x, int64_t i0,
                           int rows, int64_t n, ht_sgd_params sgd, const int sgd_variant, float *y,
                           const float *x_next, int backwards, int zero_dy_unchanged) {
    ht_vf acc[HT_VL];
    for (int q = rows; q < HT_VL; q++) acc[q] = ht_vzero();
    float *Wg = W + i0 * n, *bufg = buf ? buf + i0 * n : NULL;
    const int blocks = rows / FUSED_ROWS, singles = rows % FUSED_ROWS;
    for (int u = 0; u < blocks + singles; u++) {
        int unit = backwards ? blocks + singles - 1 - u : u;
        int r = unit < blocks ? unit * FUSED_ROWS : blocks * FUSED_ROWS + (unit - blocks);
        if (unit < blocks)
            sweep_block(Wg, bufg, dy + i0, x, r, n, sgd, sgd_variant, x_next, acc, FUSED_ROWS,
                        zero_dy_unchanged);
        else
            sweep_block(Wg, bufg, dy + i0, x, r, n, sgd, sgd_variant, x_next, acc, 1,
                        zero_dy_unchanged);
    }
    ht_vf sums = ht_vsum_each(acc);
    for (int q = 0; q < rows; q++) y[i0 + q] = sums[q];
}

/* Whether the update leaves each row whose dy is zero as it is, bit for bit, so that it need
 * not be written: with plain SGD (no momentum nor weight decay), x finite, and lr finite and
 * not negative, each element's gradient fma(±0, x, +0) is +0 and fma(+0, -lr, w) = w + -0
 * is w, unless w is a NaN (sweep_block sees those rows and updates them). */
static int leaves_zero_dy_rows(const float *x, int64_t n, ht_sgd_params sgd,
                               const int sgd_variant) {
    if (sgd_variant != 0 || !isfinite(sgd.lr) || signbit(sgd.lr)) return 0;
    ht_vf zeros = ht_vzero(); /* 0 * x is NaN where x is infinite or NaN */
    int64_t j = 0;
    for (; j + HT_VL <= n; j += HT_VL) zeros += ht_vload(x + j) * ht_vzero();
    if (j < n) zeros += ht_vload_first(x + j, n - j) * ht_vzero();
    return !ht_vany_nan(zeros);
}

HT_INLINE void rank1_sgd_then_dot(float *W, float *buf, const float *dy, const float *x,
                                  int64_t m, int64_t n, ht_sgd_params sgd, const int sgd_variant,
                                  float *y, const float *x_next, int backwards) {
    const int zero_dy_unchanged = leaves_zero_dy_rows(x, n, sgd, sgd_variant);
    const int64_t groups = (m + HT_VL - 1) / HT_VL;
    for (int64_t g = 0; g < groups; g++) {
        int64_t i0 = (backwards ? groups - 1 - g : g) * HT_VL;
        sweep_group(W, buf, dy, x, i0, (int)min64(HT_VL, m - i0), n, sgd, sgd_variant, y, x_next,
                    backwards, zero_dy_unchanged);
    }
}

/* Successive sweeps go in opposite directions: the rows a sweep ends with are still in L1
 * when the next one (the next training step) begins with them. */
static atomic_int sweep_backwards;

void ht_gemm_rank1_sgd_then_nt(float *W, float *buf, const float *dy, const float *x, int64_t m,
                               int64_t n, ht_sgd_params sgd, float *y, const float *x_next) {
    int backwards = atomic_fetch_xor_explicit(&sweep_backwards, 1, memory_order_relaxed);
    switch (ht_sgd_variant(sgd)) {
#define HT_RANK1_DOT(V)                                                                       \
    rank1_sgd_then_dot(W, buf, dy, x, m, n, sgd, (V), y, x_next, backwards);                  \
    break
        HT_SGD_VARIANTS(HT_RANK1_DOT)
#undef HT_RANK1_DOT
    }
}
