/* pool_selftest.c: the runtime's thread pool (ht_parallel, ht_machine.c), in C alone.
 *
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -fwrapv -pthread -I c_runtime \
 *      tests/pool_selftest.c c_runtime/[a-z]*.c -lm -o pool_selftest && ./pool_selftest
 *
 * Checks: every task of every job runs exactly once, with its index and the job's task count
 * and argument, for task counts from 0 to past 64 on 1 to 5 threads, in jobs that
 * follow each other at once (workers still busy with the last one), with pauses (workers
 * asleep) and from inside a task (run in turn); that task t runs on thread t when every
 * thread is free (the tasks of a job wait for each other to start, so no thread can take
 * another's task once it has its own), and more tasks than threads in blocks, in order; and
 * that a thread done with its block takes another's unclaimed tasks from the last one down,
 * and that a job for fewer threads than there are keeps to them; that work a task defers
 * (ht_defer) runs on its worker after the job without the caller waiting for it, once, and
 * that ht_settle waits for it when it has started and drops it when it has not; and that a
 * pipelined loop's smaller last batch (ht_data.h's ht_batches_next) waits for a worker's fill
 * still running, whose copy it would overlap; and that the fused first-layer step
 * (ht_linear_bwd_weight_sgd_fwd) moves rows of W from a thread that is late to the others
 * from step to step, with the results of one thread, and not when the pool runs it on one.
 * Prints "pool selftest ok", or what failed; exits 1. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ht_data.h"
#include "ht_gemm.h"
#include "ht_kernels.h"
#include "ht_parallel.h"
#include "selftest.h"

#define TASK_COUNTS (HT_MOST_TASKS + 3)

typedef struct {
    atomic_int runs[TASK_COUNTS];
    int tasks, bad_count;
    int nested; /* tasks start a job of their own */
} count_job;

static void count_task(void *arg, int t, int tasks) {
    count_job *J = arg;
    if (tasks != J->tasks || t < 0 || t >= tasks) {
        J->bad_count = 1;
        return;
    }
    atomic_fetch_add(&J->runs[t], 1);
    if (J->nested) {
        count_job inner;
        memset(&inner, 0, sizeof inner);
        inner.tasks = 3;
        ht_parallel(3, count_task, &inner);
        for (int u = 0; u < 3; u++)
            if (atomic_load(&inner.runs[u]) != 1) J->bad_count = 1;
    }
}

static void pause_microseconds(long us) {
    struct timespec t = {us / 1000000, us % 1000000 * 1000};
    nanosleep(&t, NULL);
}

static void check_every_task_runs_once(void) {
    for (int threads = 1; threads <= 5; threads++) {
        ht_set_num_threads(threads);
        for (int job = 0; job < 3000; job++) {
            count_job J;
            memset(&J, 0, sizeof J);
            J.tasks = job % (TASK_COUNTS + 1);
            J.nested = job % 7 == 3;
            ht_parallel(J.tasks, count_task, &J);
            CHECK(!J.bad_count, "%d threads, job %d: a task saw a wrong index or count", threads,
                  job);
            for (int t = 0; t < J.tasks; t++)
                CHECK(atomic_load(&J.runs[t]) == 1, "%d threads, %d tasks: task %d ran %d times",
                      threads, J.tasks, t, atomic_load(&J.runs[t]));
            if (job % 500 == 499) pause_microseconds(2000); /* long enough for workers to sleep */
        }
    }
}

/* ---- task t on thread t ---- */

#define WAIT_SECONDS 20

typedef struct {
    atomic_int started;
    pthread_t ran_on[HT_MAX_THREADS];
    int timed_out;
} placement_job;

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Holds its thread until every task of the job has started (or WAIT_SECONDS pass). */
static void placement_task(void *arg, int t, int tasks) {
    placement_job *J = arg;
    J->ran_on[t] = pthread_self();
    atomic_fetch_add(&J->started, 1);
    double give_up = seconds() + WAIT_SECONDS;
    while (atomic_load(&J->started) < tasks)
        if (seconds() > give_up) {
            J->timed_out = 1;
            return;
        }
}

static void check_task_t_runs_on_thread_t(int threads) {
    ht_set_num_threads(threads);
    placement_job first;
    memset(&first, 0, sizeof first);
    ht_parallel(threads, placement_task, &first); /* starts the workers */
    for (int job = 0; job < 50; job++) {
        placement_job J;
        memset(&J, 0, sizeof J);
        ht_parallel(threads, placement_task, &J);
        CHECK(!J.timed_out, "%d threads: the tasks never all started", threads);
        CHECK(pthread_equal(J.ran_on[0], pthread_self()), "%d threads: task 0 not on the caller",
              threads);
        for (int t = 1; t < threads; t++) {
            CHECK(!pthread_equal(J.ran_on[t], pthread_self()), "task %d on the caller", t);
            CHECK(pthread_equal(J.ran_on[t], first.ran_on[t]),
                  "%d threads, job %d: task %d moved to another thread", threads, job, t);
        }
    }
}

/* ---- blocks of tasks, and taking another thread's ---- */

typedef struct {
    atomic_int order; /* tasks started so far */
    int started_as[HT_MOST_TASKS];
    pthread_t ran_on[HT_MOST_TASKS];
    int hold_from; /* tasks from here on wait until tasks [steal_from, tasks) are done */
    int steal_from;
    atomic_int started[HT_MOST_TASKS], done[HT_MOST_TASKS];
    int timed_out;
} block_job;

static void block_task(void *arg, int t, int tasks) {
    block_job *J = arg;
    J->ran_on[t] = pthread_self();
    J->started_as[t] = atomic_fetch_add(&J->order, 1);
    atomic_store(&J->started[t], 1);
    double give_up = seconds() + WAIT_SECONDS;
    if (t == 0) /* the worker has its first task before the caller can run out of its own */
        while (!atomic_load(&J->started[J->hold_from]))
            if (seconds() > give_up) {
                J->timed_out = 1;
                return;
            }
    if (t == J->hold_from)
        for (int u = J->steal_from; u < tasks; u++)
            while (!atomic_load(&J->done[u]))
                if (seconds() > give_up) {
                    J->timed_out = 1;
                    return;
                }
    atomic_store(&J->done[t], 1);
}

/* Two threads, 8 tasks: blocks [0, 4) on the caller and [4, 8) on the worker. The caller's
 * first task waits until the worker has started its first (4), which waits until tasks 5-7
 * are done: only the caller can run them, after its own block, from the last one down. */
static void check_blocks_and_taking(void) {
    ht_set_num_threads(2);
    for (int job = 0; job < 50; job++) {
        block_job J;
        memset(&J, 0, sizeof J);
        J.hold_from = 4, J.steal_from = 5;
        ht_parallel(8, block_task, &J);
        CHECK(!J.timed_out, "job %d: tasks 5-7 never ran", job);
        for (int t = 0; t < 8; t++)
            CHECK(!!pthread_equal(J.ran_on[t], pthread_self()) == (t != 4),
                  "job %d: task %d not on the %s", job, t, t == 4 ? "worker" : "caller");
        int caller_order[8] = {0, 1, 2, 3, 7, 6, 5}, previous = -1;
        for (int k = 0; k < 7; k++) {
            CHECK(J.started_as[caller_order[k]] > previous,
                  "job %d: the caller ran task %d out of order", job, caller_order[k]);
            previous = J.started_as[caller_order[k]];
        }
    }
}

/* ht_parallel_on(2, ...) at 4 threads: only the caller and worker 0 run its tasks. */
typedef struct {
    atomic_int outside; /* tasks run by a thread past the job's two */
} two_thread_job;

static void two_thread_task(void *arg, int t, int tasks) {
    (void)t, (void)tasks;
    two_thread_job *J = arg;
    if (ht_thread_index() >= 2) atomic_fetch_add(&J->outside, 1);
    pause_microseconds(5);
}

static void check_a_job_keeps_to_its_threads(void) {
    ht_set_num_threads(4);
    for (int job = 0; job < 200; job++) {
        two_thread_job J;
        atomic_init(&J.outside, 0);
        ht_parallel_on(2, 8, two_thread_task, &J);
        CHECK(atomic_load(&J.outside) == 0, "job %d: %d tasks on threads past the job's two", job,
              atomic_load(&J.outside));
    }
}

/* ---- deferred work ---- */

static void count_nothing(void *arg, int t, int tasks) { (void)arg, (void)t, (void)tasks; }

typedef struct {
    atomic_int release;                 /* set by the caller once its job has returned */
    atomic_int started[HT_MAX_THREADS]; /* deferred runs begun by thread h */
    atomic_int done[HT_MAX_THREADS];
    atomic_int wrong_thread, timed_out, caller_deferred;
    int wait; /* whether the deferred work waits for `release` */
} deferral_job;

static deferral_job *deferring; /* the job of the deferred work */

static void deferred_work(void *arg) {
    deferral_job *J = arg;
    const int h = ht_thread_index();
    if (J != deferring) atomic_store(&J->wrong_thread, 1);
    atomic_fetch_add(&J->started[h], 1);
    double deadline = seconds() + WAIT_SECONDS;
    while (J->wait && !atomic_load(&J->release))
        if (seconds() > deadline) {
            atomic_store(&J->timed_out, 1);
            break;
        }
    atomic_fetch_add(&J->done[h], 1);
}

static void deferring_task(void *arg, int t, int tasks) {
    (void)t, (void)tasks;
    deferral_job *J = arg;
    if (!ht_defer(deferred_work, J) && ht_thread_index() != 0) atomic_store(&J->wrong_thread, 1);
    if (ht_thread_index() == 0 && ht_defer(deferred_work, J)) atomic_store(&J->caller_deferred, 1);
}

static void check_deferred_work(void) {
    ht_set_num_threads(3);
    static deferral_job J;
    for (int round = 0; round < 200; round++) {
        memset(&J, 0, sizeof J);
        deferring = &J;
        J.wait = round % 2 == 0;
        ht_parallel(3, deferring_task, &J);
        /* The job has returned while the deferred work that waits for it may still run. */
        atomic_store(&J.release, 1);
        ht_settle();
        int started[HT_MAX_THREADS];
        for (int h = 0; h < 3; h++) {
            started[h] = atomic_load(&J.started[h]);
            CHECK(started[h] == atomic_load(&J.done[h]),
                  "round %d: thread %d's deferred work still ran after ht_settle", round, h);
            CHECK(started[h] <= 1, "round %d: thread %d ran deferred work %d times", round, h,
                  started[h]);
        }
        CHECK(started[0] == 0 && !J.caller_deferred, "round %d: the caller deferred work", round);
        CHECK(!J.wrong_thread && !J.timed_out,
              "round %d: deferred work on the wrong thread, or the caller waited for it", round);
        /* What ht_settle dropped never runs: a worker that reaches it later finds nothing. */
        ht_parallel(3, count_nothing, NULL);
        for (int h = 0; h < 3; h++)
            CHECK(atomic_load(&J.started[h]) == started[h],
                  "round %d: thread %d ran deferred work after ht_settle", round, h);
    }
    /* Without ht_settle, each worker that took part runs its deferred work after the job. */
    memset(&J, 0, sizeof J);
    deferring = &J;
    int ran = 0;
    for (double deadline = seconds() + WAIT_SECONDS; !ran && seconds() < deadline;) {
        ht_parallel(3, deferring_task, &J);
        while (seconds() < deadline && atomic_load(&J.done[1]) + atomic_load(&J.done[2]) <
                                           atomic_load(&J.started[1]) + atomic_load(&J.started[2]))
            ;
        ran = atomic_load(&J.done[1]) + atomic_load(&J.done[2]) > 0;
    }
    CHECK(ran, "no worker ran its deferred work in %d s", WAIT_SECONDS);
    ht_settle();
}

/* ---- a smaller batch waits for the fills ahead ---- */

static atomic_int order_seen, release_fill, fill_finished_at, late_fill_deferred;

/* A worker's fill ahead that its core runs late: until another thread releases it. */
static void late_fill(void *arg) {
    (void)arg;
    double deadline = seconds() + WAIT_SECONDS;
    while (!atomic_load(&release_fill) && seconds() < deadline)
        ;
    atomic_store(&fill_finished_at, atomic_fetch_add(&order_seen, 1) + 1);
}

static void defer_late_fill(void *arg, int t, int tasks) {
    (void)arg, (void)t, (void)tasks;
    if (ht_defer(late_fill, NULL)) atomic_store(&late_fill_deferred, 1);
}

static void *release_after_a_while(void *arg) {
    (void)arg;
    pause_microseconds(50000);
    atomic_store(&release_fill, 1);
    return NULL;
}

static void check_a_smaller_batch_waits_for_fills_ahead(void) {
    enum { PIXELS = 4, SAMPLES = 21, BATCH = 8 }; /* batches of 8, 8 and 5 */
    static float images[SAMPLES * PIXELS], xa[3 * BATCH * PIXELS], xb[3 * BATCH * PIXELS];
    static int64_t labels[SAMPLES], y[BATCH];
    ht_loader l = {.images_type = HT_FLOAT32, .labels_type = HT_INT64, .target_size = 1,
                   .images = images, .labels = labels, .count = SAMPLES, .rows = 1,
                   .cols = PIXELS, .batch_size = BATCH, .std = 1.0f};
    CHECK(ht_loader_init(&l) == HT_OK, "loader: %s", ht_last_error());
    ht_set_num_threads(2);
    ht_loader_begin_epoch(&l);
    ht_batches B;
    ht_batches_begin(&B, &l, xa, xb, 3);
    ht_batches_fill(&B, 0, y);
    for (double deadline = seconds() + WAIT_SECONDS;
         !atomic_load(&late_fill_deferred) && seconds() < deadline;)
        ht_parallel(2, defer_late_fill, NULL); /* until the worker takes part */
    CHECK(atomic_load(&late_fill_deferred), "no worker took part in %d s", WAIT_SECONDS);
    pthread_t releaser;
    pthread_create(&releaser, NULL, release_after_a_while, NULL);
    ht_batches_next(&B, 1, y);
    ht_batches_next(&B, 2, y); /* the last, smaller one */
    const int smaller_at = atomic_fetch_add(&order_seen, 1) + 1;
    pthread_join(releaser, NULL);
    ht_settle();
    CHECK(atomic_load(&fill_finished_at) < smaller_at,
          "the smaller last batch went on while a fill ahead was still running");
    ht_loader_release(&l);
}

/* ---- the fused step balances its threads' shares of W ---- */

static atomic_int late_thread, lateness; /* the thread whose copy is filled slowly, in us */
static atomic_int worker_readied;          /* steps in which the worker called ready */

static void ready_late(void *arg, int thread) {
    (void)arg;
    if (thread != 0) atomic_fetch_add(&worker_readied, 1);
    if (thread == atomic_load(&late_thread)) pause_microseconds(atomic_load(&lateness));
}

/* Steps of a 32-row layer on two threads, one of which is late at every step by 2 ms or four
 * times what a whole step takes on one, whichever is longer: the caller's share of W's rows
 * (ht_gemm_sgd_then_nt_caller_rows) ends well below its even 16 when the caller is late and
 * well above it when the worker is, and W and the forward's output stay those of one
 * thread. Only steps that the worker took part in count (up to WAIT_SECONDS): one that the
 * system ran the caller alone through shows nothing about balance, and moves none (on a
 * machine busy with other work the worker missed every step of a phase, and the caller,
 * having given up all its rows in the phase before, kept none). */
static void check_the_fused_step_balances_its_threads(void) {
    enum { OUT = 32, IN = 256, BATCH = 32, STEPS = 24 };
    static float W1[OUT * IN], W2[OUT * IN], x[2 * BATCH * IN], dy[BATCH * OUT];
    static float y1[BATCH * OUT], y2[BATCH * OUT];
    uint64_t rng = 5;
    for (int i = 0; i < OUT * IN; i++) W1[i] = W2[i] = ht_rng_uniform(&rng) - 0.5f;
    for (int i = 0; i < BATCH * IN; i++) x[i] = x[BATCH * IN + i] = ht_rng_uniform(&rng);
    for (int i = 0; i < BATCH * OUT; i++) dy[i] = ht_rng_uniform(&rng) - 0.5f;
    ht_set_num_threads(1);
    double began = seconds();
    ht_linear_bwd_weight_sgd_fwd(W1, NULL, dy, x, BATCH, IN, OUT, 0.0f, 0, 0, 0, 0, 0, y1, x,
                                 BATCH, 1, NULL, NULL); /* lr 0: W stays */
    const int step_us = (int)((seconds() - began) * 1e6);
    atomic_store(&lateness, step_us > 500 ? 4 * step_us : 2000);
    for (int late = 0; late < 2; late++) {
        atomic_store(&late_thread, late);
        const double give_up = seconds() + WAIT_SECONDS;
        int shared = 0; /* steps the worker took part in */
        while (shared < STEPS && seconds() < give_up) {
            const int readied = atomic_load(&worker_readied);
            ht_set_num_threads(2);
            ht_linear_bwd_weight_sgd_fwd(W2, NULL, dy, x, BATCH, IN, OUT, 0.01f, 0, 0, 0, 0, 0,
                                         y2, x, BATCH, 2, ready_late, NULL);
            ht_set_num_threads(1);
            ht_linear_bwd_weight_sgd_fwd(W1, NULL, dy, x, BATCH, IN, OUT, 0.01f, 0, 0, 0, 0, 0,
                                         y1, x, BATCH, 1, NULL, NULL);
            shared += atomic_load(&worker_readied) != readied;
        }
        CHECK(shared == STEPS, "the worker took part in only %d steps in %d s", shared,
              WAIT_SECONDS);
        const int64_t caller_rows = ht_gemm_sgd_then_nt_caller_rows(W2, OUT, 2);
        CHECK(late ? caller_rows > 20 : caller_rows < 12,
              "the caller takes %lld of %d rows after %d shared steps with thread %d late",
              (long long)caller_rows, OUT, STEPS, late);
        CHECK(memcmp(W1, W2, sizeof W1) == 0 && memcmp(y1, y2, sizeof y1) == 0,
              "two threads' W or y differ from one's, thread %d late", late);
    }
}

/* Fused steps called from inside the tasks of a job run on their thread alone (the pool is
 * busy): that shows nothing about balance, and each W's share stays even. */
enum { NESTED_OUT = 32, NESTED_IN = 256, NESTED_BATCH = 32 };
static float nested_W[2][NESTED_OUT * NESTED_IN], nested_y[2][NESTED_BATCH * NESTED_OUT];
static float nested_x[2 * NESTED_BATCH * NESTED_IN], nested_dy[NESTED_BATCH * NESTED_OUT];

static void nested_fused_steps(void *arg, int t, int tasks) {
    (void)arg, (void)tasks;
    for (int step = 0; step < 12; step++)
        ht_linear_bwd_weight_sgd_fwd(nested_W[t], NULL, nested_dy, nested_x, NESTED_BATCH,
                                     NESTED_IN, NESTED_OUT, 0.01f, 0, 0, 0, 0, 0, nested_y[t],
                                     nested_x, NESTED_BATCH, 2, NULL, NULL);
}

static void check_fused_steps_on_one_thread_keep_their_balance(void) {
    uint64_t rng = 9;
    for (int i = 0; i < 2 * NESTED_BATCH * NESTED_IN; i++) nested_x[i] = ht_rng_uniform(&rng);
    for (int i = 0; i < NESTED_BATCH * NESTED_OUT; i++) nested_dy[i] = ht_rng_uniform(&rng);
    ht_set_num_threads(2);
    ht_parallel(2, nested_fused_steps, NULL);
    for (int t = 0; t < 2; t++) {
        const int64_t caller_rows = ht_gemm_sgd_then_nt_caller_rows(nested_W[t], NESTED_OUT, 2);
        CHECK(caller_rows == NESTED_OUT / 2,
              "steps run on one thread (task %d) moved the caller's share to %lld rows", t,
              (long long)caller_rows);
    }
}

int main(void) {
    check_every_task_runs_once();
    check_task_t_runs_on_thread_t(2);
    check_task_t_runs_on_thread_t(4);
    check_blocks_and_taking();
    check_a_job_keeps_to_its_threads();
    check_deferred_work();
    check_a_smaller_batch_waits_for_fills_ahead();
    check_the_fused_step_balances_its_threads();
    check_fused_steps_on_one_thread_keep_their_balance();
    if (failures) {
        printf("%d failures\n", failures);
        return 1;
    }
    printf("pool selftest ok\n");
    return 0;
}
