/* isr.S - entry stubs for the 32 CPU exception vectors.
 *
 * Promise: every stub leaves the same frame for kernel_exception() - vector, error code (0
 * when the CPU pushes none), then the CPU's own RIP/CS/RFLAGS/RSP/SS - and calls it with a
 * 16-byte aligned stack.  kernel_exception() never returns; if it somehow did, we halt.
 * The stubs run on the IST1 stack (see idt.c), so even a blown kernel stack is reported.
 */

    .macro STUB vec, has_err
isr_stub_\vec:
    .if \has_err == 0
    pushq $0
    .endif
    pushq $\vec
    jmp isr_common
    .endm

    .section .text
    .balign 16
    .globl isr_stub_2             /* park.S's NMI entry hands the BSP's NMIs on to it */
    STUB 0, 0
    STUB 1, 0
    STUB 2, 0
    STUB 3, 0
    STUB 4, 0
    STUB 5, 0
    STUB 6, 0
    STUB 7, 0
    STUB 8, 1
    STUB 9, 0
    STUB 10, 1
    STUB 11, 1
    STUB 12, 1
    STUB 13, 1
    STUB 14, 1
    STUB 15, 0
    STUB 16, 0
    STUB 17, 1
    STUB 18, 0
    STUB 19, 0
    STUB 20, 0
    STUB 21, 1
    STUB 22, 0
    STUB 23, 0
    STUB 24, 0
    STUB 25, 0
    STUB 26, 0
    STUB 27, 0
    STUB 28, 0
    STUB 29, 1
    STUB 30, 1
    STUB 31, 0

isr_common:
    cld
    movq %rsp, %rdi
    andq $-16, %rsp
    call kernel_exception
1:  cli
    hlt
    jmp 1b

    .section .rodata
    .balign 8
    .globl isr_stub_table
isr_stub_table:
    .quad isr_stub_0
    .quad isr_stub_1
    .quad isr_stub_2
    .quad isr_stub_3
    .quad isr_stub_4
    .quad isr_stub_5
    .quad isr_stub_6
    .quad isr_stub_7
    .quad isr_stub_8
    .quad isr_stub_9
    .quad isr_stub_10
    .quad isr_stub_11
    .quad isr_stub_12
    .quad isr_stub_13
    .quad isr_stub_14
    .quad isr_stub_15
    .quad isr_stub_16
    .quad isr_stub_17
    .quad isr_stub_18
    .quad isr_stub_19
    .quad isr_stub_20
    .quad isr_stub_21
    .quad isr_stub_22
    .quad isr_stub_23
    .quad isr_stub_24
    .quad isr_stub_25
    .quad isr_stub_26
    .quad isr_stub_27
    .quad isr_stub_28
    .quad isr_stub_29
    .quad isr_stub_30
    .quad isr_stub_31
