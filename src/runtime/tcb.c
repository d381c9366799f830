/* tcb.c - one thread control block per core at FS_BASE, and the C library symbols on it.
 *
 * Promises: after bf_tcb_init() (core 0, before any other core runs) every core 0..BF_MAX_CORES-1
 * has a TCB in the arena; bf_tcb_enter(core) makes it the calling core's thread pointer, and
 * the runtime calls it first thing on every core it runs (main.c, tokenize_main.c, parallel.c's
 * worker), so code built for a Linux host finds what it expects in every image:
 *   - the program's static TLS block (platform_tls_template: LLVM's thread-locals with JIT=llvm,
 *     none otherwise) copied below the thread pointer (x86-64 TLS variant II);
 *   - %fs:0 the TCB's own address, %fs:0x28 the stack-protector canary (glibc's tcbhead_t
 *     layout: the slots between and up to 0x80 stay zero), then errno and the core number;
 *   - __errno_location(): the calling core's errno;
 *   - __stack_chk_fail(): stops the run naming itself and the core.  It is weak: with JIT=llvm the
 *     platform layer's own (src/jit/llvm/libc_llvm.c) replaces it, aborting a compile in progress.
 * The canary is mixed from the TSC and the core number, with a zero low byte as glibc's is (a
 * string overrun stops at it); it only has to differ from what an overrun writes.
 */
#include <stddef.h>
#include <string.h>

#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "bareflow/tcb.h"
#include "rt.h"

#define TCB_MAGIC 0x42465443u           /* "BFTC" */

struct tcb {
    struct tcb *self;                   /* 0x00: %fs:0 */
    uint64_t glibc_slots[4];            /* 0x08: dtv, self, multiple_threads, gscope: zero */
    uint64_t canary;                    /* 0x28: %fs:0x28 */
    uint64_t reserved[10];              /* 0x30: pointer guard and the rest of tcbhead_t: zero */
    int errno_value;                    /* 0x80 */
    int core;
    uint32_t magic;
};
_Static_assert(offsetof(struct tcb, canary) == BF_TCB_CANARY_OFFSET, "canary slot");

static struct tcb *tcbs[BF_MAX_CORES];

void bf_tcb_init(void)
{
    const void *init = 0;
    size_t init_size = 0, mem_size = 0, align = 16;
    if (tcbs[0])
        return;
    if (platform_tls_template(&init, &init_size, &mem_size, &align) < 0)
        init_size = mem_size = 0;        /* no thread-locals: the TCB alone */
    if (!align || (align & (align - 1)) || align > 4096 || init_size > mem_size)
        bf_panic("TCB: the program's TLS template is malformed (size %zu of %zu, alignment %zu)", init_size,
                 mem_size, align);
    /* The linker placed each thread-local at tp - align_up(mem_size, p_align) + its offset. */
    size_t block = (mem_size + align - 1) & ~(align - 1), tp_align = align < 64 ? 64 : align;
    uint64_t mix = platform_cycles();
    for (int core = 0; core < BF_MAX_CORES; core++) {
        uint8_t *area = bf_alloc(block + sizeof(struct tcb) + tp_align, 64, "thread control blocks");
        uint8_t *tp = (uint8_t *)(((uintptr_t)area + block + tp_align - 1) & ~(uintptr_t)(tp_align - 1));
        memset(tp - block, 0, block + sizeof(struct tcb));
        if (init_size)
            memcpy(tp - block, init, init_size);
        struct tcb *t = (struct tcb *)tp;
        t->self = t;
        t->canary = ((mix + (uint64_t)core) * 0x9E3779B97F4A7C15ull) & ~(uint64_t)0xff;
        if (!t->canary)
            t->canary = 0x5a5a5a5a5a5a5a00ull;
        t->core = core;
        t->magic = TCB_MAGIC;
        tcbs[core] = t;
    }
    bf_tcb_enter(0, 0);
}

void *bf_tcb_enter(int core, uint64_t *canary)
{
    if (core < 0 || core >= BF_MAX_CORES || !tcbs[core])
        return 0;
    platform_set_thread_pointer(tcbs[core]);
    if (canary)
        *canary = tcbs[core]->canary;
    return tcbs[core];
}

static struct tcb *current(const char *who)
{
    struct tcb *t;
    __asm__ volatile("movq %%fs:0, %0" : "=r"(t));
    if (!t || t->self != t || t->magic != TCB_MAGIC)
        bf_panic("%s: this core has no thread control block at FS_BASE", who);
    return t;
}

int *__errno_location(void)
{
    return &current("__errno_location")->errno_value;
}

__attribute__((weak, noreturn)) void __stack_chk_fail(void)
{
    int core = -1;
    struct tcb *t;
    __asm__ volatile("movq %%fs:0, %0" : "=r"(t));
    if (t && t->self == t && t->magic == TCB_MAGIC)
        core = t->core;
    bf_panic("__stack_chk_fail: a stack-protector canary was overwritten (core %d): a stack overrun in code "
             "built with -fstack-protector", core);
}
