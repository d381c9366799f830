"""How to build KERNEL.BIN, the flat Multiboot-1 kernel image (pure Python, no SCons).

The lead's SCons tool calls these; tests call them directly.  Everything runs zig's bundled
clang and lld through ``sys.executable -m ziglang`` so the result does not depend on the
host's compilers.  Output is deterministic: no build-id, no timestamps, no debug info, and
the flat image holds only the loaded bytes of the kernel (see docs/kernel-boot.md).

Linking is done twice from the same objects and script: once to an ELF (for inspection and
symbol look-ups) and once with ``--oformat binary`` to the flat image the loader reads.
"""

from __future__ import annotations

import os
import struct
from typing import Iterable, List

from bareflow.core.paths import REPO_ROOT
from bareflow.bitcode import toolchain
from bareflow.errors import BareflowError

_REPO = str(REPO_ROOT)

# Sources of the bare-metal platform, relative to the repository root: every .S and .c file in
# src/kernel, as the SCons build compiles them (kernel.ld places the multiboot header itself,
# so link order does not matter).
KERNEL_SOURCES: List[str] = sorted(
    os.path.relpath(os.path.join(_REPO, "src", "kernel", name), _REPO)
    for name in os.listdir(os.path.join(_REPO, "src", "kernel")) if name.endswith((".S", ".c")))

KERNEL_LINKER_SCRIPT = "src/kernel/kernel.ld"

# Include directories, relative to the repository root.
KERNEL_INCLUDE_DIRS: List[str] = ["src/include", "src/libc/include"]

# Flags for kernel/runtime C code; the SCons build compiles with these too
# (site_scons/site_tools/bareflow_scons/commands.py), so kernels built by tests are the product.
KERNEL_CFLAGS: List[str] = list(toolchain.FREESTANDING_CFLAGS) + ["-O2"]

# Assembler sources go through the same driver; they need the target and nothing else.
KERNEL_ASFLAGS: List[str] = ["-target", "x86_64-freestanding", "-fno-pic", "-g0"]

# ld.lld flags shared by the ELF and the flat link.
KERNEL_LDFLAGS: List[str] = [
    "-nostdlib",
    "-static",
    "--build-id=none",
    "--no-dynamic-linker",
    "-z", "norelro",
    "-z", "noexecstack",
    "--no-undefined",
    "--gc-sections",
    "--orphan-handling=error",
]

MULTIBOOT_MAGIC = 0x1BADB002
MULTIBOOT_SEARCH_BYTES = 8192
MULTIBOOT_AOUT_KLUDGE = 1 << 16
# Required-feature bits (0-15) a loader must understand; ours (syslinux mboot.c32, QEMU, the
# UEFI loader) provide page-aligned modules (bit 0) and memory information (bit 1) only.
MULTIBOOT_SUPPORTED_REQUIRED = (1 << 0) | (1 << 1)

# The UEFI entry header (docs/uefi.md): right after the 32-byte multiboot header, the
# signature, the 64-bit entry address and a checksum making the four u32 words sum to 0.
BFU64_SIGNATURE = b"BFU64\0\0\0"
BFU64_OFFSET = 32
BFU64_BYTES = 16


def zig_command(tool: str) -> List[str]:
    """The argv prefix for one of zig's tools (``cc`` or ``ld.lld``)."""
    return toolchain.ZIG + [tool]


def include_flags(repo_root: str) -> List[str]:
    return ["-I" + os.path.join(repo_root, d) for d in KERNEL_INCLUDE_DIRS]


def compile_command(source: str, obj: str, repo_root: str = ".") -> List[str]:
    """The full argv that compiles one kernel source (C or .S) to an object."""
    flags = KERNEL_ASFLAGS if source.endswith(".S") else KERNEL_CFLAGS
    return zig_command("cc") + flags + include_flags(repo_root) + ["-c", source, "-o", obj]


def compile_object(source: str, obj: str, repo_root: str = ".", verbose: bool = False) -> None:
    """Compile one source; raises BareflowError carrying the compiler's message."""
    os.makedirs(os.path.dirname(os.path.abspath(obj)), exist_ok=True)
    toolchain.run(compile_command(source, obj, repo_root), what=f"compiling {source}", verbose=verbose)


def link_kernel(objects: Iterable[str], out_elf: str, out_bin: str, linker_script: str,
                verbose: bool = False) -> None:
    """Link `objects` with `linker_script` into `out_elf` and the flat image `out_bin`,
    then check the image's multiboot and BFU64 (UEFI entry) headers.  Raises BareflowError
    with lld's message."""
    objs = [str(o) for o in objects]
    if not objs:
        raise BareflowError("link_kernel: no object files given")
    for path in (out_elf, out_bin):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    base = zig_command("ld.lld") + KERNEL_LDFLAGS + ["-T", linker_script]
    toolchain.run(base + ["-o", out_elf] + objs, what=f"linking {out_elf}", verbose=verbose)
    toolchain.run(base + ["--oformat", "binary", "-o", out_bin] + objs, what=f"linking {out_bin}",
                  verbose=verbose)
    check_multiboot(out_bin, require_uefi_entry=True)      # both boot paths must work


def link_hosted(objects: Iterable[str], out: str, verbose: bool = False) -> None:
    """Link the hosted program (runtime + src/hosted, a static Linux executable) into `out`.

    Written through a temporary file, made executable, then renamed; BareflowError with lld's message.
    """
    toolchain.run(zig_command("ld.lld") + ["-static", "-e", "_start", "--build-id=none", "-o", out + ".tmp"]
                  + [str(o) for o in objects], what="linking the hosted program", verbose=verbose)
    os.chmod(out + ".tmp", 0o755)
    os.replace(out + ".tmp", out)


def check_multiboot(path: str, require_uefi_entry: bool = False) -> dict:
    """Verify the Multiboot-1 a.out-kludge header of the flat image at `path`, and the BFU64
    UEFI entry header after it when present (required with `require_uefi_entry`).

    Returns the header fields (``entry64_addr`` is None without a BFU64 header); raises
    BareflowError naming the file and the bad field.  src/uefi/kernel_image.c applies the
    same rules at boot time."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BareflowError(f"{path}: cannot read kernel image: {e.strerror}") from None
    return check_multiboot_bytes(data, path, require_uefi_entry)


def check_multiboot_bytes(data: bytes, path: str = "KERNEL.BIN",
                          require_uefi_entry: bool = False) -> dict:
    """check_multiboot() for an image already in memory; `path` names it in errors."""
    offset = None
    for off in range(0, min(len(data), MULTIBOOT_SEARCH_BYTES) - 11, 4):
        if struct.unpack_from("<I", data, off)[0] == MULTIBOOT_MAGIC:
            offset = off
            break
    if offset is None:
        raise BareflowError(f"{path}: no multiboot magic 0x1BADB002 in the first "
                            f"{MULTIBOOT_SEARCH_BYTES} bytes")
    magic, flags, checksum = struct.unpack_from("<III", data, offset)
    if (magic + flags + checksum) & 0xFFFFFFFF:
        raise BareflowError(f"{path}: multiboot checksum at offset {offset} is wrong "
                            f"(magic+flags+checksum = {(magic + flags + checksum) & 0xFFFFFFFF:#x})")
    if not flags & MULTIBOOT_AOUT_KLUDGE:
        raise BareflowError(f"{path}: multiboot flags {flags:#x} lack bit 16 (address fields); "
                            "a flat image needs them")
    if flags & 0xFFFF & ~MULTIBOOT_SUPPORTED_REQUIRED:
        raise BareflowError(f"{path}: multiboot flags {flags:#x} require features (bits 2-15) "
                            "no BareFlow loader provides; only bits 0 and 1 are supported")
    if offset + 32 > len(data):
        raise BareflowError(f"{path}: multiboot header at offset {offset} is truncated")
    header_addr, load_addr, load_end, bss_end, entry = struct.unpack_from("<5I", data, offset + 12)
    fields = dict(offset=offset, flags=flags, header_addr=header_addr, load_addr=load_addr,
                  load_end_addr=load_end, bss_end_addr=bss_end, entry_addr=entry)
    if header_addr - load_addr != offset:
        raise BareflowError(f"{path}: header_addr {header_addr:#x} - load_addr {load_addr:#x} "
                            f"!= header offset {offset}")
    if load_end and not load_addr < load_end <= load_addr + len(data):
        raise BareflowError(f"{path}: load_end_addr {load_end:#x} outside the file "
                            f"(load_addr {load_addr:#x}, {len(data)} bytes)")
    if load_end and load_end - load_addr != len(data):
        raise BareflowError(f"{path}: file is {len(data)} bytes but the header loads "
                            f"{load_end - load_addr}")
    if bss_end and bss_end < (load_end or load_addr + len(data)):
        raise BareflowError(f"{path}: bss_end_addr {bss_end:#x} below load_end_addr {load_end:#x}")
    if not load_addr <= entry < load_addr + len(data):
        raise BareflowError(f"{path}: entry_addr {entry:#x} outside the loaded image")
    fields["entry64_addr"] = _check_bfu64(data, path, offset, load_addr, require_uefi_entry)
    return fields


def _check_bfu64(data: bytes, path: str, mb_offset: int, load_addr: int, required: bool):
    """The BFU64 entry address, or None when the header is absent and not required."""
    off = mb_offset + BFU64_OFFSET
    if data[off:off + len(BFU64_SIGNATURE)] != BFU64_SIGNATURE:
        if required:
            raise BareflowError(f"{path}: no BFU64 UEFI entry header at offset {off} (right after "
                                "the multiboot header); the UEFI loader cannot start this kernel")
        return None
    if off + BFU64_BYTES > len(data):
        raise BareflowError(f"{path}: BFU64 header at offset {off} is truncated")
    words = struct.unpack_from("<4I", data, off)
    if sum(words) & 0xFFFFFFFF:
        raise BareflowError(f"{path}: BFU64 header checksum at offset {off + 12} is wrong "
                            f"(the four words sum to {sum(words) & 0xFFFFFFFF:#x}, not 0)")
    entry64 = words[2]
    if not load_addr <= entry64 < load_addr + len(data):
        raise BareflowError(f"{path}: BFU64 entry {entry64:#x} outside the loaded image")
    return entry64
