/* ht_print.h: printing for the IR's print and printf, byte for byte as Python prints. */
#ifndef HT_PRINT_H
#define HT_PRINT_H

#include <stddef.h>
#include <stdint.h>

/* A Python format spec with its defaults resolved, made at compile time by backend/printf.hy:
 * `{:*^+12.3e}` is {.fill = '*', .align = '^', .sign = '+', .width = 12, .precision = 3,
 * .type = 'e'}. `type` is 'd' (an int), 'f' 'F' 'e' 'E' 'g' 'G' '%' (a float), or 'r' (a
 * float's empty spec: its repr). */
typedef struct ht_spec {
    uint32_t fill;     /* a Unicode code point */
    char align;        /* '<' '>' '=' (padding after the sign) '^' */
    char sign;         /* '-' '+' ' ' */
    char alt, z;       /* Python's '#' and 'z' options */
    int64_t width;
    int64_t precision; /* any size: digits past the double's exact expansion print as zeros */
    char type;
} ht_spec;

/* Python's repr of a double into buf (at least 32 bytes): 0.1, 1e-05, 100.0, inf, nan. */
void ht_format_repr(char *buf, double x);

void ht_print_text(const char *text, size_t len); /* the bytes as they are, NULs included */
void ht_print_int(int64_t v, ht_spec spec);       /* format(v, spec) for an int */
void ht_print_float(double v, ht_spec spec);      /* format(v, spec) for a float */
void ht_print_bool(int v);                        /* True / False */
void ht_print_end(void);                          /* newline and flush, like Python's print */

#endif
