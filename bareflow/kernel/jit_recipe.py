"""KERNEL.BIN with LLVM linked in (JIT=llvm; docs/jit.md), next to recipe.py's plain link.

The flat image cannot come from `ld.lld --oformat binary` here: that output has no program
headers, and lld then resolves the TLS offsets LLVM's code uses without a TLS segment (every
%fs-relative access lands at offset 0).  So the kernel is linked once, to an ELF with
src/jit/llvm/kernel_llvm.ld, and the flat image is cut from the ELF's loadable segments — what
`objcopy -O binary` does, without depending on binutils (zig's objcopy takes minutes on 40 MB).
"""
from __future__ import annotations

import os

from bareflow.bitcode import toolchain
from bareflow.errors import BareflowError
from bareflow.kernel import recipe as kernel_recipe

LINKER_SCRIPT = "src/jit/llvm/kernel_llvm.ld"
# Identical code folding shrinks LLVM's text by a few MB; --gc-sections is already a kernel flag.
EXTRA_LDFLAGS = ["--icf=all"]


def flat_image(elf_path: str) -> bytes:
    """The bytes of every PT_LOAD segment with file contents, placed by physical address from the
    lowest one, gaps zero-filled (objcopy -O binary).  Raises BareflowError on an odd ELF."""
    from elftools.elf.elffile import ELFFile
    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD" and s["p_filesz"]]
        if not loads:
            raise BareflowError(f"{elf_path}: no loadable segment")
        base = min(s["p_paddr"] for s in loads)
        end = max(s["p_paddr"] + s["p_filesz"] for s in loads)
        out = bytearray(end - base)
        for s in loads:
            off = s["p_paddr"] - base
            out[off:off + s["p_filesz"]] = s.data()
    return bytes(out)


def link_kernel(objects, out_elf: str, out_bin: str, link_extra, verbose=False) -> None:
    """Link the JIT kernel to `out_elf`, cut `out_bin`, check both boot headers."""
    objs = [str(o) for o in objects]
    for path in (out_elf, out_bin):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    script = os.path.join(kernel_recipe._REPO, LINKER_SCRIPT)
    cmd = toolchain.LD_LLD + kernel_recipe.KERNEL_LDFLAGS + EXTRA_LDFLAGS + ["-T", script, "-o", out_elf] + \
        objs + list(link_extra)
    toolchain.run(cmd, what=f"linking {out_elf} with LLVM", verbose=verbose)
    data = flat_image(out_elf)
    kernel_recipe.check_multiboot_bytes(data, out_bin, require_uefi_entry=True)
    with open(out_bin + ".tmp", "wb") as f:
        f.write(data)
    os.replace(out_bin + ".tmp", out_bin)
