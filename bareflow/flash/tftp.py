"""The "tftp" flash target: make a PXE network-boot directory out of the image's FAT16 files.

DEVICE is a directory a TFTP server exports as its root.  The files of the image's partition
are copied into it (8.3 names and directories kept: MODULES/EMBED.O2), the syslinux modules
under the lower-case names pxelinux.0 asks for, and pxelinux.cfg/default boots mboot.c32 with
KERNEL.BIN as the multiboot kernel and every other BareFlow file as a multiboot module.

Module command lines: mboot.c32 passes "<file> <args>" as a module's string, so each module is
listed as "MODULES/EMBED.O2 /MODULES/EMBED.O2": the TFTP path relative to the directory
pxelinux.0 came from, then the file's 8.3 path.  The kernel finds a handed-over file by the
LAST word of its module string (platform_handed_file("/MODULES/EMBED.O2")).

Write order mirrors the MBR-last rule: the old pxelinux.cfg/default is removed first, every
file is written to a temporary name and renamed into place, and the new config comes last, so
an interrupted copy never leaves a config that points at half-copied files.
"""
import hashlib
import os
import stat
import time

from bareflow.image import blockmap, fat16, syslinux
from bareflow.core.atomicfile import replace_atomically
from bareflow.errors import BareflowError
from bareflow.flash import pathrules
from bareflow.flash.target import Capabilities, DeviceInfo, FlashReport, FlashTarget, refusal

PXELINUX = "/usr/lib/PXELINUX/pxelinux.0"
SYSLINUX_BIOS = "/usr/lib/syslinux/modules/bios"
CONFIG = "pxelinux.cfg/default"
DISK_ONLY = {"LDLINUX.SYS", "SYSLINUX.CFG"}      # the disk boot loader and its config
NEEDED_C32 = ("ldlinux.c32", "mboot.c32", "libcom32.c32")
MAX_APPEND = 4000                                # syslinux reads config lines of < 4096 bytes


def plan(image, options=None):
    """{relative path: bytes} to put in the directory, and notes.  Reads the image only."""
    options = options or {}
    files = _image_files(image)
    if "/KERNEL.BIN" not in files:
        raise BareflowError(f"{image}: its FAT16 partition has no /KERNEL.BIN; nothing to boot over PXE")
    out, notes, modules, c32 = {}, [], [], {}
    kernel_args, serial = [], syslinux.SERIAL_LINE
    if "/SYSLINUX.CFG" in files:
        kernel_args, serial = syslinux.parse_syslinux_cfg(files["/SYSLINUX.CFG"].decode("latin-1"))
    for path, data in files.items():
        name = path.lstrip("/")
        if name.upper() in DISK_ONLY:
            continue
        if "/" not in name and name.upper().endswith(".C32"):
            c32[name.lower()] = data
            continue
        out[name] = data
        if name != "KERNEL.BIN":
            modules.append(name)

    pxelinux = options.get("pxelinux", PXELINUX)
    bios = options.get("syslinux_modules", SYSLINUX_BIOS)
    if os.path.isfile(pxelinux):
        out["pxelinux.0"] = _read_host(pxelinux)
        # pxelinux.0 refuses an ldlinux.c32 of another build: take the modules from its install.
        if all(os.path.isfile(os.path.join(bios, n)) for n in NEEDED_C32):
            c32.update({n: _read_host(os.path.join(bios, n)) for n in NEEDED_C32})
            notes.append(f"pxelinux.0 from {pxelinux}, {', '.join(NEEDED_C32)} from {bios}")
        else:
            notes.append(f"pxelinux.0 from {pxelinux}; syslinux modules from the image "
                         f"({bios} lacks some of {', '.join(NEEDED_C32)})")
    else:
        notes.append(f"{pxelinux} not found: copy pxelinux.0 of syslinux 6.04 (Debian package "
                     "'pxelinux') into the directory and point DHCP's boot file at it")
    missing = [n for n in NEEDED_C32 if n not in c32]
    if missing:
        raise BareflowError(f"{image}: no {', '.join(missing)} in the image or {bios}; "
                            "mboot.c32 cannot be started without them")
    out.update(c32)

    handed = [(m, "/" + m) for m in sorted(modules)]        # each module's cmdline is its path
    append = syslinux.append_line("KERNEL.BIN", handed, kernel_args)
    if len(append) > MAX_APPEND:
        raise BareflowError(f"{image}: the PXE APPEND line would be {len(append)} characters, over "
                            f"syslinux's limit of {MAX_APPEND}; put fewer files on the image")
    out[CONFIG] = syslinux.syslinux_cfg("KERNEL.BIN", handed, kernel_args, serial=serial,
                                        comment=f"Written by BareFlow's tftp flash target from "
                                                f"{os.path.basename(str(image))}.")
    return out, notes


def _image_files(image):
    """{8.3 path: bytes} of the image's (first) FAT16 partition, via the image build's reader."""
    volumes = blockmap.find_fat16_volumes(str(image))
    if not volumes:
        raise BareflowError(f"{image}: no FAT16 partition in its MBR")
    offset, layout = volumes[0]
    with open(image, "rb") as fh:
        return {path: fat16.read_file_bytes(fh, offset, layout, path) for path in layout.files}


def _read_host(path):
    with open(path, "rb") as f:
        return f.read()


def _sha(data):
    return hashlib.sha256(data).hexdigest()


class TftpTarget(FlashTarget):
    name = "tftp"
    description = ("Copy the image's files into a TFTP root with a PXELINUX config that boots "
                   "KERNEL.BIN via mboot.c32 and hands every other file over as a multiboot module.")
    capabilities = Capabilities(
        erase=False, verify=True, sparse_write=False, needs_root=False,
        accepts="a directory (existing, or new inside an existing one) that a TFTP server "
                "exports as its root")
    options = {
        "pxelinux": f"pxelinux.0 to copy into the directory (default {PXELINUX})",
        "syslinux_modules": f"directory of BIOS .c32 modules matching pxelinux.0 (default {SYSLINUX_BIOS})",
    }

    def check(self, device, image, ctx):
        path, st = pathrules.check_directory_path(device)   # empty, NUL, loops, file components, ...
        if st is not None and not stat.S_ISDIR(st.st_mode):
            kind = "a block device" if stat.S_ISBLK(st.st_mode) else "not a directory"
            raise refusal(device, "not-directory", f"is {kind}; the tftp target writes into a directory")
        where = path if st is not None else os.path.dirname(os.path.abspath(path))
        if not os.access(where, os.W_OK | os.X_OK):
            raise refusal(device, "not-writable", f"{where} is not writable")
        files, notes = plan(image, ctx.options)
        replaced = [rel for rel, data in files.items()
                    if os.path.isfile(os.path.join(path, rel)) and _sha(_read_host(os.path.join(path, rel))) != _sha(data)]
        if replaced:
            notes.append(f"replaces {len(replaced)} existing file(s): {', '.join(sorted(replaced)[:6])}"
                         + (" ..." if len(replaced) > 6 else ""))
        notes.insert(0, f"{len(files)} files to write")
        return DeviceInfo(device, path, "directory" if st is not None else "new directory",
                          needs_confirmation=bool(replaced), notes=notes)

    def write(self, device, image, blockmap, ctx):
        self.check(device, image, ctx)
        root = str(device)
        files, notes = plan(image, ctx.options)
        t0 = time.monotonic()
        os.makedirs(root, exist_ok=True)
        config = os.path.join(root, CONFIG)
        if os.path.lexists(config):
            os.unlink(config)
        ctx.emit("config-removed")
        order = sorted(rel for rel in files if rel != CONFIG) + [CONFIG]
        written = 0
        for rel in order:
            _install(root, rel, files[rel])
            written += len(files[rel])
            ctx.emit("file-written", path=rel)
        ctx.emit("before-verify")
        for rel in order:
            try:
                got = _read_host(os.path.join(root, rel))
            except OSError as e:
                raise BareflowError(f"verification of {root} failed: cannot read back {rel}: {e.strerror}") from e
            if _sha(got) != _sha(files[rel]):
                raise BareflowError(f"verification of {root} failed: {rel} differs from the image's "
                                    f"copy ({len(got)} bytes read, {len(files[rel])} expected)")
        return FlashReport(self.name, root, str(image), os.path.getsize(image), written,
                           time.monotonic() - t0, True, 0, "files of the FAT16 partition", notes)


def _install(root, rel, data):
    dest = os.path.join(root, *rel.split("/"))
    # 0644: TFTP servers usually run unprivileged and need read access.
    with replace_atomically(dest, permissions=0o644, fsync=True) as f:
        f.write(data)
