"""The Bootloader interface: what a `bareflow_register_bootloaders` plugin returns.

A bootloader takes part in building the disk image (bareflow.image.diskimage) in four
places, in this order:

1. `available()`        -> (ok, reason): checked first; a selected bootloader that is not
                           available stops the build with `reason` (say what to install).
2. `files(variables)`   -> {"/8.3/PATH": bytes}: extra files for the FAT16 partition
                           (configuration, loadable modules).  They must not collide with
                           the payload's files.
   `image_files(variables, payload)` -> the same, for a bootloader whose files depend on
                           the payload (`payload`: read-only {path: bytes} of the image's
                           own files, without other bootloaders' files).  The image builder
                           calls this one; the default returns files(variables).  syslinux
                           uses it to list the handed files on its APPEND line, uefi to check
                           KERNEL.BIN's UEFI entry header at build time.
   `mbr_code()`         -> bytes (at most 440) or None: the MBR boot code.  At most one
                           selected bootloader may provide it.
   `installed_files()`  -> paths of the files the install step adds; they must be in the
                           root directory and must not be among the image's other files.
   `free_space_needed()` -> total bytes of those files (the filesystem is sized so they
                           fit, plus up to one wasted cluster each).
3. the FAT16 partition is written (with `layout.hidden_sectors` = partition start LBA).
4. `install(image_path, partition_offset, layout)`: modify the image file in place (boot
                           sector code, files added through the filesystem).  It must not
                           touch bytes outside the partition nor the payload's files: the
                           image builder checks both afterwards, and it must be
                           deterministic (same inputs, same bytes; `layout.epoch` is the
                           timestamp to use).

Subclass Bootloader and override what you need; the defaults do nothing.
"""
import re

from bareflow.errors import BareflowError

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")

# Files a bootloader hands the kernel in memory (Multiboot modules), so that it runs where no
# ATA disk answers (USB storage): these root files, when present, then every file under
# /MODULES/.  src/uefi/main.c hands the same list (docs/uefi.md).
HANDED_ROOT_FILES = ("/BAREFLOW.CFG", "/POLICY.TBL", "/MODEL.BIN", "/TOKENIZR.BIN",
                     "/PROFILE.BIN", "/LIBC.MAN")
HANDED_DIRECTORY = "/MODULES/"
MAX_HANDED_FILES = 160              # the kernel's Multiboot module limit (src/kernel/multiboot.c)


def handed_files(paths):
    """The payload paths to hand over, in hand-over order: HANDED_ROOT_FILES order, then the
    sorted files directly inside /MODULES/.  More than MAX_HANDED_FILES is an error."""
    paths = set(paths)
    chosen = [p for p in HANDED_ROOT_FILES if p in paths]
    chosen += sorted(p for p in paths if p.startswith(HANDED_DIRECTORY)
                     and "/" not in p[len(HANDED_DIRECTORY):])
    if len(chosen) > MAX_HANDED_FILES:
        raise BareflowError(f"{len(chosen)} files to hand the kernel as Multiboot modules; the "
                            f"kernel accepts at most {MAX_HANDED_FILES} (src/kernel/multiboot.c)")
    return chosen


class Bootloader:
    """Base class with do-nothing defaults; `name` must be set by subclasses."""
    name = ""
    description = ""

    def available(self):
        return True, ""

    def files(self, variables):
        return {}

    def image_files(self, variables, payload):
        return self.files(variables)

    def mbr_code(self):
        return None

    def free_space_needed(self):
        return 0

    def installed_files(self):
        return ()

    def install(self, image_path, partition_offset, layout):
        return None


_METHODS = ("available", "files", "mbr_code", "free_space_needed", "installed_files", "install")


def check_bootloader(obj, origin="a plugin"):
    """Reject objects that do not implement the interface, naming the bootloader and origin."""
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise BareflowError(f"bootloader {name!r} from {origin}: name must match [a-z][a-z0-9_-]* "
                            "(at most 32 characters)")
    missing = [m for m in _METHODS if not callable(getattr(obj, m, None))]
    if missing:
        raise BareflowError(f"bootloader {name!r} from {origin}: missing method(s) {', '.join(missing)}; "
                            "subclass bareflow.image.bootloader.Bootloader")
    return obj


def select_bootloaders(registered, names):
    """Pick bootloaders by name, in the order given; unknown names list the known ones, and an
    empty list is refused: an image nothing can boot would only time out in QEMU."""
    by_name = {b.name: b for b in registered}
    if not names:
        known = ", ".join(sorted(by_name)) or "none registered"
        raise BareflowError(f"BOOTLOADERS is empty: the image could not boot; name at least one (known: {known})")
    chosen = []
    for n in names:
        if n not in by_name:
            known = ", ".join(sorted(by_name)) or "none registered"
            raise BareflowError(f"bootloader {n!r} is not registered (known: {known})")
        if by_name[n] not in chosen:
            chosen.append(by_name[n])
    return chosen
