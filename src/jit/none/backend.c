/* backend.c - the run-time compiler of a JIT=none build: there is none.
 *
 * Promise: bf_jit_backend() is NULL and every other call fails with a reason saying the
 * program was built with JIT=none, so a policy table naming run-time tiers is refused early.
 */
#include "bareflow/jit.h"

static int refuse(char *err, size_t n)
{
    static const char why[] = "built with JIT=none (no run-time compiler)";
    size_t i = 0;
    for (; n && i + 1 < n && why[i]; i++)
        err[i] = why[i];
    if (n)
        err[i] = 0;
    return -1;
}

const char *bf_jit_backend(void) { return 0; }
int bf_jit_init(void *heap, size_t heap_size, int core, char *err, size_t n)
{
    (void)heap; (void)heap_size; (void)core;
    return refuse(err, n);
}
int bf_jit_thread(int core, char *err, size_t n) { (void)core; return refuse(err, n); }
int bf_jit_host(char *cpu, size_t a, char *f, size_t b) { (void)f; (void)b; return refuse(cpu, a); }
int bf_jit_compile(int core, const void *bc, size_t size, const char *name, int level, const char *cpu, const char *features,
                   void **obj, size_t *obj_size, char *err, size_t n)
{
    (void)core; (void)bc; (void)size; (void)name; (void)level; (void)cpu; (void)features;
    *obj = 0;
    *obj_size = 0;
    return refuse(err, n);
}
void bf_jit_release(void *obj) { (void)obj; }
int bf_jit_disabled(void) { return 1; }
unsigned bf_jit_stubs_reached(void) { return 0; }
void bf_jit_heap(size_t *used, size_t *peak, size_t *allocs, size_t *failed, size_t *size)
{
    *used = *peak = *allocs = *failed = *size = 0;
}
