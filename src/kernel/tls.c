/* tls.c - the thread pointer of the boot core, for the JIT's platform layer for LLVM.
 *
 * Promise: platform_set_thread_pointer writes FS_BASE (MSR 0xC0000100), so %fs-relative
 * accesses of code compiled for a TLS model reach the given TCB.  The kernel image carries no
 * thread-local template today (kernel.ld places no .tdata/.tbss; LLVM is not linked into the
 * kernel yet), so platform_tls_template reports none.
 */
#include <bareflow/platform.h>

#define MSR_FS_BASE 0xC0000100u

void platform_set_thread_pointer(void *tp)
{
    uint64_t v = (uint64_t)(uintptr_t)tp;
    __asm__ volatile("wrmsr" : : "c"(MSR_FS_BASE), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

int platform_tls_template(const void **init, size_t *init_size, size_t *mem_size, size_t *align)
{
    (void)init;
    (void)init_size;
    (void)mem_size;
    (void)align;
    return -1;
}
