/* tls.c - the thread pointer (FS_BASE) of a core, and the program's TLS template.
 *
 * Promise: platform_set_thread_pointer writes FS_BASE (MSR 0xC0000100), so %fs-relative
 * accesses of code compiled for a TLS model reach the given TCB (the runtime's per-core TCBs,
 * src/runtime/tcb.c, used by llvm-libc's code and, with JIT=llvm, LLVM's).  platform_tls_template
 * describes the TLS template the JIT=llvm linker script (src/jit/llvm/kernel_llvm.ld) places
 * between __tdata_start and __tls_end, 64-byte aligned; the JIT=none kernel has none and the
 * symbols are weak, so it reports -1.
 */
#include <bareflow/platform.h>

#define MSR_FS_BASE 0xC0000100u
#define TLS_ALIGN 64              /* ALIGN(64) of .tdata and .tbss in kernel_llvm.ld */

extern const uint8_t __tdata_start[] __attribute__((weak));
extern const uint8_t __tdata_end[] __attribute__((weak));
extern const uint8_t __tls_end[] __attribute__((weak));

void platform_set_thread_pointer(void *tp)
{
    uint64_t v = (uint64_t)(uintptr_t)tp;
    __asm__ volatile("wrmsr" : : "c"(MSR_FS_BASE), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

int platform_tls_template(const void **init, size_t *init_size, size_t *mem_size, size_t *align)
{
    if (!__tdata_start || !__tls_end)
        return -1;
    *init = __tdata_start;
    *init_size = (size_t)(__tdata_end - __tdata_start);
    *mem_size = (size_t)(__tls_end - __tdata_start);
    *align = TLS_ALIGN;
    return 0;
}
