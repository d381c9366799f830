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

/* The highest module ISA level this CPU runs with the state the OS enabled: 0 = x86-64,
 * 1 = x86-64-v2, 2 = x86-64-v3, 3 = x86-64-v4 (bareflow/x86_isa.h).  *missing, if not NULL,
 * names the first feature of the next level up that is absent ("" at v4). */
int platform_cpu_isa_level(const char **missing);

/* Cores (docs/smp.md).  platform_cores_start() brings up to `wanted` cores in all into the run
 * (the calling core counts; 0 = every core the machine has) and makes each extra core call
 * worker(core) with core = 1 .. n-1, from its own stack; worker never returns.  Returns n >= 1,
 * the cores now running, and stores in *found how many the machine lists.  A core that does not
 * start in time is reported on the console and left out; nothing here hangs.  Call it once.
 * `test` simulates a fault for tests (smp_test= in /BAREFLOW.CFG; the hosted build ignores it). */
enum { PLATFORM_SMP_TEST_NONE, PLATFORM_SMP_TEST_PHANTOM_CPU, PLATFORM_SMP_TEST_CORRUPT_MADT,
       PLATFORM_SMP_TEST_AP_STACK_OVERFLOW };
int platform_cores_start(int wanted, int test, void (*worker)(int core), int *found);
/* One step of a spin-wait; `spins` counts the steps so far (the hosted build yields the CPU
 * to the OS after many, the kernel executes PAUSE). */
void platform_spin(unsigned spins);
/* One step of worker core `core`'s wait for *word to differ from `seen` (`spins` = steps so far):
 * spins at first, then may sleep until platform_wake(core, word) or, hosted, a time-out; the
 * caller re-reads the word after every step.  Returns 1 when this step slept (parked the core), 0
 * when it only spun (the runtime counts parks for the result line).  platform_wake() is called
 * after changing *word. */
int platform_wait(int core, uint32_t *word, uint32_t seen, unsigned spins);
void platform_wake(int core, uint32_t *word);

/* Thread-local storage, for the runtime's per-core TCBs (src/runtime/tcb.c, docs/libc.md): make `tp` the
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
