"""SCons wiring of the run-time compiler (JIT=none | llvm; docs/jit.md).

JIT=none compiles src/jit/none (no compiler: run-time tiers are reported as failed).  JIT=llvm
compiles src/jit/llvm against LLVM 22's C API and links LLVM's static archives, gcc's
libstdc++ and the platform layer for LLVM into both the kernel and the hosted program.  With
JIT=llvm every layer's tier-neutral bitcode goes on the image as /MODULES/<LAYER>.BC
(docs/bitcode-file.md; the plugin bareflow.kernel.jit puts them there).
"""
from bareflow.bitcode import bitcodefile
from bareflow.kernel import llvmjit

from . import commands

# bareflow/jit.h: what the backend gives the runtime.  With JIT=llvm the backend's objects stay
# out of the libc selection (they reference LLVM, not libc), so these count as provided.
BACKEND_SYMBOLS = {"bf_jit_backend", "bf_jit_init", "bf_jit_thread", "bf_jit_host", "bf_jit_compile", "bf_jit_release",
                   "bf_jit_disabled", "bf_jit_stubs_reached", "bf_jit_heap"}


def backend_objects(env, jit, kernel_env):
    """(objects both programs link, extra ld.lld arguments for both links)."""
    if jit == "none":
        return commands.objects(kernel_env, "#src/jit/none", "$BF_BUILD/obj/jit-none"), []
    llvm = llvmjit.require_llvm()
    llvmjit.check_versions(llvm)
    jenv = kernel_env.Clone()
    jenv.Replace(CCFLAGS=llvmjit.DRIVER_CFLAGS, CPPPATH=[env.Dir("#src/include").abspath, llvm.include_dir])
    objs = commands.objects(jenv, "#src/jit/llvm", "$BF_BUILD/obj/jit-llvm")
    return objs, llvmjit.link_args(llvm)


def bitcode_files(env, bitcode):
    """{image path: node} of the BFBC file of each layer, from {layer: bitcode node}."""
    return {bitcodefile.file_name(layer): env.BfBitcodeFile(f"$BF_BUILD/image/{layer.upper()}.BC", bc,
                                                            BF_LAYER=layer)[0]
            for layer, bc in sorted(bitcode.items())}
