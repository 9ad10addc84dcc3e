/* ht_core.h: status codes, the last-error message, interrupts, the arena and the RNG.
 * Every generated model and every kernel file includes this (through hytorch_rt.h). */
#ifndef HT_CORE_H
#define HT_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>

#define HT_EXPORT __attribute__((visibility("default")))

/* Status codes returned by every exported entry point. */
enum { HT_OK = 0, HT_ERROR = 1, HT_INTERRUPTED = 2, HT_ZERO_DIVISION = 3, HT_RAISED = 4 };

/* The last error message of this module (one per loaded .so). */
void ht_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
HT_EXPORT const char *ht_last_error(void);
/* Set the message and return the status, for `return ht_zero_division("(/ x1 x2)");`. */
int ht_zero_division(const char *where);
/* A Python exception raised by generated code: which of the program's raises (its exception
 * and message are kept on Python's side), as the error "raise SITE". */
int ht_raised(int64_t site);
int ht_interrupt_status(void);
int ht_unbound(const char *what); /* "<what> has no data bound" */
/* Staged functions may recurse this deep; deeper is an error, not a stack overflow. */
#define HT_MAX_CALL_DEPTH 20000
int ht_too_deep(const char *function);
/* ...and their frames may reach down to this address of the calling thread's C stack (its
 * lowest, less HT_STACK_MARGIN or a quarter of the stack, the smaller, for the kernels they
 * call): a big function's frame holds all its lets at -O0, so fewer calls than
 * HT_MAX_CALL_DEPTH can fill the stack. */
#define HT_STACK_MARGIN (512 * 1024)
const char *ht_stack_floor(void);
int ht_stack_exhausted(const char *function);

/* Ctrl-C while compiled code runs: ht_interrupt_begin installs a SIGINT handler that only
 * raises ht_interrupted (and unblocks SIGINT); generated loops poll it once a step;
 * ht_interrupt_end(status) restores the previous handler (Python's) and mask, and turns
 * the status into HT_INTERRUPTED if a Ctrl-C came. Only on the main thread, where Python
 * takes Ctrl-C: a call from another thread leaves it to Python's handler. */
extern volatile sig_atomic_t ht_interrupted;
void ht_interrupt_begin(void);
int ht_interrupt_end(int status);

/* A bump allocator for temporaries: sized once, reset by restoring `top`. 64-byte aligned.
 * ht_arena_init's `bytes` is the sum of the blocks' sizes, each rounded up to a multiple of
 * 64. Built with AddressSanitizer, each block is followed by a poisoned 64-byte red zone (the
 * arena reserves twice `bytes` for them) and all free space is poisoned, so that an overflow
 * from one temporary into the next, or a use of a block above a restored `top`, is reported;
 * ht_arena_alloc returns NULL when the blocks do not fit. */
typedef struct {
    char *base;
    size_t cap, top;
} ht_arena;
int ht_arena_init(ht_arena *a, size_t bytes);
void *ht_arena_alloc(ht_arena *a, size_t bytes);
void ht_arena_free(ht_arena *a);

/* Zeroed, 64-byte aligned heap memory for parameters and state (NULL on failure). Under
 * AddressSanitizer the bytes that round the size up to 64 are poisoned. */
void *ht_alloc(size_t bytes);
void ht_free(void *p);
/* A block of at least `need` bytes in place of p (ht_alloc'd, *have bytes): p itself when it
 * is that large, else a new zeroed block (p freed, its bytes not kept; *have updated). NULL,
 * with a message, when memory runs out (p is then kept). */
void *ht_reserve(void *p, size_t *have, size_t need);

/* splitmix64: the one generator of HyTorch, mirrored bit for bit by hytorch/rng.py. */
static inline uint64_t ht_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform float in [0, 1) from the top 24 bits. */
static inline float ht_rng_uniform(uint64_t *state) {
    return (float)(ht_rng_next(state) >> 40) * (1.0f / 16777216.0f);
}
/* Fisher-Yates shuffle of order[0..n) (i from n-1 down to 1, j = next % (i+1)). */
void ht_rng_shuffle(uint64_t *state, int64_t *order, int64_t n);
/* Fill x[0..n) uniformly in [lo, hi). */
void ht_rng_fill_uniform(uint64_t *state, float *x, int64_t n, float lo, float hi);

#endif
