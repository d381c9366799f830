/* compile.c - one layer's bitcode to an x86-64 ELF object, in memory, through LLVM's C API.
 *
 * Promise: bf_llvm_compile either fills *out with an ELF relocatable object (in memory owned by
 * the LLVM heap, released by bf_llvm_free_object) and returns 0, or returns -1 with a one-line
 * reason in err: bitcode LLVM cannot parse, a CPU or feature LLVM does not know, a pass or
 * code generation error, or any diagnostic LLVM printed on its error stream.  The pipeline is
 * the one the build's tier step runs (bareflow_plugins/tiers.py): every function's target-cpu
 * and target-features are rewritten to the target asked for before any pass, then
 * default<On> with loop/SLP vectorisation and unrolling from O2 up, PIC, small code model.
 * Runs on one core at a time (the platform layer's locks are no-ops).
 */
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "llvm_platform.h"

#define TRIPLE "x86_64-unknown-unknown-elf"

static int targets_ready;

static void say(char *err, size_t n, const char *a, const char *b, const char *c)
{
    size_t k = 0;
    for (const char *parts[3] = {a, b, c}, **p = parts; p < parts + 3; p++)
        for (const char *s = *p ? *p : ""; *s && k + 1 < n; s++)
            err[k++] = *s == '\n' ? ' ' : *s;
    while (k && err[k - 1] == ' ')
        k--;
    err[k] = 0;
}

/* Replace one string attribute on every defined function: the tier step does the same. */
static void set_fn_attr(LLVMContextRef ctx, LLVMModuleRef m, const char *key, const char *value)
{
    unsigned klen = (unsigned)strlen(key);
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f))
            continue;
        LLVMRemoveStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, key, klen);
        if (value)
            LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                                    LLVMCreateStringAttribute(ctx, key, klen, value, (unsigned)strlen(value)));
    }
}

const char *bf_llvm_host_cpu(char *buf, size_t n)
{
    char *s = LLVMGetHostCPUName();
    say(buf, n, s, 0, 0);
    LLVMDisposeMessage(s);
    return buf;
}

const char *bf_llvm_host_features(char *buf, size_t n)
{
    char *s = LLVMGetHostCPUFeatures();
    say(buf, n, s, 0, 0);
    LLVMDisposeMessage(s);
    return buf;
}

int bf_llvm_compile(const void *bitcode, size_t size, const char *name, int level, const char *cpu,
                    const char *features, struct bf_llvm_object *out, char *err, size_t errlen)
{
    static const char *const pipelines[4] = {"default<O0>", "default<O1>", "default<O2>", "default<O3>"};
    static const LLVMCodeGenOptLevel cg[4] = {LLVMCodeGenLevelNone, LLVMCodeGenLevelLess, LLVMCodeGenLevelDefault,
                                              LLVMCodeGenLevelAggressive};
    char *msg = 0;
    int rc = -1;
    LLVMTargetRef target;
    LLVMTargetMachineRef tm = 0;
    LLVMModuleRef m = 0;
    LLVMMemoryBufferRef obj = 0;

    out->data = 0;
    out->size = 0;
    if (level < 0 || level > 3) {
        say(err, errlen, "level is not 0..3", 0, 0);
        return -1;
    }
    if (!targets_ready) {
        LLVMInitializeX86TargetInfo();
        LLVMInitializeX86Target();
        LLVMInitializeX86TargetMC();
        LLVMInitializeX86AsmPrinter();
        targets_ready = 1;
    }
    bf_llvm_diag_reset();
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMMemoryBufferRef in = LLVMCreateMemoryBufferWithMemoryRange(bitcode, size, name, 0);
    if (LLVMParseBitcodeInContext2(ctx, in, &m)) {
        say(err, errlen, "LLVM cannot parse the bitcode", 0, 0);
        m = 0;
        goto done;
    }
    if (LLVMGetTargetFromTriple(TRIPLE, &target, &msg)) {
        say(err, errlen, "no x86-64 target: ", msg, 0);
        goto done;
    }
    tm = LLVMCreateTargetMachine(target, TRIPLE, cpu, features, cg[level], LLVMRelocPIC, LLVMCodeModelSmall);
    if (!tm) {
        say(err, errlen, "LLVM refused the target machine for CPU ", cpu, 0);
        goto done;
    }
    /* An unknown CPU or feature is only a warning on LLVM's error stream: make it an error. */
    if (bf_llvm_diag_text()[0]) {
        say(err, errlen, "LLVM: ", bf_llvm_diag_text(), 0);
        goto done;
    }
    LLVMSetTarget(m, TRIPLE);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(m, td);
    LLVMDisposeTargetData(td);
    set_fn_attr(ctx, m, "target-cpu", cpu);
    set_fn_attr(ctx, m, "target-features", features);
    set_fn_attr(ctx, m, "tune-cpu", 0);
    if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
        say(err, errlen, "invalid IR: ", msg, 0);
        goto done;
    }
    LLVMDisposeMessage(msg);
    msg = 0;
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, level >= 2);
    LLVMPassBuilderOptionsSetSLPVectorization(po, level >= 2);
    LLVMPassBuilderOptionsSetLoopUnrolling(po, level >= 2);
    LLVMErrorRef e = LLVMRunPasses(m, pipelines[level], tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) {
        msg = LLVMGetErrorMessage(e);
        say(err, errlen, "passes failed: ", msg, 0);
        LLVMDisposeErrorMessage(msg);
        msg = 0;
        goto done;
    }
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &msg, &obj)) {
        say(err, errlen, "code generation failed: ", msg, 0);
        goto done;
    }
    if (bf_llvm_diag_text()[0]) {
        say(err, errlen, "LLVM: ", bf_llvm_diag_text(), 0);
        goto done;
    }
    out->size = LLVMGetBufferSize(obj);
    out->data = bf_llvm_malloc(out->size ? out->size : 1);
    if (!out->data) {
        say(err, errlen, "out of LLVM heap for the object", 0, 0);
        goto done;
    }
    memcpy(out->data, LLVMGetBufferStart(obj), out->size);
    rc = 0;
done:
    if (msg)
        LLVMDisposeMessage(msg);
    if (obj)
        LLVMDisposeMemoryBuffer(obj);
    if (tm)
        LLVMDisposeTargetMachine(tm);
    if (m)
        LLVMDisposeModule(m);
    LLVMDisposeMemoryBuffer(in);       /* the eager parser copies what it needs; the buffer stays ours */
    LLVMContextDispose(ctx);
    return rc;
}

void bf_llvm_free_object(struct bf_llvm_object *o)
{
    bf_llvm_free(o->data);
    o->data = 0;
    o->size = 0;
}
