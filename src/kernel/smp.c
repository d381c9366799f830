/* smp.c - starting the application processors (APs): INIT-SIPI-SIPI.
 *
 * Promises: platform_cores_start() lists the CPUs from the ACPI MADT (acpi.c), enables the
 * BSP's local APIC (lapic.c), copies the real-mode trampoline (trampoline.S) to a free 4 KiB
 * page below 1 MiB taken from the loader's memory map, and starts the APs one at a time in
 * MADT order: INIT, 10 ms, STARTUP, 200 us, STARTUP (Intel SDM vol. 3A 8.4.4.1), then waits at
 * most 500 ms for the AP to reach the trampoline and at most 500 ms more for it to load its
 * own GDT/TSS/IDT/GS base (percpu.c) in ap_main().  An AP that misses either deadline is named
 * on the console and left out; one that ran but never reported stops further start-ups (it may
 * still be using the shared boot stack slot).  A MADT that cannot be read gives one console line
 * naming the fault and a single-core run.  Started APs wait until every start-up is over, then
 * call the runtime's worker.  Each AP has a 64 KiB stack with an unmapped guard page below it
 * (paging.c; an overflow is a #PF the exception report names as a stack overflow) and a 16 KiB
 * IST1 stack from the arena.
 */
#include <string.h>

#include <bareflow/platform.h>
#include "io.h"
#include "kernel.h"

#define AP_STACK (64 * 1024)
#define AP_IST_STACK (16 * 1024)
#define GUARD 4096                         /* unmapped page below each AP stack (paging.c) */
#define ANSWER_MS 500
#define LOW_PAGE_MIN 0x1000ull
#define LOW_PAGE_MAX 0x9F000ull            /* below the EBDA; the SIPI vector holds page >> 12 */

struct trampoline_data {                   /* mirrors trampoline.S */
    volatile uint32_t alive;
    uint32_t cr3;
    uint32_t far_offset;
    uint16_t far_selector;
    uint16_t gdt_limit;
    uint32_t gdt_base;
    uint32_t reserved;
    uint64_t entry;
};
_Static_assert(__builtin_offsetof(struct trampoline_data, gdt_limit) == 14 &&
               __builtin_offsetof(struct trampoline_data, entry) == 24, "trampoline.S's data block layout");

extern const char ap_trampoline_start[], ap_trampoline_end[], ap_trampoline_data[], ap_trampoline_long[];
extern void ap_start64(void);
extern uint64_t kernel_gdt[];
extern uint64_t ap_boot_stack, ap_boot_cpu;       /* boot.S: what ap_start64 loads */

void ap_main(struct percpu *p) __attribute__((noreturn));

static uint64_t rsdp_hint;

void smp_set_rsdp(uint64_t rsdp)
{
    rsdp_hint = rsdp;
}

void platform_spin(unsigned spins)
{
    (void)spins;
    __asm__ volatile("pause" ::: "memory");
}

/* ---- the trampoline page ---- */

struct low_pick {
    uint64_t page;
};

static int reserved_by_loader(uint64_t page)
{
    struct mem_range r[160];
    size_t n = multiboot_reserved(r, 160);
    for (size_t i = 0; i < n; i++)
        if (page < r[i].end && page + 4096 > r[i].start)
            return 1;
    return 0;
}

static void pick_low(uint64_t start, uint64_t end, void *ctx)
{
    struct low_pick *pick = ctx;
    start = (start + 4095) & ~4095ull;
    for (uint64_t p = start; p + 4096 <= end && p <= LOW_PAGE_MAX; p += 4096)
        if (p >= LOW_PAGE_MIN && p > pick->page && !reserved_by_loader(p))
            pick->page = p;
}

static struct trampoline_data *install_trampoline(uint64_t page)
{
    size_t size = (size_t)(ap_trampoline_end - ap_trampoline_start);
    memcpy((void *)(uintptr_t)page, ap_trampoline_start, size);
    struct trampoline_data *d =
        (struct trampoline_data *)(uintptr_t)(page + (uint64_t)(ap_trampoline_data - ap_trampoline_start));
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    d->alive = 0;
    d->cr3 = (uint32_t)cr3;
    d->far_offset = (uint32_t)(page + (uint64_t)(ap_trampoline_long - ap_trampoline_start));
    d->far_selector = 0x08;
    d->gdt_limit = 5 * 8 - 1;
    d->gdt_base = (uint32_t)(uintptr_t)kernel_gdt;
    d->entry = (uint64_t)(uintptr_t)ap_start64;
    return d;
}

/* ---- one AP ---- */

/* smp_test=ap-stack-overflow: recurse until the stack runs into its guard page. */
static __attribute__((noinline)) unsigned overflow(volatile unsigned char *up)
{
    volatile unsigned char frame[512];
    frame[0] = up ? up[0] + 1 : 0;
    return overflow(frame) + frame[1];      /* not a tail call: every frame stays */
}

void ap_main(struct percpu *p)
{
    percpu_load_ap(p);
    __atomic_store_n(&p->state, PERCPU_UP, __ATOMIC_RELEASE);
    while (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != PERCPU_RELEASED)
        __asm__ volatile("pause");
    if (p->test_overflow)
        overflow(0);
    p->worker(p->index);
    halt_forever();
    __builtin_unreachable();
}

static int wait_until(volatile uint32_t *word, uint32_t above, volatile int *state, int want)
{
    uint64_t deadline = rdtsc() + tsc_ms_cycles(ANSWER_MS);
    while (rdtsc() < deadline) {
        if (word && *word > above)
            return 1;
        if (state && __atomic_load_n(state, __ATOMIC_ACQUIRE) == want)
            return 1;
        __asm__ volatile("pause");
    }
    return 0;
}

static void report(uint32_t apic_id, const char *what)
{
    console_hold();
    kputs("bareflow-kernel: cpu with APIC id ");
    kput_dec(apic_id);
    kputs(": ");
    kputs(what);
    kputs("\n");
    console_release();
}

enum { AP_STARTED, AP_SILENT, AP_STUCK };

static int start_ap(struct trampoline_data *d, uint8_t vector, struct percpu *p)
{
    uint32_t alive = d->alive;
    ap_boot_stack = (uint64_t)(uintptr_t)p->stack_top;
    ap_boot_cpu = (uint64_t)(uintptr_t)p;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (lapic_send_init(p->apic_id) != 0) {
        report(p->apic_id, "INIT IPI not delivered within 100 ms; left out");
        return AP_SILENT;
    }
    udelay(10000);
    for (int i = 0; i < 2; i++) {
        if (lapic_send_sipi(p->apic_id, vector) != 0) {
            report(p->apic_id, "STARTUP IPI not delivered within 100 ms; left out");
            return AP_SILENT;
        }
        udelay(200);
    }
    if (!wait_until(&d->alive, alive, NULL, 0)) {
        report(p->apic_id, "no answer to INIT-SIPI-SIPI within 500 ms; left out");
        return AP_SILENT;
    }
    if (!wait_until(NULL, 0, &p->state, PERCPU_UP)) {
        report(p->apic_id, "ran the trampoline but did not reach the kernel within 500 ms; "
                           "left out, and no further APs are started");
        return AP_STUCK;
    }
    return AP_STARTED;
}

/* ---- the platform entry ---- */

int platform_cores_start(int wanted, int test, void (*worker)(int core), int *found)
{
    static struct acpi_cpus cpus;
    static int called;
    *found = 1;
    if (called++)
        return 1;
    const char *why = acpi_find_cpus(rsdp_hint, test == PLATFORM_SMP_TEST_CORRUPT_MADT ? ACPI_TEST_CORRUPT_MADT : 0,
                                     &cpus);
    if (why) {
        console_hold();
        kputs("bareflow-kernel: ");
        kputs(why);
        kputs("; running on one core\n");
        console_release();
        return 1;
    }
    if (test == PLATFORM_SMP_TEST_PHANTOM_CPU && cpus.n < ACPI_MAX_CPUS) {
        uint32_t id = 0;                   /* an id no CPU has: one above the highest listed */
        for (int i = 0; i < cpus.n; i++)
            if (cpus.apic_id[i] >= id)
                id = cpus.apic_id[i] + 1;
        if (id < 0xFF) {                   /* 0xFF is the xAPIC broadcast id */
            cpus.apic_id[cpus.n++] = id;
            cpus.listed++;
            kputs("bareflow-kernel: smp_test=phantom-cpu: added APIC id ");
            kput_dec(id);
            kputs(" to the MADT's list\n");
        }
    }
    *found = cpus.listed ? cpus.listed : 1;
    lapic_init(cpus.lapic_base);
    uint32_t bsp_id = lapic_id();
    percpu_self()->apic_id = bsp_id;

    int running = 1;
    if (wanted == 1 || cpus.n <= 1)
        return 1;
    struct low_pick pick = {0};
    multiboot_for_each_ram(pick_low, &pick);
    if (!pick.page) {
        kputs("bareflow-kernel: no free 4 KiB page below 640 KiB for the AP trampoline; running on one core\n");
        return 1;
    }
    struct trampoline_data *d = install_trampoline(pick.page);

    static struct percpu *started[ACPI_MAX_CPUS];
    for (int i = 0; i < cpus.n && (wanted == 0 || running < wanted); i++) {
        if (cpus.apic_id[i] == bsp_id)
            continue;
        if (cpus.apic_id[i] > 0xFE && !lapic_is_x2apic()) {
            report(cpus.apic_id[i], "needs x2APIC mode, which this CPU lacks; left out");
            continue;
        }
        struct percpu *p = platform_alloc(sizeof *p, 64);
        uint8_t *stack = platform_alloc(GUARD + AP_STACK, 4096);   /* the guard page, then the stack */
        uint8_t *ist = platform_alloc(AP_IST_STACK, 4096);
        if (!p || !stack || !ist) {
            kputs("bareflow-kernel: arena exhausted while starting APs; no further APs\n");
            break;
        }
        p->index = running;
        p->apic_id = cpus.apic_id[i];
        p->stack_top = stack + GUARD + AP_STACK;
        if (paging_unmap((uint64_t)(uintptr_t)stack) == 0)
            p->guard = stack;
        else
            kputs("bareflow-kernel: no page for an AP stack's guard page table; that stack has no guard\n");
        p->test_overflow = test == PLATFORM_SMP_TEST_AP_STACK_OVERFLOW && running == 1;
        p->ist_top = ist + AP_IST_STACK;
        p->worker = worker;
        int r = start_ap(d, (uint8_t)(pick.page >> 12), p);
        if (r == AP_STARTED) {
            park_register(running, p->apic_id);
            started[running++] = p;
        }
        else if (r == AP_STUCK)
            break;
    }
    for (int i = 1; i < running; i++)
        __atomic_store_n(&started[i]->state, PERCPU_RELEASED, __ATOMIC_RELEASE);
    console_hold();
    kputs("bareflow-kernel: cores: MADT lists ");
    kput_dec((uint64_t)*found);
    kputs(", running ");
    kput_dec((uint64_t)running);
    kputs(lapic_is_x2apic() ? " (x2APIC)\n" : " (xAPIC)\n");
    console_release();
    return running;
}
