"""The image boots under UEFI (OVMF in QEMU, TCG) and prints the BIOS run's tokens.

The image is the real pipeline's (`scons image BOOTLOADERS=syslinux,uefi`), built once per
session and shared with tests/test_usb_boot_storage.py, as is the BIOS/IDE reference run.
One more image carries the real kernel linked with a test runtime that checks, from inside,
the state the UEFI hand-off left (docs/uefi.md).  Every QEMU run has a hard time-out.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from bareflow.image import bootloader

from bareflow.image import diskimage

from bareflow.image import fat16

from bareflow.kernel import recipe as kernel_recipe
from bareflow.image import uefi as uefi_plugin
from buildutil import QEMU_SUCCESS, PARTITION_OFFSET, image_file, need, qemu, result, scons

REPO = Path(__file__).resolve().parents[1]
OVMF = Path("/usr/share/ovmf/OVMF.fd")
QEMU_TIMEOUT = 240

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                 reason="qemu-system-x86_64 is not installed (Debian qemu-system-x86)")]
needs_ovmf = pytest.mark.skipif(not OVMF.exists(), reason=f"{OVMF} is missing (Debian package ovmf)")


# ----------------------------------------------------------------- shared with test_usb_boot_*

def shared_image(tmp_path_factory) -> Path:
    """build/bareflow.img with both bootloaders, built once per session by the real SCons."""
    need("syslinux", "mcopy", "mattrib")
    base = tmp_path_factory.getbasetemp() / "uefi-usb-build"
    image = base / "bareflow.img"
    if not image.exists():
        base.mkdir(exist_ok=True)
        scons(base, "image", "BOOTLOADERS=syslinux,uefi")
    return image


def boot_copy(image: Path, directory: Path, **kw):
    """Boot a copy (the kernel writes /PROFILE.BIN back into the disk it booted from)."""
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / "boot.img"
    shutil.copyfile(image, copy)
    status, out = qemu(copy, timeout=QEMU_TIMEOUT, **kw)
    return status, out.replace("\r\n", "\n"), copy


def bios_reference(tmp_path_factory) -> dict:
    """BAREFLOW-RESULT of the SeaBIOS + IDE boot of the shared image (the existing path)."""
    image = shared_image(tmp_path_factory)
    saved = image.parent / "bios-ide-result.json"
    if not saved.exists():
        status, out, _ = boot_copy(image, image.parent / "bios-ide")
        assert status == QEMU_SUCCESS, out[-3000:]
        assert "disk 0 sectors" not in out, out[-3000:]
        saved.write_text(json.dumps(result(out)))
    return json.loads(saved.read_text())


def image_files(image: Path) -> dict:
    with open(image, "rb") as fh:
        layout = fat16.read_fat16(fh, PARTITION_OFFSET, source=str(image))
    return layout.files


def expected_handed(image: Path) -> list:
    return bootloader.handed_files(image_files(image))


def assert_same_generation(run: dict, ref: dict):
    for key in ("prompt", "prompt_tokens", "tokens", "text", "steps", "seed", "temperature"):
        assert run[key] == ref[key], key
    assert run["tokens"], "the reference run generated nothing"


def uefi_lines(out: str) -> list:
    return [line for line in out.splitlines() if "bareflow-uefi:" in line]


# ----------------------------------------------------------------- the real image

@needs_ovmf
def test_ovmf_ide_boot_gives_the_bios_tokens(tmp_path_factory, tmp_path):
    image = shared_image(tmp_path_factory)
    ref = bios_reference(tmp_path_factory)
    status, out, disk = boot_copy(image, tmp_path, firmware="uefi")
    assert status == QEMU_SUCCESS, out[-4000:]
    run = result(out)
    assert_same_generation(run, ref)
    assert "\x1b" not in out             # OVMF's screen control sequences are dropped (ConsoleFilter)

    handed = expected_handed(image)
    lines = uefi_lines(out)
    assert any(line.endswith("bareflow-uefi: loading KERNEL.BIN") for line in lines), out[-4000:]
    assert "boot services exited; " in out and f", {len(handed)} files; jumping to 0x" in out
    # OVMF mirrors ConOut to the serial port: the loader must not print its lines twice.
    assert sum("loading KERNEL.BIN" in line for line in lines) == 1, lines
    kernel_line = next(line for line in out.splitlines() if line.startswith("bareflow-kernel:"))
    assert out.index("boot services exited") < out.index("bareflow-kernel:")
    assert f"handed files {len(handed)}," in kernel_line
    assert "disk 0 sectors" not in kernel_line           # the ATA driver still works after OVMF
    # ... so the runtime wrote its profile back into the disk the firmware booted.
    assert image_file(disk, "/PROFILE.BIN") != image_file(image, "/PROFILE.BIN")


def test_image_carries_the_reproducible_loader(tmp_path_factory, tmp_path):
    image = shared_image(tmp_path_factory)
    on_image = image_file(image, "/EFI/BOOT/BOOTX64.EFI")
    assert on_image == uefi_plugin.build_bootx64(tmp_path / "cache")
    mbr = image.read_bytes()[:512]
    assert mbr[446 + 4] == diskimage.PARTITION_TYPE == 0x0E     # a plain FAT16 partition, no ESP
    cfg = image_file(image, "/SYSLINUX.CFG").decode()
    assert "APPEND KERNEL.BIN --- " + " --- ".join(expected_handed(image)) in cfg


@needs_ovmf
@pytest.mark.parametrize("damage, message", [
    ("no-bfu64", "BAREFLOW-PANIC: uefi: /KERNEL.BIN: no BFU64 UEFI entry header at offset 32"),
    ("no-kernel", "BAREFLOW-PANIC: uefi: /KERNEL.BIN is not on the boot volume (EFI_NOT_FOUND)"),
])
def test_loader_refuses_what_it_cannot_boot(tmp_path_factory, tmp_path, damage, message):
    image = shared_image(tmp_path_factory)
    bad = tmp_path / "bad.img"
    shutil.copyfile(image, bad)
    if damage == "no-bfu64":
        data = bytearray(bad.read_bytes())
        kernel = data.index(struct.pack("<II", kernel_recipe.MULTIBOOT_MAGIC, 0x10003))
        assert data[kernel + 32:kernel + 37] == b"BFU64"
        data[kernel + 32] = ord("b")
        bad.write_bytes(data)
    else:
        need("mdel")
        subprocess.run(["mdel", "-i", f"{bad}@@{PARTITION_OFFSET}", "::/KERNEL.BIN"], check=True,
                       env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    status, out, _ = boot_copy(bad, tmp_path / "run", firmware="uefi")
    assert message in out, out[-3000:]
    assert status == 3, out[-3000:]                       # isa-debug-exit 1, like a kernel panic
    assert "bareflow-kernel:" not in out


# ----------------------------------------------------------------- the hand-off, seen from inside

RUNTIME = r"""
#include <bareflow/platform.h>
#include <bareflow/runtime.h>
#include <stdint.h>

static void say(const char *s) { size_t n = 0; while (s[n]) n++; platform_console_write(s, n); }
static int failures;
#define CHECK(c) do { if (!(c)) { say("check failed: " #c "\n"); failures++; } } while (0)
void bf_panic(const char *fmt, ...) { say("BAREFLOW-PANIC: "); say(fmt); say("\n"); platform_exit(1); }

extern char boot_page_tables[];
extern uint64_t kernel_gdt[];

int bf_runtime_main(void)
{
    uint64_t cr3, cr4, rflags;
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } gdtr;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("pushf; pop %0" : "=r"(rflags));
    __asm__ volatile("sgdt %0" : "=m"(gdtr));
    CHECK((cr3 & ~0xFFFull) == (uintptr_t)boot_page_tables);   /* our page tables, not OVMF's */
    CHECK(!(cr4 & (1u << 7)));                                  /* PGE dropped */
    CHECK(cr4 & (1u << 5) && cr4 & (1u << 9));                  /* PAE, OSFXSR */
    CHECK(!(rflags & (1u << 9)));                               /* interrupts off */
    CHECK(gdtr.base == (uintptr_t)kernel_gdt);
    CHECK(platform_arena_size() > 16u * 1024 * 1024);
    CHECK(platform_disk_sectors() > 0);
    size_t n = 0;
    const char *cfg = platform_handed_file("/BAREFLOW.CFG", &n);
    CHECK(cfg && n == 9 && cfg[0] == 's' && cfg[8] == '\n');
    const unsigned char *m = platform_handed_file("/MODULES/RMSNORM.O2", &n);
    CHECK(m && n == 5000 && m[0] == 0 && m[4999] == (4999 * 7) % 251);
    CHECK(((uintptr_t)m & 4095) == 0);
    CHECK(platform_handed_file("/MODULES/EMPTY.O0", &n) && n == 0);
    CHECK(platform_handed_file("/NOTES.TXT", &n) == 0);         /* not in the handed list */
    CHECK(platform_handed_file("/EFI/BOOT/BOOTX64.EFI", &n) == 0);
    unsigned char *a = platform_alloc(1 << 20, 4096);
    CHECK(a && (a + (1 << 20) <= m || a >= m + 5000) && (a + (1 << 20) <= (const unsigned char *)cfg
                                                          || a >= (const unsigned char *)cfg + 9));
    CHECK(a && a[12345] == 0);
    say(failures ? "checks failed\n" : "checks passed\n");
    if (failures)
        return 5;
    say("touching NULL\n");
    return *(volatile int *)0;                                   /* page 0 is unmapped: #PF */
}
"""


@needs_ovmf
def test_handoff_state_seen_from_the_kernel(tmp_path):
    from kernel_testkit import compile_kernel_and_libc
    objs = compile_kernel_and_libc(tmp_path)
    (tmp_path / "rt.c").write_text(RUNTIME)
    kernel_recipe.compile_object(str(tmp_path / "rt.c"), str(tmp_path / "rt.o"), str(REPO))
    kernel = tmp_path / "KERNEL.BIN"
    kernel_recipe.link_kernel(objs + [str(tmp_path / "rt.o")], str(tmp_path / "K.elf"), str(kernel),
                              str(REPO / kernel_recipe.KERNEL_LINKER_SCRIPT))
    files = {"/KERNEL.BIN": kernel.read_bytes(), "/BAREFLOW.CFG": b"steps=4\n\n",
             "/MODULES/RMSNORM.O2": bytes((i * 7) % 251 for i in range(5000)),
             "/MODULES/EMPTY.O0": b"", "/NOTES.TXT": b"left on the disk"}
    image = tmp_path / "handoff.img"
    diskimage.build_disk_image(image, files, volume_id=1, disk_signature=2, bmap_path=False,
                               bootloaders=[uefi_plugin.UefiBootloader(cache_dir=tmp_path / "efi")])
    status, out = qemu(image, firmware="uefi", timeout=QEMU_TIMEOUT)
    out = out.replace("\r\n", "\n")
    assert "bareflow-uefi: /POLICY.TBL is not on the boot volume; not handed over" in out
    assert "bareflow-uefi: /MODULES: 2 files, 5000 bytes" in out
    assert "handed files 3," in out, out[-3000:]
    assert "check failed" not in out and "checks passed" in out, out[-3000:]
    assert "BAREFLOW-PANIC: CPU exception #PF page fault (vector 14) error=0x0 rip=0x" in out, out[-2000:]
    assert "cr2=0x0 cpu 0\n" in out
    assert status == 3, out[-2000:]


def fake_kernel(load_addr: int) -> bytes:
    """A header-correct 64-byte kernel linked at `load_addr` (its code only halts)."""
    size = 64
    flags = 0x10003
    magic = kernel_recipe.MULTIBOOT_MAGIC
    head = struct.pack("<8I", magic, flags, (-(magic + flags)) % 2**32, load_addr, load_addr,
                       load_addr + size, load_addr + size + 4096, load_addr + 48)
    words = struct.unpack("<2I", b"BFU64\0\0\0") + (load_addr + 48,)
    bfu64 = b"BFU64\0\0\0" + struct.pack("<II", load_addr + 48, (-sum(words)) % 2**32)
    data = head + bfu64 + b"\xfa\xf4\xeb\xfd".ljust(16, b"\x90")        # cli; hlt; jmp $-1
    kernel_recipe.check_multiboot_bytes(data, "fake", require_uefi_entry=True)
    return data


@needs_ovmf
def test_loader_reports_an_occupied_load_address(tmp_path):
    # Linked into the firmware flash's address range: the header is fine, the memory is not RAM.
    image = tmp_path / "occupied.img"
    diskimage.build_disk_image(image, {"/KERNEL.BIN": fake_kernel(0xFFE00000)}, volume_id=1,
                               disk_signature=2, bmap_path=False,
                               bootloaders=[uefi_plugin.UefiBootloader(cache_dir=tmp_path / "efi")])
    status, out = qemu(image, firmware="uefi", timeout=QEMU_TIMEOUT)
    assert ("BAREFLOW-PANIC: uefi: cannot reserve [0xffe00000, 0xffe02000) for /KERNEL.BIN, the "
            "addresses it is linked for: EFI_NOT_FOUND") in out, out[-3000:]
    assert status == 3, out[-3000:]
