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

/* long hosted_clone(unsigned long flags, void *stack_top, void (*fn)(int), int arg)
 * clone(2) without libc: the child starts on stack_top with nothing to return to, so it pops
 * fn and arg that the parent left there, calls fn(arg) and ends its thread if fn returns.
 * Returns the child's thread id (or -errno) in the parent. */
    .globl hosted_clone
    .type hosted_clone, @function
hosted_clone:
    movq %rdx, -8(%rsi)
    movq %rcx, -16(%rsi)
    subq $16, %rsi
    movl $56, %eax                  /* SYS_clone(flags, newsp, ptid, ctid, tls) */
    xorl %edx, %edx
    xorl %r10d, %r10d
    xorl %r8d, %r8d
    syscall
    testq %rax, %rax
    jnz 1f
    xorl %ebp, %ebp                 /* the child */
    popq %rdi
    popq %rax
    call *%rax
    movl $60, %eax                  /* SYS_exit: this thread only */
    xorl %edi, %edi
    syscall
    ud2
1:  ret
    .size hosted_clone, . - hosted_clone

    .section .note.GNU-stack, "", @progbits
