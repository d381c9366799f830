/* strchr.c - first occurrence of (char)c in s, the terminator included; NULL if absent. */
#include <string.h>

char *strchr(const char *s, int c)
{
    char ch = (char)c;
    for (;; s++) {
        if (*s == ch)
            return (char *)s;
        if (*s == '\0')
            return NULL;
    }
}
