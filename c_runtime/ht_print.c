/* ht_print.c: see ht_print.h. */
#include "ht_print.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Does the decimal m * 10**exp10 read back as x? */
static int reads_back(uint64_t m, int exp10, double x) {
    char text[40];
    snprintf(text, sizeof text, "%" PRIu64 "e%d", m, exp10);
    return strtod(text, NULL) == x;
}

/* The shortest decimal significand m (of `precision` digits) and exponent that read back as
 * x >= 0; of two such, the nearer to x, as Python's repr. At each precision the correctly
 * rounded digits are the nearest candidate; when they do not read back, the one other candidate
 * is the next decimal on the other side of x, which can: just below a power of two the doubles
 * are twice as close, so the rounding interval is lopsided (2**-24 is 5.960464477539063e-08,
 * where rounding the 17 digits ...0625 half to even gives ...062, which reads back as another). */
static void shortest_digits(double x, uint64_t *m_out, int *exponent_out) {
    for (int precision = 1;; precision++) {
        char sci[40];
        snprintf(sci, sizeof sci, "%.*e", precision - 1, x);
        uint64_t m = 0;
        const char *p = sci;
        for (; *p != 'e'; p++)
            if (*p != '.') m = m * 10 + (uint64_t)(*p - '0');
        int exponent = atoi(p + 1), exp10 = exponent - (precision - 1);
        uint64_t low = 1;
        for (int i = 1; i < precision; i++) low *= 10;
        if (reads_back(m, exp10, x) || precision == 17) {
            *m_out = m, *exponent_out = exponent;
            return;
        }
        if (strtod(sci, NULL) < x) {
            uint64_t up = m + 1;
            if (up == low * 10 ? reads_back(low, exp10 + 1, x) : reads_back(up, exp10, x)) {
                *m_out = up == low * 10 ? low : up;
                *exponent_out = up == low * 10 ? exponent + 1 : exponent;
                return;
            }
        } else if (m > low ? reads_back(m - 1, exp10, x)
                           : reads_back(low * 10 - 1, exp10 - 1, x)) {
            *m_out = m > low ? m - 1 : low * 10 - 1;
            *exponent_out = m > low ? exponent : exponent - 1;
            return;
        }
    }
}

/* Shortest digits that read back as x, laid out the way Python's float repr does:
 * fixed notation for exponents in [-4, 16), otherwise d.ddde+XX. */
void ht_format_repr(char *buf, double x) {
    if (isnan(x)) { strcpy(buf, "nan"); return; }
    if (isinf(x)) { strcpy(buf, x < 0 ? "-inf" : "inf"); return; }
    uint64_t m;
    int exponent, negative = signbit(x) != 0;
    shortest_digits(fabs(x), &m, &exponent);
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, m);
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

/* Digits past these precisions are zeros, printed without formatting them: a double's exact
 * decimal expansion has at most 1074 digits after the point and 767 significant digits. */
enum { HT_EXACT_DIGITS = 1100, HT_BODY_MAX = 1600 };

/* A number as formatted, without its sign: text with `zeros` more zeros at offset `at`. */
typedef struct {
    char text[HT_BODY_MAX];
    size_t len, at;
    int64_t zeros;
} ht_body;

static void put_fill(uint32_t code_point, int64_t count) {
    char one[4];
    size_t size = 0;
    if (code_point < 0x80) {
        one[size++] = (char)code_point;
    } else if (code_point < 0x800) {
        one[size++] = (char)(0xC0 | code_point >> 6);
        one[size++] = (char)(0x80 | (code_point & 0x3F));
    } else if (code_point < 0x10000) {
        one[size++] = (char)(0xE0 | code_point >> 12);
        one[size++] = (char)(0x80 | (code_point >> 6 & 0x3F));
        one[size++] = (char)(0x80 | (code_point & 0x3F));
    } else {
        one[size++] = (char)(0xF0 | code_point >> 18);
        one[size++] = (char)(0x80 | (code_point >> 12 & 0x3F));
        one[size++] = (char)(0x80 | (code_point >> 6 & 0x3F));
        one[size++] = (char)(0x80 | (code_point & 0x3F));
    }
    char chunk[256];
    int64_t per_chunk = (int64_t)(sizeof chunk / size);
    for (int64_t i = 0; i < per_chunk; i++) memcpy(chunk + i * size, one, size);
    for (; count > 0; count -= per_chunk)
        fwrite(chunk, size, (size_t)(count < per_chunk ? count : per_chunk), stdout);
}

/* Python's layout of a formatted number: its sign, then fill to `width` as `align` says. */
static void put_laid_out(int negative, const ht_body *body, ht_spec spec) {
    const char *sign = negative ? "-" : spec.sign == '+' ? "+" : spec.sign == ' ' ? " " : "";
    int64_t length = (int64_t)(strlen(sign) + body->len) + body->zeros;
    int64_t pad = spec.width > length ? spec.width - length : 0, left = 0, inner = 0, right = 0;
    switch (spec.align) {
    case '<': right = pad; break;
    case '=': inner = pad; break;
    case '^': left = pad / 2; right = pad - left; break;
    default: left = pad;
    }
    put_fill(spec.fill, left);
    fputs(sign, stdout);
    put_fill(spec.fill, inner);
    fwrite(body->text, 1, body->at, stdout);
    put_fill('0', body->zeros);
    fwrite(body->text + body->at, 1, body->len - body->at, stdout);
    put_fill(spec.fill, right);
}

/* The body is the `length` characters snprintf wrote (room is left for a '%' sign). */
static void set_body(ht_body *body, int length) {
    size_t most = sizeof body->text - 2;
    body->len = body->at = length <= 0 ? 0 : (size_t)length < most ? (size_t)length : most;
    body->zeros = 0;
}

/* The digits of a finite, non-negative x for a float type, as C's printf makes them (it
 * rounds exactly, like Python); a precision past the exact digits adds zeros. */
static void finite_body(ht_body *body, double x, ht_spec spec) {
    char conversion = spec.type == '%' ? 'f' : spec.type;
    int precision = (int)(spec.precision < HT_EXACT_DIGITS ? spec.precision : HT_EXACT_DIGITS);
    char cfmt[8];
    snprintf(cfmt, sizeof cfmt, "%%%s.*%c", spec.alt ? "#" : "", conversion);
    set_body(body, snprintf(body->text, sizeof body->text, cfmt, precision, x));
    int strips_zeros = (conversion == 'g' || conversion == 'G') && !spec.alt;
    if (spec.precision > precision && !strips_zeros) {
        char *exponent = strpbrk(body->text, "eE");
        body->at = exponent ? (size_t)(exponent - body->text) : body->len;
        body->zeros = spec.precision - precision;
    }
}

/* True when the digits (before any exponent) are all zeros: what Python's 'z' looks at. */
static int rounds_to_zero(const ht_body *body) {
    for (size_t i = 0; i < body->len && body->text[i] != 'e' && body->text[i] != 'E'; i++)
        if (body->text[i] >= '1' && body->text[i] <= '9') return 0;
    return 1;
}

void ht_print_float(double v, ht_spec spec) {
    ht_body body;
    int upper = spec.type == 'F' || spec.type == 'E' || spec.type == 'G';
    if (spec.type == '%') v *= 100.0;
    int negative = signbit(v) && !isnan(v); /* Python never prints a nan's sign */
    double x = fabs(v);
    if (!isfinite(x)) {
        set_body(&body, snprintf(body.text, sizeof body.text, "%s",
                                 isnan(x) ? (upper ? "NAN" : "nan") : (upper ? "INF" : "inf")));
    } else {
        if (spec.type == 'r') {
            ht_format_repr(body.text, x);
            set_body(&body, (int)strlen(body.text));
        } else {
            finite_body(&body, x, spec);
        }
        if (spec.z && rounds_to_zero(&body)) negative = 0;
    }
    if (spec.type == '%') body.text[body.len++] = '%';
    put_laid_out(negative, &body, spec);
}

void ht_print_int(int64_t v, ht_spec spec) {
    ht_body body;
    uint64_t magnitude = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    set_body(&body, snprintf(body.text, sizeof body.text, "%" PRIu64, magnitude));
    put_laid_out(v < 0, &body, spec);
}

void ht_print_text(const char *text, size_t len) { fwrite(text, 1, len, stdout); }

void ht_print_bool(int v) { fputs(v ? "True" : "False", stdout); }

void ht_print_end(void) {
    fputc('\n', stdout);
    fflush(stdout);
}
