/* stdio.h - BareFlow freestanding libc: formatting into buffers only (no streams).
 *
 * Promise: snprintf/vsnprintf support %d %i %u %x %X %s %c %p %% with the l/ll/z length
 * modifiers, a field width, the '0' and '-' flags, and %f with an optional precision.
 * The output is always NUL-terminated when size > 0; the return value is the length the
 * full output would have had.
 */
#ifndef BAREFLOW_LIBC_STDIO_H
#define BAREFLOW_LIBC_STDIO_H

#include <stdarg.h>
#include <stddef.h>

int snprintf(char *restrict buf, size_t size, const char *restrict fmt, ...)
    __attribute__((format(printf, 3, 4)));
int vsnprintf(char *restrict buf, size_t size, const char *restrict fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
