/* jit.h - the run-time compiler behind run-time tiers, as the portable runtime sees it.
 *
 * Two implementations: src/jit/none (JIT=none: no compiler, every call fails saying so) and
 * src/jit/llvm (JIT=llvm: LLVM 22's C API over the platform layer for LLVM, docs/jit.md).
 * A failing call returns -1 with a one-line reason in err and leaves the run intact; it never
 * panics.  One core at a time may call into the backend; any core may be that core (`core` is
 * the caller's index, 0..63: each core that runs the compiler gets its own thread pointer).
 */
#ifndef BAREFLOW_JIT_H
#define BAREFLOW_JIT_H

#include <stddef.h>

/* "LLVM 22.1.8", or NULL when the program was built with JIT=none. */
const char *bf_jit_backend(void);

/* Start the backend with `heap` (heap_size bytes) as its allocator's memory: the calling core's
 * thread pointer and TLS block, static constructors.  Called once, before the first compile. */
int bf_jit_init(void *heap, size_t heap_size, int core, char *err, size_t errlen);

/* Give the calling core (index `core`) its own TCB and TLS block, once; later calls reinstall
 * it.  bf_jit_compile does this itself; bf_jit_host needs it first on a core other than init's. */
int bf_jit_thread(int core, char *err, size_t errlen);

/* The CPU this code runs on as LLVM names it (LLVMGetHostCPUName / LLVMGetHostCPUFeatures). */
int bf_jit_host(char *cpu, size_t cpu_len, char *features, size_t features_len);

/* Compile LLVM bitcode at optimisation level 0..3 for `cpu` with `features` (LLVM's
 * "+avx2,-avx512f" syntax) to an ELF relocatable object; *obj stays valid until bf_jit_release. */
int bf_jit_compile(int core, const void *bitcode, size_t size, const char *name, int level, const char *cpu,
                   const char *features, void **obj, size_t *obj_size, char *err, size_t errlen);
void bf_jit_release(void *obj);

/* After a compile was aborted from inside LLVM (out of heap, a stub reached, a failed check)
 * the backend refuses further compiles: LLVM's global state may be half-updated. */
int bf_jit_disabled(void);
unsigned bf_jit_stubs_reached(void);
/* Heap figures in bytes: carved so far, peak live; allocations made and refused. */
void bf_jit_heap(size_t *used, size_t *peak, size_t *allocs, size_t *failed, size_t *size);

#endif
