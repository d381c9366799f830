/* memory.c - the one bump arena the runtime allocates from.
 *
 * Promises: the arena is the largest stretch of usable RAM in [1 MiB, 4 GiB) (the identity-
 * mapped range) that overlaps neither the kernel image and its bss nor anything the loader
 * handed over (info block, strings, memory map, modules), trimmed to whole 4 KiB pages.
 * platform_alloc() returns zeroed, `align`-aligned blocks from it, or NULL when it is
 * exhausted; an alignment that is not a power of two up to 4096 is a bug and stops the run.
 * All of it is writable and executable (no NX bit is set anywhere).
 */
#include <bareflow/platform.h>
#include "kernel.h"

#define ARENA_LOW 0x100000ull
#define ARENA_HIGH 0x100000000ull
#define PAGE 4096ull
#define MAX_RESERVED 160

static uint64_t arena_start, arena_end, arena_next;

struct carve {
    struct mem_range reserved[MAX_RESERVED];
    size_t n_reserved;
    struct mem_range best;
};

static int inside_reserved(const struct carve *c, uint64_t a)
{
    for (size_t i = 0; i < c->n_reserved; i++)
        if (a >= c->reserved[i].start && a < c->reserved[i].end)
            return 1;
    return 0;
}

/* Candidate gaps start at the range start or right after a reserved range, and run to the
 * next reserved start; the largest over every RAM range wins. */
static void consider_ram(uint64_t start, uint64_t end, void *ctx)
{
    struct carve *c = ctx;
    if (start < ARENA_LOW)
        start = ARENA_LOW;
    if (end > ARENA_HIGH)
        end = ARENA_HIGH;
    if (start >= end)
        return;
    for (size_t k = 0; k <= c->n_reserved; k++) {
        uint64_t gap_start = k == c->n_reserved ? start : c->reserved[k].end;
        if (gap_start < start || gap_start >= end || inside_reserved(c, gap_start))
            continue;
        uint64_t gap_end = end;
        for (size_t i = 0; i < c->n_reserved; i++)
            if (c->reserved[i].start > gap_start && c->reserved[i].start < gap_end)
                gap_end = c->reserved[i].start;
        gap_start = (gap_start + PAGE - 1) & ~(PAGE - 1);
        gap_end &= ~(PAGE - 1);
        if (gap_end > gap_start && gap_end - gap_start > c->best.end - c->best.start)
            c->best = (struct mem_range){ gap_start, gap_end };
    }
}

void memory_init(void)
{
    static struct carve c;
    c.reserved[0] = (struct mem_range){ (uintptr_t)__kernel_start, (uintptr_t)__kernel_end };
    c.n_reserved = 1 + multiboot_reserved(c.reserved + 1, MAX_RESERVED - 1);
    c.best = (struct mem_range){ 0, 0 };
    multiboot_for_each_ram(consider_ram, &c);
    if (c.best.end - c.best.start < 1024 * 1024)
        kernel_fail("memory: less than 1 MiB of free RAM below 4 GiB for the arena");
    arena_start = arena_next = c.best.start;
    arena_end = c.best.end;
}

void *platform_alloc(size_t size, size_t align)
{
    if (align == 0)
        align = 1;
    if (align > PAGE || (align & (align - 1)))
        kernel_fail2("platform_alloc: alignment must be a power of two up to 4096, got ", align);
    uint64_t p = (arena_next + align - 1) & ~((uint64_t)align - 1);
    if (p > arena_end || size > arena_end - p)
        return NULL;
    arena_next = p + size;
    void *dst = (void *)(uintptr_t)p;
    size_t n = size;
    __asm__ volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(0) : "memory");
    return (void *)(uintptr_t)p;
}

size_t platform_arena_used(void)
{
    return (size_t)(arena_next - arena_start);
}

size_t platform_arena_size(void)
{
    return (size_t)(arena_end - arena_start);
}
