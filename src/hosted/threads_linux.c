/* threads_linux.c - the hosted build's cores: one Linux thread per extra core.
 *
 * Promises: platform_cores_start() counts the CPUs the process may run on
 * (sched_getaffinity), starts wanted-1 threads (every allowed CPU but the caller's when wanted is
 * 0), each on its own 256 KiB stack and pinned to its own allowed CPU (round-robin when more
 * cores are asked for than CPUs exist; pinning failures are ignored), and has each call
 * worker(core).  The calling thread is pinned to the first allowed CPU.  The threads share
 * everything (CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM), as POSIX threads do; raw clone(2) is
 * used because the hosted program links no libc (see platform_linux.c), and exit_group ends
 * them all with the process.  platform_spin() yields the CPU every 256 spins, so a waiting core
 * does not starve a working one on a busy machine.  platform_wait() spins the same way for the
 * first PARK_US of an idle worker's wait, then sleeps on the mailbox word with FUTEX_WAIT (at
 * most FUTEX_MS per sleep, so no wait depends on a wake-up arriving); platform_wake() issues
 * FUTEX_WAKE only when that worker is asleep.  `test` is ignored: there is no MADT here.
 */
#include <stddef.h>
#include <stdint.h>

#include "bareflow/platform.h"

#define SYS_mmap 9
#define SYS_sched_yield 24
#define SYS_sched_setaffinity 203
#define SYS_sched_getaffinity 204
#define SYS_futex 202
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
#define PARK_US 200
#define FUTEX_MS 100
#define MAX_THREADS 1024
#define CLONE_FLAGS (0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000)
#define STACK_BYTES (256 * 1024)
#define MASK_BYTES 128                     /* 1024 CPUs */

long hosted_clone(unsigned long flags, void *stack_top, void (*fn)(int), int arg);

static long sys(long nr, long a, long b, long c)
{
    long ret;
    register long r10 __asm__("r10") = 0;
    register long r8 __asm__("r8") = -1;
    register long r9 __asm__("r9") = 0;
    if (nr == SYS_mmap)
        r10 = 0x22;                        /* MAP_PRIVATE | MAP_ANONYMOUS */
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static int allowed[1024], n_allowed;
static int asleep[MAX_THREADS];
static void (*the_worker)(int);

static void pin(int core)
{
    uint64_t mask[MASK_BYTES / 8] = {0};
    int cpu = allowed[core % n_allowed];
    mask[cpu / 64] |= 1ull << (cpu % 64);
    sys(SYS_sched_setaffinity, 0, MASK_BYTES, (long)mask);
}

static void thread_main(int core)
{
    pin(core);
    the_worker(core);
}

int platform_cores_start(int wanted, int test, void (*worker)(int core), int *found)
{
    (void)test;
    uint64_t mask[MASK_BYTES / 8] = {0};
    long got = sys(SYS_sched_getaffinity, 0, MASK_BYTES, (long)mask);
    n_allowed = 0;
    for (int cpu = 0; got > 0 && cpu < (int)got * 8 && cpu < 1024; cpu++)
        if (mask[cpu / 64] >> (cpu % 64) & 1)
            allowed[n_allowed++] = cpu;
    if (n_allowed == 0)
        allowed[n_allowed++] = 0;
    *found = n_allowed;
    int n = wanted ? wanted : n_allowed;
    if (n <= 1)
        return 1;
    the_worker = worker;
    pin(0);
    int running = 1;
    for (int core = 1; core < n; core++) {
        long stack = sys(SYS_mmap, 0, STACK_BYTES, 3);   /* PROT_READ | PROT_WRITE */
        if (stack < 0 && stack > -4096)
            break;
        if (hosted_clone(CLONE_FLAGS, (void *)(stack + STACK_BYTES), thread_main, core) < 0)
            break;
        running++;
    }
    return running;
}

void platform_spin(unsigned spins)
{
    if ((spins & 255) == 255)
        sys(SYS_sched_yield, 0, 0, 0);
    else
        __asm__ volatile("pause" ::: "memory");
}

static long futex(uint32_t *word, long op, uint32_t val, const long *timeout)
{
    long ret;
    register long r10 __asm__("r10") = (long)timeout;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(SYS_futex), "D"(word), "S"(op), "d"(val), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

int platform_wait(int core, uint32_t *word, uint32_t seen, unsigned spins)
{
    static uint64_t since[MAX_THREADS];
    if (core <= 0 || core >= MAX_THREADS) {
        platform_spin(spins);
        return 0;
    }
    uint64_t now = platform_cycles();
    if (spins == 0)
        since[core] = now;
    if (now - since[core] < platform_cycles_per_second() / 1000000 * PARK_US) {
        platform_spin(spins);
        return 0;
    }
    static const long timeout[2] = {0, FUTEX_MS * 1000000L};
    __atomic_store_n(&asleep[core], 1, __ATOMIC_SEQ_CST);
    futex(word, FUTEX_WAIT_PRIVATE, seen, timeout);        /* returns at once if *word != seen */
    __atomic_store_n(&asleep[core], 0, __ATOMIC_RELAXED);
    return 1;
}

void platform_wake(int core, uint32_t *word)
{
    if (core <= 0 || core >= MAX_THREADS)
        return;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);               /* the word's store before the flag's load */
    if (__atomic_load_n(&asleep[core], __ATOMIC_RELAXED))
        futex(word, FUTEX_WAKE_PRIVATE, 1, 0);
}
