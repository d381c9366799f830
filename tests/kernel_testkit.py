"""Pieces shared by tests that link the real kernel with a small test runtime."""
from pathlib import Path

from bareflow.kernel import recipe as kernel_recipe
REPO = Path(__file__).resolve().parents[1]
# The compiler emits calls to these even in code that never names them; test runtimes link the
# project's own implementations rather than carrying stubs of their own.
LIBC_STRING_SOURCES = [f"src/libc/string/{name}.c" for name in ("memcpy", "memmove", "memset", "memcmp")]


def compile_kernel_and_libc(out_dir):
    """Compile the kernel platform sources and the libc string functions; return object paths."""
    out_dir = Path(out_dir)
    objs = []
    for src in kernel_recipe.KERNEL_SOURCES + LIBC_STRING_SOURCES:
        obj = out_dir / (Path(src).name.replace(".", "_") + ".o")
        kernel_recipe.compile_object(str(REPO / src), str(obj), str(REPO))
        objs.append(str(obj))
    return objs
