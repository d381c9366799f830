/* string.h - BareFlow freestanding libc: the memory and string functions we implement.
 *
 * Promise: exactly the C standard semantics for the functions declared here, nothing more.
 * Each function lives in its own file under src/libc/string/ so the build can link only
 * the ones some object actually references.
 */
#ifndef BAREFLOW_LIBC_STRING_H
#define BAREFLOW_LIBC_STRING_H

#include <stddef.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);

#endif
