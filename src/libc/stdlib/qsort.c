/* qsort.c - sort nmemb elements of the given size with a caller's comparison.
 *
 * Promise: heap sort: O(n log n) comparisons in the worst case, no allocation, no
 * recursion, constant stack.  Not stable, but deterministic: the same input array and
 * comparator always produce the same output order.  Elements are swapped byte by byte,
 * so any size and alignment works.
 */
#include <stddef.h>
#include <stdlib.h>

static void swap_bytes(unsigned char *a, unsigned char *b, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        unsigned char t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

/* Move element `root` down until the max-heap property holds within [0, end). */
static void sift_down(unsigned char *base, size_t root, size_t end, size_t size,
                      int (*compar)(const void *, const void *))
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= end)
            return;
        if (child + 1 < end && compar(base + child * size, base + (child + 1) * size) < 0)
            child++;
        if (compar(base + root * size, base + child * size) >= 0)
            return;
        swap_bytes(base + root * size, base + child * size, size);
        root = child;
    }
}

void qsort(void *base, size_t nmemb, size_t size, int (*compar)(const void *, const void *))
{
    unsigned char *b = base;
    if (nmemb < 2 || size == 0)
        return;
    for (size_t i = nmemb / 2; i > 0; i--)
        sift_down(b, i - 1, nmemb, size, compar);
    for (size_t end = nmemb - 1; end > 0; end--) {
        swap_bytes(b, b + end * size, size);
        sift_down(b, 0, end, size, compar);
    }
}
