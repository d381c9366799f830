/* util.c - the memory functions the compiler may call, and page allocation below 4 GiB.
 *
 * Promises: memcpy/memset behave as in C (the loader links no libc, and clang emits calls to
 * them for large copies and zeroing); alloc_low_pages() returns whole LoaderData pages that
 * end at or below 4 GiB - the kernel maps only [0, 4 GiB) and the Multiboot fields are 32-bit -
 * and never start at address 0 - or 0 with the firmware's status.
 */
#include "loader.h"

void *memcpy(void *dst, const void *src, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

size_t ascii_len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

uint64_t pages_for(uint64_t bytes)
{
    return bytes ? (bytes + EFI_PAGE_SIZE - 1) / EFI_PAGE_SIZE : 1;
}

uint64_t alloc_low_pages(uint64_t bytes, EFI_STATUS *why)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        EFI_PHYSICAL_ADDRESS addr = LOW_LIMIT - 1;      /* highest address the pages may use */
        EFI_STATUS s = g_st->boot_services->allocate_pages(AllocateMaxAddress, EfiLoaderData,
                                                           pages_for(bytes), &addr);
        if (why)
            *why = s;
        if (s != EFI_SUCCESS)
            return 0;
        /* The kernel refuses page 0 (it is its NULL guard): keep those pages and try again. */
        if (addr != 0)
            return addr;
    }
    if (why)
        *why = EFI_OUT_OF_RESOURCES;
    return 0;
}
