/* memcpy.c - copy n bytes between non-overlapping buffers; returns dst.
 *
 * A plain byte loop: with restrict pointers the optimiser vectorises it, and
 * -ffreestanding (no-builtins) keeps it from turning the loop back into a memcpy call.
 */
#include <string.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++)
        d[i] = s[i];
    return dst;
}
