/* ht_print.c: see ht_print.h. */
#include "ht_print.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shortest digits that read back as x, laid out the way Python's float repr does:
 * fixed notation for exponents in [-4, 16), otherwise d.ddde+XX. */
void ht_format_repr(char *buf, double x) {
    if (isnan(x)) { strcpy(buf, "nan"); return; }
    if (isinf(x)) { strcpy(buf, x < 0 ? "-inf" : "inf"); return; }
    char sci[40];
    int precision = 1;
    for (; precision <= 17; precision++) {
        snprintf(sci, sizeof sci, "%.*e", precision - 1, x);
        if (strtod(sci, NULL) == x) break;
    }
    /* sci is [-]d[.ddd]e[+-]XX: collect the digits and the exponent. */
    char digits[24];
    int n = 0, negative = sci[0] == '-';
    const char *p = sci + negative;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[n++] = *p;
    int exponent = atoi(p + 1);
    while (n > 1 && digits[n - 1] == '0') n--;
    digits[n] = '\0';

    char *out = buf;
    if (negative) *out++ = '-';
    if (exponent >= -4 && exponent < 16) {
        if (exponent < 0) {
            out += sprintf(out, "0.");
            for (int i = 0; i < -exponent - 1; i++) *out++ = '0';
            out += sprintf(out, "%s", digits);
        } else {
            for (int i = 0; i <= exponent; i++) *out++ = i < n ? digits[i] : '0';
            *out++ = '.';
            if (n > exponent + 1) out += sprintf(out, "%s", digits + exponent + 1);
            else *out++ = '0';
        }
        *out = '\0';
    } else {
        *out++ = digits[0];
        if (n > 1) out += sprintf(out, ".%s", digits + 1);
        sprintf(out, "e%c%02d", exponent < 0 ? '-' : '+', abs(exponent));
    }
}

void ht_print_text(const char *text) { fputs(text, stdout); }
void ht_print_int(const char *cfmt, long long v) { printf(cfmt, v); }
void ht_print_double(const char *cfmt, double v) { printf(cfmt, v); }

void ht_print_repr(double v) {
    char buf[40];
    ht_format_repr(buf, v);
    fputs(buf, stdout);
}

void ht_print_bool(int v) { fputs(v ? "True" : "False", stdout); }

void ht_print_end(void) {
    fputc('\n', stdout);
    fflush(stdout);
}
