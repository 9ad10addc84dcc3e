/* ht_machine.h: how the runtime uses the machine: the vector instructions it was compiled
 * for and the threads its matrix products may use (ht_machine.c). */
#ifndef HT_MACHINE_H
#define HT_MACHINE_H

#include "ht_core.h"

/* The widest vector instructions the kernels were compiled for: "avx512", "avx2", "avx",
 * "neon", "sse2" or "generic" (no vector unit known to the runtime). */
HT_EXPORT const char *ht_vector_isa(void);

/* Most threads (the caller's included) a matrix product of a batch of at least 16 rows may
 * use; clamped to [1, HT_MAX_THREADS]. Results are the same, bit for bit, for every count.
 * Each loaded model has its own copy of the runtime, so each has its own setting: hytorch
 * sets it before every call. */
#define HT_MAX_THREADS 64
HT_EXPORT void ht_set_num_threads(int n);
HT_EXPORT int ht_get_num_threads(void);

/* Returns when no work that a job left to a worker for later (ht_parallel.h's ht_defer) runs
 * or will run: what has not started is dropped. Before anything its work reads or writes
 * changes or goes: at the end of a compiled call, and when a loader's samples change. */
HT_EXPORT void ht_settle(void);

#endif
