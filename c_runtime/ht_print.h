/* ht_print.h: printing for the IR's print and printf, with Python's formatting of values. */
#ifndef HT_PRINT_H
#define HT_PRINT_H

#include <stdint.h>

/* Python's repr of a double into buf (at least 32 bytes): 0.1, 1e-05, 100.0, inf, nan. */
void ht_format_repr(char *buf, double x);

void ht_print_text(const char *text);
void ht_print_int(const char *cfmt, long long v);
void ht_print_double(const char *cfmt, double v);
void ht_print_repr(double v);
void ht_print_bool(int v);
void ht_print_end(void); /* newline and flush, like Python's print */

#endif
