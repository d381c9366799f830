"""Built-in plugin: syslinux (BIOS) boots the image through mboot.c32 (multiboot).

Boot chain: BIOS -> MBR code (/usr/lib/syslinux/mbr/mbr.bin) -> partition boot sector
(written by `syslinux --install`) -> LDLINUX.SYS -> LDLINUX.C32 reads SYSLINUX.CFG ->
MBOOT.C32 (+ LIBCOM32.C32) loads /KERNEL.BIN and any multiboot modules.

The registered instance hands the kernel the runtime's files as multiboot modules
(bootloader.handed_files: /BAREFLOW.CFG, /POLICY.TBL, /MODEL.BIN, /TOKENIZR.BIN, /PROFILE.BIN,
/LIBC.MAN and every /MODULES/ file present in the payload), so the kernel also runs from USB
storage, where its ATA driver finds no disk.  mboot.c32 reads them through the BIOS, which
boots from any disk it can boot from.

The installer (Debian's mtools-based `syslinux`) adds LDLINUX.SYS and LDLINUX.C32 itself,
from copies built into it; we do not ship LDLINUX.C32 because the installer would replace
it anyway and its ldlinux.sys must match its own ldlinux.c32.  How much room those two
take is measured once per process by installing into a scratch volume.

Determinism (see docs/image-layout.md): the installer is deterministic except for the
directory-entry timestamps mtools stamps on the two files it adds.  mtools honours
SOURCE_DATE_EPOCH but converts it with the local time zone, so we run it with the layout's
epoch and TZ=UTC0, and then rewrite every directory timestamp to the epoch ourselves.
"""
import functools
import os
import shutil
import subprocess
import tempfile

from bareflow import hookimpl

from bareflow.image import fat16
from bareflow.image.bootloader import Bootloader, handed_files
from bareflow.errors import BareflowError

MODULES_DIR = "/usr/lib/syslinux/modules/bios"
MBR_BIN = "/usr/lib/syslinux/mbr/mbr.bin"
COPIED_MODULES = ("mboot.c32", "libcom32.c32")      # libcom32: mboot.c32's DT_NEEDED
INSTALLED_FILES = ("/LDLINUX.C32", "/LDLINUX.SYS")
INSTALL_HINT = "install the Debian packages 'syslinux', 'syslinux-common' and 'mtools'"


SERIAL_LINE = "SERIAL 0 115200"      # COM1, 115200 baud: the console the kernel also uses


def append_line(kernel="KERNEL.BIN", modules=(), kernel_args=()):
    """mboot.c32 arguments: the kernel and its arguments, then `--- FILE [CMDLINE]` per module.

    A module is a file name or a (file name, command line) pair; every word must be non-empty and
    free of blanks and of mboot.c32's "---" separator (BareflowError names the bad one).
    """
    words = [kernel, *kernel_args]
    for module in modules:
        name, cmdline = (module, None) if isinstance(module, str) else module
        words += ["---", name] + ([cmdline] if cmdline else [])
    for word in words:
        if word == "---":
            continue
        if not isinstance(word, str) or not word or any(c.isspace() for c in word) or "---" in word:
            raise BareflowError(f"syslinux: multiboot file name or argument {word!r} must be a non-empty word")
    return " ".join(words)


def syslinux_cfg(kernel="KERNEL.BIN", modules=(), kernel_args=(), serial=SERIAL_LINE, comment=""):
    """SYSLINUX.CFG (or pxelinux.cfg/default) text: serial console, no prompt, boot the kernel at once."""
    # SERIAL must be the first directive so that syslinux' own messages reach the port.
    lines = [f"# {comment}"] if comment else []
    lines += [serial, "PROMPT 0", "TIMEOUT 0", "DEFAULT bareflow", "LABEL bareflow",
              "  KERNEL mboot.c32", "  APPEND " + append_line(kernel, modules, kernel_args)]
    return ("\n".join(lines) + "\n").encode("ascii")


def parse_syslinux_cfg(text):
    """(kernel arguments, SERIAL line) of a configuration written by syslinux_cfg (or by hand)."""
    args, serial = [], SERIAL_LINE
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        key = words[0].upper()
        if key == "SERIAL":
            serial = " ".join(words)
        elif key == "APPEND" and len(words) > 1 and words[1].upper().endswith("KERNEL.BIN"):
            rest = words[2:]
            args = rest[:rest.index("---")] if "---" in rest else rest
    return args, serial


class SyslinuxBootloader(Bootloader):
    name = "syslinux"
    description = "syslinux 6 BIOS boot: MBR + FAT16 boot sector, mboot.c32 loads KERNEL.BIN"

    def __init__(self, installer="syslinux", modules_dir=MODULES_DIR, mbr_path=MBR_BIN,
                 kernel="KERNEL.BIN", modules=(), hand_payload=False):
        """`modules`: multiboot modules named explicitly; `hand_payload`: also every file
        bootloader.handed_files() picks from the image's payload (after `modules`)."""
        self.installer = installer
        self.modules_dir = modules_dir
        self.mbr_path = mbr_path
        self.kernel = kernel
        self.modules = tuple(modules)
        self.hand_payload = hand_payload

    def _installer_path(self):
        return shutil.which(self.installer)

    def available(self):
        if not self._installer_path():
            return False, f"the '{self.installer}' installer is not on PATH; {INSTALL_HINT}"
        for tool in ("mcopy", "mattrib"):                 # the installer drives mtools
            if not shutil.which(tool):
                return False, f"mtools' '{tool}' is not on PATH; {INSTALL_HINT}"
        for path in [self.mbr_path] + [os.path.join(self.modules_dir, m) for m in COPIED_MODULES]:
            if not os.path.isfile(path):
                return False, f"{path} is missing; {INSTALL_HINT}"
        return True, ""

    def _require(self):
        ok, why = self.available()
        if not ok:
            raise BareflowError(f"bootloader syslinux is not available: {why}")

    def files(self, variables):
        return self.image_files(variables, {})

    def image_files(self, variables, payload):
        self._require()
        modules = list(self.modules)
        if self.hand_payload:
            modules += [p for p in handed_files(payload) if p not in modules]
        out = {"/SYSLINUX.CFG": syslinux_cfg(self.kernel, modules)}
        for m in COPIED_MODULES:
            with open(os.path.join(self.modules_dir, m), "rb") as fh:
                out["/" + m.upper()] = fh.read()
        return out

    def mbr_code(self):
        self._require()
        with open(self.mbr_path, "rb") as fh:
            code = fh.read()
        if not 0 < len(code) <= 440:
            raise BareflowError(f"bootloader syslinux: {self.mbr_path} is {len(code)} bytes, "
                                "MBR boot code must be 1-440 bytes")
        return code

    def free_space_needed(self):
        self._require()
        return sum(_installed_sizes(self._installer_path()).values())

    def installed_files(self):
        return INSTALLED_FILES

    def install(self, image_path, partition_offset, layout):
        self._require()
        epoch = layout.epoch if layout.epoch is not None else fat16.DEFAULT_EPOCH
        _run_installer(self._installer_path(), image_path, partition_offset, epoch)
        with open(image_path, "r+b") as fh:
            after = fat16.read_fat16(fh, partition_offset, source=image_path)
            missing = [p for p in INSTALLED_FILES if p not in after.files]
            if missing:
                raise BareflowError(f"bootloader syslinux: after installing, {image_path} lacks "
                                    f"{', '.join(missing)}")
            fh.seek(partition_offset)
            if fh.read(512)[510:512] != b"\x55\xAA":
                raise BareflowError(f"bootloader syslinux: installer left {image_path} without a "
                                    "boot sector signature")
            fat16.normalize_timestamps(fh, partition_offset, after, epoch)


def _run_installer(installer, image_path, partition_offset, epoch):
    cmd = [installer, "--install", "--offset", str(partition_offset), image_path]
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), TZ="UTC0")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BareflowError(f"bootloader syslinux: `{' '.join(cmd)}` failed with exit code "
                            f"{proc.returncode}: {(proc.stderr or proc.stdout).strip()}")


@functools.lru_cache(maxsize=None)
def _installed_sizes(installer):
    """{path: size} of the files the installer adds, measured on a scratch volume."""
    with tempfile.TemporaryDirectory(prefix="bareflow-syslinux-") as tmp:
        probe = os.path.join(tmp, "probe.img")
        data, _ = fat16.make_fat16({}, volume_id=0, label="PROBE")
        with open(probe, "wb") as fh:
            fh.write(data)
        _run_installer(installer, probe, 0, fat16.DEFAULT_EPOCH)
        with open(probe, "rb") as fh:
            layout = fat16.read_fat16(fh, 0, source="syslinux probe volume")
    sizes = {p: layout.files[p].size for p in INSTALLED_FILES if p in layout.files}
    if len(sizes) != len(INSTALLED_FILES):
        raise BareflowError(f"bootloader syslinux: '{installer}' did not add {', '.join(INSTALLED_FILES)} "
                            "to a scratch volume; is it syslinux 6?")
    return sizes


@hookimpl
def bareflow_register_bootloaders():
    return [SyslinuxBootloader(hand_payload=True)]
