/* jmp.S - setjmp/longjmp for the compile boundary (backend.c): callee-saved registers, the
 * stack pointer and the return address; nothing else survives a call in the SysV ABI. */
    .text
    .globl bf_llvm_setjmp
    .type bf_llvm_setjmp, @function
bf_llvm_setjmp:                 /* int bf_llvm_setjmp(uint64_t buf[8]) */
    mov %rbx, 0(%rdi)
    mov %rbp, 8(%rdi)
    mov %r12, 16(%rdi)
    mov %r13, 24(%rdi)
    mov %r14, 32(%rdi)
    mov %r15, 40(%rdi)
    lea 8(%rsp), %rdx           /* the caller's stack pointer after this call returns */
    mov %rdx, 48(%rdi)
    mov (%rsp), %rdx
    mov %rdx, 56(%rdi)
    xor %eax, %eax
    ret
    .size bf_llvm_setjmp, . - bf_llvm_setjmp

    .globl bf_llvm_longjmp
    .type bf_llvm_longjmp, @function
bf_llvm_longjmp:                /* void bf_llvm_longjmp(uint64_t buf[8], int value != 0) */
    mov 0(%rdi), %rbx
    mov 8(%rdi), %rbp
    mov 16(%rdi), %r12
    mov 24(%rdi), %r13
    mov 32(%rdi), %r14
    mov 40(%rdi), %r15
    mov 48(%rdi), %rsp
    mov %esi, %eax
    jmp *56(%rdi)
    .size bf_llvm_longjmp, . - bf_llvm_longjmp

    .section .note.GNU-stack, "", @progbits
