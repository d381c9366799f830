"""The "file" flash target: a plain file, for other tools (VM disks, bmaptool-less copies) and tests.

Same write path as the raw target (sparse ranges, MBR last, read-back), so testing this target
tests the writer.  An existing file keeps its bytes outside the mapped ranges, exactly as a
stick would.
"""
import os
import stat

from bareflow.flash import writer
from bareflow.flash.target import Capabilities, DeviceInfo, FlashReport, FlashTarget, refusal


class FileTarget(FlashTarget):
    name = "file"
    description = ("Write the image into a regular file (created, or extended to the image size), "
                   "sparse and verified like the raw target.")
    capabilities = Capabilities(
        erase=False, verify=True, sparse_write=True, needs_root=False,
        accepts="a path to a regular file or to a new file in an existing directory; "
                "not a block device, directory or the image itself")
    options = {}

    def check(self, device, image, ctx):
        path = str(device)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise refusal(device, "no-directory", f"directory {parent} does not exist") from None
            return DeviceInfo(device, path, "new file", needs_confirmation=False)
        if stat.S_ISBLK(st.st_mode):
            raise refusal(device, "block-device", "is a block device; use FLASH_TARGET=raw, which "
                          "applies the removable-disk safety rules")
        if stat.S_ISDIR(st.st_mode):
            raise refusal(device, "directory", "is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise refusal(device, "not-regular", "is not a regular file")
        if os.path.samefile(path, image):
            raise refusal(device, "same-as-image", f"is the image {image} itself")
        return DeviceInfo(device, path, "file", size=st.st_size, needs_confirmation=st.st_size > 0,
                          notes=["existing file: bytes outside the block map are left as they are"]
                          if st.st_size else [])

    def write(self, device, image, blockmap, ctx):
        self.check(device, image, ctx)
        path = str(device)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):          # swapped between check and open
                raise refusal(device, "not-regular", "is no longer a regular file")
            if st.st_size < blockmap.image_size:
                # Extending with ftruncate leaves a hole: unmapped ranges cost no disk space.
                os.ftruncate(fd, blockmap.image_size)
            written, seconds, verified = writer.write_and_verify(fd, image, blockmap, ctx, path)
        finally:
            os.close(fd)
        return FlashReport(self.name, path, str(image), blockmap.image_size, written, seconds,
                           verified, blockmap.mapped_bytes, blockmap.source)
