/* memset.c - fill n bytes with (unsigned char)c; returns dst. */
#include <string.h>

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    unsigned char v = (unsigned char)c;
    for (size_t i = 0; i < n; i++)
        d[i] = v;
    return dst;
}
