/* park.c - idle application processors halt instead of spinning.
 *
 * Promises: platform_wait() is one step of a worker core's wait for its mailbox word to change:
 * PAUSE for the first PARK_US microseconds of the wait (the gaps between the split points of a
 * token are shorter: the core stays hot), then park - mark the core parked and HLT (park.S)
 * unless the word already changed.  platform_wake(), called by the BSP after it changed a
 * word, sends the core an NMI when it is parked.  Parking and waking are ordered like Dekker's
 * flags (each side stores, full fence, loads the other's), so either the core sees the new word
 * before halting or the BSP sees it parked and wakes it; an NMI landing between the core's last
 * check and its HLT skips the HLT (park.S).  Why it matters: under QEMU's multi-threaded TCG
 * every virtual CPU is a host thread, and a spinning idle AP takes host CPU time from the BSP;
 * a halted one takes none.  A parked core never holds up the BSP: the BSP runs any chunk a
 * worker has not claimed (parallel.c), so a lost wake-up costs speed, never a hang.
 * MONITOR/MWAIT is not used: HLT + NMI works on every x86-64 CPU and needs no vector or EOI.
 */
#include <bareflow/platform.h>
#include "io.h"
#include "kernel.h"

#define PARK_US 2000

void park_wait(volatile uint32_t *word, uint32_t seen);      /* park.S */

static struct {
    uint32_t apic_id;
    int parked;
    uint64_t since;           /* TSC when the current wait began */
} cores[ACPI_MAX_CPUS] __attribute__((aligned(64)));

void park_register(int core, uint32_t apic_id)
{
    if (core > 0 && core < ACPI_MAX_CPUS)
        cores[core].apic_id = apic_id;
}

int platform_wait(int core, uint32_t *word, uint32_t seen, unsigned spins)
{
    if (core <= 0 || core >= ACPI_MAX_CPUS) {
        __asm__ volatile("pause" ::: "memory");
        return 0;
    }
    uint64_t now = rdtsc();
    if (spins == 0)
        cores[core].since = now;
    if (now - cores[core].since < tsc_ms_cycles(1) * PARK_US / 1000) {
        __asm__ volatile("pause" ::: "memory");
        return 0;
    }
    __atomic_store_n(&cores[core].parked, 1, __ATOMIC_SEQ_CST);
    park_wait(word, seen);
    __atomic_store_n(&cores[core].parked, 0, __ATOMIC_RELAXED);
    return 1;
}

void platform_wake(int core, uint32_t *word)
{
    (void)word;
    if (core <= 0 || core >= ACPI_MAX_CPUS)
        return;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);   /* the word's store before the flag's load */
    if (__atomic_load_n(&cores[core].parked, __ATOMIC_RELAXED))
        lapic_send_nmi(cores[core].apic_id);
}
