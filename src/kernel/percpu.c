/* percpu.c - each core's own descriptor tables and its per-CPU record.
 *
 * Promises: every core's GS base (MSR 0xC0000101) points at its struct percpu, whose first
 * field points at itself, so percpu_self() is one load from %gs:0.  The BSP keeps the GDT of
 * boot.S and the TSS of idt.c.  An AP gets a private copy of the kernel GDT (same code 0x08 and
 * data 0x10 segments) whose slot 0x18 is its own TSS, with IST1 on its own stack: a TSS cannot
 * be shared, since ltr marks it busy.  All cores load the one IDT (idt.c); an exception on an AP
 * is therefore reported like one on the BSP, on that AP's IST1 stack.
 */
#include "kernel.h"

#define MSR_GS_BASE 0xC0000101
#define TSS_SELECTOR 0x18

extern uint64_t kernel_gdt[];              /* boot.S */

static void set_gs_base(struct percpu *p)
{
    uint64_t v = (uint64_t)(uintptr_t)p;
    p->self = p;
    __asm__ volatile("wrmsr" : : "c"(MSR_GS_BASE), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

extern uint8_t boot_stack_guard[];         /* boot.S: the unmapped page below the BSP's stack */

void percpu_init_bsp(struct percpu *p)
{
    p->index = 0;
    p->guard = boot_stack_guard;
    set_gs_base(p);
}

void percpu_load_ap(struct percpu *p)
{
    for (int i = 0; i < 3; i++)
        p->gdt[i] = kernel_gdt[i];
    p->tss.ist[0] = (uint64_t)(uintptr_t)p->ist_top;
    p->tss.iomap_base = sizeof p->tss;
    tss_descriptor(p->gdt, &p->tss);
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) gdtr = { sizeof p->gdt - 1, (uint64_t)(uintptr_t)p->gdt };
    /* lgdt, then reload CS (0x08) with a far return and the data segments (0x10), then the TSS. */
    __asm__ volatile("lgdt %0\n\t"
                     "pushq $0x08\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\n\t"
                     "movw $0x10, %%ax\n\t"
                     "movw %%ax, %%ds\n\t"
                     "movw %%ax, %%es\n\t"
                     "movw %%ax, %%ss\n\t"
                     "ltr %w1"
                     : : "m"(gdtr), "r"((uint16_t)TSS_SELECTOR)
                     : "rax", "memory");
    idt_load();
    set_gs_base(p);
}

struct percpu *percpu_self(void)
{
    struct percpu *p;
    __asm__ volatile("movq %%gs:0, %0" : "=r"(p));
    return p;
}
