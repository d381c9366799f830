"""The image boots from USB storage (qemu-xhci + usb-storage, no IDE disk) on SeaBIOS and on
OVMF and prints the same tokens as the BIOS/IDE run.

Without an IDE disk the kernel's ATA probe finds nothing ("disk 0 sectors"), so the run only
works if the bootloader handed every file the runtime needs over in memory: syslinux through
its APPEND line (mboot.c32 modules), BOOTX64.EFI through the Multiboot info it builds.
The image and the reference run are shared with tests/test_uefi_boot.py.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from buildutil import QEMU_SUCCESS, result
from test_uefi_boot import (OVMF, assert_same_generation, bios_reference, boot_copy, expected_handed,
                            shared_image)

QEMU = shutil.which("qemu-system-x86_64")


def _usb_devices_missing():
    if QEMU is None:
        return "qemu-system-x86_64 is not installed (Debian qemu-system-x86)"
    devices = subprocess.run([QEMU, "-device", "help"], capture_output=True, text=True, timeout=60).stdout
    missing = [d for d in ("qemu-xhci", "usb-storage") if f'"{d}"' not in devices]
    return f"this QEMU lacks the device(s) {', '.join(missing)}" if missing else ""


USB_MISSING = _usb_devices_missing()
pytestmark = [pytest.mark.qemu, pytest.mark.skipif(bool(USB_MISSING), reason=USB_MISSING or "-")]


def check_usb_run(status, out, image, ref):
    assert status == QEMU_SUCCESS, out[-4000:]
    kernel_line = next((line for line in out.splitlines() if line.startswith("bareflow-kernel:")), "")
    assert "disk 0 sectors" in kernel_line, out[-4000:]              # really no IDE disk
    assert f"handed files {len(expected_handed(image))}," in kernel_line
    assert "/PROFILE.BIN not written: no FAT16 disk" in out         # said, not hidden
    assert_same_generation(result(out), ref)


def test_seabios_usb_storage_gives_the_bios_tokens(tmp_path_factory, tmp_path):
    image = shared_image(tmp_path_factory)
    ref = bios_reference(tmp_path_factory)
    status, out, _ = boot_copy(image, tmp_path, usb=True)
    assert "SYSLINUX" in out and "Loading /MODULES/" in out, out[-4000:]
    check_usb_run(status, out, image, ref)


@pytest.mark.skipif(not OVMF.exists(), reason=f"{OVMF} is missing (Debian package ovmf)")
def test_ovmf_usb_storage_gives_the_bios_tokens(tmp_path_factory, tmp_path):
    image = shared_image(tmp_path_factory)
    ref = bios_reference(tmp_path_factory)
    status, out, _ = boot_copy(image, tmp_path, usb=True, firmware="uefi")
    assert "USB" in out and "bareflow-uefi: loading KERNEL.BIN" in out, out[-4000:]
    check_usb_run(status, out, image, ref)
