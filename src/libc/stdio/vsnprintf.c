/* vsnprintf.c - format into a bounded buffer.
 *
 * Promise: writes at most size bytes, always NUL-terminates when size > 0, and returns
 * the length the complete output would have had (excluding the NUL).
 * Conversions: %d %i %u %x %X %c %s %p %% and %f.  Flags '-', '0', '+', ' '; a field
 * width and a precision (digits or '*'); length modifiers hh h l ll z.
 * %f prints the exact decimal value of the double rounded half-to-even at the requested
 * precision (default 6, at most 20; larger requests are clamped to 20), for every finite
 * double; NaN and infinity print "nan"/"inf" with the sign and '+'/' ' prefixes like a
 * number, padded with spaces even under the '0' flag (as glibc does).
 * %p prints "0x" and lowercase hex (also for NULL); %s of NULL prints "(null)".
 * An unknown conversion is copied to the output verbatim so mistakes stay visible.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FLAG_LEFT  1
#define FLAG_ZERO  2
#define FLAG_PLUS  4
#define FLAG_SPACE 8

#define F_MAX_PREC 20
/* A finite double's integer part has at most 309 digits; fraction at most F_MAX_PREC. */
#define NUMBUF 352

struct out {
    char *buf;
    size_t size;
    size_t len;   /* would-be length so far */
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_run(struct out *o, char c, int n)
{
    for (int i = 0; i < n; i++)
        put(o, c);
}

static void put_str(struct out *o, const char *s, int n)
{
    for (int i = 0; i < n; i++)
        put(o, s[i]);
}

/* Emit prefix, leading zeros and body inside a field of the given width. */
static void emit_field(struct out *o, const char *prefix, int plen, int zeros,
                       const char *body, int blen, int width, int flags)
{
    int total = plen + zeros + blen;
    int pad = width > total ? width - total : 0;
    if (flags & FLAG_LEFT) {
        put_str(o, prefix, plen);
        put_run(o, '0', zeros);
        put_str(o, body, blen);
        put_run(o, ' ', pad);
    } else if (flags & FLAG_ZERO) {
        put_str(o, prefix, plen);
        put_run(o, '0', zeros + pad);
        put_str(o, body, blen);
    } else {
        put_run(o, ' ', pad);
        put_str(o, prefix, plen);
        put_run(o, '0', zeros);
        put_str(o, body, blen);
    }
}

/* Digits of v in the given base, most significant first; returns the count. */
static int utoa(uint64_t v, unsigned base, int upper, char *dst)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v != 0);
    for (int i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

/* Decimal digits of m * 2^e (e >= 0, m < 2^53) using a little-endian base-2^32 bignum. */
static int big_integer_digits(uint64_t m, int e, char *dst)
{
    uint32_t w[36];   /* 53 + 971 bits < 36 * 32 */
    int nw = 0;
    for (int i = 0; i < 36; i++)
        w[i] = 0;
    int word = e / 32, bit = e % 32;
    unsigned __int128 shifted = (unsigned __int128)m << bit;   /* < 2^85 */
    for (int i = 0; i < 3; i++) {
        w[word + i] = (uint32_t)(shifted >> (32 * i));
        if (w[word + i] != 0)
            nw = word + i + 1;
    }
    /* Repeatedly divide by 10^9, collecting 9-digit groups least significant first. */
    uint32_t groups[40];
    int ng = 0;
    while (nw > 0) {
        uint64_t rem = 0;
        for (int i = nw - 1; i >= 0; i--) {
            uint64_t cur = (rem << 32) | w[i];
            w[i] = (uint32_t)(cur / 1000000000u);
            rem = cur % 1000000000u;
        }
        groups[ng++] = (uint32_t)rem;
        while (nw > 0 && w[nw - 1] == 0)
            nw--;
    }
    if (ng == 0)
        groups[ng++] = 0;
    int n = utoa(groups[ng - 1], 10, 0, dst);
    for (int g = ng - 2; g >= 0; g--) {
        uint32_t v = groups[g];
        for (int k = 8; k >= 0; k--) {
            dst[n + k] = (char)('0' + v % 10);
            v /= 10;
        }
        n += 9;
    }
    return n;
}

/* Body of %f for |d| (sign handled by the caller): exact digits, round half to even. */
static int format_fixed(uint64_t bits, int prec, char *dst)
{
    int exp_field = (int)((bits >> 52) & 0x7ff);
    uint64_t m = bits & ((1ull << 52) - 1);
    int e;
    if (exp_field == 0) {
        e = -1074;                      /* subnormal or zero */
    } else {
        m |= 1ull << 52;
        e = exp_field - 1075;
    }
    int n;
    if (e >= 0) {                       /* an integer: no fraction digits to round */
        n = big_integer_digits(m, e, dst);
        if (prec > 0) {
            dst[n++] = '.';
            for (int i = 0; i < prec; i++)
                dst[n++] = '0';
        }
        return n;
    }
    int k = -e;                         /* value = m / 2^k */
    uint64_t ip = k < 64 ? m >> k : 0;
    char frac[F_MAX_PREC];
    int round_up = 0;
    if (k > 124) {
        /* value < 2^53 / 2^125 < 0.5e-20: every digit is 0 and it rounds down. */
        for (int i = 0; i < prec; i++)
            frac[i] = '0';
    } else {
        unsigned __int128 mask = ((unsigned __int128)1 << k) - 1;
        unsigned __int128 r = (unsigned __int128)m & mask;   /* fraction numerator */
        for (int i = 0; i < prec; i++) {
            r *= 10;                    /* r < 2^k, so r*10 < 2^128 */
            frac[i] = (char)('0' + (int)(r >> k));
            r &= mask;
        }
        unsigned __int128 half = (unsigned __int128)1 << (k - 1);
        int last_odd = prec > 0 ? (frac[prec - 1] - '0') & 1 : (int)(ip & 1);
        round_up = r > half || (r == half && last_odd);
    }
    if (round_up) {
        int i = prec - 1;
        while (i >= 0 && frac[i] == '9')
            frac[i--] = '0';
        if (i >= 0)
            frac[i]++;
        else
            ip++;                       /* ip < 2^53, cannot overflow */
    }
    n = utoa(ip, 10, 0, dst);
    if (prec > 0) {
        dst[n++] = '.';
        for (int i = 0; i < prec; i++)
            dst[n++] = frac[i];
    }
    return n;
}

/* The sign column of a signed conversion: '-', or what the '+' / ' ' flags ask for; its length. */
static int sign_prefix(char prefix[1], int neg, int flags)
{
    if (neg)
        prefix[0] = '-';
    else if (flags & FLAG_PLUS)
        prefix[0] = '+';
    else if (flags & FLAG_SPACE)
        prefix[0] = ' ';
    else
        return 0;
    return 1;
}

static void conv_float(struct out *o, double d, int width, int prec, int flags)
{
    union { double d; uint64_t u; } pun = { .d = d };
    uint64_t bits = pun.u;
    int neg = (int)(bits >> 63);
    bits &= ~(1ull << 63);
    char prefix[1];
    int plen = sign_prefix(prefix, neg, flags);
    if (bits >= 0x7ff0000000000000ull) {        /* inf or NaN: never zero-padded */
        const char *word = bits == 0x7ff0000000000000ull ? "inf" : "nan";
        emit_field(o, prefix, plen, 0, word, 3, width, flags & ~FLAG_ZERO);
        return;
    }
    if (prec < 0)
        prec = 6;
    if (prec > F_MAX_PREC)
        prec = F_MAX_PREC;
    char body[NUMBUF];
    int blen = format_fixed(bits, prec, body);
    emit_field(o, prefix, plen, 0, body, blen, width, flags);
}

static void conv_int(struct out *o, uint64_t mag, int neg, unsigned base, int upper,
                     int width, int prec, int flags)
{
    char prefix[1];
    int plen = sign_prefix(prefix, neg, flags);
    char body[24];
    int blen = 0;
    if (!(prec == 0 && mag == 0))               /* C: "%.0d" of 0 prints no digits */
        blen = utoa(mag, base, upper, body);
    int zeros = prec > blen ? prec - blen : 0;
    if (prec >= 0)
        flags &= ~FLAG_ZERO;                    /* C: a precision disables the 0 flag */
    emit_field(o, prefix, plen, zeros, body, blen, width, flags);
}

int vsnprintf(char *restrict buf, size_t size, const char *restrict fmt, va_list ap)
{
    struct out o = { buf, size, 0 };
    const char *p = fmt;
    while (*p != '\0') {
        if (*p != '%') {
            put(&o, *p++);
            continue;
        }
        const char *spec = p++;
        int flags = 0;
        for (;; p++) {
            if (*p == '-') flags |= FLAG_LEFT;
            else if (*p == '0') flags |= FLAG_ZERO;
            else if (*p == '+') flags |= FLAG_PLUS;
            else if (*p == ' ') flags |= FLAG_SPACE;
            else break;
        }
        int width = 0;
        if (*p == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                flags |= FLAG_LEFT;
                width = -width;
            }
            p++;
        } else {
            while (*p >= '0' && *p <= '9')
                width = width * 10 + (*p++ - '0');
        }
        int prec = -1;
        if (*p == '.') {
            p++;
            prec = 0;
            if (*p == '*') {
                prec = va_arg(ap, int);
                if (prec < 0)
                    prec = -1;
                p++;
            } else {
                while (*p >= '0' && *p <= '9')
                    prec = prec * 10 + (*p++ - '0');
            }
        }
        /* length: 0 = int, 1 = long, 2 = long long, 3 = size_t, -1 = short, -2 = char */
        int length = 0;
        if (*p == 'l') {
            p++;
            length = 1;
            if (*p == 'l') {
                p++;
                length = 2;
            }
        } else if (*p == 'z') {
            p++;
            length = 3;
        } else if (*p == 'h') {
            p++;
            length = -1;
            if (*p == 'h') {
                p++;
                length = -2;
            }
        }
        if (flags & FLAG_LEFT)
            flags &= ~FLAG_ZERO;
        char c = *p;
        if (c != '\0')
            p++;
        switch (c) {
        case 'd':
        case 'i': {
            int64_t v;
            if (length == 1) v = va_arg(ap, long);
            else if (length == 2) v = va_arg(ap, long long);
            else if (length == 3) v = (int64_t)va_arg(ap, size_t);
            else if (length == -1) v = (short)va_arg(ap, int);
            else if (length == -2) v = (signed char)va_arg(ap, int);
            else v = va_arg(ap, int);
            uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
            conv_int(&o, mag, v < 0, 10, 0, width, prec, flags);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v;
            if (length == 1) v = va_arg(ap, unsigned long);
            else if (length == 2) v = va_arg(ap, unsigned long long);
            else if (length == 3) v = va_arg(ap, size_t);
            else if (length == -1) v = (unsigned short)va_arg(ap, unsigned);
            else if (length == -2) v = (unsigned char)va_arg(ap, unsigned);
            else v = va_arg(ap, unsigned);
            unsigned base = c == 'u' ? 10 : 16;
            conv_int(&o, v, 0, base, c == 'X', width, prec,
                     flags & ~(FLAG_PLUS | FLAG_SPACE));
            break;
        }
        case 'p': {
            uintptr_t v = (uintptr_t)va_arg(ap, void *);
            char body[24];
            int blen = utoa(v, 16, 0, body);
            emit_field(&o, "0x", 2, 0, body, blen, width, flags);
            break;
        }
        case 'c': {
            char ch = (char)va_arg(ap, int);
            emit_field(&o, "", 0, 0, &ch, 1, width, flags & ~FLAG_ZERO);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (s == NULL)
                s = "(null)";
            int n = 0;
            while (s[n] != '\0' && (prec < 0 || n < prec))
                n++;
            emit_field(&o, "", 0, 0, s, n, width, flags & ~FLAG_ZERO);
            break;
        }
        case 'f':
        case 'F':
            conv_float(&o, va_arg(ap, double), width, prec, flags);
            break;
        case '%':
            put(&o, '%');
            break;
        default:
            /* Unknown or truncated conversion: copy it through unchanged. */
            put_str(&o, spec, (int)(p - spec));
            break;
        }
    }
    if (size > 0)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}
