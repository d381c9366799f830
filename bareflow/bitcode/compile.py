"""C to LLVM bitcode for layer modules (freestanding x86-64, optimisation left to the tiers)."""
import os

from bareflow.bitcode import toolchain
def compile_bitcode(source, output, *, cflags, include_dirs, what, verbose=False):
    """Compile `source` to bitcode at `output`; a compile error raises BareflowError naming `what`.

    Written through a temporary file so a failed compile leaves no bitcode behind.
    """
    tmp = f"{output}.tmp"
    cmd = toolchain.CC + list(cflags) + toolchain.BITCODE_CFLAGS + \
        [f"-I{d}" for d in include_dirs] + ["-c", str(source), "-o", tmp]
    try:
        toolchain.run(cmd, what=f"compiling {what} ({source}) to bitcode", verbose=verbose)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
