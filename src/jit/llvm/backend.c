/* backend.c - bareflow/jit.h over LLVM 22: thread pointer, constructors, the compile boundary.
 *
 * Promise: before LLVM runs a single instruction on a core, that core's thread pointer points
 * at its own TCB (the runtime's, src/runtime/tcb.c) laid out as LLVM's (glibc-targeted) code expects — the TLS block copied from the
 * program's template right below it, a self-pointer at %fs:0 and a stack-protector canary at
 * %fs:0x28 — and every static constructor (.init_array) has run once.  Every call into LLVM
 * (the constructors, the host-CPU query, each compile) runs inside one setjmp boundary, guarded():
 * abort(), a stub, a failed _chk check or an exhausted heap inside LLVM comes back there as a
 * failure with a reason, and the backend then refuses further
 * compiles (LLVM's global state may be half-updated); the run itself goes on.  After each
 * compile the core's TCB is checked (self-pointer and canary unchanged).  Any core may compile,
 * one compile at a time (the runtime's jit.c keeps to that); the heap is locked (heap.c).
 */
#include <stdint.h>
#include <string.h>

#include "bareflow/jit.h"
#include "bareflow/platform.h"
#include "bareflow/runtime.h"
#include "bareflow/tcb.h"
#include "llvm_platform.h"

int bf_llvm_setjmp(uint64_t buf[8]) __attribute__((returns_twice));
void bf_llvm_longjmp(uint64_t buf[8], int value) __attribute__((noreturn));

extern void (*__init_array_start[])(void) __attribute__((weak));
extern void (*__init_array_end[])(void) __attribute__((weak));

static uint64_t boundary[8];
static int in_compile, started, disabled;
static unsigned stubs;
static const char *abort_reason;
static char stub_msg[80];

static void copy(char *d, size_t n, const char *s)
{
    size_t i = 0;
    for (; n && i + 1 < n && s[i]; i++)
        d[i] = s[i];
    if (n)
        d[i] = 0;
}

static size_t failed_before;      /* refused allocations when the current call into LLVM began */

static size_t heap_failures(void)
{
    size_t used, peak, allocs, failed, size;
    bf_llvm_heap_stats(&used, &peak, &allocs, &failed, &size);
    return failed;
}

void bf_llvm_abort(const char *why)
{
    static char msg[160];
    if (heap_failures() > failed_before) {   /* whatever LLVM did next, the cause is the heap */
        size_t used, peak, allocs, failed, size;
        bf_llvm_heap_stats(&used, &peak, &allocs, &failed, &size);
        copy(msg, sizeof msg, "LLVM heap exhausted (see jit_heap_kib in BAREFLOW.CFG)");
        why = msg;
    }
    if (!in_compile)
        bf_panic("LLVM platform layer: %s (outside a compile)", why);
    abort_reason = why;
    bf_llvm_longjmp(boundary, 1);
}

void bf_llvm_stub_reached(const char *name)
{
    if (heap_failures() > failed_before)
        bf_llvm_abort("heap");       /* unwinding a failed allocation, not a missing function */
    stubs++;
    copy(stub_msg, sizeof stub_msg, "C library stub reached: ");
    copy(stub_msg + strlen(stub_msg), sizeof stub_msg - strlen(stub_msg), name);
    bf_llvm_abort(stub_msg);
}

/* The compile boundary: run body(arg) so that an abort inside LLVM (bf_llvm_abort: abort(), a
 * stub, a failed _chk check, an exhausted heap) comes back here instead of stopping the program.
 * Returns body's result; after an abort, -1 with the reason in err[errlen] and the backend
 * disabled for good (LLVM's global state may be half-updated).  setjmp must sit in a frame that
 * stays live while LLVM runs, so the boundary is this one function around a body, not a helper
 * that returns before the body starts.  Not reentrant: one call into LLVM at a time. */
static int guarded(int (*body)(void *), void *arg, char *err, size_t errlen)
{
    in_compile = 1;
    failed_before = heap_failures();
    if (bf_llvm_setjmp(boundary)) {
        in_compile = 0;
        disabled = 1;
        copy(err, errlen, abort_reason);
        return -1;
    }
    int rc = body(arg);
    in_compile = 0;
    return rc;
}

const char *bf_jit_backend(void) { return "LLVM 22"; }
int bf_jit_disabled(void) { return disabled; }
unsigned bf_jit_stubs_reached(void) { return stubs; }
void bf_jit_heap(size_t *used, size_t *peak, size_t *allocs, size_t *failed, size_t *size)
{
    bf_llvm_heap_stats(used, peak, allocs, failed, size);
}

/* Each core that runs LLVM runs on its own TCB (the TLS block, errno and the canary are per
 * thread in LLVM's and libstdc++'s code): the runtime's, laid out for every core at start-up
 * (src/runtime/tcb.c).  One compile at a time still holds: the setjmp boundary and LLVM's own
 * global state are shared. */
#define MAX_TCB_CORES 64
static uint8_t *tcb[MAX_TCB_CORES];
static uint64_t tcb_canary[MAX_TCB_CORES];

static int setup_tls(int core, char *err, size_t errlen)
{
    if (core < 0 || core >= MAX_TCB_CORES || !(tcb[core] = bf_tcb_enter(core, &tcb_canary[core]))) {
        copy(err, errlen, "no thread control block for this core (src/runtime/tcb.c)");
        return -1;
    }
    return 0;
}

/* The TCB of `core` after LLVM ran on it: self-pointer and canary must be as set up. */
static int tcb_intact(int core, char *err, size_t errlen)
{
    uint64_t self, canary;
    __asm__ volatile("movq %%fs:0, %0" : "=r"(self));
    __asm__ volatile("movq %%fs:0x28, %0" : "=r"(canary));
    if (self != (uint64_t)(uintptr_t)tcb[core] || canary != tcb_canary[core]) {
        copy(err, errlen, "the thread control block (self-pointer or stack canary at %fs:0x28) was overwritten");
        return -1;
    }
    return 0;
}

int bf_jit_thread(int core, char *err, size_t errlen)
{
    if (!started || disabled) {
        copy(err, errlen, started ? "the JIT was disabled by an earlier aborted compile" : "the JIT was not started");
        return -1;
    }
    return setup_tls(core, err, errlen);
}

static int run_constructors(void *unused)
{
    (void)unused;
    for (void (**f)(void) = __init_array_start; f && f < __init_array_end; f++)
        (*f)();
    return 0;
}

int bf_jit_init(void *heap, size_t heap_size, int core, char *err, size_t errlen)
{
    if (started)
        return disabled ? -1 : 0;
    started = 1;
    bf_llvm_heap_init(heap, heap_size);
    if (setup_tls(core, err, errlen) < 0) {
        disabled = 1;
        return -1;
    }
    return guarded(run_constructors, 0, err, errlen);
}

struct host_query { char *cpu, *features; size_t cpu_len, features_len; };

static int query_host(void *arg)
{
    struct host_query *q = arg;
    bf_llvm_host_cpu(q->cpu, q->cpu_len);
    bf_llvm_host_features(q->features, q->features_len);
    return 0;
}

/* After an abort inside LLVM the reason is left in cpu[cpu_len] (runtime/jit.c reports it from there). */
int bf_jit_host(char *cpu, size_t cpu_len, char *features, size_t features_len)
{
    if (disabled || !started)
        return -1;
    struct host_query q = { cpu, features, cpu_len, features_len };
    return guarded(query_host, &q, cpu, cpu_len);
}

struct compile_job {
    const void *bitcode;
    size_t size;
    const char *name, *cpu, *features;
    int level;
    struct bf_llvm_object *o;
    char *err;
    size_t errlen;
};

static int run_compile(void *arg)
{
    struct compile_job *j = arg;
    return bf_llvm_compile(j->bitcode, j->size, j->name, j->level, j->cpu, j->features, j->o, j->err, j->errlen);
}

int bf_jit_compile(int core, const void *bitcode, size_t size, const char *name, int level, const char *cpu,
                   const char *features, void **obj, size_t *obj_size, char *err, size_t errlen)
{
    static struct bf_llvm_object o;
    *obj = 0;
    *obj_size = 0;
    if (!started || disabled) {
        copy(err, errlen, started ? "the JIT was disabled by an earlier aborted compile" : "the JIT was not started");
        return -1;
    }
    if (setup_tls(core, err, errlen) < 0)
        return -1;
    struct compile_job job = { bitcode, size, name, cpu, features, level, &o, err, errlen };
    int rc = guarded(run_compile, &job, err, errlen);
    if (rc == 0 && tcb_intact(core, err, errlen) < 0) {
        bf_llvm_free_object(&o);
        disabled = 1;                 /* something wrote where it must not: trust nothing more */
        return -1;
    }
    if (rc == 0) {
        *obj = o.data;
        *obj_size = o.size;
    }
    return rc;
}

void bf_jit_release(void *obj)
{
    bf_llvm_free(obj);
}
