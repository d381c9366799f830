/* kernel.h - interfaces between the files of the bare-metal platform (src/kernel/).
 *
 * Nothing here is visible to the runtime: it sees only bareflow/platform.h.  Each group of
 * declarations belongs to the file named in its comment.
 */
#ifndef BAREFLOW_KERNEL_H
#define BAREFLOW_KERNEL_H

#include <stddef.h>
#include <stdint.h>

/* serial.c: COM1 console.  Usable before anything else is initialised. */
void serial_init(void);
void kputs(const char *s);                 /* "\n" becomes "\r\n", like platform_console_write */
void kput_hex(uint64_t v);                 /* 0x-prefixed, no leading zeros */
void kput_dec(uint64_t v);
void console_hold(void);                   /* keep the console for this core across writes */
void console_release(void);                /* one release per hold; the last one frees it */
void console_hold_new_line(void);          /* hold, and start a new line if mid-line */

/* exit.c: print "BAREFLOW-PANIC: <msg>" and end the run with BF_EXIT_PANIC. */
void kernel_fail(const char *msg) __attribute__((noreturn));
void kernel_fail2(const char *msg, uint64_t value) __attribute__((noreturn)); /* msg then hex value */

/* idt.c: exception handlers for vectors 0-31 on their own stack (IST1).  The IDT is shared by
 * every core; each core's TSS (the BSP's here, the APs' in percpu.c) names its own IST1 stack. */
void idt_init(void);
void idt_load(void);                       /* lidt of the shared table, on the calling core */

struct tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
} __attribute__((packed));
/* A 16-byte TSS descriptor for GDT slots [3], [4] (selector 0x18). */
void tss_descriptor(uint64_t gdt[5], const struct tss64 *tss);

/* multiboot.c: validates the loader's hand-over and remembers what the kernel needs. */
#define MULTIBOOT_LOADER_MAGIC 0x2BADB002u
struct mem_range { uint64_t start, end; };            /* [start, end) */
void multiboot_init(uint32_t magic, uint32_t info_addr);
/* Calls `fn` for every usable RAM range the loader reported. */
void multiboot_for_each_ram(void (*fn)(uint64_t start, uint64_t end, void *ctx), void *ctx);
/* Ranges the loader's hand-over occupies (info block, strings, memory map, modules). */
size_t multiboot_reserved(struct mem_range *out, size_t max);
size_t multiboot_module_count(void);

/* memory.c */
void memory_init(void);

/* tsc.c: tsc_ms_cycles() converts a time-out to TSC cycles (valid after tsc_init). */
void tsc_init(void);
uint64_t tsc_ms_cycles(uint32_t ms);

/* acpi.c: the processors the firmware lists in the MADT (docs/smp.md). */
#define ACPI_MAX_CPUS 64
struct acpi_cpus {
    uint32_t apic_id[ACPI_MAX_CPUS];       /* enabled local (x2)APIC entries, in MADT order */
    int n;
    int listed;                            /* enabled entries in the MADT, even past the limit */
    uint64_t lapic_base;                   /* physical xAPIC base (MADT, or its override entry) */
};
#define ACPI_TEST_CORRUPT_MADT 1           /* smp_test=corrupt-madt: break the parsed copy */
/* Fills *out from RSDP -> XSDT/RSDT -> MADT.  `rsdp_hint` is the UEFI loader's RSDP (0: scan
 * the EBDA and 0xE0000-0xFFFFF like a BIOS OS).  Returns NULL, or a message naming what is
 * wrong (absent RSDP, bad checksum, corrupt MADT entry ...); then *out lists no CPU. */
const char *acpi_find_cpus(uint64_t rsdp_hint, int test, struct acpi_cpus *out);

/* lapic.c: the BSP's local APIC, xAPIC through MMIO or x2APIC through MSRs when CPUID offers it. */
void lapic_init(uint64_t mmio_base);       /* mmio_base 0: take IA32_APIC_BASE */
int lapic_is_x2apic(void);
uint32_t lapic_id(void);                   /* the calling core's APIC id */
/* Send INIT (assert) or a STARTUP IPI with `vector` (page number of the trampoline) to
 * `apic_id`; returns 0, or -1 when the xAPIC's delivery status never cleared (100 ms). */
int lapic_send_init(uint32_t apic_id);
int lapic_send_sipi(uint32_t apic_id, uint8_t vector);
int lapic_send_nmi(uint32_t apic_id);      /* park.c's wake-up; an AP accepts it even software-disabled */
void udelay(uint32_t us);                  /* busy wait on the TSC (valid after tsc_init) */

/* paging.c: make one 4 KiB page of the identity map not present (a stack guard page). */
int paging_unmap(uint64_t addr);

/* park.c: idle APs halt (park.S) until the BSP's NMI; smp.c registers each started AP. */
void park_register(int core, uint32_t apic_id);

/* percpu.c: one record per core, reached through GS base (docs/smp.md "per-CPU layout"). */
struct percpu {
    struct percpu *self;                   /* %gs:0 - so C can find its own record */
    int index;                             /* 0 = BSP, then APs in start order */
    uint32_t apic_id;
    uint64_t gdt[5] __attribute__((aligned(16)));  /* null, code 0x08, data 0x10, TSS 0x18 */
    struct tss64 tss __attribute__((aligned(16)));
    uint8_t *stack_top;                    /* APs: the kernel stack smp.c allocated */
    uint8_t *guard;                        /* APs: the unmapped page below it (0 if none) */
    int test_overflow;                     /* smp_test=ap-stack-overflow: this AP overflows */
    uint8_t *ist_top;                      /* IST1: exceptions */
    volatile int state;                    /* smp.c: PERCPU_* */
    void (*worker)(int core);
};
enum { PERCPU_OFF, PERCPU_UP, PERCPU_RELEASED };
void percpu_init_bsp(struct percpu *p);    /* GS base only: boot.S/idt.c set up its GDT/TSS/IDT */
void percpu_load_ap(struct percpu *p);     /* own GDT, TSS (IST1), the shared IDT, GS base */
struct percpu *percpu_self(void);

/* smp.c: INIT-SIPI-SIPI start-up; platform_cores_start (platform.h) calls it. */
void smp_set_rsdp(uint64_t rsdp);

/* ata.c: probes the primary master; absent or unusable leaves platform_disk_sectors() 0. */
void ata_init(void);

/* Linker-script symbols (kernel.ld). */
extern char __kernel_start[], __kernel_end[];

#endif
