/* platform.h - everything the portable runtime needs from the machine it runs on.
 *
 * Two implementations exist: the bare-metal kernel (src/kernel/: COM1, ATA PIO, isa-debug-exit,
 * identity-mapped memory) and the hosted Linux program (src/hosted/: stdout, the image file,
 * raw syscalls).  The runtime (src/runtime/) calls nothing else, so the two builds differ only
 * in this layer.  No function here returns on a fatal error except as documented.
 */
#ifndef BAREFLOW_PLATFORM_H
#define BAREFLOW_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

/* Console: the serial port (kernel) or stdout (hosted).  Bytes are written as given. */
void platform_console_write(const char *buf, size_t len);

/* The boot disk, in 512-byte sectors counted from the start of the whole disk (the MBR is 0).
 * Return 0 on success, negative if the device is absent or the transfer failed. */
int platform_disk_read(uint64_t lba, uint32_t count, void *buf);
int platform_disk_write(uint64_t lba, uint32_t count, const void *buf);
uint64_t platform_disk_sectors(void);          /* 0 when there is no disk */

/* Memory: one bump arena, never freed.  Returned blocks are zeroed, aligned to `align`
 * (a power of two, at most 4096) and executable (modules are placed in it).
 * Returns NULL when the arena is exhausted. */
void *platform_alloc(size_t size, size_t align);
size_t platform_arena_used(void);
size_t platform_arena_size(void);

/* Time: a monotonically increasing cycle counter (rdtsc) and its rate, calibrated at start-up. */
uint64_t platform_cycles(void);
uint64_t platform_cycles_per_second(void);

/* CPU features relevant to module ISA levels. */
int platform_cpu_has_x86_64_v3(void);          /* AVX2, FMA, BMI1/2, LZCNT, MOVBE, F16C */

/* Thread-local storage, for the JIT's platform layer for LLVM (docs/jit.md): make `tp` the
 * calling core's thread pointer (FS_BASE), and describe the program's static TLS template
 * (the PT_TLS segment: initialised bytes, total size, alignment).  platform_tls_template
 * returns -1 when the program has none. */
void platform_set_thread_pointer(void *tp);
int platform_tls_template(const void **init, size_t *init_size, size_t *mem_size, size_t *align);

/* Files the boot loader handed over (multiboot modules / UEFI), used when no disk answers.
 * Returns NULL when no file of that name (8.3 path, e.g. "/MODULES/RMSNORM.O2") was handed over. */
const void *platform_handed_file(const char *path, size_t *size);

/* End the run: exit code 0 = success.  Kernel: isa-debug-exit then halt; hosted: exit_group. */
void platform_exit(int code) __attribute__((noreturn));

#endif
