/* heap.c - malloc/free for LLVM and libstdc++ inside BareFlow: segregated free lists.
 *
 * Promise: every block returned is 16-byte aligned (or the alignment asked for), never
 * overlaps a live block, and is reused after free() for a request of the same size class.
 * Requests are rounded up to a size class (16-byte steps up to 1 KiB, then four classes per
 * power of two); free blocks go on their class's list and are not coalesced, which suits
 * LLVM's pattern (tens of thousands of small, short-lived allocations per compile, peak live a
 * few MiB).  The heap is one region handed over by bf_llvm_heap_init (from the runtime's
 * arena); when it is exhausted malloc returns NULL and counts the failure — the caller (LLVM)
 * then aborts the compile through bf_llvm_abort, which the JIT reports.
 * Thread safety: one spinlock guards the free lists and the carving pointer, so a compile on a
 * spare core may allocate while core 0 frees the previous compile's object (the only two
 * callers; nothing else in the runtime allocates here).  Uncontended it costs one atomic
 * exchange per call, nothing next to LLVM's work per allocation.
 * Why our own: there is no OS underneath; ~120 lines.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "llvm_platform.h"

#define HDR 16u                   /* per block: class index and the offset back to the block */
#define N_SMALL 64                /* 16..1024 in 16-byte steps */
#define N_CLASSES (N_SMALL + 4 * 40)

struct block { struct block *next; };

static uint8_t *heap_base, *heap_cur, *heap_end;
static struct block *free_list[N_CLASSES];
static size_t live_bytes, peak_bytes, n_allocs, n_failed;
static int heap_lock;

static void lock(void)
{
    while (__atomic_exchange_n(&heap_lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&heap_lock, __ATOMIC_RELAXED))
            __builtin_ia32_pause();
}

static void unlock(void)
{
    __atomic_store_n(&heap_lock, 0, __ATOMIC_RELEASE);
}

void bf_llvm_heap_init(void *base, size_t size)
{
    heap_base = heap_cur = base;
    heap_end = heap_base + size;
}

static int class_of(size_t n, size_t *rounded)
{
    if (n <= 1024) {
        size_t c = n ? (n + 15) / 16 : 1;
        *rounded = c * 16;
        return (int)c - 1;
    }
    int log2 = 63 - __builtin_clzll((unsigned long long)(n - 1));   /* 2^log2 < n <= 2^(log2+1) */
    size_t quarter = (size_t)1 << (log2 - 2);
    size_t steps = (n - ((size_t)1 << log2) + quarter - 1) / quarter;   /* 1..4 */
    int c = N_SMALL + (log2 - 10) * 4 + (int)steps - 1;
    if (c >= N_CLASSES)
        return -1;
    *rounded = ((size_t)1 << log2) + steps * quarter;
    return c;
}

static size_t class_size(int c)
{
    if (c < N_SMALL)
        return (size_t)(c + 1) * 16;
    int log2 = (c - N_SMALL) / 4 + 10, steps = (c - N_SMALL) % 4 + 1;
    return ((size_t)1 << log2) + (size_t)steps * ((size_t)1 << (log2 - 2));
}

/* A block of class c whose payload starts at a multiple of align (16..4096); lock held. */
static void *take_locked(size_t n, size_t align)
{
    size_t rounded;
    int c = class_of(n + (align > 16 ? align : 0), &rounded);
    if (c < 0 || !heap_base) {
        n_failed++;
        return NULL;
    }
    uint8_t *raw;
    if (free_list[c]) {
        raw = (uint8_t *)free_list[c];
        free_list[c] = free_list[c]->next;
    } else {
        if ((size_t)(heap_end - heap_cur) < rounded + HDR) {
            n_failed++;
            return NULL;
        }
        raw = heap_cur;
        heap_cur += rounded + HDR;
    }
    uint8_t *p = raw + HDR;
    if (align > 16)
        p = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    uint32_t meta[2] = {(uint32_t)c, (uint32_t)(p - raw)};
    memcpy(p - 8, meta, 8);
    live_bytes += rounded;
    if (live_bytes > peak_bytes)
        peak_bytes = live_bytes;
    n_allocs++;
    return p;
}

static void *take(size_t n, size_t align)
{
    lock();
    void *p = take_locked(n, align);
    unlock();
    return p;
}

void *bf_llvm_malloc(size_t n)
{
    return take(n, 16);
}

void bf_llvm_free(void *ptr)
{
    if (!ptr)
        return;
    uint32_t meta[2];
    memcpy(meta, (uint8_t *)ptr - 8, 8);
    struct block *b = (struct block *)((uint8_t *)ptr - meta[1]);
    lock();
    b->next = free_list[meta[0]];
    free_list[meta[0]] = b;
    live_bytes -= class_size((int)meta[0]);
    unlock();
}

static size_t usable(void *ptr)
{
    uint32_t meta[2];
    memcpy(meta, (uint8_t *)ptr - 8, 8);
    return class_size((int)meta[0]) + HDR - meta[1];
}

void bf_llvm_heap_stats(size_t *used, size_t *peak, size_t *allocs, size_t *failed, size_t *size)
{
    lock();
    *used = (size_t)(heap_cur - heap_base);
    *peak = peak_bytes;
    *allocs = n_allocs;
    *failed = n_failed;
    *size = (size_t)(heap_end - heap_base);
    unlock();
}

/* The C names LLVM and libstdc++ call. */
void *malloc(size_t n) { return take(n, 16); }
void free(void *p) { bf_llvm_free(p); }

void *calloc(size_t n, size_t size)
{
    if (size && n > (size_t)-1 / size)
        return NULL;
    void *p = take(n * size, 16);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *realloc(void *old, size_t n)
{
    if (!old)
        return take(n, 16);
    size_t have = usable(old);
    if (n <= have)
        return old;
    void *p = take(n, 16);
    if (p) {
        memcpy(p, old, have);
        bf_llvm_free(old);
    }
    return p;
}

void *aligned_alloc(size_t align, size_t n)
{
    if (!align || (align & (align - 1)) || align > 4096)
        return NULL;
    return take(n, align < 16 ? 16 : align);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = aligned_alloc(align, n);
    if (!p)
        return 12;                /* ENOMEM */
    *out = p;
    return 0;
}
