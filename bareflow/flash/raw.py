"""The "raw" flash target: a whole removable block device such as /dev/sdb or /dev/mmcblk0."""
import os
import stat

from bareflow.errors import BareflowError
from bareflow.flash import safety
from bareflow.flash import writer
from bareflow.flash.target import Capabilities, DeviceInfo, FlashReport, FlashTarget, human_size

SECTOR = 512


class RawTarget(FlashTarget):
    name = "raw"
    description = ("Write the image to a whole block device (USB stick, SD card): only the block "
                   "map's ranges, MBR last, then read back and compare.")
    capabilities = Capabilities(
        erase=False, verify=True, sparse_write=True, needs_root=True,
        accepts="a whole-disk block device (/dev/sdX, /dev/mmcblkN, /dev/nvmeXnY) that is removable "
                "(or FORCE_NON_REMOVABLE=1), unmounted, unused, not the system disk and at least "
                "as large as the image")
    options = {}

    def check(self, device, image, ctx):
        facts = safety.gather_facts(device, ctx.sysroot)
        safety.check_device(facts, os.path.getsize(image), ctx.force_non_removable)
        notes = []
        if not facts.removable:
            notes.append("not removable: writing only because FORCE_NON_REMOVABLE=1")
        return DeviceInfo(
            device=device, path=facts.node, kind="block device", size=facts.size,
            model=facts.model or "(unknown model)", removable=facts.removable,
            partitions=[f"{p.name} {human_size(p.size)}" for p in facts.partitions],
            needs_confirmation=True, notes=notes, facts=facts)

    def write(self, device, image, blockmap, ctx):
        facts = safety.gather_facts(device, ctx.sysroot, try_exclusive=False)
        safety.check_device(facts, blockmap.image_size, ctx.force_non_removable)
        flags = os.O_RDWR | (os.O_EXCL if facts.is_block_node else 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(facts.node, flags)
        except OSError as e:
            raise BareflowError(f"refusing to flash {device}: [busy] cannot open it for exclusive "
                                f"writing: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            if facts.is_block_node and (not stat.S_ISBLK(st.st_mode) or
                                        f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" != facts.devnum):
                raise BareflowError(f"refusing to flash {device}: [changed] the device node changed "
                                    "between the check and the write")
            notes = []
            if _wipe_backup_gpt(fd, facts.size, blockmap.image_size):
                notes.append(f"erased a stale backup GPT header in the last sector of {device}")
            written, seconds, verified = writer.write_and_verify(fd, image, blockmap, ctx, device)
        finally:
            os.close(fd)
        return FlashReport(self.name, device, str(image), blockmap.image_size, written, seconds,
                           verified, blockmap.mapped_bytes, blockmap.source, notes)


def _wipe_backup_gpt(fd, device_size, image_size):
    """A stick that once held a GPT keeps its backup header in the last sector, which the image
    does not cover; partitioning tools and some firmware would "repair" our MBR disk from it."""
    last = device_size - SECTOR
    if last < image_size or os.pread(fd, 8, last) != b"EFI PART":
        return False
    os.pwrite(fd, bytes(SECTOR), last)
    os.fsync(fd)
    return True
