/* trampoline.S - the first instructions an application processor (AP) runs.
 *
 * Promises: the bytes [ap_trampoline_start, ap_trampoline_end) are position-independent
 * real-mode code that smp.c copies to a free 4 KiB page below 1 MiB and names in the SIPI
 * vector (the AP starts at CS = page >> 4, IP = 0).  They go straight from real mode to
 * 64-bit long mode (PAE, EFER.LME, then CR0.PE|PG together, then a far jump to the 64-bit
 * code segment) on the page tables, GDT and entry point smp.c writes into the data block at
 * ap_trampoline_data before each SIPI; the first thing the AP does is increment `alive`
 * there, so the BSP can tell an AP that never ran from one that failed later.  The code is
 * never executed where the kernel links it (it lies in .rodata); it reaches kernel memory
 * only through the entry address, ap_start64 in boot.S.
 *
 * Data block layout (smp.c's struct trampoline_data mirrors it):
 *   +0  u32 alive        incremented by every AP that reaches the trampoline
 *   +4  u32 cr3          the kernel's PML4 (below 4 GiB)
 *   +8  u32 far_offset   linear address of ap_trampoline_long (page + offset), for the far jump
 *   +12 u16 far_selector 0x08, the kernel's 64-bit code segment
 *   +14 u16 gdt_limit    \ lgdtl operand: the kernel GDT
 *   +16 u32 gdt_base     /
 *   +20 u32 reserved
 *   +24 u64 entry        ap_start64
 */

#define DATA(field) (ap_trampoline_data - ap_trampoline_start + (field))

    .section .rodata
    .balign 16
    .globl ap_trampoline_start, ap_trampoline_end, ap_trampoline_data, ap_trampoline_long
    .code16
ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lock incl DATA(0)
    lgdtl DATA(14)
    movl $(1 << 5), %eax                /* CR4.PAE */
    movl %eax, %cr4
    movl DATA(4), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx              /* EFER.LME */
    rdmsr
    orl $(1 << 8), %eax
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax   /* PG, WP, PE: long mode (compatibility) */
    movl %eax, %cr0
    ljmpl *DATA(8)                      /* into the 64-bit code segment */

    .code64
ap_trampoline_long:
    movq ap_trampoline_data + 24(%rip), %rax
    jmp *%rax

    .balign 8
ap_trampoline_data:
    .long 0, 0, 0
    .word 0, 0
    .long 0, 0
    .quad 0
ap_trampoline_end:
