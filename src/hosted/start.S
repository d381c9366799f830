/* start.S - process entry of bareflow-hosted.
 *
 * Linux starts a static executable at _start with argc, argv and envp on the stack and no
 * frame; hand the stack pointer to C with the 16-byte alignment the ABI promises at a call.
 */
    .text
    .globl _start
    .type _start, @function
_start:
    xor %ebp, %ebp
    mov %rsp, %rdi
    and $-16, %rsp
    call hosted_main
    ud2
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
