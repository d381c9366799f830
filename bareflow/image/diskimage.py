"""Assemble the bootable disk image: MBR + one FAT16 partition at 1 MiB (docs/image-layout.md).

    result = build_disk_image(out_path, files, *, volume_id, disk_signature,
                              bootloaders=(), epoch=None, label="BAREFLOW",
                              variables=None, contiguous=None, bmap_path=None) -> DiskImage

files          {"/8.3/PATH": bytes}, the payload (kernel, model, modules, ...).
bootloaders    Bootloader objects (bareflow.image.bootloader), e.g. the registered
               "syslinux"; their files (image_files(variables, payload), which sees the
               payload read-only) join the payload, one may supply the MBR code, and
               each one's install step runs on the finished filesystem, in order.
volume_id      FAT volume serial (u32); disk_signature: MBR disk signature (u32).  Fixed
               values keep the image reproducible (the build uses VOLUME_ID and DISK_SIGNATURE).
epoch          Unix time stamped on every directory entry; None = SOURCE_DATE_EPOCH, or
               1980-01-01 when that is unset.
contiguous     paths stored in one run of clusters, placed first; None = /PROFILE.BIN if
               present (the kernel rewrites it in place).
editable       {path: most bytes}: files a user may rewrite on the image or a flashed stick;
               the partition keeps free room for a copy of each at that size, since editors
               and mtools write the new file before (or instead of) freeing the old one.
               None = /BAREFLOW.CFG at its 8192-byte maximum if present (docs/boot-config.md).
bmap_path      where to write the block map; None = next to the image with suffix .bmap,
               False = do not write one.

The image is built in a temporary file in the output directory and renamed over
`out_path` only after every install step and check has passed, so a failed build never
leaves a plausible-looking image behind.  After each install step the builder checks that
the image size, everything before the partition, the filesystem geometry and every file
it wrote (extent and bytes) are unchanged.

DiskImage fields: path, bmap_path, size, sha256, partition_offset, layout (FatLayout parsed
from the final image, including the installer's files), block_map (BlockMap).
"""
import os
import types
from dataclasses import dataclass

from bareflow.core.atomicfile import replace_atomically
from bareflow.image import blockmap

from bareflow.image import fat16
from bareflow.image.mbr import MBR_CODE_MAX, mbr_sector
from bareflow.image.bootloader import check_bootloader
from bareflow.errors import BareflowError
from bareflow.image.bootconfig import CFG_MAX as CONFIG_MAX_BYTES

CONFIG_PATH = "/BAREFLOW.CFG"          # the file a user edits on a flashed stick

PARTITION_START_LBA = 2048            # 1 MiB: aligned for every flash erase block size in use
PARTITION_OFFSET = PARTITION_START_LBA * 512
PARTITION_TYPE = 0x0E                 # FAT16, addressed by LBA
# With no bootloader providing MBR code: "int 18h" hands over to the next boot device.
FALLBACK_MBR_CODE = b"\xCD\x18\xF4\xEB\xFD"


@dataclass
class DiskImage:
    path: str
    bmap_path: object
    size: int
    sha256: str
    partition_offset: int
    layout: fat16.FatLayout
    block_map: blockmap.BlockMap


def _gather(files, bootloaders, variables):
    if not isinstance(files, dict):
        raise BareflowError(f"image files must be a dict of path -> bytes, not {type(files).__name__}")
    loaders, names = [], {}
    for b in bootloaders:
        check_bootloader(b, origin="the selected bootloaders")
        if b.name in names:
            raise BareflowError(f"bootloader {b.name!r} selected twice")
        names[b.name] = b
        ok, why = b.available()
        if not ok:
            raise BareflowError(f"bootloader {b.name!r} is not available: {why}")
        loaders.append(b)
    all_files, claimed = dict(files), {}

    def claim(path, b, how):
        if path in all_files or path in claimed:
            raise BareflowError(f"bootloader {b.name!r} {how} {path}, which collides with "
                                f"{claimed.get(path, 'the image payload')}")
        claimed[path] = f"bootloader {b.name!r}"

    code, code_owner = None, None
    payload = types.MappingProxyType(dict(files))
    for b in loaders:
        image_files = getattr(b, "image_files", None)      # optional: Bootloader provides it
        if callable(image_files):
            extra = image_files(dict(variables or {}), payload)
        else:
            extra = b.files(dict(variables or {}))
        if not isinstance(extra, dict):
            raise BareflowError(f"bootloader {b.name!r}: files() must return a dict, not {type(extra).__name__}")
        for path, data in sorted(extra.items(), key=lambda kv: str(kv[0])):
            claim(path, b, "adds file")
            all_files[path] = data
        for path in b.installed_files():
            if len(fat16.split_path(path)) != 1:
                raise BareflowError(f"bootloader {b.name!r}: installed file {path} must be in the root directory")
            claim(path, b, "installs")
        mbr = b.mbr_code()
        if mbr is not None:
            if code_owner:
                raise BareflowError(f"bootloaders {code_owner!r} and {b.name!r} both provide MBR code; "
                                    "select only one of them")
            if not isinstance(mbr, (bytes, bytearray)) or not 0 < len(mbr) <= MBR_CODE_MAX:
                raise BareflowError(f"bootloader {b.name!r}: mbr_code() must be 1-{MBR_CODE_MAX} bytes")
            code, code_owner = bytes(mbr), b.name
    return all_files, loaders, code or FALLBACK_MBR_CODE


def _same_bytes(fh, pos, data):
    view = memoryview(data)
    fh.seek(pos)
    for i in range(0, len(view), 1 << 20):
        if fh.read(min(1 << 20, len(view) - i)) != view[i:i + (1 << 20)]:
            return False
    return True


def _check_install(path, name, head, size, layout, files):
    """Raise unless install step `name` left everything the builder wrote intact."""
    what = f"bootloader {name!r} install step"
    if os.path.getsize(path) != size:
        raise BareflowError(f"{what} changed the image size to {os.path.getsize(path)} (expected {size})")
    with open(path, "rb") as fh:
        if fh.read(len(head)) != head:
            raise BareflowError(f"{what} wrote outside the partition (MBR or the gap before it)")
        got = fat16.read_fat16(fh, PARTITION_OFFSET, source=f"image after {what}")
        geometry = ("sectors_per_cluster", "reserved_sectors", "fat_sectors", "total_sectors",
                    "hidden_sectors", "cluster_count", "volume_id", "label", "root_entries")
        changed = [g for g in geometry if getattr(got, g) != getattr(layout, g)]
        if changed:
            raise BareflowError(f"{what} changed the filesystem's {', '.join(changed)}")
        for p, ext in layout.files.items():
            if got.files.get(p) != ext or not _same_bytes(fh, PARTITION_OFFSET + layout.cluster_offset(
                    ext.first_cluster), files[p]):
                raise BareflowError(f"{what} moved or modified {p}")
    return got


def build_disk_image(out_path, files, *, volume_id, disk_signature, bootloaders=(), epoch=None,
                     label="BAREFLOW", variables=None, contiguous=None, bmap_path=None, editable=None):
    epoch = fat16.epoch_from_environ() if epoch is None else epoch
    fat16.fat_timestamp(epoch)
    if isinstance(disk_signature, bool) or not isinstance(disk_signature, int) \
            or not 0 <= disk_signature <= 0xFFFFFFFF:
        raise BareflowError(f"MBR disk signature {disk_signature!r}: must be an integer in 0..0xFFFFFFFF")
    all_files, loaders, code = _gather(files, bootloaders, variables)
    if contiguous is None:
        contiguous = [p for p in ("/PROFILE.BIN",) if p in all_files]
    if editable is None:
        editable = {p: n for p, n in ((CONFIG_PATH, CONFIG_MAX_BYTES),) if p in all_files}
    extra_entries = sum(len(b.installed_files()) for b in loaders)
    layout = fat16.plan_fat16(all_files, volume_id=volume_id, label=label, epoch=epoch,
                              contiguous=contiguous, hidden_sectors=PARTITION_START_LBA,
                              extra_free_bytes=sum(b.free_space_needed() for b in loaders),
                              extra_free_files=extra_entries, extra_root_entries=extra_entries,
                              spare_files=tuple(editable.values()))
    size = PARTITION_OFFSET + layout.size
    head = mbr_sector(code, disk_signature, PARTITION_START_LBA, layout.total_sectors, PARTITION_TYPE).ljust(PARTITION_OFFSET, b"\0")

    out_path = os.fspath(out_path)
    with replace_atomically(out_path, "w+b") as fh:
        fh.write(head)
        fat16.write_fat16(fh, PARTITION_OFFSET, all_files, layout)
        fh.flush()                                 # the boot loaders' installers reopen it by name
        final = layout
        for b in loaders:
            b.install(fh.name, PARTITION_OFFSET, layout)
            final = _check_install(fh.name, b.name, head, size, layout, all_files)
        bmap = blockmap.block_map_for_layout(fh.name, PARTITION_OFFSET, final)
    final.epoch = epoch
    if bmap_path is None:
        bmap_path = os.path.splitext(out_path)[0] + ".bmap"
    if bmap_path is not False:
        blockmap.write_bmap(bmap, bmap_path)
    return DiskImage(path=out_path, bmap_path=bmap_path or None, size=size, sha256=bmap.image_sha256,
                     partition_offset=PARTITION_OFFSET, layout=final, block_map=bmap)
