"""Sparse, ordered, verified writing of an image's mapped ranges to an open file descriptor.

Write order (so an interrupted flash never looks like a good bootable disk):
  1. sector 0 <- zeros, fsync      (any old MBR/partition table is gone first)
  2. every mapped range except sector 0
  3. fsync
  4. sector 0 <- the image's MBR, fsync
Then every mapped range is read back (after dropping the page cache for the descriptor, so the
bytes come from the medium where the OS allows it) and compared with the block map's sha256.
Buffered writes plus fsync are used on purpose: O_DIRECT would need aligned buffers and gains
nothing for sticks, whose speed limit is the flash controller.
"""
import hashlib
import os
import time

from bareflow.errors import BareflowError
from bareflow.flash.target import human_size

SECTOR = 512
CHUNK = 1 << 20


class Progress:
    """One updating line (bytes, rate, ETA) on a terminal; silent otherwise."""

    def __init__(self, label, total, ctx):
        self.label, self.total, self.done = label, total, 0
        stream = ctx.stream()
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.stream = stream if tty and not ctx.quiet else None
        self.start = self.last = time.monotonic()

    def add(self, n):
        self.done += n
        now = time.monotonic()
        if self.stream is not None and now - self.last >= 0.2:
            self.last = now
            self._draw(now)

    def _draw(self, now):
        rate = self.done / max(now - self.start, 1e-6)
        eta = (self.total - self.done) / rate if rate > 0 else 0
        self.stream.write(f"\r{self.label}: {human_size(self.done)} / {human_size(self.total)}  "
                          f"{rate / 1e6:.1f} MB/s  ETA {eta:4.0f} s \x1b[K")
        self.stream.flush()

    def finish(self):
        if self.stream is not None:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


def _copy(src, fd, start, end, label, progress):
    pos = start
    while pos < end:
        src.seek(pos)
        data = src.read(min(CHUNK, end - pos))
        if not data:
            raise BareflowError(f"image ended at byte {pos} while writing {label}")
        _pwrite_all(fd, data, pos, label)
        pos += len(data)
        progress.add(len(data))
    return end - start


def _pwrite_all(fd, data, offset, label):
    view = memoryview(data)
    while view:
        try:
            n = os.pwrite(fd, view, offset)
        except OSError as e:
            raise BareflowError(f"writing {label} failed at byte {offset}: {e.strerror}; sector 0 "
                                "was zeroed first, so the half-written disk will not boot") from e
        if n <= 0:
            raise BareflowError(f"writing {label}: device accepted no bytes at offset {offset} (full?)")
        view, offset = view[n:], offset + n


def _sync(fd, label):
    try:
        os.fsync(fd)
    except OSError as e:
        raise BareflowError(f"flushing {label} failed: {e.strerror}") from e


def write_ranges(fd, image, blockmap, ctx, label):
    """Steps 1-4 above; returns bytes written (sector 0 counts twice: zeros, then the MBR)."""
    total = blockmap.mapped_bytes + SECTOR      # the zeros, the ranges, the MBR again
    progress = Progress(f"writing {label}", total, ctx)
    written = 0
    try:
        with open(image, "rb") as src:
            mbr = src.read(SECTOR)
            if len(mbr) != SECTOR:
                raise BareflowError(f"image {image} is shorter than one sector")
            _pwrite_all(fd, bytes(SECTOR), 0, label)
            _sync(fd, label)
            written += SECTOR
            progress.add(SECTOR)
            ctx.emit("sector0-zeroed")
            for i, (start, length, _digest) in enumerate(blockmap.extents()):
                begin = SECTOR if start == 0 else start
                if begin < start + length:
                    written += _copy(src, fd, begin, start + length, label, progress)
                ctx.emit("range-written", index=i, start=start, length=length)
            _sync(fd, label)
            ctx.emit("ranges-synced")
            _pwrite_all(fd, mbr, 0, label)
            _sync(fd, label)
            written += SECTOR
            progress.add(SECTOR)
            ctx.emit("sector0-written")
    finally:
        progress.finish()
    return written


def drop_cache(fd):
    """Ask the kernel to forget cached pages so read-back hits the medium (best effort)."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def verify_ranges(fd, image, blockmap, ctx, label):
    """Read every mapped range back and compare its sha256; name the first bad byte."""
    drop_cache(fd)
    ctx.emit("before-verify")
    progress = Progress(f"verifying {label}", blockmap.mapped_bytes, ctx)
    for i, (start, length, digest) in enumerate(blockmap.extents()):
        h, pos, end = hashlib.sha256(), start, start + length
        while pos < end:
            data = os.pread(fd, min(CHUNK, end - pos), pos)
            if not data:
                raise BareflowError(f"verification of {label} failed: it ends at byte {pos}, "
                                    f"inside mapped range {i} (bytes {start}..{end})")
            h.update(data)
            pos += len(data)
            progress.add(len(data))
        if h.hexdigest() != digest:
            progress.finish()
            raise BareflowError(_mismatch(fd, image, i, start, end, label))
    progress.finish()


def _mismatch(fd, image, index, start, end, label):
    with open(image, "rb") as src:
        pos = start
        while pos < end:
            n = min(CHUNK, end - pos)
            src.seek(pos)
            want, got = src.read(n), os.pread(fd, n, pos)
            if want != got:
                k = next((j for j in range(min(len(want), len(got))) if want[j] != got[j]),
                         min(len(want), len(got)))
                off = pos + k
                wb = f"0x{want[k]:02x}" if k < len(want) else "EOF"
                gb = f"0x{got[k]:02x}" if k < len(got) else "EOF"
                return (f"verification of {label} failed: first bad byte at offset {off} (0x{off:x}), "
                        f"in mapped range {index} (bytes {start}..{end}): expected {wb}, read {gb}")
            pos += n
    return (f"verification of {label} failed: mapped range {index} (bytes {start}..{end}) reads back "
            f"equal to {image} but not to the block map checksum; the image changed during the flash")


def write_and_verify(fd, image, blockmap, ctx, label, verify=True):
    """Returns (bytes_written, seconds, verified)."""
    t0 = time.monotonic()
    written = write_ranges(fd, image, blockmap, ctx, label)
    if verify:
        verify_ranges(fd, image, blockmap, ctx, label)
    return written, time.monotonic() - t0, verify
