/* hytorch_rt.h: the whole ABI of HyTorch's C runtime; generated code includes only this. */
#ifndef HYTORCH_RT_H
#define HYTORCH_RT_H

#include <string.h>

#include "ht_core.h"
#include "ht_scalar.h"
#include "ht_print.h"
#include "ht_kernels.h"
#include "ht_machine.h"
#include "ht_int_ops.h"
#include "ht_data.h"
#include "ht_tape.h"

#endif
