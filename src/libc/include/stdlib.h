/* stdlib.h - BareFlow freestanding libc: sorting and integer helpers (no allocator).
 *
 * Promise: qsort is deterministic (same input -> same output order, even among equal
 * elements) and never allocates; abs has the C semantics.
 */
#ifndef BAREFLOW_LIBC_STDLIB_H
#define BAREFLOW_LIBC_STDLIB_H

#include <stddef.h>

void qsort(void *base, size_t nmemb, size_t size,
           int (*compar)(const void *, const void *));
int abs(int x);

#endif
