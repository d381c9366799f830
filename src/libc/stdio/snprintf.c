/* snprintf.c - variadic front end of vsnprintf; same bound, termination and return value. */
#include <stdarg.h>
#include <stdio.h>

int snprintf(char *restrict buf, size_t size, const char *restrict fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
