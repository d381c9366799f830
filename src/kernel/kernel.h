/* kernel.h - interfaces between the files of the bare-metal platform (src/kernel/).
 *
 * Nothing here is visible to the runtime: it sees only bareflow/platform.h.  Each group of
 * declarations belongs to the file named in its comment.
 */
#ifndef BAREFLOW_KERNEL_H
#define BAREFLOW_KERNEL_H

#include <stddef.h>
#include <stdint.h>

/* serial.c: COM1 console.  Usable before anything else is initialised. */
void serial_init(void);
void kputs(const char *s);                 /* "\n" becomes "\r\n", like platform_console_write */
void kput_hex(uint64_t v);                 /* 0x-prefixed, no leading zeros */
void kput_dec(uint64_t v);

/* exit.c: print "BAREFLOW-PANIC: <msg>" and end the run with BF_EXIT_PANIC. */
void kernel_fail(const char *msg) __attribute__((noreturn));
void kernel_fail2(const char *msg, uint64_t value) __attribute__((noreturn)); /* msg then hex value */

/* idt.c: exception handlers for vectors 0-31 on their own stack (IST1). */
void idt_init(void);

/* multiboot.c: validates the loader's hand-over and remembers what the kernel needs. */
#define MULTIBOOT_LOADER_MAGIC 0x2BADB002u
struct mem_range { uint64_t start, end; };            /* [start, end) */
void multiboot_init(uint32_t magic, uint32_t info_addr);
/* Calls `fn` for every usable RAM range the loader reported. */
void multiboot_for_each_ram(void (*fn)(uint64_t start, uint64_t end, void *ctx), void *ctx);
/* Ranges the loader's hand-over occupies (info block, strings, memory map, modules). */
size_t multiboot_reserved(struct mem_range *out, size_t max);
size_t multiboot_module_count(void);

/* memory.c */
void memory_init(void);

/* tsc.c: tsc_ms_cycles() converts a time-out to TSC cycles (valid after tsc_init). */
void tsc_init(void);
uint64_t tsc_ms_cycles(uint32_t ms);

/* ata.c: probes the primary master; absent or unusable leaves platform_disk_sectors() 0. */
void ata_init(void);

/* Linker-script symbols (kernel.ld). */
extern char __kernel_start[], __kernel_end[];

#endif
