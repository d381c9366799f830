/* lapic.c - the bootstrap processor's local APIC, for start-up IPIs.
 *
 * Promises: lapic_init() enables the BSP's local APIC (IA32_APIC_BASE.EN, then the spurious-
 * vector register's software-enable bit) in x2APIC mode when CPUID.1:ECX[21] offers it or the
 * firmware already switched to it, else in xAPIC mode at the MMIO base the MADT names; the 2 MiB
 * page holding the xAPIC registers is remapped uncached (PCD|PWT).  Interrupts stay off: the
 * kernel takes none, so no vector is ever delivered.  IPIs go out through the ICR (MMIO 0x300/
 * 0x310, or MSR 0x830 in x2APIC mode); in xAPIC mode each send waits for the delivery-status
 * bit with a 100 ms time-out and reports failure instead of hanging.  udelay() spins on the TSC.
 * Intel SDM vol. 3A, 10.4 (APIC base), 10.6 (ICR), 10.12 (x2APIC MSRs).
 */
#include "io.h"
#include "kernel.h"

#define MSR_APIC_BASE 0x1B
#define APIC_BASE_EN (1ull << 11)
#define APIC_BASE_EXTD (1ull << 10)
#define REG_ID 0x20
#define REG_SVR 0xF0
#define REG_ICR_LOW 0x300
#define REG_ICR_HIGH 0x310
#define MSR_X2APIC(reg) (0x800 + ((reg) >> 4))
#define ICR_INIT 0x00000500u
#define ICR_STARTUP 0x00000600u
#define ICR_NMI 0x00000400u
#define ICR_ASSERT 0x00004000u
#define ICR_PENDING 0x00001000u
#define PDE_PWT 0x08ull
#define PDE_PCD 0x10ull

extern uint64_t boot_page_tables[];        /* boot.S: pml4, pdpt, then 4 page directories */

static volatile uint32_t *mmio;
static int x2apic;

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

void udelay(uint32_t us)
{
    uint64_t end = rdtsc() + tsc_ms_cycles(1) * us / 1000 + 1;
    while (rdtsc() < end)
        __asm__ volatile("pause");
}

static uint32_t reg_read(uint32_t reg)
{
    return x2apic ? (uint32_t)rdmsr(MSR_X2APIC(reg)) : mmio[reg / 4];
}

static void reg_write(uint32_t reg, uint32_t v)
{
    if (x2apic)
        wrmsr(MSR_X2APIC(reg), v);
    else
        mmio[reg / 4] = v;
}

/* The page directories of boot.S map [0, 4 GiB) with 2 MiB pages: entry base >> 21. */
static void map_uncached(uint64_t base)
{
    uint64_t *pd = boot_page_tables + 2 * 512;
    uint64_t i = base >> 21;
    if (i >= 4 * 512 || i == 0)
        return;
    pd[i] |= PDE_PCD | PDE_PWT;
    __asm__ volatile("invlpg (%0)" : : "r"((uintptr_t)(base & ~0x1FFFFFull)) : "memory");
}

void lapic_init(uint64_t mmio_base)
{
    uint32_t r[4];
    cpuid(1, 0, r);
    uint64_t msr = rdmsr(MSR_APIC_BASE);
    x2apic = (r[2] & (1u << 21)) || (msr & APIC_BASE_EXTD);
    if (x2apic) {
        wrmsr(MSR_APIC_BASE, msr | APIC_BASE_EN);          /* EN before EXTD (SDM 10.12.5) */
        wrmsr(MSR_APIC_BASE, msr | APIC_BASE_EN | APIC_BASE_EXTD);
    } else {
        if (!mmio_base || mmio_base >= 0x100000000ull)
            mmio_base = msr & 0xFFFFFF000ull;
        wrmsr(MSR_APIC_BASE, msr | APIC_BASE_EN);
        map_uncached(mmio_base);
        mmio = (volatile uint32_t *)(uintptr_t)mmio_base;
    }
    reg_write(REG_SVR, reg_read(REG_SVR) | 0x100 | 0xFF);   /* software enable, spurious 0xFF */
}

int lapic_is_x2apic(void)
{
    return x2apic;
}

uint32_t lapic_id(void)
{
    return x2apic ? reg_read(REG_ID) : reg_read(REG_ID) >> 24;
}

static int send(uint32_t apic_id, uint32_t low)
{
    if (x2apic) {
        wrmsr(MSR_X2APIC(REG_ICR_LOW), ((uint64_t)apic_id << 32) | low);
        return 0;
    }
    reg_write(REG_ICR_HIGH, apic_id << 24);
    reg_write(REG_ICR_LOW, low);
    uint64_t deadline = rdtsc() + tsc_ms_cycles(100);
    while (reg_read(REG_ICR_LOW) & ICR_PENDING) {
        if (rdtsc() > deadline)
            return -1;
        __asm__ volatile("pause");
    }
    return 0;
}

int lapic_send_init(uint32_t apic_id)
{
    return send(apic_id, ICR_INIT | ICR_ASSERT);
}

int lapic_send_sipi(uint32_t apic_id, uint8_t vector)
{
    return send(apic_id, ICR_STARTUP | ICR_ASSERT | vector);
}

int lapic_send_nmi(uint32_t apic_id)
{
    return send(apic_id, ICR_NMI | ICR_ASSERT);
}
