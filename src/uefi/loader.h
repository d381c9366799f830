/* loader.h - interfaces between the files of BOOTX64.EFI (src/uefi/).
 *
 * The loader runs in the firmware's 64-bit environment until ExitBootServices, then hands the
 * kernel a Multiboot-1 info block and jumps to its BFU64 entry (docs/uefi.md).  Each group of
 * declarations belongs to the file named in its comment.
 */
#ifndef BAREFLOW_UEFI_LOADER_H
#define BAREFLOW_UEFI_LOADER_H

#include "efi.h"

#define LOW_LIMIT 0x100000000ull            /* everything handed to the kernel lies below */
#define MAX_HANDED_FILES 160                /* the kernel's multiboot module limit */
#define MAX_PATH 64                         /* "/MODULES/RMSNORM.O2" and the like */

/* console.c: each line goes to the firmware console and to COM1.  Before ExitBootServices
 * COM1 is written directly only when the firmware console does not already reach a UART
 * (OVMF mirrors ConOut to the serial port); afterwards COM1 is the only console. */
extern EFI_SYSTEM_TABLE *g_st;
extern EFI_HANDLE g_image;
void con_init(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);
void con_boot_services_gone(void);
/* printf subset: %s, %u (uint64_t), %x (uint64_t, 0x-prefixed), %c. */
void say(const char *fmt, ...);
const char *status_name(EFI_STATUS status);
/* "BAREFLOW-PANIC: uefi: <message>" on every console, QEMU's isa-debug-exit told 1 (exit
 * status 3); then back to the firmware with `status` (or, after ExitBootServices, halt). */
__attribute__((noreturn)) void fail(EFI_STATUS status, const char *fmt, ...);

/* util.c: the memory functions the compiler may call, and small helpers. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
size_t ascii_len(const char *s);
/* Pages of LoaderData below 4 GiB; 0 when the firmware has none (status in *why). */
uint64_t alloc_low_pages(uint64_t bytes, EFI_STATUS *why);
uint64_t pages_for(uint64_t bytes);

/* volume.c: the FAT volume BOOTX64.EFI was loaded from. */
void vol_open(void);
/* Reads a whole file into fresh pages below 4 GiB (at least one page, even when empty).
 * Returns 0, or -1 when the file does not exist (`*why` says why); other errors stop the boot.
 * An out-of-memory below 4 GiB is reported as -2 with `*why` = EFI_OUT_OF_RESOURCES. */
int vol_read(const char *path, uint64_t *addr, uint64_t *size, EFI_STATUS *why);
/* Names of the regular files in directory `dir` ("/MODULES"), sorted, upper-cased; returns
 * how many (at most `max`; more is an error naming the directory).  0 when it is absent. */
size_t vol_list(const char *dir, char names[][MAX_PATH], size_t max);

/* kernel_image.c: KERNEL.BIN's multiboot + BFU64 headers, checked like
 * bareflow_plugins/kernel_recipe.check_multiboot, and the image placed at its address. */
struct kernel_image {
    uint32_t load_addr, load_end, bss_end, entry64;
};
void kernel_check(const uint8_t *data, uint64_t size, struct kernel_image *k);
void kernel_place(const uint8_t *data, const struct kernel_image *k);

/* handoff.c: the Multiboot-1 info block, the exit from boot services, the jump. */
void mb_init(size_t max_files);
void mb_add_file(const char *path, uint64_t addr, uint64_t size);
size_t mb_file_count(void);
/* rsdp: the ACPI RSDP's address (0 = none), passed to the kernel in RDX. */
__attribute__((noreturn)) void mb_exit_and_enter(const struct kernel_image *k, uint64_t rsdp);

#endif
