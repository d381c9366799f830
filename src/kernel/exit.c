/* exit.c - the only ways the kernel stops.
 *
 * Promises: platform_exit(code) writes to QEMU's isa-debug-exit port 0xF4 (code 0 -> 0x10 so
 * QEMU exits 33; code n -> n so QEMU exits 2n+1).  On real hardware, where that port does
 * nothing, it prints "BAREFLOW-HALT code=<n>" and halts with interrupts off, forever.
 * kernel_fail() prints "BAREFLOW-PANIC: <reason>" first and exits with BF_EXIT_PANIC.
 */
#include <bareflow/platform.h>
#include <bareflow/runtime.h>
#include "io.h"
#include "kernel.h"

#define DEBUG_EXIT_PORT 0xF4
#define DEBUG_EXIT_SUCCESS 0x10

void platform_exit(int code)
{
    outl(DEBUG_EXIT_PORT, code == 0 ? DEBUG_EXIT_SUCCESS : (uint32_t)code);
    console_hold_new_line();
    kputs("BAREFLOW-HALT code=");
    if (code < 0) {
        kputs("-");
        kput_dec((uint64_t)0 - (uint64_t)(int64_t)code);
    } else {
        kput_dec((uint64_t)code);
    }
    kputs("\n");
    halt_forever();
    __builtin_unreachable();
}

void kernel_fail(const char *msg)
{
    console_hold_new_line();
    kputs("BAREFLOW-PANIC: ");
    kputs(msg);
    kputs("\n");
    platform_exit(BF_EXIT_PANIC);
}

void kernel_fail2(const char *msg, uint64_t value)
{
    console_hold_new_line();
    kputs("BAREFLOW-PANIC: ");
    kputs(msg);
    kput_hex(value);
    kputs("\n");
    platform_exit(BF_EXIT_PANIC);
}
