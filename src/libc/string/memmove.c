/* memmove.c - copy n bytes between possibly overlapping buffers; returns dst.
 *
 * Copies forwards when dst is below src and backwards otherwise, so every source byte
 * is read before the copy overwrites it.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if ((uintptr_t)d < (uintptr_t)s) {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    } else if ((uintptr_t)d > (uintptr_t)s) {
        for (size_t i = n; i > 0; i--)
            d[i - 1] = s[i - 1];
    }
    return dst;
}
