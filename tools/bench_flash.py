#!/usr/bin/env python3
"""Measure flashing with the "file" target: throughput and bytes written versus image size.

    python tools/bench_flash.py [--image build/bareflow.img] [--dir /tmp] [--repeat 3]

Without an image at the given path, a stand-in is built with the project's own image builder
(bareflow.image.diskimage, no boot loader) from synthetic files plus the reference model if
../shared/data has it.  Three cases are timed, each including the read-back verification:
  new file       fresh sparse file (like a VM disk)
  used stick     a file pre-filled with random bytes (like a stick that held data)
  full copy      baseline: copy every byte of the image, fsync, read back and hash
Prints figures only; asserts nothing.
"""
import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bareflow import FlashContext  # noqa: E402
from bareflow.flash.api import flash_image  # noqa: E402
from bareflow.flash.bmap import load_blockmap  # noqa: E402

MB = 1e6


def build_standin(path):
    from bareflow.image import diskimage
    rnd = random.Random(1)
    files = {"/KERNEL.BIN": rnd.randbytes(256 << 10), "/BAREFLOW.CFG": b"steps = 32\n",
             "/PROFILE.BIN": bytes(4096)}
    model = os.path.join(ROOT, "..", "shared", "data", "stories260K.bin")
    files["/MODEL.BIN"] = open(model, "rb").read() if os.path.exists(model) else rnd.randbytes(1 << 20)
    for layer in ("EMBED", "RMSNORM", "QKV", "ROPE", "ATTN", "ATTNOUT", "FFN", "CLASSIFY", "SAMPLER"):
        for tier in range(4):
            files[f"/MODULES/{layer}.O{tier}"] = rnd.randbytes(rnd.randrange(4 << 10, 24 << 10))
    diskimage.build_disk_image(path, files, volume_id=0x12345678, disk_signature=0x9abcdef0, epoch=315532800)
    return path


def fill_random(path, size):
    rnd = random.Random(7)
    with open(path, "wb") as f:
        for left in range(size, 0, -(1 << 20)):
            f.write(rnd.randbytes(min(left, 1 << 20)))
        f.flush()
        os.fsync(f.fileno())


def full_copy(image, dest):
    t0 = time.monotonic()
    with open(image, "rb") as src, open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
        os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return os.path.getsize(image), time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=os.path.join(ROOT, "build", "bareflow.img"))
    ap.add_argument("--dir", default=None, help="where the target files go (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=a.dir, prefix="bench-flash-") as tmp:
        image = a.image
        if not os.path.exists(image):
            image = build_standin(os.path.join(tmp, "standin.img"))
            print(f"{a.image} not found; built a stand-in image with bareflow.image.diskimage")
        size = os.path.getsize(image)
        bm = load_blockmap(image)
        print(f"image        {image}")
        print(f"image size   {size} bytes ({size / MB:.2f} MB)")
        print(f"block map    {bm.source}: {len(bm.ranges)} range(s), block size {bm.block_size}, "
              f"{bm.mapped_bytes} bytes mapped ({100 * bm.mapped_bytes / size:.1f} % of the image)")
        print(f"target dir   {tmp}")
        print(f"{'case':<12} {'written':>12} {'of image':>9} {'median s':>9} {'MB/s':>8} {'image MB/s':>11}")

        def report(case, written, times):
            med = statistics.median(times)
            print(f"{case:<12} {written:>12} {100 * written / size:>8.1f}% {med:>9.3f} "
                  f"{written / MB / med:>8.1f} {size / MB / med:>11.1f}")

        ctx = FlashContext(assume_yes=True, quiet=True)
        for case in ("new file", "used stick"):
            times, written = [], 0
            for i in range(a.repeat):
                dest = os.path.join(tmp, f"target{i}.img")
                if case == "used stick":
                    fill_random(dest, size)
                r = flash_image(image, dest, "file", ctx=ctx)
                times.append(r.seconds)
                written = r.bytes_written
                os.unlink(dest)
            report(case, written, times)
        times = []
        for i in range(a.repeat):
            dest = os.path.join(tmp, "copy.img")
            written, seconds = full_copy(image, dest)
            times.append(seconds)
            os.unlink(dest)
        report("full copy", written, times)


if __name__ == "__main__":
    main()
