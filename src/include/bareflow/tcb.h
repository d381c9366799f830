/* tcb.h - each core's thread control block (TCB) at FS_BASE (src/runtime/tcb.c).
 *
 * Code built for a Linux host (Debian's llvm-libc, and LLVM itself with JIT=llvm) reads the
 * thread pointer: %fs:0 must hold the TCB's own address and %fs:0x28 the stack-protector
 * canary, errno lives per thread (`__errno_location`), and thread-local variables sit in the
 * static TLS block just below the thread pointer (x86-64 TLS variant II).  The runtime lays out
 * one TCB per core, so every image has them, whatever its libc provider or JIT.
 */
#ifndef BAREFLOW_TCB_H
#define BAREFLOW_TCB_H

#include <stddef.h>
#include <stdint.h>

#define BF_TCB_CANARY_OFFSET 0x28     /* where -fstack-protector code reads the canary (glibc's slot) */

/* Core 0, once, before other cores start: lay out cores 0..BF_MAX_CORES-1's TCBs from the arena
 * and make core 0's current.  Ends the run (bf_panic) when the arena is full or the program's
 * TLS template is malformed. */
void bf_tcb_init(void);
/* On core `core`: make its TCB current (FS_BASE).  Returns the thread pointer and stores the
 * TCB's canary in *canary (when not NULL); NULL when `core` is out of range or bf_tcb_init has
 * not run. */
void *bf_tcb_enter(int core, uint64_t *canary);

#endif
