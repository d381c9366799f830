/* strncmp.c - compare at most n bytes of two strings as unsigned char; stops at a NUL. */
#include <string.h>

int strncmp(const char *a, const char *b, size_t n)
{
    const unsigned char *p = (const unsigned char *)a;
    const unsigned char *q = (const unsigned char *)b;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != q[i])
            return (int)p[i] - (int)q[i];
        if (p[i] == '\0')
            return 0;
    }
    return 0;
}
