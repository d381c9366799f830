/* llvm_platform.h - what the LLVM driver (compile.c) needs from the platform layer for LLVM.
 *
 * The platform layer (libc_llvm.c, heap.c, tls.c) is the C library LLVM's static archives and
 * gcc's libstdc++ are linked against inside BareFlow; docs/jit.md describes it.
 */
#ifndef BAREFLOW_LLVM_PLATFORM_H
#define BAREFLOW_LLVM_PLATFORM_H

#include <stddef.h>

struct bf_llvm_object {
    void *data;                 /* ELF relocatable, x86-64 */
    size_t size;
};

int bf_llvm_compile(const void *bitcode, size_t size, const char *name, int level, const char *cpu,
                    const char *features, struct bf_llvm_object *out, char *err, size_t errlen);
void bf_llvm_free_object(struct bf_llvm_object *o);
const char *bf_llvm_host_cpu(char *buf, size_t n);
const char *bf_llvm_host_features(char *buf, size_t n);

/* heap.c */
void bf_llvm_heap_init(void *base, size_t size);
void *bf_llvm_malloc(size_t n);
void bf_llvm_free(void *p);
void bf_llvm_heap_stats(size_t *used, size_t *peak, size_t *allocs, size_t *failed, size_t *size);

/* backend.c: leave the compile in progress with `why` (never returns).  Outside a compile
 * the run stops with a panic naming `why`. */
void bf_llvm_abort(const char *why) __attribute__((noreturn));
void bf_llvm_stub_reached(const char *name) __attribute__((noreturn));

/* libc_llvm.c: what LLVM wrote to its error stream (fd 2) since the last reset. */
void bf_llvm_diag_reset(void);
const char *bf_llvm_diag_text(void);

#endif
