/* ht_parallel.h (private to c_runtime): running independent tasks on the runtime's threads
 * (ht_machine.c). */
#ifndef HT_PARALLEL_H
#define HT_PARALLEL_H

#include "ht_machine.h"

/* The most tasks a job is dealt in (a job of more runs in turn on the caller). */
#define HT_MOST_TASKS 64

/* Calls task(arg, t, tasks) once for each t in [0, tasks), on the calling thread and up to
 * ht_get_num_threads() - 1 worker threads, and returns when all have returned. The tasks are
 * dealt in order, in blocks of near-equal size (ht_task_share), to the first
 * min(tasks, ht_get_num_threads()) threads (the caller is thread 0): task t to thread t when
 * there are no more tasks than threads. Each thread runs its block in order, then takes the
 * tasks of the job still unclaimed from the last one down, so that a task that works on the
 * same part of the data at every call usually finds it in its core's cache, and a slow or
 * late thread holds nothing up. Tasks must not depend on each other or on which thread runs
 * them: any thread of the job may run any task, and when the workers are busy (another
 * caller, or a call from inside a task) or cannot be started, or there are more than
 * HT_MOST_TASKS tasks, the caller runs them all in turn. */
typedef void (*ht_task)(void *arg, int t, int tasks);
__attribute__((visibility("hidden"))) void ht_parallel(int tasks, ht_task task, void *arg);

/* ht_parallel on at most `threads` threads (the caller's included), for work worth fewer
 * threads than it has tasks. */
__attribute__((visibility("hidden"))) void ht_parallel_on(int threads, int tasks, ht_task task,
                                                          void *arg);

/* Work a task leaves its worker for after the worker's part of the job: the caller does not
 * wait for it (it may run while the caller goes on), and ht_settle (ht_machine.h) drops it
 * if it has not started. ht_defer(fn, arg) in a task on a worker sets its worker's, in place
 * of any not yet run, and returns 1; on the caller's thread it does nothing and returns 0. */
typedef void (*ht_deferred)(void *arg);
__attribute__((visibility("hidden"))) int ht_defer(ht_deferred fn, void *arg);

/* A monotonic clock in nanoseconds (for balancing work between threads, never for results). */
__attribute__((visibility("hidden"))) int64_t ht_now_ns(void);

/* The index of the calling thread: i + 1 in worker i, 0 in any other thread (a caller). */
__attribute__((visibility("hidden"))) int ht_thread_index(void);

/* Task t's share [from, to) of n items split over `tasks` tasks in order, in near-equal
 * shares (the first n % tasks one larger). */
typedef struct {
    int64_t from, to;
} ht_share;

static inline ht_share ht_task_share(int64_t n, int t, int tasks) {
    int64_t size = n / tasks, extra = n % tasks;
    int64_t from = t * size + (t < extra ? t : extra);
    return (ht_share){from, from + size + (t < extra)};
}

/* fn(arg, from, to) over [0, n) in near-equal parts in order, one part per task, on as many
 * threads as have at least `min_per_task` items each (else in one call): for elementwise
 * kernels, whose parts are independent. */
typedef void (*ht_range_fn)(void *arg, int64_t from, int64_t to);
__attribute__((visibility("hidden"))) void ht_parallel_range(int64_t n, int64_t min_per_task,
                                                             ht_range_fn fn, void *arg);

/* Elementwise kernels go to several threads from this many elements per thread (a memory
 * pass over them takes some microseconds, much more than handing out a task). */
#define HT_PARALLEL_MIN_ELEMENTS (1 << 15)

#endif
