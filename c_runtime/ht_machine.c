/* ht_machine.c: see ht_machine.h and ht_parallel.h.
 *
 * The tasks of a job are dealt to its threads in blocks, in order (the caller is thread 0,
 * worker i thread i + 1): a product split by rows of W gives each core the same rows at every
 * step, so that they stay in its cache (with tasks handed out in order of arrival, the two
 * halves of a layer swapped cores on half the steps). A thread that has run its block takes
 * the tasks not yet claimed, from the end of the others' blocks: a worker that the system has
 * not scheduled yet holds nothing up (on a shared machine a thread can wait milliseconds for
 * a core), and a core slowed down by the machine's other tenants hands part of its block to
 * a faster one. Workers are started on first use with every signal blocked, spin for a while
 * after a job (a training step's products follow each other within microseconds; waking a
 * sleeping thread takes tens), yielding the core now and then, and then sleep. They are
 * stopped and joined when the library is unloaded, and forgotten in a forked child.
 *
 * A task may leave its worker work for after its part of the job (ht_defer), which the caller
 * does not wait for: the worker claims it from its deferral word when its part is done, and
 * ht_settle cancels what is unclaimed and waits for what is claimed. */
#include "ht_machine.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#include "ht_parallel.h"
#include "ht_vec.h"

#ifdef __linux__
#include <sys/prctl.h>
#endif
#define WORKER_NAME "hytorch-worker"

const char *ht_vector_isa(void) { return HT_VEC_ISA; }

static atomic_int num_threads = 1;

void ht_set_num_threads(int n) {
    atomic_store(&num_threads, n < 1 ? 1 : n > HT_MAX_THREADS ? HT_MAX_THREADS : n);
}

int ht_get_num_threads(void) { return atomic_load(&num_threads); }

/* How long an idle worker spins before it sleeps. */
#define SPIN_NANOSECONDS 200000

/* A task's claim word: the number of the job it belongs to (bits 1-32) and whether it is
 * claimed (bit 0). A claim is a compare-and-swap from "job j, unclaimed", so a thread that
 * looks late, when job j is over and the next one started, cannot claim a task of either. */
#define SLOT(job, claimed) ((uint64_t)(job) << 1 | (claimed))

/* The job word: its number (bits 32-63), its thread count (16-31) and task count (0-15). */
#define JOB_WORD(job, threads, tasks) ((uint64_t)(job) << 32 | (uint64_t)(threads) << 16 | (tasks))
#define JOB(word) ((uint32_t)((word) >> 32))
#define THREADS(word) ((int)(((word) >> 16) & 0xFFFF))
#define TASKS(word) ((int)((word)&0xFFFF))

static _Thread_local int thread_index; /* 0 but in a worker */

/* A worker's deferral word: none, pending (ht_defer) or running; only the worker makes it
 * pending or running, and only ht_settle clears a pending one (dropped work is only work not
 * done: its caller's next job does it where needed). */
enum { NOTHING_DEFERRED, DEFERRED, RUNNING_DEFERRED };
typedef struct {
    _Alignas(64) atomic_int state;
    ht_deferred fn; /* the worker's own, read by it alone */
    void *arg;
} deferral;

int ht_thread_index(void) { return thread_index; }

static struct {
    pthread_mutex_t lock; /* guards the sleep/wake hand-over */
    pthread_cond_t wake;
    _Alignas(64) _Atomic uint64_t job; /* the current job's word, published last */
    _Alignas(64) _Atomic uint64_t slot[HT_MOST_TASKS]; /* task t's claim word */
    _Alignas(64) atomic_int finished;                   /* tasks of the job done */
    atomic_int sleepers, stop;
    atomic_flag busy; /* held by the caller that owns the job */
    ht_task task;
    void *arg;
    atomic_int started; /* workers; read by ht_settle outside a job */
    pthread_t threads[HT_MAX_THREADS - 1];
    deferral deferred[HT_MAX_THREADS - 1]; /* worker i's */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .busy = ATOMIC_FLAG_INIT};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* The caller's spin `spins` while it waits for a worker's work: it yields the core now and
 * then, as the worker may have been descheduled (and may need this core to run). */
static void wait_for_a_worker(unsigned spins) {
    if (spins % 1024 == 0)
        sched_yield();
    else
        cpu_relax();
}

int64_t ht_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Claims task t of job `job` if no thread has. It looks before it swaps: a compare-and-swap
 * that fails still takes the cache line from the threads claiming tasks beside it (the scan
 * after a thread's block passes every claimed task). */
static int claim(uint32_t job, int t) {
    uint64_t unclaimed = SLOT(job, 0);
    return atomic_load_explicit(&pool.slot[t], memory_order_relaxed) == unclaimed &&
           atomic_compare_exchange_strong(&pool.slot[t], &unclaimed, SLOT(job, 1));
}

/* Runs task t of job `job` if it is unclaimed (then the job cannot end, and its task,
 * argument and task count change, before this one returns). */
static void run_if_unclaimed(uint32_t job, int t, int tasks) {
    if (!claim(job, t)) return;
    pool.task(pool.arg, t, tasks);
    atomic_fetch_add_explicit(&pool.finished, 1, memory_order_release);
}

/* Thread `home`'s part of the job whose word is `word` (home < its thread count): its block
 * in order, then whatever is not yet claimed, from the last task down (the end of another
 * thread's block, away from the tasks that thread runs next). */
static void run_tasks_of(uint64_t word, int home) {
    const uint32_t job = JOB(word);
    const int threads = THREADS(word), tasks = TASKS(word);
    const ht_share block = ht_task_share(tasks, home, threads);
    for (int t = (int)block.from; t < block.to; t++) run_if_unclaimed(job, t, tasks);
    for (int t = tasks - 1; t >= 0; t--) run_if_unclaimed(job, t, tasks);
}

/* Whether there is a job after `seen` (or the workers should stop). Sequentially consistent,
 * with the owner's publication of a job and its look at `sleepers`: either the owner sees
 * this worker asleep and wakes it, or the worker sees the job. */
static int news_after(uint64_t seen) {
    return atomic_load(&pool.job) != seen || atomic_load(&pool.stop);
}

/* Spins, yielding the core now and then (on a busy machine the thread it would hold up may
 * be the caller's, on the same core), then sleeps; sleeps at once when `spin` is 0. */
static void wait_for_news(uint64_t seen, int spin) {
    int64_t deadline = ht_now_ns() + (spin ? SPIN_NANOSECONDS : 0);
    for (unsigned spins = 1; !news_after(seen); spins++) {
        if (spins % 64 != 0) {
            cpu_relax();
            continue;
        }
        if (ht_now_ns() < deadline) {
            sched_yield();
            continue;
        }
        pthread_mutex_lock(&pool.lock);
        atomic_fetch_add(&pool.sleepers, 1);
        while (!news_after(seen)) pthread_cond_wait(&pool.wake, &pool.lock);
        atomic_fetch_sub(&pool.sleepers, 1);
        pthread_mutex_unlock(&pool.lock);
        return;
    }
}

int ht_defer(ht_deferred fn, void *arg) {
    if (thread_index == 0) return 0;
    deferral *d = &pool.deferred[thread_index - 1];
    d->fn = fn;
    d->arg = arg;
    /* The caller sees it once the task is over (ht_parallel_on waits for that). */
    atomic_store_explicit(&d->state, DEFERRED, memory_order_relaxed);
    return 1;
}

static void run_deferred(deferral *d) {
    int pending = DEFERRED;
    if (!atomic_compare_exchange_strong(&d->state, &pending, RUNNING_DEFERRED)) return;
    d->fn(d->arg);
    atomic_store_explicit(&d->state, NOTHING_DEFERRED, memory_order_release);
}

void ht_settle(void) {
    const int workers = atomic_load_explicit(&pool.started, memory_order_relaxed);
    for (int i = 0; i < workers; i++) {
        deferral *d = &pool.deferred[i];
        int pending = DEFERRED;
        if (atomic_load_explicit(&d->state, memory_order_acquire) == NOTHING_DEFERRED ||
            atomic_compare_exchange_strong(&d->state, &pending, NOTHING_DEFERRED))
            continue;
        for (unsigned spins = 1;
             atomic_load_explicit(&d->state, memory_order_acquire) == RUNNING_DEFERRED; spins++)
            wait_for_a_worker(spins);
    }
}

/* Worker i (thread i + 1). */
static void *work(void *index) {
#ifdef __linux__
    prctl(PR_SET_NAME, WORKER_NAME); /* as top -H and /proc show it */
#endif
    const int home = (int)(intptr_t)index + 1;
    thread_index = home;
    uint64_t seen = atomic_load(&pool.job);
    for (;;) {
        /* A worker past the thread count (left from a larger one) waits asleep. */
        wait_for_news(seen, home < ht_get_num_threads());
        if (atomic_load(&pool.stop)) return NULL;
        seen = atomic_load(&pool.job);
        if (home < THREADS(seen)) run_tasks_of(seen, home);
        run_deferred(&pool.deferred[home - 1]);
    }
}

/* In a forked child the workers do not exist: start afresh (the parent's are untouched). */
static void forget_workers_in_child(void) {
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    atomic_store(&pool.sleepers, 0);
    atomic_flag_clear(&pool.busy);
    for (int i = 0; i < HT_MAX_THREADS - 1; i++) atomic_store(&pool.deferred[i].state, 0);
    pool.started = 0;
}

static void register_fork_handler(void) { pthread_atfork(NULL, NULL, forget_workers_in_child); }

/* Starts workers until `count` run (fewer if the system refuses). They block every signal:
 * Ctrl-C must reach the threads that expect it (Python's, and the caller's while compiled
 * code runs), not a worker. */
static void start_workers(int count) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handler);
    if (pool.started >= count) return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (pool.started < count &&
           pthread_create(&pool.threads[pool.started], NULL, work,
                          (void *)(intptr_t)pool.started) == 0)
        pool.started++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void ht_parallel_on(int threads, int tasks, ht_task task, void *arg) {
    if (threads > tasks) threads = tasks;
    if (threads > ht_get_num_threads()) threads = ht_get_num_threads();
    if (threads <= 1 || tasks > HT_MOST_TASKS || atomic_flag_test_and_set(&pool.busy)) {
        for (int t = 0; t < tasks; t++) task(arg, t, tasks);
        return;
    }
    start_workers(threads - 1);
    pool.task = task;
    pool.arg = arg;
    atomic_store(&pool.finished, 0);
    uint32_t job = JOB(atomic_load(&pool.job)) + 1;
    if (job == 0) job = 1; /* after 2^32 jobs: 0 is the word before any */
    for (int t = 0; t < tasks; t++) atomic_store(&pool.slot[t], SLOT(job, 0));
    const uint64_t word = JOB_WORD(job, threads, tasks);
    atomic_store(&pool.job, word);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    run_tasks_of(word, 0);
    for (unsigned spins = 1; atomic_load_explicit(&pool.finished, memory_order_acquire) < tasks;
         spins++)
        wait_for_a_worker(spins);
    atomic_flag_clear(&pool.busy);
}

void ht_parallel(int tasks, ht_task task, void *arg) { ht_parallel_on(tasks, tasks, task, arg); }

typedef struct {
    ht_range_fn fn;
    void *arg;
    int64_t n;
} range_job;

static void range_task(void *arg, int t, int tasks) {
    const range_job *R = arg;
    ht_share share = ht_task_share(R->n, t, tasks);
    R->fn(R->arg, share.from, share.to);
}

void ht_parallel_range(int64_t n, int64_t min_per_task, ht_range_fn fn, void *arg) {
    int64_t tasks = ht_get_num_threads(), worth = n / (min_per_task > 0 ? min_per_task : 1);
    if (tasks > worth) tasks = worth;
    if (tasks <= 1) {
        fn(arg, 0, n);
        return;
    }
    range_job R = {fn, arg, n};
    ht_parallel((int)tasks, range_task, &R);
}

/* Unloading the library (or exiting) stops the workers first: their code is about to go. */
__attribute__((destructor)) static void stop_workers(void) {
    if (pool.started == 0) return;
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.stop, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.started; i++) pthread_join(pool.threads[i], NULL);
    pool.started = 0;
}
