/* idt.c - CPU exceptions end the run with a readable report, never a triple fault.
 *
 * Promises: after idt_init() each of the 32 exception vectors prints
 *   BAREFLOW-PANIC: CPU exception <name> (vector N) error=0x.. rip=0x.. cr2=0x.. cpu C
 * and exits with BF_EXIT_PANIC.  The handlers run on a separate stack (IST1 in a TSS), so a
 * kernel stack overflow (which hits the unmapped guard page) is reported like any other
 * fault.  A fault inside the handler itself skips the printing and exits at once.
 * Vectors 32-255 have no gate: raising one becomes a #GP naming that vector in its error code.
 * Every core uses this one IDT (each with its own IST1 stack, percpu.c); "cpu C" names the core
 * (0 = BSP), once its GS base is set.  Exception: an NMI on an AP is the BSP waking a parked
 * core (park.S) and returns; only the BSP reports NMIs.
 */
#include <bareflow/platform.h>
#include <bareflow/runtime.h>
#include "io.h"
#include "kernel.h"

#define KERNEL_CS 0x08
#define TSS_SELECTOR 0x18
#define IST_STACK_SIZE (32 * 1024)

struct idt_gate {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t reserved;
} __attribute__((packed));

struct exception_frame {
    uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

extern uint64_t kernel_gdt[];                  /* boot.S; entries 3-4 are the TSS slot */
extern const uint64_t isr_stub_table[32];      /* isr.S */
extern void nmi_entry(void);                   /* park.S: an AP's wake-up, else isr.S's stub */

static struct idt_gate idt[32] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
static uint8_t ist_stack[IST_STACK_SIZE] __attribute__((aligned(16)));

static const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available", "#DF double fault",
    "coprocessor segment overrun", "#TS invalid TSS", "#NP segment not present",
    "#SS stack fault", "#GP general protection", "#PF page fault", "reserved 15",
    "#MF x87 floating point", "#AC alignment check", "#MC machine check",
    "#XM SIMD floating point", "#VE virtualization", "#CP control protection",
    "reserved 22", "reserved 23", "reserved 24", "reserved 25", "reserved 26", "reserved 27",
    "#HV hypervisor injection", "#VC VMM communication", "#SX security", "reserved 31",
};

void tss_descriptor(uint64_t gdt[5], const struct tss64 *t)
{
    uint64_t base = (uint64_t)(uintptr_t)t;
    uint64_t limit = sizeof *t - 1;
    gdt[3] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89ull << 40) |
             (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56);
    gdt[4] = base >> 32;
}

static void load_tss(void)
{
    tss.ist[0] = (uint64_t)(uintptr_t)(ist_stack + IST_STACK_SIZE);
    tss.iomap_base = sizeof tss;               /* no I/O bitmap */
    tss_descriptor(kernel_gdt, &tss);
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)TSS_SELECTOR) : "memory");
}

void idt_load(void)
{
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) ptr = { sizeof idt - 1, (uint64_t)(uintptr_t)idt };
    __asm__ volatile("lidt %0" : : "m"(ptr) : "memory");
}

void idt_init(void)
{
    load_tss();
    for (int v = 0; v < 32; v++) {
        uint64_t a = v == 2 ? (uint64_t)(uintptr_t)nmi_entry : isr_stub_table[v];
        idt[v].offset_low = (uint16_t)a;
        idt[v].selector = KERNEL_CS;
        idt[v].ist = 1;
        idt[v].type_attr = 0x8E;               /* present, ring 0, interrupt gate */
        idt[v].offset_mid = (uint16_t)(a >> 16);
        idt[v].offset_high = (uint32_t)(a >> 32);
        idt[v].reserved = 0;
    }
    idt_load();
}

void kernel_exception(struct exception_frame *f)
{
    static volatile int active;

    if (active) {                              /* faulted while reporting: just leave */
        outl(0xF4, BF_EXIT_PANIC);
        halt_forever();
    }
    active = 1;
    uint64_t v = f->vector;
    console_hold_new_line();                   /* whole, on its own line, even with other cores printing */
    kputs("BAREFLOW-PANIC: CPU exception ");
    kputs(v < 32 ? exception_names[v] : "unknown");
    kputs(" (vector ");
    kput_dec(v);
    kputs(") error=");
    kput_hex(f->error);
    kputs(" rip=");
    kput_hex(f->rip);
    kputs(" cr2=");
    kput_hex(read_cr2());
    uint32_t lo, hi;                           /* GS base 0: before percpu_init_bsp */
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0xC0000101));
    if (lo | hi) {
        struct percpu *p = percpu_self();
        kputs(" cpu ");
        kput_dec((uint64_t)p->index);
        uint64_t cr2 = read_cr2(), guard = (uint64_t)(uintptr_t)p->guard;
        if (v == 14 && guard && cr2 >= guard && cr2 < guard + 4096)
            kputs(": kernel stack overflow (the access hit the guard page below the core's stack)");
    }
    kputs("\n");
    platform_exit(BF_EXIT_PANIC);
}
