/* boot.S - from the loader's hand-over (32-bit Multiboot or 64-bit UEFI) to 64-bit C with SSE.
 *
 * Promises:
 *  - a Multiboot-1 header (a.out kludge, so the loader needs no ELF support) in the first
 *    8 KiB of the flat image, asking for the memory map and page-aligned modules;
 *  - right after it (header offset 32) the "BFU64" header naming _start64, the 64-bit entry
 *    the UEFI loader (src/uefi/) jumps to: RDI = 0x2BADB002, RSI = Multiboot info address,
 *    long mode, interrupts off, the kernel identity-mapped, RDX = the ACPI RSDP's address from the
 *    UEFI configuration table or 0 (docs/uefi.md);
 *  - both entries end in the same state: the loader's magic and info address reach
 *    kernel_main(magic, info, rsdp) unchanged (rsdp 0 on the Multiboot path), on this file's
 *    page tables, GDT, stack and CPU state;
 *  - a CPU without CPUID or long mode gets a BAREFLOW-PANIC line on COM1 and an
 *    isa-debug-exit failure code, then halts - it never runs 64-bit code;
 *  - 64-bit paging identity-maps [0, 4 GiB) with 2 MiB pages, except the first 2 MiB which
 *    use 4 KiB pages so that page 0 (NULL) and the page under the boot stack are not mapped;
 *  - SSE is on before any C runs (the C ABI passes floats in XMM registers); when the CPU
 *    has XSAVE and AVX, XCR0 enables x87|SSE|AVX so x86-64-v3 modules can run, and with
 *    AVX512F also opmask|ZMM_Hi256|Hi16_ZMM so x86-64-v4 modules can.  That set-up is one
 *    function, cpu_state_init, which every application processor calls too (ap_start64,
 *    the landing point of trampoline.S), so all cores run with the same CPU state;
 *  - nothing in this file uses SSE registers, so it runs before SSE is enabled.
 */

#define MB_MAGIC        0x1BADB002
#define MB_PAGE_ALIGN   (1 << 0)        /* modules start on 4 KiB boundaries */
#define MB_MEMORY_INFO  (1 << 1)        /* mem_lower/upper and the memory map */
#define MB_AOUT_KLUDGE  (1 << 16)       /* load addresses come from this header */
#define MB_FLAGS        (MB_PAGE_ALIGN | MB_MEMORY_INFO | MB_AOUT_KLUDGE)

#define COM1            0x3F8
#define DEBUG_EXIT_PORT 0xF4
#define STACK_SIZE      (512 * 1024)

#define PTE_PRESENT     0x001
#define PTE_WRITE       0x002
#define PTE_LARGE       0x080

/* ------------------------------------------------------------------------------------ */
    .section .multiboot, "a"
    .balign 4
multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long (0 - (MB_MAGIC + MB_FLAGS)) & 0xFFFFFFFF
    .long multiboot_header          /* header_addr */
    .long __kernel_start            /* load_addr: the first byte of the flat file */
    .long __load_end                /* load_end_addr: the last file byte + 1 */
    .long __kernel_end              /* bss_end_addr: the loader zeroes up to here */
    .long _start32                  /* entry_addr */

/* The UEFI loader's entry, at header offset 32.  The four u32 words sum to 0 mod 2^32; the
   assembler cannot negate a symbol, so kernel.ld computes the checksum. */
bfu64_header:
    .ascii "BFU64\0\0\0"
    .long _start64
    .long bfu64_checksum

/* ------------------------------------------------------------------------------------ */
/* Macros expanded once in 32-bit and once in 64-bit code: the assembler encodes the same
   instructions for each mode (32-bit address registers get an address-size prefix in 64-bit
   mode, which is fine: everything here lies below 4 GiB). */

/* Fills the zeroed .bss.boot page tables: [0, 4 GiB) identity-mapped, 2 MiB pages except the
   first 2 MiB (4 KiB pages without page 0 and the stack guard page) and, when the kernel is
   linked higher (JIT=llvm), the 2 MiB region holding the guard page (4 KiB pages without it;
   boot_guard_region, from the linker script, is that region's index, 0 for the plain kernel).
   Only the low 4 bytes of each entry are written; the high bytes are the zeroes the bss was
   cleared to.  Clobbers EAX, ECX, EDI. */
.macro BUILD_PAGE_TABLES
    /* Page directories: entry j maps [j*2 MiB, (j+1)*2 MiB). */
    movl $page_dirs, %edi
    xorl %ecx, %ecx
.Lpd\@:
    movl %ecx, %eax
    shll $21, %eax
    orl $(PTE_PRESENT | PTE_WRITE | PTE_LARGE), %eax
    movl %eax, (%edi, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb .Lpd\@

    /* The first 2 MiB through 4 KiB pages, minus page 0 and the stack guard page. */
    movl $pt_low, %edi
    movl $1, %ecx                   /* entry 0 stays zero: NULL faults */
.Lpt\@:
    movl %ecx, %eax
    shll $12, %eax
    cmpl $boot_stack_guard, %eax
    je .Lskip\@
    orl $(PTE_PRESENT | PTE_WRITE), %eax
    movl %eax, (%edi, %ecx, 8)
.Lskip\@:
    incl %ecx
    cmpl $512, %ecx
    jb .Lpt\@
    movl $page_dirs, %edi
    movl $(pt_low + PTE_PRESENT + PTE_WRITE), (%edi)

    /* The guard page's own region, when it is not the first. */
    movl $boot_guard_region, %eax
    testl %eax, %eax
    jz .Lguard_done\@
    movl $pt_guard, %edi
    xorl %ecx, %ecx
.Lptg\@:
    movl $boot_guard_region, %eax
    shll $9, %eax
    addl %ecx, %eax
    shll $12, %eax                  /* (region * 512 + ecx) * 4 KiB */
    cmpl $boot_stack_guard, %eax
    je .Lskipg\@
    orl $(PTE_PRESENT | PTE_WRITE), %eax
    movl %eax, (%edi, %ecx, 8)
.Lskipg\@:
    incl %ecx
    cmpl $512, %ecx
    jb .Lptg\@
    movl $boot_guard_region, %ecx
    movl $page_dirs, %edi
    movl $(pt_guard + PTE_PRESENT + PTE_WRITE), (%edi, %ecx, 8)
.Lguard_done\@:

    movl $pdpt, %edi
    movl $(page_dirs + PTE_PRESENT + PTE_WRITE), 0(%edi)
    movl $(page_dirs + 4096 + PTE_PRESENT + PTE_WRITE), 8(%edi)
    movl $(page_dirs + 8192 + PTE_PRESENT + PTE_WRITE), 16(%edi)
    movl $(page_dirs + 12288 + PTE_PRESENT + PTE_WRITE), 24(%edi)
    movl $pml4, %edi
    movl $(pdpt + PTE_PRESENT + PTE_WRITE), (%edi)
.endm

/* Writes the NUL-terminated string at ESI to COM1 (bounded waits: a missing UART must not
   hang us).  Clobbers EAX, EBX, ECX, EDX, ESI. */
.macro PUTS_COM1
.Lchar\@:
    movb (%esi), %bl
    testb %bl, %bl
    jz .Ldone\@
    movl $100000, %ecx
    movw $(COM1 + 5), %dx
.Lwait\@:
    inb %dx, %al
    testb $0x20, %al
    jnz .Lsend\@
    decl %ecx
    jnz .Lwait\@
.Lsend\@:
    movw $COM1, %dx
    movb %bl, %al
    outb %al, %dx
    incl %esi
    jmp .Lchar\@
.Ldone\@:
.endm

/* Reports the BAREFLOW-PANIC line at ESI on COM1 (115200 8N1, set up here: nothing else is),
   exits QEMU with status 3 and otherwise halts for good with interrupts off. */
.macro FAIL_ON_COM1
    movl %esi, %edi
    movw $(COM1 + 1), %dx
    xorb %al, %al
    outb %al, %dx                   /* no UART interrupts */
    movw $(COM1 + 3), %dx
    movb $0x80, %al
    outb %al, %dx                   /* DLAB on */
    movw $(COM1 + 0), %dx
    movb $1, %al
    outb %al, %dx                   /* divisor 1 = 115200 baud */
    movw $(COM1 + 1), %dx
    xorb %al, %al
    outb %al, %dx
    movw $(COM1 + 3), %dx
    movb $0x03, %al
    outb %al, %dx                   /* 8N1, DLAB off */
    movl %edi, %esi
    PUTS_COM1
    movw $DEBUG_EXIT_PORT, %dx
    movl $1, %eax                   /* BF_EXIT_PANIC: QEMU exits with status 3 */
    outl %eax, %dx
    movl $msg_halt, %esi            /* still running: real hardware, say so and stop */
    PUTS_COM1
.Lhalt\@:
    cli
    hlt
    jmp .Lhalt\@
.endm

/* ------------------------------------------------------------------------------------ */
    .section .data
    .balign 16
    .globl kernel_gdt
kernel_gdt:
    .quad 0                         /* 0x00 null */
    .quad 0x00AF9A000000FFFF        /* 0x08 ring-0 64-bit code (L=1) */
    .quad 0x00CF92000000FFFF        /* 0x10 ring-0 data */
    .quad 0, 0                      /* 0x18 TSS: idt.c fills it (IST stack for faults) */
kernel_gdt_end:

    .balign 4
gdt_pointer:
    .word kernel_gdt_end - kernel_gdt - 1
    .quad kernel_gdt                /* lgdt in 32-bit mode reads only the low 4 bytes */

boot_magic: .long 0
boot_info:  .long 0
    .balign 8
boot_rsdp:  .quad 0                  /* UEFI: the ACPI RSDP from the configuration table */

msg_no_cpuid:
    .asciz "BAREFLOW-PANIC: this CPU has no CPUID instruction, so no 64-bit long mode\r\n"
msg_no_long_mode:
    .asciz "BAREFLOW-PANIC: this CPU lacks 64-bit long mode (CPUID 0x80000001 EDX bit 29)\r\n"
msg_la57:
    .asciz "BAREFLOW-PANIC: the UEFI firmware runs with 5-level paging (CR4.LA57); unsupported\r\n"
msg_halt:
    .asciz "BAREFLOW-HALT code=1\r\n"

/* ------------------------------------------------------------------------------------ */
    .section .bss.boot, "aw", @nobits     /* kernel.ld puts it first in .bss, below 2 MiB */
    .balign 4096
    .globl boot_page_tables
boot_page_tables:
pml4:       .skip 4096
pdpt:       .skip 4096
page_dirs:  .skip 4 * 4096          /* one per GiB: 2048 entries of 2 MiB */
pt_low:     .skip 4096              /* 4 KiB pages for [0, 2 MiB) */
pt_guard:   .skip 4096              /* 4 KiB pages for the guard page's region, if not the first */
    .globl boot_stack_guard, boot_stack_top
boot_stack_guard:
    .skip 4096                      /* left unmapped: an overflow faults instead of corrupting */
boot_stack_bottom:
    .skip STACK_SIZE
boot_stack_top:

/* ------------------------------------------------------------------------------------ */
    .section .text.boot, "ax"
    .code32
    .globl _start32
_start32:
    cli
    cld
    movl %eax, boot_magic
    movl %ebx, boot_info

    /* The loader should zero the bss (bss_end_addr), but a warm reboot or a lazy loader
       may not, and the page tables below rely on zeroed memory. */
    movl $__bss_start, %edi
    movl $__kernel_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl

    movl $boot_stack_top, %esp

    /* CPUID exists iff EFLAGS.ID (bit 21) can be toggled. */
    pushfl
    popl %eax
    movl %eax, %ecx
    xorl $(1 << 21), %eax
    pushl %eax
    popfl
    pushfl
    popl %eax
    pushl %ecx
    popfl
    cmpl %eax, %ecx
    je no_cpuid

    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb no_long_mode
    movl $0x80000001, %eax
    cpuid
    testl $(1 << 29), %edx
    jz no_long_mode

    BUILD_PAGE_TABLES

    movl $pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $(1 << 5), %eax             /* PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx          /* EFER */
    rdmsr
    orl $(1 << 8), %eax             /* LME */
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax   /* PG, WP, PE */
    movl %eax, %cr0

    lgdt gdt_pointer
    ljmp $0x08, $start64

no_cpuid:
    movl $msg_no_cpuid, %esi
    jmp fail32
no_long_mode:
    movl $msg_no_long_mode, %esi
fail32:
    FAIL_ON_COM1

/* ------------------------------------------------------------------------------------ */
    .code64
/* The UEFI loader's entry (after ExitBootServices): 64-bit mode on the firmware's identity
   mapping, RDI = loader magic, RSI = info address (below 4 GiB), RSP anywhere.  Everything the
   firmware set up is replaced before C runs, so both entries reach start64 in the same state. */
    .globl _start64
_start64:
    cli
    cld
    movl %edi, boot_magic(%rip)
    movl %esi, boot_info(%rip)
    movq %rdx, %r10                 /* RDX = RSDP address or 0 (docs/uefi.md); the bss clear below
                                       does not touch .data, but rep stosl needs RDI/RCX */

    /* The UEFI loader zeroes the bss too; the page tables must not trust it. */
    movl $__bss_start, %edi
    movl $__kernel_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl                       /* RDI/RCX: the 32-bit moves cleared their high halves */
    movl $boot_stack_top, %esp      /* the firmware's stack may be anywhere; this is ours */
    movq %r10, boot_rsdp(%rip)

    /* Our tables are 4-level: LA57 cannot be switched off without leaving long mode. */
    movq %cr4, %rax
    testl $(1 << 12), %eax
    jz 1f
    movl $msg_la57, %esi
    FAIL_ON_COM1
1:
    BUILD_PAGE_TABLES

    /* CR4 = PAE alone, as on the Multiboot path (start64 adds the SSE bits): this also drops
       PGE, which flushes any global TLB entries left from the firmware's page tables. */
    movl $(1 << 5), %eax
    movq %rax, %cr4
    movl $pml4, %eax
    movq %rax, %cr3
    movq %cr0, %rax
    orl $(1 << 16), %eax            /* WP, as the Multiboot path sets it */
    movq %rax, %cr0

    lgdt gdt_pointer(%rip)
    pushq $0x08                     /* reload CS from our GDT */
    leaq start64(%rip), %rax
    pushq %rax
    lretq

/* ------------------------------------------------------------------------------------ */
start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs

    movabsq $boot_stack_top, %rsp
    call cpu_state_init
    xorl %ebp, %ebp
    movl boot_magic(%rip), %edi
    movl boot_info(%rip), %esi
    movq boot_rsdp(%rip), %rdx
    call kernel_main
11: cli
    hlt
    jmp 11b

/* ------------------------------------------------------------------------------------ */
/* cpu_state_init: the CPU state every core runs with - called by the BSP (start64) and by every
   AP (ap_start64) before any C, so all cores execute module code under the same CR0/CR4/XCR0.
   Needs a stack; preserves RBX (CPUID clobbers it); clobbers RAX, RCX, RDX, R8, R9. */
    .globl cpu_state_init
cpu_state_init:
    pushq %rbx
    /* SSE: no x87 emulation trap (EM=0), WAIT honours TS (MP=1), no lazy-FPU trap (TS=0);
       the OS supports FXSAVE and unmasked SIMD exceptions (OSFXSR, OSXMMEXCPT). */
    movq %cr0, %rax
    andq $~((1 << 2) | (1 << 3)), %rax
    orq $(1 << 1), %rax
    movq %rax, %cr0
    fninit
    movq %cr4, %rax
    orq $((1 << 9) | (1 << 10)), %rax
    movq %rax, %cr4

    /* AVX needs CR4.OSXSAVE and the YMM state enabled in XCR0, and only if the CPU
       offers both XSAVE (CPUID.1:ECX bit 26) and AVX (bit 28) and XCR0 may hold bit 2. */
    movl $1, %eax
    cpuid
    testl $(1 << 26), %ecx
    jz 9f
    movl %ecx, %r8d
    movq %cr4, %rax
    orq $(1 << 18), %rax
    movq %rax, %cr4
    movl $0x0D, %eax
    xorl %ecx, %ecx
    cpuid                           /* EAX = XCR0 bits the CPU supports */
    movl $3, %r9d                   /* x87 | SSE */
    testl $(1 << 28), %r8d
    jz 10f
    testl $4, %eax
    jz 10f
    orl $4, %r9d                    /* AVX (YMM upper halves) */
    /* AVX-512 needs opmask (bit 5), ZMM_Hi256 (6) and Hi16_ZMM (7) on top of AVX, and only
       if XCR0 may hold all three and CPUID.7.0:EBX reports AVX512F (bit 16). */
    andl $0xE0, %eax
    cmpl $0xE0, %eax
    jne 10f
    movl $7, %eax
    xorl %ecx, %ecx
    cpuid
    testl $(1 << 16), %ebx
    jz 10f
    orl $0xE0, %r9d
10: movl %r9d, %eax
    xorl %edx, %edx
    xorl %ecx, %ecx
    xsetbv
9:
    popq %rbx
    ret

/* ------------------------------------------------------------------------------------ */
/* ap_start64: where the real-mode trampoline (trampoline.S) lands each application processor,
   in 64-bit mode on the kernel's page tables and GDT.  smp.c set ap_boot_stack and
   ap_boot_cpu before the SIPI and waits until ap_main() has taken them. */
    .globl ap_start64, ap_boot_stack, ap_boot_cpu
ap_start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq ap_boot_stack(%rip), %rsp
    call cpu_state_init
    xorl %ebp, %ebp
    movq ap_boot_cpu(%rip), %rdi
    call ap_main
12: cli
    hlt
    jmp 12b

    .section .data
    .balign 8
ap_boot_stack: .quad 0
ap_boot_cpu:   .quad 0
