/* paging.c - unmapping single 4 KiB pages of the identity map, for stack guard pages.
 *
 * Promises: paging_unmap(addr) makes the 4 KiB page holding `addr` (below 4 GiB) not present in
 * the page tables every core shares (boot.S: [0, 4 GiB) identity-mapped with 2 MiB pages, a few
 * regions through 4 KiB tables).  A 2 MiB page is first split into a 4 KiB table from the arena
 * with the same translations and flags, so nothing else changes; the calling core's TLB is
 * flushed (CR3 reload).  Cores started afterwards load the tables fresh.  Returns 0, or -1 when
 * the address is outside the map or the arena has no page left for the table.
 * Intel SDM vol. 3A 4.5 (4-level paging), 4.10.4 (TLB invalidation).
 */
#include <bareflow/platform.h>
#include "kernel.h"

#define PTE_PRESENT 0x1ull
#define PTE_WRITE 0x2ull
#define PTE_PWT 0x8ull
#define PTE_PCD 0x10ull
#define PTE_LARGE 0x80ull
#define ADDR_MASK 0x000FFFFFFFFFF000ull

extern uint64_t boot_page_tables[];        /* boot.S: pml4, pdpt, then 4 page directories */

int paging_unmap(uint64_t addr)
{
    uint64_t *pd = boot_page_tables + 2 * 512;
    uint64_t i = addr >> 21;
    if (i >= 4 * 512)
        return -1;
    uint64_t *pt;
    if (pd[i] & PTE_LARGE) {
        pt = platform_alloc(4096, 4096);
        if (!pt)
            return -1;
        uint64_t flags = pd[i] & (PTE_PRESENT | PTE_WRITE | PTE_PWT | PTE_PCD);
        for (uint64_t j = 0; j < 512; j++)
            pt[j] = ((i << 21) + (j << 12)) | flags;
        __atomic_store_n(&pd[i], (uint64_t)(uintptr_t)pt | PTE_PRESENT | PTE_WRITE, __ATOMIC_RELEASE);
    } else {
        pt = (uint64_t *)(uintptr_t)(pd[i] & ADDR_MASK);
    }
    __atomic_store_n(&pt[(addr >> 12) & 511], 0, __ATOMIC_RELEASE);
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0\n\tmov %0, %%cr3" : "=r"(cr3) : : "memory");
    return 0;
}
