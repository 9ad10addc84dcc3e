/* ht_scalar.h: scalar arithmetic with Python's semantics: true division rounded once, floor
 * division, the modulo's sign, exact int-float comparison. Int overflow wraps (the build uses
 * -fwrapv), INT64_MIN // -1 included, where Python's 2**63 does not fit in 64 bits. */
#ifndef HT_SCALAR_H
#define HT_SCALAR_H

#include <math.h>
#include <stdint.h>

__extension__ typedef unsigned __int128 ht_u128;

/* +0.0 as generated code writes it. gcc 12's front end folds the literal in `0.0 - (double)i`
 * (and `-(double)i + 0.0`) to `-(double)i`, which is -0.0 for i == 0 where Python gives 0.0;
 * a call hides the constant from that fold and is inlined later, by passes that fold correctly. */
static inline double ht_positive_zero(void) { return 0.0; }

/* a / b for ints, correctly rounded like Python (b != 0). When both are exact as doubles one
 * IEEE division rounds once. Otherwise a 128-bit division gives a quotient of 56 or 57 bits;
 * a sticky last bit for a non-zero remainder makes its conversion to double round as the
 * exact quotient would, and ldexp scales it back exactly. */
static inline double ht_truediv_i64(int64_t a, int64_t b) {
    const uint64_t exact = (uint64_t)1 << 53;
    uint64_t ua = a < 0 ? 0 - (uint64_t)a : (uint64_t)a;
    uint64_t ub = b < 0 ? 0 - (uint64_t)b : (uint64_t)b;
    if (ua <= exact && ub <= exact) return (double)a / (double)b;
    double sign = (a < 0) != (b < 0) ? -1.0 : 1.0;
    if (ua == 0) return sign * 0.0;
    int shift = 56 + __builtin_clzll(ua) - __builtin_clzll(ub); /* quotient >= 2**55 */
    if (shift < 0) shift = 0;
    ht_u128 n = (ht_u128)ua << shift;
    uint64_t q = (uint64_t)(n / ub);
    q |= (n % ub) != 0;
    return sign * ldexp((double)q, -shift);
}

/* Python's exact comparison of an int with a float, as a number to compare with 0: -1, 0 or
 * 1 as a <, ==, > b, and nan when b is nan (so that only != holds). C's `a < b` would round
 * a to a double first. */
static inline double ht_cmp_i64_f64(int64_t a, double b) {
    if (isnan(b)) return b;
    if (b >= 0x1p63) return -1.0;
    if (b < -0x1p63) return 1.0;
    double whole = trunc(b); /* in int64's range, so exact as an int64 */
    int64_t w = (int64_t)whole;
    if (a != w) return a < w ? -1.0 : 1.0;
    return whole < b ? -1.0 : whole > b ? 1.0 : 0.0;
}

/* a << n for ints like Python's, wrapped to 64 bits like all int arithmetic (so 0 for n >= 64);
 * n >= 0 (a negative count is Python's ValueError, checked by the caller). */
static inline int64_t ht_shl_i64(int64_t a, int64_t n) {
    return n >= 64 ? 0 : (int64_t)((uint64_t)a << n);
}

/* a >> n for ints like Python's: rounds toward negative infinity, so for n >= 64 it is 0 or
 * -1; n >= 0. Shifts only non-negative values, whose shift C defines. */
static inline int64_t ht_shr_i64(int64_t a, int64_t n) {
    if (n > 63) n = 63;
    return a < 0 ? ~(~a >> n) : a >> n;
}

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

/* Whether Python's float x ** y raises ZeroDivisionError: 0.0 (or -0.0) to a finite negative
 * power (to -inf it is inf). */
static inline int ht_pow_divides_by_zero(double x, double y) {
    return x == 0.0 && isfinite(y) && y < 0.0;
}

/* Whether Python's float x ** y is a complex number: a finite negative x to a finite power that
 * is not an integer. */
static inline int ht_pow_is_complex(double x, double y) {
    return isfinite(x) && x < 0.0 && isfinite(y) && y != floor(y);
}

/* Whether Python's float x ** y raises OverflowError: a finite x whose power overflows (CPython
 * checks the ERANGE of C's pow; underflow to 0 is not an error). */
static inline int ht_pow_overflows(double x, double y) {
    return isfinite(x) && isfinite(y) && isinf(pow(x, y));
}

#endif
