/* ht_scalar.h: scalar arithmetic with Python's semantics (floor division, modulo sign). */
#ifndef HT_SCALAR_H
#define HT_SCALAR_H

#include <math.h>
#include <stdint.h>

/* a // b for ints, rounding toward negative infinity like Python (b != 0). INT64_MIN // -1
 * wraps to INT64_MIN like every other 64-bit overflow (the CPU's division would trap). */
static inline int64_t ht_floordiv_i64(int64_t a, int64_t b) {
    if (b == -1) return (int64_t)(0 - (uint64_t)a);
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* a % b for ints, with the sign of b like Python (b != 0). */
static inline int64_t ht_mod_i64(int64_t a, int64_t b) {
    if (b == -1) return 0;
    int64_t r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

/* a % b for floats, with the sign of b like Python (b != 0). */
static inline double ht_mod_f64(double a, double b) {
    double r = fmod(a, b);
    if (r != 0.0) {
        if ((r < 0.0) != (b < 0.0)) r += b;
    } else {
        r = copysign(0.0, b);
    }
    return r;
}

/* a // b for floats like Python: floor of the exact quotient. */
static inline double ht_floordiv_f64(double a, double b) {
    double m = fmod(a, b), d = (a - m) / b;
    if (m != 0.0 && ((b < 0.0) != (m < 0.0))) d -= 1.0;
    if (d != 0.0) {
        double f = floor(d);
        if (d - f > 0.5) f += 1.0;
        return f;
    }
    return copysign(0.0, a / b);
}

#endif
