"""Built-in plugin: uefi - x86-64 UEFI firmware boots the image through /EFI/BOOT/BOOTX64.EFI.

Boot chain: UEFI firmware -> the removable-media path \\EFI\\BOOT\\BOOTX64.EFI on the FAT
partition (no ESP type needed: the firmware mounts any FAT partition it finds) -> BOOTX64.EFI
(src/uefi/, our own C) reads /KERNEL.BIN, the runtime's files and /MODULES/*, builds a
Multiboot-1 info block, leaves boot services and enters the kernel's BFU64 64-bit entry.
The contract is in docs/uefi.md.

BOOTX64.EFI is compiled by this plugin with zig's clang for the x86_64-uefi target into a
cache named by the hash of its sources, flags and compiler version, so an unchanged loader is
not rebuilt and a changed one never reuses stale bytes.  The PE32+ file is byte-reproducible:
lld-link runs with /Brepro (zig passes it; the COFF time stamp becomes a content hash) and
`-s` drops the debug directory that would carry the PDB's path.

The bootloader adds only that file: no MBR code (syslinux provides the MBR; without it the
fallback MBR sends BIOS machines on to the next boot device), no install step.  At build time
it refuses a KERNEL.BIN without the BFU64 entry header, which the loader would refuse at boot.
"""
import hashlib
import importlib.util
import os
import struct
import tempfile
from pathlib import Path

from bareflow.core.paths import REPO_ROOT
from bareflow import hookimpl

from bareflow.kernel import recipe as kernel_recipe

from bareflow.bitcode import toolchain
from bareflow.image.bootloader import Bootloader, handed_files
from bareflow.core.variables import flag
from bareflow.errors import BareflowError

SOURCE_DIR = REPO_ROOT / "src" / "uefi"
EFI_PATH = "/EFI/BOOT/BOOTX64.EFI"

UEFI_CFLAGS = [
    "-target", "x86_64-uefi",
    "-nostdlib", "-ffreestanding", "-fno-sanitize=all", "-fno-stack-protector",
    "-fshort-wchar",                # L"..." literals are UCS-2, as the firmware wants
    "-mno-red-zone",                # firmware interrupt handlers run on our stack
    "-O2", "-g0", "-Wall", "-Wextra", "-Werror",
]
# zig's driver already gives lld-link /Brepro; say it anyway so a driver change cannot drop it.
UEFI_LDFLAGS = ["-s", "-Wl,/Brepro"]

IMAGE_FILE_MACHINE_AMD64 = 0x8664
PE32_PLUS_MAGIC = 0x20B
SUBSYSTEM_EFI_APPLICATION = 10


def _sources(source_dir):
    src = Path(source_dir)
    files = sorted(p for p in src.iterdir() if p.suffix in (".c", ".h")) if src.is_dir() else []
    if not any(p.suffix == ".c" for p in files):
        raise BareflowError(f"bootloader 'uefi': no C sources in {src}")
    return files


def cache_key(source_dir=SOURCE_DIR):
    """Hash of everything that decides BOOTX64.EFI's bytes."""
    h = hashlib.sha256()
    h.update(repr((UEFI_CFLAGS, UEFI_LDFLAGS, toolchain.clang_version())).encode())
    for p in _sources(source_dir):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def check_pe(data, what="BOOTX64.EFI"):
    """Raise unless `data` is a PE32+ x86-64 EFI application; returns its COFF time stamp."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        raise BareflowError(f"{what}: not a PE file (no MZ header)")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if pe + 24 + 70 > len(data) or data[pe:pe + 4] != b"PE\0\0":
        raise BareflowError(f"{what}: no PE signature at offset {pe:#x}")
    machine, = struct.unpack_from("<H", data, pe + 4)
    stamp, = struct.unpack_from("<I", data, pe + 8)
    magic, = struct.unpack_from("<H", data, pe + 24)
    subsystem, = struct.unpack_from("<H", data, pe + 24 + 68)
    if machine != IMAGE_FILE_MACHINE_AMD64 or magic != PE32_PLUS_MAGIC:
        raise BareflowError(f"{what}: machine {machine:#x} / optional header {magic:#x}, "
                            "expected x86-64 PE32+ (0x8664 / 0x20b)")
    if subsystem != SUBSYSTEM_EFI_APPLICATION:
        raise BareflowError(f"{what}: PE subsystem {subsystem}, expected 10 (EFI application)")
    return stamp


def build_bootx64(cache_dir, source_dir=SOURCE_DIR, verbose=False):
    """BOOTX64.EFI's bytes, compiled into `cache_dir` unless an identical build is there."""
    key = cache_key(source_dir)
    cache_dir = Path(cache_dir)
    out = cache_dir / f"BOOTX64-{key[:20]}.EFI"
    if out.is_file():
        data = out.read_bytes()
        check_pe(data, str(out))
        return data
    cache_dir.mkdir(parents=True, exist_ok=True)
    sources = [str(p) for p in _sources(source_dir) if p.suffix == ".c"]
    with tempfile.TemporaryDirectory(prefix="bootx64-", dir=cache_dir) as tmp:
        # The output's name is the same for every build: nothing path-dependent reaches the file.
        tmp_out = os.path.join(tmp, "BOOTX64.EFI")
        toolchain.run(toolchain.CC + UEFI_CFLAGS + UEFI_LDFLAGS + sources + ["-o", tmp_out],
                      what=f"compiling the UEFI loader ({source_dir})", verbose=verbose, cwd=tmp)
        with open(tmp_out, "rb") as fh:
            data = fh.read()
        check_pe(data, f"BOOTX64.EFI built from {source_dir}")
        os.replace(tmp_out, out)
    for stale in cache_dir.glob("BOOTX64-*.EFI"):      # builds of older sources
        if stale != out:
            stale.unlink(missing_ok=True)
    return data


class UefiBootloader(Bootloader):
    name = "uefi"
    description = "x86-64 UEFI boot: /EFI/BOOT/BOOTX64.EFI loads KERNEL.BIN (docs/uefi.md)"

    def __init__(self, source_dir=SOURCE_DIR, cache_dir=None):
        self.source_dir = Path(source_dir)
        self.cache_dir = cache_dir

    def available(self):
        if importlib.util.find_spec("ziglang") is None:
            return False, "the 'ziglang' Python package (zig's clang) is not installed: pip install ziglang"
        if not (self.source_dir / "main.c").is_file():
            return False, f"the UEFI loader sources are missing ({self.source_dir}/main.c)"
        return True, ""

    def _cache(self, variables):
        if self.cache_dir:
            return Path(self.cache_dir)
        build = (variables or {}).get("BUILD_DIR") or "build"
        return (REPO_ROOT / build if not os.path.isabs(build) else Path(build)) / "uefi"

    def files(self, variables):
        return {EFI_PATH: build_bootx64(self._cache(variables), self.source_dir,
                                        verbose=flag(variables or {}, "VERBOSE"))}

    def image_files(self, variables, payload):
        kernel = payload.get("/KERNEL.BIN")
        if kernel is not None:
            try:
                kernel_recipe.check_multiboot_bytes(kernel, "/KERNEL.BIN", require_uefi_entry=True)
            except BareflowError as exc:
                raise BareflowError(f"bootloader 'uefi': {exc}") from None
        handed_files(payload)                   # the loader's limit: raise at build time, not boot
        return self.files(variables)


@hookimpl
def bareflow_register_bootloaders():
    return [UefiBootloader()]
