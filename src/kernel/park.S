/* park.S - an idle AP's halt, and the NMI that wakes it (park.c).
 *
 * Promise: park_wait(word, seen) returns at once if *word != seen, else halts until an NMI.
 * The check and the HLT form one window [park_wait, park_hlt]: an NMI taken anywhere in it (or
 * during the HLT) returns to park_done, so a wake-up that lands between the check and the HLT
 * is never lost.  The NMI entry (vector 2 of idt.c's table) treats an NMI on an AP (its
 * IA32_APIC_BASE BSP flag clear) as that wake-up and returns; on the BSP it is reported like
 * every other CPU exception.  Interrupts stay off throughout (an NMI ignores IF).
 */
    .section .text
    .globl park_wait
park_wait:                      /* %rdi = word, %esi = seen */
    movl (%rdi), %eax
    cmpl %esi, %eax
    jne park_done
park_hlt:
    hlt
park_done:
    ret

    .globl nmi_entry
nmi_entry:
    pushq %rax
    pushq %rcx
    pushq %rdx
    movl $0x1B, %ecx            /* IA32_APIC_BASE; bit 8 = this core is the BSP */
    rdmsr
    testl $0x100, %eax
    jnz 2f
    movq 24(%rsp), %rax         /* the interrupted RIP */
    leaq park_wait(%rip), %rcx
    cmpq %rcx, %rax
    jb 1f
    leaq park_hlt(%rip), %rcx
    cmpq %rcx, %rax
    ja 1f
    leaq park_done(%rip), %rax  /* inside the window: skip the HLT */
    movq %rax, 24(%rsp)
1:  popq %rdx
    popq %rcx
    popq %rax
    iretq
2:  popq %rdx
    popq %rcx
    popq %rax
    jmp isr_stub_2
