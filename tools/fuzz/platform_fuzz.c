/* platform_fuzz.c - bareflow/platform.h for the fuzzing harness (tools/fuzz/).
 *
 * Promise: the runtime's parsers run unchanged inside one long-lived process.  The disk is a
 * memory buffer (writes are recorded so the driver can undo them), allocations come from
 * malloc so AddressSanitizer puts red zones around every one of them (or, for the whole-image
 * target that executes module code, from an RWX mapping), and platform_exit() jumps back to
 * the driver instead of ending the process.  Each allocation is freed by fuzz_reset().  The
 * runtime's per-core TCBs (src/runtime/tcb.c, not linked here) are glibc's own thread pointer,
 * errno and __stack_chk_fail: bf_tcb_init/bf_tcb_enter leave FS_BASE alone.
 */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bareflow/platform.h"
#include "bareflow/tcb.h"
#include "fuzz.h"

jmp_buf fuzz_exit_jmp;
int fuzz_exit_code;
uint8_t *fuzz_disk;
uint64_t fuzz_disk_sectors;
struct fuzz_range fuzz_dirty[FUZZ_MAX_DIRTY];
int fuzz_n_dirty;
int fuzz_exec_arena;             /* 1: allocate from the RWX arena (module code runs) */
char fuzz_console[4096];
size_t fuzz_console_len;

#define LIMIT (256u << 20)       /* per execution: larger requests fail like a full arena */
#define MAX_ALLOCS 65536

static void *allocs[MAX_ALLOCS];
static int n_allocs;
static size_t used;
static uint8_t *arena;

void platform_console_write(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (fuzz_console_len == sizeof fuzz_console)
            fuzz_console_len = 0;
        fuzz_console[fuzz_console_len++] = buf[i];
    }
}

int platform_disk_read(uint64_t lba, uint32_t count, void *buf)
{
    if (!fuzz_disk || lba > fuzz_disk_sectors || count > fuzz_disk_sectors - lba)
        return -1;
    memcpy(buf, fuzz_disk + lba * 512, (size_t)count * 512);
    return 0;
}

int platform_disk_write(uint64_t lba, uint32_t count, const void *buf)
{
    if (!fuzz_disk || lba > fuzz_disk_sectors || count > fuzz_disk_sectors - lba)
        return -1;
    if (fuzz_n_dirty < FUZZ_MAX_DIRTY)
        fuzz_dirty[fuzz_n_dirty++] = (struct fuzz_range){lba * 512, (uint64_t)count * 512};
    else
        fuzz_dirty[FUZZ_MAX_DIRTY - 1] = (struct fuzz_range){0, fuzz_disk_sectors * 512};  /* restore all */
    memcpy(fuzz_disk + lba * 512, buf, (size_t)count * 512);
    return 0;
}

uint64_t platform_disk_sectors(void)
{
    return fuzz_disk ? fuzz_disk_sectors : 0;
}

void *platform_alloc(size_t size, size_t align)
{
    if (!align || (align & (align - 1)) || align > 4096 || size > LIMIT - used)
        return NULL;
    if (fuzz_exec_arena) {
        if (!arena) {
            arena = mmap(NULL, LIMIT, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                         -1, 0);
            if (arena == MAP_FAILED)
                abort();
        }
        size_t start = (used + align - 1) & ~(align - 1);
        if (start > LIMIT || size > LIMIT - start)
            return NULL;
        used = start + size;
        memset(arena + start, 0, size);
        return arena + start;
    }
    if (n_allocs == MAX_ALLOCS)
        return NULL;
    size_t rounded = (size + align - 1) & ~(align - 1);
    void *p = aligned_alloc(align, rounded ? rounded : align);
    if (!p)
        return NULL;
    memset(p, 0, rounded ? rounded : align);     /* the platform promises zeroed memory */
    allocs[n_allocs++] = p;
    used += size;
    return p;
}

size_t platform_arena_used(void)
{
    return used;
}

size_t platform_arena_size(void)
{
    return LIMIT;
}

uint64_t platform_cycles(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

uint64_t platform_cycles_per_second(void)
{
    return 1000000000ull;
}

int platform_cpu_has_x86_64_v3(void)
{
    return 0;                    /* deterministic: x86-64-v3 modules are always refused */
}

int platform_cpu_isa_level(const char **missing)
{
    *missing = "AVX2";           /* deterministic: baseline x86-64 only, as above */
    return 0;
}

int platform_cores_start(int wanted, int test, void (*worker)(int core), int *found)
{
    (void)wanted, (void)test, (void)worker;
    *found = 1;                  /* one core: parsers are fuzzed, not the work split */
    return 1;
}

void bf_tcb_init(void)
{
}

void *bf_tcb_enter(int core, uint64_t *canary)
{
    (void)core;
    if (canary)
        *canary = 0;
    return NULL;                 /* no TCB of the runtime's: glibc's is current */
}

void platform_spin(unsigned spins)
{
    (void)spins;
}

int platform_wait(int core, uint32_t *word, uint32_t seen, unsigned spins)
{
    (void)core, (void)word, (void)seen, (void)spins;
    return 0;
}

void platform_wake(int core, uint32_t *word)
{
    (void)core, (void)word;
}

const void *platform_handed_file(const char *path, size_t *size)
{
    (void)path;
    (void)size;
    return NULL;
}

void platform_exit(int code)
{
    fuzz_exit_code = code;
    longjmp(fuzz_exit_jmp, 1);
}

void fuzz_reset(void)
{
    for (int i = 0; i < n_allocs; i++)
        free(allocs[i]);
    n_allocs = 0;
    used = 0;
}
