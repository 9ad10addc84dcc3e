/* ht_core.c: see ht_core.h. */
#if defined(__APPLE__)
#define _DARWIN_C_SOURCE /* pthread_get_stackaddr_np, pthread_main_np, beside _POSIX_C_SOURCE */
#else
#define _GNU_SOURCE /* pthread_getattr_np */
#endif
#include "ht_core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define HT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HT_ASAN 1
#endif
#endif

#ifdef HT_ASAN
#include <sanitizer/asan_interface.h>
#define HT_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define HT_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
/* Bytes after each arena block that no access may touch. */
enum { HT_RED_ZONE = 64 };
#else
#define HT_POISON(p, n) ((void)(p), (void)(n))
#define HT_UNPOISON(p, n) ((void)(p), (void)(n))
enum { HT_RED_ZONE = 0 };
#endif

static char ht_error_buf[1024];

void ht_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ht_error_buf, sizeof ht_error_buf, fmt, ap);
    va_end(ap);
}

const char *ht_last_error(void) { return ht_error_buf; }

int ht_zero_division(const char *where) {
    ht_set_error("division by zero in %s", where);
    return HT_ZERO_DIVISION;
}

int ht_raised(int64_t site) {
    ht_set_error("raise %lld", (long long)site);
    return HT_RAISED;
}

int ht_unbound(const char *what) {
    ht_set_error("%s has no data bound; call the compiled program from Python", what);
    return HT_ERROR;
}

int ht_too_deep(const char *function) {
    ht_set_error("staged function %s recursed more than %d calls deep", function, HT_MAX_CALL_DEPTH);
    return HT_ERROR;
}

int ht_stack_exhausted(const char *function) {
    ht_set_error("staged function %s recursed so deep that it filled the C stack", function);
    return HT_ERROR;
}

/* Bytes of stack assumed below the first call when the thread's stack cannot be found. */
#define HT_FALLBACK_STACK (1024 * 1024)

static const char *stack_floor_of_this_thread(void) {
    const char *here = __builtin_frame_address(0);
    size_t below = HT_FALLBACK_STACK; /* bytes of stack below this frame */
#if defined(__linux__)
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lowest;
        size_t size;
        if (pthread_attr_getstack(&attr, &lowest, &size) == 0 && here > (const char *)lowest)
            below = (size_t)(here - (const char *)lowest);
        pthread_attr_destroy(&attr);
    }
#elif defined(__APPLE__)
    const char *top = pthread_get_stackaddr_np(pthread_self()); /* stacks grow down from it */
    const size_t size = pthread_get_stacksize_np(pthread_self());
    if (here < top && (size_t)(top - here) < size) below = size - (size_t)(top - here);
#endif
    /* (a quarter of a small stack: a thread of 128 KiB still runs a few calls deep) */
    const size_t margin = below / 4 < HT_STACK_MARGIN ? below / 4 : HT_STACK_MARGIN;
    return here - (below - margin);
}

/* Found once per thread (on Linux, the main thread's bounds come from /proc/self/maps). */
const char *ht_stack_floor(void) {
    static _Thread_local const char *floor;
    if (!floor) floor = stack_floor_of_this_thread();
    return floor;
}

int ht_interrupt_status(void) {
    ht_set_error("interrupted");
    return HT_INTERRUPTED;
}

volatile sig_atomic_t ht_interrupted = 0;
static struct sigaction ht_previous_sigint;
static sigset_t ht_previous_mask;

static void ht_on_sigint(int sig) {
    (void)sig;
    ht_interrupted = 1;
}

/* Whether the calling thread is the process's main thread, the one Python delivers Ctrl-C to.
 * A call from another thread leaves SIGINT to Python (which raises KeyboardInterrupt in the
 * main thread) and runs to its end. */
static int find_main_thread(void) {
#if defined(__linux__)
    return (pid_t)syscall(SYS_gettid) == getpid();
#elif defined(__APPLE__)
    return pthread_main_np() != 0;
#else
    return 1;
#endif
}

/* Found once per thread (two system calls cost ~0.3 us, a tenth of a small call). */
static int on_main_thread(void) {
    static _Thread_local int known, main_thread;
    if (!known) main_thread = find_main_thread(), known = 1;
    return main_thread;
}

/* Python may block SIGINT around a call (so a Ctrl-C between Python and C waits until the
 * trained values are written back); it is unblocked only while compiled code runs. */
void ht_interrupt_begin(void) {
    if (!on_main_thread()) return;
    struct sigaction sa;
    sigset_t sigint;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ht_on_sigint;
    sigemptyset(&sa.sa_mask);
    ht_interrupted = 0;
    sigaction(SIGINT, &sa, &ht_previous_sigint);
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &sigint, &ht_previous_mask);
}

int ht_interrupt_end(int status) {
    if (!on_main_thread()) return status;
    pthread_sigmask(SIG_SETMASK, &ht_previous_mask, NULL);
    sigaction(SIGINT, &ht_previous_sigint, NULL);
    const int interrupted = ht_interrupted;
    ht_interrupted = 0; /* (not left for a call from another thread to find) */
    /* A Ctrl-C that came too late to stop a loop still reaches Python. */
    return (status == HT_OK && interrupted) ? ht_interrupt_status() : status;
}

static size_t round_up_64(size_t bytes) { return (bytes + 63) / 64 * 64; }

void *ht_alloc(size_t bytes) {
    void *p = NULL;
    size_t rounded = bytes ? round_up_64(bytes) : 64;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    memset(p, 0, rounded);
    HT_POISON((char *)p + bytes, rounded - bytes);
    return p;
}

void ht_free(void *p) { free(p); }

void *ht_reserve(void *p, size_t *have, size_t need) {
    if (need <= *have) return p;
    void *bigger = ht_alloc(need);
    if (!bigger) {
        ht_set_error("out of memory for %zu bytes", need);
        return NULL;
    }
    ht_free(p);
    *have = need;
    return bigger;
}

int ht_arena_init(ht_arena *a, size_t bytes) {
    /* Every block counts at least 64 of `bytes`, so a 64-byte red zone per block fits in as
     * much again. */
    size_t cap = HT_RED_ZONE ? 2 * bytes : bytes;
    a->top = 0;
    a->cap = cap;
    a->base = ht_alloc(cap);
    if (!a->base) {
        ht_set_error("out of memory: cannot allocate a %zu-byte arena", cap);
        return HT_ERROR;
    }
    HT_POISON(a->base, cap);
    return HT_OK;
}

void *ht_arena_alloc(ht_arena *a, size_t bytes) {
    size_t start = round_up_64(a->top);
    if (start > a->cap || a->cap - start < bytes + HT_RED_ZONE) return NULL;
    a->top = start + bytes + HT_RED_ZONE;
    /* Everything above the new block is free, including blocks given out before `top` was
     * restored below them. */
    HT_POISON(a->base + start, a->cap - start);
    HT_UNPOISON(a->base + start, bytes);
    return a->base + start;
}

void ht_arena_free(ht_arena *a) {
    if (a->base) HT_UNPOISON(a->base, a->cap);
    ht_free(a->base);
    a->base = NULL;
    a->cap = a->top = 0;
}

void ht_rng_shuffle(uint64_t *state, int64_t *order, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(ht_rng_next(state) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

void ht_rng_fill_uniform(uint64_t *state, float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * ht_rng_uniform(state);
}
