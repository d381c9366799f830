/* kmain.c - the order in which the kernel comes up, then the hand-over to the runtime.
 *
 * Promises: kernel_main() is entered once from boot.S in 64-bit mode with SSE on; it brings
 * up serial, exception handling, the BSP's per-CPU record, the memory arena, the TSC rate and
 * the disk - in that order, each needing only the ones before - prints one "bareflow-kernel:"
 * status line, calls bf_runtime_main() and passes its return value to platform_exit().  It
 * never returns.  The application processors are started later, when the runtime has read
 * how many cores to use (platform_cores_start, smp.c).
 */
#include <bareflow/platform.h>
#include <bareflow/runtime.h>
#include "kernel.h"

void kernel_main(uint32_t magic, uint32_t info_addr, uint64_t rsdp) __attribute__((noreturn));

void kernel_main(uint32_t magic, uint32_t info_addr, uint64_t rsdp)
{
    static struct percpu bsp;

    serial_init();
    idt_init();
    percpu_init_bsp(&bsp);
    smp_set_rsdp(rsdp);
    multiboot_init(magic, info_addr);
    memory_init();
    tsc_init();
    ata_init();

    kputs("bareflow-kernel: arena ");
    kput_dec(platform_arena_size() >> 20);
    kputs(" MiB, tsc ");
    kput_dec(platform_cycles_per_second() / 1000000);
    kputs(" MHz, disk ");
    kput_dec(platform_disk_sectors());
    kputs(" sectors, handed files ");
    kput_dec(multiboot_module_count());
    kputs(", cpu isa ");
    static const char *const isa_names[] = {"x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"};
    const char *missing;
    kputs(isa_names[platform_cpu_isa_level(&missing)]);
    if (*missing) {
        kputs(" (no ");
        kputs(missing);
        kputs(")");
    }
    kputs("\n");

    int code = bf_runtime_main();
    platform_exit(code);
}
