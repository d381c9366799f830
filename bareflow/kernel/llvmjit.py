"""LLVM 22 for the run-time compiler (JIT=llvm): where it is, whether it fits, how to link it.

The JIT links Debian's static LLVM archives (package llvm-22-dev) with gcc's static libstdc++
into the freestanding program (docs/jit.md).  tools/setup.sh installs the package, or unpacks it
into a cache when not root; `find_llvm()` looks in both places.  The JIT's LLVM must read the
bitcode zig's clang writes and llvmlite handles, so `check_versions()` requires one LLVM major
for all three, and a JIT LLVM not older than zig's clang (bitcode is read by the same or a newer
release).
"""
from __future__ import annotations

import functools
import glob
import os
import re
from dataclasses import dataclass

from bareflow.bitcode import toolchain
from bareflow.errors import BareflowError

LLVM_MAJOR = 22
DEB_PACKAGE = f"llvm-{LLVM_MAJOR}-dev"
# LLVM components the driver (src/jit/llvm/compile.c) uses, as `llvm-config --libs` names them.
COMPONENTS = ("core", "bitreader", "passes", "x86codegen", "x86asmparser", "target", "analysis")
GCC_LIBS = ("libstdc++.a", "libsupc++.a", "libgcc.a", "libgcc_eh.a")
GCC_DIRS = ("/usr/lib/gcc/x86_64-linux-gnu/12", "/usr/lib/gcc/x86_64-linux-gnu/13",
            "/usr/lib/gcc/x86_64-linux-gnu/14")
# C flags for the code that includes LLVM's C API headers (they need a hosted C library's
# headers for their types only: zig ships glibc's).  Nothing of glibc is linked.
DRIVER_CFLAGS = ["-target", "x86_64-linux-gnu", "-ffreestanding", "-fno-stack-protector", "-mno-red-zone",
                 "-fno-builtin", "-O2", "-g0", "-fPIC", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables"]


@dataclass(frozen=True)
class Llvm:
    prefix: str             # .../usr/lib/llvm-22
    version: tuple          # (22, 1, 8)

    @property
    def include_dir(self) -> str:
        return os.path.join(self.prefix, "include")

    @property
    def lib_dir(self) -> str:
        return os.path.join(self.prefix, "lib")


def cache_dir() -> str:
    """Where tools/setup.sh unpacks llvm-22-dev (and libllvmlibc-22-dev) when it cannot install
    them: $BAREFLOW_LLVM_CACHE if set, else <cache root>/llvm-22 (same rule as setup.sh)."""
    from bareflow.core.paths import cache_root
    if os.environ.get("BAREFLOW_LLVM_CACHE"):
        return os.environ["BAREFLOW_LLVM_CACHE"]
    return os.path.join(str(cache_root()), f"llvm-{LLVM_MAJOR}")


def candidates() -> list[str]:
    sub = f"usr/lib/llvm-{LLVM_MAJOR}"
    return [f"/{sub}", os.path.join(cache_dir(), sub)]


@functools.lru_cache(maxsize=None)
def find_llvm() -> Llvm | None:
    """The first LLVM 22 with static archives and C headers, or None."""
    for prefix in candidates():
        header = os.path.join(prefix, "include", "llvm", "Config", "llvm-config.h")
        if os.path.exists(os.path.join(prefix, "lib", "libLLVMCore.a")) and os.path.exists(header):
            with open(header) as f:
                m = re.search(r'#define LLVM_VERSION_STRING "(\d+)\.(\d+)\.(\d+)', f.read())
            if m:
                return Llvm(prefix, tuple(int(g) for g in m.groups()))
    return None


def require_llvm() -> Llvm:
    """find_llvm() or a BareflowError saying how to get it."""
    llvm = find_llvm()
    if llvm is None:
        raise BareflowError(
            f"JIT=llvm needs LLVM {LLVM_MAJOR}'s static archives (Debian package {DEB_PACKAGE}); none in "
            f"{' or '.join(candidates())}. Run `bash tools/setup.sh` (installs it as root, else unpacks it "
            f"into {cache_dir()}), or build with JIT=none.")
    return llvm


def check_versions(llvm: Llvm, clang=None, llvmlite=None) -> None:
    """Stop when the JIT's LLVM cannot read what zig's clang writes or differs from llvmlite's."""
    clang = tuple(clang or toolchain.clang_version())
    lite = tuple(llvmlite or toolchain.llvmlite_version())
    jit = ".".join(map(str, llvm.version))
    if llvm.version[0] != clang[0] or llvm.version[:2] < tuple(clang[:2]):
        raise BareflowError(
            f"LLVM version mismatch: the JIT's LLVM ({llvm.prefix}) is {jit} but zig's clang is "
            f"{'.'.join(map(str, clang))}; the run-time compiler must be the same major release and not "
            f"older than the clang that writes the bitcode. Install {DEB_PACKAGE} matching the pinned ziglang.")
    if llvm.version[0] != lite[0]:
        raise BareflowError(
            f"LLVM version mismatch: the JIT's LLVM ({llvm.prefix}) is {jit} but llvmlite is built on LLVM "
            f"{'.'.join(map(str, lite))}; tiers built ahead of time and at run time would come from "
            "different compilers. Install the llvmlite pinned in pyproject.toml.")


def gcc_libs() -> list[str]:
    for d in GCC_DIRS:
        paths = [os.path.join(d, name) for name in GCC_LIBS]
        if all(os.path.exists(p) for p in paths):
            return paths
    raise BareflowError(f"JIT=llvm needs gcc's static C++ runtime ({', '.join(GCC_LIBS)}) from one of "
                        f"{', '.join(GCC_DIRS)}; install Debian's libstdc++-12-dev (g++-12)")


def archives(llvm: Llvm) -> list[str]:
    """Every static LLVM archive, in name order: the link takes them as one group, so lld pulls
    only the members the driver reaches (sorted so the link line, and the binary, are stable)."""
    found = sorted(glob.glob(os.path.join(llvm.lib_dir, "libLLVM*.a")))
    if not found:
        raise BareflowError(f"no libLLVM*.a in {llvm.lib_dir}")
    return found


def link_args(llvm: Llvm) -> list[str]:
    """ld.lld arguments that add LLVM and the C++ runtime to a static link."""
    return ["--start-group"] + archives(llvm) + gcc_libs() + ["--end-group"]
