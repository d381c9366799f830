"""The C toolchain: zig's bundled clang and lld, and the llvmlite that must match them.

Zig's clang writes the bitcode that llvmlite reads back, so both must be built on the same LLVM
major version: a newer clang emits bitcode an older LLVM cannot parse.  `check_llvm_versions()`
runs once when the build starts and stops it with a clear message when they differ.
"""
import functools
import re
import subprocess
import sys

from bareflow.errors import BareflowError

ZIG = [sys.executable, "-m", "ziglang"]
CC = ZIG + ["cc"]
LD_LLD = ZIG + ["ld.lld"]

TARGET = "x86_64-freestanding"

# Freestanding code for ring 0: no red zone (interrupts would clobber it), no unwinding tables,
# no stack protector or sanitizer runtime to link.  Globals stay dso_local (-fno-pic) so every
# reference in a tier object is PC-relative or absolute 64-bit.
FREESTANDING_CFLAGS = [
    "-target", TARGET,
    "-ffreestanding", "-fno-sanitize=all", "-fno-stack-protector", "-g0",
    "-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-mno-red-zone",
    "-fno-pic", "-fno-pie", "-fno-common",
    # FMA contraction would make results depend on the ISA level and tier; the reference
    # forward pass (numpy) never fuses either.
    "-ffp-contract=off",
]

# Bitcode for the tier step: optimisation *enabled* (so no optnone is stamped and TBAA is kept)
# but no LLVM pass run yet; each tier then runs its own pipeline.  Plain -O0 would stamp optnone
# on every function and no later tier could optimise it.
BITCODE_CFLAGS = ["-O2", "-Xclang", "-disable-llvm-passes", "-emit-llvm"]


def run(cmd, *, what, verbose=False, cwd=None):
    """Run a tool; on failure raise BareflowError with `what` and the tool's own diagnostics."""
    if verbose:
        print(" ".join(str(c) for c in cmd))
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise BareflowError(f"{what} failed:\n{detail}")
    return proc


@functools.lru_cache(maxsize=None)
def clang_version():
    try:
        out = subprocess.run(CC + ["--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BareflowError(f"cannot run zig's clang ({' '.join(CC)}): {exc}; "
                            "install the pinned ziglang package (pip install -e .)") from exc
    match = re.search(r"clang version (\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise BareflowError(f"cannot read the clang version from: {out.splitlines()[0]!r}")
    return tuple(int(g) for g in match.groups())


def llvmlite_version():
    try:
        import llvmlite.binding as llvm
    except ImportError as exc:
        raise BareflowError("llvmlite is not installed; install the pinned version (pip install -e .)") from exc
    return tuple(llvm.llvm_version_info)


def check_llvm_versions():
    """Stop the build when zig's clang and llvmlite are built on different LLVM majors."""
    clang = clang_version()
    lite = llvmlite_version()
    if clang[0] != lite[0]:
        raise BareflowError(
            f"LLVM version mismatch: zig's clang is {'.'.join(map(str, clang))} but llvmlite is built on "
            f"LLVM {'.'.join(map(str, lite))}; bitcode from one cannot be read by the other. Install the "
            "ziglang and llvmlite versions pinned in pyproject.toml (their LLVM majors must be equal).")
    return clang, lite
