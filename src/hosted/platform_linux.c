/* platform_linux.c - bareflow/platform.h for an ordinary Linux process (bareflow-hosted).
 *
 * Promise: the same portable runtime that runs on bare metal runs here unchanged.  The disk is
 * an image file given on the command line (sector I/O = pread64/pwrite64), the console is
 * stdout, memory is one RWX anonymous mapping (so loaded modules can run from it), time is
 * rdtsc calibrated against CLOCK_MONOTONIC, and the exit code is the runtime's.  No libc: raw
 * system calls only, so the program is a static freestanding executable like the kernel.
 */
#include <stddef.h>
#include <stdint.h>

#include "bareflow/platform.h"
#include "bareflow/x86_isa.h"
#include "bareflow/runtime.h"

#define SYS_write 1
#define SYS_mmap 9
#define SYS_madvise 28
#define MADV_HUGEPAGE 14
#define HUGE_PAGE (2ull << 20)
#define SYS_pread64 17
#define SYS_pwrite64 18
#define SYS_fstat 5
#define SYS_clock_gettime 228
#define SYS_exit_group 231
#define SYS_openat 257
#define SYS_arch_prctl 158
#define ARCH_SET_FS 0x1002
#define AT_FDCWD (-100)
#define O_RDONLY 0
#define O_RDWR 2
#define O_CLOEXEC 02000000
#define PROT_RWX 7
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20
#define MAP_NORESERVE 0x4000
#define CLOCK_MONOTONIC 1
#define EINTR 4

#define ARENA_BYTES (1ull << 30)   /* reserved, not committed: MAP_NORESERVE */
#define SECTOR 512u

static long syscall6(long nr, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static int image_fd = -1, image_writable;
static uint64_t image_sectors;
static uint8_t *arena;
static size_t arena_used;
static uint64_t cycles_per_second;

static void write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        long n = syscall6(SYS_write, fd, (long)buf, (long)len, 0, 0, 0);
        if (n == -EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static size_t cstr_len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static void say(int fd, const char *s)
{
    write_all(fd, s, cstr_len(s));
}

void platform_console_write(const char *buf, size_t len)
{
    write_all(1, buf, len);
}

void platform_exit(int code)
{
    for (;;)
        syscall6(SYS_exit_group, code, 0, 0, 0, 0, 0);
}

static int disk_io(int nr, uint64_t lba, uint32_t count, void *buf)
{
    if (image_fd < 0 || lba > image_sectors || count > image_sectors - lba)
        return -1;
    uint8_t *p = buf;
    uint64_t left = (uint64_t)count * SECTOR, off = lba * SECTOR;
    while (left) {
        long n = syscall6(nr, image_fd, (long)p, (long)left, (long)off, 0, 0);
        if (n == -EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        off += (uint64_t)n;
        left -= (uint64_t)n;
    }
    return 0;
}

int platform_disk_read(uint64_t lba, uint32_t count, void *buf)
{
    return disk_io(SYS_pread64, lba, count, buf);
}

int platform_disk_write(uint64_t lba, uint32_t count, const void *buf)
{
    if (!image_writable)
        return -1;
    return disk_io(SYS_pwrite64, lba, count, (void *)(uintptr_t)buf);
}

uint64_t platform_disk_sectors(void)
{
    return image_sectors;
}

void *platform_alloc(size_t size, size_t align)
{
    if (!align || (align & (align - 1)) || align > 4096)
        return NULL;
    size_t start = (arena_used + align - 1) & ~(align - 1);
    if (start > ARENA_BYTES || size > ARENA_BYTES - start)
        return NULL;
    arena_used = start + size;
    return arena + start;         /* never handed out before, so still the mapping's zeros */
}

size_t platform_arena_used(void)
{
    return arena_used;
}

size_t platform_arena_size(void)
{
    return ARENA_BYTES;
}

uint64_t platform_cycles(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

uint64_t platform_cycles_per_second(void)
{
    return cycles_per_second;
}

static uint64_t monotonic_ns(void)
{
    struct { long sec, nsec; } ts = {0, 0};
    syscall6(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&ts, 0, 0, 0, 0);
    return (uint64_t)ts.sec * 1000000000ull + (uint64_t)ts.nsec;
}

/* 20 ms of spinning against the monotonic clock: enough for a rate within a fraction of a percent. */
static uint64_t calibrate(void)
{
    uint64_t n0 = monotonic_ns(), c0 = platform_cycles(), n1, c1;
    do {
        n1 = monotonic_ns();
        c1 = platform_cycles();
    } while (n1 - n0 < 20000000ull);
    return (c1 - c0) * 1000000000ull / (n1 - n0);
}

/* Linux enables the XCR0 state of every feature it supports, so CPUID and XCR0 decide alone. */
int platform_cpu_isa_level(const char **missing)
{
    return bf_x86_isa_level(missing);
}

/* The program's own ELF header: lld defines __ehdr_start when the headers are loaded. */
extern const uint8_t __ehdr_start[] __attribute__((weak));

int platform_tls_template(const void **init, size_t *init_size, size_t *mem_size, size_t *align)
{
    const uint8_t *eh = __ehdr_start;
    if (!eh)
        return -1;
    uint64_t phoff;
    uint16_t phentsize, phnum;
    __builtin_memcpy(&phoff, eh + 32, 8);
    __builtin_memcpy(&phentsize, eh + 54, 2);
    __builtin_memcpy(&phnum, eh + 56, 2);
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = eh + phoff + (uint64_t)i * phentsize;
        uint32_t type;
        uint64_t vaddr, filesz, memsz, al;
        __builtin_memcpy(&type, ph, 4);
        if (type != 7)                /* PT_TLS */
            continue;
        __builtin_memcpy(&vaddr, ph + 16, 8);
        __builtin_memcpy(&filesz, ph + 32, 8);
        __builtin_memcpy(&memsz, ph + 40, 8);
        __builtin_memcpy(&al, ph + 48, 8);
        *init = (const void *)(uintptr_t)vaddr;     /* a static executable is not relocated */
        *init_size = filesz;
        *mem_size = memsz;
        *align = al ? al : 1;
        return 0;
    }
    return -1;
}

void platform_set_thread_pointer(void *tp)
{
    syscall6(SYS_arch_prctl, ARCH_SET_FS, (long)tp, 0, 0, 0, 0);
}

const void *platform_handed_file(const char *path, size_t *size)
{
    (void)path;
    (void)size;
    return NULL;                      /* only the bare-metal boot loader hands files over */
}

void hosted_main(long *sp) __attribute__((noreturn));
void hosted_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    int tokenize = argc == 3 && argv[2][0] == '-' && argv[2][1] == '-' && argv[2][2] == 't';
    if ((argc != 2 && !tokenize) || argv[1][0] == '-') {     /* --help, -h, or a misplaced option */
        say(2, "usage: bareflow-hosted IMAGE [--tokenize]\n  runs BareFlow on a disk image file (MBR + FAT16 "
               "partition);\n  --tokenize: only tokenize the texts in /TOKTEST.BIN (tests)\n");
        platform_exit(2);
    }
    const char *image = argv[1];
    long fd = syscall6(SYS_openat, AT_FDCWD, (long)image, O_RDWR | O_CLOEXEC, 0, 0, 0);
    image_writable = fd >= 0;
    if (fd < 0)
        fd = syscall6(SYS_openat, AT_FDCWD, (long)image, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (fd < 0) {
        say(1, "BAREFLOW-PANIC: cannot open image ");
        say(1, image);
        say(1, "\n");
        platform_exit(BF_EXIT_PANIC);
    }
    uint64_t st[18];                  /* struct stat on x86-64 is 144 bytes; st_size at 48 */
    if (syscall6(SYS_fstat, fd, (long)st, 0, 0, 0, 0) < 0) {
        say(1, "BAREFLOW-PANIC: cannot stat image ");
        say(1, image);
        say(1, "\n");
        platform_exit(BF_EXIT_PANIC);
    }
    image_fd = (int)fd;
    image_sectors = st[6] / SECTOR;
    long a = syscall6(SYS_mmap, 0, (long)(ARENA_BYTES + HUGE_PAGE), PROT_RWX,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (a < 0 && a > -4096) {
        say(1, "BAREFLOW-PANIC: cannot map the 1 GiB RWX arena\n");
        platform_exit(BF_EXIT_PANIC);
    }
    /* 2 MiB pages, as the bare-metal kernel maps its memory: the weights are streamed once
     * per token, and with 4 KiB pages every 4 KiB of them costs a TLB miss.  A hint only
     * (transparent huge pages may be off), so its result is not checked. */
    a = (a + (long)HUGE_PAGE - 1) & ~(long)(HUGE_PAGE - 1);
    syscall6(SYS_madvise, a, (long)ARENA_BYTES, MADV_HUGEPAGE, 0, 0, 0);
    arena = (uint8_t *)a;
    cycles_per_second = calibrate();
    platform_exit(tokenize ? bf_tokenize_main() : bf_runtime_main());
}
